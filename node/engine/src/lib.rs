//! The region leader's decisions as a pure, synchronous engine: inputs in,
//! what to do out; no tokio, no actors, no Raft, no clock reads (DESIGN
//! section 2, decision 0008).
//!
//! So far it holds the rule every other part of the write path rests on,
//! **a committed entry always applies**: [`admit`] decides what enters an
//! entry of the region's log.

mod admit;

pub use admit::{Candidate, Decider, Drops, GateView, Refusal, admit};
