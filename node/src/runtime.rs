//! A running node: its replication groups, its Raft and API servers, and the
//! writer that turns its region's commands into log entries.

pub use crate::actors::Actors;
use crate::actors::{self, Answers, Collector, PullAsk, RouterMsg};
use crate::auth::Auth;
use crate::client::{Access, CALL_TIMEOUT, Client, ClientError};
use crate::config::NodeSettings;
use crate::saga::PayoutConnector;
use crate::tls::Tls;
use ledger_hlc::{Clock, Hlc, NodeId, SystemClock};
use ledger_replication::{
    Faults, GateLayer, Group, GrpcTransport, Layout, Proposal, ProposeError, ReplicaNode, Storage,
    Transport, serve,
};
use ledger_reservations::{
    AccountId, ControlCommand, Decision, Item, NewAccount, Reject, Shortfall,
};
use ractor::ActorRef;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::{ClientTlsConfig, ServerTlsConfig};

/// Commands decided or being decided on this node at once, at most: every
/// actor's mailbox is bounded by it, and callers past it wait.
const COMMANDS_IN_FLIGHT_MAX: usize = 65_536;

/// This node's proposer of the control log.
#[derive(Debug, Default)]
struct ControlProposer {
    /// The term in which a control entry of this node became of unknown
    /// fate, until it is settled.
    unsettled_term: Option<u64>,
}

/// What became of one command, as the node answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandResult {
    /// Committed in the entry at `index`; `fresh` is false for an idempotent
    /// retry of a command applied before.
    Applied {
        fresh: bool,
        index: u64,
    },
    Rejected(Reject),
    /// The node could not decide it: not the leader, or the outcome of the
    /// entry is unknown. Carries a stable code.
    Unavailable(NodeFailure),
    /// The debit exceeded this region's pool but not the account's global
    /// balance; the node asked other regions to release the difference and
    /// not enough arrived in time. Says what is available here and in all.
    PullTimedOut(Box<Shortfall>),
}

impl CommandResult {
    /// The answer of a repeat of a command (the same id and content) that
    /// was answered `self`: the same, except that it applied nothing new.
    pub(crate) fn as_repeat(&self) -> Self {
        match self {
            CommandResult::Applied { index, .. } => CommandResult::Applied {
                fresh: false,
                index: *index,
            },
            other => other.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    pub code: &'static str,
    pub message: String,
    pub retryable: bool,
    /// The API address to send it to, when known.
    pub redirect: String,
}

/// The node's clock (the machine's, or a simulation's), set off by the
/// offset a chaos test injects (none unless fault injection is on and a
/// test sets one).
pub struct NodeClock {
    base: Arc<dyn Clock>,
    faults: Faults,
}

impl Clock for NodeClock {
    fn now_ns(&self) -> u64 {
        let now = self.base.now_ns();
        let offset_ns = self.faults.clock_offset_ms().saturating_mul(1_000_000);
        now.saturating_add_signed(offset_ns)
    }
}

/// What the API handlers share with the actors.
pub struct NodeHandle {
    pub replica: Arc<ReplicaNode>,
    pub settings: NodeSettings,
    hlc: Arc<Hlc<NodeClock>>,
    /// Where commands go in; set by the actors' supervisor, which restarts
    /// the router when it must.
    router: RwLock<Option<ActorRef<RouterMsg>>>,
    sagas: RwLock<Option<ActorRef<crate::saga::SagaMsg>>>,
    in_flight: Arc<Semaphore>,
    /// Serializes this node's proposals to the control log.
    control: Mutex<ControlProposer>,
    /// The peers a test cut this node off from (fault injection only): the
    /// API sends nothing on to them either.
    pub faults: Faults,
    /// Who may call this node, and the key it shows its peers.
    pub auth: Arc<Auth>,
    /// How this node calls its peers over TLS, if it does.
    peer_tls: Option<ClientTlsConfig>,
    /// This node's clock against its peers' (ms, ahead positive), and
    /// whether that is past the drift limit ([`crate::clock_watch`]).
    clock_offset_ms: AtomicI64,
    clock_off: AtomicBool,
}

impl NodeFailure {
    pub fn unavailable(message: &str) -> Self {
        Self {
            code: "UNAVAILABLE",
            message: message.to_owned(),
            retryable: true,
            redirect: String::new(),
        }
    }
}

impl NodeHandle {
    /// This node's hybrid logical clock.
    pub fn clock(&self) -> &Hlc<NodeClock> {
        &self.hlc
    }

    pub fn home(&self) -> Group {
        Group::Region(self.replica.region())
    }

    /// The API address of a node, from the layout.
    /// How far this node's clock is off its peers' (ms, ahead positive), as
    /// last measured.
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// Whether this node's clock is off its peers' past the drift limit: it
    /// then refuses to lead and to decide.
    pub fn clock_off(&self) -> bool {
        self.clock_off.load(Ordering::Relaxed)
    }

    pub(crate) fn set_clock_offset(&self, offset_ms: f64, off: bool) {
        self.clock_offset_ms
            .store(offset_ms.round() as i64, Ordering::Relaxed);
        self.clock_off.store(off, Ordering::Relaxed);
    }

    /// The answer to every command while this node's clock is off: decided
    /// nowhere, retried at the region's leader (named if known).
    fn clock_drift(&self) -> NodeFailure {
        let leader = self.replica.progress(self.home()).and_then(|p| p.leader);
        let leader = leader.filter(|leader| *leader != self.replica.id());
        NodeFailure {
            code: "CLOCK_DRIFT",
            message: format!(
                "this node's clock is {} ms off its peers', past the drift limit: it neither \
                 leads nor decides until that is fixed; retry at the region's leader",
                self.clock_offset_ms()
            ),
            retryable: true,
            redirect: self.api_address(leader),
        }
    }

    /// Where to send a client that this node refuses though it still
    /// counts itself its region's leader (a leader cut from its quorum, its
    /// lease run out): the next voter of the region, which knows the
    /// leader chosen meanwhile, or waits for it. `None` when this node does
    /// not count itself leader: a follower with no leader known is in an
    /// election, and a client waits for it there.
    fn another_voter(&self) -> Option<u64> {
        let me = self.replica.id();
        let progress = self.replica.progress(self.home())?;
        if progress.leader != Some(me) {
            return None;
        }
        let voters = &progress.voters;
        voters
            .iter()
            .find(|voter| **voter > me)
            .or_else(|| voters.iter().find(|voter| **voter != me))
            .copied()
    }

    /// Commands being decided on this node.
    pub fn commands_in_flight(&self) -> usize {
        COMMANDS_IN_FLIGHT_MAX.saturating_sub(self.in_flight.available_permits())
    }

    /// A client of another node's API that shows this node's key.
    pub async fn client_of(&self, address: &str) -> Result<Client, ClientError> {
        let access = Access {
            deadline: CALL_TIMEOUT,
            key: self.auth.node_key().cloned(),
            tls: self.peer_tls.clone(),
        };
        Client::connect_with(address, access).await
    }

    pub fn api_address(&self, node: Option<u64>) -> String {
        let layout: Layout = self.replica.layout();
        node.and_then(|id| layout.nodes.iter().find(|known| known.id == id))
            .map(|known| known.api.clone())
            .unwrap_or_default()
    }

    pub(crate) fn failure(&self, error: &ProposeError) -> NodeFailure {
        match error {
            ProposeError::NotLeader { leader, .. } => NodeFailure {
                code: "NOT_LEADER",
                message: error.to_string(),
                retryable: true,
                redirect: self.api_address(leader.or_else(|| self.another_voter())),
            },
            ProposeError::Unknown { .. } => NodeFailure {
                code: "OUTCOME_UNKNOWN",
                message: format!("{error}; retry with the same id to learn it"),
                retryable: true,
                redirect: String::new(),
            },
            ProposeError::Failed { .. } => NodeFailure {
                code: "UNAVAILABLE",
                message: error.to_string(),
                retryable: true,
                redirect: String::new(),
            },
        }
    }

    /// Where commands and sagas go in; set by the actors' supervisor, which
    /// restarts them when it must.
    pub(crate) fn set_actors(
        &self,
        router: Option<ActorRef<RouterMsg>>,
        sagas: Option<ActorRef<crate::saga::SagaMsg>>,
    ) {
        *self
            .router
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = router;
        *self
            .sagas
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = sagas;
    }

    /// The answer of a node that does not lead its region: who does.
    pub(crate) async fn not_leader(&self) -> NodeFailure {
        let home = self.home();
        let leader = self.replica.leader(home).await;
        self.failure(&ProposeError::NotLeader {
            group: home,
            leader,
            address: None,
        })
    }

    /// Decides and commits commands of this node's region, as
    /// [`Self::decide`] does; then a transfer or hold (not in a chain)
    /// refused because this region's pool is short, though the account's
    /// global balance covers it, goes to a pull saga: other regions are
    /// asked to release the difference, and the command is decided again
    /// once it has arrived, or answered [`CommandResult::PullTimedOut`].
    pub async fn submit(&self, items: Vec<Item>) -> Vec<CommandResult> {
        let Answers { mut results, pulls } = self.decide_answers(items, true).await;
        if pulls.is_empty() {
            return results;
        }
        let sagas = self
            .sagas
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let Some(sagas) = sagas else {
            return results;
        };
        // One saga per distinct command: a repeat of it in the same request
        // (the same id and content) is answered with its result.
        let mut asks: Vec<(PullAsk, Vec<usize>)> = Vec::with_capacity(pulls.len());
        for ask in pulls {
            // Chaos bite `pull-per-copy` (audit finding 2 put back).
            #[cfg(feature = "chaos-bite")]
            if crate::bite::is(crate::bite::Bite::PullPerCopy) {
                asks.push((ask, Vec::new()));
                continue;
            }
            match asks.iter_mut().find(|(first, _)| first.item == ask.item) {
                Some((_, repeats)) => repeats.push(ask.slot),
                None => asks.push((ask, Vec::new())),
            }
        }
        let mut answers = Vec::with_capacity(asks.len());
        for (
            PullAsk {
                slot,
                item,
                shortfall,
            },
            repeats,
        ) in asks
        {
            let (reply, answer) = oneshot::channel();
            let started = sagas.send_message(crate::saga::SagaMsg::Pull {
                item: Box::new(item),
                shortfall,
                reply,
                span: tracing::Span::current(),
            });
            if started.is_ok() {
                crate::metrics::pull_asked();
                answers.push((slot, repeats, answer));
            }
        }
        for (slot, repeats, answer) in answers {
            // A saga that ends without answering (its supervisor restarted,
            // the node stopping) may have sent the transfer on already:
            // its fate is unknown, never the shortfall it started from.
            let result = answer.await.unwrap_or_else(|_| {
                CommandResult::Unavailable(
                    self.failure(&ProposeError::Unknown { group: self.home() }),
                )
            });
            crate::metrics::pull_ended(&result);
            for repeat in repeats {
                results[repeat] = result.as_repeat();
            }
            results[slot] = result;
        }
        results
    }

    /// Decides and commits commands of this node's region. Each account's
    /// commands are decided in order, by that account's actor, against the
    /// committed state and its own commands in flight; a linked chain
    /// succeeds or fails as one. A chain left open at the end is refused.
    /// For the node's own sagas: they take steps a client may not (the
    /// post or void of a withdrawal).
    pub async fn decide(&self, items: Vec<Item>) -> Vec<CommandResult> {
        self.decide_answers(items, false).await.results
    }

    /// Decides and commits commands, for a client (the API) or for the
    /// node's own sagas.
    async fn decide_answers(&self, mut items: Vec<Item>, client: bool) -> Answers {
        let open = items.iter().rev().take_while(|item| item.linked).count();
        items.truncate(items.len() - open);
        let count = items.len();
        let unavailable = |count| Answers {
            results: vec![
                CommandResult::Unavailable(NodeFailure::unavailable(
                    "the node is stopping"
                ));
                count
            ],
            pulls: Vec::new(),
        };
        if self.clock_off() {
            return Answers {
                results: vec![CommandResult::Unavailable(self.clock_drift()); count + open],
                pulls: Vec::new(),
            };
        }
        let permits = u32::try_from(count.clamp(1, COMMANDS_IN_FLIGHT_MAX)).unwrap_or(u32::MAX);
        let Ok(permit) = self.in_flight.clone().acquire_many_owned(permits).await else {
            return unavailable(count + open);
        };
        let router = self
            .router
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let (reply, answer) = oneshot::channel();
        let collector = Collector::new(count, reply, Some(permit), client);
        let mut answers = match router {
            Some(router)
                if actors::census::ROUTER
                    .send(|| router.send_message(RouterMsg::Route { items, collector }))
                    .is_ok() =>
            {
                answer.await.unwrap_or_else(|_| unavailable(count))
            }
            _ => unavailable(count),
        };
        answers.results.extend(std::iter::repeat_n(
            CommandResult::Rejected(Reject::LinkedChainOpen),
            open,
        ));
        answers
    }

    /// As leader of the control group, once this node's state holds every
    /// control entry that may still commit (an entry of unknown fate is
    /// settled by an empty one behind it, as the writer does for its
    /// region's log; then a read barrier): a stamp after every control event
    /// applied so far. A decision made before an earlier entry settled
    /// could create an account twice, which no node could apply.
    async fn control_stamp(
        &self,
        proposer: &mut ControlProposer,
    ) -> Result<ledger_hlc::Stamp, NodeFailure> {
        if let Some(term) = proposer.unsettled_term {
            let same_term = self
                .replica
                .progress(Group::Control)
                .is_some_and(|progress| progress.term == term);
            if same_term {
                self.replica
                    .propose(Group::Control, Proposal::Control(Vec::new()))
                    .await
                    .map_err(|error| self.failure(&error))?;
            }
            proposer.unsettled_term = None;
        }
        self.replica
            .barrier(Group::Control)
            .await
            .map_err(|error| self.failure(&error))?;
        let last = self
            .replica
            .ledger()
            .read(|ledger| ledger.control().last_stamp());
        Ok(self.hlc.stamp_after(last))
    }

    /// Proposes control events; an outcome that is not known is remembered
    /// until [`Self::control_stamp`] has settled it.
    async fn propose_control(
        &self,
        proposer: &mut ControlProposer,
        events: Vec<ledger_reservations::ControlEvent>,
    ) -> Result<ledger_replication::Applied, ProposeError> {
        let proposed = self
            .replica
            .propose(Group::Control, Proposal::Control(events))
            .await;
        if let Err(error) = &proposed
            && !matches!(error, ProposeError::NotLeader { .. })
        {
            proposer.unsettled_term = self
                .replica
                .progress(Group::Control)
                .map(|progress| progress.term);
        }
        proposed
    }

    /// Changes an account's status through the global control log.
    pub async fn change_status(&self, command: ControlCommand) -> CommandResult {
        let mut proposer = self.control.lock().await;
        let stamp = match self.control_stamp(&mut proposer).await {
            Ok(stamp) => stamp,
            Err(failure) => return CommandResult::Unavailable(failure),
        };
        match self
            .replica
            .ledger()
            .read(|ledger| ledger.decide_control(&command, stamp))
        {
            Ok(Decision::AlreadyApplied) => CommandResult::Applied {
                fresh: false,
                index: 0,
            },
            Err(reject) => CommandResult::Rejected(reject),
            Ok(Decision::Append(event)) => {
                match self.propose_control(&mut proposer, vec![event]).await {
                    Ok(applied) => CommandResult::Applied {
                        fresh: true,
                        index: applied.index,
                    },
                    Err(error) => CommandResult::Unavailable(self.failure(&error)),
                }
            }
        }
    }

    /// Creates accounts through the global control log. Serialized on this
    /// node; duplicates within one call are settled before anything is
    /// proposed, so the log never holds one account twice.
    pub async fn create_accounts(&self, accounts: Vec<NewAccount>) -> Vec<CommandResult> {
        let mut proposer = self.control.lock().await;
        let count = accounts.len();
        let stamp = match self.control_stamp(&mut proposer).await {
            Ok(stamp) => stamp,
            Err(failure) => return vec![CommandResult::Unavailable(failure); count],
        };
        let mut events = Vec::new();
        let mut results = Vec::with_capacity(count);
        let mut decided: BTreeMap<AccountId, NewAccount> = BTreeMap::new();
        for account in accounts {
            if let Some(earlier) = decided.get(&account.id) {
                results.push(if *earlier == account {
                    CommandResult::Applied {
                        fresh: false,
                        index: 0,
                    }
                } else {
                    CommandResult::Rejected(Reject::AccountExists(account.id))
                });
                continue;
            }
            let command = ControlCommand::CreateAccount(account.clone());
            match self
                .replica
                .ledger()
                .read(|ledger| ledger.decide_control(&command, stamp))
            {
                Ok(Decision::Append(event)) => {
                    events.push(event);
                    decided.insert(account.id, account);
                    results.push(CommandResult::Applied {
                        fresh: true,
                        index: 0,
                    });
                }
                Ok(Decision::AlreadyApplied) => results.push(CommandResult::Applied {
                    fresh: false,
                    index: 0,
                }),
                Err(reject) => results.push(CommandResult::Rejected(reject)),
            }
        }
        if events.is_empty() {
            return results;
        }
        match self.propose_control(&mut proposer, events).await {
            Ok(applied) => results
                .into_iter()
                .map(|result| match result {
                    CommandResult::Applied { fresh: true, .. } => CommandResult::Applied {
                        fresh: true,
                        index: applied.index,
                    },
                    other => other,
                })
                .collect(),
            Err(error) => {
                let failure = self.failure(&error);
                results
                    .into_iter()
                    .map(|result| match result {
                        CommandResult::Applied { fresh: true, .. } => {
                            CommandResult::Unavailable(failure.clone())
                        }
                        other => other,
                    })
                    .collect()
            }
        }
    }
}

/// A node started by [`start`]: stop it with [`RunningNode::stop`].
pub struct RunningNode {
    pub handle: Arc<NodeHandle>,
    actors: Actors,
    tasks: Vec<JoinHandle<()>>,
}

/// How often the node checks that none of its groups has stopped.
const FATAL_CHECK_EVERY: Duration = Duration::from_millis(200);

impl RunningNode {
    /// Resolves when a group of this node stopped on a fatal error, with the
    /// group and the reason; the node must then stop.
    pub async fn fatal(&self) -> (Group, String) {
        let mut every = tokio::time::interval(FATAL_CHECK_EVERY);
        loop {
            every.tick().await;
            if let Some(fatal) = self.handle.replica.fatal() {
                return fatal;
            }
        }
    }

    pub async fn stop(self) {
        self.actors.stop().await;
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        match Arc::try_unwrap(self.handle) {
            Ok(handle) => match Arc::try_unwrap(handle.replica) {
                Ok(replica) => replica.shutdown().await,
                Err(_) => tracing::warn!("replica still in use at stop"),
            },
            Err(_) => tracing::warn!("node still in use at stop"),
        }
    }
}

/// This node's TLS: its certificate must name the hosts of its Raft and
/// gRPC API addresses in the layout (its peers call those); one that does
/// not name its HTTP address's host is only said (a TLS-terminating proxy
/// may hold that name).
fn load_tls(tls: &crate::tls::TlsSettings, settings: &NodeSettings) -> anyhow::Result<Tls> {
    let own = settings
        .replication
        .nodes
        .iter()
        .find(|node| node.id == settings.replication.node_id);
    let Some(own) = own else {
        // Not in the layout yet: no address to check.
        return Ok(Tls::load(tls, &[])?);
    };
    let hosts: Vec<&str> = [&own.addr, &own.api]
        .into_iter()
        .filter(|address| !address.is_empty())
        .map(|address| crate::tls::host_of(address))
        .collect();
    let loaded = Tls::load(tls, &hosts)?;
    if !own.http.is_empty()
        && let Err(error) = Tls::load(tls, &[crate::tls::host_of(&own.http)])
    {
        tracing::warn!(%error, http = %own.http, "HTTPS clients of this address will refuse it");
    }
    Ok(loaded)
}

/// Who may call a node with these settings; said once at start when
/// anyone may.
fn auth_of(settings: &NodeSettings) -> Result<Auth, crate::auth::AuthError> {
    match &settings.auth {
        Some(auth) => Auth::new(auth),
        None if !settings.insecure_no_auth => Err(crate::auth::AuthError::Missing),
        None => {
            tracing::warn!(
                "authentication is off (insecure_no_auth): anyone who reaches this node's \
                 ports may call every API, Raft's included"
            );
            Ok(Auth::open())
        }
    }
}

/// What a node stands on besides its settings: how it reaches its peers'
/// Raft, where it keeps its database, its clock and its payment rail. A
/// process gets gRPC, its data directory and the machine's clock; the
/// whole-cluster simulation (`ledger-jepsen`) gives its own.
pub struct Grounds<T, C> {
    pub transport: Arc<T>,
    pub storage: Storage,
    pub faults: Faults,
    pub clock: Arc<dyn Clock>,
    pub payouts: Arc<C>,
    /// Who may call the node, and the key it shows its peers.
    pub auth: Arc<Auth>,
    /// How it calls its peers' APIs over TLS, if it does.
    pub peer_tls: Option<ClientTlsConfig>,
}

/// Opens a node's groups (restoring each from its snapshot and log), the
/// first half of a start: its Raft server may serve them from here on.
pub async fn open_replica<T: Transport, C>(
    settings: &NodeSettings,
    grounds: &Grounds<T, C>,
) -> anyhow::Result<Arc<ReplicaNode>> {
    let replication = &settings.replication;
    let replica = ReplicaNode::start(
        replication.node_id,
        &replication.layout(),
        replication.timings,
        &grounds.storage,
        grounds.transport.clone(),
        grounds.faults.clone(),
    )
    .await?;
    for (group, report) in replica.open_reports() {
        if !report.cut.is_empty() {
            tracing::warn!(%group, cut = ?report.cut, "corrupt log tail cut off on start");
        }
    }
    Ok(Arc::new(replica))
}

/// The second half of a start: initializes the groups this node founds,
/// and starts its writer, account and saga actors. What it returns decides
/// commands; the caller serves them.
pub async fn start_deciding<T, C: PayoutConnector>(
    settings: NodeSettings,
    replica: Arc<ReplicaNode>,
    grounds: Grounds<T, C>,
) -> anyhow::Result<(Arc<NodeHandle>, Actors)> {
    replica.initialize().await?;
    let hlc = Arc::new(Hlc::new(
        NodeId(settings.replication.node_id),
        NodeClock {
            base: grounds.clock,
            faults: grounds.faults.clone(),
        },
    ));
    let handle = Arc::new(NodeHandle {
        replica,
        settings,
        hlc,
        router: RwLock::new(None),
        sagas: RwLock::new(None),
        in_flight: Arc::new(Semaphore::new(COMMANDS_IN_FLIGHT_MAX)),
        control: Mutex::new(ControlProposer::default()),
        faults: grounds.faults,
        auth: grounds.auth,
        peer_tls: grounds.peer_tls,
        clock_offset_ms: AtomicI64::new(0),
        clock_off: AtomicBool::new(false),
    });
    let actors = actors::start(handle.clone(), grounds.payouts).await?;
    Ok((handle, actors))
}

/// Starts a node: its groups, the Raft server, the writer, housekeeping, and
/// the API server from `api` (built by the caller around the handle).
pub async fn start<F, Fut>(settings: NodeSettings, api: F) -> anyhow::Result<RunningNode>
where
    F: FnOnce(Arc<NodeHandle>, tokio::net::TcpListener, Option<ServerTlsConfig>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // Before the replica applies anything: the core's bites change apply.
    #[cfg(feature = "chaos-bite")]
    crate::bite::arm(settings.chaos_bite);
    let replication = &settings.replication;
    let raft_listener = tokio::net::TcpListener::bind(&replication.listen).await?;
    let api_listener = tokio::net::TcpListener::bind(&settings.api_listen).await?;
    let http_listener = match &settings.http_listen {
        Some(address) => Some(tokio::net::TcpListener::bind(address).await?),
        None => None,
    };
    let tls = match &settings.tls {
        Some(tls) => Some(load_tls(tls, &settings)?),
        None => None,
    };
    let mut auth = auth_of(&settings)?;
    if tls.is_some() {
        auth = auth.with_node_certificates();
    }
    let auth = Arc::new(auth);
    let faults = Faults::default();
    let mut transport =
        GrpcTransport::new(replication.timings.deadlines()).with_faults(faults.clone());
    if let Some(key) = auth.node_key() {
        transport = transport.with_key(key.clone());
    }
    if let Some(tls) = &tls {
        transport = transport.with_tls(tls.client());
    }
    let grounds = Grounds {
        transport: Arc::new(transport),
        storage: Storage::Dir(replication.data_dir.clone()),
        faults: faults.clone(),
        clock: Arc::new(SystemClock),
        payouts: Arc::new(crate::saga::SimulatedPayouts),
        auth: auth.clone(),
        peer_tls: tls.as_ref().map(Tls::client),
    };
    let replica = open_replica(&settings, &grounds).await?;
    let metrics = match settings.http_listen {
        Some(_) => crate::metrics::install(replica.id(), replica.region().0),
        None => None,
    };
    if settings.http_listen.is_some() && metrics.is_none() {
        tracing::warn!("metrics are off: another recorder was installed in this process first");
    }
    let raft_service = replica.raft_service().with_faults(faults.clone());
    // No spans on the Raft port: heartbeats are not anyone's request.
    let gate = GateLayer::new(auth);
    let raft_tls = tls.as_ref().map(Tls::raft_server);
    let mut tasks = vec![tokio::spawn(async move {
        if let Err(error) = serve(raft_service, raft_listener, gate, raft_tls).await {
            tracing::error!(%error, "the Raft server stopped");
        }
    })];
    if let Some(handle) = metrics {
        tasks.push(tokio::spawn(crate::metrics::upkeep(handle)));
    }
    if settings.fault_injection {
        tracing::warn!("fault injection is on: blocked-peers and append-delay-ms are followed");
        tasks.push(tokio::spawn(faults.follow(replication.data_dir.clone())));
    }
    let (handle, actors) = start_deciding(settings.clone(), replica, grounds).await?;
    let api_tls = tls.as_ref().map(Tls::api_server);
    tasks.push(tokio::spawn(api(handle.clone(), api_listener, api_tls)));
    if let Some(listener) = http_listener {
        let api = crate::api::Api::new(handle.clone());
        let tls = tls.as_ref().map(Tls::http_server);
        tasks.push(tokio::spawn(crate::http::serve(api, listener, tls)));
    }
    if settings.clock_watch {
        tasks.push(tokio::spawn(crate::clock_watch::watch(handle.clone())));
    }
    Ok(RunningNode {
        handle,
        actors,
        tasks,
    })
}
