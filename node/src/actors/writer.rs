//! The writer: the only proposer of its region's log on the leader. It
//! gathers the events that actors decided while the previous entry was
//! being committed, stamps them, and proposes them as one entry (one fsync
//! per group commit). Between entries it takes in releases granted to the
//! region and wires learners.

use super::account::AccountMsg;
use super::{Collector, Gate};
use crate::runtime::{CommandResult, NodeFailure, NodeHandle};
use ledger_replication::Proposal;
use ledger_reservations::{Event, EventBody, RegionId, TransferId};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Events in one entry, at most.
const ENTRY_EVENTS_MAX: usize = 8_190;
/// How often the writer grants releases and wires learners.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(200);

/// Events decided by an actor, for the log.
pub(crate) struct Submission {
    pub events: Vec<Event>,
    /// The commands these events answer: they are answered with the entry's
    /// index once it is committed.
    pub slots: Vec<usize>,
    pub collector: Arc<Collector>,
    /// The gate's epoch when the decision was made.
    pub epoch: u64,
    /// The index of the region's log the deciding state held.
    pub base: u64,
    /// The account actor that decided it, and its number for the
    /// submission: told when the writer drops it.
    pub from: Option<(ActorRef<AccountMsg>, u64)>,
    /// Told whether it was committed, once it is answered.
    pub done: Option<oneshot::Sender<bool>>,
}

impl Submission {
    fn answer(self, result: &CommandResult) {
        let committed = matches!(result, CommandResult::Applied { .. });
        self.collector
            .fill(self.slots.iter().map(|slot| (*slot, result.clone())));
        if let Some(done) = self.done {
            let _ = done.send(committed);
        }
    }

    /// Not proposed: its decider must drop it from what it holds in flight.
    fn drop_with(self, failure: NodeFailure) {
        if let Some((actor, seq)) = &self.from {
            let _ = actor.send_message(AccountMsg::Dropped(*seq));
        }
        self.answer(&CommandResult::Unavailable(failure));
    }
}

/// Hands a submission to the writer; if the writer is gone (restarting),
/// answers it as unavailable and returns false.
pub(crate) fn submit(writer: &ActorRef<WriterMsg>, submission: Submission) -> bool {
    match writer.send_message(WriterMsg::Submit(submission)) {
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
    /// The Raft term of the last entry: a new term opens the gate anew.
    term: Option<u64>,
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
        myself.send_interval(HOUSEKEEPING_EVERY, || WriterMsg::Housekeep);
        Ok(WriterState {
            node,
            gate,
            gathered: Vec::new(),
            flush_queued: false,
            term: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WriterMsg>,
        message: WriterMsg,
        state: &mut WriterState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WriterMsg::Submit(submission) => {
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
                let mut events = 0;
                let take = state
                    .gathered
                    .iter()
                    .take_while(|submission| {
                        events += submission.events.len();
                        events <= ENTRY_EVENTS_MAX
                    })
                    .count()
                    .max(1)
                    .min(state.gathered.len());
                let submissions: Vec<Submission> = state.gathered.drain(..take).collect();
                if !state.gathered.is_empty() {
                    state.flush_queued = true;
                    myself.send_message(WriterMsg::Flush)?;
                }
                flush(state, submissions).await;
            }
            WriterMsg::Housekeep => housekeep(&state.node).await,
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

async fn flush(state: &mut WriterState, submissions: Vec<Submission>) {
    if submissions.is_empty() {
        return;
    }
    let node = state.node.clone();
    let gate = &state.gate;
    let home = node.home();
    if let Err(error) = node.replica.barrier(home).await {
        gate.reset();
        let failure = node.failure(&error);
        for submission in submissions {
            submission.drop_with(failure.clone());
        }
        return;
    }
    // After the barrier this node's state holds every entry a previous
    // leader committed, and every entry of its own that will ever commit.
    // In a new term, decisions made against a state from before it may
    // miss what another leader committed meanwhile: the fence moves up to
    // here. (Nothing of this writer's is left undecided across the change:
    // every earlier entry was answered committed, or failed and reset the
    // gate, and every submission not proposed was dropped.)
    let term = node.replica.progress(home).map(|progress| progress.term);
    let new_term = term != state.term;
    state.term = term;
    let mut accepted = Vec::with_capacity(submissions.len());
    let mut rejected = Vec::new();
    let mut ids: FxHashSet<TransferId> = FxHashSet::default();
    let mut next_release: BTreeMap<RegionId, u64> = BTreeMap::new();
    let last = node.replica.ledger().read(|ledger| {
        let region = ledger.home_state();
        if new_term || gate.is_closed() {
            gate.open_at(region.applied().map_or(0, |position| position.index));
        }
        for submission in submissions {
            let current = gate.admits(submission.epoch, submission.base);
            // Two actors may have taken the same new id for different
            // commands (a client reusing it): only one gets in.
            let fresh = submission.events.iter().all(|event| match &event.body {
                EventBody::Transfer(transfer) => {
                    region.transfer(transfer.id).is_none() && !ids.contains(&transfer.id)
                }
                _ => true,
            });
            if !(current && fresh) {
                rejected.push((submission, current));
                continue;
            }
            for event in &submission.events {
                match &event.body {
                    EventBody::Transfer(transfer) => {
                        ids.insert(transfer.id);
                    }
                    EventBody::Released { to, .. } => {
                        next_release
                            .entry(*to)
                            .or_insert_with(|| region.last_release_to(*to) + 1);
                    }
                    _ => {}
                }
            }
            accepted.push(submission);
        }
        region.last_stamp()
    });
    for (submission, current) in rejected {
        submission.drop_with(retry(if current {
            "another command took the same transfer id; retry to learn which"
        } else {
            "decided against a view the leader has since moved past; retry"
        }));
    }
    if accepted.is_empty() {
        return;
    }
    if let Err(error) = node.clock().observe(last) {
        tracing::warn!(%error, "the region's last stamp is ahead of this node's clock");
    }
    // One stamp for the entry; releases numbered in log order (several
    // coordinators may have released to one region at once).
    let stamp = node.clock().stamp();
    let mut entry = Vec::with_capacity(accepted.iter().map(|s| s.events.len()).sum());
    for submission in &mut accepted {
        for mut event in submission.events.drain(..) {
            event.stamp = stamp;
            if let EventBody::Released { to, seq, .. } = &mut event.body
                && let Some(next) = next_release.get_mut(to)
            {
                *seq = *next;
                *next += 1;
            }
            entry.push(event);
        }
    }
    match node.replica.propose(home, Proposal::Region(entry)).await {
        Ok(applied) => {
            let result = CommandResult::Applied {
                fresh: true,
                index: applied.index,
            };
            for submission in accepted {
                submission.answer(&result);
            }
        }
        Err(error) => {
            // The entry may still commit: nothing decided after it may go
            // in until a barrier shows whether it did.
            gate.reset();
            let result = CommandResult::Unavailable(node.failure(&error));
            for submission in accepted {
                submission.answer(&result);
            }
        }
    }
}

/// Takes in releases granted to this region and wires learners, where this
/// node leads. Runs between entries: the writer stays the only proposer.
async fn housekeep(node: &NodeHandle) {
    if let Err(error) = node.replica.wire_learners().await {
        tracing::warn!(%error, "wiring learners failed");
    }
    if !node.replica.is_leader(node.home()) {
        return;
    }
    if let Err(error) = node.replica.grant_releases(node.clock()).await {
        tracing::debug!(%error, "grant round not done");
    }
}
