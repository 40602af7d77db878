//! The `.proto` files of the public API, the admin API and the internal
//! Raft/replication service, and the code generated from them.
//!
//! Empty for now: the Raft transport and the node issues fill it.
