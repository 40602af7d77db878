//! Records on disk: a CRC32 of the body, then the body. A record whose
//! checksum does not match is corrupt, and is never decoded.

use serde::Serialize;
use serde::de::DeserializeOwned;

const CHECKSUM_BYTES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record of {0} bytes is shorter than its checksum")]
    Short(usize),
    #[error("record checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("record does not decode: {0}")]
    Json(#[from] serde_json::Error),
    #[error("record does not decode: {0}")]
    Postcard(#[from] postcard::Error),
}

impl From<CodecError> for std::io::Error {
    fn from(error: CodecError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }
}

/// The two encodings: JSON for records holding openraft's own types (their
/// serde forms are tested with JSON), postcard for our state.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Format {
    Json,
    Postcard,
}

pub(crate) fn encode<T: Serialize>(format: Format, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![0u8; CHECKSUM_BYTES];
    match format {
        Format::Json => serde_json::to_writer(&mut out, value)?,
        Format::Postcard => out = postcard::to_extend(value, out)?,
    }
    let checksum = crc32fast::hash(&out[CHECKSUM_BYTES..]);
    out[..CHECKSUM_BYTES].copy_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// The body of a record after checking its checksum.
pub(crate) fn verified(bytes: &[u8]) -> Result<&[u8], CodecError> {
    if bytes.len() < CHECKSUM_BYTES {
        return Err(CodecError::Short(bytes.len()));
    }
    let (head, body) = bytes.split_at(CHECKSUM_BYTES);
    let mut stored = [0u8; CHECKSUM_BYTES];
    stored.copy_from_slice(head);
    let stored = u32::from_le_bytes(stored);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    Ok(body)
}

pub(crate) fn decode<T: DeserializeOwned>(format: Format, bytes: &[u8]) -> Result<T, CodecError> {
    let body = verified(bytes)?;
    Ok(match format {
        Format::Json => serde_json::from_slice(body)?,
        Format::Postcard => postcard::from_bytes(body)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_corruption_is_caught() {
        for format in [Format::Json, Format::Postcard] {
            let value = vec![(1u64, "one".to_owned()), (2, "two".to_owned())];
            let mut bytes = encode(format, &value).expect("encodes");
            let back: Vec<(u64, String)> = decode(format, &bytes).expect("decodes");
            assert_eq!(back, value);
            let last = bytes.len() - 1;
            bytes[last] ^= 0x40;
            assert!(matches!(
                decode::<Vec<(u64, String)>>(format, &bytes),
                Err(CodecError::Checksum { .. })
            ));
            assert!(matches!(
                decode::<Vec<(u64, String)>>(format, &bytes[..2]),
                Err(CodecError::Short(2))
            ));
        }
    }
}
