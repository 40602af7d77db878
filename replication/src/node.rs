//! One node's groups: a voter of its own region's group, a learner of every
//! other region's, and a voter or learner of the global control group.

use crate::disk::{Blocking, Storage};
use crate::faults::Faults;
use crate::log_store::{LogStore, OpenReport};
use crate::network::{Deadlines, GroupNetwork, LINK_BYTES_PER_S_DEFAULT, Transport};
use crate::state_machine::{SharedLedger, StateMachine};
use crate::types::{Applied, Group, Proposal, TypeConfig};
use ledger_hlc::{Clock, DriftError, Hlc};
use ledger_reservations::{Ledger, RegionId, Reject};
use openraft::alias::InstantOf;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{
    BasicNode, ChangeMembers, Config, Instant, LinearizerOption, RaftMetrics, ReadPolicy,
    SnapshotPolicy,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// How long a shutdown waits for openraft's tasks to release the database.
const SHUTDOWN_WAIT_MAX: Duration = Duration::from_secs(10);

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: u64,
    pub region: RegionId,
    /// Where other nodes reach its Raft service.
    pub addr: String,
    /// Where clients reach its API (replication does not use it; a node
    /// that is not the leader names the leader's in its answer).
    #[serde(default)]
    pub api: String,
    /// Where clients reach its HTTP/JSON API (empty: it serves none); a
    /// follower redirects HTTP clients there.
    #[serde(default)]
    pub http: String,
}

/// Every node of the cluster and the voters of the control group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub nodes: Vec<NodeConfig>,
    /// Voters of the global control group; empty means the lowest-id node of
    /// each region.
    #[serde(default)]
    pub control_voters: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the layout has no nodes")]
    Empty,
    #[error("node id {0} is listed twice")]
    DuplicateNode(u64),
    #[error("node id 0 is reserved")]
    ZeroNode,
    #[error("control voter {0} is not a node of the layout")]
    UnknownControlVoter(u64),
    #[error("node {0} is not in the layout")]
    NotInLayout(u64),
}

impl Layout {
    pub fn validate(&self) -> Result<(), LayoutError> {
        if self.nodes.is_empty() {
            return Err(LayoutError::Empty);
        }
        let mut ids = BTreeSet::new();
        for node in &self.nodes {
            if node.id == 0 {
                return Err(LayoutError::ZeroNode);
            }
            if !ids.insert(node.id) {
                return Err(LayoutError::DuplicateNode(node.id));
            }
        }
        if let Some(voter) = self.control_voters.iter().find(|id| !ids.contains(id)) {
            return Err(LayoutError::UnknownControlVoter(*voter));
        }
        Ok(())
    }

    pub fn regions(&self) -> Vec<RegionId> {
        let regions: BTreeSet<RegionId> = self.nodes.iter().map(|node| node.region).collect();
        regions.into_iter().collect()
    }

    /// The groups every node runs: the control group and one per region.
    pub fn groups(&self) -> Vec<Group> {
        std::iter::once(Group::Control)
            .chain(self.regions().into_iter().map(Group::Region))
            .collect()
    }

    /// The voters of the control group: those listed, else the lowest-id
    /// node of each region.
    pub fn control_voter_ids(&self) -> BTreeSet<u64> {
        if !self.control_voters.is_empty() {
            return self.control_voters.iter().copied().collect();
        }
        let mut first: BTreeMap<RegionId, u64> = BTreeMap::new();
        for node in &self.nodes {
            let lowest = first.entry(node.region).or_insert(node.id);
            *lowest = (*lowest).min(node.id);
        }
        first.into_values().collect()
    }

    fn is_voter(&self, group: Group, node: &NodeConfig) -> bool {
        match group {
            Group::Region(region) => node.region == region,
            Group::Control => self.control_voter_ids().contains(&node.id),
        }
    }

    /// The voters of a group, with their addresses.
    pub(crate) fn voters(&self, group: Group) -> BTreeMap<u64, BasicNode> {
        self.members(group, true)
    }

    /// The learners of a group: every node that is not one of its voters.
    pub(crate) fn learners(&self, group: Group) -> BTreeMap<u64, BasicNode> {
        self.members(group, false)
    }

    fn members(&self, group: Group, voters: bool) -> BTreeMap<u64, BasicNode> {
        self.nodes
            .iter()
            .filter(|node| self.is_voter(group, node) == voters)
            .map(|node| (node.id, BasicNode::new(&node.addr)))
            .collect()
    }
}

/// Raft timings. The defaults suit regions 100 ms apart: a heartbeat every
/// 300 ms and elections after 1.5 to 3 s of silence, so that a slow link is
/// not taken for a dead leader.
/// A setting left out takes its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timings {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Deadline of every Raft RPC, before the time its bytes take...
    pub rpc_deadline_ms: u64,
    /// ...over the slowest link between nodes the deployment promises, in
    /// bytes a second: a deadline grows with what an RPC carries.
    pub link_bytes_per_s: u64,
    /// A snapshot is taken after this many entries since the last one...
    pub snapshot_every_entries: u64,
    /// ...and this many entries before it are kept for followers that lag.
    pub keep_entries_after_snapshot: u64,
    /// How long a proposal may wait to be committed and applied here. Past
    /// it the outcome is unknown: the entry may still commit.
    pub propose_deadline_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 300,
            election_min_ms: 1_500,
            election_max_ms: 3_000,
            rpc_deadline_ms: 2_000,
            link_bytes_per_s: LINK_BYTES_PER_S_DEFAULT,
            snapshot_every_entries: 5_000,
            keep_entries_after_snapshot: 1_000,
            propose_deadline_ms: 10_000,
        }
    }
}

impl Timings {
    /// Fast timings for clusters inside one process.
    pub fn local() -> Self {
        Self {
            heartbeat_ms: 50,
            election_min_ms: 300,
            election_max_ms: 600,
            rpc_deadline_ms: 500,
            ..Self::default()
        }
    }

    /// The deadlines of this node's Raft RPCs.
    pub fn deadlines(&self) -> Deadlines {
        Deadlines {
            base: Duration::from_millis(self.rpc_deadline_ms),
            link_bytes_per_s: self.link_bytes_per_s,
        }
    }

    fn raft_config(&self, group: Group) -> Result<Config, NodeError> {
        Config {
            cluster_name: group.name(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            install_snapshot_timeout: self.rpc_deadline_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.keep_entries_after_snapshot,
            // A node that cut a corrupt tail on start has less log than it
            // once acknowledged; the leader sends it again instead of
            // stopping (docs/decisions/0005-cutting-a-corrupt-tail.md).
            allow_log_reversion: Some(true),
            // A leader restarted is elected again, in a new term, whose
            // first entry comes after every entry of its log: the writer's
            // barrier then waits for all of them to apply. Resumed in its
            // old term (openraft's default), the barrier waited only for
            // that term's first entry, and an entry appended before the
            // crash, committed after it, was missing from the state the
            // writer decided against (a grant decided twice: a committed
            // entry that could not apply, found by the chaos soak).
            enable_leader_restore: Some(false),
            // A node that cannot win (cut off, or back from a cut) asks
            // first whether a quorum would vote for it, and raises its term
            // only if so: back from a cut, it no longer deposes the leader
            // elected meanwhile with a term it raised alone (issue 10).
            enable_pre_vote: Some(true),
            ..Config::default()
        }
        .validate()
        .map_err(|error| NodeError::Config(error.to_string()))
    }
}

/// How a leader makes sure it still leads before it decides: a quorum
/// acknowledged something it sent within the leader lease (openraft's
/// `election_timeout_max`; no voter elects another leader sooner), else it
/// sends heartbeats at once and waits up to one lease for a quorum to
/// answer. Replication answers renew the lease, so under load a leader
/// decides without a round of its own; a leader cut off from its quorum
/// fails within one lease. (ReadIndex, a round to a quorum before every
/// entry, made every entry of a busy region wait for heartbeats that
/// openraft gives one heartbeat interval to answer: seconds per transfer
/// in the chaos suite's calm scenario on 3 x 3.)
fn lease_read() -> LinearizerOption {
    LinearizerOption::new(None, true)
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("invalid Raft timings: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("database: {0}")]
    Database(String),
    #[error("group {group}: Raft stopped: {reason}")]
    Fatal { group: Group, reason: String },
    #[error("group {group}: {reason}")]
    Membership { group: Group, reason: String },
    #[error(
        "group {group}: the membership change was not confirmed within {waited:?}; it may still commit"
    )]
    MembershipUnconfirmed { group: Group, waited: Duration },
    #[error("this node runs no group {0}")]
    UnknownGroup(Group),
    #[error("group {group}: index {index} not applied within {timeout:?}")]
    NotApplied {
        group: Group,
        index: u64,
        timeout: Duration,
    },
}

/// Where a leader's lease stands, as its metrics show it.
enum Lease {
    /// A quorum acknowledged something sent less than a lease ago.
    Held { until: InstantOf<TypeConfig> },
    /// The only voter: its own quorum, whose lease openraft never lets run out.
    Alone,
    /// No quorum acknowledged anything within a lease, or it does not lead.
    Lost,
}

fn lease(metrics: &RaftMetrics<TypeConfig>, lease: Duration) -> Lease {
    if metrics
        .membership_config
        .membership()
        .voter_ids()
        .nth(1)
        .is_none()
    {
        return Lease::Alone;
    }
    let now = InstantOf::<TypeConfig>::now();
    match metrics
        .last_quorum_acked
        .map(|acked| acked.into_inner() + lease)
    {
        Some(until) if until > now => Lease::Held { until },
        _ => Lease::Lost,
    }
}

/// Resolves once this node, having held the leader lease of `raft`'s
/// group, has lost it: no quorum of voters acknowledged anything it sent
/// within `lease` (openraft's own test before it takes a proposal), or it
/// no longer leads. Pending while it holds none to lose: a follower, or a
/// leader whose lease had already run out, which openraft refuses itself.
async fn lease_lost(raft: &Raft, lease: Duration) {
    let mut metrics = raft.metrics();
    let mut held = false;
    loop {
        let state = self::lease(&metrics.borrow_watched(), lease);
        let wake = match state {
            Lease::Held { until } => {
                held = true;
                Some(until - InstantOf::<TypeConfig>::now())
            }
            Lease::Lost if held => return,
            Lease::Alone | Lease::Lost => None,
        };
        let lease_end = async {
            match wake {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = lease_end => {}
            changed = metrics.changed() => if changed.is_err() {
                // The group stopped: the write's own answer says so.
                return std::future::pending().await;
            },
        }
    }
}

/// How long a membership change may take to commit (and a new learner to
/// catch up) before the caller is told it is not confirmed.
const MEMBERSHIP_WAIT_MAX: Duration = Duration::from_secs(30);
/// How long the leader's housekeeping waits for a learner to be added.
const WIRE_WAIT_MAX: Duration = Duration::from_secs(2);

/// Waits for a membership change of `group`, for at most `wait`.
async fn membership_change<T, Fut>(
    group: Group,
    wait: Duration,
    change: impl Fn() -> Fut,
) -> Result<T, NodeError>
where
    Fut: Future<Output = Result<T, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    let unconfirmed = || NodeError::MembershipUnconfirmed {
        group,
        waited: wait,
    };
    loop {
        let Ok(answer) = tokio::time::timeout_at(deadline, change()).await else {
            return Err(unconfirmed());
        };
        match answer {
            Ok(done) => return Ok(done),
            Err(RaftError::Fatal(error)) => {
                return Err(NodeError::Fatal {
                    group,
                    reason: error.to_string(),
                });
            }
            // Another change (the leader wiring a learner, say) has not
            // committed yet: one at a time, so ask again once it has.
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(MEMBERSHIP_RETRY).await;
            }
            Err(RaftError::APIError(error)) => {
                return Err(NodeError::Membership {
                    group,
                    reason: error.to_string(),
                });
            }
        }
    }
}

/// Lists the control group's voters in the layout if it left them to the
/// default (the lowest id of each region).
fn freeze_control_voters(layout: &mut Layout) {
    if layout.control_voters.is_empty() {
        layout.control_voters = layout.control_voter_ids().into_iter().collect();
    }
}

/// How long a membership change waits before it asks again while another
/// is in progress.
const MEMBERSHIP_RETRY: Duration = Duration::from_millis(100);

/// Why a proposal was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Nothing was appended; the proposal may be sent to the leader.
    #[error("not the leader of {group}; {}", leader_text(*leader, address.as_deref()))]
    NotLeader {
        group: Group,
        leader: Option<u64>,
        address: Option<String>,
    },
    /// The entry was appended but its fate is not known here: it was
    /// replaced by another leader's log, its leader lost its quorum while it
    /// waited, or it was not applied within the deadline. It may or may not be committed: a client must treat this
    /// as unknown and retry with the same ids to learn it.
    #[error(
        "outcome unknown in {group}: discarded on a change of leader, the leader cut from its quorum, or not applied in time"
    )]
    Unknown { group: Group },
    #[error("group {group}: {reason}")]
    Failed { group: Group, reason: String },
}

/// Who leads, in words: "the leader is node 2 at 10.0.0.2:7001".
fn leader_text(leader: Option<u64>, address: Option<&str>) -> String {
    match (leader, address) {
        (Some(leader), Some(address)) => format!("the leader is node {leader} at {address}"),
        (Some(leader), None) => format!("the leader is node {leader}"),
        (None, _) => "no leader is known".to_owned(),
    }
}

/// Why releases were not granted this time. Every case is retried by the
/// next call; none leaves a grant half made.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    Node(NodeError),
    #[error("leadership changed: {0}")]
    NotLeader(String),
    #[error(transparent)]
    Drift(DriftError),
    #[error("a grant was rejected: {0}")]
    Rejected(Reject),
    #[error(transparent)]
    Propose(ProposeError),
}

/// Where a group stands on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupProgress {
    pub leader: Option<u64>,
    /// The Raft term this node is in: a change of leader changes it.
    pub term: u64,
    /// Committed by the group, as far as this node knows.
    pub committed: u64,
    /// The last index this node holds.
    pub last_log: u64,
    /// The last index this node applied.
    pub applied: u64,
    pub voters: BTreeSet<u64>,
}

impl GroupProgress {
    /// Committed entries not applied here yet.
    pub fn lag_entries(&self) -> u64 {
        self.committed.saturating_sub(self.applied)
    }
}

/// A running node: its groups, over one database and one ledger.
pub struct ReplicaNode {
    db: Arc<redb::Database>,
    config: NodeConfig,
    /// The layout as this node knows it; changed by `add_member` and
    /// `remove_member`, read by `wire_learners`.
    layout: Mutex<Layout>,
    /// Nodes removed by `remove_member`: wherever this node leads, its
    /// housekeeping (`wire_learners`) drops those still in a membership.
    removed: Mutex<BTreeSet<u64>>,
    shared: SharedLedger,
    rafts: BTreeMap<Group, Raft>,
    reports: BTreeMap<Group, OpenReport>,
    /// How long a proposal may wait to be committed and applied here.
    propose_deadline: Duration,
    /// The leader lease: openraft's `election_timeout_max`.
    lease: Duration,
    /// When each group's leader last reached this node over gRPC.
    heard: crate::Heard,
}

impl ReplicaNode {
    /// Opens (or creates) the node's database in `storage` and starts every
    /// group, restoring each from its snapshot and log.
    pub async fn start<T: Transport>(
        id: u64,
        layout: &Layout,
        timings: Timings,
        storage: &Storage,
        transport: Arc<T>,
        faults: Faults,
    ) -> Result<Self, NodeError> {
        layout.validate()?;
        let config = layout
            .nodes
            .iter()
            .find(|node| node.id == id)
            .cloned()
            .ok_or(LayoutError::NotInLayout(id))?;
        let db = Arc::new(storage.open().map_err(NodeError::Database)?);
        let inline = storage.blocking() == Blocking::Inline;
        let ledger = Ledger::new(config.region, &layout.regions())
            .map_err(|error| NodeError::Config(error.to_string()))?;
        let shared = SharedLedger::new(ledger);
        let mut rafts = BTreeMap::new();
        let mut reports = BTreeMap::new();
        for group in layout.groups() {
            let (log, report) = LogStore::open(db.clone(), group)?;
            let mut log = log.with_faults(faults.clone());
            let mut machine = StateMachine::open(db.clone(), group, shared.clone())?;
            if inline {
                log = log.inline_io();
                machine = machine.inline_io();
            }
            let network = GroupNetwork {
                transport: transport.clone(),
                from: id,
                group,
                deadlines: timings.deadlines(),
            };
            let raft_config = Arc::new(timings.raft_config(group)?);
            let raft = Raft::new(id, raft_config, network, log, machine)
                .await
                .map_err(|error| NodeError::Fatal {
                    group,
                    reason: error.to_string(),
                })?;
            rafts.insert(group, raft);
            reports.insert(group, report);
        }
        Ok(Self {
            db,
            config,
            layout: Mutex::new(layout.clone()),
            removed: Mutex::default(),
            shared,
            rafts,
            reports,
            propose_deadline: Duration::from_millis(timings.propose_deadline_ms),
            lease: Duration::from_millis(timings.election_max_ms),
            heard: crate::Heard::default(),
        })
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }

    pub fn region(&self) -> RegionId {
        self.config.region
    }

    /// What opening each group's log found (a corrupt tail cut off).
    pub fn open_reports(&self) -> &BTreeMap<Group, OpenReport> {
        &self.reports
    }

    pub fn ledger(&self) -> &SharedLedger {
        &self.shared
    }

    pub(crate) fn rafts(&self) -> &BTreeMap<Group, Raft> {
        &self.rafts
    }

    /// The gRPC service through which other nodes reach this node's groups.
    pub fn raft_service(&self) -> crate::RaftService {
        crate::RaftService::new(self.rafts.clone(), self.heard.clone())
    }

    /// Whether `group`'s leader has stopped reaching this node: it reached
    /// it once (an append through [`Self::raft_service`], heartbeats
    /// included), and not for two leases since. A leader sends a heartbeat
    /// every heartbeat interval, well within a lease.
    /// Never for a group this node votes in (a voter hears its leader
    /// only while it follows; leading, it sends the appends itself).
    pub fn out_of_reach(&self, group: Group) -> Option<Duration> {
        let voter = self
            .progress(group)
            .is_some_and(|progress| progress.voters.contains(&self.config.id));
        self.heard
            .since(group)
            .filter(|since| !voter && *since > self.lease * 2)
    }

    fn raft(&self, group: Group) -> Result<&Raft, NodeError> {
        self.rafts.get(&group).ok_or(NodeError::UnknownGroup(group))
    }

    /// The layout as this node knows it now.
    pub fn layout(&self) -> Layout {
        self.layout
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Every node, voter or learner, of a group's membership as this node
    /// has applied it.
    pub fn members(&self, group: Group) -> BTreeSet<u64> {
        self.rafts.get(&group).map_or_else(BTreeSet::new, |raft| {
            let metrics = raft.metrics().borrow_watched().clone();
            metrics
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect()
        })
    }

    /// The voters of a group in its membership as this node has applied it.
    pub fn voters(&self, group: Group) -> BTreeSet<u64> {
        self.rafts.get(&group).map_or_else(BTreeSet::new, |raft| {
            let metrics = raft.metrics().borrow_watched().clone();
            metrics.membership_config.membership().voter_ids().collect()
        })
    }

    /// Adds a node to the running cluster, in every group this node leads:
    /// first as a learner, waiting until it has caught up, then as a voter of
    /// its region's group (and of the control group if `control_voter`).
    /// Call it on every node: each group's leader does its part. Returns the
    /// groups changed here.
    pub async fn add_member(
        &self,
        node: NodeConfig,
        control_voter: bool,
    ) -> Result<Vec<Group>, NodeError> {
        let layout = {
            let mut layout = self
                .layout
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // The control group's voters stay who they are: listed before
            // the layout changes, so that a node added or removed never
            // makes another one a control voter by being the lowest id.
            freeze_control_voters(&mut layout);
            layout.nodes.retain(|known| known.id != node.id);
            layout.nodes.push(node.clone());
            self.removed_lock().remove(&node.id);
            if control_voter && !layout.control_voters.contains(&node.id) {
                layout.control_voters.push(node.id);
            }
            layout.clone()
        };
        let mut changed = Vec::new();
        for (group, raft) in &self.rafts {
            if !raft.is_leader() {
                continue;
            }
            let learner = || raft.add_learner(node.id, BasicNode::new(&node.addr), true);
            membership_change(*group, MEMBERSHIP_WAIT_MAX, learner).await?;
            if layout.is_voter(*group, &node) {
                let voters = || ChangeMembers::AddVoterIds(BTreeSet::from([node.id]));
                let change = || raft.change_membership(voters(), false);
                membership_change(*group, MEMBERSHIP_WAIT_MAX, change).await?;
            }
            changed.push(*group);
        }
        Ok(changed)
    }

    /// Removes a node from the running cluster, in every group this node
    /// leads: as a voter if it is one, and as a learner. Call it on every
    /// node, as `add_member`; calling it again finishes what a change of
    /// leader left (a leader that removed itself stays a learner). Returns
    /// the groups changed here.
    pub async fn remove_member(&self, id: u64) -> Result<Vec<Group>, NodeError> {
        {
            let mut layout = self
                .layout
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            freeze_control_voters(&mut layout);
            layout.nodes.retain(|known| known.id != id);
            layout.control_voters.retain(|voter| *voter != id);
        }
        self.removed_lock().insert(id);
        let (changed, errors) = self.drop_removed(true).await;
        match errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(changed),
        }
    }

    /// Whether `remove_member` removed `id` here (and it was not added
    /// again since).
    pub fn was_removed(&self, id: u64) -> bool {
        self.removed_lock().contains(&id)
    }

    fn removed_lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        // A plain set: a panic elsewhere cannot leave it half-written.
        self.removed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where this node leads a group, drops the removed nodes its
    /// membership still holds: as a voter if it is one and `voters` says
    /// so, else as a learner. Goes on past a change that fails. Returns the
    /// groups changed and the errors met.
    async fn drop_removed(&self, voters: bool) -> (Vec<Group>, Vec<NodeError>) {
        let removed = self.removed_lock().clone();
        let mut changed = Vec::new();
        let mut errors = Vec::new();
        for (group, raft) in &self.rafts {
            for id in &removed {
                if !raft.is_leader() {
                    break;
                }
                let metrics = raft.metrics().borrow_watched().clone();
                let membership = metrics.membership_config.membership();
                let ids = BTreeSet::from([*id]);
                let change = if membership.voter_ids().any(|voter| voter == *id) {
                    if !voters {
                        continue;
                    }
                    ChangeMembers::RemoveVoters(ids)
                } else if membership.nodes().any(|(node, _)| node == id) {
                    ChangeMembers::RemoveNodes(ids)
                } else {
                    continue;
                };
                // A leader that removes itself stays a learner. It no longer
                // counts itself once the final membership is appended, so
                // another voter may be elected before it learns that the
                // change committed; as a learner it still hears from that
                // leader, and its call returns. Dropped outright, it would
                // hear nothing and wait for ever. The next leader drops it.
                let retain = *id == self.config.id;
                let change = || raft.change_membership(change.clone(), retain);
                match membership_change(*group, MEMBERSHIP_WAIT_MAX, change).await {
                    Ok(_) => changed.push(*group),
                    Err(error) => errors.push(error),
                }
            }
        }
        (changed, errors)
    }

    /// Initializes every group whose lowest-id voter is this node, with the
    /// layout's voters. A group already initialized is left alone.
    pub async fn initialize(&self) -> Result<(), NodeError> {
        let layout = self.layout();
        for (group, raft) in &self.rafts {
            let voters = layout.voters(*group);
            if voters.keys().next() != Some(&self.config.id) {
                continue;
            }
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|error| NodeError::Fatal {
                    group: *group,
                    reason: error.to_string(),
                })?;
            if !initialized {
                raft.initialize(voters)
                    .await
                    .map_err(|error| NodeError::Membership {
                        group: *group,
                        reason: error.to_string(),
                    })?;
            }
        }
        Ok(())
    }

    /// Lets this node lead its groups, or not: a node whose clock is off
    /// its peers' must extend no log. Without leave it stops standing for
    /// election, and where it leads it hands leadership to another voter
    /// (a group with no other voter keeps it; its node then decides
    /// nothing).
    pub async fn set_may_lead(&self, may: bool) {
        for (group, raft) in &self.rafts {
            raft.runtime_config().elect(may);
            if may || !raft.is_leader() {
                continue;
            }
            let Some(to) = self.voters(*group).into_iter().find(|id| *id != self.id()) else {
                continue;
            };
            if let Err(error) = raft.trigger().transfer_leader(to).await {
                tracing::warn!(%group, to, %error, "leadership not handed over");
            }
        }
    }

    /// Where this node leads a group, drops the learners removed from the
    /// cluster that its membership still holds (a leader that removed itself
    /// stays one) and adds every learner the layout names and the
    /// membership lacks. It never removes a voter: that is
    /// `remove_member`'s, called on purpose. (A node that missed the
    /// `add_member` of an id it saw removed would drop that id where it is
    /// a learner: an id is reused only once `add_member` reached every
    /// node.) A learner's addition waits at most [`WIRE_WAIT_MAX`]; what is
    /// not confirmed by then (leadership moved, a quorum out of reach) is
    /// left to the next round, on whichever node leads. Returns how many
    /// learners it added.
    pub async fn wire_learners(&self) -> Result<usize, NodeError> {
        for error in self.drop_removed(false).await.1 {
            match error {
                NodeError::Fatal { .. } => return Err(error),
                error => tracing::debug!(%error, "a removed node not dropped yet"),
            }
        }
        let layout = self.layout();
        let mut added = 0;
        for (group, raft) in &self.rafts {
            if !raft.is_leader() {
                continue;
            }
            let metrics = raft.metrics().borrow_watched().clone();
            let known: BTreeSet<u64> = metrics
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect();
            for (id, node) in layout.learners(*group) {
                if known.contains(&id) {
                    continue;
                }
                let change = || raft.add_learner(id, node.clone(), false);
                match membership_change(*group, WIRE_WAIT_MAX, change).await {
                    Ok(_) => added += 1,
                    Err(error @ NodeError::Fatal { .. }) => return Err(error),
                    Err(error) => {
                        tracing::debug!(%group, learner = id, %error, "learner not added yet");
                    }
                }
            }
        }
        Ok(added)
    }

    /// Appends a proposal to a group this node leads and waits until it is
    /// committed and applied here.
    #[tracing::instrument(name = "raft.propose", skip_all, fields(%group, %proposal))]
    pub async fn propose(&self, group: Group, proposal: Proposal) -> Result<Applied, ProposeError> {
        let raft = self.raft(group).map_err(|error| ProposeError::Failed {
            group,
            reason: error.to_string(),
        })?;
        let written = tokio::time::timeout(self.propose_deadline, async {
            tokio::select! {
                // A refusal that is ready wins: it is definite.
                biased;
                written = raft.client_write(proposal) => Some(written),
                () = lease_lost(raft, self.lease) => None,
            }
        })
        .await;
        // Past the deadline, or once this leader has lost its quorum, the
        // entry may commit later or never: unknown. A leader cut off from
        // its voters answers within one lease instead of the whole deadline
        // (issue 10); proposals after that openraft refuses itself
        // (CheckQuorum: an empty ForwardToLeader, so `NotLeader`).
        let Ok(Some(written)) = written else {
            return Err(ProposeError::Unknown { group });
        };
        match written {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(ProposeError::NotLeader {
                    group,
                    leader: forward.leader_id,
                    address: forward.leader_node.map(|node| node.addr),
                })
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                Err(ProposeError::Unknown { group })
            }
            Err(error) => Err(ProposeError::Failed {
                group,
                reason: error.to_string(),
            }),
        }
    }

    /// Takes in every release to this node's region that its replicas of the
    /// other regions show, if this node leads its region: proposes the
    /// matching `Granted` events, in order, and waits for them to commit.
    /// Returns how many it granted.
    ///
    /// It decides against the applied state only after a linearizable read
    /// barrier, so a new leader first applies everything a previous leader
    /// committed, and resumes at the high-water mark of its own state; a
    /// grant is never decided twice. It must be the only proposer of the
    /// region's log while it runs: stamps must grow in log order (the node
    /// runs it from its writer, between entries).
    pub async fn grant_releases<C: Clock>(&self, hlc: &Hlc<C>) -> Result<usize, GrantError> {
        let group = Group::Region(self.config.region);
        let raft = self.raft(group).map_err(GrantError::Node)?;
        if !raft.is_leader() {
            return Ok(0);
        }
        raft.ensure_linearizable(lease_read())
            .await
            .map_err(|error| GrantError::NotLeader(error.to_string()))?;
        let last = self.shared.read(|ledger| ledger.home_state().last_stamp());
        // The region's last stamp may come from another node's clock; merge
        // it so that this node's stamps come after it.
        hlc.observe(last).map_err(GrantError::Drift)?;
        let stamp = hlc.stamp();
        let decided = self
            .shared
            .read(|ledger| ledger.decide_grants(stamp, usize::MAX));
        if let Some(reject) = decided.iter().find_map(|grants| grants.refused.clone()) {
            return Err(GrantError::Rejected(reject));
        }
        let events: Vec<_> = decided
            .into_iter()
            .flat_map(|grants| grants.events)
            .collect();
        let granted = events.len();
        if granted > 0 {
            self.propose(group, Proposal::region(events))
                .await
                .map_err(GrantError::Propose)?;
        }
        Ok(granted)
    }

    /// Waits until this node, as leader of `group`, has applied everything
    /// committed before now (a linearizable read barrier). Decisions made
    /// after it see every earlier leader's committed entries.
    pub async fn barrier(&self, group: Group) -> Result<(), ProposeError> {
        self.linearizable(group, lease_read()).await
    }

    /// The same as [`Self::barrier`], confirmed by a round to a quorum
    /// (ReadIndex) rather than the leader lease: for strong reads, which
    /// answer clients with what they read and so stake nothing on voters
    /// honouring a lease (a voter restarted within one lease may vote at
    /// once).
    pub async fn read_barrier(&self, group: Group) -> Result<(), ProposeError> {
        self.linearizable(group, LinearizerOption::from(ReadPolicy::ReadIndex))
            .await
    }

    async fn linearizable(
        &self,
        group: Group,
        option: LinearizerOption,
    ) -> Result<(), ProposeError> {
        let raft = self.raft(group).map_err(|error| ProposeError::Failed {
            group,
            reason: error.to_string(),
        })?;
        match raft.ensure_linearizable(option).await {
            Ok(_) => Ok(()),
            Err(error @ RaftError::APIError(_)) => {
                let forward = error.forward_to_leader().cloned();
                Err(ProposeError::NotLeader {
                    group,
                    leader: forward.as_ref().and_then(|forward| forward.leader_id),
                    address: forward.and_then(|forward| forward.leader_node.map(|node| node.addr)),
                })
            }
            Err(error) => Err(ProposeError::Failed {
                group,
                reason: error.to_string(),
            }),
        }
    }

    /// The first group whose Raft stopped on a fatal error (a storage
    /// failure, a log that does not fit the state), if any. A node must not
    /// go on with a group stopped: its caller stops the node.
    pub fn fatal(&self) -> Option<(Group, String)> {
        self.rafts.iter().find_map(|(group, raft)| {
            let metrics = raft.metrics().borrow_watched().clone();
            metrics
                .running_state
                .err()
                .map(|fatal| (*group, fatal.to_string()))
        })
    }

    /// The leader of a group as this node knows it.
    pub async fn leader(&self, group: Group) -> Option<u64> {
        self.rafts.get(&group)?.current_leader().await
    }

    pub fn is_leader(&self, group: Group) -> bool {
        self.rafts.get(&group).is_some_and(|raft| raft.is_leader())
    }

    /// Where a group stands on this node: leader, what the cluster has
    /// committed as far as this node knows, what it holds and has applied.
    pub fn progress(&self, group: Group) -> Option<GroupProgress> {
        let raft = self.rafts.get(&group)?;
        let metrics = raft.metrics().borrow_watched().clone();
        let index =
            |log_id: Option<openraft::alias::LogIdOf<TypeConfig>>| log_id.map_or(0, |id| id.index);
        Some(GroupProgress {
            leader: metrics.current_leader,
            term: metrics.current_term,
            committed: index(metrics.cluster_committed),
            last_log: metrics.last_log_index.unwrap_or(0),
            applied: index(metrics.last_applied),
            voters: metrics.membership_config.membership().voter_ids().collect(),
        })
    }

    /// The highest log index of a group applied here.
    pub fn applied_index(&self, group: Group) -> Option<u64> {
        let raft = self.rafts.get(&group)?;
        let metrics = raft.metrics().borrow_watched().clone();
        metrics.last_applied.map(|log_id| log_id.index)
    }

    /// Waits until this node has applied `index` of a group.
    pub async fn wait_applied(
        &self,
        group: Group,
        index: u64,
        timeout: Duration,
    ) -> Result<(), NodeError> {
        self.raft(group)?
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "wait_applied")
            .await
            .map(|_| ())
            .map_err(|_| NodeError::NotApplied {
                group,
                index,
                timeout,
            })
    }

    /// Stops every group and waits until the database is closed, so that
    /// the node can be started again on the same directory.
    pub async fn shutdown(self) {
        for (group, raft) in self.rafts {
            if let Err(error) = raft.shutdown().await {
                tracing::warn!(%group, %error, "group did not shut down cleanly");
            }
        }
        drop(self.shared);
        // openraft's tasks let go of their log readers as they wind down.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT_MAX;
        while Arc::strong_count(&self.db) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if Arc::strong_count(&self.db) > 1 {
            tracing::warn!(
                node = self.config.id,
                "database still in use after shutdown"
            );
        }
    }
}
