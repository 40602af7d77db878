//! A region's book: its pools and transfer records, and the one place where
//! events change them ([`apply_event`]). The same code applies committed
//! events to a [`crate::RegionState`] and speculative ones to an [`Overlay`].

use crate::account::AccountKind;
use crate::event::{Event, EventBody, Release, Transfer, TransferKind};
use crate::ids::{AccountId, RegionId, TransferId};
use crate::money::{BALANCE_UNITS_MAX, CurrencyCode, REGION_CREDIT_UNITS_MAX};
use ledger_hlc::Stamp;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One account's reservation pool in one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// Spendable in this region without asking any other.
    pub available: i128,
    /// Taken out of `available` by pending transfers not yet resolved.
    pub held: i128,
    pub currency: CurrencyCode,
    pub kind: AccountKind,
    /// The offset of the account's last transfer record in the region's log
    /// of transfers ([`NO_RECORD`] for none): the head of the chain
    /// [`crate::RegionState::records_of`] walks. Kept here, in the entry
    /// applying a transfer touches anyway, rather than in an index of its own.
    pub last_record: u32,
}

/// No transfer record.
pub const NO_RECORD: u32 = u32::MAX;

impl Pool {
    pub(crate) fn new(currency: CurrencyCode, kind: AccountKind) -> Self {
        Self {
            available: 0,
            held: 0,
            currency,
            kind,
            last_record: NO_RECORD,
        }
    }

    /// Whether the pool keeps invariant 1 (a pool with a floor never below
    /// it) and stays in the representable range; [`apply_event`] refuses an
    /// event that would break either.
    fn check(&self, region: RegionId, account: AccountId) -> Result<(), ApplyError> {
        if self.held < 0
            || self.held > BALANCE_UNITS_MAX
            || self.available.abs() > BALANCE_UNITS_MAX
        {
            return Err(ApplyError::OutOfRange { region, account });
        }
        // Chaos bite `skip-pool-check`: a pool may go below its floor
        // (invariant 1 broken on purpose; see `crate::bite`).
        #[cfg(feature = "chaos-bite")]
        if crate::bite::is(crate::bite::Bite::SkipPoolCheck) {
            return Ok(());
        }
        if self.kind.is_bounded() && self.available < 0 {
            return Err(ApplyError::Overdraft { region, account });
        }
        Ok(())
    }

    /// Invariant 1, asserted after every change in every build: a pool with a
    /// floor never goes below it, and no pool leaves the representable range.
    /// [`Pool::check`] runs before every change, so this cannot fail unless
    /// the check itself is wrong.
    fn assert_valid(&self, account: AccountId) {
        assert!(
            self.held >= 0 && self.held <= BALANCE_UNITS_MAX,
            "held of {account} out of range: {self:?}"
        );
        assert!(
            self.available.abs() <= BALANCE_UNITS_MAX,
            "available of {account} out of range: {self:?}"
        );
        // Chaos bite `skip-pool-check`: see `Pool::check`.
        #[cfg(feature = "chaos-bite")]
        if crate::bite::is(crate::bite::Bite::SkipPoolCheck) {
            return;
        }
        assert!(
            !self.kind.is_bounded() || self.available >= 0,
            "available of {account} below zero: {self:?}"
        );
    }
}

/// Where a pending transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingState {
    Open { deadline_ns: u64 },
    Posted { units: u128 },
    Voided,
    Expired,
}

impl PendingState {
    pub const fn name(&self) -> &'static str {
        match self {
            PendingState::Open { .. } => "open",
            PendingState::Posted { .. } => "posted",
            PendingState::Voided => "voided",
            PendingState::Expired => "expired",
        }
    }
}

/// A cross-region pull this region asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pull {
    pub account: AccountId,
    pub currency: CurrencyCode,
    pub kind: AccountKind,
    pub units: u128,
    /// The region asked to release.
    pub from: RegionId,
    pub stamp: Stamp,
}

/// A transfer as a region keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    pub transfer: Transfer,
    /// The region that decided it.
    pub origin: RegionId,
    pub stamp: Stamp,
    /// For a pending transfer, where it stands.
    pub pending: Option<PendingState>,
    /// How much of it has been refunded.
    pub refunded: u128,
}

/// A log that does not fit the state it is applied to: a bug or a corrupt
/// log. Fatal: the node must stop rather than go on with a wrong state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("region {region}: stamp {stamp} is older than the last applied {last}")]
    StampBackwards {
        region: RegionId,
        stamp: Stamp,
        last: Stamp,
    },
    #[error("region {region}: transfer {id} applied twice")]
    DuplicateTransfer { region: RegionId, id: TransferId },
    #[error("region {region}: {id} is not an open pending transfer")]
    PendingNotOpen { region: RegionId, id: TransferId },
    #[error("region {region}: refund of unknown or unrefundable {id}")]
    PaymentMissing { region: RegionId, id: TransferId },
    #[error("region {region}: account {account} has currency {pool}, event says {event}")]
    CurrencyMismatch {
        region: RegionId,
        account: AccountId,
        pool: CurrencyCode,
        event: CurrencyCode,
    },
    #[error("region {region}: {what} sequence {seq} where {expected} was next")]
    SequenceGap {
        region: RegionId,
        what: &'static str,
        seq: u64,
        expected: u64,
    },
    /// The event would take a bounded account below zero: decided against
    /// a view that missed another decision, or a bug.
    #[error("region {region}: account {account} would go below zero")]
    Overdraft {
        region: RegionId,
        account: AccountId,
    },
    /// The event would take a balance of the account out of the range
    /// amounts are kept in.
    #[error("region {region}: a balance of account {account} would leave the representable range")]
    OutOfRange {
        region: RegionId,
        account: AccountId,
    },
    #[error("event of unknown region {0}")]
    UnknownRegion(RegionId),
    #[error("control log: {0}")]
    Control(&'static str),
    /// An event held in flight by a decider no longer fits the committed
    /// state (the state moved under it, as after a change of leader).
    #[error("region {region}: an in-flight event no longer applies: {reason}")]
    InFlight {
        region: RegionId,
        reason: &'static str,
    },
}

/// What decisions read of a region, and what applying an event changes.
pub(crate) trait Book {
    fn region(&self) -> RegionId;
    fn pool(&self, account: AccountId) -> Option<&Pool>;
    fn transfer(&self, id: TransferId) -> Option<&TransferRecord>;
    /// The sequence number of the last release to `to` (0: none yet).
    fn released_to(&self, to: RegionId) -> u64;
    /// The highest sequence number granted from `from` (0: none yet).
    fn granted_from(&self, from: RegionId) -> u64;
    fn last_stamp(&self) -> Stamp;
    /// A pull this region asked for.
    fn pull(&self, id: TransferId) -> Option<&Pull>;
    /// Whether this region answered `asker`'s pull `id`.
    fn answered(&self, asker: RegionId, id: TransferId) -> bool;
    /// What this region released and granted of an account.
    fn flow(&self, account: AccountId) -> Flow;

    /// The pool, created empty if the account has none here yet.
    fn pool_mut(
        &mut self,
        account: AccountId,
        currency: CurrencyCode,
        kind: AccountKind,
    ) -> &mut Pool;
    fn transfer_mut(&mut self, id: TransferId) -> Option<&mut TransferRecord>;
    fn put_transfer(&mut self, record: TransferRecord);
    fn set_released_to(&mut self, to: RegionId, seq: u64);
    fn set_granted_from(&mut self, from: RegionId, seq: u64);
    fn set_last_stamp(&mut self, stamp: Stamp);
    fn put_pull(&mut self, id: TransferId, pull: Pull);
    fn set_answered(&mut self, asker: RegionId, id: TransferId);
    fn set_flow(&mut self, account: AccountId, flow: Flow);

    /// The available amount of the account here (0 when it has no pool).
    fn available(&self, account: AccountId) -> i128 {
        self.pool(account).map_or(0, |pool| pool.available)
    }

    /// What this region has added to the account: what its pool holds and
    /// it sent elsewhere, less what it took in ([`REGION_CREDIT_UNITS_MAX`]
    /// bounds it for accounts of a bounded kind).
    fn contributed(&self, account: AccountId) -> i128 {
        let flow = self.flow(account);
        let pool = self
            .pool(account)
            .map_or(0, |pool| pool.available + pool.held);
        pool + signed(flow.released) - signed(flow.granted)
    }
}

/// The deadline of a pending transfer stamped `stamp`.
pub(crate) fn deadline_ns(stamp: Stamp, timeout_ms: u64) -> u64 {
    stamp
        .physical_ns()
        .saturating_add(timeout_ms.saturating_mul(1_000_000))
}

/// Applies one event to a book. Everything the event needs is checked before
/// anything changes, so an error leaves the book as it was.
pub(crate) fn apply_event<B: Book>(book: &mut B, event: &Event) -> Result<(), ApplyError> {
    let last = book.last_stamp();
    if event.stamp < last {
        return Err(ApplyError::StampBackwards {
            region: book.region(),
            stamp: event.stamp,
            last,
        });
    }
    apply_body(book, event)
}

/// Applies an event decided earlier and still in flight to an overlay, at
/// the overlay's time if its own stamp is older: the writer of the log stamps
/// it again when it appends it.
pub(crate) fn replay_event<B: Book>(book: &mut B, event: &Event) -> Result<(), ApplyError> {
    let stale = |reason| ApplyError::InFlight {
        region: book.region(),
        reason,
    };
    // What the replay takes out of a pool must still be there: applying
    // refuses an overdraft like any other event that does not fit.
    if let EventBody::Released { .. } | EventBody::Granted { .. } = &event.body {
        return Err(stale("releases and grants are never held in flight"));
    }
    if event.stamp >= book.last_stamp() {
        return apply_event(book, event);
    }
    let event = Event {
        stamp: book.last_stamp(),
        body: event.body.clone(),
    };
    apply_body(book, &event)
}

fn apply_body<B: Book>(book: &mut B, event: &Event) -> Result<(), ApplyError> {
    let region = book.region();
    match &event.body {
        EventBody::Transfer(transfer) => apply_transfer(book, event.stamp, transfer)?,
        EventBody::PendingExpired { pending_id } => {
            let pending = open_pending(book, *pending_id)?;
            release_hold(book, &pending, 0, PendingState::Expired)?;
        }
        EventBody::Released {
            release,
            to,
            seq,
            pull,
        } => {
            let expected = book.released_to(*to) + 1;
            check_sequence(region, "release", *seq, expected)?;
            if let Some(pull) = pull
                && book.answered(*to, *pull)
            {
                return Err(ApplyError::DuplicateTransfer { region, id: *pull });
            }
            check_currency(book, release.account, release.currency)?;
            change_pools(
                book,
                [PoolChange::available(release, -signed(release.units))],
                false,
            )?;
            if let Some(pull) = pull {
                book.set_answered(*to, *pull);
            }
            let mut flow = book.flow(release.account);
            flow.released += release.units;
            book.set_flow(release.account, flow);
            book.set_released_to(*to, *seq);
        }
        EventBody::PullRequested {
            id,
            account,
            currency,
            kind,
            units,
            from,
        } => {
            if book.pull(*id).is_some() {
                return Err(ApplyError::DuplicateTransfer { region, id: *id });
            }
            book.put_pull(
                *id,
                Pull {
                    account: *account,
                    currency: *currency,
                    kind: *kind,
                    units: *units,
                    from: *from,
                    stamp: event.stamp,
                },
            );
        }
        EventBody::Granted { release, from, seq } => {
            let expected = book.granted_from(*from) + 1;
            check_sequence(region, "grant", *seq, expected)?;
            check_currency(book, release.account, release.currency)?;
            let units = signed(release.units);
            // Chaos bite `grant-twice`: the grant is taken in twice, which
            // creates the release's amount (invariants 3 and 4 broken on
            // purpose; see `crate::bite`).
            #[cfg(feature = "chaos-bite")]
            let units = if crate::bite::is(crate::bite::Bite::GrantTwice) {
                2 * units
            } else {
                units
            };
            change_pools(book, [PoolChange::available(release, units)], false)?;
            let mut flow = book.flow(release.account);
            flow.granted += release.units;
            book.set_flow(release.account, flow);
            book.set_granted_from(*from, *seq);
        }
    }
    book.set_last_stamp(event.stamp);
    Ok(())
}

fn apply_transfer<B: Book>(
    book: &mut B,
    stamp: Stamp,
    transfer: &Transfer,
) -> Result<(), ApplyError> {
    let region = book.region();
    if book.transfer(transfer.id).is_some() {
        return Err(ApplyError::DuplicateTransfer {
            region,
            id: transfer.id,
        });
    }
    check_currency(book, transfer.debit, transfer.currency)?;
    check_currency(book, transfer.credit, transfer.currency)?;
    let amount = signed(transfer.units);
    let mut pending = None;
    match transfer.kind {
        TransferKind::Posted => move_available(book, transfer, amount)?,
        TransferKind::Refund { payment_id } => {
            let refundable = book
                .transfer(payment_id)
                .is_some_and(|payment| refundable_units(payment).is_some());
            if !refundable {
                return Err(ApplyError::PaymentMissing {
                    region,
                    id: payment_id,
                });
            }
            move_available(book, transfer, amount)?;
            if let Some(payment) = book.transfer_mut(payment_id) {
                payment.refunded += transfer.units;
            }
        }
        TransferKind::Pending { timeout_ms } => {
            change_pools(
                book,
                [PoolChange {
                    account: transfer.debit,
                    currency: transfer.currency,
                    kind: transfer.debit_kind,
                    available: -amount,
                    held: amount,
                }],
                false,
            )?;
            pending = Some(PendingState::Open {
                deadline_ns: deadline_ns(stamp, timeout_ms),
            });
        }
        TransferKind::PostPending { pending_id } => {
            let held = open_pending(book, pending_id)?;
            release_hold(
                book,
                &held,
                transfer.units,
                PendingState::Posted {
                    units: transfer.units,
                },
            )?;
        }
        TransferKind::VoidPending { pending_id } => {
            let held = open_pending(book, pending_id)?;
            release_hold(book, &held, 0, PendingState::Voided)?;
        }
    }
    book.put_transfer(TransferRecord {
        transfer: transfer.clone(),
        origin: region,
        stamp,
        pending,
        refunded: 0,
    });
    Ok(())
}

/// The pending transfer `id` if it is open, as the parts a resolution needs.
fn open_pending<B: Book>(book: &B, id: TransferId) -> Result<Transfer, ApplyError> {
    match book.transfer(id) {
        Some(record) if matches!(record.pending, Some(PendingState::Open { .. })) => {
            Ok(record.transfer.clone())
        }
        _ => Err(ApplyError::PendingNotOpen {
            region: book.region(),
            id,
        }),
    }
}

/// Resolves a pending transfer: `posted` units go to the credit account, the
/// rest of the hold returns to the debit account.
fn release_hold<B: Book>(
    book: &mut B,
    pending: &Transfer,
    posted: u128,
    state: PendingState,
) -> Result<(), ApplyError> {
    let held = signed(pending.units);
    let posted = signed(posted);
    change_pools(
        book,
        [
            PoolChange {
                account: pending.debit,
                currency: pending.currency,
                kind: pending.debit_kind,
                available: held - posted,
                held: -held,
            },
            PoolChange {
                account: pending.credit,
                currency: pending.currency,
                kind: pending.credit_kind,
                available: posted,
                held: 0,
            },
        ],
        true,
    )?;
    if let Some(record) = book.transfer_mut(pending.id) {
        record.pending = Some(state);
    }
    Ok(())
}

fn move_available<B: Book>(
    book: &mut B,
    transfer: &Transfer,
    amount: i128,
) -> Result<(), ApplyError> {
    change_pools(
        book,
        [
            PoolChange {
                account: transfer.debit,
                currency: transfer.currency,
                kind: transfer.debit_kind,
                available: -amount,
                held: 0,
            },
            PoolChange {
                account: transfer.credit,
                currency: transfer.currency,
                kind: transfer.credit_kind,
                available: amount,
                held: 0,
            },
        ],
        true,
    )
}

/// A change of one account's pool.
#[derive(Clone, Copy)]
struct PoolChange {
    account: AccountId,
    currency: CurrencyCode,
    kind: AccountKind,
    available: i128,
    held: i128,
}

impl PoolChange {
    fn available(release: &Release, delta: i128) -> Self {
        Self {
            account: release.account,
            currency: release.currency,
            kind: release.kind,
            available: delta,
            held: 0,
        }
    }
}

/// Applies changes to pools only if every pool they leave keeps its floor
/// and stays in range; otherwise changes nothing. Two changes of one
/// account add up. With `credits`, the changes bring money new to this
/// region (a transfer's credit), and no bounded account may then have got
/// more from this region than [`REGION_CREDIT_UNITS_MAX`]; a grant or a
/// hold returned adds nothing new (the flows or the held amount count it).
fn change_pools<B: Book, const N: usize>(
    book: &mut B,
    changes: [PoolChange; N],
    credits: bool,
) -> Result<(), ApplyError> {
    let region = book.region();
    let mut after: [Option<(AccountId, Pool)>; N] = [None; N];
    for (slot, change) in changes.iter().enumerate() {
        if change.available == 0 && change.held == 0 {
            continue;
        }
        let earlier = after[..slot]
            .iter_mut()
            .find_map(|place| place.take_if(|(account, _)| *account == change.account));
        let mut pool = match earlier {
            Some((_, pool)) => pool,
            None => book
                .pool(change.account)
                .copied()
                .unwrap_or_else(|| Pool::new(change.currency, change.kind)),
        };
        // Amounts and balances are far inside i128: no overflow here.
        let added = change.available + change.held;
        pool.available += change.available;
        pool.held += change.held;
        pool.check(region, change.account)?;
        if credits
            && added > 0
            && pool.kind.is_bounded()
            && book.contributed(change.account) + added > REGION_CREDIT_UNITS_MAX
        {
            return Err(ApplyError::OutOfRange {
                region,
                account: change.account,
            });
        }
        after[slot] = Some((change.account, pool));
    }
    for (account, pool) in after.into_iter().flatten() {
        let place = book.pool_mut(account, pool.currency, pool.kind);
        place.available = pool.available;
        place.held = pool.held;
        place.assert_valid(account);
    }
    Ok(())
}

fn check_currency<B: Book>(
    book: &B,
    account: AccountId,
    currency: CurrencyCode,
) -> Result<(), ApplyError> {
    match book.pool(account) {
        Some(pool) if pool.currency != currency => Err(ApplyError::CurrencyMismatch {
            region: book.region(),
            account,
            pool: pool.currency,
            event: currency,
        }),
        _ => Ok(()),
    }
}

fn check_sequence(
    region: RegionId,
    what: &'static str,
    seq: u64,
    expected: u64,
) -> Result<(), ApplyError> {
    if seq == expected {
        Ok(())
    } else {
        Err(ApplyError::SequenceGap {
            region,
            what,
            seq,
            expected,
        })
    }
}

/// Units as a signed amount. Every amount is at most `AMOUNT_UNITS_MAX`
/// (checked when it is decided), far inside `i128`.
pub(crate) fn signed(units: u128) -> i128 {
    i128::try_from(units).unwrap_or(i128::MAX)
}

/// How much of a transfer could ever be refunded: a posted transfer all of
/// it, a posted pending transfer what was posted; nothing else is a payment.
pub(crate) fn refundable_units(record: &TransferRecord) -> Option<u128> {
    match (record.transfer.kind, record.pending) {
        (TransferKind::Posted, _) => Some(record.transfer.units),
        (TransferKind::Pending { .. }, Some(PendingState::Posted { units })) => Some(units),
        _ => None,
    }
}

/// Speculative changes over a book: decisions of a batch (or of one linked
/// chain) read the committed book plus the events decided before them,
/// without touching the committed book. The changes live in a [`Changes`]
/// the caller keeps, so their memory is reused from one batch to the next.
pub(crate) struct Overlay<'a, B: Book> {
    base: &'a B,
    changes: &'a mut Changes,
}

impl<'a, B: Book> Overlay<'a, B> {
    /// An overlay with no changes yet over `base`, room made for `commands`.
    pub(crate) fn new(base: &'a B, changes: &'a mut Changes, commands: usize) -> Self {
        changes.clear();
        changes.pools.reserve(commands * 2);
        changes.transfers.reserve(commands);
        changes.last_stamp = base.last_stamp();
        Self { base, changes }
    }

    /// Moves the changes of an overlay that was over this one into this one.
    pub(crate) fn absorb(&mut self, inner: &mut Changes) {
        self.changes.pools.extend(inner.pools.drain());
        self.changes.transfers.extend(inner.transfers.drain());
        self.changes.released_to.append(&mut inner.released_to);
        self.changes.pulls.extend(inner.pulls.drain());
        self.changes.answered.append(&mut inner.answered);
        self.changes.granted_from.append(&mut inner.granted_from);
        self.changes.flows.extend(inner.flows.drain());
        self.changes.last_stamp = self.changes.last_stamp.max(inner.last_stamp);
    }
}

/// What an overlay changed. Kept between batches only for its memory.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pools: FxHashMap<AccountId, Pool>,
    transfers: FxHashMap<TransferId, TransferRecord>,
    released_to: BTreeMap<RegionId, u64>,
    granted_from: BTreeMap<RegionId, u64>,
    pulls: FxHashMap<TransferId, Pull>,
    answered: BTreeSet<(RegionId, TransferId)>,
    flows: FxHashMap<AccountId, Flow>,
    last_stamp: Stamp,
}

impl Changes {
    fn clear(&mut self) {
        self.pulls.clear();
        self.answered.clear();
        self.pools.clear();
        self.transfers.clear();
        self.released_to.clear();
        self.granted_from.clear();
        self.flows.clear();
        self.last_stamp = Stamp::ZERO;
    }
}

impl<B: Book> Book for Overlay<'_, B> {
    fn region(&self) -> RegionId {
        self.base.region()
    }

    fn pool(&self, account: AccountId) -> Option<&Pool> {
        self.changes
            .pools
            .get(&account)
            .or_else(|| self.base.pool(account))
    }

    fn transfer(&self, id: TransferId) -> Option<&TransferRecord> {
        self.changes
            .transfers
            .get(&id)
            .or_else(|| self.base.transfer(id))
    }

    fn released_to(&self, to: RegionId) -> u64 {
        self.changes
            .released_to
            .get(&to)
            .copied()
            .unwrap_or_else(|| self.base.released_to(to))
    }

    fn granted_from(&self, from: RegionId) -> u64 {
        self.changes
            .granted_from
            .get(&from)
            .copied()
            .unwrap_or_else(|| self.base.granted_from(from))
    }

    fn last_stamp(&self) -> Stamp {
        self.changes.last_stamp
    }

    fn pull(&self, id: TransferId) -> Option<&Pull> {
        self.changes.pulls.get(&id).or_else(|| self.base.pull(id))
    }

    fn answered(&self, asker: RegionId, id: TransferId) -> bool {
        self.changes.answered.contains(&(asker, id)) || self.base.answered(asker, id)
    }

    fn put_pull(&mut self, id: TransferId, pull: Pull) {
        self.changes.pulls.insert(id, pull);
    }

    fn set_answered(&mut self, asker: RegionId, id: TransferId) {
        self.changes.answered.insert((asker, id));
    }

    fn flow(&self, account: AccountId) -> Flow {
        self.changes
            .flows
            .get(&account)
            .copied()
            .unwrap_or_else(|| self.base.flow(account))
    }

    fn set_flow(&mut self, account: AccountId, flow: Flow) {
        self.changes.flows.insert(account, flow);
    }

    fn pool_mut(
        &mut self,
        account: AccountId,
        currency: CurrencyCode,
        kind: AccountKind,
    ) -> &mut Pool {
        let base = self.base;
        self.changes.pools.entry(account).or_insert_with(|| {
            base.pool(account)
                .copied()
                .unwrap_or_else(|| Pool::new(currency, kind))
        })
    }

    fn transfer_mut(&mut self, id: TransferId) -> Option<&mut TransferRecord> {
        if !self.changes.transfers.contains_key(&id) {
            let copied = self.base.transfer(id)?.clone();
            self.changes.transfers.insert(id, copied);
        }
        self.changes.transfers.get_mut(&id)
    }

    fn put_transfer(&mut self, record: TransferRecord) {
        self.changes.transfers.insert(record.transfer.id, record);
    }

    fn set_released_to(&mut self, to: RegionId, seq: u64) {
        self.changes.released_to.insert(to, seq);
    }

    fn set_granted_from(&mut self, from: RegionId, seq: u64) {
        self.changes.granted_from.insert(from, seq);
    }

    fn set_last_stamp(&mut self, stamp: Stamp) {
        self.changes.last_stamp = stamp;
    }
}

/// Releases in and out of one region, per account: what the global view adds
/// back for reservation in flight between regions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub released: u128,
    pub granted: u128,
}

pub(crate) type ReleaseLog = BTreeMap<(RegionId, u64), Release>;
