//! The ledger node: the account, writer and saga actors that turn a
//! region's commands into log entries, the public and operators' gRPC APIs,
//! the client used by the `ledger` command line, and `ledger dev`.
//!
//! Built: account actors deciding against committed state plus their own
//! events in flight, one writer proposing one entry at a time, saga actors
//! (withdrawals, cross-region pulls) and pool policies under a supervisor
//! (`actors`, `saga`; decision 0007); the gRPC services with strong reads,
//! history and a transfer stream; the HTTP/JSON API over the same services
//! (`http`); `ledger node`, `ledger dev` with a demonstration, and the CLI;
//! metrics (`metrics`), API keys (`auth`) and traces (`telemetry`).

mod actors;
pub mod api;
pub mod auth;
pub mod bench;
#[cfg(feature = "chaos-bite")]
pub mod bite;
pub mod client;
pub mod clock_watch;
pub mod config;
pub mod demo;
pub mod dev;
pub mod forward;
pub mod http;
pub mod ids;
pub mod members;
pub mod metrics;
pub mod runtime;
pub mod saga;
pub mod telemetry;
pub mod tls;
pub mod wire;
