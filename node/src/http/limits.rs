//! What one node's HTTP server takes at once, and for how long: so that no
//! client, slow or many, can hold the node's memory or its places for
//! answering.
//!
//! - connections: at most [`CONNECTIONS_PER_REQUEST`] times
//!   `http_requests_max`; past it the listener waits (the kernel's backlog
//!   holds the rest);
//! - a request's headers must arrive within [`HEADER_READ_MAX`];
//! - requests being answered: at most `http_requests_max` (an open event
//!   stream is one until its client leaves); past it, 429 at once;
//! - bodies: at most [`BODY_BYTES_MAX`] each and [`BODY_BUDGET_BYTES`] in
//!   all being read and answered; read within [`BODY_READ_MAX`] (408);
//! - an answer within [`ANSWER_MAX`] (503 `DEADLINE_EXCEEDED`: its outcome
//!   is unknown, retry with the same idempotency key);
//! - health probes are always answered, so a loaded node is not taken for
//!   a dead one.

use super::error::ApiError;
use super::{Http, events};
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The largest body a request may have.
pub const BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// The bytes of bodies being read and answered at once.
pub const BODY_BUDGET_BYTES: usize = 256 * 1024 * 1024;
/// How much of a body declared too large is read (and dropped) before the
/// refusal, so that the client can read it.
pub const BODY_DRAIN_MAX: usize = 64 * 1024 * 1024;
pub const HEADER_READ_MAX: Duration = Duration::from_secs(10);
pub const BODY_READ_MAX: Duration = Duration::from_secs(10);
pub const ANSWER_MAX: Duration = Duration::from_secs(60);
pub const CONNECTIONS_PER_REQUEST: usize = 4;

/// The places a node's HTTP server shares among its requests.
#[derive(Clone)]
pub struct Limits {
    requests: Arc<Semaphore>,
    requests_max: usize,
    bodies: Arc<Semaphore>,
}

impl Limits {
    pub fn new(requests_max: usize) -> Self {
        Self {
            requests: Arc::new(Semaphore::new(requests_max)),
            requests_max,
            bodies: Arc::new(Semaphore::new(BODY_BUDGET_BYTES)),
        }
    }
}

/// Serves `router` on `listener` until the task is dropped: HTTP/1.1 and
/// HTTP/2, headers read within [`HEADER_READ_MAX`], connections capped.
pub async fn serve(router: axum::Router, listener: tokio::net::TcpListener, requests_max: usize) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let connections = Arc::new(Semaphore::new(
        requests_max.saturating_mul(CONNECTIONS_PER_REQUEST),
    ));
    loop {
        let Ok(place) = connections.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, say: wait a little rather than spin.
                tracing::warn!(%error, "the HTTP listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_MAX);
            builder.http2().timer(TokioTimer::new());
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "an HTTP connection ended");
            }
            drop(place);
        });
    }
}

/// The middleware that keeps every limit above but the connections'.
pub async fn limit(State(http): State<Http>, request: Request, next: Next) -> Response {
    let limits = &http.limits;
    let path = request.uri().path();
    if path.starts_with("/health/") {
        return next.run(request).await;
    }
    let stream = path == events::PATH;
    let Ok(place) = limits.requests.clone().try_acquire_owned() else {
        return too_many(format!(
            "this node answers at most {} requests at once (an open event stream is one)",
            limits.requests_max
        ))
        .into_response();
    };
    let (request, budget) = match read_body(limits, request).await {
        Ok(read) => read,
        Err(error) => return error.into_response(),
    };
    if stream {
        drop(budget);
        // A stream's body holds the place until the client goes away.
        let (parts, body) = next.run(request).await.into_parts();
        let body = body.into_data_stream().map(move |chunk| {
            let _held = &place;
            chunk
        });
        return Response::from_parts(parts, axum::body::Body::from_stream(body));
    }
    let answer = tokio::time::timeout(ANSWER_MAX, next.run(request)).await;
    drop((place, budget));
    answer.unwrap_or_else(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "DEADLINE_EXCEEDED",
            format!(
                "no answer within {} s; the outcome is not known: retry with the same idempotency key",
                ANSWER_MAX.as_secs()
            ),
        )
        .into_response()
    })
}

/// Reads the body whole, within its share of the budget and in time; the
/// share is held until the answer.
async fn read_body(
    limits: &Limits,
    request: Request,
) -> Result<(Request, tokio::sync::OwnedSemaphorePermit), ApiError> {
    // A body of unknown length (chunked) may be as large as any.
    let declared = request
        .body()
        .size_hint()
        .upper()
        .map_or(BODY_BYTES_MAX as u64, |n| n);
    if declared > BODY_BYTES_MAX as u64 {
        // Read and dropped (up to a bound), so that the client, still
        // sending, is not cut off before it can read the refusal.
        let _ = tokio::time::timeout(BODY_READ_MAX, drain(request.into_body())).await;
        return Err(too_large());
    }
    let share = u32::try_from(declared).unwrap_or(u32::MAX);
    let Ok(budget) = limits.bodies.clone().try_acquire_many_owned(share) else {
        return Err(too_many(format!(
            "this node reads at most {BODY_BUDGET_BYTES} bytes of bodies at once"
        )));
    };
    let (parts, body) = request.into_parts();
    let limit = usize::try_from(declared).unwrap_or(BODY_BYTES_MAX);
    let bytes = match tokio::time::timeout(BODY_READ_MAX, axum::body::to_bytes(body, limit)).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                format!(
                    "the body did not arrive within {} s",
                    BODY_READ_MAX.as_secs()
                ),
            ));
        }
        Ok(Err(error)) => {
            let too_long = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            return Err(if too_long {
                too_large()
            } else {
                ApiError::bad_request(
                    "INVALID_REQUEST",
                    format!("the body cannot be read: {error}"),
                )
            });
        }
        Ok(Ok(bytes)) => bytes,
    };
    Ok((
        Request::from_parts(parts, axum::body::Body::from(bytes)),
        budget,
    ))
}

/// Reads a body and drops it, up to [`BODY_DRAIN_MAX`] bytes.
async fn drain(mut body: axum::body::Body) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while seen <= BODY_DRAIN_MAX {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |data| data.len()),
            _ => return,
        }
    }
}

pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("the body is larger than {BODY_BYTES_MAX} bytes"),
    )
}

fn too_many(what: String) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        format!("{what}; retry shortly"),
    )
}
