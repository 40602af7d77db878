//! Account actors and the router that spawns them.
//!
//! The router splits each request by the account a command takes from
//! ([`Ledger::debit_of`]): each account's commands go, in order, to its
//! actor, spawned on first use and retired when idle. A linked chain that
//! takes from several accounts (or from none the committed state knows) goes
//! to a coordinator task that parks those accounts' actors, waits until
//! nothing of theirs is in flight, decides the chain against the committed
//! state, and resumes them once it is committed.

use super::writer::{self, Dropped, FromActor, Submission, WriterMsg};
use super::{Collector, Gate, PullAsk};
use crate::runtime::{CommandResult, NodeFailure, NodeHandle};
use ledger_engine::{AccountDecider, Route, Unit, Verdict};
use ledger_reservations::{AccountId, Item};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
// tokio's clock: a simulation's, when one runs the node.
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// Messages waiting for one account actor, at most: past it the account's
/// commands are refused as busy (retryable) rather than queued without end.
const ACCOUNT_MAILBOX_MAX: usize = 1_024;
/// An account actor idle this long is retired.
const ACCOUNT_IDLE: Duration = Duration::from_secs(5);
/// How often the router looks for idle actors.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long a coordinator or a retiring actor waits for an account's
/// events in flight to commit.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Commands of one request for one decider, with their answer slots.
pub(crate) struct Work {
    pub items: Vec<Item>,
    pub slots: Vec<usize>,
    pub collector: Arc<Collector>,
}

impl Work {
    fn fail(&self, failure: &NodeFailure) {
        self.collector.fill(
            self.slots
                .iter()
                .map(|slot| (*slot, CommandResult::Unavailable(failure.clone()))),
        );
    }
}

fn busy(account: AccountId) -> NodeFailure {
    NodeFailure {
        code: "ACCOUNT_BUSY",
        message: format!(
            "account {account} has {ACCOUNT_MAILBOX_MAX} requests waiting; retry shortly"
        ),
        retryable: true,
        redirect: String::new(),
    }
}

fn retry(message: String) -> NodeFailure {
    NodeFailure {
        code: "RETRY",
        message,
        retryable: true,
        redirect: String::new(),
    }
}

pub(crate) enum AccountMsg {
    Decide(Work),
    /// Stop deciding until `resume` fires (or is dropped); say `parked` once
    /// nothing of this account is in flight.
    Park {
        parked: oneshot::Sender<()>,
        resume: oneshot::Receiver<()>,
    },
    /// Stop once nothing is in flight: the router has forgotten this actor.
    Retire,
}

pub(crate) struct AccountActor;

pub(crate) struct AccountArgs {
    node: Arc<NodeHandle>,
    gate: Arc<Gate>,
    writer: ActorRef<WriterMsg>,
    account: AccountId,
    /// Fires when the previous actor of this account has stopped: this one
    /// decides nothing before, so the two never have events in flight at
    /// once.
    predecessor: Option<watch::Receiver<()>>,
    queued: Arc<AtomicUsize>,
    /// Held until this actor is gone: its drop is what `predecessor` waits for.
    _gone: watch::Sender<()>,
}

pub(crate) struct AccountState {
    args: AccountArgs,
    /// The engine's decider of this account: its events in flight.
    decider: AccountDecider,
    /// Where the writer tells it of a submission it dropped.
    dropped: Arc<Dropped>,
}

impl Actor for AccountActor {
    type Msg = AccountMsg;
    type State = AccountState;
    type Arguments = AccountArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AccountMsg>,
        args: AccountArgs,
    ) -> Result<AccountState, ActorProcessingErr> {
        Ok(AccountState {
            decider: AccountDecider::new(args.account, myself.get_id().pid()),
            args,
            dropped: Arc::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AccountMsg>,
        message: AccountMsg,
        state: &mut AccountState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(mut predecessor) = state.args.predecessor.take() {
            // Resolves with an error once the sender is gone.
            while predecessor.changed().await.is_ok() {}
        }
        match message {
            AccountMsg::Decide(work) => {
                state.args.queued.fetch_sub(1, Ordering::SeqCst);
                // A span only within a traced request (a child of its span).
                let span = match work.collector.trace() {
                    Some(_) => tracing::info_span!(
                        parent: work.collector.span(),
                        "account.decide",
                        account = %state.args.account,
                    ),
                    None => tracing::Span::none(),
                };
                let _deciding = span.enter();
                decide(state, work);
            }
            AccountMsg::Park { parked, resume } => {
                if drain(state).await {
                    let _ = parked.send(());
                    let deadline = Duration::from_millis(state.args.node.settings.park_deadline_ms);
                    if tokio::time::timeout(deadline, resume).await.is_err() {
                        // The coordinator's decision may still be on its way
                        // to the log: nothing decided from now on may count
                        // on it either way.
                        tracing::warn!(account = %state.args.account, "parked past the deadline");
                        state.args.gate.reset();
                    }
                }
            }
            AccountMsg::Retire => {
                if !drain(state).await {
                    // What it held may still commit; whoever decides for
                    // this account next must not count on it either way.
                    state.args.gate.reset();
                }
                myself.stop(Some("idle".into()));
            }
        }
        Ok(())
    }
}

/// Waits until nothing of this account is in flight. False past the
/// deadline.
async fn drain(state: &mut AccountState) -> bool {
    let deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        let epoch = state.args.gate.epoch();
        let AccountState {
            args,
            decider,
            dropped,
        } = state;
        args.node
            .replica
            .ledger()
            .read(|ledger| decider.prune(ledger, epoch, dropped.take()));
        if decider.in_flight() == 0 {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn decide(state: &mut AccountState, work: Work) {
    let AccountState {
        args,
        decider,
        dropped,
    } = state;
    let epoch = args.gate.epoch();
    let node = &args.node;
    let account = args.account;
    let decided = node.replica.ledger().read(|ledger| {
        // Past the region's last stamp, even one a faster clock (an earlier
        // leader's) put ahead of this node's: the drift limit is for stamps
        // from other nodes, not for extending this region's own log.
        let stamp = node.clock().stamp_after(ledger.home_state().last_stamp());
        decider.decide(ledger, epoch, dropped.take(), stamp, &work.items)
    });
    let decided = match decided {
        Ok(decided) => decided,
        Err(error) => {
            tracing::warn!(%account, %error, "in-flight events no longer fit; dropped");
            work.fail(&retry(format!("account {account}: {error}; retry")));
            return;
        }
    };
    let not_own = format!("a command routed to account {account} takes from another; retry");
    let Sorted { slots, repeats } = answer(&work, &decided.verdicts, &not_own);
    let Some(submitted) = decided.submission else {
        return;
    };
    let seq = submitted.seq;
    let submission = Submission {
        events: submitted.events,
        slots,
        repeats,
        collector: work.collector,
        epoch: submitted.epoch,
        base: submitted.base,
        from: Some(FromActor {
            id: submitted.decider.id,
            seq,
            drops_seen: submitted.decider.drops_seen,
            dropped: dropped.clone(),
        }),
        done: None,
    };
    if !writer::submit(&args.writer, submission) {
        decider.drop_submission(seq);
    }
}

/// The commands of a decided batch that wait for its entry.
struct Sorted {
    /// Those whose events are in the batch.
    slots: Vec<usize>,
    /// Repeats (the same id and content) of a command in `slots`.
    repeats: Vec<usize>,
}

/// Answers at once what the engine's verdicts settle by themselves
/// (rejections, commands committed before or still in flight, a batch that
/// is not the decider's own, answered `not_own`) and sorts the rest. A
/// refused transfer or hold that the account's global balance covers is
/// marked for a pull.
fn answer(work: &Work, verdicts: &[Verdict], not_own: &str) -> Sorted {
    let mut answers = Vec::with_capacity(work.items.len());
    let mut slots = Vec::new();
    let mut repeats = Vec::new();
    for (at, ((verdict, slot), item)) in verdicts
        .iter()
        .zip(&work.slots)
        .zip(&work.items)
        .enumerate()
    {
        let answer = match verdict {
            Verdict::InEntry => {
                slots.push(*slot);
                continue;
            }
            Verdict::RepeatInEntry => {
                repeats.push(*slot);
                continue;
            }
            Verdict::Rejected(reject) => {
                // A chain is routed whole, in order: the command after a
                // linked one is its chain's last.
                let in_chain = at
                    .checked_sub(1)
                    .and_then(|before| work.items.get(before))
                    .is_some_and(|before| before.linked);
                if let Some(shortfall) = crate::saga::pull_for(item, in_chain, reject) {
                    work.collector.ask_pull(PullAsk {
                        slot: *slot,
                        item: item.clone(),
                        shortfall,
                    });
                }
                CommandResult::Rejected(reject.clone())
            }
            Verdict::BeingCommitted => CommandResult::Unavailable(retry(
                "the same command is being committed; retry to learn its outcome".into(),
            )),
            Verdict::CommittedBefore => CommandResult::Applied {
                fresh: false,
                index: 0,
            },
            Verdict::NotOwn => CommandResult::Unavailable(retry(not_own.to_owned())),
        };
        answers.push((*slot, answer));
    }
    work.collector.fill(answers);
    Sorted { slots, repeats }
}

pub(crate) enum RouterMsg {
    Route {
        items: Vec<Item>,
        collector: Arc<Collector>,
    },
    Sweep,
    /// Leadership was lost: every account actor stops.
    StopAll,
}

pub(crate) struct Router;

struct Entry {
    actor: ActorRef<AccountMsg>,
    queued: Arc<AtomicUsize>,
    last_used: Instant,
    gone: watch::Receiver<()>,
}

pub(crate) struct RouterState {
    node: Arc<NodeHandle>,
    gate: Arc<Gate>,
    writer: ActorRef<WriterMsg>,
    accounts: FxHashMap<AccountId, Entry>,
    by_actor: FxHashMap<ActorId, AccountId>,
    /// Actors told to retire, until they have stopped.
    retiring: FxHashMap<AccountId, watch::Receiver<()>>,
}

fn saga_only() -> NodeFailure {
    NodeFailure {
        code: "WITHDRAWAL_IN_PROGRESS",
        message: "a withdrawal hold is posted or voided by its payout alone".into(),
        retryable: false,
        redirect: String::new(),
    }
}

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = (Arc<NodeHandle>, Arc<Gate>, ActorRef<WriterMsg>);

    async fn pre_start(
        &self,
        myself: ActorRef<RouterMsg>,
        (node, gate, writer): Self::Arguments,
    ) -> Result<RouterState, ActorProcessingErr> {
        myself.send_interval(SWEEP_EVERY, || RouterMsg::Sweep);
        super::census::ROUTER.emptied();
        Ok(RouterState {
            node,
            gate,
            writer,
            accounts: FxHashMap::default(),
            by_actor: FxHashMap::default(),
            retiring: FxHashMap::default(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RouterMsg>,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        stop_all(state);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RouterMsg>,
        message: RouterMsg,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RouterMsg::Route { items, collector } => {
                super::census::ROUTER.taken();
                route(&myself, state, items, collector).await;
            }
            RouterMsg::Sweep => {
                let now = Instant::now();
                let idle: Vec<AccountId> = state
                    .accounts
                    .iter()
                    .filter(|(_, entry)| now - entry.last_used > ACCOUNT_IDLE)
                    .map(|(account, _)| *account)
                    .collect();
                for account in idle {
                    if let Some(entry) = state.accounts.remove(&account) {
                        let _ = entry.actor.send_message(AccountMsg::Retire);
                        state.retiring.insert(account, entry.gone);
                    }
                }
                state.retiring.retain(|_, gone| gone.has_changed().is_ok());
                count_accounts(state);
            }
            RouterMsg::StopAll => stop_all(state),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<RouterMsg>,
        event: SupervisionEvent,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                // Its events in flight may or may not commit: nothing
                // decided from now on counts on either.
                state.gate.reset();
                if let Some(account) = state.by_actor.remove(&cell.get_id()) {
                    tracing::error!(%account, %error, "account actor failed");
                    if state
                        .accounts
                        .get(&account)
                        .is_some_and(|entry| entry.actor.get_id() == cell.get_id())
                    {
                        state.accounts.remove(&account);
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(account) = state.by_actor.remove(&cell.get_id())
                    && state
                        .accounts
                        .get(&account)
                        .is_some_and(|entry| entry.actor.get_id() == cell.get_id())
                {
                    state.accounts.remove(&account);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Tells the census how many account actors are alive (retiring ones
/// included) and what waits in their mailboxes: once a sweep, over the
/// accounts used in the last [`ACCOUNT_IDLE`].
fn count_accounts(state: &RouterState) {
    let depths = state
        .accounts
        .values()
        .map(|entry| entry.queued.load(Ordering::Relaxed));
    let (queued, deepest) = depths.fold((0, 0), |(sum, max), depth| (sum + depth, max.max(depth)));
    super::census::accounts_counted(state.accounts.len() + state.retiring.len(), queued, deepest);
}

fn stop_all(state: &mut RouterState) {
    for (_, entry) in state.accounts.drain() {
        entry.actor.stop(Some("leadership lost".into()));
    }
    state.retiring.clear();
    state.gate.reset();
    count_accounts(state);
}

/// The actor of `account`, spawned if it has none.
async fn actor_of(
    myself: &ActorRef<RouterMsg>,
    state: &mut RouterState,
    account: AccountId,
) -> Result<(ActorRef<AccountMsg>, Arc<AtomicUsize>), NodeFailure> {
    if let Some(entry) = state.accounts.get_mut(&account) {
        entry.last_used = Instant::now();
        return Ok((entry.actor.clone(), entry.queued.clone()));
    }
    let (gone, watched) = watch::channel(());
    let queued = Arc::new(AtomicUsize::new(0));
    let args = AccountArgs {
        node: state.node.clone(),
        gate: state.gate.clone(),
        writer: state.writer.clone(),
        account,
        predecessor: state.retiring.remove(&account),
        queued: queued.clone(),
        _gone: gone,
    };
    let (actor, _) = Actor::spawn_linked(None, AccountActor, args, myself.get_cell())
        .await
        .map_err(|error| retry(format!("account {account}: actor not started: {error}")))?;
    state.by_actor.insert(actor.get_id(), account);
    state.accounts.insert(
        account,
        Entry {
            actor: actor.clone(),
            queued: queued.clone(),
            last_used: Instant::now(),
            gone: watched,
        },
    );
    Ok((actor, queued))
}

async fn route(
    myself: &ActorRef<RouterMsg>,
    state: &mut RouterState,
    items: Vec<Item>,
    collector: Arc<Collector>,
) {
    let node = state.node.clone();
    if !node.replica.is_leader(node.home()) {
        let failure = node.not_leader().await;
        collector
            .fill((0..items.len()).map(|slot| (slot, CommandResult::Unavailable(failure.clone()))));
        return;
    }
    // A client may not post or void a withdrawal hold (only the payout
    // rail's answer resolves it, or money the rail paid would come back):
    // refused, whole chain.
    let client = collector.is_client();
    let units = node.replica.ledger().read(|ledger| {
        ledger_engine::route(ledger, &items, |command| {
            client && ledger_engine::steps_a_withdrawal(ledger, command)
        })
    });
    let mut items: Vec<Option<Item>> = items.into_iter().map(Some).collect();
    let mut take = |start: usize, end: usize| -> (Vec<Item>, Vec<usize>) {
        (
            (start..=end)
                .filter_map(|slot| items[slot].take())
                .collect(),
            (start..=end).collect(),
        )
    };
    let mut per_account: BTreeMap<AccountId, (Vec<Item>, Vec<usize>)> = BTreeMap::new();
    let mut coordinated = Vec::new();
    for Unit { start, end, route } in units {
        let (unit, slots) = take(start, end);
        match route {
            Route::Account(account) => {
                let work = per_account.entry(account).or_default();
                work.0.extend(unit);
                work.1.extend(slots);
            }
            Route::Coordinated(accounts) => coordinated.push((accounts, unit, slots)),
            Route::Refused => {
                let failure = CommandResult::Unavailable(saga_only());
                collector.fill(slots.into_iter().map(|slot| (slot, failure.clone())));
            }
        }
    }
    for (account, (items, slots)) in per_account {
        let work = Work {
            items,
            slots,
            collector: collector.clone(),
        };
        let (actor, queued) = match actor_of(myself, state, account).await {
            Ok(found) => found,
            Err(failure) => {
                work.fail(&failure);
                continue;
            }
        };
        if queued.fetch_add(1, Ordering::SeqCst) >= ACCOUNT_MAILBOX_MAX {
            queued.fetch_sub(1, Ordering::SeqCst);
            work.fail(&busy(account));
            continue;
        }
        if let Err(ractor::MessagingErr::SendErr(AccountMsg::Decide(work))) =
            actor.send_message(AccountMsg::Decide(work))
        {
            work.fail(&retry(format!("account {account}: actor stopping; retry")));
        }
    }
    for (accounts, items, slots) in coordinated {
        let mut actors = Vec::with_capacity(accounts.len());
        let work = Work {
            items,
            slots,
            collector: collector.clone(),
        };
        let mut failed = None;
        for account in accounts {
            match actor_of(myself, state, account).await {
                Ok((actor, _)) => actors.push((account, actor)),
                Err(failure) => failed = Some(failure),
            }
        }
        if let Some(failure) = failed {
            work.fail(&failure);
            continue;
        }
        tokio::spawn(coordinate(
            state.node.clone(),
            state.gate.clone(),
            state.writer.clone(),
            actors,
            work,
        ));
    }
}

/// Decides a unit that takes from several accounts: parks their actors (in
/// account order, so two coordinators never wait on each other), decides it
/// against the committed state, and resumes them once it is committed.
pub(crate) async fn coordinate(
    node: Arc<NodeHandle>,
    gate: Arc<Gate>,
    writer: ActorRef<WriterMsg>,
    actors: Vec<(AccountId, ActorRef<AccountMsg>)>,
    work: Work,
) {
    let mut resumes = Vec::with_capacity(actors.len());
    for (account, actor) in &actors {
        let (parked_tx, parked) = oneshot::channel();
        let (resume, resume_rx) = oneshot::channel();
        resumes.push(resume);
        let sent = actor.send_message(AccountMsg::Park {
            parked: parked_tx,
            resume: resume_rx,
        });
        let parked = sent.is_ok()
            && matches!(
                tokio::time::timeout(DRAIN_DEADLINE + Duration::from_secs(1), parked).await,
                Ok(Ok(()))
            );
        if !parked {
            work.fail(&retry(format!(
                "account {account} is busy with earlier transfers; retry"
            )));
            return;
        }
    }
    let parked: BTreeSet<AccountId> = actors.iter().map(|(account, _)| *account).collect();
    let epoch = gate.epoch();
    let coordinated = node.replica.ledger().read(|ledger| {
        // Past the region's last stamp, even one a faster clock (an earlier
        // leader's) put ahead of this node's: the drift limit is for stamps
        // from other nodes, not for extending this region's own log.
        let stamp = node.clock().stamp_after(ledger.home_state().last_stamp());
        ledger_engine::coordinate(ledger, &parked, stamp, &work.items)
    });
    let Sorted { slots, repeats } = answer(
        &work,
        &coordinated.verdicts,
        "the accounts of the chain changed while it was decided; retry",
    );
    if !slots.is_empty() {
        let (done, committed) = oneshot::channel();
        let submission = Submission {
            events: coordinated.events,
            slots,
            repeats,
            collector: work.collector.clone(),
            epoch,
            base: coordinated.base,
            from: None,
            done: Some(done),
        };
        // Whatever the outcome, the actors may go on: a failed entry resets
        // the gate.
        writer::submit(&writer, submission);
        drop(committed.await);
    }
    drop(resumes);
}
