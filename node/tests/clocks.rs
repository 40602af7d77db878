//! Clocks cannot freeze a region (issue 9, audit finding 10): a leader
//! whose clock runs 60 s fast stamps its region's log in the future; once
//! it has lost leadership, the next leader extends that log at once
//! (`max(now, last) + 1`; the drift limit is for stamps from other nodes),
//! and no hold with 120 s left is expired by either.

mod common;

use common::*;
use ledger_node::client::Client;
use std::time::{Duration, Instant};

/// The leader of region 0 after `fast`, as another node of region 0 sees it.
async fn next_leader(cluster: &ledger_node::dev::Cluster, fast: u64) -> u64 {
    let peer = [1, 2, 3]
        .into_iter()
        .find(|id| *id != fast)
        .expect("a peer");
    let peer = Client::connect(&api_of(cluster, peer))
        .await
        .expect("connects");
    leader_other_than(&peer, "region-0", fast).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_60_s_fast_does_not_freeze_its_region_or_expire_holds_early() {
    let dir = tempfile::tempdir().expect("dir");
    // Without the clock watch, which would make the fast leader step down
    // by itself (the next test): here it leads until it dies.
    let mut cluster = cluster_with(3, 3, 28_000, dir.path(), |options| {
        options.clock_watch = false;
    })
    .await;
    let entry = Client::connect(&api_of(&cluster, 1))
        .await
        .expect("connects");
    open_accounts(&entry, &[10, 11]).await;
    let fast = leader_other_than(&entry, "region-0", 0).await;
    let r0 = Client::connect(&api_of(&cluster, fast))
        .await
        .expect("connects");
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
    let next = next_leader(&cluster, fast).await;
    let elected = Instant::now();
    let r0 = Client::connect(&api_of(&cluster, next))
        .await
        .expect("connects");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_clock_is_off_refuses_to_lead_and_says_so() {
    let dir = tempfile::tempdir().expect("dir");
    // One region of three nodes: the fast one sees two clocks 60 s behind
    // its own; each other sees one clock 60 s ahead and one with it.
    let cluster = cluster(1, 3, 28_500, dir.path()).await;
    let entry = Client::connect(&api_of(&cluster, 1))
        .await
        .expect("connects");
    open_accounts(&entry, &[10]).await;
    let fast = leader_other_than(&entry, "region-0", 0).await;
    let skewed = Client::connect(&api_of(&cluster, fast))
        .await
        .expect("connects");
    cluster.skew_clock(fast, 60_000).expect("skewed");

    // It finds its clock 60 s ahead of its peers', says so, and hands over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = skewed.status().await.expect("status");
        if status.refuses_to_lead {
            assert!(status.clock_offset_ms > 59_000, "{status:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let next = next_leader(&cluster, fast).await;
    assert_ne!(next, fast);
    // A command sent to it is not decided there: CLOCK_DRIFT sends the
    // client on to the leader, which decides it.
    let result = submit(&skewed, transfer(1, BANK, 10, "1.00")).await;
    let done = applied(&result).unwrap_or_else(|| panic!("{result:?}"));
    assert_eq!(done.region, 0);
    let status = skewed.status().await.expect("status");
    let leader = status
        .groups
        .iter()
        .find(|group| group.group == "region-0")
        .map(|group| group.leader);
    assert_ne!(leader, Some(fast), "it does not lead again");

    // Its clock set right, it may lead again.
    cluster.skew_clock(fast, 0).expect("set right");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while skewed.status().await.expect("status").refuses_to_lead {
        assert!(tokio::time::Instant::now() < deadline, "still refuses");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
