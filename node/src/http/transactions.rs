//! Transactions: top-ups, withdrawals, transfers, payments (held or not),
//! refunds, captures and voids, one per call or many in a batch; and a
//! transaction by id. Each becomes the gRPC API's transfer command and is
//! decided by the same call.

use super::accounts::no_answer;
use super::error::{ApiError, Body, OptionalBody, Path, Query, answered};
use super::model::{
    Accepted, Batch, BatchAnswer, BatchResult, BatchTransaction, Capture, HoldAction, Movement,
    ReadQuery, Refund, Stamp, Transaction, TransactionStatus, Void, Withdrawal,
};
use super::{Http, Refusals};
use crate::wire::BATCH_COMMANDS_MAX;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ledger_proto::v1 as api;
use ledger_proto::v1::ledger_server::Ledger;
use ledger_proto::v1::transfer_command::Kind;
use ledger_reservations::TransferId;
use sha2::Digest;
use tonic::Request;

/// The longest idempotency key taken.
pub const KEY_BYTES_MAX: usize = 128;

/// What a movement endpoint stands for: the names are the billing engine's;
/// the ledger's rules are the same for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MovementKind {
    Topup,
    Transfer,
    Payment,
}

/// Money into the ledger: from an EXTERNAL account (a bank) to a USER one.
#[utoipa::path(
    post, path = "/api/v1/transactions/topup", tag = "transactions", request_body = Movement,
    responses(Answers, Refusals)
)]
pub async fn topup(
    State(http): State<Http>,
    uri: Uri,
    Body(body): Body<Movement>,
) -> Result<Response, ApiError> {
    let command = movement(&body, MovementKind::Topup)?;
    Ok(decide_one(&http, &uri, command).await)
}

/// Money between two accounts.
#[utoipa::path(
    post, path = "/api/v1/transactions/transfer", tag = "transactions", request_body = Movement,
    responses(Answers, Refusals)
)]
pub async fn transfer(
    State(http): State<Http>,
    uri: Uri,
    Body(body): Body<Movement>,
) -> Result<Response, ApiError> {
    let command = movement(&body, MovementKind::Transfer)?;
    Ok(decide_one(&http, &uri, command).await)
}

/// A payment to a SYSTEM (merchant) account; with `holdTimeoutMs` it is
/// held, to be captured or voided.
#[utoipa::path(
    post, path = "/api/v1/transactions/payment", tag = "transactions", request_body = Movement,
    responses(Answers, Refusals)
)]
pub async fn payment(
    State(http): State<Http>,
    uri: Uri,
    Body(body): Body<Movement>,
) -> Result<Response, ApiError> {
    let command = movement(&body, MovementKind::Payment)?;
    Ok(decide_one(&http, &uri, command).await)
}

/// Money out through a payout rail: held, paid by the rail, then posted
/// (or voided if the payout fails or times out). Answered `pending`.
#[utoipa::path(
    post, path = "/api/v1/transactions/withdrawal", tag = "transactions",
    request_body = Withdrawal,
    responses(Answers, Refusals)
)]
pub async fn withdrawal(
    State(http): State<Http>,
    uri: Uri,
    Body(body): Body<Withdrawal>,
) -> Result<Response, ApiError> {
    let command = withdrawal_command(&body)?;
    Ok(decide_one(&http, &uri, command).await)
}

/// Money back from a payment, all or part, once or many times.
#[utoipa::path(
    post, path = "/api/v1/transactions/refund", tag = "transactions", request_body = Refund,
    responses(Answers, Refusals)
)]
pub async fn refund(
    State(http): State<Http>,
    uri: Uri,
    Body(body): Body<Refund>,
) -> Result<Response, ApiError> {
    let command = refund_command(&http, &body)?;
    Ok(decide_one(&http, &uri, command).await)
}

/// Captures a held payment (all of it when no amount is given).
#[utoipa::path(
    post, path = "/api/v1/transactions/{id}/capture", tag = "transactions",
    params(("id" = String, Path, description = "The held payment's transaction id")),
    request_body(content = Option<Capture>, description = "May be left out"),
    responses(Answers, Refusals)
)]
pub async fn capture(
    State(http): State<Http>,
    uri: Uri,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<Capture>,
) -> Result<Response, ApiError> {
    let action = HoldAction {
        transaction_id: id,
        idempotency_key: body.idempotency_key,
        amount: body.amount,
        linked: body.linked,
    };
    let command = hold_command(&http, &action, true)?;
    Ok(decide_one(&http, &uri, command).await)
}

/// Voids a held payment: the money goes back.
#[utoipa::path(
    post, path = "/api/v1/transactions/{id}/void", tag = "transactions",
    params(("id" = String, Path, description = "The held payment's transaction id")),
    request_body(content = Option<Void>, description = "May be left out"),
    responses(Answers, Refusals)
)]
pub async fn void(
    State(http): State<Http>,
    uri: Uri,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<Void>,
) -> Result<Response, ApiError> {
    let action = HoldAction {
        transaction_id: id,
        idempotency_key: body.idempotency_key,
        amount: None,
        linked: body.linked,
    };
    let command = hold_command(&http, &action, false)?;
    Ok(decide_one(&http, &uri, command).await)
}

/// Many transactions in one call, decided in order; linked ones succeed or
/// fail together. Each is answered in its place. A body that cannot be
/// read, or a transaction that can never be one, refuses the whole call
/// and nothing is applied.
#[utoipa::path(
    post, path = "/api/v1/transactions/batch", tag = "transactions", request_body = Batch,
    responses(
        (status = 200, description = "Each transaction's outcome", body = BatchAnswer),
        (status = 307, description = "Sent to the region's leader"),
        Refusals
    )
)]
pub async fn batch(
    State(http): State<Http>,
    uri: Uri,
    Body(body): Body<Batch>,
) -> Result<Response, ApiError> {
    if body.transactions.len() > BATCH_COMMANDS_MAX {
        return Err(ApiError::bad_request(
            "INVALID_REQUEST",
            format!(
                "{} transactions in one call; at most {BATCH_COMMANDS_MAX}",
                body.transactions.len()
            ),
        ));
    }
    let commands = body
        .transactions
        .iter()
        .enumerate()
        .map(|(index, transaction)| {
            batch_command(&http, transaction).map_err(|mut error| {
                error.body.message = format!(
                    "transaction {index}: {}; nothing was applied",
                    error.body.message
                );
                error
            })
        })
        .collect::<Result<Vec<Decided>, ApiError>>()?;
    let mut commands = commands;
    chains_in_one_region(&http, &mut commands);
    let results = decide(&http, &commands).await?;
    // Sent to the leader only when nothing was decided here: a batch
    // partly decided (some of it sent on to other regions) is answered
    // in place, each refusal naming the leader.
    let locations: Vec<Option<String>> = results
        .iter()
        .map(|result| match result {
            api::transfer_result::Result::Error(error) => http.leader_url(error, &uri),
            api::transfer_result::Result::Applied(_) => None,
        })
        .collect();
    if let Some(Some(first)) = locations.first()
        && locations
            .iter()
            .all(|location| location.as_ref() == Some(first))
    {
        return Ok(redirect(first.clone()));
    }
    let results = commands
        .iter()
        .zip(results)
        .map(|(decided, result)| match result {
            api::transfer_result::Result::Applied(applied) => BatchResult {
                transaction_id: decided.command.id.clone(),
                accepted: Some(accepted(decided, &applied)),
                error: None,
            },
            api::transfer_result::Result::Error(error) => BatchResult {
                transaction_id: decided.command.id.clone(),
                accepted: None,
                error: Some(super::error::body_of(&error)),
            },
        })
        .collect();
    Ok(axum::Json(BatchAnswer { results }).into_response())
}

/// A transaction by its id or by the idempotency key it was sent with, from
/// any region's log this node holds.
#[utoipa::path(
    get, path = "/api/v1/transactions/{id}", tag = "transactions",
    params(("id" = String, Path, description = "Its transaction id or idempotency key"), ReadQuery),
    responses((status = 200, description = "The transaction", body = Transaction), Refusals)
)]
pub async fn get(
    State(http): State<Http>,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<axum::Json<Transaction>, ApiError> {
    // A key names its id, or (for a member of a linked chain, a capture,
    // a void or a refund) that id minted into the region it was decided in.
    let named = key_id(&id)?;
    let regions = http.node().replica.layout().regions().len();
    let mut ids = vec![crate::ids::format(named)];
    if !crate::ids::is_full_id(&id) {
        for region in 0..regions {
            let minted = crate::ids::format(TransferId(named).minted_for(region, regions).0);
            if !ids.contains(&minted) {
                ids.push(minted);
            }
        }
    }
    let id = crate::ids::format(named);
    let response = answered(
        http.api
            .lookup_transfers(Request::new(api::LookupTransfersRequest {
                ids,
                strong: query.strong,
            }))
            .await,
    )?;
    let view =
        response.transfers.into_iter().next().ok_or_else(|| {
            ApiError::not_found("TRANSFER_NOT_FOUND", format!("no transaction {id}"))
        })?;
    Ok(axum::Json(transaction(view)))
}

/// A transaction as the events stream and `GET` show it.
pub fn transaction(view: api::TransferView) -> Transaction {
    Transaction {
        transaction_id: view.id,
        region: view.region,
        source_account_id: view.debit,
        destination_account_id: view.credit,
        amount: view.amount,
        currency: view.currency,
        kind: view.kind,
        state: view.state,
        refunded: view.refunded,
        reference: view.reference,
        stamp: Stamp {
            ns: view.stamp_ns.to_string(),
            logical: view.stamp_logical,
            node: view.stamp_node,
        },
    }
}

/// The answers of a transaction accepted, for the document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum Answers {
    /// Accepted: committed in its region's log.
    #[response(status = 201)]
    Accepted(Accepted),
    /// Accepted before: a retry, answered with the first outcome.
    #[response(status = 200)]
    Retried(Accepted),
    /// Sent to the region's leader (the same method and body, there).
    #[response(status = 307)]
    Redirected,
}

/// A command and what it is, once accepted.
struct Decided {
    command: api::TransferCommand,
    status: TransactionStatus,
    /// The hold or payment a capture, void or refund acts on: the command
    /// is decided in that one's region.
    anchor: Option<u128>,
    /// The client gave the id itself (a whole id as its key): it is kept
    /// as it is, never minted into another region.
    pinned: bool,
}

/// Decides one transaction and answers it: 201 when new, 200 for a retry,
/// 307 to the leader, or the refusal.
async fn decide_one(http: &Http, uri: &Uri, decided: Decided) -> Response {
    let commands = [decided];
    let result = match decide(http, &commands).await {
        Ok(results) => results.into_iter().next(),
        Err(error) => return error.into_response(),
    };
    let [decided] = commands;
    match result {
        Some(api::transfer_result::Result::Applied(applied)) => {
            let status = if applied.new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, axum::Json(accepted(&decided, &applied))).into_response()
        }
        Some(api::transfer_result::Result::Error(error)) => http.refusal(&error, uri),
        None => no_answer().into_response(),
    }
}

/// The gRPC API's answer to the commands, one result each.
async fn decide(
    http: &Http,
    commands: &[Decided],
) -> Result<Vec<api::transfer_result::Result>, ApiError> {
    let request = api::CreateTransfersRequest {
        commands: commands.iter().map(|c| c.command.clone()).collect(),
    };
    let response = answered(http.api.create_transfers(Request::new(request)).await)?;
    let results: Vec<_> = response
        .results
        .into_iter()
        .filter_map(|result| result.result)
        .collect();
    if results.len() != commands.len() {
        return Err(no_answer());
    }
    Ok(results)
}

fn accepted(decided: &Decided, applied: &api::Applied) -> Accepted {
    Accepted {
        transaction_id: decided.command.id.clone(),
        status: decided.status,
        new: applied.new,
        region: applied.region,
        index: applied.index,
    }
}

fn redirect(location: String) -> Response {
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(axum::http::header::LOCATION, location)],
    )
        .into_response()
}

/// Every member of a linked chain is decided in one region (a chain is
/// decided all or nothing, by one leader): the region of the hold or
/// payment a member acts on, or else of its first member. The others' ids
/// are minted into it, the same way on every retry of the batch (an id the
/// client gave as its key is kept: a chain of such ids in several regions
/// is refused whole).
fn chains_in_one_region(http: &Http, commands: &mut [Decided]) {
    let mut start = 0;
    while start < commands.len() {
        let end = commands[start..]
            .iter()
            .position(|decided| !decided.command.linked)
            .map_or(commands.len(), |offset| start + offset + 1);
        let chain = &mut commands[start..end];
        let beside = chain.iter().find_map(|decided| decided.anchor).or_else(|| {
            chain
                .first()
                .and_then(|first| crate::ids::parse(&first.command.id).ok())
        });
        if let Some(beside) = beside {
            let free = |decided: &&mut Decided| decided.anchor.is_none() && !decided.pinned;
            for decided in chain.iter_mut().filter(free) {
                if let Ok(id) = crate::ids::parse(&decided.command.id) {
                    decided.command.id = crate::ids::format(minted_beside(http, id, beside));
                }
            }
        }
        start = end;
    }
}

fn batch_command(http: &Http, transaction: &BatchTransaction) -> Result<Decided, ApiError> {
    match transaction {
        BatchTransaction::Topup(body) => movement(body, MovementKind::Topup),
        BatchTransaction::Transfer(body) => movement(body, MovementKind::Transfer),
        BatchTransaction::Payment(body) => movement(body, MovementKind::Payment),
        BatchTransaction::Withdrawal(body) => withdrawal_command(body),
        BatchTransaction::Refund(body) => refund_command(http, body),
        BatchTransaction::Capture(action) => hold_command(http, action, true),
        BatchTransaction::Void(action) => {
            if action.amount.is_some() {
                return Err(ApiError::bad_request(
                    "INVALID_REQUEST",
                    "amount: a void takes none",
                ));
            }
            hold_command(http, action, false)
        }
    }
}

fn movement(body: &Movement, kind: MovementKind) -> Result<Decided, ApiError> {
    if body.hold_timeout_ms.is_some() && kind != MovementKind::Payment {
        return Err(ApiError::bad_request(
            "INVALID_REQUEST",
            "holdTimeoutMs: only a payment can be held",
        ));
    }
    let id = key_id(&body.idempotency_key)?;
    let moved = api::Move {
        debit: body.source_account_id.clone(),
        credit: body.destination_account_id.clone(),
        amount: body.amount.clone(),
        currency: body.currency.clone(),
        reference: body.reference.clone(),
        metadata: body.metadata.clone().into_iter().collect(),
    };
    let (kind, status) = match body.hold_timeout_ms {
        Some(timeout_ms) => (
            Kind::Pending(api::Hold {
                transfer: Some(moved),
                timeout_ms,
            }),
            TransactionStatus::Pending,
        ),
        None => (Kind::Transfer(moved), TransactionStatus::Completed),
    };
    Ok(Decided {
        command: command(id, body.linked, kind),
        status,
        anchor: None,
        pinned: crate::ids::is_full_id(&body.idempotency_key),
    })
}

fn withdrawal_command(body: &Withdrawal) -> Result<Decided, ApiError> {
    let id = key_id(&body.idempotency_key)?;
    let kind = Kind::Withdrawal(api::Withdrawal {
        account: body.source_account_id.clone(),
        external: body.destination_account_id.clone(),
        amount: body.amount.clone(),
        currency: body.currency.clone(),
        destination: body.payout_destination.clone(),
        timeout_ms: body.timeout_ms,
    });
    Ok(Decided {
        command: command(id, body.linked, kind),
        status: TransactionStatus::Pending,
        anchor: None,
        pinned: crate::ids::is_full_id(&body.idempotency_key),
    })
}

/// A refund is decided where its payment was: its id is minted for the
/// payment's region.
fn refund_command(http: &Http, body: &Refund) -> Result<Decided, ApiError> {
    let payment = transaction_id("paymentId", &body.payment_id)?;
    let id = minted_beside(http, key_id(&body.idempotency_key)?, payment);
    let kind = Kind::Refund(api::Refund {
        payment_id: crate::ids::format(payment),
        amount: body.amount.clone(),
        reference: body.reference.clone(),
        metadata: body.metadata.clone().into_iter().collect(),
    });
    Ok(Decided {
        command: command(id, body.linked, kind),
        status: TransactionStatus::Completed,
        anchor: Some(payment),
        pinned: false,
    })
}

/// A capture or a void, decided where its hold was. Without a key, the
/// key is the action and the hold's id, so that a retry is the same.
fn hold_command(http: &Http, action: &HoldAction, capture: bool) -> Result<Decided, ApiError> {
    let hold = transaction_id("transactionId", &action.transaction_id)?;
    let verb = if capture { "capture" } else { "void" };
    let key = match &action.idempotency_key {
        Some(key) => key_id(key)?,
        None => hashed_in(
            b"ledger hold action\0",
            &format!("{verb}/{}", crate::ids::format(hold)),
        ),
    };
    let id = minted_beside(http, key, hold);
    let pending_id = crate::ids::format(hold);
    let (kind, status) = if capture {
        (
            Kind::Post(api::Post {
                pending_id,
                amount: action.amount.clone().unwrap_or_default(),
            }),
            TransactionStatus::Captured,
        )
    } else {
        (
            Kind::Void(api::Void { pending_id }),
            TransactionStatus::Voided,
        )
    };
    Ok(Decided {
        command: command(id, action.linked, kind),
        status,
        anchor: Some(hold),
        pinned: false,
    })
}

fn command(id: u128, linked: bool, kind: Kind) -> api::TransferCommand {
    api::TransferCommand {
        id: crate::ids::format(id),
        linked,
        kind: Some(kind),
    }
}

fn transaction_id(field: &str, text: &str) -> Result<u128, ApiError> {
    crate::wire::transfer_id(field, text)
        .map(|id| id.0)
        .map_err(|error| ApiError::bad_request(error.code(), error.to_string()))
}

/// The transaction id an idempotency key names: a whole id (a UUID or 32
/// hex digits) is itself; any other text is hashed (SHA-256), so the same
/// key names the same transaction on every node.
pub fn key_id(key: &str) -> Result<u128, ApiError> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(ApiError::bad_request(
            "INVALID_REQUEST",
            format!("idempotencyKey: 1 to {KEY_BYTES_MAX} bytes"),
        ));
    }
    if crate::ids::is_full_id(key) {
        return crate::ids::parse(key)
            .map_err(|error| ApiError::bad_request("INVALID_ID", error.to_string()));
    }
    Ok(hashed(key))
}

fn hashed(key: &str) -> u128 {
    hashed_in(b"ledger idempotency key\0", key)
}

/// A hash of `text` in its own domain, so that ids the API derives (a
/// capture's or void's without a key) are never a client key's.
fn hashed_in(domain: &[u8], text: &str) -> u128 {
    let digest = sha2::Sha256::new()
        .chain_update(domain)
        .chain_update(text.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

/// `id` moved to the region that decides `beside` (decision 0009).
fn minted_beside(http: &Http, id: u128, beside: u128) -> u128 {
    let regions = http.node().replica.layout().regions().len();
    let index = TransferId(beside).origin_index(regions);
    TransferId(id).minted_for(index, regions).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_one_id_and_a_whole_id_is_itself() {
        let uuid = "550e8400-e29b-41d4-a716-446655440000";
        assert_eq!(crate::ids::format(key_id(uuid).expect("id")), uuid);
        assert_eq!(
            key_id("550e8400e29b41d4a716446655440000").expect("id"),
            key_id(uuid).expect("id")
        );
        assert_eq!(key_id("unique-key-123").ok(), key_id("unique-key-123").ok());
        assert_ne!(key_id("unique-key-123").ok(), key_id("unique-key-124").ok());
        // A short hex number is a key like any other text, not id 0xabc.
        assert_ne!(key_id("abc").ok(), Some(0xabc));
        assert!(key_id("").is_err());
        assert!(key_id(&"k".repeat(KEY_BYTES_MAX + 1)).is_err());
    }
}
