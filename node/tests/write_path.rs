//! The write path against hostile input, through the public API of real
//! `ledger` processes: each test reproduces a finding of the 2026-12-01
//! write-path audit (`shared/audits/2026-12-01-write-path.md`, named in the
//! test) that put an entry no node could apply into a region's log, or
//! answered a client falsely, and checks that every region still commits.

mod common;

use common::*;
use ledger_node::client::Client;
use ledger_proto::v1 as api;
use std::time::Duration;

/// The total of `account` everywhere, as `client` sees it.
async fn total(client: &Client, account: u128) -> String {
    let response = client
        .lookup_accounts(vec![id(account)])
        .await
        .expect("answered");
    response
        .accounts
        .first()
        .map(|view| view.total.clone())
        .unwrap_or_default()
}

/// Finding 2: one call holding the same transfer twice, for an account whose
/// pool here is short while another region's holds enough, asked the same
/// pull twice; the second `PullRequested` stopped the region for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_2_a_transfer_repeated_in_one_call_past_its_pool_pulls_once() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 16_000, dir.path()).await;
    let [r0, r1, _] = region_clients(&cluster).await;
    open_accounts(&r0, &[10, 11]).await;
    let top_up = of_region(1, transfer(1, BANK, 10, "30.00"));
    assert!(applied(&submit(&r1, top_up).await).is_some());
    wait_pool(&r0, 10, 1, "30.00").await;

    let twice = vec![transfer(7, 10, 11, "20.00"), transfer(7, 10, 11, "20.00")];
    let results = submit_all(&r0, twice).await;
    let codes: Vec<String> = results.iter().map(code).collect();
    assert_eq!(codes, ["APPLIED", "APPLIED"], "{results:?}");
    // Applied once: 30 - 20.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while total(&r0, 10).await != "10.00" {
        assert!(tokio::time::Instant::now() < deadline, "10 keeps 10.00");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    every_region_commits(&cluster, 11, 100).await;
}

/// Finding 3: two credits in one call, each deciding against a view without
/// the other, took an account past the largest balance kept; every node
/// panicked applying the entry. (The ceiling a region's credits meet is now
/// a seventh of the range, decision 0008: the same race, at that ceiling.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_3_two_credits_past_the_balance_ceiling_are_refused_not_applied() {
    const POINTS: &str = "POINTS";
    const CARD: u128 = 3;
    const CUSTOMER: u128 = 10;
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 15_000, dir.path()).await;
    let [r0, _, _] = region_clients(&cluster).await;
    create(
        &r0,
        vec![
            account_in(BANK, api::AccountKind::External, POINTS),
            account_in(CARD, api::AccountKind::External, POINTS),
            account_in(CUSTOMER, api::AccountKind::User, POINTS),
        ],
    )
    .await;
    // 1e28, the largest amount; a region may add about 1.13e28 in all.
    let most = "10000000000000000000000000000";
    let result = submit(&r0, movement(1, BANK, CUSTOMER, most, POINTS)).await;
    assert!(applied(&result).is_some(), "{result:?}");

    // 1e27 fits alone; both do not.
    let tenth = "1000000000000000000000000000";
    let both = vec![
        movement(8, BANK, CUSTOMER, tenth, POINTS),
        movement(9, CARD, CUSTOMER, tenth, POINTS),
    ];
    let mut codes: Vec<String> = submit_all(&r0, both).await.iter().map(code).collect();
    codes.sort();
    assert_eq!(codes, ["APPLIED", "BALANCE_OVERFLOW"]);
    let result = submit(&r0, movement(10, CUSTOMER, BANK, "1", POINTS)).await;
    assert!(applied(&result).is_some(), "region 0 commits: {result:?}");
}

/// Finding 6: the second copy of an id in one call was answered `Applied`
/// before the first was committed, and even when it never was (here: the
/// id taken at the same moment by another call's different transfer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_6_a_repeat_in_one_call_is_answered_with_its_original() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 14_000, dir.path()).await;
    let [r0, _, _] = region_clients(&cluster).await;
    open_accounts(&r0, &[10, 11, 12]).await;
    assert!(applied(&submit(&r0, transfer(1, BANK, 10, "500.00")).await).is_some());
    assert!(applied(&submit(&r0, transfer(2, BANK, 11, "500.00")).await).is_some());
    let address = cluster.api_of(0).expect("region 0").to_owned();
    let other = Client::connect(&address).await.expect("connects");
    for round in 0..30u128 {
        let n = 1_000 + round;
        let (alone, twice) = tokio::join!(
            other.create_transfers(vec![transfer(n, 11, 12, "1.00")]),
            r0.create_transfers(vec![
                transfer(n, 10, 12, "1.00"),
                transfer(n, 10, 12, "1.00")
            ]),
        );
        let alone = alone.expect("answered").results;
        let twice = twice.expect("answered").results;
        let codes: Vec<String> = twice.iter().map(code).collect();
        assert!(
            !(codes[0] != "APPLIED" && codes[1] == "APPLIED"),
            "round {round}: the repeat is applied, its original is not: {twice:?}"
        );
        // Exactly one of the two transfers holds the id.
        let winners =
            usize::from(code(&alone[0]) == "APPLIED") + usize::from(codes[0] == "APPLIED");
        assert_eq!(winners, 1, "round {round}: {alone:?} {twice:?}");
    }
    every_region_commits(&cluster, 12, 100).await;
}

/// Finding 5: a void refused (its id was taken by another command at the
/// same moment) while a later spend of the same account, which counted on
/// the voided hold's money, went in: an overdraft in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_5_a_spend_that_counted_on_a_refused_void_is_not_committed() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 13_000, dir.path()).await;
    let [r0, _, _] = region_clients(&cluster).await;
    // A fresh payer each round, holding nothing but the round's hold.
    let payers: Vec<u128> = (100..120).collect();
    open_accounts(&r0, &[&[11, 12], payers.as_slice()].concat()).await;
    let address = cluster.api_of(0).expect("region 0").to_owned();
    let (first, second) = (
        Client::connect(&address).await.expect("connects"),
        Client::connect(&address).await.expect("connects"),
    );
    assert!(applied(&submit(&r0, transfer(1, BANK, 11, "1000.00")).await).is_some());
    // A background load keeps an entry in flight, so that the three
    // requests of each round meet in one entry.
    let load = tokio::spawn({
        let client = Client::connect(&address).await.expect("connects");
        async move {
            for n in 0..400u128 {
                let _ = client
                    .create_transfers(vec![transfer(50_000 + n, BANK, 12, "0.01")])
                    .await;
            }
        }
    });
    for (round, payer) in payers.iter().copied().enumerate() {
        let base = 2_000 + 10 * round as u128;
        // The payer has 100, all of it on hold H.
        assert!(applied(&submit(&r0, transfer(base, BANK, payer, "100.00")).await).is_some());
        let on_hold = hold(base + 1, payer, SHOP, "100.00", 600_000);
        assert!(applied(&submit(&r0, on_hold).await).is_some());
        let x = base + 2;
        let (taken, voided, spent) = tokio::join!(
            first.create_transfers(vec![transfer(x, 11, 12, "1.00")]),
            second.create_transfers(vec![void(x, base + 1)]),
            r0.create_transfers(vec![transfer(base + 3, payer, 12, "100.00")]),
        );
        let (taken, voided, spent) = (
            code(&taken.expect("answered").results[0]),
            code(&voided.expect("answered").results[0]),
            code(&spent.expect("answered").results[0]),
        );
        if spent == "APPLIED" {
            assert_eq!(
                voided, "APPLIED",
                "round {round}: spent without the void ({taken})"
            );
        }
        // Whatever happened, nothing of the payer is below zero.
        let view = r0.lookup_accounts(vec![id(payer)]).await.expect("answered");
        let negative = view.accounts[0]
            .regions
            .iter()
            .any(|pool| pool.available.starts_with('-') || pool.held.starts_with('-'));
        assert!(!negative, "round {round}: {view:?}");
    }
    load.await.expect("the load ends");
    every_region_commits(&cluster, 12, 100).await;
}

/// Finding 1: a withdrawal whose timeout was shorter than its payout was
/// paid out and then expired: the money left and came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_1_a_withdrawal_paid_out_is_posted_whatever_its_timeout() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 12_000, dir.path()).await;
    let [r0, _, _] = region_clients(&cluster).await;
    open_accounts(&r0, &[10]).await;
    assert!(applied(&submit(&r0, transfer(1, BANK, 10, "400.00")).await).is_some());
    let mut commands = Vec::new();
    for n in 0..20u128 {
        commands.push(withdrawal(100 + n, 10, "10.00", "slow:iban:DE001", 1_000));
        commands.push(withdrawal(200 + n, 10, "10.00", "slow:iban:DE002", 1));
    }
    let results = submit_all(&r0, commands).await;
    assert!(
        results.iter().all(|result| applied(result).is_some()),
        "{results:?}"
    );
    // The simulated rail pays every `slow:` payout it was asked for: each
    // must end posted, none expired.
    for n in (0..20u128).flat_map(|n| [100 + n, 200 + n]) {
        wait_state(&r0, n, "posted").await;
    }
    wait_pool(&r0, 10, 0, "0.00").await;
    every_region_commits(&cluster, 10, 1_000).await;
}

/// Found in review (not in the audit): a client voided a withdrawal hold
/// while its payout was under way; the rail paid, the void had given the
/// money back, and the saga's post was refused. Only the payout's answer
/// resolves a withdrawal hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_void_or_post_a_withdrawal_under_way() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 11_000, dir.path()).await;
    let [r0, _, _] = region_clients(&cluster).await;
    open_accounts(&r0, &[10]).await;
    assert!(applied(&submit(&r0, transfer(1, BANK, 10, "100.00")).await).is_some());
    let paid = withdrawal(2, 10, "40.00", "slow:iban:DE003", 60_000);
    assert!(applied(&submit(&r0, paid).await).is_some());
    let voided = submit(&r0, void(3, 2)).await;
    assert_eq!(code(&voided), "WITHDRAWAL_IN_PROGRESS", "{voided:?}");
    let posted = submit(
        &r0,
        command(
            4,
            api::transfer_command::Kind::Post(api::Post {
                pending_id: id(0x10_0000 + 2),
                amount: "1.00".into(),
            }),
        ),
    )
    .await;
    assert_eq!(code(&posted), "WITHDRAWAL_IN_PROGRESS", "{posted:?}");
    // The payout answers, and its saga posts the whole hold: the money left
    // once.
    wait_state(&r0, 2, "posted").await;
    wait_pool(&r0, 10, 0, "60.00").await;
    // An ordinary hold is still the client's to void.
    assert!(applied(&submit(&r0, hold(5, 10, SHOP, "10.00", 60_000)).await).is_some());
    assert!(applied(&submit(&r0, void(6, 5)).await).is_some());
    wait_pool(&r0, 10, 0, "60.00").await;
}

/// Finding 4: after a proposal of unknown fate (a disk stall past the
/// proposal deadline), a retry of the same transfer was decided afresh
/// against a state without the first entry and appended behind it: both
/// committed, and every node stopped on the duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_4_a_retry_after_an_unknown_outcome_is_not_decided_again() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster_with(3, 1, 10_000, dir.path(), |options| {
        options.propose_deadline_ms = 1_500;
    })
    .await;
    let [r0, _, _] = region_clients(&cluster).await;
    open_accounts(&r0, &[10, 11]).await;
    assert!(applied(&submit(&r0, transfer(1, BANK, 10, "100.00")).await).is_some());
    // Region 0's only node: every append waits 4 s, past the 1.5 s deadline.
    cluster
        .stall_disk(1, Duration::from_secs(4))
        .expect("the stall is set");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = r0
        .create_transfers(vec![transfer(7, 10, 11, "60.00")])
        .await
        .expect("answered");
    assert_eq!(code(&first.results[0]), "OUTCOME_UNKNOWN", "{first:?}");
    // The client retries, as it was told to, while the disk still stalls
    // (whatever it hears: the first entry may commit meanwhile).
    for _ in 0..2 {
        let again = r0
            .create_transfers(vec![transfer(7, 10, 11, "60.00")])
            .await
            .expect("answered");
        eprintln!("retry during the stall: {}", code(&again.results[0]));
    }
    cluster
        .stall_disk(1, Duration::ZERO)
        .expect("the stall ends");
    // Once the disk is back, the retry learns the outcome: applied once.
    let result = submit(&r0, transfer(7, 10, 11, "60.00")).await;
    assert!(applied(&result).is_some(), "{result:?}");
    wait_pool(&r0, 10, 0, "40.00").await;
    wait_pool(&r0, 11, 0, "60.00").await;
    every_region_commits(&cluster, 11, 100).await;
}

/// Finding 8: a grant that took its account past the largest balance kept
/// was refused on every round, and with it every other grant into that
/// region, for good. Now a region adds at most a seventh of the range to a
/// bounded account (decision 0008): the top-ups past that share are
/// refused, so whatever the other regions release into it, the grant fits,
/// and grants of other accounts keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_8_a_grant_near_the_balance_ceiling_lands_and_others_keep_flowing() {
    const POINTS: &str = "POINTS";
    const CUSTOMER: u128 = 10;
    const OTHER: u128 = 20;
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 29_000, dir.path()).await;
    let [r0, r1, r2] = region_clients(&cluster).await;
    create(
        &r0,
        vec![
            account_in(BANK, api::AccountKind::External, POINTS),
            account_in(CUSTOMER, api::AccountKind::User, POINTS),
            account_in(OTHER, api::AccountKind::User, POINTS),
        ],
    )
    .await;
    let most = "10000000000000000000000000000"; // 1e28, the largest amount
    let result = submit(&r0, movement(1, BANK, CUSTOMER, most, POINTS)).await;
    assert!(applied(&result).is_some(), "{result:?}");
    let result = submit(&r2, of_region(2, movement(2, BANK, OTHER, "5", POINTS))).await;
    assert!(applied(&result).is_some(), "{result:?}");
    // Region 1 tops the customer up as far as it will go: seven times 1e28
    // would be 7e28, within 2^96 (about 7.92e28) on its own.
    let mut codes = Vec::new();
    for n in 0..7 {
        let top_up = of_region(1, movement(10 + n, BANK, CUSTOMER, most, POINTS));
        let result = submit(&r1, top_up).await;
        codes.push(code(&result));
    }
    eprintln!("top-ups in region 1: {codes:?}");

    // Region 0 moves its 1e28 to region 1: the grant takes the pool there
    // to 2e28. Then an unrelated account's grant into region 1.
    for (client, account, amount) in [(&r0, CUSTOMER, most), (&r2, OTHER, "5")] {
        rebalanced(client, account, amount, 1).await;
    }
    wait_pool(&r1, OTHER, 1, "5").await;
    assert_eq!(codes[0], "APPLIED", "{codes:?}");
    assert!(
        codes[1..].iter().all(|code| code == "BALANCE_OVERFLOW"),
        "a region adds at most its share: {codes:?}"
    );
    wait_pool(&r1, CUSTOMER, 1, "20000000000000000000000000000").await;
    for (n, client) in [&r0, &r1, &r2].into_iter().enumerate() {
        let command = of_region(n, movement(100 + n as u128, BANK, OTHER, "1", POINTS));
        let result = submit(client, command).await;
        assert!(applied(&result).is_some(), "region {n} commits: {result:?}");
    }
}

/// Finding 7: an actor parked by a linked chain went on deciding after its
/// park deadline while the chain's entry was still on its way to the log,
/// against a state without the chain's debit: both were admitted, the
/// account was overdrawn, and every node stopped. Here the deadline is 1 s
/// and every append of region 0 takes 2 s, so the actor always resumes
/// early; it resets the gate, and the engine admits only what applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_7_an_actor_parked_past_its_deadline_does_not_overdraw() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster_with(3, 1, 30_000, dir.path(), |options| {
        options.park_deadline_ms = 1_000;
    })
    .await;
    let [r0, _, _] = region_clients(&cluster).await;
    open_accounts(&r0, &[10, 11, 12]).await;
    for (n, account) in [(1, 10), (2, 11)] {
        assert!(applied(&submit(&r0, transfer(n, BANK, account, "100.00")).await).is_some());
    }
    wait_pool(&r0, 10, 0, "100.00").await;
    wait_pool(&r0, 11, 0, "100.00").await;
    cluster
        .stall_disk(1, Duration::from_secs(2))
        .expect("the stall is set");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The chain parks 10 and 11; three spends of 10 queue behind the park.
    let mut first = transfer(10, 10, 12, "60.00");
    first.linked = true;
    let chain = vec![first, transfer(11, 11, 12, "10.00")];
    let chain = {
        let client = r0.clone();
        tokio::spawn(async move { submit_all(&client, chain).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let singles: Vec<_> = (0..3u128)
        .map(|n| {
            let client = r0.clone();
            tokio::spawn(async move { submit(&client, transfer(20 + n, 10, 12, "30.00")).await })
        })
        .collect();
    let mut answered = Vec::new();
    for result in chain.await.expect("the chain's call") {
        answered.push(result);
    }
    for single in singles {
        answered.push(single.await.expect("a single's call"));
    }
    let codes: Vec<String> = answered.iter().map(code).collect();
    eprintln!("chain, then singles: {codes:?}");
    cluster
        .stall_disk(1, Duration::ZERO)
        .expect("the stall ends");
    every_region_commits(&cluster, 11, 100).await;

    // The log holds every transfer answered applied, and took from 10 no
    // more than it had; 10's total is what the log took.
    let ids = [10, 11, 20, 21, 22];
    let found = r0
        .lookup_transfers(ids.iter().map(|n| id(0x10_0000 + n)).collect())
        .await
        .expect("answered");
    for (n, result) in ids.iter().zip(&answered) {
        if applied(result).is_some() {
            assert!(
                found.transfers.iter().any(|t| t.id == id(0x10_0000 + n)),
                "transfer {n} was answered applied: {found:?}"
            );
        }
    }
    let from_10: u32 = found
        .transfers
        .iter()
        .filter(|t| t.debit == id(10))
        .map(|t| {
            t.amount
                .trim_end_matches(".00")
                .parse::<u32>()
                .expect("whole")
        })
        .sum();
    assert!(from_10 <= 100, "10 spent {from_10}.00 of 100.00: {found:?}");
    assert_eq!(total(&r0, 10).await, format!("{}.00", 100 - from_10));
    // The scenario happened: an actor resumed at its deadline.
    let log = std::fs::read_to_string(&cluster.nodes[0].log).expect("node 1's log");
    assert!(
        log.contains("parked past the deadline"),
        "no park timed out"
    );
}
