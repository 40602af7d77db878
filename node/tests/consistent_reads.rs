//! Every plain read is a consistent cut (issue 9): a region's leader cut off
//! from the rest of its region keeps applying the other regions' logs, and
//! used to answer lookups that combined its stale view of its own region
//! with the other regions' later decisions, down to accounts below zero.

mod common;

use common::*;
use ledger_node::client::{Client, ClientError};
use ledger_proto::v1 as api;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_from_its_region_never_reads_a_total_that_never_was() {
    const ALICE: u128 = 10;
    const BOB: u128 = 11;
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 3, 32_000, dir.path()).await;
    let any = Client::connect(&api_of(&cluster, 1))
        .await
        .expect("connects");
    open_accounts(&any, &[ALICE, BOB]).await;
    converged(&cluster, &cluster.running(), &[ALICE, BOB]).await;

    // Region 0's leader is cut from the two other nodes of its region; it
    // still hears regions 1 and 2.
    let stale = leader_other_than(&any, "region-0", 0).await;
    let peers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != stale).collect();
    cluster.cut(&[stale], &peers).expect("cut");
    let peer = Client::connect(&api_of(&cluster, peers[0]))
        .await
        .expect("connects");
    let fresh = leader_other_than(&peer, "region-0", stale).await;
    let r0 = Client::connect(&api_of(&cluster, fresh))
        .await
        .expect("connects");
    let r1 = Client::connect(&api_of(
        &cluster,
        leader_other_than(&any, "region-1", 0).await,
    ))
    .await
    .expect("connects");

    // The new leader of region 0 tops Alice up and moves it to region 1,
    // which takes it in and spends most of it.
    let top_up = submit(&r0, transfer(1, BANK, ALICE, "100.00")).await;
    assert!(applied(&top_up).is_some(), "{top_up:?}");
    rebalanced(&r0, ALICE, "100.00", 1).await;
    wait_pool(&r1, ALICE, 1, "100.00").await;
    let spend = of_region(1, transfer(2, ALICE, BOB, "60.00"));
    assert!(applied(&submit(&r1, spend.clone()).await).is_some());

    // The cut-off node holds region 1's grant and spend, not region 0's
    // top-up and release.
    let cut_off = Client::connect(&api_of(&cluster, stale))
        .await
        .expect("connects");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cut_off
        .lookup_transfers(vec![spend.id.clone()])
        .await
        .expect("answered")
        .missing
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "region 1 reaches it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing = cut_off
        .lookup_transfers(vec![id(0x10_0000 + 1)])
        .await
        .expect("answered");
    assert_eq!(missing.missing.len(), 1, "the cut is real");

    // Its plain read would say Alice has -60.00; it says it is behind.
    match cut_off.lookup_accounts(vec![id(ALICE)]).await {
        Err(ClientError::Status(status)) => {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            assert!(status.message().starts_with("STALE_REPLICA"), "{status:?}");
        }
        Ok(answer) => panic!("answered from figures that never were: {answer:?}"),
        Err(other) => panic!("{other}"),
    }
    // Its history too: Alice's movements there are a spend with no funds.
    let history = cut_off
        .account_history(api::AccountHistoryRequest {
            account: id(ALICE),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(history, Err(ClientError::Status(ref status)) if status.message().starts_with("STALE_REPLICA")),
        "{history:?}"
    );

    cluster.heal().expect("heal");
    let views = converged(&cluster, &cluster.running(), &[ALICE, BOB]).await;
    assert_eq!(views, ["40.00", "60.00"]);
    // Every answer says where each region's figures are as of.
    let answer = cut_off
        .lookup_accounts(vec![id(ALICE)])
        .await
        .expect("answered");
    let regions: Vec<u32> = answer.watermarks.iter().map(|mark| mark.region).collect();
    assert_eq!(regions, [0, 1, 2]);
    // Regions 0 and 1 have entries; region 2 has decided nothing yet.
    assert!(
        answer.watermarks[..2]
            .iter()
            .all(|mark| mark.applied_index > 0)
    );
}
