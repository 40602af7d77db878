use crate::ids::AccountId;
use crate::money::{Currency, CurrencyCode};
use crate::reject::Reject;
use ledger_hlc::Stamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Free-form key/value data attached by clients.
pub type Metadata = BTreeMap<String, String>;

/// Limits on client-supplied text, so no request can grow the state without bound.
pub const OWNER_BYTES_MAX: usize = 256;
pub const REFERENCE_BYTES_MAX: usize = 256;
pub const METADATA_ENTRIES_MAX: usize = 32;
pub const METADATA_KEY_BYTES_MAX: usize = 64;
pub const METADATA_VALUE_BYTES_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountKind {
    /// A customer's account: never below zero.
    User,
    /// The outside world (banks, card networks): may go below zero.
    External,
    /// Revenue and fees held by the operator: never below zero.
    System,
}

impl AccountKind {
    /// Whether the account's balance has a floor of zero, and so whether its
    /// spending is limited by the regional reservation pools.
    pub const fn is_bounded(self) -> bool {
        !matches!(self, AccountKind::External)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Frozen,
    Closed,
}

/// An account as the global control log knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub currency: Currency,
    pub kind: AccountKind,
    pub status: AccountStatus,
    pub owner: String,
    pub metadata: Metadata,
    pub created: Stamp,
}

impl Account {
    /// `amount` as units of this account's reservation pool: refused for an
    /// account without one (EXTERNAL) and for an amount its currency cannot
    /// hold.
    pub(crate) fn pool_units(&self, amount: rust_decimal::Decimal) -> Result<u128, Reject> {
        if !self.kind.is_bounded() {
            return Err(Reject::PoolNotApplicable(self.id));
        }
        self.currency.units(amount).map_err(Reject::InvalidAmount)
    }
}

/// What a client asks for when it opens an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    pub id: AccountId,
    pub currency: CurrencyCode,
    pub kind: AccountKind,
    pub owner: String,
    pub metadata: Metadata,
}
