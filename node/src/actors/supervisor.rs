//! The root of a node's actors: it starts the writer, the router and the
//! saga supervisor, restarts them all when one fails (they share the gate),
//! watches leadership, and sweeps expired holds while the node leads.

use super::account::{Router, RouterMsg};
use super::writer::{Writer, WriterMsg};
use super::{Collector, Gate};
use crate::runtime::{CommandResult, NodeHandle};
use crate::saga::{PayoutConnector, SagaMsg, SagaSupervisor};
use ledger_replication::TraceKey;
use ledger_reservations::{Command, Item};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often the supervisor looks at leadership.
const TICK: Duration = Duration::from_millis(50);
/// Ticks between two sweeps for expired holds and for pulls to answer: a
/// pull waits for one here, and for the asking region's next grants round
/// (`writer::GRANTS_EVERY`), so these two periods make most of its time.
const SWEEP_EVERY_TICKS: u64 = 1;
/// Ticks between two rounds of the pool policies (1 s).
const POLICY_EVERY_TICKS: u64 = 20;
/// Commands in one sweep, at most.
const SWEEP_COMMANDS_MAX: usize = 1_000;

/// The running actors of a node.
pub struct Actors {
    supervisor: ActorRef<SupervisorMsg>,
    join: JoinHandle<()>,
}

impl Actors {
    pub async fn stop(self) {
        self.supervisor.stop(Some("node stopping".into()));
        let _ = self.join.await;
    }
}

pub(crate) async fn start<C: PayoutConnector>(
    node: Arc<NodeHandle>,
    connector: Arc<C>,
) -> anyhow::Result<Actors> {
    let (supervisor, join) = Actor::spawn(
        None,
        NodeSupervisor {
            connector: connector.clone(),
        },
        node,
    )
    .await?;
    Ok(Actors { supervisor, join })
}

pub(crate) enum SupervisorMsg {
    Tick,
}

struct NodeSupervisor<C> {
    connector: Arc<C>,
}

struct Children {
    writer: ActorRef<WriterMsg>,
    router: ActorRef<RouterMsg>,
    sagas: ActorRef<SagaMsg>,
}

pub(crate) struct SupervisorState {
    node: Arc<NodeHandle>,
    gate: Arc<Gate>,
    children: Option<Children>,
    leading: bool,
    expiring: Arc<AtomicBool>,
    answering: Arc<AtomicBool>,
    balancing: Arc<AtomicBool>,
    ticks: u64,
}

impl<C: PayoutConnector> NodeSupervisor<C> {
    async fn spawn_children(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let cell = myself.get_cell();
        let (writer, _) = Actor::spawn_linked(
            None,
            Writer,
            (state.node.clone(), state.gate.clone()),
            cell.clone(),
        )
        .await?;
        let (router, _) = Actor::spawn_linked(
            None,
            Router,
            (state.node.clone(), state.gate.clone(), writer.clone()),
            cell.clone(),
        )
        .await?;
        let (sagas, _) = Actor::spawn_linked(
            None,
            SagaSupervisor::new(self.connector.clone()),
            state.node.clone(),
            cell,
        )
        .await?;
        state
            .node
            .set_actors(Some(router.clone()), Some(sagas.clone()));
        state.children = Some(Children {
            writer,
            router,
            sagas,
        });
        Ok(())
    }
}

async fn stop_children(state: &mut SupervisorState) {
    state.node.set_actors(None, None);
    if let Some(children) = state.children.take() {
        let wait = Some(Duration::from_secs(5));
        let _ = children
            .router
            .stop_and_wait(Some("restart".into()), wait)
            .await;
        let _ = children
            .sagas
            .stop_and_wait(Some("restart".into()), wait)
            .await;
        let _ = children
            .writer
            .stop_and_wait(Some("restart".into()), wait)
            .await;
    }
    state.gate.reset();
}

impl<C: PayoutConnector> Actor for NodeSupervisor<C> {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<NodeHandle>;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        node: Arc<NodeHandle>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut state = SupervisorState {
            node,
            gate: Arc::new(Gate::default()),
            children: None,
            leading: false,
            expiring: Arc::new(AtomicBool::new(false)),
            answering: Arc::new(AtomicBool::new(false)),
            balancing: Arc::new(AtomicBool::new(false)),
            ticks: 0,
        };
        self.spawn_children(&myself, &mut state).await?;
        myself.send_interval(TICK, || SupervisorMsg::Tick);
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        stop_children(state).await;
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Tick => {
                state.ticks += 1;
                let leading = state.node.replica.is_leader(state.node.home());
                if leading != state.leading {
                    // Leadership lost: the actors stop, and whatever they
                    // decided is void (the router's StopAll resets the
                    // gate). Leadership won: the writer's first entry in the
                    // new term fences off decisions made before it.
                    if !leading && let Some(children) = &state.children {
                        let _ = children.router.send_message(RouterMsg::StopAll);
                        let _ = children.sagas.send_message(SagaMsg::StopAll);
                    }
                    tracing::info!(leading, "leadership of the region changed");
                    state.leading = leading;
                }
                if leading && state.ticks.is_multiple_of(SWEEP_EVERY_TICKS) {
                    expire_due(state);
                    answer_pulls(state);
                }
                if leading && state.ticks.is_multiple_of(POLICY_EVERY_TICKS) {
                    keep_floors(state);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match &event {
            SupervisionEvent::ActorFailed(cell, _)
            | SupervisionEvent::ActorTerminated(cell, _, _) => cell,
            _ => return Ok(()),
        };
        // Children stopped by an earlier restart report here too: only the
        // current ones count.
        let stopped = state.children.as_ref().is_some_and(|children| {
            [
                children.writer.get_id(),
                children.router.get_id(),
                children.sagas.get_id(),
            ]
            .contains(&cell.get_id())
        });
        if stopped {
            match &event {
                SupervisionEvent::ActorFailed(_, error) => {
                    tracing::error!(actor = %cell.get_id(), %error, "a node actor failed; restarting all");
                }
                _ => tracing::warn!(actor = %cell.get_id(), "a node actor stopped; restarting all"),
            }
        }
        if stopped {
            // One for all: the writer, the router and the sagas share the
            // gate and hold references to each other.
            stop_children(state).await;
            self.spawn_children(&myself, state).await?;
        }
        Ok(())
    }
}

/// Routes the expiry of every due hold to the actor of its account (the
/// one that would post or void it).
fn expire_due(state: &SupervisorState) {
    // A node whose clock is off its peers' judges no deadline.
    if state.node.clock_off() {
        return;
    }
    // Withdrawal holds are resolved by their sagas alone (the rail may have
    // paid): never expired here.
    let items = state.node.replica.ledger().read(|ledger| {
        // By the time the expiries will be decided at: the region's log
        // time, never behind its last stamp.
        let last = ledger.home_state().last_stamp();
        let now = state.node.clock().stamp_after(last).physical_ns();
        ledger_engine::due_expiries(ledger, now, SWEEP_COMMANDS_MAX)
    });
    sweep(state, &state.expiring, items, "pending transfers expired");
}

/// Answers the pulls other regions addressed to this one and it has not
/// answered yet, as this node's replicas of their logs show them. A pull
/// this region has nothing for stays unanswered and is tried again. The
/// answers continue the trace of a traced ask ([`pull_answer_span`]).
fn answer_pulls(state: &SupervisorState) {
    let items = state
        .node
        .replica
        .ledger()
        .read(|ledger| ledger_engine::pulls_to_answer(ledger, SWEEP_COMMANDS_MAX));
    if items.is_empty() || state.answering.load(Ordering::SeqCst) {
        return;
    }
    let span = pull_answer_span(&state.node, &items);
    let _entered = span.enter();
    sweep(state, &state.answering, items, "pulls answered");
}

/// The span the answers of `items` are decided in when any of their asks
/// was traced: a child of the first traced ask, linked to the others (the
/// releases it decides then carry it to the grants in the askers' regions).
fn pull_answer_span(node: &NodeHandle, items: &[Item]) -> tracing::Span {
    let mut asks = items.iter().filter_map(|item| match item.command {
        // Kept, not taken: an answer that fails is tried again, in the
        // same trace (the book forgets the oldest past its bound).
        Command::AnswerPull { asker, pull } => node
            .replica
            .ledger()
            .trace(&TraceKey::Pull { asker, id: pull }),
        _ => None,
    });
    let Some(first) = asks.next() else {
        return tracing::Span::none();
    };
    let span = tracing::info_span!(
        "pull.answer",
        ledger.node = node.replica.id(),
        ledger.region = node.replica.region().0,
        pulls = items.len(),
    );
    first.adopt(&span);
    for other in asks {
        other.link(&span);
    }
    span
}

/// The pool policies, as pulls (`ledger_engine::floor_pulls`).
fn keep_floors(state: &SupervisorState) {
    let items = state
        .node
        .replica
        .ledger()
        .read(|ledger| ledger_engine::floor_pulls(ledger, SWEEP_COMMANDS_MAX));
    sweep(state, &state.balancing, items, "pool policy pulls asked");
}

/// Routes housekeeping commands like any others, one sweep of a kind at a
/// time, and logs how many took effect.
fn sweep(state: &SupervisorState, running: &Arc<AtomicBool>, items: Vec<Item>, what: &'static str) {
    let Some(children) = &state.children else {
        return;
    };
    if items.is_empty() || running.swap(true, Ordering::SeqCst) {
        return;
    }
    let (reply, answer) = oneshot::channel();
    let collector = Collector::new(items.len(), reply, None, false);
    if super::census::ROUTER
        .send(|| {
            children
                .router
                .send_message(RouterMsg::Route { items, collector })
        })
        .is_err()
    {
        running.store(false, Ordering::SeqCst);
        return;
    }
    let running = running.clone();
    tokio::spawn(async move {
        if let Ok(answers) = answer.await {
            let done = answers
                .results
                .iter()
                .filter(|result| matches!(result, CommandResult::Applied { fresh: true, .. }))
                .count();
            if done > 0 {
                tracing::info!(done, what);
            }
        }
        running.store(false, Ordering::SeqCst);
    });
}
