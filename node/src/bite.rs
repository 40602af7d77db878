//! Chaos bites (the `chaos-bite` feature, for tests only): a node setting,
//! `chaos_bite`, that breaks one invariant on purpose so that the chaos
//! suite can show its checkers catch it. The bites and the process-wide
//! setting live in the core ([`ledger_reservations::bite`]), where most of
//! the code they break is; the node's own breakages read the same setting:
//! `answer-before-commit` in the writer (`actors::writer`) and the node's
//! half of `decide-retry-elsewhere` in the API (`api`, which then decides a
//! call's commands of other regions instead of sending them on).

pub use ledger_reservations::bite::{Bite, current, is};

/// Sets this process's bite from the node's settings, before any log is
/// applied, and says loudly when one is on.
pub fn arm(bite: Option<Bite>) {
    ledger_reservations::bite::set(bite);
    if let Some(bite) = bite {
        tracing::warn!(
            "chaos bite {} is on: this node breaks {} on purpose",
            bite.name(),
            bite.breaks()
        );
    }
}
