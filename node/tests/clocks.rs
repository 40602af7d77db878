//! Clocks cannot freeze a region (issue 9, audit finding 10): a leader
//! whose clock runs 60 s fast stamps its region's log in the future; once
//! it has lost leadership, the next leader extends that log at once
//! (`max(now, last) + 1`; the drift limit is for stamps from other nodes),
//! and no hold with 120 s left is expired by either.

mod common;

use common::*;
use ledger_node::client::Client;
use std::time::{Duration, Instant};

/// The leader of region 0 as `client`'s node sees it, once it is not `not`.
async fn region_0_leader(client: &Client, not: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(status) = client.status().await
            && let Some(leader) = status
                .groups
                .iter()
                .find(|group| group.group == "region-0")
                .map(|group| group.leader)
                .filter(|leader| *leader != 0 && *leader != not)
        {
            return leader;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_60_s_fast_does_not_freeze_its_region_or_expire_holds_early() {
    let dir = tempfile::tempdir().expect("dir");
    let mut cluster = cluster(3, 3, 35_000, dir.path()).await;
    let nodes = cluster.nodes.clone();
    let api_of = |id: u64| {
        nodes
            .iter()
            .find(|node| node.id == id)
            .map(|node| node.api.clone())
            .expect("a node")
    };
    let entry = Client::connect(&api_of(1)).await.expect("connects");
    open_accounts(&entry, &[10, 11]).await;
    let fast = region_0_leader(&entry, 0).await;
    let r0 = Client::connect(&api_of(fast)).await.expect("connects");
    assert!(applied(&submit(&r0, transfer(1, BANK, 10, "100.00")).await).is_some());
    // A hold with 120 s to run, decided by a correct clock.
    let long = hold(2, 10, SHOP, "5.00", 120_000);
    assert!(applied(&submit(&r0, long).await).is_some());

    // The leader's clock jumps 60 s ahead; it stamps region 0's log there.
    cluster.skew_clock(fast, 60_000).expect("skewed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ahead = submit(&r0, transfer(3, 10, 11, "1.00")).await;
    assert!(applied(&ahead).is_some(), "{ahead:?}");

    // It loses leadership (here: it dies). The next leader, with a correct
    // clock, decides at once: within an election, not after a minute.
    cluster.kill(fast).await.expect("killed");
    let peer = [1, 2, 3]
        .into_iter()
        .find(|id| *id != fast)
        .expect("a peer");
    let peer = Client::connect(&api_of(peer)).await.expect("connects");
    let next = region_0_leader(&peer, fast).await;
    let elected = Instant::now();
    let r0 = Client::connect(&api_of(next)).await.expect("connects");
    let after = submit(&r0, transfer(4, 10, 11, "1.00")).await;
    let waited = elected.elapsed();
    assert!(applied(&after).is_some(), "{after:?} after {waited:?}");
    assert!(
        waited < Duration::from_secs(10),
        "the region decided again only after {waited:?}"
    );

    // Expiry sweeps ran on both leaders meanwhile; the hold is still open.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let found = r0
        .lookup_transfers(vec![id(0x10_0000 + 2)])
        .await
        .expect("answered");
    let state = found
        .transfers
        .first()
        .map(|transfer| transfer.state.clone());
    assert_eq!(state.as_deref(), Some("open"), "{found:?}");
}
