//! A voter cut from its region's quorum, and back (issue 10): a leader cut
//! off answers within one lease, not after the whole proposal deadline, and
//! a node back from a cut (the old leader or a follower) does not depose
//! the leader with a term it raised alone (pre-vote).
//!
//! Timing is only ever bounded from above, by many seconds: on a loaded
//! machine everything may take longer, but never as long as the failures
//! these tests catch (a proposal held for its 30 s deadline; a term raised
//! at every election timeout of the cut).

mod common;

use common::*;
use ledger_replication::*;
use std::time::Duration;

/// Region 0 on three voters, region 1 on one node that learns region 0's log.
const NODES: &[(u64, u16)] = &[(1, 0), (2, 0), (3, 0), (4, 1)];
const VOTERS: [u64; 3] = [1, 2, 3];

/// Elections a little slower than `Timings::local`, so that a loaded
/// machine does not call one by itself while a test watches the leader; a
/// proposal deadline far longer than any answer the tests accept.
fn timings() -> Timings {
    Timings {
        election_min_ms: 500,
        election_max_ms: 1_000,
        propose_deadline_ms: 30_000,
        ..Timings::local()
    }
}

/// One election timeout at most (and the leader lease).
fn election_max() -> Duration {
    Duration::from_millis(timings().election_max_ms)
}

/// A cluster with an entry committed, its leader of region 0 and that
/// leader's term.
async fn started() -> (Cluster, u64, u64) {
    let mut cluster = Cluster::start(layout(NODES), timings()).await;
    cluster.propose(1, 100).await;
    let leader = cluster.wait_leader(REGION0).await;
    let term = term(&cluster, leader);
    (cluster, leader, term)
}

/// Cuts `node` from every other node.
fn isolate(cluster: &Cluster, node: u64) {
    for other in cluster.nodes.keys().filter(|other| **other != node) {
        cluster.transport.cut(node, *other);
    }
}

fn term(cluster: &Cluster, node: u64) -> u64 {
    cluster.nodes[&node]
        .progress(REGION0)
        .map_or(0, |progress| progress.term)
}

/// Waits until a voter other than `old` leads region 0 in a term above
/// `term`; returns it and its term.
async fn new_leader(cluster: &Cluster, old: u64, term: u64) -> (u64, u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leading = VOTERS.iter().copied().find(|id| {
            *id != old && cluster.nodes[id].is_leader(REGION0) && self::term(cluster, *id) > term
        });
        if let Some(leader) = leading {
            return (leader, self::term(cluster, leader));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the voters left did not elect a leader"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After a heal: watches region 0 for `window` and then until `back` follows
/// `leader`. All along `leader` must lead in `term` and no voter may be in a
/// later term: a node back from a cut must not call an election.
async fn keeps_leading(cluster: &Cluster, leader: u64, term: u64, back: u64, window: Duration) {
    let watched_until = tokio::time::Instant::now() + window;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            cluster.nodes[&leader].is_leader(REGION0),
            "node {leader} lost the leadership after the heal"
        );
        for voter in VOTERS {
            let now = self::term(cluster, voter);
            assert!(
                now <= term,
                "node {voter} is in term {now} after the heal; the leader's is {term}"
            );
        }
        let follows = cluster.nodes[&back]
            .progress(REGION0)
            .is_some_and(|progress| progress.leader == Some(leader) && progress.term == term);
        if follows && tokio::time::Instant::now() >= watched_until {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {back} did not come to follow node {leader}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The heal comes in two steps, as it often does (a link back before
/// another, a connection that waits for its next attempt): first the old
/// leader reaches a follower, which tells it of the new term, and it stops
/// leading; the new leader does not reach it yet. Without pre-vote its
/// election timer then raises its term, and once the new leader reaches
/// it, that term deposes the new leader (issue 10: two seconds without one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_back_from_a_cut_does_not_depose_the_one_elected_meanwhile() {
    let (mut cluster, old, before) = started().await;

    isolate(&cluster, old);
    let (leader, elected) = new_leader(&cluster, old, before).await;
    // Several election timeouts cut off: time for any timer to fire.
    tokio::time::sleep(election_max() * 3).await;
    assert_eq!(
        term(&cluster, old),
        before,
        "the old leader raised its term while cut off"
    );

    let follower = VOTERS
        .into_iter()
        .find(|id| *id != old && *id != leader)
        .expect("a follower");
    cluster.transport.heal();
    cluster.transport.cut(old, leader);
    cluster.transport.cut(old, 4);
    // Half back: it hears of the new term, from the follower only.
    let deadline = tokio::time::Instant::now() + election_max() * 4;
    while tokio::time::Instant::now() < deadline {
        let now = term(&cluster, old);
        assert!(
            now <= elected,
            "the old leader raised its term to {now} past the new leader's {elected}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !cluster.nodes[&old].is_leader(REGION0),
        "node {old} still leads after node {follower} told it of term {elected}"
    );

    cluster.transport.heal();
    keeps_leading(&cluster, leader, elected, old, election_max() * 3).await;
    let applied = cluster.propose(2, 50).await;
    cluster.wait_everywhere(applied.index).await;
    assert_eq!(cluster.balance(old), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_back_from_a_cut_does_not_depose_the_leader() {
    let (cluster, leader, before) = started().await;
    let follower = VOTERS
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");

    isolate(&cluster, follower);
    // Its election timer fires several times while it is cut off.
    tokio::time::sleep(election_max() * 4).await;
    assert_eq!(
        term(&cluster, follower),
        before,
        "the cut-off follower raised its term"
    );

    cluster.transport.heal();
    keeps_leading(&cluster, leader, before, follower, election_max() * 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_from_its_quorum_answers_within_a_lease() {
    let (mut cluster, old, _) = started().await;
    // Bounds far above one lease, far below the proposal deadline.
    let answer_max = Duration::from_secs(10);

    isolate(&cluster, old);
    // Taken while the lease still holds (else refused at once): appended,
    // it may yet commit, so its outcome is unknown, said within a lease.
    let event = cluster.top_up(2, 50);
    let proposal = Proposal::region(vec![event]);
    let pending = cluster.nodes[&old].propose(REGION0, proposal);
    let answer = tokio::time::timeout(answer_max, pending)
        .await
        .expect("a proposal to a cut-off leader is answered within a lease, not its deadline");
    assert!(
        matches!(
            answer,
            Err(ProposeError::Unknown { .. } | ProposeError::NotLeader { leader: None, .. })
        ),
        "{answer:?}"
    );

    // Once the lease has run out: refused before it is appended, and no
    // leader named, so a client goes to another node.
    let event = cluster.top_up(3, 25);
    let proposal = Proposal::region(vec![event]);
    let refused = tokio::time::timeout(answer_max, cluster.nodes[&old].propose(REGION0, proposal))
        .await
        .expect("refused at once");
    assert!(
        matches!(refused, Err(ProposeError::NotLeader { leader: None, .. })),
        "{refused:?}"
    );
    assert!(cluster.nodes[&old].barrier(REGION0).await.is_err());

    cluster.transport.heal();
    let applied = cluster.propose(4, 10).await;
    cluster.wait_everywhere(applied.index).await;
}
