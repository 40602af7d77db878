//! The `.proto` files of the ledger and the code generated from them.
//!
//! - `ledger.internal.v1`: the Raft transport between nodes (used by
//!   `ledger-replication`).
//!
//! The public and admin APIs arrive with the node.

pub mod internal {
    pub mod v1 {
        tonic::include_proto!("ledger.internal.v1");
    }
}
