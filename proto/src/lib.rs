//! The `.proto` files of the ledger and the code generated from them.
//!
//! - `ledger.internal.v1`: the Raft transport between nodes (used by
//!   `ledger-replication`).
//!
//! - `ledger.v1`: the public API (`Ledger`) and the operators' (`Admin`).

pub mod v1 {
    tonic::include_proto!("ledger.v1");
}

pub mod internal {
    pub mod v1 {
        tonic::include_proto!("ledger.internal.v1");
    }
}
