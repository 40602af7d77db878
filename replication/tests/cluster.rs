//! Clusters inside one process over the local transport: leader crashes,
//! restarts from disk and snapshot, learners cut off and caught up.

mod common;

use ledger_replication::*;
use ledger_reservations::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const REGION0: Group = Group::Region(RegionId(0));

fn layout() -> Layout {
    let node = |id, region| NodeConfig {
        id,
        region: RegionId(region),
        addr: format!("local-{id}"),
    };
    Layout {
        nodes: vec![node(1, 0), node(2, 0), node(3, 0), node(4, 1)],
        control_voters: vec![],
    }
}

struct Cluster {
    layout: Layout,
    timings: Timings,
    transport: Arc<LocalTransport>,
    dirs: BTreeMap<u64, PathBuf>,
    nodes: BTreeMap<u64, ReplicaNode>,
    _root: tempfile::TempDir,
    next_stamp: u64,
}

impl Cluster {
    async fn start(timings: Timings) -> Self {
        let root = tempfile::tempdir().expect("dir");
        let layout = layout();
        let mut cluster = Self {
            layout: layout.clone(),
            timings,
            transport: Arc::new(LocalTransport::default()),
            dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            next_stamp: 1_000,
            _root: root,
        };
        for node in &layout.nodes {
            let dir = cluster._root.path().join(format!("node-{}", node.id));
            cluster.dirs.insert(node.id, dir);
            cluster.boot(node.id).await;
        }
        for node in cluster.nodes.values() {
            node.initialize().await.expect("initializes");
        }
        cluster.wire().await;
        cluster
    }

    async fn boot(&mut self, id: u64) {
        let node = ReplicaNode::start(
            id,
            &self.layout,
            self.timings,
            &self.dirs[&id],
            self.transport.clone(),
        )
        .await
        .expect("node starts");
        self.transport.attach(&node);
        self.nodes.insert(id, node);
    }

    /// Adds learners until every node is in every group.
    async fn wire(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            for node in self.nodes.values() {
                node.wire_learners().await.expect("wires");
            }
            let complete = self
                .layout
                .groups()
                .into_iter()
                .all(|group| self.nodes.values().any(|node| node.is_leader(group)));
            if complete && self.learners_in_place().await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "membership incomplete"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn learners_in_place(&self) -> bool {
        // Every node has applied a membership entry of every group that
        // names all four nodes, which is when replication reaches learners.
        for group in self.layout.groups() {
            let Some(leader) = self.leader(group).await else {
                return false;
            };
            let Some(index) = self.nodes[&leader].applied_index(group) else {
                return false;
            };
            for node in self.nodes.values() {
                if node.applied_index(group) < Some(index) {
                    return false;
                }
            }
        }
        true
    }

    async fn leader(&self, group: Group) -> Option<u64> {
        for node in self.nodes.values() {
            if node.is_leader(group) {
                return Some(node.id());
            }
        }
        None
    }

    async fn wait_leader(&self, group: Group) -> u64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(leader) = self.leader(group).await {
                return leader;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader of {group}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn top_up(&mut self, id: u128, cents: u128) -> Event {
        self.next_stamp += 1;
        common::top_up(id, cents, self.next_stamp)
    }

    /// Proposes one region-0 entry on its current leader. While leadership
    /// settles (right after a crash) a node may answer `NotLeader`; nothing
    /// was appended then, so, like a gateway, this sends it again. Any other
    /// answer fails the test.
    async fn propose(&mut self, id: u128, cents: u128) -> Applied {
        let event = self.top_up(id, cents);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leader = self.wait_leader(REGION0).await;
            let proposal = Proposal::Region(vec![event.clone()]);
            match self.nodes[&leader].propose(REGION0, proposal).await {
                Ok(applied) => return applied,
                Err(ProposeError::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("proposal failed: {error}"),
            }
        }
    }

    async fn wait_everywhere(&self, index: u64) {
        for node in self.nodes.values() {
            node.wait_applied(REGION0, index, WAIT)
                .await
                .expect("applied");
        }
    }

    fn balance(&self, node: u64) -> i128 {
        self.nodes[&node].ledger().read(|ledger| {
            ledger
                .region(RegionId(0))
                .and_then(|region| region.pool(AccountId(2)))
                .map_or(0, |pool| pool.available)
        })
    }

    async fn crash(&mut self, id: u64) {
        self.transport.remove_node(id);
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_applies_what_a_region_commits_and_it_survives_the_leader_crash() {
    let mut cluster = Cluster::start(Timings::local()).await;
    let first = cluster.propose(1, 100).await;
    cluster.wait_everywhere(first.index).await;
    for node in [1, 2, 3, 4] {
        assert_eq!(cluster.balance(node), 100, "node {node}");
    }

    let old_leader = cluster.wait_leader(REGION0).await;
    cluster.crash(old_leader).await;
    let second = cluster.propose(2, 50).await;
    cluster.wait_everywhere(second.index).await;
    for node in cluster.nodes.keys() {
        assert_eq!(cluster.balance(*node), 150, "node {node}");
    }

    // The crashed node comes back from its disk and catches up.
    cluster.boot(old_leader).await;
    cluster.nodes[&old_leader]
        .wait_applied(REGION0, second.index, WAIT)
        .await
        .expect("catches up");
    assert_eq!(cluster.balance(old_leader), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarts_from_its_snapshot_and_log() {
    let timings = Timings {
        snapshot_every_entries: 5,
        keep_entries_after_snapshot: 2,
        ..Timings::local()
    };
    let mut cluster = Cluster::start(timings).await;
    let mut last = 0;
    for id in 1..=20 {
        last = cluster.propose(id, 10).await.index;
    }
    cluster.wait_everywhere(last).await;
    let learner = 4;
    let before = cluster.nodes[&learner]
        .ledger()
        .read(|ledger| ledger.region(RegionId(0)).cloned());
    cluster.crash(learner).await;
    cluster.boot(learner).await;
    cluster.nodes[&learner]
        .wait_applied(REGION0, last, WAIT)
        .await
        .expect("restored");
    let after = cluster.nodes[&learner]
        .ledger()
        .read(|ledger| ledger.region(RegionId(0)).cloned());
    assert_eq!(after, before);
    assert_eq!(cluster.balance(learner), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_cut_off_past_the_purged_log_catches_up_by_snapshot() {
    let timings = Timings {
        snapshot_every_entries: 5,
        keep_entries_after_snapshot: 2,
        ..Timings::local()
    };
    let mut cluster = Cluster::start(timings).await;
    let learner = 4;
    for voter in [1, 2, 3] {
        cluster.transport.cut(learner, voter);
    }
    let mut last = 0;
    for id in 1..=30 {
        last = cluster.propose(id, 1).await.index;
    }
    assert!(cluster.nodes[&learner].applied_index(REGION0) < Some(last));
    cluster.transport.heal();
    cluster.nodes[&learner]
        .wait_applied(REGION0, last, WAIT)
        .await
        .expect("caught up");
    let leader = cluster.wait_leader(REGION0).await;
    let expected = cluster.nodes[&leader]
        .ledger()
        .read(|ledger| ledger.region(RegionId(0)).cloned());
    let replica = cluster.nodes[&learner]
        .ledger()
        .read(|ledger| ledger.region(RegionId(0)).cloned());
    assert_eq!(replica, expected);
    assert_eq!(cluster.balance(learner), 30);
}
