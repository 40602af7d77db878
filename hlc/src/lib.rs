//! Hybrid logical clock stamps.
//!
//! A [`Stamp`] is physical time (nanoseconds since the Unix epoch), a logical
//! counter and the id of the node that made it; stamps are totally ordered in
//! that order. An [`Hlc`] hands out strictly increasing stamps even when its
//! wall clock stands still or jumps back, and merges the stamps it receives
//! ([`Hlc::observe`]), refusing one further ahead of its own clock than the drift
//! limit.
//!
//! The physical clock is a parameter ([`Clock`]): [`SystemClock`] reads the real
//! time through `uhlc`, [`ManualClock`] is set, advanced, jumped back and made to
//! drift by tests and by the simulation. `uhlc::HLC` itself takes its clock as a
//! plain `fn` pointer, which cannot carry one clock per simulated node, so the
//! merge rule lives here (see `docs/decisions/0002-hlc-over-uhlc.md`).

mod clock;
mod stamp;

pub use clock::{Clock, ManualClock, SystemClock};
pub use stamp::{NodeId, STAMP_WIRE_BYTES, Stamp, StampDecodeError};

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Default limit on how far a received stamp may be ahead of the local clock.
pub const DRIFT_LIMIT_DEFAULT: Duration = Duration::from_millis(500);

/// A received stamp was further ahead of the local clock than the drift limit.
/// The clock was left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "clock drift: stamp {remote} is {ahead_ns} ns ahead of the local clock ({local_ns} ns), \
     more than the limit of {limit_ns} ns"
)]
pub struct DriftError {
    pub remote: Stamp,
    pub local_ns: u64,
    pub ahead_ns: u64,
    pub limit_ns: u64,
}

impl DriftError {
    /// Stable code of this error, shared with the API's error codes.
    pub const CODE: &'static str = "CLOCK_DRIFT";
}

/// A hybrid logical clock for one node.
///
/// Safe to share between threads: the last stamp is kept behind a mutex held
/// only for the few instructions of the update.
#[derive(Debug)]
pub struct Hlc<C: Clock = SystemClock> {
    node: NodeId,
    clock: C,
    drift_limit_ns: u64,
    last: Mutex<(u64, u32)>,
    refused: AtomicU64,
}

impl<C: Clock> Hlc<C> {
    /// A clock for `node` with the default drift limit.
    pub fn new(node: NodeId, clock: C) -> Self {
        Self::with_drift_limit(node, clock, DRIFT_LIMIT_DEFAULT)
    }

    pub fn with_drift_limit(node: NodeId, clock: C, drift_limit: Duration) -> Self {
        Self {
            node,
            clock,
            drift_limit_ns: u64::try_from(drift_limit.as_nanos()).unwrap_or(u64::MAX),
            last: Mutex::new((0, 0)),
            refused: AtomicU64::new(0),
        }
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn drift_limit(&self) -> Duration {
        Duration::from_nanos(self.drift_limit_ns)
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// How many received stamps were refused for drift since this clock started.
    pub fn refused_count(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// A new stamp, strictly greater than every stamp this clock made or observed.
    pub fn stamp(&self) -> Stamp {
        let now = self.clock.now_ns();
        let mut last = self.lock();
        *last = if now > last.0 {
            (now, 0)
        } else {
            successor(*last)
        };
        Stamp::new(last.0, last.1, self.node)
    }

    /// A new stamp strictly greater than `floor` and than every stamp this
    /// clock made, whatever the drift limit: for extending a log this node
    /// writes, whose last stamp may come from a faster clock (a previous
    /// leader's). Waiting for the local clock to catch up would stop the log
    /// for the size of the skew. The clock itself does not take the floor
    /// in: a fast clock's stamps never drag this node's own (its decisions,
    /// its expiries) ahead.
    pub fn stamp_after(&self, floor: Stamp) -> Stamp {
        let own = self.stamp();
        let (physical, logical) = successor((floor.physical_ns(), floor.logical()));
        own.max(Stamp::new(physical, logical, self.node))
    }

    /// A new stamp for extending this node's log: after `own` (the log's
    /// last stamp, as [`Self::stamp_after`]) and after every `received`
    /// stamp within the drift limit of the local clock: the last stamps of
    /// the other regions' logs this node applied, so that what the entry
    /// takes in from them (a grant of a release) is stamped after it. A
    /// received stamp further ahead is left out: a runaway clock drags this
    /// log no further than the limit.
    pub fn stamp_after_received(
        &self,
        own: Stamp,
        received: impl IntoIterator<Item = Stamp>,
    ) -> Stamp {
        let horizon = self.clock.now_ns().saturating_add(self.drift_limit_ns);
        let floor = received
            .into_iter()
            .filter(|stamp| stamp.physical_ns() <= horizon)
            .fold(own, Stamp::max);
        self.stamp_after(floor)
    }

    /// The greatest stamp made or observed so far, without making a new one.
    pub fn last(&self) -> Stamp {
        let last = *self.lock();
        Stamp::new(last.0, last.1, self.node)
    }

    /// Merges a received stamp: every later [`Hlc::stamp`] is greater than it.
    ///
    /// A stamp further ahead of the local clock than the drift limit is refused
    /// and leaves the clock unchanged, so one node with a runaway clock cannot
    /// drag every other node's stamps into the future.
    pub fn observe(&self, remote: Stamp) -> Result<(), DriftError> {
        let local_ns = self.clock.now_ns();
        let ahead_ns = remote.physical_ns().saturating_sub(local_ns);
        if ahead_ns > self.drift_limit_ns {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(DriftError {
                remote,
                local_ns,
                ahead_ns,
                limit_ns: self.drift_limit_ns,
            });
        }
        let mut last = self.lock();
        let theirs = (remote.physical_ns(), remote.logical());
        if theirs > *last {
            *last = theirs;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u32)> {
        // The guarded value is two integers updated in one assignment: a
        // panic elsewhere cannot leave it half-written, so poison is harmless.
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The next (physical, logical) pair after `last`: the counter moves on, and
/// when it is exhausted the physical part moves one nanosecond ahead.
fn successor((physical, logical): (u64, u32)) -> (u64, u32) {
    match logical.checked_add(1) {
        Some(next) => (physical, next),
        None => (physical.saturating_add(1), 0),
    }
}

#[cfg(test)]
mod tests;
