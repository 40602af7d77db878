//! Cross-region pulls on a calm cluster (no fault), through the public API
//! of real `ledger` processes: a pull ends well before its deadline (5 s)
//! even when the funds it counted on are spent while it waits.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// A call with a pull in it takes less than this: half the pull deadline,
/// and many times what a pull takes on a calm cluster, so that a loaded
/// machine does not make the test fail.
const PULL_CALL_MAX: Duration = Duration::from_millis(2_500);

/// Found by `jepsen run --scenario calm`: a pull whose answers fell short
/// of what it needed waited out its deadline and ended PULL_TIMED_OUT,
/// though other regions still held enough (it never asked again), or though
/// the account no longer had enough anywhere (it never noticed). Here
/// another debit of the same call spends what the pull counted on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_whose_funds_another_debit_spends_ends_well_before_its_deadline() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 32_400, dir.path()).await;
    let [r0, r1, r2] = region_clients(&cluster).await;
    open_accounts(&r0, &[10, 11, 12]).await;
    for (region, client) in [&r0, &r1, &r2].into_iter().enumerate() {
        for (n, user) in [(1, 10), (2, 11)] {
            let n = 10 * region as u128 + n;
            let command = of_region(region, transfer(n, BANK, user, "5.00"));
            let result = submit(client, command).await;
            assert!(applied(&result).is_some(), "{result:?}");
        }
    }
    // Region 0 sees the other regions' pools before it decides.
    for user in [10, 11] {
        for region in 1..3 {
            wait_pool(&r0, user, region, "5.00").await;
        }
    }

    // Two debits of 6.00 of 10, each short of 1.00 here: each pull asks
    // region 1 for 1.00. The first debit to go through spends what both
    // brought, so the other pull's answer is in and it is still short,
    // while region 2 holds 5.00: it asks again, and both go through.
    let started = Instant::now();
    let results = submit_all(
        &r0,
        vec![
            of_region(0, transfer(100, 10, 12, "6.00")),
            of_region(0, transfer(101, 10, 12, "6.00")),
        ],
    )
    .await;
    let took = started.elapsed();
    eprintln!("two debits, each with a pull, one asking again: {took:?}");
    let codes: Vec<String> = results.iter().map(code).collect();
    assert_eq!(codes, ["APPLIED", "APPLIED"], "after {took:?}: {results:?}");
    assert!(took < PULL_CALL_MAX, "the call took {took:?}");

    // 12.00 of 11, short of 7.00 here, then 5.00 that goes through at
    // once: the account has 10.00 left in all, so the first is refused for
    // want of funds at once.
    let started = Instant::now();
    let results = submit_all(
        &r0,
        vec![
            of_region(0, transfer(102, 11, 12, "12.00")),
            of_region(0, transfer(103, 11, 12, "5.00")),
        ],
    )
    .await;
    let took = started.elapsed();
    let codes: Vec<String> = results.iter().map(code).collect();
    assert_eq!(
        codes,
        ["INSUFFICIENT_FUNDS", "APPLIED"],
        "after {took:?}: {results:?}"
    );
    assert!(took < PULL_CALL_MAX, "the call took {took:?}");

    // Nothing was lost on the way: every node ends with the same totals.
    let totals = converged(&cluster, &[1, 2, 3], &[10, 11, 12]).await;
    assert_eq!(totals, ["3.00", "10.00", "17.00"]);
    cluster.stop().await;
}

/// Found by the chaos suite's soak: a linked chain whose last command was
/// short of funds here (while the account's global balance covered it) was
/// answered LINKED_CHAIN_FAILED for its first command, while its last went
/// to a pull, was decided again alone and applied. A chain is all or
/// nothing: no command of it goes to a pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_whose_last_command_is_short_here_is_refused_whole() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 31_500, dir.path()).await;
    let [r0, r1, _] = region_clients(&cluster).await;
    open_accounts(&r0, &[10, 11, 12]).await;
    for (region, client) in [&r0, &r1].into_iter().enumerate() {
        let n = 10 * region as u128 + 1;
        let top_up = of_region(region, transfer(n, BANK, 10, "5.00"));
        assert!(applied(&submit(client, top_up).await).is_some());
    }
    wait_pool(&r0, 10, 1, "5.00").await;
    // 1.00 then 6.00 of 10, linked: the second is short of 2.00 here, and
    // region 1 holds 5.00.
    let mut first = of_region(0, transfer(100, 10, 11, "1.00"));
    first.linked = true;
    let results = submit_all(
        &r0,
        vec![first, of_region(0, transfer(101, 10, 12, "6.00"))],
    )
    .await;
    let codes: Vec<String> = results.iter().map(code).collect();
    assert_eq!(
        codes,
        ["LINKED_CHAIN_FAILED", "INSUFFICIENT_FUNDS"],
        "{results:?}"
    );
    // Nothing of it applied anywhere.
    let totals = converged(&cluster, &[1, 2, 3], &[10, 11, 12]).await;
    assert_eq!(totals, ["10.00", "0.00", "0.00"]);
    cluster.stop().await;
}
