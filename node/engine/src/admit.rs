//! Admission: which decided candidates go into the next entry of the
//! region's log.
//!
//! Deciders (account actors, coordinators, the grant round) decide
//! concurrently, each against its own view: the committed state plus its
//! own events in flight. No view holds everything, so a decision can be
//! wrong by the time it reaches the log: another decider credited the same
//! account, took the same id, asked the same pull, or a submission this one
//! counted on was dropped. [`admit`] is the one place that settles it: a
//! candidate goes in only if it was decided in the current epoch against a
//! state past the fence, counted on nothing that was dropped, and every one
//! of its events applies, with the entry's stamp, after everything admitted
//! before it ([`ledger_reservations::Admission`], the log's own apply).

use ledger_reservations::{Admission, ApplyError, Event, Reject};
use std::collections::BTreeMap;

/// The decider of a candidate whose later candidates count on it: an
/// account actor deciding over its own events in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decider {
    /// Unique among the deciders alive at once.
    pub id: u64,
    /// How many of its candidates of this epoch it had been told were
    /// dropped when it decided this one.
    pub drops_seen: u64,
}

/// How many candidates of each decider were dropped in the current epoch.
/// A decider that decided a candidate before hearing of a drop may have
/// counted on the dropped one: that candidate is dropped too.
#[derive(Debug, Default)]
pub struct Drops {
    epoch: u64,
    told: BTreeMap<u64, u64>,
}

impl Drops {
    fn of(&mut self, epoch: u64, decider: u64) -> &mut u64 {
        if epoch != self.epoch {
            // A new epoch: every decider dropped what it held in flight.
            self.told.clear();
            self.epoch = epoch;
        }
        self.told.entry(decider).or_insert(0)
    }

    /// How many candidates of `decider` were dropped in `epoch`.
    pub fn told(&self, epoch: u64, decider: u64) -> u64 {
        if epoch != self.epoch {
            return 0;
        }
        self.told.get(&decider).copied().unwrap_or(0)
    }

    /// Records that a candidate decided in `epoch` was dropped, while the
    /// gate is at `gate_epoch`: every drop its decider is told of in the
    /// gate's epoch must be counted here, or a later drop would go
    /// unnoticed. (A drop outside admission comes with a reset of the gate,
    /// which voids the whole epoch instead.)
    fn dropped(&mut self, gate_epoch: u64, epoch: u64, decider: Option<Decider>) {
        if let Some(decider) = decider
            && epoch == gate_epoch
        {
            *self.of(gate_epoch, decider.id) += 1;
        }
    }
}

/// The gate as it stands when the entry is assembled: decisions of an
/// earlier epoch, or made against a state before the fence, are stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateView {
    pub epoch: u64,
    pub fence: u64,
}

/// A decided candidate for the entry.
#[derive(Debug)]
pub struct Candidate<'e> {
    pub events: &'e mut [Event],
    /// The gate's epoch when it was decided.
    pub epoch: u64,
    /// The index of the region's log the deciding state held.
    pub base: u64,
    pub decider: Option<Decider>,
}

/// Why a candidate was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Decided in an earlier epoch, or against a state the leader has since
    /// moved past.
    Stale,
    /// Its decider counted on a candidate that was dropped.
    Dependent,
    /// One of its events does not apply after what the entry holds.
    DoesNotApply(ApplyError),
}

impl Refusal {
    /// The rejection a client gets for the commands of a refused candidate,
    /// when the refusal is final for the command itself; `None` when the
    /// same command may succeed if decided again.
    pub fn reject(&self) -> Option<Reject> {
        match self {
            Refusal::DoesNotApply(ApplyError::OutOfRange { account, .. }) => {
                Some(Reject::BalanceOverflow(*account))
            }
            _ => None,
        }
    }

    /// Why, in words, for a retryable answer.
    pub fn reason(&self) -> String {
        match self {
            Refusal::Stale => "decided against a view the leader has since moved past".into(),
            Refusal::Dependent => "decided counting on a command that was not committed".into(),
            Refusal::DoesNotApply(ApplyError::DuplicateTransfer { id, .. }) => {
                format!("another command took id {id} at the same time; retry to learn which")
            }
            Refusal::DoesNotApply(error) => {
                format!("decided against a view another decision changed ({error})")
            }
        }
    }
}

/// Takes a candidate into the entry, or says why not. Refusing a
/// candidate of a decider refuses, later, every candidate that decider
/// decided before it heard of the refusal.
pub fn admit(
    entry: &mut Admission<'_>,
    drops: &mut Drops,
    gate: GateView,
    candidate: Candidate<'_>,
) -> Result<(), Refusal> {
    if candidate.epoch != gate.epoch {
        // Its decider drops everything of an earlier epoch by itself.
        return Err(Refusal::Stale);
    }
    let verdict = match candidate.decider {
        _ if candidate.base < gate.fence => Err(Refusal::Stale),
        Some(decider) if decider.drops_seen < drops.told(gate.epoch, decider.id) => {
            // Chaos bite `admit-dependent` (audit finding 5 put back).
            #[cfg(feature = "chaos-bite")]
            if ledger_reservations::bite::is(ledger_reservations::bite::Bite::AdmitDependent) {
                return Ok(());
            }
            Err(Refusal::Dependent)
        }
        _ => entry.admit(candidate.events).map_err(Refusal::DoesNotApply),
    };
    #[cfg(feature = "chaos-bite")]
    if let Err(Refusal::DoesNotApply(error)) = &verdict
        && unchecked(error, candidate.events)
    {
        return Ok(());
    }
    if verdict.is_err() {
        // Its decider's later candidates of this epoch, decided before it
        // hears of this, may count on this one.
        drops.dropped(gate.epoch, candidate.epoch, candidate.decider);
    }
    verdict
}

/// Whether a chaos bite lets in a candidate that does not apply: any
/// (`admit-unchecked`), or an ask for a pull
/// already asked (`pull-per-copy`: the writer of finding 2 checked
/// transfers only).
#[cfg(feature = "chaos-bite")]
fn unchecked(error: &ApplyError, events: &[Event]) -> bool {
    use ledger_reservations::bite::{Bite, current};
    match current() {
        Some(Bite::AdmitUnchecked) => true,
        Some(Bite::PullPerCopy) => {
            matches!(error, ApplyError::DuplicateTransfer { .. })
                && events.iter().any(|event| {
                    matches!(
                        event.body,
                        ledger_reservations::EventBody::PullRequested { .. }
                    )
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
