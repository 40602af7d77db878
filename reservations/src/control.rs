//! The state of the global control log: currencies and accounts.

use crate::Decision;
use crate::account::{
    Account, AccountStatus, METADATA_ENTRIES_MAX, METADATA_KEY_BYTES_MAX, METADATA_VALUE_BYTES_MAX,
    Metadata, NewAccount, OWNER_BYTES_MAX,
};
use crate::book::ApplyError;
use crate::command::ControlCommand;
use crate::event::{ControlEvent, ControlEventBody};
use crate::ids::{AccountId, Position};
use crate::money::{Currency, CurrencyCode, SCALE_MAX};
use crate::reject::Reject;
use ledger_hlc::Stamp;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Control {
    currencies: BTreeMap<CurrencyCode, Currency>,
    accounts: FxHashMap<AccountId, Account>,
    /// Pool policies: the floor each region keeps, per account.
    policies: BTreeMap<AccountId, u128>,
    last_stamp: Stamp,
    applied: Option<Position>,
}

impl Default for Control {
    fn default() -> Self {
        Self::new()
    }
}

impl Control {
    /// A control state with the default currencies registered.
    pub fn new() -> Self {
        Self {
            currencies: Currency::defaults()
                .into_iter()
                .map(|currency| (currency.code, currency))
                .collect(),
            accounts: FxHashMap::default(),
            policies: BTreeMap::new(),
            last_stamp: Stamp::ZERO,
            applied: None,
        }
    }

    pub fn currency(&self, code: CurrencyCode) -> Option<Currency> {
        self.currencies.get(&code).copied()
    }

    pub fn currencies(&self) -> impl Iterator<Item = &Currency> {
        self.currencies.values()
    }

    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(&id)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    pub fn applied(&self) -> Option<Position> {
        self.applied
    }

    /// The floor of an account's pool policy, in minor units, if it has one.
    pub fn policy(&self, account: AccountId) -> Option<u128> {
        self.policies.get(&account).copied()
    }

    /// Every pool policy: account and floor.
    pub fn policies(&self) -> impl Iterator<Item = (AccountId, u128)> + '_ {
        self.policies
            .iter()
            .map(|(account, floor)| (*account, *floor))
    }

    pub fn last_stamp(&self) -> Stamp {
        self.last_stamp
    }

    /// Decides a control command. Pure: the state is not changed.
    pub fn decide(
        &self,
        command: &ControlCommand,
        stamp: Stamp,
    ) -> Result<Decision<ControlEvent>, Reject> {
        if stamp < self.last_stamp {
            return Err(Reject::StaleStamp {
                stamp,
                last: self.last_stamp,
            });
        }
        let body = match command {
            ControlCommand::RegisterCurrency(currency) => {
                if currency.scale > SCALE_MAX {
                    return Err(Reject::InvalidField {
                        field: "scale",
                        reason: "at most 18 decimal places",
                    });
                }
                match self.currencies.get(&currency.code) {
                    Some(known) if known == currency => return Ok(Decision::AlreadyApplied),
                    Some(known) => {
                        return Err(Reject::CurrencyConflict {
                            code: known.code,
                            registered: known.scale,
                            requested: currency.scale,
                        });
                    }
                    None => Some(ControlEventBody::CurrencyRegistered(*currency)),
                }
            }
            ControlCommand::CreateAccount(new) => {
                validate_text(&new.owner, "owner", OWNER_BYTES_MAX)?;
                validate_metadata(&new.metadata)?;
                let currency = self
                    .currency(new.currency)
                    .ok_or(Reject::UnknownCurrency(new.currency))?;
                if let Some(existing) = self.accounts.get(&new.id) {
                    return if same_account(existing, new) {
                        Ok(Decision::AlreadyApplied)
                    } else {
                        Err(Reject::AccountExists(new.id))
                    };
                }
                Some(ControlEventBody::AccountCreated(Account {
                    id: new.id,
                    currency,
                    kind: new.kind,
                    status: AccountStatus::Active,
                    owner: new.owner.clone(),
                    metadata: new.metadata.clone(),
                    created: stamp,
                }))
            }
            ControlCommand::Freeze { account } => {
                self.status_change(*account, AccountStatus::Frozen)?
            }
            ControlCommand::Unfreeze { account } => {
                self.status_change(*account, AccountStatus::Active)?
            }
            ControlCommand::Close { account } => {
                self.status_change(*account, AccountStatus::Closed)?
            }
            ControlCommand::SetPoolPolicy { account, floor } => {
                let account = self
                    .accounts
                    .get(account)
                    .ok_or(Reject::UnknownAccount(*account))?;
                let floor = if floor.is_zero() && account.kind.is_bounded() {
                    0
                } else {
                    account.pool_units(*floor)?
                };
                if self.policy(account.id).unwrap_or(0) == floor {
                    None
                } else {
                    Some(ControlEventBody::PoolPolicySet {
                        account: account.id,
                        floor,
                    })
                }
            }
        };
        match body {
            Some(body) => Ok(Decision::Append(ControlEvent { stamp, body })),
            None => Ok(Decision::AlreadyApplied),
        }
    }

    /// `None` when the account already has the status asked for. A closed
    /// account stays closed.
    fn status_change(
        &self,
        account: AccountId,
        status: AccountStatus,
    ) -> Result<Option<ControlEventBody>, Reject> {
        let current = self
            .accounts
            .get(&account)
            .ok_or(Reject::UnknownAccount(account))?
            .status;
        if current == status {
            return Ok(None);
        }
        if current == AccountStatus::Closed {
            return Err(Reject::AccountClosed(account));
        }
        Ok(Some(ControlEventBody::AccountStatusChanged {
            account,
            status,
        }))
    }

    /// Applies the event at `position` of the control log; an event at or
    /// before the last applied position is skipped (`Ok(false)`).
    pub fn apply(&mut self, position: Position, event: &ControlEvent) -> Result<bool, ApplyError> {
        if self.applied.is_some_and(|applied| position <= applied) {
            return Ok(false);
        }
        if event.stamp < self.last_stamp {
            return Err(ApplyError::Control("stamp older than the last applied"));
        }
        match &event.body {
            ControlEventBody::CurrencyRegistered(currency) => {
                if self.currencies.contains_key(&currency.code) {
                    return Err(ApplyError::Control("currency registered twice"));
                }
                self.currencies.insert(currency.code, *currency);
            }
            ControlEventBody::AccountCreated(account) => {
                if self.accounts.contains_key(&account.id) {
                    return Err(ApplyError::Control("account created twice"));
                }
                self.accounts.insert(account.id, account.clone());
            }
            ControlEventBody::AccountStatusChanged { account, status } => {
                let account = self
                    .accounts
                    .get_mut(account)
                    .ok_or(ApplyError::Control("status change of an unknown account"))?;
                account.status = *status;
            }
            ControlEventBody::PoolPolicySet { account, floor } => {
                if !self.accounts.contains_key(account) {
                    return Err(ApplyError::Control("pool policy of an unknown account"));
                }
                if *floor == 0 {
                    self.policies.remove(account);
                } else {
                    self.policies.insert(*account, *floor);
                }
            }
        }
        self.last_stamp = event.stamp;
        self.applied = Some(position);
        Ok(true)
    }
}

fn same_account(existing: &Account, new: &NewAccount) -> bool {
    existing.currency.code == new.currency
        && existing.kind == new.kind
        && existing.owner == new.owner
        && existing.metadata == new.metadata
}

pub(crate) fn validate_text(text: &str, field: &'static str, max: usize) -> Result<(), Reject> {
    if text.len() > max {
        return Err(Reject::InvalidField {
            field,
            reason: "too long",
        });
    }
    if text.chars().any(char::is_control) {
        return Err(Reject::InvalidField {
            field,
            reason: "control characters are not allowed",
        });
    }
    Ok(())
}

pub(crate) fn validate_metadata(metadata: &Metadata) -> Result<(), Reject> {
    if metadata.len() > METADATA_ENTRIES_MAX {
        return Err(Reject::InvalidField {
            field: "metadata",
            reason: "too many entries",
        });
    }
    for (key, value) in metadata {
        if key.is_empty() {
            return Err(Reject::InvalidField {
                field: "metadata",
                reason: "empty key",
            });
        }
        validate_text(key, "metadata", METADATA_KEY_BYTES_MAX)?;
        validate_text(value, "metadata", METADATA_VALUE_BYTES_MAX)?;
    }
    Ok(())
}
