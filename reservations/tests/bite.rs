//! The core's chaos bites (`chaos-bite` feature): each one changes what the
//! core decides or applies, and the same steps without it keep the
//! invariant. The bite is process-wide, so these tests live in a binary of
//! their own and take turns.
#![cfg(feature = "chaos-bite")]

mod common;

use common::*;
use ledger_reservations::bite::{self, Bite};
use ledger_reservations::*;
use std::sync::{Mutex, MutexGuard};

const BANK: u128 = 1;
const ALICE: u128 = 2;
const BOB: u128 = 3;

/// Held while a test runs: one bite at a time, none after it.
struct Biting {
    _turn: MutexGuard<'static, ()>,
}

static TURN: Mutex<()> = Mutex::new(());

impl Biting {
    fn turn() -> Self {
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        bite::set(None);
        Self { _turn: turn }
    }
}

impl Drop for Biting {
    fn drop(&mut self) {
        bite::set(None);
    }
}

/// A node of `home` in regions 0 and 1 that knows the bank, Alice and Bob,
/// with the control log of `from` when given (its accounts).
fn node(home: u16, from: Option<&Node>) -> Node {
    let mut node = Node::new(home, &[0, 1]);
    match from {
        None => {
            node.open(BANK, AccountKind::External);
            node.open(ALICE, AccountKind::User);
            node.open(BOB, AccountKind::User);
        }
        Some(from) => {
            for (index, event) in from.control_log.iter().enumerate() {
                let position = Position::new(index as u64 + 1, 0);
                node.ledger.apply_control(position, event).expect("applies");
            }
        }
    }
    node
}

/// Applies `source`'s log of `region` to `target`'s replica of it.
fn replicate(source: &Node, target: &mut Node, region: u16) {
    for (index, event) in source.log.iter().enumerate() {
        let position = Position::new(index as u64 + 1, 0);
        target
            .ledger
            .apply(common::region(region), position, event)
            .expect("applies");
    }
}

/// Applies `event` to `node`'s home region without `Node::append`'s
/// validation, which a bite makes fail on purpose.
fn apply(node: &mut Node, event: &Event) {
    let position = Position::new(node.log.len() as u64 + 1, 0);
    let home = node.ledger.home();
    assert!(node.ledger.apply(home, position, event).expect("applies"));
    node.log.push(event.clone());
}

fn total(node: &Node, id: u128) -> i128 {
    node.ledger.balance(account(id)).expect("known").total.units
}

#[test]
fn the_names_are_the_settings_names() {
    let _turn = Biting::turn();
    for bite in Bite::ALL {
        let text = serde_json::to_string(&bite).expect("serializes");
        assert_eq!(text, format!("\"{}\"", bite.name()));
        bite::set(Some(bite));
        assert_eq!(bite::current(), Some(bite));
        assert!(bite::is(bite));
    }
    bite::set(None);
    assert_eq!(bite::current(), None);
}

#[test]
fn skip_pool_check_decides_and_applies_an_overdraft() {
    let _turn = Biting::turn();
    let mut node = node(0, None);
    event_of(node.run(Command::Transfer(transfer(1, BANK, ALICE, "10"))));
    let overdraft = Command::Transfer(transfer(2, ALICE, BOB, "25"));
    let stamp = node.stamp();
    let refused = reject_of(node.ledger.decide(&overdraft, stamp));
    assert_eq!(refused.code(), "INSUFFICIENT_FUNDS");

    bite::set(Some(Bite::SkipPoolCheck));
    let mut events = vec![event_of(node.ledger.decide(&overdraft, stamp))];
    // The writer's admission takes it in too: the floor is gone there as
    // well, so the entry applies on every node with the bite.
    let mut scratch = AdmissionScratch::default();
    let mut entry = node.ledger.home_state().admission(stamp, &mut scratch);
    entry.admit(&mut events).expect("admitted");
    apply(&mut node, &events[0]);
    assert_eq!(node.available(ALICE), -1500, "Alice is below zero");
    assert!(node.ledger.validate().is_err());
}

#[test]
fn grant_twice_credits_a_release_twice() {
    let _turn = Biting::turn();
    let mut source = node(0, None);
    event_of(source.run(Command::Transfer(transfer(1, BANK, ALICE, "30"))));
    event_of(source.run(Command::Release {
        account: account(ALICE),
        amount: dec("10"),
        to: region(1),
    }));
    let mut target = node(1, Some(&source));
    replicate(&source, &mut target, 0);
    let grant = Command::Grant {
        from: region(0),
        seq: 1,
    };
    let stamp = target.stamp();
    let granted = event_of(target.ledger.decide(&grant, stamp));

    let mut kept = node(1, Some(&source));
    replicate(&source, &mut kept, 0);
    apply(&mut kept, &granted);
    assert_eq!((kept.available(ALICE), total(&kept, ALICE)), (1000, 3000));
    kept.ledger.validate().expect("money kept");

    bite::set(Some(Bite::GrantTwice));
    apply(&mut target, &granted);
    assert_eq!(
        (target.available(ALICE), total(&target, ALICE)),
        (2000, 4000),
        "10 created"
    );
    let error = target.ledger.validate().expect_err("money created");
    assert!(error.contains("off by 1000"), "{error}");
}

#[test]
fn decide_retry_elsewhere_decides_another_regions_id_again() {
    let _turn = Biting::turn();
    let mut origin = node(0, None);
    let id = TransferId(7).minted_for(0, 2);
    let mut top_up = transfer(0, BANK, ALICE, "10");
    top_up.id = id;
    let command = Command::Transfer(top_up);
    event_of(origin.run(command.clone()));
    let mut other = node(1, Some(&origin));
    let stamp = other.stamp();
    let refused = reject_of(other.ledger.decide(&command, stamp));
    assert_eq!(refused, Reject::NotOrigin { origin: region(0) });
    replicate(&origin, &mut other, 0);
    let refused = reject_of(other.ledger.decide(&command, stamp));
    assert_eq!(refused, Reject::NotOrigin { origin: region(0) });

    bite::set(Some(Bite::DecideRetryElsewhere));
    let again = event_of(other.ledger.decide(&command, stamp));
    apply(&mut other, &again);
    assert_eq!(total(&other, ALICE), 2000, "the top-up applied twice");
}
