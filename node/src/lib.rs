//! The `ledger` node: account and saga actors, the gRPC and HTTP/JSON
//! servers, configuration, telemetry and the `ledger` command line.
//!
//! Empty for now: the node issue builds it, and with it the `ledger` binary
//! and `ledger dev`.
