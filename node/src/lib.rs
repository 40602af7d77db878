//! The ledger node: the writer that turns a region's commands into log
//! entries, the public and operators' gRPC APIs, the client used by the
//! `ledger` command line, and `ledger dev`.
//!
//! Built so far: one batching writer per node (decide against everything
//! committed, commit one entry per batch, answer after commit), the gRPC
//! services, `ledger node`, `ledger dev` with a demonstration, and the CLI.
//! The account and saga actors (ractor), the HTTP/JSON gateway and
//! telemetry come next.

mod actors;
pub mod api;
pub mod bench;
pub mod client;
pub mod config;
pub mod demo;
pub mod dev;
pub mod ids;
pub mod runtime;
pub mod saga;
pub mod wire;
