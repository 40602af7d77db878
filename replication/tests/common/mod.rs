//! Helpers shared by the replication tests.
#![allow(dead_code)]

use ledger_hlc::{NodeId, Stamp};
use ledger_replication::*;
use ledger_reservations::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A top-up of `cents` from account 1 (external) to account 2 (a user),
/// stamped `stamp_ns`: a valid region event without a control log.
pub fn top_up(id: u128, cents: u128, stamp_ns: u64) -> Event {
    Event {
        stamp: Stamp::new(stamp_ns, 0, NodeId(1)),
        body: EventBody::Transfer(Transfer {
            id: TransferId(id),
            debit: AccountId(1),
            credit: AccountId(2),
            units: cents,
            currency: CurrencyCode::new("USD").expect("code"),
            debit_kind: AccountKind::External,
            credit_kind: AccountKind::User,
            kind: TransferKind::Posted,
            reference: None,
            metadata: None,
        }),
    }
}

pub const WAIT: Duration = Duration::from_secs(20);
pub const REGION0: Group = Group::Region(RegionId(0));

/// A layout of `(node id, region)` pairs.
pub fn layout(nodes: &[(u64, u16)]) -> Layout {
    Layout {
        nodes: nodes
            .iter()
            .map(|(id, region)| NodeConfig {
                id: *id,
                region: RegionId(*region),
                addr: format!("local-{id}"),
                api: String::new(),
                http: String::new(),
            })
            .collect(),
        control_voters: vec![],
    }
}

pub struct Cluster {
    pub layout: Layout,
    timings: Timings,
    pub transport: Arc<LocalTransport>,
    pub dirs: BTreeMap<u64, PathBuf>,
    pub nodes: BTreeMap<u64, ReplicaNode>,
    /// Each node's injected faults (a disk stall).
    pub faults: BTreeMap<u64, Faults>,
    _root: tempfile::TempDir,
    next_stamp: u64,
}

impl Cluster {
    pub async fn start(layout: Layout, timings: Timings) -> Self {
        let root = tempfile::tempdir().expect("dir");
        let mut cluster = Self {
            layout: layout.clone(),
            timings,
            transport: Arc::new(LocalTransport::default()),
            dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            faults: BTreeMap::new(),
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

    pub async fn boot(&mut self, id: u64) {
        let faults = Faults::default();
        self.faults.insert(id, faults.clone());
        let node = ReplicaNode::start(
            id,
            &self.layout,
            self.timings,
            &Storage::Dir(self.dirs[&id].clone()),
            self.transport.clone(),
            faults,
        )
        .await
        .expect("node starts");
        self.transport.attach(&node);
        self.nodes.insert(id, node);
    }

    /// Adds learners until every node is in every group.
    pub async fn wire(&self) {
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

    /// The node leading `group`. More than one node may believe it leads:
    /// a deposed leader not yet told of the new term, or a node restarted
    /// after leading (openraft restores its leadership at start-up, in its
    /// old term, until a peer answers with the newer one). The leader of the
    /// highest term is the current one.
    pub async fn leader(&self, group: Group) -> Option<u64> {
        self.nodes
            .values()
            .filter(|node| node.is_leader(group))
            .filter_map(|node| Some((node.progress(group)?.term, node.id())))
            .max()
            .map(|(_, id)| id)
    }

    /// Waits until every node has applied everything of `group` that any
    /// node has seen committed, and returns that index. It asks no leader:
    /// a node that wrongly believes it leads may lag far behind, and an
    /// index taken from it would be reached at once.
    pub async fn wait_caught_up(&self, group: Group) -> u64 {
        let target = self
            .nodes
            .values()
            .filter_map(|node| node.progress(group))
            .map(|progress| progress.committed.max(progress.applied))
            .max()
            .unwrap_or(0);
        for (id, node) in &self.nodes {
            node.wait_applied(group, target, WAIT)
                .await
                .unwrap_or_else(|error| panic!("node {id} catches up on {group}: {error}"));
        }
        target
    }

    pub async fn wait_leader(&self, group: Group) -> u64 {
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

    pub fn top_up(&mut self, id: u128, cents: u128) -> Event {
        self.next_stamp += 1;
        top_up(id, cents, self.next_stamp)
    }

    /// Proposes one region-0 entry on its current leader. While leadership
    /// settles (right after a crash) a node may answer `NotLeader`; nothing
    /// was appended then, so, like a gateway, this sends it again. Any other
    /// answer fails the test.
    pub async fn propose(&mut self, id: u128, cents: u128) -> Applied {
        let event = self.top_up(id, cents);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leader = self.wait_leader(REGION0).await;
            let proposal = Proposal::region(vec![event.clone()]);
            match self.nodes[&leader].propose(REGION0, proposal).await {
                Ok(applied) => return applied,
                Err(ProposeError::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("proposal failed: {error}"),
            }
        }
    }

    pub async fn wait_everywhere(&self, index: u64) {
        for node in self.nodes.values() {
            node.wait_applied(REGION0, index, WAIT)
                .await
                .expect("applied");
        }
    }

    pub fn balance(&self, node: u64) -> i128 {
        self.nodes[&node].ledger().read(|ledger| {
            ledger
                .region(RegionId(0))
                .and_then(|region| region.pool(AccountId(2)))
                .map_or(0, |pool| pool.available)
        })
    }

    pub async fn crash(&mut self, id: u64) {
        self.transport.remove_node(id);
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await;
        }
    }
}
