//! The node's chaos bites (`chaos-bite` feature), shown on real processes:
//! each breaks the invariant it names, where a cluster without it keeps it
//! (the other tests of this folder). The core's bites have their tests in
//! `reservations/tests/bite.rs`.
#![cfg(feature = "chaos-bite")]

mod common;

use common::*;
use ledger_node::client::Client;
use ledger_node::ids;
use ledger_reservations::TransferId;

const USER: u128 = 10;

/// `answer-before-commit`: a leader cut off from the rest of its region
/// acknowledges a transfer it can never commit; the region elects another
/// leader, and after the heal the acknowledged transfer is nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_before_commit_acknowledges_a_transfer_that_is_then_lost() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster_with(1, 3, 9_000, dir.path(), |options| {
        options.bite = Some("answer-before-commit".into());
    })
    .await;
    let entry = Client::connect(&api_of(&cluster, 1))
        .await
        .expect("connects");
    open_accounts(&entry, &[USER]).await;
    let leader = leader_other_than(&entry, "region-0", 0).await;
    let client = Client::connect(&api_of(&cluster, leader))
        .await
        .expect("connects");
    let funded = submit(&client, transfer(1, BANK, USER, "5.00")).await;
    assert!(applied(&funded).is_some(), "{funded:?}");
    wait_pool(&client, USER, 0, "5.00").await;

    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    cluster.cut(&[leader], &others).expect("cut");
    // Once the other two have elected a leader, the cut is in place; the
    // old leader has heard nothing of it and still takes commands.
    let peer = Client::connect(&api_of(&cluster, others[0]))
        .await
        .expect("connects");
    let next = leader_other_than(&peer, "region-0", leader).await;
    assert_ne!(next, leader);
    // Sent once, to the cut-off leader: it cannot commit anything without
    // the rest of its region, yet the answer says it did.
    let lost = client
        .create_transfers(vec![transfer(2, BANK, USER, "1.00")])
        .await
        .expect("answered");
    let acknowledged = applied(&lost.results[0]).unwrap_or_else(|| panic!("{lost:?}"));
    assert!(
        acknowledged.new && acknowledged.index > 0,
        "{acknowledged:?}"
    );
    cluster.heal().expect("healed");
    // Every node ends with the first top-up only, the acknowledged one
    // nowhere.
    assert_eq!(converged(&cluster, &[1, 2, 3], &[USER]).await, ["5.00"]);
    for node in [1, 2, 3] {
        let reader = Client::connect(&api_of(&cluster, node))
            .await
            .expect("connects");
        let found = reader
            .lookup_transfers(vec![id(0x10_0000 + 2)])
            .await
            .expect("answered");
        assert!(found.transfers.is_empty(), "node {node}: {found:?}");
    }
    cluster.stop().await;
}

/// `decide-retry-elsewhere`: a retry of region 0's transfer sent to region
/// 1 is decided there instead of sent on, and applied a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decide_retry_elsewhere_applies_a_retry_in_a_second_region() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster_with(2, 1, 9_500, dir.path(), |options| {
        options.bite = Some("decide-retry-elsewhere".into());
    })
    .await;
    let region_0 = Client::connect(&api_of(&cluster, 1))
        .await
        .expect("connects");
    let region_1 = Client::connect(&api_of(&cluster, 2))
        .await
        .expect("connects");
    open_accounts(&region_0, &[USER]).await;
    let mut top_up = transfer(1, BANK, USER, "5.00");
    top_up.id = ids::format(TransferId(0x10_0000 + 1).minted_for(0, 2).0);

    let first = submit(&region_0, top_up.clone()).await;
    let first = applied(&first).unwrap_or_else(|| panic!("{first:?}"));
    assert_eq!((first.new, first.region), (true, 0));
    // Region 1 has seen it decided by region 0, and still decides it.
    wait_pool(&region_1, USER, 0, "5.00").await;
    let retry = submit(&region_1, top_up).await;
    let retry = applied(&retry).unwrap_or_else(|| panic!("{retry:?}"));
    assert_eq!((retry.new, retry.region), (true, 1), "decided again");
    assert_eq!(converged(&cluster, &[1, 2], &[USER]).await, ["10.00"]);
    cluster.stop().await;
}
