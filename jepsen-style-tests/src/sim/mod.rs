//! The whole cluster in one process, on a simulated network, disk and
//! clock: one seed decides every fault, every client's choice and every
//! scheduling choice, so one seed is one run, replayed byte for byte.
//!
//! Every node runs the real code of `replication`, the engine and `node`
//! (its groups, log store and state machine over a simulated disk, its
//! writer, account and saga actors, its API handlers); only the network
//! between the Raft groups ([`net`]), time and randomness ([`hosts`]) and
//! the disk ([`disk`]) are simulated. The clients draw the chaos suite's
//! workload and the run is judged by its checkers (`check::CHECKERS`),
//! from the same history and final views.

pub mod client;
pub mod disk;
pub mod hosts;
pub mod nemesis;
pub mod net;
mod world;

pub use world::{Options, Report, run};
