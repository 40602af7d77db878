use serde::{Deserialize, Serialize};
use std::fmt;
use std::num::NonZeroU64;
use std::time::Duration;

/// The identity of a node that makes stamps; unique in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The same identity in `uhlc`'s type, for code that talks to uhlc users.
    /// `uhlc` forbids a zero id, so zero maps to `None`.
    pub fn to_uhlc(self) -> Option<uhlc::ID> {
        NonZeroU64::new(self.0).map(uhlc::ID::from)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A hybrid logical clock stamp: physical nanoseconds since the Unix epoch, a
/// logical counter that orders stamps within one nanosecond, and the node that
/// made it. The derived order compares the fields in that order, so it is total.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Stamp {
    physical_ns: u64,
    logical: u32,
    node: u64,
}

/// Size of [`Stamp::to_bytes`].
pub const STAMP_WIRE_BYTES: usize = 20;

/// Bytes that are not a stamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a stamp is {STAMP_WIRE_BYTES} bytes, got {0}")]
pub struct StampDecodeError(pub usize);

impl Stamp {
    /// The smallest stamp: before everything.
    pub const ZERO: Stamp = Stamp {
        physical_ns: 0,
        logical: 0,
        node: 0,
    };

    pub const fn new(physical_ns: u64, logical: u32, node: NodeId) -> Self {
        Self {
            physical_ns,
            logical,
            node: node.0,
        }
    }

    pub const fn physical_ns(&self) -> u64 {
        self.physical_ns
    }

    pub const fn logical(&self) -> u32 {
        self.logical
    }

    pub const fn node(&self) -> NodeId {
        NodeId(self.node)
    }

    /// Physical time as a duration since the Unix epoch.
    pub fn since_epoch(&self) -> Duration {
        Duration::from_nanos(self.physical_ns)
    }

    /// The plain wire form: three integers, the same fields in the same order.
    pub const fn to_parts(&self) -> (u64, u32, u64) {
        (self.physical_ns, self.logical, self.node)
    }

    pub const fn from_parts(physical_ns: u64, logical: u32, node: u64) -> Self {
        Self {
            physical_ns,
            logical,
            node,
        }
    }

    /// Big-endian bytes whose lexicographic order is the order of stamps, for
    /// keys in ordered stores.
    pub fn to_bytes(&self) -> [u8; STAMP_WIRE_BYTES] {
        let mut out = [0u8; STAMP_WIRE_BYTES];
        out[..8].copy_from_slice(&self.physical_ns.to_be_bytes());
        out[8..12].copy_from_slice(&self.logical.to_be_bytes());
        out[12..].copy_from_slice(&self.node.to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StampDecodeError> {
        let bytes: &[u8; STAMP_WIRE_BYTES] = bytes
            .try_into()
            .map_err(|_| StampDecodeError(bytes.len()))?;
        let mut physical = [0u8; 8];
        let mut logical = [0u8; 4];
        let mut node = [0u8; 8];
        physical.copy_from_slice(&bytes[..8]);
        logical.copy_from_slice(&bytes[8..12]);
        node.copy_from_slice(&bytes[12..]);
        Ok(Self {
            physical_ns: u64::from_be_bytes(physical),
            logical: u32::from_be_bytes(logical),
            node: u64::from_be_bytes(node),
        })
    }
}

impl fmt::Display for Stamp {
    /// RFC 3339 time (through uhlc's NTP64), then the counter and the node.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = uhlc::NTP64::from(self.since_epoch());
        write!(
            f,
            "{}+{}@{}",
            time.to_string_rfc3339_lossy(),
            self.logical,
            self.node()
        )
    }
}
