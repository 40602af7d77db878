//! The writer: the only proposer of its region's log on the leader. It
//! gathers the events that deciders (account actors, coordinators) decided
//! while the previous entry was being committed and proposes them as one
//! entry (one fsync per group commit). What goes in, and when, the engine
//! decides ([`ledger_engine::EntryWriter`]): this actor carries it out
//! (proposes, waits for the read barrier, resets the gate, answers). Between
//! entries it proposes the grants the region owes; a task beside it wires
//! learners, so that a membership change that waits never holds up an
//! entry.

use super::{Collector, Gate};
use crate::runtime::{CommandResult, NodeFailure, NodeHandle};
use ledger_engine::{
    Candidate, Decider, EntrySize, EntryWriter, GrantHeld, ProposalFailure, Refusal, entry_batch,
};
use ledger_replication::{EntryTrace, Proposal, ProposeError, TraceContext, TraceKey};
use ledger_reservations::{Event, EventBody};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::Instrument;

/// One entry holds at most this many events, and this many bytes of
/// events as the log encodes them (grants the region owes come on top, at
/// most an entry's events of them, a hundred bytes or so each): what
/// crosses the network in one message stays within its deadline and its
/// size limit (audit finding 9). A submission larger than that (one call's
/// commands on one account, bounded by the API's message size) goes in
/// alone.
const ENTRY_MAX: EntrySize = EntrySize {
    events: 8_190,
    bytes: 4 * 1024 * 1024,
};
/// The bound on an entry: [`ENTRY_MAX`], or events only with finding 9 put
/// back (the `bytes-unbounded` chaos bite).
fn entry_max() -> EntrySize {
    #[cfg(feature = "chaos-bite")]
    if crate::bite::is(crate::bite::Bite::BytesUnbounded) {
        return EntrySize {
            bytes: usize::MAX,
            ..ENTRY_MAX
        };
    }
    ENTRY_MAX
}

/// How often the writer proposes the grants owed (when no client entry
/// carries them sooner): a pull waits for one round of it.
const GRANTS_EVERY: Duration = Duration::from_millis(50);
/// How often learners are wired where this node leads.
const WIRE_EVERY: Duration = Duration::from_millis(200);
/// How long a flush waits for its read barrier (a round to the region's
/// voters) before it answers its submissions with a retry.
const BARRIER_WAIT_MAX: Duration = Duration::from_secs(5);

/// The account actor that decided a submission.
pub(crate) struct FromActor {
    /// Unique among the actors alive.
    pub id: u64,
    /// Its number for the submission.
    pub seq: u64,
    /// How many of its submissions of this epoch it had been told were
    /// dropped when it decided this one.
    pub drops_seen: u64,
    /// Where the writer tells it of a submission it dropped.
    pub dropped: Arc<Dropped>,
}

/// Submissions of one actor that the writer did not propose, as (number,
/// epoch), until the actor takes them. Shared rather than sent, so that an
/// actor waiting for its events in flight to commit learns of a drop at once.
#[derive(Debug, Default)]
pub(crate) struct Dropped(Mutex<Vec<(u64, u64)>>);

impl Dropped {
    fn push(&self, seq: u64, epoch: u64) {
        self.lock().push((seq, epoch));
    }

    pub(crate) fn take(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u64)>> {
        // A plain list: a panic elsewhere cannot leave it half-written.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Events decided by an actor, for the log.
pub(crate) struct Submission {
    pub events: Vec<Event>,
    /// The commands these events answer: they are answered with the entry's
    /// index once it is committed.
    pub slots: Vec<usize>,
    /// Commands of the same request that repeat one of `slots`' (the same
    /// id and content): answered with it, as a retry, once it is answered.
    pub repeats: Vec<usize>,
    pub collector: Arc<Collector>,
    /// The gate's epoch when the decision was made.
    pub epoch: u64,
    /// The index of the region's log the deciding state held.
    pub base: u64,
    /// The account actor that decided it: told when the writer drops it.
    pub from: Option<FromActor>,
    /// Told whether it was committed, once it is answered.
    pub done: Option<oneshot::Sender<bool>>,
}

impl Submission {
    fn size(&self) -> EntrySize {
        EntrySize {
            events: self.events.len(),
            bytes: self
                .events
                .iter()
                .map(ledger_replication::event_bytes)
                .fold(0, usize::saturating_add),
        }
    }

    fn answer(self, result: &CommandResult) {
        let committed = matches!(result, CommandResult::Applied { .. });
        self.fill(result);
        if let Some(done) = self.done {
            let _ = done.send(committed);
        }
    }

    /// Answers its commands (a slot keeps its first answer).
    fn fill(&self, result: &CommandResult) {
        let repeated = result.as_repeat();
        self.collector.fill(
            self.slots
                .iter()
                .map(|slot| (*slot, result.clone()))
                .chain(self.repeats.iter().map(|slot| (*slot, repeated.clone()))),
        );
    }

    /// Not proposed: its decider must drop it from what it holds in flight
    /// (admission has counted the drop).
    fn drop_with(self, result: CommandResult) {
        if let Some(from) = &self.from {
            from.dropped.push(from.seq, self.epoch);
        }
        self.answer(&result);
    }

    fn refuse(self, refusal: &Refusal) {
        let result = match refusal.reject() {
            Some(reject) => CommandResult::Rejected(reject),
            None => CommandResult::Unavailable(retry(&format!("{}; retry", refusal.reason()))),
        };
        self.drop_with(result);
    }

    fn candidate(&mut self) -> Candidate<'_> {
        Candidate {
            decider: self.from.as_ref().map(|from| Decider {
                id: from.id,
                drops_seen: from.drops_seen,
            }),
            events: &mut self.events,
            epoch: self.epoch,
            base: self.base,
        }
    }
}

/// Hands a submission to the writer; if the writer is gone (restarting),
/// answers it as unavailable and returns false.
// ractor's error holds the message, which is how a submission comes back.
#[allow(clippy::result_large_err)]
pub(crate) fn submit(writer: &ActorRef<WriterMsg>, submission: Submission) -> bool {
    match super::census::WRITER.send(|| writer.send_message(WriterMsg::Submit(submission))) {
        Ok(()) => true,
        Err(ractor::MessagingErr::SendErr(WriterMsg::Submit(submission))) => {
            submission.answer(&CommandResult::Unavailable(retry(
                "the writer is restarting; retry",
            )));
            false
        }
        Err(_) => false,
    }
}

pub(crate) enum WriterMsg {
    Submit(Submission),
    /// Propose what has been gathered.
    Flush,
    Housekeep,
}

pub(crate) struct Writer;

pub(crate) struct WriterState {
    node: Arc<NodeHandle>,
    gate: Arc<Gate>,
    gathered: Vec<Submission>,
    flush_queued: bool,
    engine: EntryWriter,
    /// Wires learners (and drops removed nodes) while the writer lives.
    wiring: tokio::task::JoinHandle<()>,
}

impl Actor for Writer {
    type Msg = WriterMsg;
    type State = WriterState;
    type Arguments = (Arc<NodeHandle>, Arc<Gate>);

    async fn pre_start(
        &self,
        myself: ActorRef<WriterMsg>,
        (node, gate): Self::Arguments,
    ) -> Result<WriterState, ActorProcessingErr> {
        myself.send_after(GRANTS_EVERY, || WriterMsg::Housekeep);
        super::census::WRITER.emptied();
        let wiring = tokio::spawn(wire_learners(node.clone()));
        Ok(WriterState {
            node,
            gate,
            gathered: Vec::new(),
            flush_queued: false,
            engine: EntryWriter::default(),
            wiring,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<WriterMsg>,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        state.wiring.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WriterMsg>,
        message: WriterMsg,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WriterMsg::Submit(submission) => {
                super::census::WRITER.taken();
                state.gathered.push(submission);
                // The flush goes to the back of the mailbox: it takes every
                // submission that arrived before it.
                if !state.flush_queued {
                    state.flush_queued = true;
                    myself.send_message(WriterMsg::Flush)?;
                }
            }
            WriterMsg::Flush => {
                state.flush_queued = false;
                let sizes = state.gathered.iter().map(Submission::size);
                let take = entry_batch(sizes, entry_max());
                let submissions: Vec<Submission> = state.gathered.drain(..take).collect();
                if !state.gathered.is_empty() {
                    state.flush_queued = true;
                    myself.send_message(WriterMsg::Flush)?;
                }
                if !submissions.is_empty() {
                    flush(state, submissions).await;
                }
            }
            WriterMsg::Housekeep => {
                if state.node.replica.is_leader(state.node.home()) {
                    flush(state, Vec::new()).await;
                }
                // Armed again only now: a round slower than the period
                // never leaves a backlog of rounds that clients' entries
                // would wait behind.
                myself.send_after(GRANTS_EVERY, || WriterMsg::Housekeep);
            }
        }
        Ok(())
    }
}

fn retry(message: &str) -> NodeFailure {
    NodeFailure {
        code: "RETRY",
        message: message.to_owned(),
        retryable: true,
        redirect: String::new(),
    }
}

/// Proposes one entry: what of `submissions` applies, and the grants the
/// region owes.
async fn flush(state: &mut WriterState, submissions: Vec<Submission>) {
    #[cfg(feature = "chaos-bite")]
    answer_before_commit(&state.node, &submissions);
    let requests: Vec<TraceContext> = submissions
        .iter()
        .filter_map(|submission| submission.collector.trace())
        .collect();
    // A span only for a traced request: the grant rounds every 50 ms are
    // nobody's.
    let preparing = match requests.is_empty() {
        true => tracing::Span::none(),
        false => continued(tracing::info_span!("writer.barrier"), &requests),
    };
    if let Err(failure) = prepare(state).instrument(preparing).await {
        // `prepare` reset the gate: every decision of the epoch they were
        // made in is void, and their deciders drop what they hold.
        for submission in submissions {
            submission.drop_with(CommandResult::Unavailable(failure.clone()));
        }
        return;
    }
    let Some(Assembled {
        entry,
        admitted,
        traced,
    }) = assemble(state, submissions)
    else {
        return;
    };
    let node = state.node.clone();
    let home = node.home();
    // Each grant of a traced release continues that release's trace, in
    // its own region: one transfer that crosses regions is one trace.
    let grants = grant_spans(&node, &entry);
    let causes: Vec<TraceContext> = requests
        .into_iter()
        .chain(grants.iter().filter_map(TraceContext::of))
        .collect();
    let span = continued(
        tracing::info_span!(
            "writer.entry",
            ledger.node = node.replica.id(),
            ledger.region = node.replica.region().0,
            events = entry.len(),
            index = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        ),
        &causes,
    );
    let events = entry.len();
    let proposal = Proposal::Region {
        trace: TraceContext::of(&span).map(|context| {
            Box::new(EntryTrace {
                entry: context,
                events: traced,
            })
        }),
        events: entry,
    };
    crate::metrics::entry_proposed(events);
    let proposed = node
        .replica
        .propose(home, proposal)
        .instrument(span.clone())
        .await;
    drop(grants);
    match proposed {
        Ok(applied) => {
            span.record("index", applied.index);
            let result = CommandResult::Applied {
                fresh: true,
                index: applied.index,
            };
            for submission in admitted {
                submission.answer(&result);
            }
        }
        Err(error) => {
            span.record("otel.status_code", "ERROR");
            // The entry may still commit: nothing decided from now on may
            // count on it either way, and nothing is decided again until the
            // state holds everything the log held at this moment.
            state.gate.reset();
            let failure = match error {
                ProposeError::NotLeader { .. } => ProposalFailure::NotAppended,
                _ => ProposalFailure::Unknown,
            };
            let term = node.replica.progress(home).map(|progress| progress.term);
            state.engine.proposal_failed(failure, term);
            let result = CommandResult::Unavailable(node.failure(&error));
            for submission in admitted {
                submission.answer(&result);
            }
        }
    }
}

/// `span`, continuing the first of `causes` and linked to the others (an
/// entry serves many requests).
fn continued(span: tracing::Span, causes: &[TraceContext]) -> tracing::Span {
    if let Some((first, others)) = causes.split_first() {
        first.adopt(&span);
        for other in others {
            other.link(&span);
        }
    }
    span
}

/// A span for each grant in `entry` whose release was traced, child of the
/// span that released it in the other region; open until the entry is
/// proposed.
fn grant_spans(node: &NodeHandle, entry: &[Event]) -> Vec<tracing::Span> {
    let home = node.replica.region();
    entry
        .iter()
        .filter_map(|event| match &event.body {
            EventBody::Granted { from, seq, .. } => {
                let release = TraceKey::Release {
                    from: *from,
                    to: home,
                    seq: *seq,
                };
                let context = node.replica.ledger().take_trace(&release)?;
                let span = tracing::info_span!(
                    "grant",
                    ledger.node = node.replica.id(),
                    ledger.region = home.0,
                    from = from.0,
                    seq = *seq,
                );
                context.adopt(&span);
                Some(span)
            }
            _ => None,
        })
        .collect()
}

/// Chaos bite `answer-before-commit` (see `crate::bite`): answers the
/// commands of `submissions` as applied, at the index the next entry would
/// take, before the read barrier, admission and the proposal: an entry
/// that never commits loses them. Their real answer comes later and is
/// dropped, since a slot keeps its first.
#[cfg(feature = "chaos-bite")]
fn answer_before_commit(node: &NodeHandle, submissions: &[Submission]) {
    if !crate::bite::is(crate::bite::Bite::AnswerBeforeCommit) {
        return;
    }
    let last = node
        .replica
        .progress(node.home())
        .map_or(0, |progress| progress.last_log);
    let result = CommandResult::Applied {
        fresh: true,
        index: last + 1,
    };
    for submission in submissions {
        submission.fill(&result);
    }
}

/// Makes this node's state hold every entry of its region that may still
/// commit: an entry of unknown fate is settled by an empty entry behind it
/// (once that one is applied, so is everything before it in the log), then
/// a read barrier applies everything committed before now. When it fails
/// it resets the gate. In a new term the gate's fence
/// moves up to here, so a decision made against a state from before
/// another leader's entries never goes in.
async fn prepare(state: &mut WriterState) -> Result<(), NodeFailure> {
    let node = state.node.clone();
    let home = node.home();
    let term = |node: &NodeHandle| node.replica.progress(home).map(|progress| progress.term);
    if state.engine.must_settle(term(&node)) {
        if let Err(error) = node
            .replica
            .propose(home, Proposal::region(Vec::new()))
            .await
        {
            tracing::info!(%error, "an earlier entry is not settled yet");
            state.gate.reset();
            // Refused before it was appended: this node cannot lead now (a
            // leader cut from its quorum, say), and the submissions waiting
            // were not proposed: NOT_LEADER sends them to another node.
            if let ProposeError::NotLeader { .. } = error {
                return Err(node.failure(&error));
            }
            return Err(retry(
                "the outcome of an earlier entry is not known yet; retry",
            ));
        }
        state.engine.settled();
    }
    match tokio::time::timeout(BARRIER_WAIT_MAX, node.replica.barrier(home)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            state.gate.reset();
            return Err(node.failure(&error));
        }
        Err(_) => {
            state.gate.reset();
            return Err(retry(
                "the region's voters did not confirm this leader in time; retry",
            ));
        }
    }
    if state.engine.barrier_passed(term(&node)) {
        state.gate.close();
    }
    Ok(())
}

/// The next entry, the submissions it holds, and which of its events
/// traced requests decided (those that ask another region).
struct Assembled {
    entry: Vec<Event>,
    admitted: Vec<Submission>,
    traced: Vec<(u32, TraceContext)>,
}

/// Assembles the next entry from `submissions` and the grants the region
/// owes and answers what was refused; `None` when the entry would be empty.
fn assemble(state: &mut WriterState, mut submissions: Vec<Submission>) -> Option<Assembled> {
    let WriterState {
        node, gate, engine, ..
    } = state;
    let assembled = node.replica.ledger().read(|ledger| {
        let region = ledger.home_state();
        let view = gate.view_for_entry(region.applied().map_or(0, |position| position.index));
        // After the other regions' logs too: a grant is stamped after the
        // release it takes in, so a spend of it is after the credit spent.
        let received = ledger
            .regions()
            .iter()
            .filter(|other| other.id() != region.id())
            .map(|other| other.last_stamp());
        let stamp = node
            .clock()
            .stamp_after_received(region.last_stamp(), received);
        let candidates = submissions.iter_mut().map(Submission::candidate);
        engine.assemble(ledger, view, stamp, ENTRY_MAX.events, candidates)
    });
    for (source, held) in &assembled.held {
        match held {
            GrantHeld::Undecided(reject) => {
                tracing::warn!(%source, %reject, "a grant from this region cannot be taken in yet")
            }
            GrantHeld::Refused(refusal) => {
                tracing::warn!(%source, reason = %refusal.reason(), "grants not taken in")
            }
        }
    }
    let mut admitted = Vec::with_capacity(submissions.len());
    let mut entry = Vec::new();
    let mut traced = Vec::new();
    for (mut submission, verdict) in submissions.into_iter().zip(assembled.verdicts) {
        match verdict {
            Ok(()) => {
                if let Some(context) = submission.collector.trace() {
                    for (place, event) in submission.events.iter().enumerate() {
                        EntryTrace::note(&mut traced, entry.len() + place, event, context);
                    }
                }
                entry.append(&mut submission.events);
                admitted.push(submission);
            }
            Err(refusal) => submission.refuse(&refusal),
        }
    }
    entry.extend(assembled.grants);
    (!entry.is_empty()).then_some(Assembled {
        entry,
        admitted,
        traced,
    })
}

/// Wires learners where this node leads, one round after another.
async fn wire_learners(node: Arc<NodeHandle>) {
    loop {
        tokio::time::sleep(WIRE_EVERY).await;
        if let Err(error) = node.replica.wire_learners().await {
            tracing::warn!(%error, "wiring learners failed");
        }
    }
}
