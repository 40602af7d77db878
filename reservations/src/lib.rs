//! The deterministic ledger core.
//!
//! Plain data and pure functions: no I/O, no clock reads, no randomness. Time
//! arrives as the HLC [`Stamp`] each decision is made with.
//!
//! - [`Ledger::decide`] and [`Ledger::decide_batch`] turn commands into events
//!   (or typed [`Reject`]ions) without changing anything;
//! - [`Ledger::apply`] applies an event of a region's log, [`Ledger::apply_control`]
//!   one of the global control log;
//! - [`Ledger::validate`] checks every invariant from scratch.
//!
//! Each region keeps, per account, a reservation pool: `available` (spendable
//! there without asking another region) and `held` (by pending transfers). A
//! region's pools are a function of its own log; releases move reservation
//! between regions through the logs, and grants take them in exactly once.

mod account;
mod admit;
#[cfg(feature = "chaos-bite")]
pub mod bite;
mod book;
mod command;
mod control;
mod decide;
mod event;
mod history;
mod ids;
mod ledger;
mod money;
mod region;
mod reject;

pub use account::{
    Account, AccountKind, AccountStatus, METADATA_ENTRIES_MAX, METADATA_KEY_BYTES_MAX,
    METADATA_VALUE_BYTES_MAX, Metadata, NewAccount, OWNER_BYTES_MAX, REFERENCE_BYTES_MAX,
};
pub use admit::{Admission, AdmissionScratch};
pub use book::{ApplyError, Flow, PendingState, Pool, Pull, TransferRecord};
pub use command::{Command, ControlCommand, Item, PENDING_TIMEOUT_MS_MAX, TransferRequest};
pub use control::Control;
pub use event::{
    ControlEvent, ControlEventBody, Event, EventBody, Release, SAGA_KEY, Transfer, TransferKind,
    WITHDRAWAL,
};
pub use history::{HistoryEntry, HistoryRead, Movement};
pub use ids::{AccountId, Position, RegionId, TransferId};
pub use ledger::{Balance, Batch, Grants, LayoutError, Ledger, Outcome, RegionBalance, Scratch};
pub use ledger_hlc::Stamp;
pub use money::{
    AMOUNT_UNITS_MAX, AmountError, BALANCE_UNITS_MAX, Currency, CurrencyCode, CurrencyCodeError,
    Money, REGION_CREDIT_UNITS_MAX, REGIONS_MAX, SCALE_MAX,
};
pub use region::{RecordsSince, RegionState};
pub use reject::{Reject, Shortfall};
pub use rust_decimal::Decimal;

/// What deciding a command comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<E> {
    /// Append this event to the log.
    Append(E),
    /// The very same command was applied before: nothing to append, and the
    /// answer is the record already kept.
    AlreadyApplied,
}
