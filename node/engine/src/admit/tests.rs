//! Admission tested by its outputs: a region state in a known shape, a few
//! candidates, and exactly which go in and why the others do not.

use super::*;
use ledger_reservations::{
    AccountId, AccountKind, AdmissionScratch, CurrencyCode, EventBody, Position,
    REGION_CREDIT_UNITS_MAX, RegionId, RegionState, Release, Stamp, Transfer, TransferId,
    TransferKind,
};

const BANK: AccountId = AccountId(1);
const ALICE: AccountId = AccountId(2);
const BOB: AccountId = AccountId(3);
const CARD: AccountId = AccountId(4);
const EPOCH: u64 = 4;
const GATE: GateView = GateView {
    epoch: EPOCH,
    fence: 10,
};

fn usd() -> CurrencyCode {
    CurrencyCode::new("USD").expect("a valid code")
}

fn stamp(ns: u64) -> Stamp {
    Stamp::from_parts(ns, 0, 1)
}

fn transfer(id: u128, debit: AccountId, credit: AccountId, units: u128) -> Event {
    let kind = |account| {
        if account == BANK || account == CARD {
            AccountKind::External
        } else {
            AccountKind::User
        }
    };
    Event {
        stamp: stamp(1),
        body: EventBody::Transfer(Transfer {
            id: TransferId(id),
            debit,
            credit,
            units,
            currency: usd(),
            debit_kind: kind(debit),
            credit_kind: kind(credit),
            kind: TransferKind::Posted,
            reference: None,
            metadata: None,
        }),
    }
}

fn pull(id: u128) -> Event {
    Event {
        stamp: stamp(1),
        body: EventBody::PullRequested {
            id: TransferId(id),
            account: ALICE,
            currency: usd(),
            kind: AccountKind::User,
            units: 5,
            from: RegionId(1),
        },
    }
}

fn release(units: u128) -> Event {
    Event {
        stamp: stamp(1),
        body: EventBody::Released {
            release: Release {
                account: ALICE,
                currency: usd(),
                kind: AccountKind::User,
                units,
            },
            to: RegionId(2),
            seq: 99,
            pull: None,
        },
    }
}

/// Region 0 with Alice holding 100 at index 10.
fn region() -> RegionState {
    let mut state = RegionState::new(RegionId(0));
    let at = Position {
        index: 10,
        offset: 0,
    };
    state
        .apply(at, &transfer(1, BANK, ALICE, 100))
        .expect("a top-up applies");
    state
}

fn candidate(events: &mut [Event], decider: Option<Decider>) -> Candidate<'_> {
    Candidate {
        events,
        epoch: EPOCH,
        base: 10,
        decider,
    }
}

fn actor(id: u64, drops_seen: u64) -> Option<Decider> {
    Some(Decider { id, drops_seen })
}

/// An entry being assembled over [`region`], with its drop counts.
struct Assembly<'a> {
    entry: Admission<'a>,
    drops: Drops,
}

impl Assembly<'_> {
    fn offer(&mut self, candidate: Candidate<'_>) -> Result<(), Refusal> {
        admit(&mut self.entry, &mut self.drops, GATE, candidate)
    }

    /// Offers events decided in the current epoch at the fence.
    fn offer_events(
        &mut self,
        events: &mut [Event],
        decider: Option<Decider>,
    ) -> Result<(), Refusal> {
        self.offer(candidate(events, decider))
    }
}

/// Runs `test` on an entry stamped at `stamp_ns` over [`region`].
fn assemble(stamp_ns: u64, test: impl FnOnce(&mut Assembly<'_>)) {
    let state = region();
    let mut scratch = AdmissionScratch::default();
    test(&mut Assembly {
        entry: state.admission(stamp(stamp_ns), &mut scratch),
        drops: Drops::default(),
    });
}

#[test]
fn a_pull_asked_twice_goes_in_once() {
    assemble(20, |assembly| {
        assert_eq!(assembly.offer_events(&mut [pull(7)], None), Ok(()));
        assert_eq!(
            assembly.offer_events(&mut [pull(7)], None),
            Err(Refusal::DoesNotApply(ApplyError::DuplicateTransfer {
                region: RegionId(0),
                id: TransferId(7)
            }))
        );
        assert_eq!(assembly.entry.admitted(), 1);
    });
}

#[test]
fn two_credits_that_each_fit_alone_do_not_both_go_in() {
    // Each half of what one region may add to Bob, and a unit more.
    let near = u128::try_from(REGION_CREDIT_UNITS_MAX).expect("positive") / 2 + 1;
    assemble(20, |assembly| {
        let mut first = [transfer(2, BANK, BOB, near)];
        assert_eq!(assembly.offer_events(&mut first, actor(1, 0)), Ok(()));
        let mut second = [transfer(3, CARD, BOB, near)];
        let refused = assembly
            .offer_events(&mut second, actor(2, 0))
            .expect_err("Bob's balance would leave the range");
        assert_eq!(refused.reject(), Some(Reject::BalanceOverflow(BOB)));
    });
}

#[test]
fn an_overdraft_decided_against_a_stale_view_is_refused() {
    assemble(20, |assembly| {
        let mut first = [transfer(2, ALICE, BOB, 80)];
        assert_eq!(assembly.offer_events(&mut first, actor(1, 0)), Ok(()));
        let mut second = [transfer(3, ALICE, BOB, 80)];
        assert_eq!(
            assembly.offer_events(&mut second, actor(2, 0)),
            Err(Refusal::DoesNotApply(ApplyError::Overdraft {
                region: RegionId(0),
                account: ALICE
            }))
        );
    });
}

#[test]
fn a_refused_candidate_refuses_the_later_ones_its_decider_counted_on_it() {
    assemble(20, |assembly| {
        // Another decider takes id 5 first; actor 7's candidate with id 5
        // is refused, and its next one, decided before it heard, goes with
        // it.
        assert_eq!(
            assembly.offer_events(&mut [transfer(5, BANK, BOB, 1)], None),
            Ok(())
        );
        let mut refused = [transfer(5, ALICE, BOB, 1)];
        assert!(assembly.offer_events(&mut refused, actor(7, 0)).is_err());
        let mut counted = [transfer(6, ALICE, BOB, 1)];
        assert_eq!(
            assembly.offer_events(&mut counted, actor(7, 0)),
            Err(Refusal::Dependent)
        );
        // Another actor is not concerned; actor 7, once it heard of both,
        // is admitted again.
        let mut other = [transfer(8, BANK, ALICE, 1)];
        assert_eq!(assembly.offer_events(&mut other, actor(8, 0)), Ok(()));
        let mut later = [transfer(9, ALICE, BOB, 1)];
        assert_eq!(assembly.offer_events(&mut later, actor(7, 2)), Ok(()));
        assert_eq!(assembly.entry.admitted(), 3);
    });
}

#[test]
fn a_candidate_refused_by_the_fence_counts_as_a_drop_of_its_decider() {
    assemble(20, |assembly| {
        let mut before = [transfer(2, ALICE, BOB, 1)];
        let stale = Candidate {
            base: 9,
            ..candidate(&mut before, actor(3, 0))
        };
        assert_eq!(assembly.offer(stale), Err(Refusal::Stale));
        let mut after = [transfer(3, ALICE, BOB, 1)];
        assert_eq!(
            assembly.offer_events(&mut after, actor(3, 0)),
            Err(Refusal::Dependent)
        );
        // A candidate of an earlier epoch counts for nothing: its decider
        // drops everything of that epoch by itself.
        let mut old = [transfer(4, ALICE, BOB, 1)];
        let old = Candidate {
            epoch: EPOCH - 1,
            ..candidate(&mut old, actor(9, 0))
        };
        assert_eq!(assembly.offer(old), Err(Refusal::Stale));
        assert_eq!(assembly.drops.told(EPOCH, 9), 0);
    });
}

#[test]
fn the_entry_is_stamped_once_and_releases_are_numbered_in_order() {
    assemble(20, |assembly| {
        let (mut first, mut second) = ([release(10)], [release(20)]);
        assert_eq!(assembly.offer_events(&mut first, None), Ok(()));
        assert_eq!(assembly.offer_events(&mut second, None), Ok(()));
        let seqs: Vec<(Stamp, u64)> = first
            .iter()
            .chain(&second)
            .map(|event| match event.body {
                EventBody::Released { seq, .. } => (event.stamp, seq),
                _ => (event.stamp, 0),
            })
            .collect();
        assert_eq!(seqs, vec![(stamp(20), 1), (stamp(20), 2)]);
    });
}

#[test]
fn a_stamp_before_the_log_s_last_admits_nothing() {
    assemble(0, |assembly| {
        assert!(matches!(
            assembly.offer_events(&mut [transfer(2, ALICE, BOB, 1)], None),
            Err(Refusal::DoesNotApply(ApplyError::StampBackwards { .. }))
        ));
    });
}
