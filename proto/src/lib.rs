//! The `.proto` files of the ledger and the code generated from them.
//!
//! - `ledger.internal.v1`: the Raft transport between nodes (used by
//!   `ledger-replication`).
//!
//! - `ledger.v1`: the public API (`Ledger`) and the operators' (`Admin`).

pub mod v1 {
    tonic::include_proto!("ledger.v1");
}

/// The encoded descriptors of every service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ledger_descriptor");

pub mod internal {
    pub mod v1 {
        tonic::include_proto!("ledger.internal.v1");
    }
}
