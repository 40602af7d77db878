use serde::{Deserialize, Serialize};
use std::fmt;

/// A region of the cluster. Small and dense: regions are few.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RegionId(pub u16);

/// An account, chosen by the client (a UUID fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountId(pub u128);

/// A transfer, chosen by the client; it is the idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TransferId(pub u128);

impl TransferId {
    /// Which of `regions` regions (in the order of their ids) decides this
    /// id: the high half of the id modulo their number. A function of the
    /// id alone, so that no two regions ever decide one id, whatever a
    /// client sends where (decision 0009).
    pub fn origin_index(self, regions: usize) -> usize {
        let count = regions.max(1) as u64;
        ((self.0 >> 64) as u64 % count) as usize
    }

    /// The id nearest this one that region `index` of `regions` decides:
    /// only the lowest bits of the high half change, so an id minted from a
    /// random one stays random, and one minted from an id of that region is
    /// that id.
    pub fn minted_for(self, index: usize, regions: usize) -> TransferId {
        let count = regions.max(1) as u64;
        let index = index as u64 % count;
        let high = (self.0 >> 64) as u64;
        let base = high - high % count;
        let high = base
            .checked_add(index)
            .unwrap_or_else(|| base - count + index);
        TransferId((u128::from(high) << 64) | (self.0 & u128::from(u64::MAX)))
    }
}

/// Where an event stands in the log it was applied from: the log's own index
/// and the event's place inside that entry (an entry is a batch of events).
/// Positions only ever grow; re-delivering one already applied is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub index: u64,
    pub offset: u32,
}

impl Position {
    pub const fn new(index: u64, offset: u32) -> Self {
        Self { index, offset }
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.index, self.offset)
    }
}
