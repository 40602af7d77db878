use ledger_reservations::{ControlEvent, Event, RegionId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A Raft group: one per region, and the global control group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Group {
    Region(RegionId),
    Control,
}

impl Group {
    /// A name usable as a table or file name.
    pub fn name(&self) -> String {
        match self {
            Group::Region(region) => format!("region-{}", region.0),
            Group::Control => "control".to_owned(),
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What a leader proposes: one log entry holding a batch of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// Events of a region's own log.
    Region(Vec<Event>),
    /// Events of the global control log.
    Control(Vec<ControlEvent>),
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proposal::Region(events) => write!(f, "{} region events", events.len()),
            Proposal::Control(events) => write!(f, "{} control events", events.len()),
        }
    }
}

/// What applying a committed entry answers its proposer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The log index of the entry.
    pub index: u64,
    /// How many of its events were applied (0 when all were applied before).
    pub events: u32,
}

openraft::declare_raft_types!(
    /// The openraft type configuration of every ledger group.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
);
