use crate::ids::{AccountId, RegionId, TransferId};
use crate::money::{AmountError, CurrencyCode, Money};
use ledger_hlc::Stamp;
use serde::{Deserialize, Serialize};

/// Why a command was refused. Nothing of a refused command is applied.
///
/// Each rejection has a stable [`Reject::code`] that the APIs expose as is;
/// [`Reject::is_retryable`] says whether the same command may succeed later
/// without the client changing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Reject {
    #[error("invalid amount: {0}")]
    InvalidAmount(AmountError),
    #[error("invalid {field}: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("unknown currency {0}")]
    UnknownCurrency(CurrencyCode),
    #[error("currency {code} is registered with scale {registered}, not {requested}")]
    CurrencyConflict {
        code: CurrencyCode,
        registered: u8,
        requested: u8,
    },
    #[error("currency mismatch: account {account} holds {expected}, not {got}")]
    CurrencyMismatch {
        account: AccountId,
        expected: CurrencyCode,
        got: CurrencyCode,
    },
    #[error("unknown account {0} (it may not have reached this region yet)")]
    UnknownAccount(AccountId),
    #[error("account {0} already exists with other content")]
    AccountExists(AccountId),
    #[error("account {0} is frozen")]
    AccountFrozen(AccountId),
    #[error("account {0} is closed")]
    AccountClosed(AccountId),
    #[error("debit and credit are the same account {0}")]
    SameAccount(AccountId),
    #[error("{0}")]
    InsufficientFunds(Box<Shortfall>),
    #[error("the balance of {0} would leave the representable range")]
    BalanceOverflow(AccountId),
    #[error("transfer id {0} was already used with other content")]
    IdempotencyConflict(TransferId),
    #[error("this id is decided by region {origin}; send it there")]
    NotOrigin { origin: RegionId },
    #[error(
        "{target} is decided by region {region}: a post, void or refund of it takes an id \
         of that region"
    )]
    TargetInOtherRegion {
        target: TransferId,
        region: RegionId,
    },
    #[error("transfer {0} not found")]
    TransferNotFound(TransferId),
    #[error("{0} is not a pending transfer")]
    NotPending(TransferId),
    #[error("pending transfer {id} was already {state}")]
    PendingAlreadyResolved { id: TransferId, state: &'static str },
    #[error("pending transfer {0} has expired")]
    PendingExpired(TransferId),
    #[error("pending transfer {id} does not expire before {deadline_ns} ns")]
    PendingNotExpired { id: TransferId, deadline_ns: u64 },
    #[error("posting {requested} exceeds the pending amount {pending}")]
    PostExceedsPending { requested: Money, pending: Money },
    #[error("{id} cannot be refunded: {reason}")]
    NotRefundable {
        id: TransferId,
        reason: &'static str,
    },
    #[error("refund of {requested} exceeds the {refundable} left of payment {payment}")]
    RefundExceedsPayment {
        payment: TransferId,
        requested: Money,
        refundable: Money,
    },
    #[error("timeout must be 1 to {max_ms} ms, got {timeout_ms}")]
    InvalidTimeout { timeout_ms: u64, max_ms: u64 },
    #[error("unknown region {0}")]
    UnknownRegion(RegionId),
    #[error("region {0} cannot release to or grant from itself")]
    SameRegion(RegionId),
    #[error("account {0} has no pool: it may go below zero and spends anywhere")]
    PoolNotApplicable(AccountId),
    #[error("release {seq} from {from} is not in this region's replica yet")]
    ReleaseNotFound { from: RegionId, seq: u64 },
    #[error("grants from {from} go in order: the next is {expected}, not {seq}")]
    GrantOutOfOrder {
        from: RegionId,
        seq: u64,
        expected: u64,
    },
    #[error("stamp {stamp} is older than the region's last stamp {last}")]
    StaleStamp { stamp: Stamp, last: Stamp },
    #[error("member {failed} of a linked chain failed")]
    LinkedChainFailed { failed: usize },
    #[error("the batch ends inside a linked chain")]
    LinkedChainOpen,
}

impl Reject {
    /// Every code [`Reject::code`] can return.
    pub const CODES: &'static [&'static str] = &[
        "INVALID_AMOUNT",
        "INVALID_FIELD",
        "UNKNOWN_CURRENCY",
        "CURRENCY_CONFLICT",
        "CURRENCY_MISMATCH",
        "UNKNOWN_ACCOUNT",
        "ACCOUNT_EXISTS",
        "ACCOUNT_FROZEN",
        "ACCOUNT_CLOSED",
        "SAME_ACCOUNT",
        "INSUFFICIENT_FUNDS",
        "BALANCE_OVERFLOW",
        "IDEMPOTENCY_CONFLICT",
        "NOT_ORIGIN",
        "TARGET_IN_OTHER_REGION",
        "TRANSFER_NOT_FOUND",
        "NOT_PENDING",
        "PENDING_ALREADY_RESOLVED",
        "PENDING_EXPIRED",
        "PENDING_NOT_EXPIRED",
        "POST_EXCEEDS_PENDING",
        "NOT_REFUNDABLE",
        "REFUND_EXCEEDS_PAYMENT",
        "INVALID_TIMEOUT",
        "UNKNOWN_REGION",
        "SAME_REGION",
        "POOL_NOT_APPLICABLE",
        "RELEASE_NOT_FOUND",
        "GRANT_OUT_OF_ORDER",
        "STALE_STAMP",
        "LINKED_CHAIN_FAILED",
        "LINKED_CHAIN_OPEN",
    ];

    /// The stable code of the rejection, as clients see it.
    pub const fn code(&self) -> &'static str {
        match self {
            Reject::InvalidAmount(_) => "INVALID_AMOUNT",
            Reject::InvalidField { .. } => "INVALID_FIELD",
            Reject::UnknownCurrency(_) => "UNKNOWN_CURRENCY",
            Reject::CurrencyConflict { .. } => "CURRENCY_CONFLICT",
            Reject::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            Reject::UnknownAccount(_) => "UNKNOWN_ACCOUNT",
            Reject::AccountExists(_) => "ACCOUNT_EXISTS",
            Reject::AccountFrozen(_) => "ACCOUNT_FROZEN",
            Reject::AccountClosed(_) => "ACCOUNT_CLOSED",
            Reject::SameAccount(_) => "SAME_ACCOUNT",
            Reject::InsufficientFunds(_) => "INSUFFICIENT_FUNDS",
            Reject::BalanceOverflow(_) => "BALANCE_OVERFLOW",
            Reject::IdempotencyConflict(_) => "IDEMPOTENCY_CONFLICT",
            Reject::NotOrigin { .. } => "NOT_ORIGIN",
            Reject::TargetInOtherRegion { .. } => "TARGET_IN_OTHER_REGION",
            Reject::TransferNotFound(_) => "TRANSFER_NOT_FOUND",
            Reject::NotPending(_) => "NOT_PENDING",
            Reject::PendingAlreadyResolved { .. } => "PENDING_ALREADY_RESOLVED",
            Reject::PendingExpired(_) => "PENDING_EXPIRED",
            Reject::PendingNotExpired { .. } => "PENDING_NOT_EXPIRED",
            Reject::PostExceedsPending { .. } => "POST_EXCEEDS_PENDING",
            Reject::NotRefundable { .. } => "NOT_REFUNDABLE",
            Reject::RefundExceedsPayment { .. } => "REFUND_EXCEEDS_PAYMENT",
            Reject::InvalidTimeout { .. } => "INVALID_TIMEOUT",
            Reject::UnknownRegion(_) => "UNKNOWN_REGION",
            Reject::SameRegion(_) => "SAME_REGION",
            Reject::PoolNotApplicable(_) => "POOL_NOT_APPLICABLE",
            Reject::ReleaseNotFound { .. } => "RELEASE_NOT_FOUND",
            Reject::GrantOutOfOrder { .. } => "GRANT_OUT_OF_ORDER",
            Reject::StaleStamp { .. } => "STALE_STAMP",
            Reject::LinkedChainFailed { .. } => "LINKED_CHAIN_FAILED",
            Reject::LinkedChainOpen => "LINKED_CHAIN_OPEN",
        }
    }

    /// Whether the very same command may succeed later: the state it depends
    /// on may change (funds arrive, a replica catches up, a chain partner is
    /// fixed), or it must go to another region.
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self,
            Reject::UnknownAccount(_)
                | Reject::InsufficientFunds(_)
                | Reject::NotOrigin { .. }
                | Reject::TransferNotFound(_)
                | Reject::ReleaseNotFound { .. }
                | Reject::GrantOutOfOrder { .. }
                | Reject::StaleStamp { .. }
                | Reject::LinkedChainFailed { .. }
                | Reject::PendingNotExpired { .. }
        )
    }
}

/// What an insufficient-funds rejection tells: how much was asked, and how
/// much is available here and, as far as this node has seen, everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error(
    "insufficient funds in {account}: asked {requested}, available {available_local} \
     in this region and {available_global} in all regions"
)]
pub struct Shortfall {
    pub account: AccountId,
    pub requested: Money,
    pub available_local: Money,
    pub available_global: Money,
}
