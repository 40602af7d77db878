//! Conversions between the public API's messages and the core's types: the
//! one place where prost types meet the ledger's.

use crate::ids;
use ledger_proto::v1 as api;
use ledger_reservations::{
    AccountId, AccountKind, AccountStatus, Balance, Command, Control, CurrencyCode, Decimal, Item,
    Metadata, Money, NewAccount, PENDING_TIMEOUT_MS_MAX, PendingState, Reject, TransferId,
    TransferKind, TransferRecord, TransferRequest,
};

/// Metadata that marks a pending transfer as a step of a saga.
pub use ledger_engine::{SAGA_KEY, WITHDRAWAL};
pub const DESTINATION_KEY: &str = "destination";
/// How long the payout rail has to pay a withdrawal, in its hold's metadata.
pub const PAYOUT_TIMEOUT_KEY: &str = "payout_timeout_ms";

/// Largest number of accounts or transfers in one call.
pub const BATCH_COMMANDS_MAX: usize = 8_190;

/// A request that cannot be turned into commands at all. Per-command
/// problems are answered per command instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// An amount that is not a plain decimal string, or not one a decimal
    /// holds exactly.
    #[error("{field}: {text:?} is not an amount: {reason}")]
    InvalidAmount {
        field: String,
        text: String,
        reason: &'static str,
    },
}

impl WireError {
    /// The code a client reads, as for a command's own refusal.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::Invalid { .. } => "INVALID_REQUEST",
            WireError::InvalidAmount { .. } => "INVALID_AMOUNT",
        }
    }
}

fn invalid(field: impl Into<String>, reason: impl ToString) -> WireError {
    WireError::Invalid {
        field: field.into(),
        reason: reason.to_string(),
    }
}

pub fn account_id(field: &str, text: &str) -> Result<AccountId, WireError> {
    ids::parse(text)
        .map(AccountId)
        .map_err(|error| invalid(field, error))
}

pub fn transfer_id(field: &str, text: &str) -> Result<TransferId, WireError> {
    ids::parse(text)
        .map(TransferId)
        .map_err(|error| invalid(field, error))
}

fn currency(field: &str, text: &str) -> Result<CurrencyCode, WireError> {
    CurrencyCode::new(text).map_err(|error| invalid(field, error))
}

/// An amount, taken exactly: digits, at most one point with digits on
/// both sides, and an optional leading minus (which the core refuses with
/// its own reason). No exponent, separator, sign `+` or space, and nothing
/// is ever rounded: a string a decimal cannot hold exactly is refused.
/// Whether the currency allows that many places is the core's to say.
pub fn amount(field: &str, text: &str) -> Result<Decimal, WireError> {
    let refuse = |reason| WireError::InvalidAmount {
        field: field.to_owned(),
        text: text.chars().take(64).collect(),
        reason,
    };
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let plain = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if !plain(whole) || fraction.is_some_and(|fraction| !plain(fraction)) {
        return Err(refuse(
            "an amount is digits with at most one decimal point, like 12.50",
        ));
    }
    Decimal::from_str_exact(text).map_err(|_| refuse("more digits than an amount can hold exactly"))
}

fn optional(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn metadata(map: &std::collections::HashMap<String, String>) -> Metadata {
    map.iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// A transfer's metadata from a client: the keys the node's sagas read
/// (a withdrawal's tag) are the node's own, never a client's.
fn client_metadata(
    field: &str,
    map: &std::collections::HashMap<String, String>,
) -> Result<Metadata, WireError> {
    if map.contains_key(SAGA_KEY) {
        return Err(invalid(field, format!("the key {SAGA_KEY:?} is reserved")));
    }
    Ok(metadata(map))
}

pub fn kind(kind: i32) -> Result<AccountKind, WireError> {
    match api::AccountKind::try_from(kind) {
        Ok(api::AccountKind::User) => Ok(AccountKind::User),
        Ok(api::AccountKind::External) => Ok(AccountKind::External),
        Ok(api::AccountKind::System) => Ok(AccountKind::System),
        _ => Err(invalid("kind", "USER, EXTERNAL or SYSTEM")),
    }
}

pub(crate) fn kind_to_wire(kind: AccountKind) -> api::AccountKind {
    match kind {
        AccountKind::User => api::AccountKind::User,
        AccountKind::External => api::AccountKind::External,
        AccountKind::System => api::AccountKind::System,
    }
}

fn status_to_wire(status: AccountStatus) -> api::AccountStatus {
    match status {
        AccountStatus::Active => api::AccountStatus::Active,
        AccountStatus::Frozen => api::AccountStatus::Frozen,
        AccountStatus::Closed => api::AccountStatus::Closed,
    }
}

pub fn new_account(account: &api::NewAccount) -> Result<NewAccount, WireError> {
    Ok(NewAccount {
        id: account_id("id", &account.id)?,
        currency: currency("currency", &account.currency)?,
        kind: kind(account.kind)?,
        owner: account.owner.clone(),
        metadata: metadata(&account.metadata),
    })
}

fn movement(id: TransferId, body: &api::Move) -> Result<TransferRequest, WireError> {
    Ok(TransferRequest {
        id,
        debit: account_id("debit", &body.debit)?,
        credit: account_id("credit", &body.credit)?,
        amount: amount("amount", &body.amount)?,
        currency: currency("currency", &body.currency)?,
        reference: optional(&body.reference),
        metadata: client_metadata("metadata", &body.metadata)?,
    })
}

/// One command of a CreateTransfers call.
pub fn item(command: &api::TransferCommand) -> Result<Item, WireError> {
    use api::transfer_command::Kind;
    let id = transfer_id("id", &command.id)?;
    let command_body = match &command.kind {
        Some(Kind::Transfer(body)) => Command::Transfer(movement(id, body)?),
        Some(Kind::Pending(hold)) => {
            let body = hold
                .transfer
                .as_ref()
                .ok_or_else(|| invalid("pending.transfer", "missing"))?;
            Command::CreatePending {
                transfer: movement(id, body)?,
                timeout_ms: hold.timeout_ms,
            }
        }
        Some(Kind::Post(post)) => Command::PostPending {
            id,
            pending_id: transfer_id("post.pending_id", &post.pending_id)?,
            amount: match post.amount.as_str() {
                "" => None,
                text => Some(amount("post.amount", text)?),
            },
        },
        Some(Kind::Void(void)) => Command::VoidPending {
            id,
            pending_id: transfer_id("void.pending_id", &void.pending_id)?,
        },
        Some(Kind::Refund(refund)) => Command::Refund {
            id,
            payment_id: transfer_id("refund.payment_id", &refund.payment_id)?,
            amount: amount("refund.amount", &refund.amount)?,
            reference: optional(&refund.reference),
            metadata: client_metadata("refund.metadata", &refund.metadata)?,
        },
        Some(Kind::Withdrawal(withdrawal)) => {
            if withdrawal.destination.is_empty() {
                return Err(invalid("withdrawal.destination", "missing"));
            }
            // Half the hold's own timeout at most: a rail's "paid" that
            // comes after the rail's deadline can still be posted.
            let rail_timeout_ms_max = PENDING_TIMEOUT_MS_MAX / 2;
            if withdrawal.timeout_ms == 0 || withdrawal.timeout_ms > rail_timeout_ms_max {
                return Err(invalid(
                    "withdrawal.timeout_ms",
                    format!("must be from 1 to {rail_timeout_ms_max}"),
                ));
            }
            let mut metadata = Metadata::new();
            metadata.insert(DESTINATION_KEY.to_owned(), withdrawal.destination.clone());
            metadata.insert(
                PAYOUT_TIMEOUT_KEY.to_owned(),
                withdrawal.timeout_ms.to_string(),
            );
            // The client's timeout is the rail's: a payout not made by then
            // is refused by the rail, and the hold is voided.
            ledger_engine::withdrawal_hold(TransferRequest {
                id,
                debit: account_id("withdrawal.account", &withdrawal.account)?,
                credit: account_id("withdrawal.external", &withdrawal.external)?,
                amount: amount("withdrawal.amount", &withdrawal.amount)?,
                currency: currency("withdrawal.currency", &withdrawal.currency)?,
                reference: Some(format!("withdrawal to {}", withdrawal.destination)),
                metadata,
            })
        }
        None => {
            return Err(invalid(
                "kind",
                "one of transfer, pending, post, void, refund, withdrawal",
            ));
        }
    };
    Ok(Item {
        command: command_body,
        linked: command.linked,
    })
}

/// A rejection as the API reports it.
pub fn error(reject: &Reject) -> api::Error {
    let mut error = api::Error {
        code: reject.code().to_owned(),
        message: reject.to_string(),
        retryable: reject.is_retryable(),
        ..api::Error::default()
    };
    match reject {
        Reject::NotOrigin { origin } => error.redirect = origin.0.to_string(),
        Reject::InsufficientFunds(shortfall) => {
            error.available_local = shortfall.available_local.to_string();
            error.available_global = shortfall.available_global.to_string();
        }
        _ => {}
    }
    error
}

/// An error of the node rather than of a command.
pub fn node_error(
    code: &str,
    message: impl ToString,
    retryable: bool,
    redirect: String,
) -> api::Error {
    api::Error {
        code: code.to_owned(),
        message: message.to_string(),
        retryable,
        redirect,
        ..api::Error::default()
    }
}

/// A pull that did not bring enough in time: retryable (what was asked
/// may still arrive), with what is available here and in all regions.
pub fn pull_timed_out(shortfall: &ledger_reservations::Shortfall) -> api::Error {
    api::Error {
        code: "PULL_TIMED_OUT".into(),
        message: format!(
            "account {} needs {} here; other regions were asked to release the difference \
             and not enough arrived in time: {} available here, {} in all regions",
            shortfall.account,
            shortfall.requested,
            shortfall.available_local,
            shortfall.available_global
        ),
        retryable: true,
        available_local: shortfall.available_local.to_string(),
        available_global: shortfall.available_global.to_string(),
        ..api::Error::default()
    }
}

pub fn account_view(
    account: &ledger_reservations::Account,
    balance: &Balance,
    floor: Option<u128>,
) -> api::AccountView {
    api::AccountView {
        pool_floor: floor.map_or_else(String::new, |floor| {
            Money {
                units: i128::try_from(floor).unwrap_or(i128::MAX),
                scale: account.currency.scale,
            }
            .to_string()
        }),
        id: ids::format(account.id.0),
        currency: account.currency.code.to_string(),
        kind: kind_to_wire(account.kind) as i32,
        status: status_to_wire(account.status) as i32,
        owner: account.owner.clone(),
        metadata: account
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        regions: balance
            .regions
            .iter()
            .map(|region| api::RegionBalance {
                region: u32::from(region.region.0),
                available: region.available.to_string(),
                held: region.held.to_string(),
                as_of_index: region.as_of.map_or(0, |position| position.index),
            })
            .collect(),
        in_flight: balance.in_flight.to_string(),
        available: balance.available.to_string(),
        total: balance.total.to_string(),
    }
}

/// A transfer record as the API shows it, its amounts in its currency's
/// scale as `control` knows it.
pub fn transfer_view(record: &TransferRecord, control: &Control) -> api::TransferView {
    let transfer = &record.transfer;
    let scale = control
        .currency(transfer.currency)
        .map_or(0, |currency| currency.scale);
    let money = |units: u128| {
        Money {
            units: i128::try_from(units).unwrap_or(i128::MAX),
            scale,
        }
        .to_string()
    };
    let kind = match transfer.kind {
        TransferKind::Posted => "posted",
        TransferKind::Pending { .. } => "pending",
        TransferKind::PostPending { .. } => "post",
        TransferKind::VoidPending { .. } => "void",
        TransferKind::Refund { .. } => "refund",
    };
    let state = match record.pending {
        Some(PendingState::Open { .. }) => "open",
        Some(PendingState::Posted { .. }) => "posted",
        Some(PendingState::Voided) => "voided",
        Some(PendingState::Expired) => "expired",
        None => "",
    };
    let (stamp_ns, stamp_logical, stamp_node) = record.stamp.to_parts();
    api::TransferView {
        id: ids::format(transfer.id.0),
        region: u32::from(record.origin.0),
        debit: ids::format(transfer.debit.0),
        credit: ids::format(transfer.credit.0),
        amount: money(transfer.units),
        currency: transfer.currency.to_string(),
        kind: kind.to_owned(),
        state: state.to_owned(),
        refunded: money(record.refunded),
        reference: transfer.reference.as_deref().unwrap_or_default().to_owned(),
        stamp_ns,
        stamp_logical,
        stamp_node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer_command(amount: &str) -> api::TransferCommand {
        api::TransferCommand {
            id: "1".into(),
            linked: false,
            kind: Some(api::transfer_command::Kind::Transfer(api::Move {
                debit: "a".into(),
                credit: "b".into(),
                amount: amount.into(),
                currency: "USD".into(),
                reference: String::new(),
                metadata: Default::default(),
            })),
        }
    }

    #[test]
    fn commands_convert_and_bad_fields_are_named() {
        let item = item(&transfer_command("12.50")).expect("valid");
        assert!(
            matches!(item.command, Command::Transfer(ref t) if t.amount == Decimal::new(1250, 2))
        );
        for (amount, field) in [("twelve", "amount"), ("", "amount")] {
            let error = super::item(&transfer_command(amount)).expect_err("refused");
            assert!(matches!(error, WireError::InvalidAmount { field: ref f, .. } if f == field));
        }
        let mut no_kind = transfer_command("1");
        no_kind.kind = None;
        assert!(super::item(&no_kind).is_err());
    }

    /// Audit finding 12 and issue 9: an amount is a plain decimal string,
    /// taken exactly or refused, never rounded or read another way.
    #[test]
    fn amounts_are_taken_exactly_or_refused_as_invalid_amounts() {
        for text in [
            "0.99999999999999999999999999999",
            "0.999999999999999999999999999999",
            "1.000000000000000000000000000001",
            "1e2",
            "1E2",
            "1_0.00",
            "1,000.00",
            "+1.00",
            " 1.00",
            "1.00 ",
            "1.",
            ".5",
            ".",
            "-",
            "",
            "--1",
            "1..0",
            "1.0.0",
            "0x10",
            "NaN",
            "inf",
            "\u{0661}",
            "1\u{0}",
            "99999999999999999999999999999999",
        ] {
            let error = amount("amount", text).expect_err(text);
            assert_eq!(error.code(), "INVALID_AMOUNT", "{text:?}: {error}");
            let refused = super::item(&transfer_command(text)).expect_err(text);
            assert_eq!(refused.code(), "INVALID_AMOUNT", "{text:?}");
        }
        for (text, mantissa, scale) in [
            ("12.50", 1250, 2),
            ("0.001", 1, 3),
            ("007", 7, 0),
            ("-1.00", -100, 2),
            (
                "10000000000000000000000000000",
                10_000_000_000_000_000_000_000_000_000,
                0,
            ),
        ] {
            let taken = amount("amount", text).expect(text);
            assert_eq!(
                (taken.mantissa(), taken.scale()),
                (mantissa, scale),
                "{text}"
            );
        }
    }
}
