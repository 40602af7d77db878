//! The gate: when decisions may go into the log. Shared by the writer and
//! every decider of a region's leader, so its state is two atomics.

use crate::GateView;
use std::sync::atomic::{AtomicU64, Ordering};

/// When decisions may go into the log.
///
/// A decision records the gate's epoch and the index of the region's log
/// its state held. The writer admits it only if the epoch is current and the
/// index is at or past the fence: the applied index after the writer's read
/// barrier that followed the last reset ([`crate::admit`]). [`Gate::reset`] (a failed proposal,
/// a crashed actor, a change of leader) bumps the epoch, so actors drop what
/// they hold in flight, and closes the fence until the writer has a state
/// that holds every earlier entry that will ever commit.
#[derive(Debug)]
pub struct Gate {
    epoch: AtomicU64,
    fence: AtomicU64,
}

const CLOSED: u64 = u64::MAX;

impl Default for Gate {
    fn default() -> Self {
        Self {
            epoch: AtomicU64::new(1),
            fence: AtomicU64::new(CLOSED),
        }
    }
}

impl Gate {
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Everything decided before now must be decided again.
    pub fn reset(&self) {
        self.fence.store(CLOSED, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Closes the fence without voiding current decisions: in a new term
    /// it reopens at the state the barrier left.
    pub fn close(&self) {
        self.fence.store(CLOSED, Ordering::SeqCst);
    }

    /// The gate as the writer's next entry reads it: closed, it opens at
    /// `applied`, the state the writer's read barrier left.
    pub fn view_for_entry(&self, applied: u64) -> GateView {
        // Only if still closed: one step, whatever a reset does meanwhile.
        let _ = self
            .fence
            .compare_exchange(CLOSED, applied, Ordering::SeqCst, Ordering::SeqCst);
        self.view()
    }

    /// The gate as admission reads it.
    pub fn view(&self) -> GateView {
        GateView {
            epoch: self.epoch(),
            fence: self.fence.load(Ordering::SeqCst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_voids_the_epoch_and_closes_the_fence() {
        let gate = Gate::default();
        assert_eq!(gate.view().fence, CLOSED, "closed until a barrier");
        let before = gate.view_for_entry(10);
        assert_eq!(before.fence, 10);
        assert_eq!(
            gate.view_for_entry(11),
            before,
            "open: it stays where it opened"
        );
        gate.reset();
        assert_eq!(gate.view().fence, CLOSED);
        assert_eq!(
            gate.view_for_entry(12),
            GateView {
                epoch: before.epoch + 1,
                fence: 12
            }
        );
        gate.close();
        assert_eq!(gate.view().fence, CLOSED);
        assert_eq!(gate.epoch(), before.epoch + 1, "closing keeps the epoch");
    }
}
