//! Account and transfer ids on the wire: a UUID (with or without hyphens)
//! or up to 32 hex digits, printed back as a hyphenated UUID.

use std::fmt::Write;

/// Text that is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {0:?}: expected a UUID or 1 to 32 hex digits")]
pub struct IdError(pub String);

pub fn parse(text: &str) -> Result<u128, IdError> {
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    let well_formed = !digits.is_empty()
        && digits.len() <= 32
        && digits.chars().all(|c| c.is_ascii_hexdigit())
        && (text.len() == digits.len() || is_uuid_shape(text));
    if !well_formed {
        return Err(IdError(text.to_owned()));
    }
    u128::from_str_radix(&digits, 16).map_err(|_| IdError(text.to_owned()))
}

/// A fresh random 128-bit id: the clock's nanoseconds, the process id and
/// a counter, mixed by the standard library's randomly keyed hasher.
pub fn fresh() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut halves = [0u64; 2];
    for (salt, half) in halves.iter_mut().enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos()),
        );
        hasher.write_u32(std::process::id());
        hasher.write_u64(count);
        hasher.write_usize(salt);
        *half = hasher.finish();
    }
    (u128::from(halves[0]) << 64) | u128::from(halves[1])
}

/// Whether `text` is written as a whole id: a hyphenated UUID or 32 hex
/// digits (not a short hex number, which reads as text too).
pub fn is_full_id(text: &str) -> bool {
    (text.len() == 32 || (text.len() == 36 && is_uuid_shape(text))) && parse(text).is_ok()
}

fn is_uuid_shape(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|group| group.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
}

pub fn format(id: u128) -> String {
    let hex = format!("{id:032x}");
    let mut out = String::with_capacity(36);
    for (index, range) in [(0, 8), (8, 12), (12, 16), (16, 20), (20, 32)]
        .iter()
        .enumerate()
    {
        if index > 0 {
            out.push('-');
        }
        let _ = write!(out, "{}", &hex[range.0..range.1]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuids_or_hex() {
        let uuid = "550e8400-e29b-41d4-a716-446655440000";
        let id = parse(uuid).expect("a uuid");
        assert_eq!(format(id), uuid);
        assert_eq!(parse("550e8400e29b41d4a716446655440000"), Ok(id));
        assert_eq!(parse("1f"), Ok(31));
        assert_eq!(format(31), "00000000-0000-0000-0000-00000000001f");
        for bad in [
            "",
            "xyz",
            "1-2",
            "550e8400-e29b-41d4-a716-4466554400001",
            "g",
            &"f".repeat(33),
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
