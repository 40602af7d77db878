//! Chaos tests of a running cluster through its public API: the cluster
//! harness, bank workloads, nemeses (partitions, kills, pauses, clock skew),
//! history recording and checkers, and the deterministic simulation.
//!
//! Empty for now: later issues build it on the node.
