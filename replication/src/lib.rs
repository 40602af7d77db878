//! Regional Raft logs.
//!
//! One Raft group per region (voters: that region's nodes; learners: every
//! node of every other region) and one global control group. Entries are
//! batches of HLC-stamped events; committed entries are applied to this
//! node's [`ledger_reservations::Ledger`]: a region's own group drives that
//! region's state, every other group this node's replica of it.
//!
//! openraft (pinned to an exact alpha) stays inside this crate: the rest of
//! the project uses the types below, never openraft's.
//!
//! - [`LogStore`]: the durable log on redb (one fsync per append batch,
//!   checksummed records, a corrupt tail cut on open);
//! - [`StateMachine`]: applies committed entries, keeps checksummed snapshots;
//! - [`ReplicaNode`]: a node's groups, membership changes, the grant round;
//! - [`Transport`]: the Raft network, over gRPC ([`GrpcTransport`]) or inside
//!   one process ([`LocalTransport`]); [`Faults`] cuts links for chaos tests.

mod codec;
mod config;
mod disk;
mod faults;
mod gate;
mod grpc;
mod local;
mod log_store;
mod network;
mod node;
pub mod rt;
mod state_machine;
mod traces;

mod types;

pub use codec::CodecError;
pub use config::{ConfigError, ReplicaConfig};
pub use disk::Storage;
pub use faults::Faults;
pub use gate::{Gate, GateLayer, Gated, InvalidKey, Open, bearer};
pub use grpc::{GrpcTransport, Heard, RAFT_MESSAGE_BYTES_MAX, RaftService, serve};
pub use local::LocalTransport;
pub use log_store::{LogStore, OpenReport};
pub use network::{
    APPEND_BYTES_MAX, Ballot, DEADLINE_MAX, Deadlines, LINK_BYTES_PER_S_DEFAULT, Peer, Transport,
    TransportError, carry_time, entry_bytes,
};
pub use node::{
    GrantError, GroupProgress, Layout, LayoutError, NodeConfig, NodeError, ProposeError,
    ReplicaNode, Timings,
};
pub use state_machine::{SharedLedger, StateMachine};

pub use traces::{EntryTrace, TraceBook, TraceContext, TraceKey};
pub use types::{Applied, Group, Proposal, event_bytes};

#[doc(hidden)]
pub mod raft_types {
    //! The openraft type configuration, for this crate's own tests.
    pub use crate::types::TypeConfig;
}
