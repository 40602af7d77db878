//! Trace context in the log: an entry names the span that proposed it and,
//! for each event another region acts on (a release, a pull's ask) that a
//! traced request decided, that request's span, so that a node applying
//! the entry (in any region) continues the same trace, a region taking in
//! another's release continues the trace of the request that released, and
//! a region answering another's pull continues the trace that asked.
//!
//! Only sampled contexts are carried: with tracing off (no OpenTelemetry
//! layer) every span's context is invalid, nothing is recorded and the
//! entry is encoded exactly as before.

use ledger_reservations::{Event, EventBody, RegionId, TransferId};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A W3C trace context: the trace, the span within it, and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceContext {
    /// The context of `span`, if it is recorded in a sampled trace.
    pub fn of(span: &tracing::Span) -> Option<Self> {
        if span.is_none() {
            return None;
        }
        let context = span.context();
        let span_context = context.span().span_context().clone();
        (span_context.is_valid() && span_context.is_sampled()).then(|| Self {
            trace_id: span_context.trace_id().to_bytes(),
            span_id: span_context.span_id().to_bytes(),
            flags: span_context.trace_flags().to_u8(),
        })
    }

    /// The context of the current span, if it is sampled.
    pub fn current() -> Option<Self> {
        Self::of(&tracing::Span::current())
    }

    /// As OpenTelemetry's, from another process (or another span's past).
    pub fn span_context(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::NONE,
        )
    }

    /// Makes `span` (created, not yet entered) a child of this context.
    pub fn adopt(&self, span: &tracing::Span) {
        let parent = opentelemetry::Context::new().with_remote_span_context(self.span_context());
        // Refused only when the span has already started its trace: it
        // then keeps the parent it has.
        let _ = span.set_parent(parent);
    }

    /// Links `span` to this context (a batch that serves many traces).
    pub fn link(&self, span: &tracing::Span) {
        span.add_link(self.span_context());
    }
}

/// The trace context an entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryTrace {
    /// The span that proposed the entry: applying it continues this one.
    pub entry: TraceContext,
    /// Each traced event's request, by the event's place in the entry.
    pub events: Vec<(u32, TraceContext)>,
}

/// The context of the span that proposed an entry, if it was traced.
pub(crate) fn entry_trace(
    payload: &openraft::EntryPayload<crate::types::Proposal, u64, openraft::BasicNode>,
) -> Option<TraceContext> {
    match payload {
        openraft::EntryPayload::Normal(crate::types::Proposal::Region {
            trace: Some(trace),
            ..
        }) => Some(trace.entry),
        _ => None,
    }
}

impl EntryTrace {
    /// Notes that the event at `offset` was decided in `context`, when it
    /// is one another region acts on (a release, a pull's ask): only those
    /// are carried, so that a traced call of 8,190 transfers adds nothing.
    pub fn note(
        events: &mut Vec<(u32, TraceContext)>,
        offset: usize,
        event: &Event,
        context: TraceContext,
    ) {
        let acted_on = TraceKey::of(RegionId(0), event).is_some();
        if let (true, Ok(offset)) = (acted_on, u32::try_from(offset)) {
            events.push((offset, context));
        }
    }
}

/// An event of one region that another acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceKey {
    /// The `seq`-th release of region `from` to region `to`: `to` grants it.
    Release {
        from: RegionId,
        to: RegionId,
        seq: u64,
    },
    /// Pull `id` that region `asker` asked: the region asked answers it.
    Pull { asker: RegionId, id: TransferId },
}

impl TraceKey {
    /// The key of `event`, in the log of `region`, if another region acts
    /// on it.
    fn of(region: RegionId, event: &Event) -> Option<Self> {
        match &event.body {
            EventBody::Released { to, seq, .. } => Some(TraceKey::Release {
                from: region,
                to: *to,
                seq: *seq,
            }),
            EventBody::PullRequested { id, .. } => Some(TraceKey::Pull {
                asker: region,
                id: *id,
            }),
            _ => None,
        }
    }
}

impl TraceKey {
    /// The key of `event`, in the log of `region`, if region `home` acts
    /// on it: a release to it, a pull asked of it.
    fn acted_on_by(home: RegionId, region: RegionId, event: &Event) -> Option<Self> {
        let ours = match &event.body {
            EventBody::Released { to, .. } => *to == home,
            EventBody::PullRequested { from, .. } => *from == home,
            _ => false,
        };
        ours.then(|| Self::of(region, event)).flatten()
    }
}

/// Traces of releases and pulls applied here, until the region that acts
/// on them takes them. Bounded: past [`TraceBook::CAPACITY`] the oldest is
/// forgotten (what acts on it then starts a trace of its own).
#[derive(Debug, Default)]
pub struct TraceBook {
    contexts: HashMap<TraceKey, TraceContext>,
    order: VecDeque<TraceKey>,
}

impl TraceBook {
    pub const CAPACITY: usize = 4_096;

    /// Records the traced releases and pulls of an entry of `region`'s log
    /// that region `home` (this node's) acts on.
    pub fn record(
        &mut self,
        home: RegionId,
        region: RegionId,
        events: &[Event],
        trace: &EntryTrace,
    ) {
        for (offset, context) in &trace.events {
            let Some(event) = usize::try_from(*offset)
                .ok()
                .and_then(|offset| events.get(offset))
            else {
                continue;
            };
            if let Some(key) = TraceKey::acted_on_by(home, region, event)
                && self.contexts.insert(key, *context).is_none()
            {
                self.order.push_back(key);
            }
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.contexts.remove(&oldest);
            }
        }
    }

    /// The trace of `key`, kept (until the book forgets it as the oldest).
    pub fn get(&self, key: &TraceKey) -> Option<TraceContext> {
        self.contexts.get(key).copied()
    }

    /// The trace of `key`, forgotten once taken.
    pub fn take(&mut self, key: &TraceKey) -> Option<TraceContext> {
        let context = self.contexts.remove(key)?;
        self.order.retain(|kept| kept != key);
        Some(context)
    }

    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_hlc::{NodeId, Stamp};
    use ledger_reservations::{AccountId, AccountKind, CurrencyCode, Release, TransferId};

    fn context(n: u8) -> TraceContext {
        TraceContext {
            trace_id: [n; 16],
            span_id: [n; 8],
            flags: 1,
        }
    }

    /// The `seq`-th release of region 1 to region 2.
    fn release(seq: u64) -> Event {
        Event {
            stamp: Stamp::new(1, 0, NodeId(1)),
            body: EventBody::Released {
                release: Release {
                    account: AccountId(1),
                    currency: CurrencyCode::new("USD").expect("code"),
                    kind: AccountKind::User,
                    units: 1,
                },
                to: RegionId(2),
                seq,
                pull: None,
            },
        }
    }

    fn key(seq: u64) -> TraceKey {
        TraceKey::Release {
            from: RegionId(1),
            to: RegionId(2),
            seq,
        }
    }

    /// Pull `id` of region 2, asked of region 1.
    fn pull(id: u128) -> Event {
        Event {
            stamp: Stamp::new(1, 0, NodeId(1)),
            body: EventBody::PullRequested {
                id: TransferId(id),
                account: AccountId(1),
                currency: CurrencyCode::new("USD").expect("code"),
                kind: AccountKind::User,
                units: 1,
                from: RegionId(1),
            },
        }
    }

    #[test]
    fn a_book_keeps_what_was_traced_until_taken_and_stays_bounded() {
        let mut book = TraceBook::default();
        let events = vec![release(1), release(2)];
        let trace = EntryTrace {
            entry: context(9),
            // The second event only; an offset past the entry is ignored.
            events: vec![(1, context(2)), (7, context(7))],
        };
        book.record(RegionId(2), RegionId(1), &events, &trace);
        assert_eq!(book.take(&key(1)), None);
        assert_eq!(book.take(&key(2)), Some(context(2)));
        assert_eq!(book.take(&key(2)), None);

        // A pull's ask is noted and kept under its asker and id; an event
        // no other region acts on is not noted.
        let mut noted = Vec::new();
        let asked = pull(5);
        EntryTrace::note(&mut noted, 0, &asked, context(5));
        let other = Event {
            stamp: asked.stamp,
            body: EventBody::PendingExpired {
                pending_id: TransferId(4),
            },
        };
        EntryTrace::note(&mut noted, 1, &other, context(6));
        assert_eq!(noted, vec![(0, context(5))]);
        let trace = EntryTrace {
            entry: context(9),
            events: noted,
        };
        // Region 3 acts on none of it: nothing is kept there.
        let mut elsewhere = TraceBook::default();
        elsewhere.record(
            RegionId(3),
            RegionId(2),
            &[asked.clone(), other.clone()],
            &trace,
        );
        assert!(elsewhere.is_empty());
        book.record(RegionId(1), RegionId(2), &[asked, other], &trace);
        let asked = TraceKey::Pull {
            asker: RegionId(2),
            id: TransferId(5),
        };
        assert_eq!(book.get(&asked), Some(context(5)));
        assert_eq!(book.get(&asked), Some(context(5)), "kept when read");
        assert_eq!(book.take(&asked), Some(context(5)));
        assert_eq!(book.get(&asked), None);

        let many: Vec<Event> = (0..TraceBook::CAPACITY as u64 + 10).map(release).collect();
        let trace = EntryTrace {
            entry: context(9),
            events: (0..many.len() as u32).map(|i| (i, context(3))).collect(),
        };
        book.record(RegionId(2), RegionId(1), &many, &trace);
        assert_eq!(book.len(), TraceBook::CAPACITY);
        // The oldest went first.
        assert_eq!(book.take(&key(0)), None);
        assert!(book.take(&key(many.len() as u64 - 1)).is_some());
    }

    #[test]
    fn an_unrecorded_span_has_no_context() {
        assert_eq!(TraceContext::of(&tracing::Span::none()), None);
        assert_eq!(TraceContext::current(), None);
    }
}
