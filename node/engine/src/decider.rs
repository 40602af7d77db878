//! An account's decider: it decides the commands that take from one
//! account's pool against the committed state **plus its own events in
//! flight**, so one account has many transfers in flight and none waits for
//! another's commit.
//!
//! It keeps what it handed to the writer until the committed state holds it
//! (the writer commits one decider's submissions in order), forgets
//! everything of an earlier epoch of the gate, and drops a submission the
//! writer says it did not propose, counting the drop: each later submission
//! says how many drops its decider had heard of, so that admission refuses
//! those decided counting on a dropped one ([`crate::admit`]).
//!
//! The executor (an account actor on the node, a decider of the simulation)
//! hands it the committed state, the gate's epoch, the drops the writer told
//! of and a stamp, and carries out what it returns.

use crate::Decider;
use ledger_hlc::Stamp;
use ledger_reservations::{
    AccountId, ApplyError, Batch, Event, EventBody, Item, Ledger, Outcome, Reject, Scratch,
};
use std::collections::{BTreeSet, VecDeque};

/// How one command of a decided batch is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Refused: answered at once.
    Rejected(Reject),
    /// Its events are in the submission: answered once its entry is.
    InEntry,
    /// A repeat (same id and content) of a command of the same batch: it
    /// stands or falls with that one, and is answered with it.
    RepeatInEntry,
    /// The same command is in flight from an earlier batch: retry to learn
    /// its outcome.
    BeingCommitted,
    /// Committed before: answered at once.
    CommittedBefore,
    /// The batch takes from an account other than the decider's: nothing
    /// of it may reach the log; retry.
    NotOwn,
}

/// How each command of a batch is answered: `events` and `in_flight` say
/// which repeats are of the batch itself and which of a command still in
/// flight; when the batch is not `own`, the commands whose events are in it
/// are answered [`Verdict::NotOwn`].
pub fn verdicts(items: &[Item], batch: &Batch, in_flight: &[Event], own: bool) -> Vec<Verdict> {
    let decided_by = |events: &[Event], item: &Item| {
        events.iter().any(|event| item.command.is_decided_by(event))
    };
    batch
        .outcomes
        .iter()
        .zip(items)
        .map(|(outcome, item)| match outcome {
            Err(reject) => Verdict::Rejected(reject.clone()),
            Ok(Outcome::Appended(_)) if own => Verdict::InEntry,
            Ok(Outcome::AlreadyApplied) if decided_by(&batch.events, item) => {
                if own {
                    Verdict::RepeatInEntry
                } else {
                    Verdict::NotOwn
                }
            }
            Ok(Outcome::Appended(_)) => Verdict::NotOwn,
            Ok(Outcome::AlreadyApplied) if decided_by(in_flight, item) => Verdict::BeingCommitted,
            Ok(Outcome::AlreadyApplied) => Verdict::CommittedBefore,
        })
        .collect()
}

/// A unit decided by a coordinator.
#[derive(Debug)]
pub struct Coordinated {
    /// One per command, in order.
    pub verdicts: Vec<Verdict>,
    /// For the writer; empty when no command's events are in it.
    pub events: Vec<Event>,
    /// The index of the region's log the deciding state held.
    pub base: u64,
}

/// Decides a unit that takes from several accounts, from one the
/// committed state does not know, or moves a release: against the committed
/// state alone, which the coordinator may do only once the deciders of the
/// `parked` accounts hold nothing in flight. Every event that takes from a
/// pool must take from a parked account's (an ask for a pull takes from
/// none); otherwise nothing of it reaches the log.
pub fn coordinate(
    ledger: &Ledger,
    parked: &BTreeSet<AccountId>,
    stamp: Stamp,
    items: &[Item],
) -> Coordinated {
    let batch = ledger.decide_batch(items, stamp);
    let home = ledger.home_state();
    let own = batch.events.iter().all(|event| match home.debit_of(event) {
        Some(account) => parked.contains(&account),
        None => matches!(event.body, EventBody::PullRequested { .. }),
    });
    let verdicts = verdicts(items, &batch, &[], own);
    let events = if verdicts.contains(&Verdict::InEntry) {
        batch.events
    } else {
        Vec::new()
    };
    Coordinated {
        verdicts,
        events,
        base: home.applied().map_or(0, |position| position.index),
    }
}

/// Events of a decider for the writer.
#[derive(Debug)]
pub struct Submitted {
    pub events: Vec<Event>,
    /// The decider's number for it: the writer names it when it drops it.
    pub seq: u64,
    /// The gate's epoch it was decided in.
    pub epoch: u64,
    /// The index of the region's log the deciding state held.
    pub base: u64,
    pub decider: Decider,
}

/// A batch of commands, decided.
#[derive(Debug)]
pub struct Decided {
    /// One per command, in order.
    pub verdicts: Vec<Verdict>,
    /// For the writer, when some command's events are in it.
    pub submission: Option<Submitted>,
}

/// One account's decider.
#[derive(Debug)]
pub struct AccountDecider {
    account: AccountId,
    /// Unique among the deciders alive at once.
    id: u64,
    /// The gate's epoch of everything below.
    epoch: u64,
    /// Events handed to the writer and not yet seen committed.
    events: Vec<Event>,
    /// (submission number, how many events), in order.
    marks: VecDeque<(u64, usize)>,
    /// How many of this epoch's submissions the writer dropped, as far as
    /// this decider has heard.
    drops_seen: u64,
    submissions: u64,
    scratch: Scratch,
    batch: Batch,
}

impl AccountDecider {
    pub fn new(account: AccountId, id: u64) -> Self {
        Self {
            account,
            id,
            epoch: 0,
            events: Vec::new(),
            marks: VecDeque::new(),
            drops_seen: 0,
            submissions: 0,
            scratch: Scratch::default(),
            batch: Batch::default(),
        }
    }

    /// How many of its submissions are in flight.
    pub fn in_flight(&self) -> usize {
        self.marks.len()
    }

    /// Catches up with the gate's `epoch` (a new one voids everything in
    /// flight), with the submissions the writer `dropped`, as (number,
    /// epoch), and, from the front, with what the committed state holds.
    pub fn prune(
        &mut self,
        ledger: &Ledger,
        epoch: u64,
        dropped: impl IntoIterator<Item = (u64, u64)>,
    ) {
        if self.epoch != epoch {
            self.clear();
            self.drops_seen = 0;
            self.epoch = epoch;
        }
        for (seq, of) in dropped {
            if of == self.epoch {
                self.drops_seen += 1;
                self.drop_submission(seq);
            }
        }
        let home = ledger.home_state();
        let mut done = 0;
        let mut events = 0;
        for (_, count) in &self.marks {
            if !self.events[events..events + count]
                .iter()
                .all(|event| home.holds(event))
            {
                break;
            }
            done += 1;
            events += count;
        }
        self.marks.drain(..done);
        self.events.drain(..events);
    }

    /// Forgets submission `seq`: it never reached the writer.
    pub fn drop_submission(&mut self, seq: u64) {
        let mut start = 0;
        for (index, (of, count)) in self.marks.iter().enumerate() {
            if *of == seq {
                self.events.drain(start..start + count);
                self.marks.remove(index);
                return;
            }
            start += count;
        }
    }

    fn clear(&mut self) {
        self.events.clear();
        self.marks.clear();
    }

    /// Decides `items` against `ledger`'s committed state plus this
    /// decider's events in flight, stamped `stamp`, after [`Self::prune`].
    /// Fails, deciding nothing and dropping everything in flight, when an
    /// event in flight no longer applies: its view was wrong.
    pub fn decide(
        &mut self,
        ledger: &Ledger,
        epoch: u64,
        dropped: impl IntoIterator<Item = (u64, u64)>,
        stamp: Stamp,
        items: &[Item],
    ) -> Result<Decided, ApplyError> {
        self.prune(ledger, epoch, dropped);
        let home = ledger.home_state();
        let base = home.applied().map_or(0, |position| position.index);
        let batch = &mut self.batch;
        if let Err(error) =
            ledger.decide_batch_over(&self.events, items, stamp, &mut self.scratch, batch)
        {
            self.clear();
            return Err(error);
        }
        // Only this decider takes from its account: a decision that takes
        // from another (a routing mistake) must not reach the log.
        let own = batch
            .events
            .iter()
            .all(|event| home.debit_of(event) == Some(self.account));
        let verdicts = verdicts(items, batch, &self.events, own);
        let submission = verdicts
            .contains(&Verdict::InEntry)
            .then(|| self.submit(base));
        Ok(Decided {
            verdicts,
            submission,
        })
    }

    /// Takes the decided batch's events in flight, for the writer.
    fn submit(&mut self, base: u64) -> Submitted {
        self.submissions += 1;
        let seq = self.submissions;
        let events = std::mem::take(&mut self.batch.events);
        self.events.extend(events.iter().cloned());
        self.marks.push_back((seq, events.len()));
        Submitted {
            events,
            seq,
            epoch: self.epoch,
            base,
            decider: Decider {
                id: self.id,
                drops_seen: self.drops_seen,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_reservations::{
        AccountKind, Command, ControlCommand, CurrencyCode, Decimal, Decision, Metadata,
        NewAccount, Position, RegionId, TransferId, TransferRequest,
    };

    const BANK: AccountId = AccountId(1);
    const ALICE: AccountId = AccountId(2);
    const BOB: AccountId = AccountId(3);
    const EPOCH: u64 = 7;

    fn stamp(ns: u64) -> Stamp {
        Stamp::from_parts(1_700_000_000_000_000_000 + ns, 0, 1)
    }

    fn usd() -> CurrencyCode {
        CurrencyCode::new("USD").expect("a valid code")
    }

    fn pay(id: u128, debit: AccountId, credit: AccountId, cents: i64) -> Item {
        Item::single(Command::Transfer(TransferRequest {
            id: TransferId(id),
            debit,
            credit,
            amount: Decimal::new(cents, 2),
            currency: usd(),
            reference: None,
            metadata: Metadata::new(),
        }))
    }

    /// One region; Alice holds 1.00 there, committed at index 1.
    fn ledger() -> Ledger {
        let mut ledger = Ledger::new(RegionId(0), &[RegionId(0)]).expect("a valid layout");
        let accounts = [
            (BANK, AccountKind::External),
            (ALICE, AccountKind::User),
            (BOB, AccountKind::User),
        ];
        for (index, (id, kind)) in accounts.into_iter().enumerate() {
            let command = ControlCommand::CreateAccount(NewAccount {
                id,
                currency: usd(),
                kind,
                owner: format!("owner {id}"),
                metadata: Metadata::new(),
            });
            let Ok(Decision::Append(event)) = ledger.decide_control(&command, stamp(0)) else {
                panic!("account {id} not created");
            };
            ledger
                .apply_control(Position::new(index as u64 + 1, 0), &event)
                .expect("the control log applies");
        }
        commit(&mut ledger, 1, &[pay(1, BANK, ALICE, 100)]);
        ledger
    }

    /// Decides `items` against the committed state alone and commits them
    /// at `index`.
    fn commit(ledger: &mut Ledger, index: u64, items: &[Item]) {
        let batch = ledger.decide_batch(items, stamp(index));
        for (offset, event) in batch.events.iter().enumerate() {
            ledger
                .apply(RegionId(0), Position::new(index, offset as u32), event)
                .expect("applies");
        }
    }

    fn decide(decider: &mut AccountDecider, ledger: &Ledger, items: &[Item]) -> Decided {
        decider
            .decide(ledger, EPOCH, [], stamp(10), items)
            .expect("in flight fits")
    }

    #[test]
    fn a_second_debit_counts_the_first_in_flight() {
        let ledger = ledger();
        let mut alice = AccountDecider::new(ALICE, 9);
        let first = decide(&mut alice, &ledger, &[pay(2, ALICE, BOB, 60)]);
        assert_eq!(first.verdicts, vec![Verdict::InEntry]);
        let submitted = first.submission.expect("for the writer");
        assert_eq!(
            (submitted.seq, submitted.epoch, submitted.base),
            (1, EPOCH, 1)
        );
        assert_eq!(
            submitted.decider,
            Decider {
                id: 9,
                drops_seen: 0
            }
        );

        let second = decide(&mut alice, &ledger, &[pay(3, ALICE, BOB, 60)]);
        assert!(matches!(second.verdicts[..], [Verdict::Rejected(_)]));
        assert!(second.submission.is_none());
        assert_eq!(alice.in_flight(), 1);

        let again = decide(&mut alice, &ledger, &[pay(2, ALICE, BOB, 60)]);
        assert_eq!(again.verdicts, vec![Verdict::BeingCommitted]);
    }

    #[test]
    fn what_is_committed_dropped_or_of_an_old_epoch_leaves_the_flight() {
        let mut ledger = ledger();
        let mut alice = AccountDecider::new(ALICE, 9);
        for id in [2, 3] {
            decide(&mut alice, &ledger, &[pay(id, ALICE, BOB, 10)]);
        }
        assert_eq!(alice.in_flight(), 2);
        // The writer dropped the second: it goes, and later submissions
        // say so.
        alice.prune(&ledger, EPOCH, [(2, EPOCH), (1, EPOCH - 1)]);
        assert_eq!(alice.in_flight(), 1);
        let next = decide(&mut alice, &ledger, &[pay(4, ALICE, BOB, 10)]);
        let submitted = next.submission.expect("for the writer");
        assert_eq!(
            submitted.decider.drops_seen, 1,
            "the drop of an old epoch does not count"
        );

        // The first commits: it leaves from the front.
        commit(&mut ledger, 2, &[pay(2, ALICE, BOB, 10)]);
        alice.prune(&ledger, EPOCH, []);
        assert_eq!(alice.in_flight(), 1);
        // A new epoch voids the rest and the drops heard of.
        alice.prune(&ledger, EPOCH + 1, []);
        assert_eq!(alice.in_flight(), 0);
        let fresh = alice
            .decide(&ledger, EPOCH + 1, [], stamp(11), &[pay(5, ALICE, BOB, 10)])
            .expect("fits");
        assert_eq!(fresh.submission.expect("submitted").decider.drops_seen, 0);
    }

    #[test]
    fn repeats_stand_with_their_original_and_committed_ones_are_answered() {
        let ledger = ledger();
        let mut alice = AccountDecider::new(ALICE, 9);
        let batch = [pay(2, ALICE, BOB, 10), pay(2, ALICE, BOB, 10)];
        let decided = decide(&mut alice, &ledger, &batch);
        assert_eq!(
            decided.verdicts,
            vec![Verdict::InEntry, Verdict::RepeatInEntry]
        );
        let mut bank = AccountDecider::new(BANK, 10);
        let decided = decide(&mut bank, &ledger, &[pay(1, BANK, ALICE, 100)]);
        assert_eq!(decided.verdicts, vec![Verdict::CommittedBefore]);
        assert!(decided.submission.is_none());
    }

    #[test]
    fn a_batch_that_takes_from_another_account_never_reaches_the_writer() {
        let ledger = ledger();
        let mut bob = AccountDecider::new(BOB, 11);
        let decided = decide(&mut bob, &ledger, &[pay(2, ALICE, BOB, 10)]);
        assert_eq!(decided.verdicts, vec![Verdict::NotOwn]);
        assert!(decided.submission.is_none());
        assert_eq!(bob.in_flight(), 0);
    }
}
