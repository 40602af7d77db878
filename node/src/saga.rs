//! Withdrawals: hold, pay out, then post or void. Every step is an event of
//! the region's log (the hold, then the post or the void), so a withdrawal
//! resumes after a crash or a change of leader: the leader's saga
//! supervisor starts a saga actor for every open withdrawal hold it finds.
//!
//! A withdrawal hold is resolved only by a definite answer of the rail:
//! paid (post) or refused (void). The ledger never expires it, since money
//! the rail paid must never also come back; a rail that does not answer is
//! asked again (the call is idempotent) until it does. The client's
//! timeout is the rail's deadline: a payout not made by then is refused.

use crate::runtime::{CommandResult, NodeFailure, NodeHandle};
use crate::wire::{DESTINATION_KEY, PAYOUT_TIMEOUT_KEY};
use ledger_engine::{PullNext, PullProgress, is_withdrawal};
use ledger_replication::TraceContext;
use ledger_reservations::{Command, Item, Money, RegionId, Reject, Shortfall, TransferId};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::Instrument;

/// How often the leader looks for withdrawals to drive.
const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// Payouts in progress at once, at most.
const PAYOUTS_IN_FLIGHT_MAX: usize = 64;
/// How long one payout call may take; past it the withdrawal is asked for
/// again on the next sweep.
const PAYOUT_DEADLINE: Duration = Duration::from_secs(5);

/// Why a payout did not happen. A failed payout is final: the withdrawal is
/// voided and the money returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payout refused: {0}")]
pub struct PayoutFailed(pub String);

/// The outside world's payout rail (a bank, a card network). Calls are
/// idempotent by withdrawal id: asking again for a withdrawal already paid
/// must not pay twice, and answers that it was paid. A payout not made by
/// `deadline` (nanoseconds since the epoch) is refused: asked after it, an
/// unpaid withdrawal gets a definite refusal.
pub trait PayoutConnector: Send + Sync + 'static {
    fn payout(
        &self,
        withdrawal: TransferId,
        amount: Money,
        destination: &str,
        deadline_ns: u64,
    ) -> impl Future<Output = Result<(), PayoutFailed>> + Send;
}

/// A simulated rail for development and tests, steered by the destination:
/// `fail:...` refuses, `hang:...` never answers before the deadline (and
/// never pays; asked after it, it refuses), `slow:...` pays after two
/// seconds, anything else pays at once.
#[derive(Debug, Default)]
pub struct SimulatedPayouts;

impl PayoutConnector for SimulatedPayouts {
    async fn payout(
        &self,
        withdrawal: TransferId,
        amount: Money,
        destination: &str,
        deadline_ns: u64,
    ) -> Result<(), PayoutFailed> {
        if let Some(reason) = destination.strip_prefix("fail:") {
            return Err(PayoutFailed(format!("{destination}: {reason}")));
        }
        if destination.starts_with("hang:") {
            let now_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| {
                    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
                });
            if now_ns >= deadline_ns {
                return Err(PayoutFailed(format!(
                    "{destination}: deadline passed, not paid"
                )));
            }
            std::future::pending::<()>().await;
        }
        if destination.starts_with("slow:") {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        tracing::info!(%withdrawal, %amount, destination, "payout made (simulated)");
        Ok(())
    }
}

/// What the saga supervisor is told.
pub(crate) enum SagaMsg {
    /// Look for open withdrawals without a saga actor.
    Sweep,
    /// Leadership was lost: every saga stops (the next leader resumes them
    /// from its log).
    StopAll,
    /// A transfer or hold refused for want of funds in this region, though
    /// the account's global balance covers it: pull, then decide it again.
    Pull {
        item: Box<Item>,
        shortfall: Box<Shortfall>,
        reply: oneshot::Sender<CommandResult>,
        /// The request's span: the saga's steps continue its trace.
        span: tracing::Span,
    },
}

/// Supervises one actor per open withdrawal on the region leader. A saga
/// that fails or stops is simply found again by the next sweep: its hold is
/// still open in the log, and every step is idempotent.
pub(crate) struct SagaSupervisor<C> {
    connector: Arc<C>,
}

impl<C> SagaSupervisor<C> {
    pub(crate) fn new(connector: Arc<C>) -> Self {
        Self { connector }
    }
}

pub(crate) struct SagaState {
    node: Arc<NodeHandle>,
    running: BTreeMap<TransferId, ActorRef<()>>,
    by_actor: BTreeMap<ActorId, TransferId>,
    /// Pull sagas running (not resumed by a sweep: counted only).
    pulls: BTreeSet<ActorId>,
}

impl<C: PayoutConnector> Actor for SagaSupervisor<C> {
    type Msg = SagaMsg;
    type State = SagaState;
    type Arguments = Arc<NodeHandle>;

    async fn pre_start(
        &self,
        myself: ActorRef<SagaMsg>,
        node: Arc<NodeHandle>,
    ) -> Result<SagaState, ActorProcessingErr> {
        myself.send_interval(SWEEP_EVERY, || SagaMsg::Sweep);
        let state = SagaState {
            node,
            running: BTreeMap::new(),
            by_actor: BTreeMap::new(),
            pulls: BTreeSet::new(),
        };
        // A new supervisor runs none yet (its predecessor's went with it).
        count_sagas(&state);
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SagaMsg>,
        state: &mut SagaState,
    ) -> Result<(), ActorProcessingErr> {
        stop_sagas(state);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SagaMsg>,
        message: SagaMsg,
        state: &mut SagaState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SagaMsg::StopAll => stop_sagas(state),
            SagaMsg::Pull {
                item,
                shortfall,
                reply,
                span,
            } => {
                let span = match TraceContext::of(&span) {
                    Some(_) => tracing::info_span!(parent: &span, "saga.pull"),
                    None => tracing::Span::none(),
                };
                let args = (state.node.clone(), *item, shortfall, reply, span);
                // Not tracked: a pull lives as long as its caller waits, and
                // its steps (the asks, the releases, the grants) are events
                // that complete without it.
                match Actor::spawn_linked(None, PullSaga, args, myself.get_cell()).await {
                    Ok((actor, _)) => {
                        state.pulls.insert(actor.get_id());
                        count_sagas(state);
                    }
                    Err(error) => tracing::warn!(%error, "pull saga not started"),
                }
            }
            SagaMsg::Sweep => {
                if !state.node.replica.is_leader(state.node.home()) {
                    return Ok(());
                }
                for payout in open_withdrawals(&state.node) {
                    let withdrawal = payout.withdrawal;
                    if state.running.len() >= PAYOUTS_IN_FLIGHT_MAX {
                        break;
                    }
                    if state.running.contains_key(&withdrawal) {
                        continue;
                    }
                    let saga = WithdrawalSaga {
                        connector: self.connector.clone(),
                    };
                    let args = (state.node.clone(), payout);
                    match Actor::spawn_linked(None, saga, args, myself.get_cell()).await {
                        Ok((actor, _)) => {
                            state.by_actor.insert(actor.get_id(), withdrawal);
                            state.running.insert(withdrawal, actor);
                            count_sagas(state);
                        }
                        Err(error) => {
                            tracing::warn!(%withdrawal, %error, "withdrawal saga not started");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SagaMsg>,
        event: SupervisionEvent,
        state: &mut SagaState,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match &event {
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::warn!(%error, "a withdrawal saga failed; the next sweep resumes it");
                cell
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => cell,
            _ => return Ok(()),
        };
        if let Some(withdrawal) = state.by_actor.remove(&cell.get_id()) {
            state.running.remove(&withdrawal);
        }
        state.pulls.remove(&cell.get_id());
        count_sagas(state);
        Ok(())
    }
}

fn stop_sagas(state: &mut SagaState) {
    for (_, saga) in std::mem::take(&mut state.running) {
        saga.stop(Some("leadership lost".into()));
    }
    state.by_actor.clear();
    // Linked to this supervisor: they stop with it, unannounced.
    state.pulls.clear();
    count_sagas(state);
}

/// Tells the census how many sagas of each kind run.
fn count_sagas(state: &SagaState) {
    crate::actors::census::sagas_counted(state.running.len(), state.pulls.len());
}

/// One withdrawal: pay out, then post or void. It stops when done; if its
/// step could not be taken, the next sweep starts it again.
struct WithdrawalSaga<C> {
    connector: Arc<C>,
}

impl<C: PayoutConnector> Actor for WithdrawalSaga<C> {
    type Msg = ();
    type State = (Arc<NodeHandle>, Payout);
    type Arguments = (Arc<NodeHandle>, Payout);

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(())?;
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<()>,
        _message: (),
        (node, payout): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        drive(node, self.connector.as_ref(), payout).await;
        myself.stop(None);
        Ok(())
    }
}

/// What an open withdrawal asks of the rail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Payout {
    withdrawal: TransferId,
    amount: Money,
    destination: String,
    /// The rail's deadline: the hold's stamp plus the client's timeout.
    deadline_ns: u64,
}

/// Open withdrawal holds of this region, with what to pay where.
fn open_withdrawals(node: &NodeHandle) -> Vec<Payout> {
    node.replica.ledger().read(|ledger| {
        let home = ledger.home_state();
        home.open_pendings()
            .filter_map(|id| home.transfer(id))
            .filter(|record| is_withdrawal(record))
            .filter_map(|record| {
                let transfer = &record.transfer;
                let metadata = transfer.metadata.as_deref()?;
                let scale = ledger.control().currency(transfer.currency)?.scale;
                let timeout_ms: u64 = metadata.get(PAYOUT_TIMEOUT_KEY)?.parse().ok()?;
                Some(Payout {
                    withdrawal: transfer.id,
                    amount: Money {
                        units: i128::try_from(transfer.units).ok()?,
                        scale,
                    },
                    destination: metadata.get(DESTINATION_KEY)?.clone(),
                    deadline_ns: record
                        .stamp
                        .physical_ns()
                        .saturating_add(timeout_ms.saturating_mul(1_000_000)),
                })
            })
            .collect()
    })
}

/// One withdrawal's payout, then its post or void through the writer. A
/// payout without an answer is asked for again by a later sweep.
async fn drive<C: PayoutConnector>(node: &NodeHandle, connector: &C, payout: &Payout) {
    let withdrawal = payout.withdrawal;
    let paid = tokio::time::timeout(
        PAYOUT_DEADLINE,
        connector.payout(
            withdrawal,
            payout.amount,
            &payout.destination,
            payout.deadline_ns,
        ),
    )
    .await;
    let command = match paid {
        Ok(Ok(())) => ledger_engine::withdrawal_answer(withdrawal, true),
        Ok(Err(failed)) => {
            tracing::info!(%withdrawal, %failed, "payout failed: voiding the withdrawal");
            ledger_engine::withdrawal_answer(withdrawal, false)
        }
        Err(_) => {
            tracing::warn!(%withdrawal, "payout did not answer in time; asked again later");
            return;
        }
    };
    let results = node.decide(vec![Item::single(command)]).await;
    match results.first() {
        Some(CommandResult::Applied { .. }) => {}
        // Resolved by a previous leader: nothing left to do.
        Some(CommandResult::Rejected(reject)) => {
            tracing::info!(%withdrawal, %reject, "withdrawal step not applied");
        }
        Some(CommandResult::Unavailable(failure)) => {
            tracing::info!(%withdrawal, failure = %failure.message, "withdrawal step deferred");
        }
        Some(CommandResult::PullTimedOut(_)) => {}
        None => {}
    }
}

/// How long a pull saga waits for other regions' releases.
const PULL_DEADLINE: Duration = Duration::from_secs(5);
/// How often it looks whether they have arrived.
const PULL_POLL: Duration = Duration::from_millis(20);

/// Whether a pull saga may carry out a refused command, and for what: a
/// transfer or a hold on its own (a chain's members are decided together,
/// never one again alone) refused for want of funds in this region while
/// the account's global balance covers it.
/// `in_chain`: the item is the last command of a linked chain (its own
/// `linked` is false, the one before it is linked): pulled and decided
/// again alone, it would apply while the rest of its chain was refused.
pub(crate) fn pull_for(item: &Item, in_chain: bool, reject: &Reject) -> Option<Box<Shortfall>> {
    let single = !item.linked
        && !in_chain
        && matches!(
            item.command,
            Command::Transfer(_) | Command::CreatePending { .. }
        );
    match reject {
        Reject::InsufficientFunds(shortfall)
            if single && shortfall.available_global.units >= shortfall.requested.units =>
        {
            Some(shortfall.clone())
        }
        _ => None,
    }
}

/// One cross-region pull: ask the regions that have some of the account's
/// reservation (as this node's replicas show them) to release the
/// shortfall, wait for the grants, then decide the command again. When
/// the answers are all in and fell short, it asks again for the rest; when
/// the account no longer has enough anywhere, it decides the command again
/// at once (and it is refused for want of funds). Every
/// step is an event: the asks in this region's log, the answers in theirs,
/// the grants in this one's; if the saga stops, they complete without it.
struct PullSaga;

type PullArgs = (
    Arc<NodeHandle>,
    Item,
    Box<Shortfall>,
    oneshot::Sender<CommandResult>,
    tracing::Span,
);

impl Actor for PullSaga {
    type Msg = ();
    type State = Option<PullArgs>;
    type Arguments = PullArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: PullArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(())?;
        Ok(Some(args))
    }

    async fn handle(
        &self,
        myself: ActorRef<()>,
        _message: (),
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((node, item, shortfall, reply, span)) = state.take() {
            let result = pull(&node, item, *shortfall).instrument(span).await;
            let _ = reply.send(result);
        }
        myself.stop(None);
        Ok(())
    }
}

async fn pull(node: &NodeHandle, item: Item, shortfall: Shortfall) -> CommandResult {
    let Some(id) = item.command.transfer_id() else {
        return CommandResult::Rejected(Reject::InsufficientFunds(Box::new(shortfall)));
    };
    let account = shortfall.account;
    let scale = shortfall.requested.scale;
    let requested = shortfall.requested.units;
    let deadline = tokio::time::Instant::now() + PULL_DEADLINE;
    // Rounds of asks made so far, and the pulls of the last one.
    let mut rounds = 0;
    let mut asked = Vec::new();
    loop {
        let progress = node
            .replica
            .ledger()
            .read(|ledger| ledger_engine::pull_progress(ledger, account, &asked));
        let next = match progress.next(requested) {
            // Nothing asked yet: ask at once.
            PullNext::Wait if rounds == 0 => PullNext::AskAgain,
            next => next,
        };
        match next {
            PullNext::Decide => {
                let result = node.decide(vec![item.clone()]).await;
                match result.into_iter().next() {
                    // Spent by another command meanwhile, and still covered
                    // by the account's global balance: pull on while time
                    // is left.
                    Some(CommandResult::Rejected(reject))
                        if pull_for(&item, false, &reject).is_some()
                            && tokio::time::Instant::now() < deadline => {}
                    Some(result) => return result,
                    None => {
                        return CommandResult::Unavailable(NodeFailure::unavailable("no answer"));
                    }
                }
            }
            // Asked for what is missing now, as this node sees the pools. A
            // round after the first: the answers fell short (a region asked
            // had spent some, or given it to another region's pull, or
            // another command here spent what came), and waiting would wait
            // for nothing.
            PullNext::AskAgain if rounds < ledger_engine::PULL_ROUNDS_MAX => {
                let rest = Shortfall {
                    available_local: Money {
                        units: progress.here,
                        scale,
                    },
                    ..shortfall.clone()
                };
                if let Some(pulls) = ask(node, id, rounds, &rest).await {
                    rounds += 1;
                    asked = pulls;
                }
            }
            PullNext::AskAgain | PullNext::Wait => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return timed_out(shortfall, progress);
        }
        tokio::time::sleep(PULL_POLL).await;
    }
}

/// A pull's answer past its deadline, with the figures it last saw.
fn timed_out(shortfall: Shortfall, progress: PullProgress) -> CommandResult {
    let scale = shortfall.requested.scale;
    CommandResult::PullTimedOut(Box::new(Shortfall {
        available_local: Money {
            units: progress.here,
            scale,
        },
        available_global: Money {
            units: progress.everywhere,
            scale,
        },
        ..shortfall
    }))
}

/// Asks, in round `round` of the pull of the command `id`, the regions
/// that have some of the account's reservation for what `shortfall` leaves
/// to find. Returns the pulls asked (the region, the pull's id) that are in
/// this region's log; `None` when no region has any to ask for.
async fn ask(
    node: &NodeHandle,
    id: TransferId,
    round: u8,
    shortfall: &Shortfall,
) -> Option<Vec<(RegionId, TransferId)>> {
    let asks = node
        .replica
        .ledger()
        .read(|ledger| ledger_engine::pull_asks(ledger, id, round, shortfall));
    if asks.is_empty() {
        return None;
    }
    let pulls: Vec<_> = asks
        .iter()
        .filter_map(|ask| match ask.command {
            Command::RequestPull { id, from, .. } => Some((from, id)),
            _ => None,
        })
        .collect();
    let account = shortfall.account;
    let mut asked = Vec::with_capacity(pulls.len());
    for (pull, result) in pulls.into_iter().zip(node.decide(asks).await) {
        match result {
            CommandResult::Applied { .. } => asked.push(pull),
            _ => tracing::info!(%account, ?result, "a pull was not asked"),
        }
    }
    Some(asked)
}
