//! The actors of a region's leader (DESIGN section 6), on ractor:
//!
//! ```text
//! NodeSupervisor ── Writer          the only proposer of the region's log
//!                ├─ Router ── AccountActor (one per active account)
//!                └─ SagaSupervisor ── WithdrawalSaga (one per open withdrawal)
//! ```
//!
//! An account actor decides the commands that take from its account's pool
//! against the committed state plus its own events in flight, and hands the
//! events to the writer; it never waits for a commit, so one account has
//! many transfers in flight. The writer gathers what every actor hands it
//! while the previous entry commits, stamps it, and proposes it as one entry.
//! What spans several accounts (a linked chain over two payers, a release)
//! is decided by a coordinator that first parks the accounts' actors.
//!
//! Safety rests on one rule: only an account's actor (or a coordinator that
//! parked it) takes from its pool, and the writer accepts a decision only if
//! it was made against a state that holds everything committed before the
//! current [`Gate`] opened (after a failed proposal, a crashed actor or a
//! change of leader).

mod account;
pub mod census;
mod supervisor;
mod writer;

pub(crate) use account::RouterMsg;
pub(crate) use ledger_engine::Gate;
pub use supervisor::Actors;
pub(crate) use supervisor::start;

use crate::runtime::CommandResult;
use ledger_replication::TraceContext;
use ledger_reservations::{Item, Shortfall};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

/// The answers of one request, filled in by whichever actors decide and
/// commit its commands. Dropping it unanswered drops the reply, which the
/// caller reads as "the node is stopping".
pub(crate) struct Collector {
    inner: Mutex<Filling>,
    /// The span of the request (or saga step) that made it: the deciders'
    /// and the writer's spans continue its trace.
    span: tracing::Span,
    /// That span's context, when its trace is recorded.
    trace: Option<TraceContext>,
}

/// What a request's deciders answered, and which of its refused commands
/// a pull saga may still carry out.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Answers {
    pub results: Vec<CommandResult>,
    pub pulls: Vec<PullAsk>,
}

/// A command refused for want of funds in this region that the account's
/// global balance covers: `results[slot]` until a pull says otherwise.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PullAsk {
    pub slot: usize,
    pub item: Item,
    pub shortfall: Box<Shortfall>,
}

struct Filling {
    /// Whether the request came from a client (the API) rather than the
    /// node's own sagas: some steps are the sagas' alone.
    client: bool,
    results: Vec<Option<CommandResult>>,
    pulls: Vec<PullAsk>,
    missing: usize,
    reply: Option<oneshot::Sender<Answers>>,
    /// The request's share of the node's bound on commands in flight.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Collector {
    pub(crate) fn new(
        count: usize,
        reply: oneshot::Sender<Answers>,
        permit: Option<OwnedSemaphorePermit>,
        client: bool,
    ) -> Arc<Self> {
        let span = tracing::Span::current();
        let trace = TraceContext::of(&span);
        let collector = Arc::new(Self {
            span,
            trace,
            inner: Mutex::new(Filling {
                client,
                results: vec![None; count],
                pulls: Vec::new(),
                missing: count,
                reply: Some(reply),
                _permit: permit,
            }),
        });
        collector.fill(std::iter::empty());
        collector
    }

    /// The span of the request that made it.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The request's trace, when it is recorded.
    pub(crate) fn trace(&self) -> Option<TraceContext> {
        self.trace
    }

    /// Whether the request came from a client rather than a saga.
    pub(crate) fn is_client(&self) -> bool {
        self.lock().client
    }

    /// Marks a refused command for a pull saga; call it before filling
    /// the command's slot.
    pub(crate) fn ask_pull(&self, ask: PullAsk) {
        self.lock().pulls.push(ask);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Filling> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records answers by slot; the last one sends them all. A slot
    /// answered twice keeps its first answer.
    pub(crate) fn fill(&self, answers: impl IntoIterator<Item = (usize, CommandResult)>) {
        let mut filling = self.lock();
        for (slot, result) in answers {
            if let Some(place @ None) = filling.results.get_mut(slot) {
                *place = Some(result);
                filling.missing -= 1;
            }
        }
        if filling.missing == 0
            && let Some(reply) = filling.reply.take()
        {
            let results = std::mem::take(&mut filling.results)
                .into_iter()
                .flatten()
                .collect();
            let pulls = std::mem::take(&mut filling.pulls);
            let _ = reply.send(Answers { results, pulls });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::CommandResult;

    fn applied(index: u64) -> CommandResult {
        CommandResult::Applied { fresh: true, index }
    }

    #[test]
    fn a_collector_answers_once_every_slot_is_filled() {
        let (reply, mut answer) = oneshot::channel();
        let collector = Collector::new(3, reply, None, true);
        collector.fill([(2, applied(7)), (0, applied(5))]);
        assert!(answer.try_recv().is_err(), "slot 1 is still open");
        collector.fill([(0, applied(99)), (1, applied(6))]);
        assert_eq!(
            answer.try_recv().expect("answered").results,
            vec![applied(5), applied(6), applied(7)],
            "the first answer of a slot stands"
        );
    }

    #[test]
    fn an_empty_request_is_answered_at_once_and_a_dropped_one_fails() {
        let (reply, mut answer) = oneshot::channel();
        let _collector = Collector::new(0, reply, None, true);
        assert_eq!(answer.try_recv().expect("answered").results, vec![]);
        let (reply, answer) = oneshot::channel::<Answers>();
        drop(Collector::new(1, reply, None, true));
        assert!(answer.blocking_recv().is_err());
    }
}
