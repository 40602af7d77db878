//! Chaos bites: one invariant broken on purpose, so that the chaos suite
//! can show its checkers catch a real bug (STYLE 12: prove a checker can
//! fail by putting a known bug back in). Compiled only with the
//! `chaos-bite` feature, which no release build enables; each breakage sits
//! beside the code it breaks, behind the same feature.
//!
//! The bite is one per process: a node sets it at start, before it applies
//! any log, from its `chaos_bite` setting, and the code it breaks reads it.
//! A process-wide setting rather than a parameter, so that the breakages
//! add no argument to code that release builds run. Every node of a
//! cluster must run the same bite: the bites in the apply path
//! (`skip-pool-check`, `grant-twice`) would otherwise make replicas of one
//! log disagree, or stop a node without the bite on an entry it cannot
//! apply.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU8, Ordering};

/// One invariant to break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bite {
    /// Breaks invariant 1 (a bounded account is never below zero): a
    /// debit of a bounded account is decided without looking at its pool
    /// in this region (so no pull is asked either), and applying lets the
    /// pool go below zero. For the `not-negative` checker.
    SkipPoolCheck,
    /// Breaks invariants 3 and 4 (balances sum to zero; a release is
    /// granted once): the region taking in a grant credits it twice, so
    /// the release's amount is created. For `totals` and
    /// `balances-explained`.
    GrantTwice,
    /// Breaks "a client is answered only after its events are committed"
    /// (DESIGN section 5): the leader's writer answers commands as applied
    /// as soon as it receives their events, before the read barrier,
    /// admission and the proposal. An entry that never commits loses
    /// acknowledged transfers. For `acknowledged-kept`.
    AnswerBeforeCommit,
    /// Breaks "only a transfer's origin region decides it" (DESIGN section
    /// 3, decision 0009): a node decides the ids of other regions it
    /// receives instead of sending them on, so a retry sent to a second
    /// region is applied there a second time. For `one-decision` and
    /// `balances-explained`.
    DecideRetryElsewhere,
    /// Puts back audit finding 4 (2026-12-01, the write path): after a
    /// proposal of unknown fate the leader's writer decides again at once,
    /// against a state that may lack the entry still in flight, instead of
    /// settling it first. A transfer retried (or a debit the entry spent)
    /// is then decided twice: an entry that cannot apply. For the
    /// whole-cluster simulation (a region that stops).
    UnsettledBarrier,
    /// Puts back audit finding 5: the writer admits a submission whose
    /// decider counted on one that was dropped, without checking it
    /// applies (as the writer did before admission checked every
    /// candidate). For the simulation.
    AdmitDependent,
    /// Puts back audit finding 2 as it was: a request holding one transfer
    /// twice starts a pull saga per copy, and the writer admits an ask for
    /// a pull without checking the pull is not asked already (it checked
    /// transfers only). Two asks of one pull reach the log. For the
    /// simulation.
    PullPerCopy,
    /// Puts back the kind of audit findings 2, 3 and 7 (a decision that
    /// slipped past the deciders' views enters the log): admission lets in
    /// a candidate whose events do not apply after what the entry holds.
    /// Finding 7 itself (an actor parked past its deadline deciding beside
    /// its coordinator) cannot be put back alone: admission refuses the
    /// second decision. For the simulation.
    AdmitUnchecked,
    /// Puts back audit finding 9: entries are bounded in events only, an
    /// append carries its whole batch however many bytes, and every Raft
    /// RPC has the same fixed deadline whatever it carries. An entry too
    /// large to cross a slow link within the deadline is sent again for
    /// ever, and the nodes beyond that link never apply it. For the
    /// simulation (views that never converge).
    BytesUnbounded,
}

impl Bite {
    pub const ALL: [Bite; 9] = [
        Bite::SkipPoolCheck,
        Bite::GrantTwice,
        Bite::AnswerBeforeCommit,
        Bite::DecideRetryElsewhere,
        Bite::UnsettledBarrier,
        Bite::AdmitDependent,
        Bite::AdmitUnchecked,
        Bite::PullPerCopy,
        Bite::BytesUnbounded,
    ];

    /// Its name in the settings.
    pub const fn name(self) -> &'static str {
        match self {
            Bite::SkipPoolCheck => "skip-pool-check",
            Bite::GrantTwice => "grant-twice",
            Bite::AnswerBeforeCommit => "answer-before-commit",
            Bite::DecideRetryElsewhere => "decide-retry-elsewhere",
            Bite::UnsettledBarrier => "unsettled-barrier",
            Bite::AdmitDependent => "admit-dependent",
            Bite::AdmitUnchecked => "admit-unchecked",
            Bite::PullPerCopy => "pull-per-copy",
            Bite::BytesUnbounded => "bytes-unbounded",
        }
    }

    /// The invariant it breaks, in words.
    pub const fn breaks(self) -> &'static str {
        match self {
            Bite::SkipPoolCheck => "\"no user account below zero\" (invariant 1)",
            Bite::GrantTwice => {
                "\"each release granted once, balances sum to zero\" (invariants 3, 4)"
            }
            Bite::AnswerBeforeCommit => "\"a client is answered only after its commit\"",
            Bite::DecideRetryElsewhere => "\"only a transfer's origin region decides it\"",
            Bite::UnsettledBarrier
            | Bite::AdmitDependent
            | Bite::AdmitUnchecked
            | Bite::PullPerCopy => "\"a committed entry always applies\"",
            Bite::BytesUnbounded => "\"no input or fault may stop a region\"",
        }
    }

    fn code(bite: Option<Bite>) -> u8 {
        match bite {
            None => 0,
            Some(bite) => Self::ALL
                .iter()
                .position(|one| *one == bite)
                .map_or(0, |index| index as u8 + 1),
        }
    }
}

/// The process's bite: 0 for none, else its place in [`Bite::ALL`] plus 1.
static BITE: AtomicU8 = AtomicU8::new(0);

/// Sets the process's bite (`None`: none).
pub fn set(bite: Option<Bite>) {
    BITE.store(Bite::code(bite), Ordering::Relaxed);
}

/// The process's bite, if any.
pub fn current() -> Option<Bite> {
    let code = BITE.load(Ordering::Relaxed);
    Bite::ALL.get(usize::from(code).checked_sub(1)?).copied()
}

/// Whether `bite` is the process's bite.
pub fn is(bite: Bite) -> bool {
    current() == Some(bite)
}
