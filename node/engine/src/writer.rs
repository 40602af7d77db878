//! The writer's decisions: when the next entry of the region's log may be
//! assembled, and what goes into it.
//!
//! The writer is the only proposer of its region's log on the leader, with
//! one entry in flight. Before each entry the state must hold everything
//! that may still commit: after a proposal of unknown fate, nothing is
//! decided again until an empty entry proposed behind it has been applied
//! (then so has everything before it in the log), or a new term has settled
//! it (the new leader's first entry either holds it or it is gone). Then
//! [`EntryWriter::assemble`] takes the candidates gathered since the last
//! entry, in order, and the grants the region owes, one candidate per
//! source region, through [`admit`]: so the entry always applies.
//!
//! The executor (the node's writer actor, the simulation) carries out what
//! this decides: it proposes, waits for the read barrier, resets the gate
//! and answers the candidates' commands.

use crate::{Candidate, Drops, GateView, Refusal, admit};
use ledger_hlc::Stamp;
use ledger_reservations::{AdmissionScratch, Event, Grants, Ledger, RegionId, Reject};

/// How a proposal of an entry failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalFailure {
    /// Nothing was appended (this node does not lead).
    NotAppended,
    /// It may still commit: a deadline passed, or the entry was appended
    /// and then cut from this node's log.
    Unknown,
}

/// Why the next grant from a source region waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantHeld {
    /// It could not be decided against the committed state.
    Undecided(Reject),
    /// It was decided, and admission refused it.
    Refused(Refusal),
}

/// One entry, assembled.
#[derive(Debug)]
pub struct Assembled {
    /// Each candidate's verdict, in the order they were given: the events of
    /// the admitted ones, in that order, open the entry.
    pub verdicts: Vec<Result<(), Refusal>>,
    /// The grants admitted: they close the entry.
    pub grants: Vec<Event>,
    /// Source regions whose next grant waits, and why.
    pub held: Vec<(RegionId, GrantHeld)>,
}

/// The size of a submission or an entry: its events, and their bytes as
/// the log encodes them. As a bound, an entry holds at most this much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntrySize {
    pub events: usize,
    pub bytes: usize,
}

/// How many of the submissions gathered, of these sizes, the next entry
/// takes: the longest prefix within `max` (events and bytes both), and at
/// least one (a submission larger than an entry goes in alone). Taking a
/// prefix keeps each decider's submissions in the order it decided them.
pub fn entry_batch(sizes: impl IntoIterator<Item = EntrySize>, max: EntrySize) -> usize {
    let mut total = EntrySize::default();
    let mut count = 0;
    for size in sizes {
        total.events = total.events.saturating_add(size.events);
        total.bytes = total.bytes.saturating_add(size.bytes);
        if (total.events > max.events || total.bytes > max.bytes) && count > 0 {
            break;
        }
        count += 1;
    }
    count
}

/// What the writer keeps from one entry to the next.
#[derive(Debug, Default)]
pub struct EntryWriter {
    drops: Drops,
    scratch: AdmissionScratch,
    /// The Raft term of the last entry assembled.
    term: Option<u64>,
    /// The term in which an entry of this leader became of unknown fate.
    unsettled_term: Option<u64>,
}

impl EntryWriter {
    /// A proposal made in `term` failed. Either way the executor resets the
    /// gate (no decision may count on the entry, whichever way it goes);
    /// with its fate unknown, the next entry also waits until it is settled.
    pub fn proposal_failed(&mut self, failure: ProposalFailure, term: Option<u64>) {
        // Chaos bite `unsettled-barrier` (audit finding 4 put back).
        #[cfg(feature = "chaos-bite")]
        if ledger_reservations::bite::is(ledger_reservations::bite::Bite::UnsettledBarrier) {
            return;
        }
        if failure == ProposalFailure::Unknown {
            self.unsettled_term = term;
        }
    }

    /// Whether an empty entry must be proposed and applied before the next
    /// entry is assembled, now that the region's log is in `term`. In a new
    /// term there is nothing left to settle: the new leader's first entry
    /// settled it.
    pub fn must_settle(&mut self, term: Option<u64>) -> bool {
        match self.unsettled_term {
            Some(unsettled) if Some(unsettled) == term => true,
            Some(_) => {
                self.unsettled_term = None;
                false
            }
            None => false,
        }
    }

    /// The empty entry behind the unknown one has been applied here.
    pub fn settled(&mut self) {
        self.unsettled_term = None;
    }

    /// The read barrier passed with the region's log in `term`. Returns
    /// whether the term is new: the gate's fence must then close, to reopen
    /// at the state the barrier left, so that no decision made against a
    /// state from before another leader's entries goes in.
    pub fn barrier_passed(&mut self, term: Option<u64>) -> bool {
        let new = term != self.term;
        self.term = term;
        new
    }

    /// Assembles the next entry over `ledger`'s committed state with the
    /// entry's one `stamp`: each candidate, in order, goes in if [`admit`]
    /// admits it; then the grants the region owes, as many as fit in
    /// `max_events`, one candidate per source region so that a grant that
    /// cannot be taken in holds up only the later grants of its own source.
    pub fn assemble<'c>(
        &mut self,
        ledger: &Ledger,
        gate: GateView,
        stamp: Stamp,
        max_events: usize,
        candidates: impl IntoIterator<Item = Candidate<'c>>,
    ) -> Assembled {
        let Self { drops, scratch, .. } = self;
        let region = ledger.home_state();
        let applied = region.applied().map_or(0, |position| position.index);
        let mut entry = region.admission(stamp, scratch);
        let verdicts = candidates
            .into_iter()
            .map(|candidate| admit(&mut entry, drops, gate, candidate))
            .collect();
        let mut grants = Vec::new();
        let mut held = Vec::new();
        let room = max_events.saturating_sub(entry.admitted());
        for Grants {
            source,
            mut events,
            refused,
        } in ledger.decide_grants(stamp, room)
        {
            if let Some(reject) = refused {
                held.push((source, GrantHeld::Undecided(reject)));
            }
            if events.is_empty() {
                continue;
            }
            let candidate = Candidate {
                events: &mut events,
                epoch: gate.epoch,
                base: applied,
                decider: None,
            };
            match admit(&mut entry, drops, gate, candidate) {
                Ok(()) => grants.append(&mut events),
                Err(refusal) => held.push((source, GrantHeld::Refused(refusal))),
            }
        }
        Assembled {
            verdicts,
            grants,
            held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_outcome_is_settled_in_its_term_and_by_a_new_term() {
        let mut writer = EntryWriter::default();
        assert!(!writer.must_settle(Some(3)), "nothing to settle");
        writer.proposal_failed(ProposalFailure::NotAppended, Some(3));
        assert!(!writer.must_settle(Some(3)), "nothing was appended");

        writer.proposal_failed(ProposalFailure::Unknown, Some(3));
        assert!(writer.must_settle(Some(3)));
        assert!(writer.must_settle(Some(3)), "until it is settled");
        writer.settled();
        assert!(!writer.must_settle(Some(3)));

        writer.proposal_failed(ProposalFailure::Unknown, Some(3));
        assert!(!writer.must_settle(Some(4)), "the new term settled it");
        assert!(!writer.must_settle(Some(3)), "and it stays settled");
    }

    #[test]
    fn an_entry_takes_the_longest_prefix_that_fits_and_at_least_one() {
        let max = EntrySize {
            events: 10,
            bytes: 1_000,
        };
        let events = |sizes: &[usize]| -> Vec<EntrySize> {
            sizes
                .iter()
                .map(|&events| EntrySize {
                    events,
                    bytes: events,
                })
                .collect()
        };
        assert_eq!(entry_batch(events(&[]), max), 0);
        assert_eq!(entry_batch(events(&[4, 6, 1]), max), 2);
        assert_eq!(
            entry_batch(events(&[4, 7, 1]), max),
            1,
            "a prefix: 1 waits behind 7"
        );
        assert_eq!(
            entry_batch(events(&[12, 1]), max),
            1,
            "too large goes in alone"
        );
    }

    #[test]
    fn an_entry_is_bounded_in_bytes_as_well_as_events() {
        let max = EntrySize {
            events: 10,
            bytes: 1_000,
        };
        let bytes = |sizes: &[usize]| -> Vec<EntrySize> {
            sizes
                .iter()
                .map(|&bytes| EntrySize { events: 1, bytes })
                .collect()
        };
        assert_eq!(entry_batch(bytes(&[400, 500, 100, 1]), max), 3);
        assert_eq!(entry_batch(bytes(&[400, 700, 1]), max), 1);
        assert_eq!(
            entry_batch(bytes(&[5_000, 1]), max),
            1,
            "too large goes in alone"
        );
    }

    #[test]
    fn the_first_barrier_of_a_term_closes_the_fence() {
        let mut writer = EntryWriter::default();
        assert!(writer.barrier_passed(Some(1)));
        assert!(!writer.barrier_passed(Some(1)));
        assert!(writer.barrier_passed(Some(2)));
        assert!(writer.barrier_passed(None), "no term is a change too");
    }
}
