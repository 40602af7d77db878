//! `GET /api/v1/events`: the transactions of every region's log (or of one
//! region, or of one account) as Server-Sent Events, from where the client
//! left off. Each event's id is the position in every region streamed so
//! far ("0:12,1:4": the next offset of region 0 is 12, of region 1 is 4),
//! so a client that reconnects with `Last-Event-ID` misses nothing and gets
//! nothing twice.

use super::error::{ApiError, Query, answered};
use super::model::{EventsQuery, TransactionEvent};
use super::{Http, Refusals};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use ledger_proto::v1 as api;
use ledger_proto::v1::ledger_server::Ledger;
use std::collections::BTreeMap;
use std::convert::Infallible;
use tonic::Request;

pub const PATH: &str = "/api/v1/events";

/// The next offset to send, per region.
type Cursor = BTreeMap<u32, u64>;

/// Transactions as they are applied here, as Server-Sent Events
/// (`event: transaction`, JSON data). Resumable with `Last-Event-ID`.
#[utoipa::path(
    get, path = "/api/v1/events", tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header,
            description = "The id of the last event received: resume after it")
    ),
    responses(
        (status = 200, description = "A stream of `transaction` events", content_type = "text/event-stream", body = TransactionEvent),
        Refusals
    )
)]
pub async fn stream(
    State(http): State<Http>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let known: Vec<u32> = http
        .node()
        .replica
        .layout()
        .regions()
        .iter()
        .map(|region| u32::from(region.0))
        .collect();
    let regions = match query.region {
        Some(region) if known.contains(&region) => vec![region],
        Some(region) => {
            return Err(ApiError::bad_request(
                "UNKNOWN_REGION",
                format!(
                    "region {region}: the cluster's regions are {}",
                    list(&known)
                ),
            ));
        }
        None => known.clone(),
    };
    let mut cursor = resumed_at(&headers, &known)?;
    let account = query.account.unwrap_or_default();
    if !account.is_empty() {
        super::accounts::parse_account(&account)?;
    }
    let mut streams = Vec::with_capacity(regions.len());
    for region in regions {
        let request = api::StreamTransfersRequest {
            region,
            from_offset: cursor.get(&region).copied().unwrap_or(0),
            account: account.clone(),
        };
        let events = answered(http.api.stream_transfers(Request::new(request)).await)?;
        cursor.entry(region).or_insert(0);
        streams.push(events.map(move |event| (region, event)));
    }
    let events = futures_util::stream::select_all(streams).map(move |(region, event)| {
        Ok(match event {
            Ok(event) => {
                cursor.insert(region, event.offset.saturating_add(1));
                sse_event(region, event, &cursor)
            }
            Err(status) => Event::default()
                .event("error")
                .data(status.message().replace(['\n', '\r'], " ")),
        })
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

fn sse_event(region: u32, event: api::TransferEvent, cursor: &Cursor) -> Event {
    let data = TransactionEvent {
        region,
        offset: event.offset,
        transaction: super::transactions::transaction(event.transfer.unwrap_or_default()),
    };
    let id = cursor
        .iter()
        .map(|(region, next)| format!("{region}:{next}"))
        .collect::<Vec<_>>()
        .join(",");
    Event::default()
        .event("transaction")
        .id(id)
        .json_data(&data)
        .unwrap_or_else(|error| Event::default().event("error").data(error.to_string()))
}

/// Where a client resumes: its `Last-Event-ID`, each region of it one of
/// the cluster's (so an id cannot grow every event the client is sent).
fn resumed_at(headers: &HeaderMap, known: &[u32]) -> Result<Cursor, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(Cursor::new());
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("INVALID_REQUEST", "Last-Event-ID: not ASCII text"))?;
    let cursor = parse_cursor(text)?;
    if let Some(region) = cursor.keys().find(|region| !known.contains(region)) {
        return Err(ApiError::bad_request(
            "UNKNOWN_REGION",
            format!(
                "Last-Event-ID names region {region}: the cluster's regions are {}",
                list(known)
            ),
        ));
    }
    Ok(cursor)
}

fn list(regions: &[u32]) -> String {
    regions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// "0:12,1:4" (empty: from the start).
fn parse_cursor(text: &str) -> Result<Cursor, ApiError> {
    let refuse = || {
        ApiError::bad_request(
            "INVALID_REQUEST",
            format!(
                "Last-Event-ID: {:?} is not an event id (region:offset, comma separated)",
                text.chars().take(64).collect::<String>()
            ),
        )
    };
    let mut cursor = Cursor::new();
    for part in text.split(',').filter(|part| !part.trim().is_empty()) {
        let (region, next) = part.trim().split_once(':').ok_or_else(refuse)?;
        let region = region.parse().map_err(|_| refuse())?;
        let next = next.parse().map_err(|_| refuse())?;
        if cursor.insert(region, next).is_some() {
            return Err(refuse());
        }
    }
    Ok(cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_is_read_back_as_it_was_written() {
        let cursor = parse_cursor("0:12,2:4").expect("an id");
        assert_eq!(cursor, Cursor::from([(0, 12), (2, 4)]));
        assert_eq!(parse_cursor("").expect("empty"), Cursor::new());
        for bad in ["0", "0:x", "a:1", "0:1,0:2", "0:-1"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
