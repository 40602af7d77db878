//! Chaos tests of a running cluster through its public API only.
//!
//! What is here so far: the bank workload ([`bank`], [`workload`]), run by
//! clients in every region against any cluster whose layout addresses this
//! machine can reach; a history of every operation ([`history`]); the final
//! reads of every node once they converge ([`observe`]); and the checkers,
//! one invariant each, that read only those two ([`check`]); and a plot of
//! throughput and latency over time with the faults shaded ([`plot`]). The deploy
//! test (`deploy/test`) drives them against the Compose cluster. The
//! harness with network namespaces and the nemeses are still to come.

pub mod bank;
pub mod check;
pub mod cluster;
pub mod delay;
pub mod history;
pub mod keys;
pub mod nemesis;
pub mod net;
pub mod observe;
pub mod ops;
pub mod plot;
pub mod probe;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod workload;
