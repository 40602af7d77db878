//! The region leader's decisions as a pure, synchronous engine: inputs in,
//! what to do out; no tokio, no actors, no Raft, no clock reads (DESIGN
//! section 2, decision 0008).
//!
//! It holds the rule every other part of the write path rests on, **a
//! committed entry always applies**: [`admit`] decides what enters an entry
//! of the region's log, and [`EntryWriter`] decides when the next entry may
//! be assembled (an entry of unknown fate settled first, the fence closed in
//! a new term) and assembles it from the candidates gathered and the grants
//! the region owes. [`route`] says which decider decides each unit of a
//! request, and an [`AccountDecider`] decides one account's commands over
//! its own events in flight and keeps track of them. [`due_expiries`] and
//! [`pulls_to_answer`] are the leader's own commands between calls, and
//! the sagas' steps are decided here too ([`withdrawal_answer`],
//! [`pull_asks`], [`pull_progress`], [`floor_pulls`]).

mod admit;
mod decider;
mod gate;
mod housekeeping;
mod route;
mod sagas;
mod writer;

pub use admit::{Candidate, Decider, Drops, GateView, Refusal, admit};
pub use decider::{AccountDecider, Coordinated, Decided, Submitted, Verdict, coordinate, verdicts};
pub use gate::Gate;
pub use housekeeping::{
    due_expiries, is_withdrawal, pulls_to_answer, steps_a_withdrawal, withdrawal_hold,
};
pub use ledger_reservations::{SAGA_KEY, WITHDRAWAL};
pub use route::{Route, Unit, route};
pub use sagas::{
    PULL_ROUNDS_MAX, PullNext, PullProgress, floor_pulls, pull_asks, pull_progress, step_id,
    withdrawal_answer,
};
pub use writer::{Assembled, EntrySize, EntryWriter, GrantHeld, ProposalFailure, entry_batch};
