use crate::account::{Account, AccountKind, AccountStatus, Metadata};
use crate::ids::{AccountId, RegionId, TransferId};
use crate::money::{Currency, CurrencyCode};
use ledger_hlc::Stamp;
use serde::{Deserialize, Serialize};

/// What a transfer record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferKind {
    /// Moved at once.
    Posted,
    /// Held, waiting to be posted or voided.
    Pending { timeout_ms: u64 },
    /// The posting of a pending transfer.
    PostPending { pending_id: TransferId },
    /// The voiding of a pending transfer.
    VoidPending { pending_id: TransferId },
    /// A refund of a payment.
    Refund { payment_id: TransferId },
}

/// A decided transfer: the payload of its event and, with its origin and
/// stamp, the record kept for look-ups and idempotency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: TransferId,
    pub debit: AccountId,
    pub credit: AccountId,
    pub units: u128,
    pub currency: CurrencyCode,
    /// The accounts' kinds, so that a region's log alone says which pools have
    /// a floor of zero.
    pub debit_kind: AccountKind,
    pub credit_kind: AccountKind,
    pub kind: TransferKind,
    pub reference: Option<Box<str>>,
    pub metadata: Option<Box<Metadata>>,
}

/// The metadata key that names the saga a transfer is a step of.
pub const SAGA_KEY: &str = "saga";
/// [`SAGA_KEY`]'s value on a withdrawal's hold.
pub const WITHDRAWAL: &str = "withdrawal";

impl Transfer {
    /// Whether this is a withdrawal's hold: a pending transfer to an
    /// EXTERNAL account tagged as a withdrawal. Only the payout rail's
    /// definite answer resolves one (the rail may have paid), so its post
    /// or void is taken whenever that answer comes, and it never expires.
    pub fn is_withdrawal_hold(&self) -> bool {
        self.credit_kind == AccountKind::External
            && matches!(self.kind, TransferKind::Pending { .. })
            && self
                .metadata
                .as_deref()
                .and_then(|metadata| metadata.get(SAGA_KEY))
                .is_some_and(|saga| saga == WITHDRAWAL)
    }
}

/// A release of reservation from one region to another, as its log holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub account: AccountId,
    pub currency: CurrencyCode,
    pub kind: AccountKind,
    pub units: u128,
}

/// An event of a region's log. Each carries the stamp it was decided with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub stamp: Stamp,
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    /// A transfer of any kind was decided.
    Transfer(Transfer),
    /// A pending transfer reached its timeout and was voided by the ledger.
    PendingExpired { pending_id: TransferId },
    /// `release` left this region's pool for region `to`; the `seq`-th release
    /// from this region to `to`.
    Released {
        release: Release,
        to: RegionId,
        seq: u64,
        /// The pull of region `to` this release answers, if any.
        pull: Option<TransferId>,
    },
    /// This region asks region `from` to release `units` of the account's
    /// reservation to it (a cross-region pull). `from` answers with a
    /// `Released` naming the pull, at most once.
    PullRequested {
        id: TransferId,
        account: AccountId,
        currency: CurrencyCode,
        kind: AccountKind,
        units: u128,
        from: RegionId,
    },
    /// The `seq`-th release of region `from` to this region was taken in.
    Granted {
        release: Release,
        from: RegionId,
        seq: u64,
    },
}

/// An event of the global control log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlEvent {
    pub stamp: Stamp,
    pub body: ControlEventBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlEventBody {
    CurrencyRegistered(Currency),
    AccountCreated(Account),
    AccountStatusChanged {
        account: AccountId,
        status: AccountStatus,
    },
    /// The floor, in minor units, each region keeps of the account's
    /// reservation (0: the policy is removed).
    PoolPolicySet {
        account: AccountId,
        floor: u128,
    },
}
