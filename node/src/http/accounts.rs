//! Accounts: open one, read it, its balance per region and its history.

use super::error::{ApiError, Body, Path, Query, answered};
use super::model::{
    self, Account, AccountStatus, AccountType, Balance, CreatedAccount, History, HistoryQuery,
    NewAccount, ReadQuery,
};
use super::{Http, Refusals};
use crate::wire;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ledger_proto::v1 as api;
use ledger_proto::v1::ledger_server::Ledger;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use tonic::Request;

/// The metadata key that keeps an account's `ownerType`.
pub const OWNER_TYPE_KEY: &str = "ownerType";

/// Opens an account (through the global control log, so every region
/// knows it). Opening it again with the same content is answered 200.
#[utoipa::path(
    post, path = "/api/v1/accounts", tag = "accounts", request_body = NewAccount,
    responses(
        (status = 201, description = "Opened", body = CreatedAccount),
        (status = 200, description = "It existed with the same content", body = CreatedAccount),
        (status = 307, description = "Sent to the control log's leader"),
        Refusals
    )
)]
pub async fn create(
    State(http): State<Http>,
    uri: Uri,
    Body(body): Body<NewAccount>,
) -> Result<Response, ApiError> {
    if body.metadata.contains_key(OWNER_TYPE_KEY) {
        return Err(ApiError::bad_request(
            "INVALID_REQUEST",
            format!("metadata: {OWNER_TYPE_KEY:?} is kept from ownerType; use that field"),
        ));
    }
    let id = match &body.id {
        Some(id) => crate::ids::format(parse_account(id)?),
        None => crate::ids::format(crate::ids::fresh()),
    };
    let mut metadata: std::collections::HashMap<String, String> = body
        .metadata
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if !body.owner_type.is_empty() {
        metadata.insert(OWNER_TYPE_KEY.to_owned(), body.owner_type.clone());
    }
    let account = api::NewAccount {
        id: id.clone(),
        currency: body.currency.clone(),
        kind: kind_to_wire(body.kind) as i32,
        owner: body.owner_id.clone(),
        metadata,
    };
    let response = answered(
        http.api
            .create_accounts(Request::new(api::CreateAccountsRequest {
                accounts: vec![account],
            }))
            .await,
    )?;
    let created = match response.results.into_iter().next().and_then(|r| r.result) {
        Some(api::account_result::Result::Created(created)) => created,
        Some(api::account_result::Result::Error(error)) => return Ok(http.refusal(&error, &uri)),
        None => return Err(no_answer()),
    };
    let answer = CreatedAccount {
        id,
        owner_id: body.owner_id,
        owner_type: body.owner_type,
        currency: body.currency,
        kind: body.kind,
        metadata: body.metadata,
        created,
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(answer)).into_response())
}

/// An account with its balance, in all and per region.
#[utoipa::path(
    get, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "The account's id"), ReadQuery),
    responses((status = 200, description = "The account", body = Account), Refusals)
)]
pub async fn get(
    State(http): State<Http>,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<axum::Json<Account>, ApiError> {
    let (view, watermarks) = look_up(&http, &id, query.strong).await?;
    let (owner_type, metadata) = split_metadata(&view.metadata);
    Ok(axum::Json(Account {
        held: held(&view.regions),
        id: view.id,
        owner_id: view.owner,
        owner_type,
        currency: view.currency,
        kind: kind_of(view.kind),
        status: status_of(view.status),
        metadata,
        balance: view.total,
        available: view.available,
        in_flight: view.in_flight,
        pool_floor: (!view.pool_floor.is_empty()).then_some(view.pool_floor),
        regions: regions(&view.regions),
        watermarks,
    }))
}

/// An account's balance, with the per-region figures and the position of
/// each region's log they are as of.
#[utoipa::path(
    get, path = "/api/v1/accounts/{id}/balance", tag = "accounts",
    params(("id" = String, Path, description = "The account's id"), ReadQuery),
    responses((status = 200, description = "Its balance", body = Balance), Refusals)
)]
pub async fn balance(
    State(http): State<Http>,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<axum::Json<Balance>, ApiError> {
    let (view, watermarks) = look_up(&http, &id, query.strong).await?;
    Ok(axum::Json(Balance {
        held: held(&view.regions),
        account_id: view.id,
        currency: view.currency,
        status: status_of(view.status),
        balance: view.total,
        available: view.available,
        in_flight: view.in_flight,
        regions: regions(&view.regions),
        watermarks,
    }))
}

/// Every movement of an account in every region, in stamp order, with the
/// balance after each.
#[utoipa::path(
    get, path = "/api/v1/accounts/{id}/history", tag = "accounts",
    params(("id" = String, Path, description = "The account's id"), HistoryQuery),
    responses((status = 200, description = "Its movements", body = History), Refusals)
)]
pub async fn history(
    State(http): State<Http>,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<History>, ApiError> {
    let account = crate::ids::format(parse_account(&id)?);
    let (as_of_ns, as_of_logical, as_of_node) = match &query.as_of {
        Some(text) => parse_stamp(text)?,
        None => (0, 0, 0),
    };
    let response = answered(
        http.api
            .account_history(Request::new(api::AccountHistoryRequest {
                account: account.clone(),
                from_ns: query.from_ns,
                to_ns: query.to_ns,
                as_of_ns,
                as_of_logical,
                as_of_node,
                limit: query.limit,
            }))
            .await,
    )?;
    Ok(axum::Json(History {
        account_id: account,
        entries: response.entries.into_iter().map(history_entry).collect(),
        balance: response.balance,
        held: response.held,
        truncated: response.truncated,
        watermarks: watermarks(&response.watermarks),
    }))
}

/// One account as the gRPC API reads it, or 404.
pub async fn look_up(
    http: &Http,
    id: &str,
    strong: bool,
) -> Result<(api::AccountView, Vec<model::Watermark>), ApiError> {
    let id = crate::ids::format(parse_account(id)?);
    let response = answered(
        http.api
            .lookup_accounts(Request::new(api::LookupAccountsRequest {
                ids: vec![id.clone()],
                strong,
            }))
            .await,
    )?;
    let watermarks = watermarks(&response.watermarks);
    let view = response
        .accounts
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("UNKNOWN_ACCOUNT", format!("no account {id}")))?;
    Ok((view, watermarks))
}

pub fn parse_account(text: &str) -> Result<u128, ApiError> {
    wire::account_id("id", text)
        .map(|id| id.0)
        .map_err(|error| ApiError::bad_request(error.code(), error.to_string()))
}

/// `ns`, `ns.logical` or `ns.logical.node`.
fn parse_stamp(text: &str) -> Result<(u64, u32, u64), ApiError> {
    let refuse = || {
        ApiError::bad_request(
            "INVALID_REQUEST",
            format!("asOf: {text:?} is not a stamp: ns, ns.logical or ns.logical.node"),
        )
    };
    let mut parts = text.split('.');
    let ns = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(refuse)?;
    let logical = match parts.next() {
        Some(part) => part.parse().map_err(|_| refuse())?,
        None => 0,
    };
    let node = match parts.next() {
        Some(part) => part.parse().map_err(|_| refuse())?,
        None => 0,
    };
    if parts.next().is_some() {
        return Err(refuse());
    }
    Ok((ns, logical, node))
}

pub fn watermarks(marks: &[api::Watermark]) -> Vec<model::Watermark> {
    marks
        .iter()
        .map(|mark| model::Watermark {
            region: mark.region,
            applied_index: mark.applied_index,
            age_ms: mark.age_ms,
        })
        .collect()
}

pub fn regions(balances: &[api::RegionBalance]) -> Vec<model::RegionBalance> {
    balances
        .iter()
        .map(|region| model::RegionBalance {
            region: region.region,
            available: region.available.clone(),
            held: region.held.clone(),
            as_of_index: region.as_of_index,
        })
        .collect()
}

/// What is held in all regions: the sum of the regions' figures, each a
/// decimal in the account's currency (so the sum is exact).
fn held(balances: &[api::RegionBalance]) -> String {
    balances
        .iter()
        .filter_map(|region| region.held.parse::<Decimal>().ok())
        .fold(Decimal::ZERO, |sum, held| sum.saturating_add(held))
        .to_string()
}

/// The owner type kept in an account's metadata, and the rest of it.
fn split_metadata(
    metadata: &std::collections::HashMap<String, String>,
) -> (String, BTreeMap<String, String>) {
    let mut rest: BTreeMap<String, String> = metadata
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let owner_type = rest.remove(OWNER_TYPE_KEY).unwrap_or_default();
    (owner_type, rest)
}

fn history_entry(entry: api::HistoryEntry) -> model::HistoryEntry {
    model::HistoryEntry {
        stamp: model::Stamp {
            ns: entry.stamp_ns.to_string(),
            logical: entry.stamp_logical,
            node: entry.stamp_node,
        },
        region: entry.region,
        transaction_id: entry.transfer_id,
        movement: entry.movement,
        counterparty_id: entry.counterparty,
        balance_change: entry.balance_change,
        held_change: entry.held_change,
        balance: entry.balance,
        held: entry.held,
    }
}

fn kind_to_wire(kind: AccountType) -> api::AccountKind {
    match kind {
        AccountType::User => api::AccountKind::User,
        AccountType::External => api::AccountKind::External,
        AccountType::System => api::AccountKind::System,
    }
}

fn kind_of(kind: i32) -> AccountType {
    match api::AccountKind::try_from(kind) {
        Ok(api::AccountKind::External) => AccountType::External,
        Ok(api::AccountKind::System) => AccountType::System,
        _ => AccountType::User,
    }
}

pub fn status_of(status: i32) -> AccountStatus {
    match api::AccountStatus::try_from(status) {
        Ok(api::AccountStatus::Frozen) => AccountStatus::Frozen,
        Ok(api::AccountStatus::Closed) => AccountStatus::Closed,
        _ => AccountStatus::Active,
    }
}

/// The gRPC API answered without a result for each thing asked: a fault
/// of this node, not of the request.
pub fn no_answer() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "the node answered without a result; its log says more",
    )
}
