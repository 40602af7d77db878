//! One region's state, built from that region's log alone (invariant 2).

use crate::account::AccountKind;
use crate::book::{
    ApplyError, Book, Flow, NO_RECORD, PendingState, Pool, Pull, ReleaseLog, TransferRecord,
    apply_event,
};
use crate::event::{Event, EventBody, Release, Transfer, TransferKind};
use crate::ids::{AccountId, Position, RegionId, TransferId};
use crate::money::{BALANCE_UNITS_MAX, CurrencyCode, REGION_CREDIT_UNITS_MAX};
use ledger_hlc::Stamp;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};

/// The state of one region: its own, on the region's nodes, or a replica, on
/// every other node. Two replicas that applied the same log are equal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegionState {
    id: RegionId,
    pools: FxHashMap<AccountId, Pool>,
    /// Transfer records in log order, found through `transfer_index`: a
    /// growing index then moves small entries, not whole records.
    transfers: Vec<TransferRecord>,
    transfer_index: FxHashMap<TransferId, usize>,
    released_to: BTreeMap<RegionId, u64>,
    granted_from: BTreeMap<RegionId, u64>,
    last_stamp: Stamp,
    applied: Option<Position>,
    /// Open pending transfers by deadline, for the timeout sweep.
    open_pendings: BTreeSet<(u64, TransferId)>,
    /// Releases this region made, by (destination, sequence).
    releases: ReleaseLog,
    /// Releases of other regions this region took in, by (source, sequence).
    grants: ReleaseLog,
    flows: FxHashMap<AccountId, Flow>,
    /// Pulls this region asked for, and the pulls of others it answered.
    pulls: BTreeMap<TransferId, Pull>,
    answered: BTreeSet<(RegionId, TransferId)>,
    /// When each expired pending transfer expired.
    expired_at: FxHashMap<TransferId, Stamp>,
    /// For each transfer record, the offset of the previous record of its
    /// debit account and of its credit account ([`NO_RECORD`]: none): with
    /// `Pool::last_record`, a chain per account through its records.
    links: Vec<(u32, u32)>,
}

impl RegionState {
    pub fn new(id: RegionId) -> Self {
        Self {
            id,
            pools: FxHashMap::default(),
            transfers: Vec::new(),
            transfer_index: FxHashMap::default(),
            released_to: BTreeMap::new(),
            granted_from: BTreeMap::new(),
            last_stamp: Stamp::ZERO,
            applied: None,
            open_pendings: BTreeSet::new(),
            releases: BTreeMap::new(),
            grants: BTreeMap::new(),
            flows: FxHashMap::default(),
            pulls: BTreeMap::new(),
            answered: BTreeSet::new(),
            expired_at: FxHashMap::default(),
            links: Vec::new(),
        }
    }

    pub fn id(&self) -> RegionId {
        self.id
    }

    /// The position of the last event applied, if any.
    pub fn applied(&self) -> Option<Position> {
        self.applied
    }

    pub fn last_stamp(&self) -> Stamp {
        self.last_stamp
    }

    pub fn pool(&self, account: AccountId) -> Option<&Pool> {
        self.pools.get(&account)
    }

    pub fn pools(&self) -> impl Iterator<Item = (&AccountId, &Pool)> {
        self.pools.iter()
    }

    pub fn transfer(&self, id: TransferId) -> Option<&TransferRecord> {
        Book::transfer(self, id)
    }

    /// Every transfer this region decided, in the order of its log.
    pub fn transfers(&self) -> &[TransferRecord] {
        &self.transfers
    }

    /// Whether this state already holds the effect of `event`, decided for
    /// this region and perhaps still in flight: a transfer whose id is known,
    /// or the expiry of a pending transfer no longer open. Releases and
    /// grants are never held in flight; for them it answers false.
    pub fn holds(&self, event: &Event) -> bool {
        match &event.body {
            EventBody::Transfer(transfer) => self.transfer(transfer.id).is_some(),
            EventBody::PendingExpired { pending_id } => self
                .transfer(*pending_id)
                .is_some_and(|record| !matches!(record.pending, Some(PendingState::Open { .. }))),
            EventBody::PullRequested { id, .. } => self.pulls.contains_key(id),
            EventBody::Released { .. } | EventBody::Granted { .. } => false,
        }
    }

    /// The account whose pool an event of this region takes from: the one
    /// whose decisions must see it. `None` for a grant (it only adds) or an
    /// expiry of a pending transfer this state does not know.
    pub fn debit_of(&self, event: &Event) -> Option<AccountId> {
        match &event.body {
            EventBody::Transfer(transfer) => Some(transfer.debit),
            EventBody::PendingExpired { pending_id } => self
                .transfer(*pending_id)
                .map(|record| record.transfer.debit),
            EventBody::Released { release, .. } => Some(release.account),
            EventBody::Granted { .. } | EventBody::PullRequested { .. } => None,
        }
    }

    /// A pull this region asked for.
    pub fn pull(&self, id: TransferId) -> Option<&Pull> {
        self.pulls.get(&id)
    }

    /// The pulls this region asked for, by id.
    pub fn pulls(&self) -> impl Iterator<Item = (&TransferId, &Pull)> {
        self.pulls.iter()
    }

    /// Whether this region answered `asker`'s pull `id`.
    pub fn answered(&self, asker: RegionId, id: TransferId) -> bool {
        self.answered.contains(&(asker, id))
    }

    pub fn transfer_count(&self) -> usize {
        self.transfers.len()
    }

    pub fn flow(&self, account: AccountId) -> Flow {
        self.flows.get(&account).copied().unwrap_or_default()
    }

    /// Releases this region made to `to`, in order.
    pub fn releases_to(&self, to: RegionId) -> impl Iterator<Item = (u64, &Release)> {
        self.releases
            .range((to, 0)..=(to, u64::MAX))
            .map(|((_, seq), release)| (*seq, release))
    }

    pub fn release(&self, to: RegionId, seq: u64) -> Option<&Release> {
        self.releases.get(&(to, seq))
    }

    /// The sequence number of this region's last release to `to` (0: none).
    pub fn last_release_to(&self, to: RegionId) -> u64 {
        self.released_to.get(&to).copied().unwrap_or(0)
    }

    /// The highest sequence number of the releases from `from` taken in here.
    pub fn granted_from(&self, from: RegionId) -> u64 {
        Book::granted_from(self, from)
    }

    pub fn grant(&self, from: RegionId, seq: u64) -> Option<&Release> {
        self.grants.get(&(from, seq))
    }

    /// The transfer records that move `account`'s money, with their offsets
    /// in this region's log of transfers, in log order.
    pub fn records_of(&self, account: AccountId) -> impl Iterator<Item = (usize, &TransferRecord)> {
        self.records_of_since(account, 0)
    }

    /// [`Self::records_of`] from offset `from` on: the chain is walked back
    /// from the newest record only as far as `from`, so a reader that
    /// follows an account's new records pays for those alone.
    pub fn records_of_since(
        &self,
        account: AccountId,
        from: usize,
    ) -> impl Iterator<Item = (usize, &TransferRecord)> {
        let mut walk = RecordsSince::new(account, from);
        let offsets = loop {
            if let Some(offsets) = walk.step(self, usize::MAX) {
                break offsets;
            }
        };
        offsets
            .into_iter()
            .filter_map(|offset| Some((offset, self.transfers.get(offset)?)))
    }

    /// The offset of `account`'s newest transfer record, if it has one.
    pub fn last_record_of(&self, account: AccountId) -> Option<usize> {
        self.pools
            .get(&account)
            .and_then(|pool| offset_of(pool.last_record))
    }

    /// The record at `offset` of `account`'s chain and the offset of the one
    /// before it. `None` if there is no record there.
    pub fn chain_at(
        &self,
        account: AccountId,
        offset: usize,
    ) -> Option<(&TransferRecord, Option<usize>)> {
        let record = self.transfers.get(offset)?;
        let (debit, credit) = *self.links.get(offset)?;
        let before = if record.transfer.debit == account {
            debit
        } else {
            credit
        };
        Some((record, offset_of(before)))
    }

    /// When a pending transfer expired, if it did.
    pub fn expired_at(&self, id: TransferId) -> Option<Stamp> {
        self.expired_at.get(&id).copied()
    }

    /// Links the record at `offset` into its accounts' chains.
    fn link(&mut self, offset: usize, transfer: &Transfer) {
        let offset = u32::try_from(offset).unwrap_or(NO_RECORD);
        let mut previous = |account, kind| {
            let pool = self
                .pools
                .entry(account)
                .or_insert_with(|| Pool::new(transfer.currency, kind));
            std::mem::replace(&mut pool.last_record, offset)
        };
        let debit = previous(transfer.debit, transfer.debit_kind);
        let credit = previous(transfer.credit, transfer.credit_kind);
        self.links.push((debit, credit));
    }

    /// Every open pending transfer, by deadline.
    pub fn open_pendings(&self) -> impl Iterator<Item = TransferId> + '_ {
        self.open_pendings.iter().map(|(_, id)| *id)
    }

    /// Open pending transfers whose deadline is at or before `now_ns`, oldest
    /// first, at most `max` of them.
    pub fn due_pendings(&self, now_ns: u64, max: usize) -> Vec<TransferId> {
        self.due(now_ns).take(max).collect()
    }

    /// Open pending transfers whose deadline is at or before `now_ns`,
    /// oldest first.
    pub fn due(&self, now_ns: u64) -> impl Iterator<Item = TransferId> + '_ {
        self.open_pendings
            .range(..=(now_ns, TransferId(u128::MAX)))
            .map(|(_, id)| *id)
    }

    /// Applies the event at `position` of this region's log. An event at or
    /// before the last applied position was applied already and is skipped
    /// (`Ok(false)`), so delivering a prefix of the log again changes nothing.
    pub fn apply(&mut self, position: Position, event: &Event) -> Result<bool, ApplyError> {
        if self.applied.is_some_and(|applied| position <= applied) {
            return Ok(false);
        }
        let resolved = match &event.body {
            EventBody::Transfer(transfer) => match transfer.kind {
                TransferKind::PostPending { pending_id }
                | TransferKind::VoidPending { pending_id } => Some(pending_id),
                _ => None,
            },
            EventBody::PendingExpired { pending_id } => Some(*pending_id),
            _ => None,
        };
        let resolved_deadline = resolved.and_then(|id| match self.pending_state(id) {
            Some(PendingState::Open { deadline_ns }) => Some((deadline_ns, id)),
            _ => None,
        });
        apply_event(self, event)?;
        self.applied = Some(position);
        if let Some(key) = resolved_deadline {
            self.open_pendings.remove(&key);
        }
        match &event.body {
            EventBody::Transfer(transfer) => {
                if let Some(PendingState::Open { deadline_ns }) = self.pending_state(transfer.id) {
                    self.open_pendings.insert((deadline_ns, transfer.id));
                }
                self.link(self.transfers.len() - 1, transfer);
            }
            EventBody::Released {
                release, to, seq, ..
            } => {
                self.releases.insert((*to, *seq), *release);
            }
            EventBody::Granted { release, from, seq } => {
                self.grants.insert((*from, *seq), *release);
            }
            EventBody::PendingExpired { pending_id } => {
                self.expired_at.insert(*pending_id, event.stamp);
            }
            EventBody::PullRequested { .. } => {}
        }
        Ok(true)
    }

    fn pending_state(&self, id: TransferId) -> Option<PendingState> {
        Book::transfer(self, id).and_then(|record| record.pending)
    }

    /// Checks every invariant of a region that its own log decides, from
    /// scratch. Tests call it after every step; it is O(state).
    pub fn validate(&self) -> Result<(), String> {
        let mut held: FxHashMap<AccountId, i128> = FxHashMap::default();
        let mut open = BTreeSet::new();
        if self.links.len() != self.transfers.len() {
            return Err(format!("{}: account chains out of step", self.id));
        }
        if self.transfer_index.len() != self.transfers.len() {
            return Err(format!("{}: transfer index out of step", self.id));
        }
        for (position, record) in self.transfers.iter().enumerate() {
            let id = &record.transfer.id;
            if self.transfer_index.get(id) != Some(&position) {
                return Err(format!("{}: {id} not indexed at {position}", self.id));
            }
            if record.origin != self.id {
                return Err(format!("{id}: origin {} in {}", record.origin, self.id));
            }
            if let Some(PendingState::Open { deadline_ns }) = record.pending {
                *held.entry(record.transfer.debit).or_default() +=
                    crate::book::signed(record.transfer.units);
                open.insert((deadline_ns, *id));
            }
            let refundable = crate::book::refundable_units(record).unwrap_or(0);
            if record.refunded > refundable {
                return Err(format!(
                    "{id}: refunded {} of {refundable}",
                    record.refunded
                ));
            }
        }
        if open != self.open_pendings {
            return Err(format!("{}: open pending index out of step", self.id));
        }
        let mut sums: BTreeMap<CurrencyCode, i128> = BTreeMap::new();
        for (account, pool) in &self.pools {
            if pool.held < 0 || (pool.kind.is_bounded() && pool.available < 0) {
                return Err(format!("{}: {account} below zero: {pool:?}", self.id));
            }
            if pool.available.abs() > BALANCE_UNITS_MAX || pool.held > BALANCE_UNITS_MAX {
                return Err(format!("{}: {account} out of range: {pool:?}", self.id));
            }
            if pool.kind.is_bounded() && self.contributed(*account) > REGION_CREDIT_UNITS_MAX {
                return Err(format!(
                    "{}: {account} got more than one region may add",
                    self.id
                ));
            }
            let expected_held = held.remove(account).unwrap_or(0);
            if pool.held != expected_held {
                return Err(format!(
                    "{}: {account} holds {} but its open pending transfers hold {expected_held}",
                    self.id, pool.held
                ));
            }
            *sums.entry(pool.currency).or_default() += pool.available + pool.held;
        }
        if let Some((account, units)) = held.into_iter().next() {
            return Err(format!(
                "{}: {account} has {units} held but no pool",
                self.id
            ));
        }
        // Double entry within the region: every movement decided here nets
        // to zero, so the pools sum to what came in by grants less what left
        // by releases.
        for release in self.grants.values() {
            *sums.entry(release.currency).or_default() -= crate::book::signed(release.units);
        }
        for release in self.releases.values() {
            *sums.entry(release.currency).or_default() += crate::book::signed(release.units);
        }
        if let Some((currency, sum)) = sums.iter().find(|(_, sum)| **sum != 0) {
            return Err(format!(
                "{}: {currency} pools do not net to grants less releases (off by {sum})",
                self.id
            ));
        }
        for (what, log, seqs) in [
            ("releases", &self.releases, &self.released_to),
            ("grants", &self.grants, &self.granted_from),
        ] {
            for (region, last) in seqs {
                let count = log.range((*region, 0)..=(*region, u64::MAX)).count();
                if u64::try_from(count).ok() != Some(*last) {
                    return Err(format!(
                        "{}: {what} with {region} count {count}, sequence {last}",
                        self.id
                    ));
                }
            }
        }
        let release_kinds_bounded = self
            .releases
            .values()
            .chain(self.grants.values())
            .all(|release| release.kind != AccountKind::External);
        if !release_kinds_bounded {
            return Err(format!("{}: a release of an unbounded account", self.id));
        }
        Ok(())
    }
}

impl Book for RegionState {
    fn region(&self) -> RegionId {
        self.id
    }

    fn pull(&self, id: TransferId) -> Option<&Pull> {
        RegionState::pull(self, id)
    }

    fn answered(&self, asker: RegionId, id: TransferId) -> bool {
        RegionState::answered(self, asker, id)
    }

    fn put_pull(&mut self, id: TransferId, pull: Pull) {
        self.pulls.insert(id, pull);
    }

    fn set_answered(&mut self, asker: RegionId, id: TransferId) {
        self.answered.insert((asker, id));
    }

    fn flow(&self, account: AccountId) -> Flow {
        RegionState::flow(self, account)
    }

    fn set_flow(&mut self, account: AccountId, flow: Flow) {
        self.flows.insert(account, flow);
    }

    fn pool(&self, account: AccountId) -> Option<&Pool> {
        self.pools.get(&account)
    }

    fn transfer(&self, id: TransferId) -> Option<&TransferRecord> {
        let index = *self.transfer_index.get(&id)?;
        self.transfers.get(index)
    }

    fn released_to(&self, to: RegionId) -> u64 {
        self.released_to.get(&to).copied().unwrap_or(0)
    }

    fn granted_from(&self, from: RegionId) -> u64 {
        self.granted_from.get(&from).copied().unwrap_or(0)
    }

    fn last_stamp(&self) -> Stamp {
        self.last_stamp
    }

    fn pool_mut(
        &mut self,
        account: AccountId,
        currency: CurrencyCode,
        kind: AccountKind,
    ) -> &mut Pool {
        self.pools
            .entry(account)
            .or_insert_with(|| Pool::new(currency, kind))
    }

    fn transfer_mut(&mut self, id: TransferId) -> Option<&mut TransferRecord> {
        let index = *self.transfer_index.get(&id)?;
        self.transfers.get_mut(index)
    }

    fn put_transfer(&mut self, record: TransferRecord) {
        match self.transfer_index.get(&record.transfer.id) {
            Some(index) => self.transfers[*index] = record,
            None => {
                self.transfer_index
                    .insert(record.transfer.id, self.transfers.len());
                self.transfers.push(record);
            }
        }
    }

    fn set_released_to(&mut self, to: RegionId, seq: u64) {
        self.released_to.insert(to, seq);
    }

    fn set_granted_from(&mut self, from: RegionId, seq: u64) {
        self.granted_from.insert(from, seq);
    }

    fn set_last_stamp(&mut self, stamp: Stamp) {
        self.last_stamp = stamp;
    }
}

/// The offset a chain link names, if it names one.
fn offset_of(link: u32) -> Option<usize> {
    (link != NO_RECORD).then_some(link as usize)
}

/// The offsets of an account's records from an offset on, in log order,
/// found by walking its chain back from the newest record a slice at a
/// time: a reader can let go of the state between slices, however long the
/// chain, and gets the records as of its first slice.
#[derive(Debug, Clone)]
pub struct RecordsSince {
    account: AccountId,
    from: usize,
    /// `None` before the first slice; then the next record to look at.
    cursor: Option<Option<usize>>,
    found: Vec<usize>,
}

impl RecordsSince {
    pub fn new(account: AccountId, from: usize) -> Self {
        Self {
            account,
            from,
            cursor: None,
            found: Vec::new(),
        }
    }

    /// Walks at most `budget` records (at least one). Once the walk has
    /// reached `from`, the offsets found, in log order.
    pub fn step(&mut self, state: &RegionState, budget: usize) -> Option<Vec<usize>> {
        let from = self.from;
        let mut cursor = match self.cursor {
            Some(cursor) => cursor,
            None => state.last_record_of(self.account),
        };
        for _ in 0..budget.max(1) {
            let Some(offset) = cursor.filter(|offset| *offset >= from) else {
                break;
            };
            match state.chain_at(self.account, offset) {
                Some((_, before)) => {
                    self.found.push(offset);
                    cursor = before;
                }
                None => cursor = None,
            }
        }
        self.cursor = Some(cursor);
        if cursor.is_some_and(|offset| offset >= from) {
            return None;
        }
        let mut found = std::mem::take(&mut self.found);
        found.reverse();
        Some(found)
    }
}
