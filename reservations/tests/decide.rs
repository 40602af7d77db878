//! The core tested by its outputs: each command's exact event, or its exact
//! rejection, for every command and every rejection code.

mod common;

use common::*;
use ledger_reservations::*;
use std::collections::BTreeSet;
use std::sync::Mutex;

const BANK: u128 = 1;
const ALICE: u128 = 2;
const BOB: u128 = 3;
const REVENUE: u128 = 4;

/// Every rejection code a test saw, to check at the end that none is untested.
static SEEN: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

fn expect_reject<E: std::fmt::Debug>(decision: Result<Decision<E>, Reject>, expected: Reject) {
    let reject = reject_of(decision);
    assert_eq!(reject, expected);
    SEEN.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(reject.code());
}

/// Region 0 of three, with a bank, Alice and Bob (users) and revenue (system).
fn node() -> Node {
    let mut node = Node::new(0, &[0, 1, 2]);
    node.open(BANK, AccountKind::External);
    node.open(ALICE, AccountKind::User);
    node.open(BOB, AccountKind::User);
    node.open(REVENUE, AccountKind::System);
    node
}

/// `node()` with Alice topped up with 100.00 USD.
fn funded() -> Node {
    let mut node = node();
    event_of(node.run(Command::Transfer(transfer(100, BANK, ALICE, "100.00"))));
    node
}

fn expected(
    id: u128,
    debit: (u128, AccountKind),
    credit: (u128, AccountKind),
    units: u128,
    kind: TransferKind,
) -> Transfer {
    Transfer {
        id: tid(id),
        debit: account(debit.0),
        credit: account(credit.0),
        units,
        currency: usd(),
        debit_kind: debit.1,
        credit_kind: credit.1,
        kind,
        reference: None,
        metadata: None,
    }
}

/// The insufficient-funds rejection of a USD account, amounts in cents.
fn short(id: u128, requested: i128, local: i128, global: i128) -> Reject {
    let usd = |units| Money { units, scale: 2 };
    Reject::InsufficientFunds(Box::new(Shortfall {
        account: account(id),
        requested: usd(requested),
        available_local: usd(local),
        available_global: usd(global),
    }))
}

fn refund(id: u128, payment: u128, amount: &str) -> Command {
    Command::Refund {
        id: tid(id),
        payment_id: tid(payment),
        amount: dec(amount),
        reference: None,
        metadata: Metadata::new(),
    }
}

const EXT: AccountKind = AccountKind::External;
const USER: AccountKind = AccountKind::User;
const SYS: AccountKind = AccountKind::System;

// ---- transfers ----

#[test]
fn a_top_up_credits_the_user_pool_of_this_region() {
    let mut node = node();
    let stamp = at(50);
    let event = event_of(node.run_at(Command::Transfer(transfer(7, BANK, ALICE, "12.34")), stamp));
    assert_eq!(
        event,
        Event {
            stamp,
            body: EventBody::Transfer(expected(
                7,
                (BANK, EXT),
                (ALICE, USER),
                1234,
                TransferKind::Posted
            )),
        }
    );
    assert_eq!(node.available(ALICE), 1234);
    assert_eq!(
        node.available(BANK),
        -1234,
        "an external account may go below zero"
    );
}

#[test]
fn a_transfer_moves_available_between_users() {
    let mut node = funded();
    let event = event_of(node.run(Command::Transfer(transfer(8, ALICE, BOB, "30"))));
    assert_eq!(
        event.body,
        EventBody::Transfer(expected(
            8,
            (ALICE, USER),
            (BOB, USER),
            3000,
            TransferKind::Posted
        ))
    );
    assert_eq!((node.available(ALICE), node.available(BOB)), (7000, 3000));
}

#[test]
fn reference_and_metadata_are_kept() {
    let mut node = funded();
    let mut request = transfer(8, ALICE, BOB, "1");
    request.reference = Some("invoice 42".into());
    request.metadata.insert("order".into(), "A-1".into());
    let event = event_of(node.run(Command::Transfer(request.clone())));
    let EventBody::Transfer(transfer) = &event.body else {
        panic!("a transfer event");
    };
    assert_eq!(transfer.reference.as_deref(), Some("invoice 42"));
    assert_eq!(transfer.metadata.as_deref(), Some(&request.metadata));
    let record = node.ledger.home_state().transfer(tid(8)).expect("kept");
    assert_eq!(record.origin, region(0));
}

#[test]
fn a_retry_with_the_same_content_returns_the_first_result() {
    let mut node = funded();
    let mut request = transfer(8, ALICE, BOB, "30");
    request.reference = Some("r".into());
    event_of(node.run(Command::Transfer(request.clone())));
    assert_eq!(
        node.run(Command::Transfer(request.clone())),
        Ok(Decision::AlreadyApplied)
    );
    // 30 and 30.000 are the same amount.
    request.amount = dec("30.000");
    assert_eq!(
        node.run(Command::Transfer(request.clone())),
        Ok(Decision::AlreadyApplied)
    );
    assert_eq!(node.available(ALICE), 7000, "applied once");
}

#[test]
fn a_retry_after_the_account_was_frozen_still_returns_the_first_result() {
    let mut node = funded();
    event_of(node.run(Command::Transfer(transfer(8, ALICE, BOB, "1"))));
    node.control(ControlCommand::Freeze {
        account: account(ALICE),
    })
    .expect("frozen");
    assert_eq!(
        node.run(Command::Transfer(transfer(8, ALICE, BOB, "1"))),
        Ok(Decision::AlreadyApplied)
    );
}

#[test]
fn the_same_id_with_other_content_is_a_conflict() {
    let mut node = funded();
    event_of(node.run(Command::Transfer(transfer(8, ALICE, BOB, "30"))));
    for changed in [
        transfer(8, ALICE, BOB, "31"),
        transfer(8, BOB, ALICE, "30"),
        {
            let mut other = transfer(8, ALICE, BOB, "30");
            other.reference = Some("other".into());
            other
        },
        {
            let mut other = transfer(8, ALICE, BOB, "30");
            other.metadata.insert("k".into(), "v".into());
            other
        },
    ] {
        expect_reject(
            node.run(Command::Transfer(changed)),
            Reject::IdempotencyConflict(tid(8)),
        );
    }
    let as_pending = Command::CreatePending {
        transfer: transfer(8, ALICE, BOB, "30"),
        timeout_ms: 1000,
    };
    expect_reject(node.run(as_pending), Reject::IdempotencyConflict(tid(8)));
}

#[test]
fn insufficient_funds_says_what_is_available_here_and_everywhere() {
    let mut node = funded();
    let reject = reject_of(node.run(Command::Transfer(transfer(8, ALICE, BOB, "100.01"))));
    expect_reject::<Event>(Err(reject.clone()), short(ALICE, 10001, 10000, 10000));
    assert!(reject.is_retryable());
    assert_eq!(
        reject.to_string(),
        format!(
            "insufficient funds in {}: asked 100.01, available 100.00 in this region and 100.00 in all regions",
            account(ALICE)
        )
    );
}

#[test]
fn a_system_account_cannot_go_below_zero_either() {
    let mut node = node();
    expect_reject(
        node.run(Command::Transfer(transfer(8, REVENUE, BOB, "1"))),
        short(REVENUE, 100, 0, 0),
    );
}

#[test]
fn amounts_are_refused_not_rounded() {
    let mut node = funded();
    let cases = [
        ("0", AmountError::Zero),
        ("0.00", AmountError::Zero),
        ("-1", AmountError::Negative),
        ("1.001", AmountError::TooPrecise { scale: 2 }),
        (
            "100000000000000000000000000.01",
            AmountError::TooLarge {
                max_units: AMOUNT_UNITS_MAX,
            },
        ),
    ];
    for (amount, error) in cases {
        expect_reject(
            node.run(Command::Transfer(transfer(9, BANK, ALICE, amount))),
            Reject::InvalidAmount(error),
        );
    }
    assert_eq!(node.available(ALICE), 10000, "nothing applied");
}

#[test]
fn the_maximum_amount_is_accepted() {
    let mut node = node();
    node.open_in(
        10,
        AccountKind::External,
        CurrencyCode::new("POINTS").expect("code"),
    );
    node.open_in(
        11,
        AccountKind::User,
        CurrencyCode::new("POINTS").expect("code"),
    );
    let mut request = transfer(9, 10, 11, "10000000000000000000000000000");
    request.currency = CurrencyCode::new("POINTS").expect("code");
    event_of(node.run(Command::Transfer(request)));
    assert_eq!(node.available(11), AMOUNT_UNITS_MAX as i128);
}

#[test]
fn balances_stay_representable() {
    let mut node = node();
    let points = CurrencyCode::new("POINTS").expect("code");
    // Two outside-world accounts: unbounded, limited by the range alone.
    node.open_in(10, AccountKind::External, points);
    node.open_in(11, AccountKind::External, points);
    let top_up = |id| {
        let mut request = transfer(id, 10, 11, "10000000000000000000000000000");
        request.currency = points;
        Command::Transfer(request)
    };
    for id in 1..=7 {
        event_of(node.run(top_up(id)));
    }
    // 8e28 is past 2^96 - 1 (about 7.92e28).
    expect_reject(node.run(top_up(8)), Reject::BalanceOverflow(account(10)));
}

#[test]
fn one_region_adds_at_most_its_share_of_the_range_to_a_bounded_account() {
    let mut node = node();
    let points = CurrencyCode::new("POINTS").expect("code");
    node.open_in(10, AccountKind::External, points);
    node.open_in(11, AccountKind::User, points);
    let top_up = |id, amount: &str| {
        let mut request = transfer(id, 10, 11, amount);
        request.currency = points;
        Command::Transfer(request)
    };
    event_of(node.run(top_up(1, "10000000000000000000000000000")));
    // 2^96 / 7 is about 1.13e28: the next 1e28 is past this region's share,
    // so that whatever every region adds, the pool a grant fills stays in
    // range.
    expect_reject(
        node.run(top_up(2, "10000000000000000000000000000")),
        Reject::BalanceOverflow(account(11)),
    );
    // Released elsewhere, it still counts as added here.
    event_of(node.run(Command::Release {
        account: account(11),
        amount: dec("10000000000000000000000000000"),
        to: region(1),
    }));
    expect_reject(
        node.run(top_up(3, "10000000000000000000000000000")),
        Reject::BalanceOverflow(account(11)),
    );
    let spare = REGION_CREDIT_UNITS_MAX - AMOUNT_UNITS_MAX as i128;
    event_of(node.run(top_up(4, &spare.to_string())));
}

#[test]
fn bad_details_are_refused() {
    let mut node = funded();
    let mut long = transfer(9, BANK, ALICE, "1");
    long.reference = Some("x".repeat(REFERENCE_BYTES_MAX + 1));
    expect_reject(
        node.run(Command::Transfer(long)),
        Reject::InvalidField {
            field: "reference",
            reason: "too long",
        },
    );
    let mut control = transfer(9, BANK, ALICE, "1");
    control.reference = Some("a\u{0}b".into());
    expect_reject(
        node.run(Command::Transfer(control)),
        Reject::InvalidField {
            field: "reference",
            reason: "control characters are not allowed",
        },
    );
    let mut many = transfer(9, BANK, ALICE, "1");
    for n in 0..=METADATA_ENTRIES_MAX {
        many.metadata.insert(format!("k{n}"), "v".into());
    }
    expect_reject(
        node.run(Command::Transfer(many)),
        Reject::InvalidField {
            field: "metadata",
            reason: "too many entries",
        },
    );
    let mut empty_key = transfer(9, BANK, ALICE, "1");
    empty_key.metadata.insert(String::new(), "v".into());
    expect_reject(
        node.run(Command::Transfer(empty_key)),
        Reject::InvalidField {
            field: "metadata",
            reason: "empty key",
        },
    );
}

#[test]
fn accounts_must_exist_be_distinct_active_and_of_the_currency() {
    let mut node = funded();
    expect_reject(
        node.run(Command::Transfer(transfer(9, ALICE, 99, "1"))),
        Reject::UnknownAccount(account(99)),
    );
    assert!(Reject::UnknownAccount(account(99)).is_retryable());
    expect_reject(
        node.run(Command::Transfer(transfer(9, ALICE, ALICE, "1"))),
        Reject::SameAccount(account(ALICE)),
    );
    let mut euros = transfer(9, ALICE, BOB, "1");
    euros.currency = CurrencyCode::new("EUR").expect("code");
    expect_reject(
        node.run(Command::Transfer(euros)),
        Reject::CurrencyMismatch {
            account: account(ALICE),
            expected: usd(),
            got: CurrencyCode::new("EUR").expect("code"),
        },
    );
    let mut unknown = transfer(9, ALICE, BOB, "1");
    unknown.currency = CurrencyCode::new("XYZ").expect("code");
    expect_reject(
        node.run(Command::Transfer(unknown)),
        Reject::UnknownCurrency(CurrencyCode::new("XYZ").expect("code")),
    );
    // Audit finding 12: a typo in a currency is not retried for ever.
    assert!(!Reject::UnknownCurrency(CurrencyCode::new("XYZ").expect("code")).is_retryable());
    node.control(ControlCommand::Freeze {
        account: account(BOB),
    })
    .expect("frozen");
    expect_reject(
        node.run(Command::Transfer(transfer(9, ALICE, BOB, "1"))),
        Reject::AccountFrozen(account(BOB)),
    );
    node.control(ControlCommand::Unfreeze {
        account: account(BOB),
    })
    .expect("active");
    event_of(node.run(Command::Transfer(transfer(9, ALICE, BOB, "1"))));
    node.control(ControlCommand::Close {
        account: account(BOB),
    })
    .expect("closed");
    expect_reject(
        node.run(Command::Transfer(transfer(10, ALICE, BOB, "1"))),
        Reject::AccountClosed(account(BOB)),
    );
}

#[test]
fn a_transfer_decided_elsewhere_is_sent_to_its_origin() {
    // Decision 0009: an id is decided by the region its high half names,
    // whatever region it is sent to; here, regions 0, 1 and 2.
    let mut node = funded();
    for (region_index, high) in [(1, 1u128), (2, 2), (1, 4), (0, 3)] {
        let id = (high << 64) | 9;
        assert_eq!(node.ledger.origin_of(TransferId(id)), region(region_index));
        let request = transfer(id, BANK, ALICE, "1");
        let result = node.run(Command::Transfer(request));
        if region_index == 0 {
            event_of(result);
        } else {
            expect_reject(
                result,
                Reject::NotOrigin {
                    origin: region(region_index),
                },
            );
        }
    }
    // A post, void or refund is decided where its target was: its own id
    // must be one of that region's, or it is refused the same way in every
    // region, never sent on.
    let hold = event_of(node.run(Command::CreatePending {
        transfer: transfer(10, ALICE, BOB, "1"),
        timeout_ms: 60_000,
    }));
    let EventBody::Transfer(hold) = hold.body else {
        panic!("a transfer");
    };
    let other = TransferId(11).minted_for(1, 3);
    expect_reject(
        node.run(Command::VoidPending {
            id: other,
            pending_id: hold.id,
        }),
        Reject::TargetInOtherRegion {
            target: hold.id,
            region: region(0),
        },
    );
    let mut elsewhere = Node::new(1, &[0, 1, 2]);
    expect_reject(
        elsewhere.run(Command::VoidPending {
            id: other,
            pending_id: hold.id,
        }),
        Reject::TargetInOtherRegion {
            target: hold.id,
            region: region(0),
        },
    );
    // Minting moves an id to the nearest one of a region, and keeps one
    // that is already that region's.
    for raw in [0u128, 9, u128::MAX, (u128::from(u64::MAX) << 64) | 5] {
        for index in 0..3 {
            let minted = TransferId(raw).minted_for(index, 3);
            assert_eq!(minted.origin_index(3), index, "{raw:x} for {index}");
            assert_eq!(minted.minted_for(index, 3), minted);
            assert_eq!(minted.0 & u128::from(u64::MAX), raw & u128::from(u64::MAX));
        }
    }
}

#[test]
fn a_stamp_older_than_the_region_is_refused() {
    let mut node = funded();
    let last = node.ledger.home_state().last_stamp();
    expect_reject(
        node.run_at(Command::Transfer(transfer(9, BANK, ALICE, "1")), at(0)),
        Reject::StaleStamp { stamp: at(0), last },
    );
}

// ---- pending transfers ----

fn hold(node: &mut Node, id: u128, amount: &str, timeout_ms: u64) -> Event {
    event_of(node.run(Command::CreatePending {
        transfer: transfer(id, ALICE, REVENUE, amount),
        timeout_ms,
    }))
}

#[test]
fn a_pending_transfer_holds_the_amount() {
    let mut node = funded();
    let event = hold(&mut node, 20, "40", 1_000);
    assert_eq!(
        event.body,
        EventBody::Transfer(expected(
            20,
            (ALICE, USER),
            (REVENUE, SYS),
            4000,
            TransferKind::Pending { timeout_ms: 1_000 }
        ))
    );
    assert_eq!(
        (
            node.available(ALICE),
            node.held(ALICE),
            node.available(REVENUE)
        ),
        (6000, 4000, 0)
    );
    let record = node.ledger.home_state().transfer(tid(20)).expect("kept");
    assert_eq!(
        record.pending,
        Some(PendingState::Open {
            deadline_ns: event.stamp.physical_ns() + 1_000 * MS
        })
    );
    // What is held cannot be spent.
    expect_reject(
        node.run(Command::Transfer(transfer(21, ALICE, BOB, "60.01"))),
        short(ALICE, 6001, 6000, 6000),
    );
}

#[test]
fn the_timeout_must_be_positive_and_bounded() {
    let mut node = funded();
    for timeout_ms in [0, PENDING_TIMEOUT_MS_MAX + 1] {
        expect_reject(
            node.run(Command::CreatePending {
                transfer: transfer(20, ALICE, REVENUE, "1"),
                timeout_ms,
            }),
            Reject::InvalidTimeout {
                timeout_ms,
                max_ms: PENDING_TIMEOUT_MS_MAX,
            },
        );
    }
}

#[test]
fn posting_in_part_returns_the_rest() {
    let mut node = funded();
    hold(&mut node, 20, "40", 1_000);
    let post = Command::PostPending {
        id: tid(21),
        pending_id: tid(20),
        amount: Some(dec("25")),
    };
    let event = event_of(node.run(post.clone()));
    assert_eq!(
        event.body,
        EventBody::Transfer(expected(
            21,
            (ALICE, USER),
            (REVENUE, SYS),
            2500,
            TransferKind::PostPending {
                pending_id: tid(20)
            }
        ))
    );
    assert_eq!(
        (
            node.available(ALICE),
            node.held(ALICE),
            node.available(REVENUE)
        ),
        (7500, 0, 2500)
    );
    assert_eq!(
        node.ledger
            .home_state()
            .transfer(tid(20))
            .and_then(|record| record.pending),
        Some(PendingState::Posted { units: 2500 })
    );
    assert_eq!(
        node.run(post),
        Ok(Decision::AlreadyApplied),
        "a retry of the post"
    );
    expect_reject(
        node.run(Command::PostPending {
            id: tid(21),
            pending_id: tid(20),
            amount: Some(dec("26")),
        }),
        Reject::IdempotencyConflict(tid(21)),
    );
    expect_reject(
        node.run(Command::PostPending {
            id: tid(22),
            pending_id: tid(20),
            amount: None,
        }),
        Reject::PendingAlreadyResolved {
            id: tid(20),
            state: "posted",
        },
    );
}

#[test]
fn posting_the_whole_moves_all_of_it() {
    let mut node = funded();
    hold(&mut node, 20, "40", 1_000);
    let event = event_of(node.run(Command::PostPending {
        id: tid(21),
        pending_id: tid(20),
        amount: None,
    }));
    let EventBody::Transfer(transfer) = event.body else {
        panic!("a transfer")
    };
    assert_eq!(transfer.units, 4000);
    assert_eq!(
        (
            node.available(ALICE),
            node.held(ALICE),
            node.available(REVENUE)
        ),
        (6000, 0, 4000)
    );
}

#[test]
fn posting_more_than_held_is_refused() {
    let mut node = funded();
    hold(&mut node, 20, "40", 1_000);
    expect_reject(
        node.run(Command::PostPending {
            id: tid(21),
            pending_id: tid(20),
            amount: Some(dec("40.01")),
        }),
        Reject::PostExceedsPending {
            requested: Money {
                units: 4001,
                scale: 2,
            },
            pending: Money {
                units: 4000,
                scale: 2,
            },
        },
    );
}

#[test]
fn voiding_returns_everything() {
    let mut node = funded();
    hold(&mut node, 20, "40", 1_000);
    let void = Command::VoidPending {
        id: tid(21),
        pending_id: tid(20),
    };
    let event = event_of(node.run(void.clone()));
    assert_eq!(
        event.body,
        EventBody::Transfer(expected(
            21,
            (ALICE, USER),
            (REVENUE, SYS),
            4000,
            TransferKind::VoidPending {
                pending_id: tid(20)
            }
        ))
    );
    assert_eq!(
        (
            node.available(ALICE),
            node.held(ALICE),
            node.available(REVENUE)
        ),
        (10000, 0, 0)
    );
    assert_eq!(node.run(void), Ok(Decision::AlreadyApplied));
    expect_reject(
        node.run(Command::PostPending {
            id: tid(22),
            pending_id: tid(20),
            amount: None,
        }),
        Reject::PendingAlreadyResolved {
            id: tid(20),
            state: "voided",
        },
    );
}

#[test]
fn resolving_needs_a_pending_transfer_of_this_region() {
    let mut node = funded();
    expect_reject(
        node.run(Command::VoidPending {
            id: tid(21),
            pending_id: tid(99),
        }),
        Reject::TransferNotFound(tid(99)),
    );
    expect_reject(
        node.run(Command::PostPending {
            id: tid(21),
            pending_id: tid(100),
            amount: None,
        }),
        Reject::NotPending(tid(100)),
    );
    expect_reject(
        node.run(Command::PostPending {
            id: tid(21).minted_for(1, 3),
            pending_id: tid(100),
            amount: None,
        }),
        Reject::TargetInOtherRegion {
            target: tid(100),
            region: region(0),
        },
    );
}

#[test]
fn a_pending_transfer_expires_by_its_deadline_only() {
    let mut node = funded();
    let created = hold(&mut node, 20, "40", 1_000);
    let deadline_ns = created.stamp.physical_ns() + 1_000 * MS;
    let before = Stamp::new(deadline_ns - 1, 0, ledger_hlc::NodeId(1));
    expect_reject(
        node.run_at(
            Command::ExpirePending {
                pending_id: tid(20),
            },
            before,
        ),
        Reject::PendingNotExpired {
            id: tid(20),
            deadline_ns,
        },
    );
    assert_eq!(
        node.ledger.home_state().due_pendings(deadline_ns - 1, 10),
        vec![]
    );
    assert_eq!(
        node.ledger.home_state().due_pendings(deadline_ns, 10),
        vec![tid(20)]
    );
    // At the deadline it can no longer be posted or voided...
    let due = Stamp::new(deadline_ns, 0, ledger_hlc::NodeId(1));
    expect_reject(
        node.run_at(
            Command::PostPending {
                id: tid(21),
                pending_id: tid(20),
                amount: None,
            },
            due,
        ),
        Reject::PendingExpired(tid(20)),
    );
    // ...and it expires.
    let event = event_of(node.run_at(
        Command::ExpirePending {
            pending_id: tid(20),
        },
        due,
    ));
    assert_eq!(
        event,
        Event {
            stamp: due,
            body: EventBody::PendingExpired {
                pending_id: tid(20)
            }
        }
    );
    node.now_ms = 2_000;
    assert_eq!((node.available(ALICE), node.held(ALICE)), (10000, 0));
    assert_eq!(node.ledger.home_state().due_pendings(u64::MAX, 10), vec![]);
    assert_eq!(
        node.run(Command::ExpirePending {
            pending_id: tid(20)
        }),
        Ok(Decision::AlreadyApplied)
    );
    expect_reject(
        node.run(Command::VoidPending {
            id: tid(22),
            pending_id: tid(20),
        }),
        Reject::PendingExpired(tid(20)),
    );
    expect_reject(
        node.run(Command::ExpirePending {
            pending_id: tid(100),
        }),
        Reject::NotPending(tid(100)),
    );
}

/// A withdrawal's hold is resolved by the payout rail's answer alone, however
/// late it comes (the rail may have paid): its post or void is taken past
/// its deadline; any other hold's is not.
#[test]
fn a_withdrawal_hold_takes_the_rail_s_answer_past_its_deadline() {
    let mut node = funded();
    let plain = hold(&mut node, 20, "10", 1_000);
    for pending in [30, 40] {
        let mut withdrawal = transfer(pending, ALICE, BANK, "10");
        withdrawal
            .metadata
            .insert(SAGA_KEY.to_owned(), WITHDRAWAL.to_owned());
        event_of(node.run(Command::CreatePending {
            transfer: withdrawal,
            timeout_ms: 1_000,
        }));
    }
    let late = |offset: u64| {
        Stamp::new(
            plain.stamp.physical_ns() + 5_000 * MS + offset,
            0,
            ledger_hlc::NodeId(1),
        )
    };
    expect_reject(
        node.run_at(
            Command::PostPending {
                id: tid(21),
                pending_id: tid(20),
                amount: None,
            },
            late(0),
        ),
        Reject::PendingExpired(tid(20)),
    );
    let post = Command::PostPending {
        id: tid(31),
        pending_id: tid(30),
        amount: None,
    };
    assert!(matches!(
        node.run_at(post, late(1)),
        Ok(Decision::Append(_))
    ));
    let void = Command::VoidPending {
        id: tid(41),
        pending_id: tid(40),
    };
    assert!(matches!(
        node.run_at(void, late(2)),
        Ok(Decision::Append(_))
    ));
    // Nor does the ledger's clock ever expire one.
    let mut open = transfer(50, ALICE, BANK, "10");
    open.metadata
        .insert(SAGA_KEY.to_owned(), WITHDRAWAL.to_owned());
    event_of(node.run_at(
        Command::CreatePending {
            transfer: open,
            timeout_ms: 1_000,
        },
        late(3),
    ));
    expect_reject(
        node.run_at(
            Command::ExpirePending {
                pending_id: tid(50),
            },
            late(10_000 * MS),
        ),
        Reject::PendingNotExpired {
            id: tid(50),
            deadline_ns: u64::MAX,
        },
    );
}

#[test]
fn a_resolved_pending_transfer_does_not_expire() {
    let mut node = funded();
    hold(&mut node, 20, "40", 1);
    event_of(node.run_at(
        Command::VoidPending {
            id: tid(21),
            pending_id: tid(20),
        },
        at(node.now_ms),
    ));
    expect_reject(
        node.run_at(
            Command::ExpirePending {
                pending_id: tid(20),
            },
            at(10_000),
        ),
        Reject::PendingAlreadyResolved {
            id: tid(20),
            state: "voided",
        },
    );
}

// ---- refunds ----

#[test]
fn a_refund_reverses_part_of_a_payment_and_never_more_than_is_left() {
    let mut node = funded();
    event_of(node.run(Command::Transfer(transfer(30, ALICE, REVENUE, "50"))));
    let refund = |id, amount: &str| Command::Refund {
        id: tid(id),
        payment_id: tid(30),
        amount: dec(amount),
        reference: Some("damaged".into()),
        metadata: Metadata::new(),
    };
    let event = event_of(node.run(refund(31, "20")));
    let mut refund_transfer = expected(
        31,
        (REVENUE, SYS),
        (ALICE, USER),
        2000,
        TransferKind::Refund {
            payment_id: tid(30),
        },
    );
    refund_transfer.reference = Some("damaged".into());
    assert_eq!(event.body, EventBody::Transfer(refund_transfer));
    assert_eq!(
        (node.available(ALICE), node.available(REVENUE)),
        (7000, 3000)
    );
    assert_eq!(
        node.ledger
            .home_state()
            .transfer(tid(30))
            .map(|record| record.refunded),
        Some(2000)
    );
    assert_eq!(node.run(refund(31, "20")), Ok(Decision::AlreadyApplied));
    expect_reject(
        node.run(refund(31, "21")),
        Reject::IdempotencyConflict(tid(31)),
    );
    expect_reject(
        node.run(refund(32, "30.01")),
        Reject::RefundExceedsPayment {
            payment: tid(30),
            requested: Money {
                units: 3001,
                scale: 2,
            },
            refundable: Money {
                units: 3000,
                scale: 2,
            },
        },
    );
    event_of(node.run(refund(32, "30")));
    expect_reject(
        node.run(refund(33, "0.01")),
        Reject::RefundExceedsPayment {
            payment: tid(30),
            requested: Money { units: 1, scale: 2 },
            refundable: Money { units: 0, scale: 2 },
        },
    );
}

#[test]
fn a_two_phase_payment_is_refunded_up_to_what_was_posted() {
    let mut node = funded();
    hold(&mut node, 20, "40", 1_000);
    expect_reject(
        node.run(refund(31, 20, "1")),
        Reject::NotRefundable {
            id: tid(20),
            reason: "the pending transfer was not posted",
        },
    );
    event_of(node.run(Command::PostPending {
        id: tid(21),
        pending_id: tid(20),
        amount: Some(dec("25")),
    }));
    expect_reject(
        node.run(refund(31, 20, "25.01")),
        Reject::RefundExceedsPayment {
            payment: tid(20),
            requested: Money {
                units: 2501,
                scale: 2,
            },
            refundable: Money {
                units: 2500,
                scale: 2,
            },
        },
    );
    event_of(node.run(refund(31, 20, "25")));
    expect_reject(
        node.run(refund(32, 21, "1")),
        Reject::NotRefundable {
            id: tid(21),
            reason: "only payments (posted transfers) are refunded",
        },
    );
}

#[test]
fn a_refund_needs_funds_in_the_refunding_account_of_this_region() {
    let mut node = funded();
    event_of(node.run(Command::Transfer(transfer(30, ALICE, REVENUE, "50"))));
    event_of(node.run(Command::Transfer(transfer(31, REVENUE, BOB, "45"))));
    expect_reject(node.run(refund(32, 30, "6")), short(REVENUE, 600, 500, 500));
}

// ---- releases and grants ----

#[test]
fn the_grants_a_region_owes_are_decided_in_sequence_per_source_up_to_a_bound() {
    let mut source = funded();
    for amount in ["30", "1", "2"] {
        event_of(source.run(Command::Release {
            account: account(ALICE),
            amount: dec(amount),
            to: region(1),
        }));
    }
    let mut target = Node::new(1, &[0, 1, 2]);
    for (index, event) in source.control_log.iter().enumerate() {
        let position = Position::new(index as u64 + 1, 0);
        target
            .ledger
            .apply_control(position, event)
            .expect("applies");
    }
    let stamp = target.stamp();
    assert_eq!(target.ledger.decide_grants(stamp, 10), vec![]);
    for (index, event) in source.log.iter().enumerate() {
        target
            .ledger
            .apply(region(0), Position::new(index as u64 + 1, 0), event)
            .expect("applies");
    }
    let seqs = |grants: &[Grants]| -> Vec<(RegionId, Vec<u64>)> {
        grants
            .iter()
            .map(|grants| {
                let seqs = grants.events.iter().map(|event| match event.body {
                    EventBody::Granted { seq, .. } => seq,
                    _ => 0,
                });
                (grants.source, seqs.collect())
            })
            .collect()
    };
    let stamp = target.stamp();
    assert_eq!(
        seqs(&target.ledger.decide_grants(stamp, 2)),
        vec![(region(0), vec![1, 2])]
    );
    let all = target.ledger.decide_grants(stamp, 10);
    assert_eq!(seqs(&all), vec![(region(0), vec![1, 2, 3])]);
    assert_eq!(all[0].refused, None);
    target.append(all[0].events[0].clone());
    let stamp = target.stamp();
    assert_eq!(
        seqs(&target.ledger.decide_grants(stamp, 10)),
        vec![(region(0), vec![2, 3])],
        "from the high-water mark on"
    );
}

#[test]
fn a_release_leaves_the_pool_and_a_grant_takes_it_in_exactly_once() {
    let mut node = funded();
    let event = event_of(node.run(Command::Release {
        account: account(ALICE),
        amount: dec("30"),
        to: region(1),
    }));
    let release = Release {
        account: account(ALICE),
        currency: usd(),
        kind: USER,
        units: 3000,
    };
    assert_eq!(
        event.body,
        EventBody::Released {
            release,
            to: region(1),
            seq: 1,
            pull: None,
        }
    );
    assert_eq!(node.available(ALICE), 7000);
    let balance = node.ledger.balance(account(ALICE)).expect("known");
    assert_eq!(
        balance.total,
        Money {
            units: 10000,
            scale: 2
        },
        "in flight still counts"
    );
    assert_eq!(
        balance.in_flight,
        Money {
            units: 3000,
            scale: 2
        }
    );
    let second = event_of(node.run(Command::Release {
        account: account(ALICE),
        amount: dec("1"),
        to: region(1),
    }));
    assert!(matches!(second.body, EventBody::Released { seq: 2, .. }));

    // Region 1's node sees region 0's log and grants.
    let mut other = Node::new(1, &[0, 1, 2]);
    for event in node.control_log.clone() {
        let position = Position::new(other.control_log.len() as u64 + 1, 0);
        other
            .ledger
            .apply_control(position, &event)
            .expect("applies");
        other.control_log.push(event);
    }
    expect_reject(
        other.run(Command::Grant {
            from: region(0),
            seq: 1,
        }),
        Reject::ReleaseNotFound {
            from: region(0),
            seq: 1,
        },
    );
    for (index, event) in node.log.iter().enumerate() {
        other
            .ledger
            .apply(region(0), Position::new(index as u64 + 1, 0), event)
            .expect("applies");
    }
    expect_reject(
        other.run(Command::Grant {
            from: region(0),
            seq: 2,
        }),
        Reject::GrantOutOfOrder {
            from: region(0),
            seq: 2,
            expected: 1,
        },
    );
    let granted = event_of(other.run(Command::Grant {
        from: region(0),
        seq: 1,
    }));
    assert_eq!(
        granted.body,
        EventBody::Granted {
            release,
            from: region(0),
            seq: 1
        }
    );
    assert_eq!(other.available(ALICE), 3000);
    assert_eq!(
        other.run(Command::Grant {
            from: region(0),
            seq: 1
        }),
        Ok(Decision::AlreadyApplied)
    );
    let balance = other.ledger.balance(account(ALICE)).expect("known");
    assert_eq!(
        balance.total,
        Money {
            units: 10000,
            scale: 2
        }
    );
    assert_eq!(
        balance.in_flight,
        Money {
            units: 100,
            scale: 2
        },
        "the second release"
    );
    other.ledger.validate().expect("valid");
}

/// Region 1 with the same accounts and control log as `node`.
fn peer_of(node: &Node, home: u16) -> Node {
    let mut other = Node::new(home, &[0, 1, 2]);
    for (index, event) in node.control_log.iter().enumerate() {
        let position = Position::new(index as u64 + 1, 0);
        other
            .ledger
            .apply_control(position, event)
            .expect("applies");
        other.control_log.push(event.clone());
    }
    other
}

/// Copies `from`'s home log into `to`'s replica of it.
fn deliver(from: &Node, to: &mut Node) {
    let region = from.ledger.home();
    let start = to
        .ledger
        .region(region)
        .and_then(|state| state.applied())
        .map_or(0, |position| position.index as usize);
    for (index, event) in from.log.iter().enumerate().skip(start) {
        to.ledger
            .apply(region, Position::new(index as u64 + 1, 0), event)
            .expect("applies");
    }
}

#[test]
fn a_pull_is_asked_in_the_log_answered_once_by_a_release_and_granted() {
    // Alice has 100.00 in region 1 and nothing in region 0.
    let mut asker = node();
    let mut giver = peer_of(&asker, 1);
    let mut top_up = transfer(100, BANK, ALICE, "100.00");
    top_up.id = giver.ledger.mint(top_up.id);
    event_of(giver.run(Command::Transfer(top_up)));
    let pull = |id, amount: &str, from| Command::RequestPull {
        id: tid(id),
        account: account(ALICE),
        amount: dec(amount),
        from: region(from),
    };
    let asked = event_of(asker.run(pull(50, "130.00", 1)));
    assert_eq!(
        asked.body,
        EventBody::PullRequested {
            id: tid(50),
            account: account(ALICE),
            currency: usd(),
            kind: USER,
            units: 13000,
            from: region(1),
        }
    );
    assert_eq!(
        asker.run(pull(50, "130.00", 1)),
        Ok(Decision::AlreadyApplied)
    );
    expect_reject(
        asker.run(pull(50, "1.00", 1)),
        Reject::IdempotencyConflict(tid(50)),
    );
    expect_reject(
        asker.run(pull(51, "1.00", 0)),
        Reject::SameRegion(region(0)),
    );
    expect_reject(
        asker.run(Command::RequestPull {
            id: tid(52),
            account: account(BANK),
            amount: dec("1"),
            from: region(1),
        }),
        Reject::PoolNotApplicable(account(BANK)),
    );

    let answer = Command::AnswerPull {
        asker: region(0),
        pull: tid(50),
    };
    expect_reject(giver.run(answer.clone()), Reject::TransferNotFound(tid(50)));
    deliver(&asker, &mut giver);
    // It gives what it has: 100.00 of the 130.00 asked.
    let released = event_of(giver.run(answer.clone()));
    assert_eq!(
        released.body,
        EventBody::Released {
            release: Release {
                account: account(ALICE),
                currency: usd(),
                kind: USER,
                units: 10000,
            },
            to: region(0),
            seq: 1,
            pull: Some(tid(50)),
        }
    );
    assert_eq!(giver.available(ALICE), 0);
    assert_eq!(
        giver.run(answer),
        Ok(Decision::AlreadyApplied),
        "answered once"
    );

    // A pull addressed to region 2 is not region 1's to answer; one it
    // cannot give anything to is refused with the shortfall.
    event_of(asker.run(pull(53, "5.00", 2)));
    event_of(asker.run(pull(54, "5.00", 1)));
    deliver(&asker, &mut giver);
    expect_reject(
        giver.run(Command::AnswerPull {
            asker: region(0),
            pull: tid(53),
        }),
        Reject::NotOrigin { origin: region(2) },
    );
    let refused = reject_of(giver.run(Command::AnswerPull {
        asker: region(0),
        pull: tid(54),
    }));
    assert_eq!(refused.code(), "INSUFFICIENT_FUNDS");

    deliver(&giver, &mut asker);
    event_of(asker.run(Command::Grant {
        from: region(1),
        seq: 1,
    }));
    assert_eq!(asker.available(ALICE), 10000);
    asker.ledger.validate().expect("valid");
}

#[test]
fn releases_need_another_known_region_a_bounded_account_and_funds() {
    let mut node = funded();
    let release = |account_id, amount: &str, to| Command::Release {
        account: account(account_id),
        amount: dec(amount),
        to: region(to),
    };
    expect_reject(
        node.run(release(ALICE, "1", 0)),
        Reject::SameRegion(region(0)),
    );
    expect_reject(
        node.run(release(ALICE, "1", 9)),
        Reject::UnknownRegion(region(9)),
    );
    expect_reject(
        node.run(release(BANK, "1", 1)),
        Reject::PoolNotApplicable(account(BANK)),
    );
    expect_reject(
        node.run(release(99, "1", 1)),
        Reject::UnknownAccount(account(99)),
    );
    expect_reject(
        node.run(release(ALICE, "0.001", 1)),
        Reject::InvalidAmount(AmountError::TooPrecise { scale: 2 }),
    );
    expect_reject(
        node.run(release(ALICE, "100.01", 1)),
        short(ALICE, 10001, 10000, 10000),
    );
    expect_reject(
        node.run(Command::Grant {
            from: region(0),
            seq: 1,
        }),
        Reject::SameRegion(region(0)),
    );
    expect_reject(
        node.run(Command::Grant {
            from: region(5),
            seq: 1,
        }),
        Reject::UnknownRegion(region(5)),
    );
}

#[test]
fn global_availability_counts_other_regions() {
    let mut node = funded();
    // Region 2's replica shows Bob with 5.00 there.
    let elsewhere = Event {
        stamp: at(1),
        body: EventBody::Transfer(expected(
            77,
            (BANK, EXT),
            (BOB, USER),
            500,
            TransferKind::Posted,
        )),
    };
    node.ledger
        .apply(region(2), Position::new(1, 0), &elsewhere)
        .expect("applies");
    expect_reject(
        node.run(Command::Transfer(transfer(9, BOB, ALICE, "1"))),
        short(BOB, 100, 0, 500),
    );
}

// ---- batches and linked chains ----

#[test]
fn a_batch_is_decided_in_order_each_command_seeing_the_ones_before() {
    let node = node();
    let items = [
        Item::single(Command::Transfer(transfer(1, BANK, ALICE, "10"))),
        Item::single(Command::Transfer(transfer(2, ALICE, BOB, "10"))),
        Item::single(Command::Transfer(transfer(3, ALICE, BOB, "0.01"))),
        Item::single(Command::Transfer(transfer(1, BANK, ALICE, "10"))),
        Item::single(Command::CreatePending {
            transfer: transfer(4, BOB, REVENUE, "4"),
            timeout_ms: 10,
        }),
        Item::single(Command::PostPending {
            id: tid(5),
            pending_id: tid(4),
            amount: None,
        }),
    ];
    let batch = node.ledger.decide_batch(&items, at(100));
    assert_eq!(batch.events.len(), 4);
    assert_eq!(
        batch.outcomes,
        vec![
            Ok(Outcome::Appended(0)),
            Ok(Outcome::Appended(1)),
            Err(short(ALICE, 1, 0, 0)),
            Ok(Outcome::AlreadyApplied),
            Ok(Outcome::Appended(2)),
            Ok(Outcome::Appended(3)),
        ]
    );
    assert!(
        node.ledger.home_state().pool(account(ALICE)).is_none(),
        "deciding changed nothing"
    );
}

#[test]
fn applying_a_batch_gives_what_it_decided() {
    let mut node = node();
    let items: Vec<Item> = (0..50)
        .map(|n| Item::single(Command::Transfer(transfer(n + 1, BANK, ALICE, "1"))))
        .collect();
    let stamp = node.stamp();
    let batch = node.ledger.decide_batch(&items, stamp);
    assert!(batch.outcomes.iter().all(Result::is_ok));
    for event in batch.events {
        node.append(event);
    }
    assert_eq!(node.available(ALICE), 5000);
}

#[test]
fn a_linked_chain_fails_as_one_naming_the_member_that_failed() {
    let node = funded();
    let items = [
        Item::single(Command::Transfer(transfer(1, ALICE, BOB, "1"))),
        Item::linked(Command::Transfer(transfer(2, ALICE, BOB, "50"))),
        Item::linked(Command::Transfer(transfer(3, ALICE, BOB, "49"))),
        Item::single(Command::Transfer(transfer(4, ALICE, BOB, "1"))),
        Item::single(Command::Transfer(transfer(5, ALICE, BOB, "49"))),
    ];
    let batch = node.ledger.decide_batch(&items, at(100));
    let insufficient = short(ALICE, 100, 0, 0);
    assert_eq!(
        batch.outcomes,
        vec![
            Ok(Outcome::Appended(0)),
            Err(Reject::LinkedChainFailed { failed: 3 }),
            Err(Reject::LinkedChainFailed { failed: 3 }),
            Err(insufficient),
            // The failed chain left nothing behind: 49 of the 99 is there.
            Ok(Outcome::Appended(1)),
        ]
    );
    SEEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert("LINKED_CHAIN_FAILED");
}

#[test]
fn a_linked_chain_that_succeeds_appends_all_its_events() {
    let node = funded();
    let items = [
        Item::linked(Command::Transfer(transfer(1, ALICE, BOB, "60"))),
        Item::single(Command::Transfer(transfer(2, BOB, REVENUE, "60"))),
        Item::single(Command::Transfer(transfer(3, ALICE, BOB, "40"))),
    ];
    let batch = node.ledger.decide_batch(&items, at(100));
    assert_eq!(
        batch.outcomes,
        vec![
            Ok(Outcome::Appended(0)),
            Ok(Outcome::Appended(1)),
            Ok(Outcome::Appended(2))
        ]
    );
}

#[test]
fn a_batch_ending_inside_a_chain_fails_the_chain() {
    let node = funded();
    let items = [
        Item::single(Command::Transfer(transfer(1, ALICE, BOB, "1"))),
        Item::linked(Command::Transfer(transfer(2, ALICE, BOB, "1"))),
        Item::linked(Command::Transfer(transfer(3, ALICE, BOB, "1"))),
    ];
    let batch = node.ledger.decide_batch(&items, at(100));
    assert_eq!(batch.events.len(), 1);
    assert_eq!(
        batch.outcomes,
        vec![
            Ok(Outcome::Appended(0)),
            Err(Reject::LinkedChainOpen),
            Err(Reject::LinkedChainOpen)
        ]
    );
    SEEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert("LINKED_CHAIN_OPEN");
}

// ---- deciding over events in flight ----

/// Decides `commands` (none linked) over `in_flight`, without applying.
fn decide_over(node: &mut Node, in_flight: &[Event], commands: Vec<Command>) -> Batch {
    let items: Vec<Item> = commands.into_iter().map(Item::single).collect();
    let stamp = node.stamp();
    let mut batch = Batch::default();
    node.ledger
        .decide_batch_over(
            in_flight,
            &items,
            stamp,
            &mut Scratch::default(),
            &mut batch,
        )
        .expect("the in-flight events apply");
    batch
}

#[test]
fn events_in_flight_count_against_the_pool() {
    let mut node = funded();
    let first = decide_over(
        &mut node,
        &[],
        vec![Command::Transfer(transfer(8, ALICE, BOB, "80"))],
    );
    let second = decide_over(
        &mut node,
        &first.events,
        vec![
            Command::Transfer(transfer(9, ALICE, BOB, "30")),
            Command::Transfer(transfer(10, ALICE, BOB, "20")),
            Command::Transfer(transfer(8, ALICE, BOB, "80")),
        ],
    );
    assert_eq!(second.outcomes[0], Err(short(ALICE, 3000, 2000, 2000)));
    assert_eq!(second.outcomes[1], Ok(Outcome::Appended(0)));
    assert_eq!(
        second.outcomes[2],
        Ok(Outcome::AlreadyApplied),
        "the id in flight is known"
    );
    assert_eq!(node.available(ALICE), 10000, "nothing was applied");
}

#[test]
fn an_event_in_flight_that_was_committed_is_not_counted_twice() {
    let mut node = funded();
    let first = decide_over(
        &mut node,
        &[],
        vec![Command::Transfer(transfer(8, ALICE, BOB, "80"))],
    );
    node.append(first.events[0].clone());
    let second = decide_over(
        &mut node,
        &first.events,
        vec![Command::Transfer(transfer(9, ALICE, BOB, "20"))],
    );
    assert_eq!(second.outcomes, vec![Ok(Outcome::Appended(0))]);
}

#[test]
fn holds_in_flight_can_be_posted_and_expiries_in_flight_are_seen() {
    let mut node = funded();
    event_of(node.run(Command::CreatePending {
        transfer: transfer(20, ALICE, BOB, "10"),
        timeout_ms: 1,
    }));
    node.now_ms += 10;
    let expiry = decide_over(
        &mut node,
        &[],
        vec![Command::ExpirePending {
            pending_id: tid(20),
        }],
    );
    assert_eq!(expiry.outcomes, vec![Ok(Outcome::Appended(0))]);
    let post = Command::PostPending {
        id: tid(21),
        pending_id: tid(20),
        amount: None,
    };
    let after = decide_over(&mut node, &expiry.events, vec![post.clone()]);
    assert!(
        matches!(after.outcomes[0], Err(Reject::PendingExpired(id)) if id == tid(20)),
        "{:?}",
        after.outcomes
    );
    node.append(expiry.events[0].clone());
    let committed = decide_over(&mut node, &expiry.events, vec![post]);
    assert_eq!(
        committed.outcomes, after.outcomes,
        "the expiry is not replayed twice"
    );
}

#[test]
fn an_event_in_flight_that_no_longer_fits_fails_the_decision() {
    let mut node = funded();
    let first = decide_over(
        &mut node,
        &[],
        vec![Command::Transfer(transfer(8, ALICE, BOB, "80"))],
    );
    // Another decider spent Alice's money meanwhile (as a former leader
    // might have): the in-flight event no longer applies.
    event_of(node.run(Command::Transfer(transfer(9, ALICE, BOB, "50"))));
    let items = [Item::single(Command::Transfer(transfer(
        10, ALICE, BOB, "1",
    )))];
    let stamp = node.stamp();
    let failed = node.ledger.decide_batch_over(
        &first.events,
        &items,
        stamp,
        &mut Scratch::default(),
        &mut Batch::default(),
    );
    assert!(
        matches!(failed, Err(ApplyError::Overdraft { account, .. }) if account == AccountId(ALICE)),
        "{failed:?}"
    );
}

#[test]
fn commands_are_routed_by_the_account_they_take_from() {
    let mut node = funded();
    event_of(node.run(Command::Transfer(transfer(30, ALICE, BOB, "10"))));
    event_of(node.run(Command::CreatePending {
        transfer: transfer(31, BOB, ALICE, "1"),
        timeout_ms: 1_000,
    }));
    let ledger = &node.ledger;
    let of = |command: &Command| ledger.debit_of(command).map(|id| id.0);
    assert_eq!(
        of(&Command::Transfer(transfer(1, ALICE, BOB, "1"))),
        Some(ALICE)
    );
    assert_eq!(
        of(&refund(2, 30, "1")),
        Some(BOB),
        "a refund takes from the payee"
    );
    assert_eq!(
        of(&Command::VoidPending {
            id: tid(3),
            pending_id: tid(31),
        }),
        Some(BOB)
    );
    assert_eq!(of(&refund(4, 99, "1")), None, "an unknown payment");
}

// ---- history ----

#[test]
fn an_account_s_records_since_an_offset_are_the_tail_of_its_chain() {
    let mut node = funded();
    for n in 0..6 {
        let (from, to) = if n % 2 == 0 {
            (ALICE, BOB)
        } else {
            (BANK, BOB)
        };
        event_of(node.run(Command::Transfer(transfer(20 + n, from, to, "1"))));
    }
    let home = node.ledger.home_state();
    let all: Vec<usize> = home
        .records_of(account(ALICE))
        .map(|(offset, _)| offset)
        .collect();
    assert_eq!(all.len(), 4, "the top-up and three payments");
    for from in 0..=home.transfer_count() + 1 {
        let since: Vec<usize> = home
            .records_of_since(account(ALICE), from)
            .map(|(offset, _)| offset)
            .collect();
        let expected: Vec<usize> = all
            .iter()
            .copied()
            .filter(|offset| *offset >= from)
            .collect();
        assert_eq!(since, expected, "from {from}");
    }
    // Walked one record a slice, with payments applied between the slices:
    // the records as of the first slice.
    let mut walk = RecordsSince::new(account(ALICE), 1);
    let mut n = 0;
    let walked = loop {
        if let Some(offsets) = walk.step(node.ledger.home_state(), 1) {
            break offsets;
        }
        event_of(node.run(Command::Transfer(transfer(40 + n, ALICE, BOB, "1"))));
        n += 1;
    };
    assert!(n >= 2, "one record a slice: {n}");
    let expected: Vec<usize> = all.into_iter().filter(|offset| *offset >= 1).collect();
    assert_eq!(walked, expected);
}

#[test]
fn history_lists_every_movement_in_stamp_order_with_the_balance_after() {
    let mut node = funded();
    event_of(node.run(Command::Transfer(transfer(8, ALICE, BOB, "30"))));
    event_of(node.run(Command::CreatePending {
        transfer: transfer(9, ALICE, REVENUE, "10"),
        timeout_ms: 60_000,
    }));
    event_of(node.run(Command::PostPending {
        id: tid(10),
        pending_id: tid(9),
        amount: Some(dec("4")),
    }));
    event_of(node.run(Command::CreatePending {
        transfer: transfer(11, ALICE, REVENUE, "5"),
        timeout_ms: 1,
    }));
    node.now_ms += 10;
    event_of(node.run(Command::ExpirePending {
        pending_id: tid(11),
    }));
    event_of(node.run(refund(12, 8, "2")));
    let history = node.ledger.history(account(ALICE));
    let seen: Vec<(Movement, u128, i128, i128)> = history
        .iter()
        .map(|entry| (entry.movement, entry.transfer.0, entry.balance, entry.held))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Movement::Transfer, 100, 10000, 0),
            (Movement::Transfer, 8, 7000, 0),
            (Movement::Hold, 9, 7000, 1000),
            (Movement::HoldPosted, 10, 6600, 0),
            (Movement::Hold, 11, 6600, 500),
            (Movement::HoldExpired, 11, 6600, 0),
            (Movement::Refund, 12, 6800, 0),
        ]
    );
    assert!(
        history
            .windows(2)
            .all(|pair| pair[0].stamp <= pair[1].stamp)
    );
    let balance = node.ledger.balance(account(ALICE)).expect("known");
    assert_eq!(
        history.last().map(|entry| entry.balance),
        Some(balance.total.units)
    );
    // Bob's side of the same transfers.
    let bob: Vec<i128> = node
        .ledger
        .history(account(BOB))
        .iter()
        .map(|entry| entry.balance)
        .collect();
    assert_eq!(bob, vec![3000, 2800]);
}

/// The movements of one entry share its stamp: they keep the log's order,
/// so a debit that counted on a credit decided before it in the entry
/// never shows the account below zero in between (the whole-cluster
/// simulation found the history ordered them by transfer id).
#[test]
fn movements_of_one_stamp_keep_the_log_s_order() {
    let mut node = funded();
    let stamp = node.stamp();
    event_of(node.run_at(Command::Transfer(transfer(21, ALICE, BOB, "50")), stamp));
    event_of(node.run_at(Command::Transfer(transfer(20, BOB, REVENUE, "30")), stamp));
    let bob: Vec<(u128, i128)> = node
        .ledger
        .history(account(BOB))
        .iter()
        .map(|entry| (entry.transfer.0, entry.balance))
        .collect();
    assert_eq!(bob, vec![(21, 5000), (20, 2000)]);
}

/// A history read in slices, with transfers, a post and an expiry applied
/// between the slices, is the history as of its first slice.
#[test]
fn a_history_read_in_slices_is_the_history_as_of_its_first_slice() {
    let mut node = funded();
    // The hold is older than the transfers: a read walking back meets it
    // only after its expiry.
    event_of(node.run(Command::CreatePending {
        transfer: transfer(30, ALICE, REVENUE, "5"),
        timeout_ms: 1,
    }));
    for n in 0..6 {
        event_of(node.run(Command::Transfer(transfer(20 + n, ALICE, BOB, "1"))));
    }
    let before = node.ledger.history(account(ALICE));
    let mut read = HistoryRead::new(account(ALICE));
    assert!(!read.step(&node.ledger, 1), "more than one record");
    event_of(node.run(Command::Transfer(transfer(40, ALICE, BOB, "1"))));
    node.now_ms += 10;
    event_of(node.run(Command::ExpirePending {
        pending_id: tid(30),
    }));
    let mut steps: usize = 1;
    while !read.step(&node.ledger, 1) {
        event_of(node.run(Command::Transfer(transfer(
            50 + steps as u128,
            BOB,
            ALICE,
            "1",
        ))));
        steps += 1;
    }
    assert_eq!(read.finish(), before);
    assert!(steps >= before.len() - 1, "one record a step: {steps}");
    // And a read begun now sees all of it.
    let after = node.ledger.history(account(ALICE));
    assert_eq!(after.len(), before.len() + 2 + steps - 1);
}

// ---- control ----

#[test]
fn accounts_are_created_once() {
    let mut node = node();
    let new = NewAccount {
        id: account(50),
        currency: usd(),
        kind: USER,
        owner: "carol".into(),
        metadata: Metadata::new(),
    };
    let stamp = node.stamp();
    let Ok(Decision::Append(event)) = node
        .ledger
        .decide_control(&ControlCommand::CreateAccount(new.clone()), stamp)
    else {
        panic!("created");
    };
    assert_eq!(
        event,
        ControlEvent {
            stamp,
            body: ControlEventBody::AccountCreated(Account {
                id: account(50),
                currency: Currency {
                    code: usd(),
                    scale: 2
                },
                kind: USER,
                status: AccountStatus::Active,
                owner: "carol".into(),
                metadata: Metadata::new(),
                created: stamp,
            }),
        }
    );
    node.control(ControlCommand::CreateAccount(new.clone()))
        .expect("created");
    assert_eq!(
        node.control(ControlCommand::CreateAccount(new.clone())),
        Ok(Decision::AlreadyApplied)
    );
    let mut other = new.clone();
    other.owner = "mallory".into();
    expect_reject(
        node.control(ControlCommand::CreateAccount(other)),
        Reject::AccountExists(account(50)),
    );
    let mut unknown = new.clone();
    unknown.id = account(51);
    unknown.currency = CurrencyCode::new("XYZ").expect("code");
    expect_reject(
        node.control(ControlCommand::CreateAccount(unknown)),
        Reject::UnknownCurrency(CurrencyCode::new("XYZ").expect("code")),
    );
    let mut long = new;
    long.id = account(52);
    long.owner = "o".repeat(OWNER_BYTES_MAX + 1);
    expect_reject(
        node.control(ControlCommand::CreateAccount(long)),
        Reject::InvalidField {
            field: "owner",
            reason: "too long",
        },
    );
}

#[test]
fn status_changes_are_events_and_closed_is_final() {
    let mut node = node();
    let changed = |status| ControlEventBody::AccountStatusChanged {
        account: account(ALICE),
        status,
    };
    let Ok(Decision::Append(event)) = node.control(ControlCommand::Freeze {
        account: account(ALICE),
    }) else {
        panic!("frozen")
    };
    assert_eq!(event.body, changed(AccountStatus::Frozen));
    assert_eq!(
        node.control(ControlCommand::Freeze {
            account: account(ALICE)
        }),
        Ok(Decision::AlreadyApplied)
    );
    let Ok(Decision::Append(event)) = node.control(ControlCommand::Unfreeze {
        account: account(ALICE),
    }) else {
        panic!("active")
    };
    assert_eq!(event.body, changed(AccountStatus::Active));
    let Ok(Decision::Append(event)) = node.control(ControlCommand::Close {
        account: account(ALICE),
    }) else {
        panic!("closed")
    };
    assert_eq!(event.body, changed(AccountStatus::Closed));
    assert_eq!(
        node.control(ControlCommand::Close {
            account: account(ALICE)
        }),
        Ok(Decision::AlreadyApplied)
    );
    expect_reject(
        node.control(ControlCommand::Unfreeze {
            account: account(ALICE),
        }),
        Reject::AccountClosed(account(ALICE)),
    );
    expect_reject(
        node.control(ControlCommand::Freeze {
            account: account(99),
        }),
        Reject::UnknownAccount(account(99)),
    );
}

#[test]
fn currencies_are_registered_once_with_their_scale() {
    let mut node = node();
    let code = CurrencyCode::new("JPY").expect("code");
    let Ok(Decision::Append(event)) = node.control(ControlCommand::RegisterCurrency(Currency {
        code,
        scale: 0,
    })) else {
        panic!("registered")
    };
    assert_eq!(
        event.body,
        ControlEventBody::CurrencyRegistered(Currency { code, scale: 0 })
    );
    assert_eq!(
        node.control(ControlCommand::RegisterCurrency(Currency {
            code,
            scale: 0
        })),
        Ok(Decision::AlreadyApplied)
    );
    expect_reject(
        node.control(ControlCommand::RegisterCurrency(Currency {
            code,
            scale: 2,
        })),
        Reject::CurrencyConflict {
            code,
            registered: 0,
            requested: 2,
        },
    );
    expect_reject(
        node.control(ControlCommand::RegisterCurrency(Currency {
            code: CurrencyCode::new("BIG").expect("code"),
            scale: 19,
        })),
        Reject::InvalidField {
            field: "scale",
            reason: "at most 18 decimal places",
        },
    );
    let stale = node.ledger.control().last_stamp();
    expect_reject(
        node.ledger.decide_control(
            &ControlCommand::Freeze {
                account: account(ALICE),
            },
            at(0),
        ),
        Reject::StaleStamp {
            stamp: at(0),
            last: stale,
        },
    );
}

#[test]
fn currency_codes_and_money_print_exactly() {
    assert!(CurrencyCode::new("").is_err());
    assert!(CurrencyCode::new("usd").is_err());
    assert!(CurrencyCode::new("TOOLONGXX").is_err());
    assert_eq!(
        CurrencyCode::new("POINTS").expect("code").to_string(),
        "POINTS"
    );
    assert_eq!(
        Money {
            units: -1205,
            scale: 2
        }
        .to_string(),
        "-12.05"
    );
    assert_eq!(Money { units: 7, scale: 0 }.to_string(), "7");
    assert_eq!(
        Money {
            units: 1,
            scale: 18
        }
        .to_string(),
        "0.000000000000000001"
    );
    assert_eq!(
        Money {
            units: 1205,
            scale: 2
        }
        .to_decimal(),
        Some(dec("12.05"))
    );
    let json = serde_json::to_string(&usd()).expect("serializes");
    assert_eq!(json, "\"USD\"");
    assert!(serde_json::from_str::<CurrencyCode>("\"us d\"").is_err());
}

#[test]
fn a_pool_policy_is_set_changed_and_removed_in_the_control_log() {
    let mut node = node();
    let policy = |id, floor: &str| ControlCommand::SetPoolPolicy {
        account: account(id),
        floor: dec(floor),
    };
    let set = node.control(policy(ALICE, "25.00"));
    assert!(
        matches!(
            set,
            Ok(Decision::Append(ControlEvent {
                body: ControlEventBody::PoolPolicySet { floor: 2500, .. },
                ..
            }))
        ),
        "{set:?}"
    );
    assert_eq!(node.ledger.control().policy(account(ALICE)), Some(2500));
    assert_eq!(
        node.control(policy(ALICE, "25")),
        Ok(Decision::AlreadyApplied)
    );
    expect_reject(
        node.control(policy(BANK, "1")),
        Reject::PoolNotApplicable(account(BANK)),
    );
    expect_reject(
        node.control(policy(99, "1")),
        Reject::UnknownAccount(account(99)),
    );
    assert_eq!(
        reject_of(node.control(policy(ALICE, "-1"))).code(),
        "INVALID_AMOUNT"
    );
    assert!(matches!(
        node.control(policy(ALICE, "0")),
        Ok(Decision::Append(_))
    ));
    assert_eq!(node.ledger.control().policy(account(ALICE)), None);
}

// ---- apply ----

#[test]
fn replaying_an_applied_position_changes_nothing() {
    let mut node = funded();
    let before = node.ledger.clone();
    let first = node.log[0].clone();
    assert_eq!(
        node.ledger.apply(region(0), Position::new(1, 0), &first),
        Ok(false)
    );
    assert_eq!(node.ledger, before);
}

#[test]
fn a_log_that_does_not_fit_is_a_fatal_error_and_changes_nothing() {
    let mut node = funded();
    let before = node.ledger.clone();
    let duplicate = node.log[0].clone();
    let position = Position::new(99, 0);
    assert!(matches!(
        node.ledger.apply(region(0), position, &duplicate),
        Err(ApplyError::DuplicateTransfer { .. })
    ));
    let gap = Event {
        stamp: at(10_000),
        body: EventBody::Granted {
            release: Release {
                account: account(ALICE),
                currency: usd(),
                kind: USER,
                units: 1,
            },
            from: region(1),
            seq: 2,
        },
    };
    assert!(matches!(
        node.ledger.apply(region(0), position, &gap),
        Err(ApplyError::SequenceGap { .. })
    ));
    let backwards = Event {
        stamp: at(0),
        ..duplicate
    };
    assert!(matches!(
        node.ledger.apply(region(0), position, &backwards),
        Err(ApplyError::StampBackwards { .. })
    ));
    assert_eq!(
        node.ledger.apply(region(9), position, &gap),
        Err(ApplyError::UnknownRegion(region(9)))
    );
    assert_eq!(node.ledger, before);
}

#[test]
fn layouts_are_checked() {
    assert_eq!(
        Ledger::new(region(3), &[region(0), region(1)]),
        Err(LayoutError::HomeMissing(region(3)))
    );
    assert_eq!(
        Ledger::new(region(0), &[region(0), region(0)]),
        Err(LayoutError::Duplicate(region(0)))
    );
}

/// Every rejection code is produced by some test. nextest runs each test in a
/// process of its own, so this one runs the rejection tests itself (they are
/// cheap and independent) and then compares the codes seen with the full list.
#[test]
fn every_rejection_code_is_tested() {
    for test in ALL {
        test();
    }
    let seen = SEEN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let all: BTreeSet<&str> = Reject::CODES.iter().copied().collect();
    let missing: Vec<_> = all.difference(&seen).collect();
    assert!(missing.is_empty(), "codes without a test: {missing:?}");
    let unknown: Vec<_> = seen.difference(&all).collect();
    assert!(
        unknown.is_empty(),
        "codes missing from Reject::CODES: {unknown:?}"
    );
}

const ALL: &[fn()] = &[
    a_transfer_decided_elsewhere_is_sent_to_its_origin,
    a_stamp_older_than_the_region_is_refused,
    the_same_id_with_other_content_is_a_conflict,
    insufficient_funds_says_what_is_available_here_and_everywhere,
    a_system_account_cannot_go_below_zero_either,
    amounts_are_refused_not_rounded,
    balances_stay_representable,
    bad_details_are_refused,
    accounts_must_exist_be_distinct_active_and_of_the_currency,
    a_pending_transfer_holds_the_amount,
    the_timeout_must_be_positive_and_bounded,
    posting_in_part_returns_the_rest,
    posting_more_than_held_is_refused,
    voiding_returns_everything,
    resolving_needs_a_pending_transfer_of_this_region,
    a_pending_transfer_expires_by_its_deadline_only,
    a_withdrawal_hold_takes_the_rail_s_answer_past_its_deadline,
    a_resolved_pending_transfer_does_not_expire,
    a_refund_reverses_part_of_a_payment_and_never_more_than_is_left,
    a_two_phase_payment_is_refunded_up_to_what_was_posted,
    a_refund_needs_funds_in_the_refunding_account_of_this_region,
    a_release_leaves_the_pool_and_a_grant_takes_it_in_exactly_once,
    releases_need_another_known_region_a_bounded_account_and_funds,
    global_availability_counts_other_regions,
    a_linked_chain_fails_as_one_naming_the_member_that_failed,
    a_batch_ending_inside_a_chain_fails_the_chain,
    accounts_are_created_once,
    status_changes_are_events_and_closed_is_final,
    currencies_are_registered_once_with_their_scale,
];
