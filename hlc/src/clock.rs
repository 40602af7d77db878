use std::sync::Arc;
use std::sync::Mutex;

/// A source of physical time in nanoseconds since the Unix epoch. It need not
/// be monotonic: the [`crate::Hlc`] keeps stamps increasing whatever it says.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> u64;
}

/// The machine's wall clock, read through `uhlc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        let since_epoch = uhlc::system_time_clock().to_duration();
        u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to, for tests and the simulation.
///
/// Clones share one clock, so a test can keep a handle while an [`crate::Hlc`]
/// owns another. A drift, in parts per million, stretches or shrinks every
/// later [`ManualClock::advance`], the way a fast or slow oscillator would.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    inner: Arc<Mutex<ManualState>>,
}

#[derive(Debug, Default)]
struct ManualState {
    now_ns: u64,
    drift_ppm: i64,
}

impl ManualClock {
    pub fn new(now_ns: u64) -> Self {
        let clock = Self::default();
        clock.set(now_ns);
        clock
    }

    /// Sets the time, forwards or backwards.
    pub fn set(&self, now_ns: u64) {
        self.state().now_ns = now_ns;
    }

    /// Moves the time forward by `ns` of true time, scaled by the drift.
    pub fn advance(&self, ns: u64) {
        let mut state = self.state();
        let scaled = i128::from(ns) * (1_000_000 + i128::from(state.drift_ppm)) / 1_000_000;
        let next = (i128::from(state.now_ns) + scaled.max(0)).min(i128::from(u64::MAX));
        state.now_ns = u64::try_from(next).unwrap_or(u64::MAX);
    }

    /// Jumps the time back by `ns`, as an NTP step or a bad RTC would.
    pub fn jump_back(&self, ns: u64) {
        let mut state = self.state();
        state.now_ns = state.now_ns.saturating_sub(ns);
    }

    /// From now on every `advance` runs `ppm` parts per million fast (positive)
    /// or slow (negative). Clamped so that time never runs backwards.
    pub fn set_drift_ppm(&self, ppm: i64) {
        self.state().drift_ppm = ppm.max(-1_000_000);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ManualState> {
        // Plain integers, each written in one assignment: poison is harmless.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.state().now_ns
    }
}
