//! A running node: its replication groups, its Raft and API servers, and the
//! writer that turns its region's commands into log entries.

use crate::config::NodeSettings;
use crate::wire::BATCH_COMMANDS_MAX;
use ledger_hlc::{Hlc, NodeId, SystemClock};
use ledger_replication::{
    Faults, Group, GrpcTransport, Layout, Proposal, ProposeError, ReplicaNode, serve,
};
use ledger_reservations::{
    AccountId, Batch, Command, ControlCommand, Decision, Item, NewAccount, Outcome, Reject, Scratch,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Requests waiting for the writer, at most.
const WRITER_QUEUE_MAX: usize = 1_024;
/// How long the writer waits for more requests to fill a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(2);
/// How often an idle writer grants releases, expires pending transfers and
/// wires learners.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(200);
/// Pending transfers expired in one housekeeping round, at most.
const EXPIRIES_PER_ROUND_MAX: usize = 1_000;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    pub code: &'static str,
    pub message: String,
    pub retryable: bool,
    /// The API address to send it to, when known.
    pub redirect: String,
}

struct WriteRequest {
    items: Vec<Item>,
    reply: oneshot::Sender<Vec<CommandResult>>,
}

/// What the API handlers share with the writer.
pub struct NodeHandle {
    pub replica: Arc<ReplicaNode>,
    pub settings: NodeSettings,
    hlc: Arc<Hlc<SystemClock>>,
    writer: mpsc::Sender<WriteRequest>,
    control: Mutex<()>,
}

impl NodeHandle {
    /// This node's hybrid logical clock.
    pub fn clock(&self) -> &Hlc<SystemClock> {
        &self.hlc
    }

    pub fn home(&self) -> Group {
        Group::Region(self.replica.region())
    }

    /// The API address of a node, from the layout.
    pub fn api_address(&self, node: Option<u64>) -> String {
        let layout: Layout = self.replica.layout();
        node.and_then(|id| layout.nodes.iter().find(|known| known.id == id))
            .map(|known| known.api.clone())
            .unwrap_or_default()
    }

    fn failure(&self, error: &ProposeError) -> NodeFailure {
        match error {
            ProposeError::NotLeader { leader, .. } => NodeFailure {
                code: "NOT_LEADER",
                message: error.to_string(),
                retryable: true,
                redirect: self.api_address(*leader),
            },
            ProposeError::Unknown { .. } => NodeFailure {
                code: "OUTCOME_UNKNOWN",
                message: format!("{error}; retry with the same id and origin to learn it"),
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

    /// Decides and commits commands of this node's region, in order.
    pub async fn submit(&self, items: Vec<Item>) -> Vec<CommandResult> {
        let count = items.len();
        let (reply, answer) = oneshot::channel();
        let unavailable = |message: &str| {
            vec![
                CommandResult::Unavailable(NodeFailure {
                    code: "UNAVAILABLE",
                    message: message.to_owned(),
                    retryable: true,
                    redirect: String::new(),
                });
                count
            ]
        };
        if self
            .writer
            .send(WriteRequest { items, reply })
            .await
            .is_err()
        {
            return unavailable("the node is stopping");
        }
        answer
            .await
            .unwrap_or_else(|_| unavailable("the node is stopping"))
    }

    /// As leader of the control group, after a read barrier: a stamp after
    /// every control event applied so far.
    async fn control_stamp(&self) -> Result<ledger_hlc::Stamp, NodeFailure> {
        self.replica
            .barrier(Group::Control)
            .await
            .map_err(|error| self.failure(&error))?;
        let last = self
            .replica
            .ledger()
            .read(|ledger| ledger.control().last_stamp());
        if let Err(error) = self.hlc.observe(last) {
            tracing::warn!(%error, "the control log's last stamp is ahead of this node's clock");
        }
        Ok(self.hlc.stamp())
    }

    /// Changes an account's status through the global control log.
    pub async fn change_status(&self, command: ControlCommand) -> CommandResult {
        let _serial = self.control.lock().await;
        let stamp = match self.control_stamp().await {
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
                match self
                    .replica
                    .propose(Group::Control, Proposal::Control(vec![event]))
                    .await
                {
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
        let _serial = self.control.lock().await;
        let count = accounts.len();
        let stamp = match self.control_stamp().await {
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
        match self
            .replica
            .propose(Group::Control, Proposal::Control(events))
            .await
        {
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

/// Starts a node: its groups, the Raft server, the writer, housekeeping, and
/// the API server from `api` (built by the caller around the handle).
pub async fn start<F, Fut>(settings: NodeSettings, api: F) -> anyhow::Result<RunningNode>
where
    F: FnOnce(Arc<NodeHandle>, tokio::net::TcpListener) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let replication = &settings.replication;
    let raft_listener = tokio::net::TcpListener::bind(&replication.listen).await?;
    let api_listener = tokio::net::TcpListener::bind(&settings.api_listen).await?;
    let deadline = Duration::from_millis(replication.timings.rpc_deadline_ms);
    let faults = Faults::default();
    let transport = Arc::new(GrpcTransport::new(deadline).with_faults(faults.clone()));
    let replica = ReplicaNode::start(
        replication.node_id,
        &replication.layout(),
        replication.timings,
        &replication.data_dir,
        transport,
    )
    .await?;
    for (group, report) in replica.open_reports() {
        if !report.cut.is_empty() {
            tracing::warn!(%group, cut = ?report.cut, "corrupt log tail cut off on start");
        }
    }
    let replica = Arc::new(replica);
    let raft_service = replica.raft_service().with_faults(faults.clone());
    let mut tasks = vec![tokio::spawn(async move {
        if let Err(error) = serve(raft_service, raft_listener).await {
            tracing::error!(%error, "the Raft server stopped");
        }
    })];
    if settings.fault_injection {
        tracing::warn!("fault injection is on: peers in blocked-peers are cut off");
        tasks.push(tokio::spawn(
            faults.follow(Faults::file(&replication.data_dir)),
        ));
    }
    replica.initialize().await?;
    let (writer, requests) = mpsc::channel(WRITER_QUEUE_MAX);
    let hlc = Arc::new(Hlc::new(NodeId(replication.node_id), SystemClock));
    let handle = Arc::new(NodeHandle {
        replica: replica.clone(),
        settings: settings.clone(),
        hlc: hlc.clone(),
        writer,
        control: Mutex::new(()),
    });
    tasks.push(tokio::spawn(run_writer(handle.clone(), requests)));
    tasks.push(tokio::spawn(crate::saga::run(
        handle.clone(),
        Arc::new(crate::saga::SimulatedPayouts),
    )));
    tasks.push(tokio::spawn(api(handle.clone(), api_listener)));
    Ok(RunningNode { handle, tasks })
}

/// The only proposer of this node's region log while it leads: decisions
/// see every earlier entry, and stamps grow in log order.
async fn run_writer(node: Arc<NodeHandle>, mut requests: mpsc::Receiver<WriteRequest>) {
    let mut scratch = Scratch::default();
    let mut batch = Batch::default();
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_EVERY);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(first) = request else { return };
                let mut pending = vec![first];
                let mut count = pending[0].items.len();
                let window = tokio::time::sleep(BATCH_WINDOW);
                tokio::pin!(window);
                while count < BATCH_COMMANDS_MAX {
                    tokio::select! {
                        more = requests.recv() => match more {
                            Some(more) => {
                                count += more.items.len();
                                pending.push(more);
                            }
                            None => break,
                        },
                        () = &mut window => break,
                    }
                }
                write(&node, pending, &mut scratch, &mut batch).await;
            }
            _ = housekeeping.tick() => housekeep(&node, &mut scratch, &mut batch).await,
        }
    }
}

/// Decides the requests' commands as one batch, commits its events in one
/// entry, and answers every request.
async fn write(
    node: &NodeHandle,
    requests: Vec<WriteRequest>,
    scratch: &mut Scratch,
    batch: &mut Batch,
) {
    // A chain left open at the end of a request ends there: it never runs on
    // into another client's commands.
    // The commands move into the batch; only their counts stay with the
    // requests, to answer them.
    let mut requests = requests;
    let mut items = Vec::with_capacity(requests.iter().map(|request| request.items.len()).sum());
    let mut spans = Vec::with_capacity(requests.len());
    for request in &mut requests {
        let open = request
            .items
            .iter()
            .rev()
            .take_while(|item| item.linked)
            .count();
        let closed = request.items.len() - open;
        spans.push((items.len(), closed, open));
        request.items.truncate(closed);
        items.append(&mut request.items);
    }
    let results = decide_and_commit(node, &items, scratch, batch).await;
    for (request, (start, closed, open)) in requests.into_iter().zip(spans) {
        let mut answer: Vec<CommandResult> = results[start..start + closed].to_vec();
        answer.extend(std::iter::repeat_n(
            CommandResult::Rejected(Reject::LinkedChainOpen),
            open,
        ));
        // A client that went away no longer needs its answer.
        let _ = request.reply.send(answer);
    }
}

async fn decide_and_commit(
    node: &NodeHandle,
    items: &[Item],
    scratch: &mut Scratch,
    batch: &mut Batch,
) -> Vec<CommandResult> {
    let home = node.home();
    if let Err(error) = node.replica.barrier(home).await {
        return vec![CommandResult::Unavailable(node.failure(&error)); items.len()];
    }
    let last = node
        .replica
        .ledger()
        .read(|ledger| ledger.home_state().last_stamp());
    if let Err(error) = node.hlc.observe(last) {
        tracing::warn!(%error, "the region's last stamp is ahead of this node's clock");
    }
    let stamp = node.hlc.stamp();
    node.replica
        .ledger()
        .read(|ledger| ledger.decide_batch_into(items, stamp, scratch, batch));
    let committed = if batch.events.is_empty() {
        Ok(0)
    } else {
        let events = std::mem::take(&mut batch.events);
        node.replica
            .propose(home, Proposal::Region(events))
            .await
            .map(|applied| applied.index)
    };
    batch
        .outcomes
        .iter()
        .map(|outcome| match (outcome, &committed) {
            (Err(reject), _) => CommandResult::Rejected(reject.clone()),
            (Ok(Outcome::AlreadyApplied), _) => CommandResult::Applied {
                fresh: false,
                index: 0,
            },
            (Ok(Outcome::Appended(_)), Ok(index)) => CommandResult::Applied {
                fresh: true,
                index: *index,
            },
            (Ok(Outcome::Appended(_)), Err(error)) => {
                CommandResult::Unavailable(node.failure(error))
            }
        })
        .collect()
}

/// Grants releases to this region, expires due pending transfers and wires
/// learners, where this node leads.
async fn housekeep(node: &NodeHandle, scratch: &mut Scratch, batch: &mut Batch) {
    if let Err(error) = node.replica.wire_learners().await {
        tracing::warn!(%error, "wiring learners failed");
    }
    if !node.replica.is_leader(node.home()) {
        return;
    }
    if let Err(error) = node.replica.grant_releases(&node.hlc).await {
        tracing::debug!(%error, "grant round not done");
    }
    let now = node.hlc.stamp().physical_ns();
    let due = node.replica.ledger().read(|ledger| {
        ledger
            .home_state()
            .due_pendings(now, EXPIRIES_PER_ROUND_MAX)
    });
    if due.is_empty() {
        return;
    }
    let items: Vec<Item> = due
        .into_iter()
        .map(|pending_id| Item::single(Command::ExpirePending { pending_id }))
        .collect();
    let results = decide_and_commit(node, &items, scratch, batch).await;
    let expired = results
        .iter()
        .filter(|result| matches!(result, CommandResult::Applied { fresh: true, .. }))
        .count();
    tracing::info!(expired, "pending transfers expired");
}
