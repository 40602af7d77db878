//! What enters an entry of a region's log: every candidate's events are
//! applied, with the entry's stamp, over the committed state plus the
//! candidates admitted before it, by the same [`apply_event`] the log's
//! apply uses. A candidate goes in whole only if every event of it applies;
//! otherwise nothing of it does. So an entry made of admitted candidates
//! always applies: no decision made against a view that missed another
//! (two deciders crediting one account, an id taken twice, a pull asked
//! twice, a hold voided and spent at once) can stop the region.

use crate::book::{ApplyError, Book, Changes, Overlay, apply_event};
use crate::event::{Event, EventBody};
use crate::region::RegionState;
use ledger_hlc::Stamp;

/// Memory an entry's admission reuses from entry to entry.
#[derive(Debug, Default)]
pub struct AdmissionScratch {
    entry: Changes,
    candidate: Changes,
}

/// An entry being assembled over a region's committed state.
pub struct Admission<'a> {
    entry: Overlay<'a, RegionState>,
    candidate: &'a mut Changes,
    stamp: Stamp,
    admitted: usize,
}

impl RegionState {
    /// Starts an entry stamped `stamp` over this (committed) state. The
    /// state must hold every entry of this region that may still commit
    /// before the new one: the caller proposes one entry at a time, and
    /// after an entry of unknown fate waits until it is settled.
    pub fn admission<'a>(
        &'a self,
        stamp: Stamp,
        scratch: &'a mut AdmissionScratch,
    ) -> Admission<'a> {
        let AdmissionScratch { entry, candidate } = scratch;
        Admission {
            entry: Overlay::new(self, entry, 0),
            candidate,
            stamp,
            admitted: 0,
        }
    }
}

impl Admission<'_> {
    /// The stamp every event of the entry carries.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// How many events the entry holds so far.
    pub fn admitted(&self) -> usize {
        self.admitted
    }

    /// Takes `events` into the entry if every one of them applies after
    /// what the entry holds: each is stamped with the entry's stamp and each
    /// release numbered next in its destination's sequence. On an error
    /// nothing of them is taken and the error says why.
    pub fn admit(&mut self, events: &mut [Event]) -> Result<(), ApplyError> {
        if let [event] = events {
            // One event needs no layer of its own: `apply_event` checks
            // everything before it changes anything.
            admit_into(&mut self.entry, self.stamp, event)?;
        } else {
            let mut candidate = Overlay::new(&self.entry, self.candidate, events.len());
            for event in events.iter_mut() {
                admit_into(&mut candidate, self.stamp, event)?;
            }
            self.entry.absorb(self.candidate);
        }
        self.admitted += events.len();
        Ok(())
    }
}

/// Stamps an event with the entry's stamp, numbers a release next in its
/// destination's sequence, and applies it.
fn admit_into<B: Book>(book: &mut B, stamp: Stamp, event: &mut Event) -> Result<(), ApplyError> {
    event.stamp = stamp;
    if let EventBody::Released { to, seq, .. } = &mut event.body {
        *seq = book.released_to(*to) + 1;
    }
    apply_event(book, event)
}
