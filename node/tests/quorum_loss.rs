//! A region's leader cut from the rest of its region (issue 10) held the
//! transfers it had taken for the whole proposal deadline before it
//! answered OUTCOME_UNKNOWN, and every transfer behind them waited too. It
//! now answers what it appended within one leader lease (the election
//! timeout), as unknown, and refuses what comes after with NOT_LEADER
//! naming no leader: nothing appended, ask another node.

mod common;

use common::*;
use ledger_node::client::Client;
use ledger_proto::v1 as api;
use ledger_proto::v1::ledger_client::LedgerClient;
use std::time::{Duration, Instant};

/// Far above the lease of these clusters (1.2 s), far below their proposal
/// deadline (30 s): a busy machine stays within it, the old hold does not.
const ANSWER_MAX: Duration = Duration::from_secs(10);

/// Sends one top-up of Alice straight to `node` (no redirect followed) and
/// returns its error code, and how long the answer took.
async fn top_up_on(
    node: &mut LedgerClient<tonic::transport::Channel>,
    n: u128,
    alice: u128,
) -> (api::Error, Duration) {
    let started = Instant::now();
    let request = api::CreateTransfersRequest {
        commands: vec![transfer(n, BANK, alice, "1.00")],
    };
    let answer = tokio::time::timeout(ANSWER_MAX, node.create_transfers(request))
        .await
        .expect("the cut-off leader answers within ANSWER_MAX")
        .expect("answered")
        .into_inner();
    let took = started.elapsed();
    let result = answer.results.first().expect("one result");
    let error = error(result).cloned().expect("not applied while cut off");
    eprintln!("transfer {n}: {} after {took:?}", error.code);
    (error, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_from_its_region_answers_within_a_lease_then_refuses() {
    const ALICE: u128 = 10;
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster_with(1, 3, 8_000, dir.path(), |options| {
        options.propose_deadline_ms = 30_000;
    })
    .await;
    let any = Client::connect(&api_of(&cluster, 1))
        .await
        .expect("connects");
    open_accounts(&any, &[ALICE]).await;
    let first = submit(&any, transfer(1, BANK, ALICE, "1.00")).await;
    assert!(applied(&first).is_some(), "{first:?}");

    let old = leader_other_than(&any, "region-0", 0).await;
    let peers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    let mut cut_off = LedgerClient::connect(format!("http://{}", api_of(&cluster, old)))
        .await
        .expect("connects");
    cluster.cut(&[old], &peers).expect("cut");
    // The nodes read the fault file every 100 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Taken while its lease still held, it may have been appended: unknown
    // (or, on a machine slow enough that the lease ran out first, refused).
    let (error, _) = top_up_on(&mut cut_off, 2, ALICE).await;
    assert!(
        ["OUTCOME_UNKNOWN", "NOT_LEADER"].contains(&error.code.as_str()),
        "{error:?}"
    );
    // From then on: refused before it is proposed, sending the client to
    // another voter of the region (which knows the leader chosen meanwhile),
    // not making it wait on a node that cannot lead.
    let others: Vec<String> = peers.iter().map(|peer| api_of(&cluster, *peer)).collect();
    for n in [3, 4] {
        let (error, _) = top_up_on(&mut cut_off, n, ALICE).await;
        assert_eq!(error.code, "NOT_LEADER", "{error:?}");
        assert!(error.retryable, "{error:?}");
        assert!(
            others.contains(&error.redirect),
            "{error:?} not to {others:?}"
        );
    }

    // The other two elected a leader and take transfers meanwhile.
    let peer = Client::connect(&api_of(&cluster, peers[0]))
        .await
        .expect("connects");
    let fresh = submit(&peer, transfer(5, BANK, ALICE, "1.00")).await;
    assert!(applied(&fresh).is_some(), "{fresh:?}");
    cluster.heal().expect("heal");
    converged(&cluster, &cluster.running(), &[ALICE]).await;
}
