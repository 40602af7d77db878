//! An account's history: every movement of its money in every region, as
//! this node's replicas hold them, in stamp order, with the balance after
//! each. Reads of the region states; nothing here changes them.

use crate::book::{TransferRecord, signed};
use crate::event::TransferKind;
use crate::ids::{AccountId, RegionId, TransferId};
use crate::ledger::Ledger;
use crate::region::RegionState;
use ledger_hlc::Stamp;

/// What moved an account's money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Movement {
    /// A transfer, posted at once.
    Transfer,
    /// A refund of a payment.
    Refund,
    /// A pending transfer took the amount out of what is available.
    Hold,
    /// A pending transfer was posted (whole or in part).
    HoldPosted,
    HoldVoided,
    HoldExpired,
}

impl Movement {
    pub const fn name(self) -> &'static str {
        match self {
            Movement::Transfer => "transfer",
            Movement::Refund => "refund",
            Movement::Hold => "hold",
            Movement::HoldPosted => "hold_posted",
            Movement::HoldVoided => "hold_voided",
            Movement::HoldExpired => "hold_expired",
        }
    }
}

/// One movement of an account's money, in minor units of its currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub stamp: Stamp,
    pub region: RegionId,
    /// The transfer that moved it (for an expiry, the pending transfer).
    pub transfer: TransferId,
    pub movement: Movement,
    /// The other account of the transfer.
    pub counterparty: AccountId,
    /// Change of the balance (what is available plus what is held).
    pub balance_change: i128,
    /// Change of what is held.
    pub held_change: i128,
    /// The balance and what is held, in all regions, after this movement.
    pub balance: i128,
    pub held: i128,
    /// The place of its record in its region's log: the movements of one
    /// entry share its stamp and keep the log's order (a debit counting on
    /// a credit decided before it in the same entry comes after it). An
    /// expiry carries its hold's record's place: among movements of its
    /// own stamp it comes first, which changes only what is held in
    /// between, never the balance.
    pub offset: usize,
}

impl Ledger {
    /// Every movement of `account` in every region, ordered by stamp, with
    /// running totals from the first. Releases and grants between regions
    /// move no money of the account's and are not listed.
    pub fn history(&self, account: AccountId) -> Vec<HistoryEntry> {
        let mut read = HistoryRead::new(account);
        while !read.step(self, usize::MAX) {}
        read.finish()
    }
}

/// An account's history ([`Ledger::history`]) read a slice at a time, so
/// that no reader holds the state for long, however long the history: it
/// is the history as of the first step (per region, the chain from the
/// newest record then, and the expiries stamped by then), whatever is
/// applied between steps.
#[derive(Debug)]
pub struct HistoryRead {
    account: AccountId,
    /// Per region, from the first step on.
    cursors: Option<Vec<Cursor>>,
    entries: Vec<HistoryEntry>,
}

/// Where a read of one region's chain is.
#[derive(Debug)]
struct Cursor {
    /// The region's last stamp at the first step: later expiries are not
    /// counted.
    last: Stamp,
    /// The next record to read, walking back.
    next: Option<usize>,
}

impl HistoryRead {
    pub fn new(account: AccountId) -> Self {
        Self {
            account,
            cursors: None,
            entries: Vec::new(),
        }
    }

    /// Reads at most `budget` records (at least one, while any is left).
    /// True once every region's chain is read.
    pub fn step(&mut self, ledger: &Ledger, budget: usize) -> bool {
        let account = self.account;
        let cursors = self.cursors.get_or_insert_with(|| {
            ledger
                .regions()
                .iter()
                .map(|region| Cursor {
                    last: region.last_stamp(),
                    next: region.last_record_of(account),
                })
                .collect()
        });
        let mut budget = budget.max(1);
        for (region, cursor) in ledger.regions().iter().zip(cursors.iter_mut()) {
            while budget > 0
                && let Some(offset) = cursor.next
            {
                budget -= 1;
                let Some((record, before)) = region.chain_at(account, offset) else {
                    cursor.next = None;
                    break;
                };
                movements(
                    region,
                    account,
                    (record, offset),
                    cursor.last,
                    &mut self.entries,
                );
                cursor.next = before;
            }
        }
        cursors.iter().all(|cursor| cursor.next.is_none())
    }

    /// The entries read, ordered by stamp, with running totals.
    pub fn finish(self) -> Vec<HistoryEntry> {
        let mut entries = self.entries;
        entries.sort_by_key(|entry| (entry.stamp, entry.region, entry.offset, entry.movement));
        let (mut balance, mut held) = (0i128, 0i128);
        for entry in &mut entries {
            balance += entry.balance_change;
            held += entry.held_change;
            entry.balance = balance;
            entry.held = held;
        }
        entries
    }
}

/// The movements of `account` by one of its records in `region`, counting
/// an expiry only if it was stamped by `last`.
fn movements(
    region: &RegionState,
    account: AccountId,
    (record, offset): (&TransferRecord, usize),
    last: Stamp,
    found: &mut Vec<HistoryEntry>,
) {
    let transfer = &record.transfer;
    let debit = transfer.debit == account;
    let counterparty = if debit {
        transfer.credit
    } else {
        transfer.debit
    };
    let sign = if debit { -1 } else { 1 };
    let entry = |movement, balance_change, held_change| HistoryEntry {
        stamp: record.stamp,
        region: region.id(),
        transfer: transfer.id,
        movement,
        counterparty,
        balance_change,
        held_change,
        balance: 0,
        held: 0,
        offset,
    };
    let units = signed(transfer.units);
    match transfer.kind {
        TransferKind::Posted => found.push(entry(Movement::Transfer, sign * units, 0)),
        TransferKind::Refund { .. } => found.push(entry(Movement::Refund, sign * units, 0)),
        TransferKind::Pending { .. } => {
            if debit {
                found.push(entry(Movement::Hold, 0, units));
                if let Some(at) = region.expired_at(transfer.id).filter(|at| *at <= last) {
                    found.push(HistoryEntry {
                        stamp: at,
                        ..entry(Movement::HoldExpired, 0, -units)
                    });
                }
            }
        }
        TransferKind::PostPending { pending_id } => {
            let held = held_by(region, pending_id);
            let held_change = if debit { -held } else { 0 };
            found.push(entry(Movement::HoldPosted, sign * units, held_change));
        }
        TransferKind::VoidPending { pending_id } => {
            if debit {
                found.push(entry(Movement::HoldVoided, 0, -held_by(region, pending_id)));
            }
        }
    }
}

/// What a pending transfer held.
fn held_by(region: &RegionState, pending: TransferId) -> i128 {
    region
        .transfer(pending)
        .map_or(0, |record: &TransferRecord| signed(record.transfer.units))
}
