//! What one node's HTTP server takes at once, and for how long: so that no
//! client, slow or many, can hold the node's memory or its places for
//! answering.
//!
//! - connections: at most [`CONNECTIONS_PER_REQUEST`] times
//!   `http_requests_max` (raise the process's open-files limit past it);
//!   past it the listener waits. A connection must finish its TLS
//!   handshake (with TLS on) and then send its first request within
//!   [`HEADER_READ_MAX`] each, an HTTP/1 request's headers within it too,
//!   an HTTP/2 connection answers pings, and one that sends no new request
//!   for [`IDLE_MAX`] is shut down once what it has in flight ends;
//! - requests being answered: at most `http_requests_max`; past it, 429 at
//!   once, never a queue;
//! - event streams: at most a quarter of `http_requests_max` (at least
//!   one), apart from the requests, each for at most [`STREAM_MAX`] (the
//!   client resumes with `Last-Event-ID`);
//! - bodies: at most [`BODY_BYTES_MAX`] each and [`BODY_BUDGET_BYTES`] in
//!   all being read and answered; read within [`BODY_READ_MAX`] (408);
//! - an answer within [`ANSWER_MAX`] (503 `DEADLINE_EXCEEDED`);
//! - health probes are always answered, so a loaded node is not taken for
//!   a dead one.
//!
//! Not here: fairness between clients (one client may take every place);
//! that belongs in front of the node (a gateway or load balancer) or with
//! authenticated clients.

use super::error::ApiError;
use super::{Http, events};
use crate::auth;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

/// The largest body a request may have (a batch of 8,190 transfers is
/// about 2 MiB).
pub const BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The bytes of bodies being read and answered at once.
pub const BODY_BUDGET_BYTES: usize = 512 * 1024 * 1024;
/// How much of a body declared too large is read (and dropped) before the
/// refusal, so that the client can read it; a larger one is cut off.
pub const BODY_DRAIN_MAX: usize = 16 * 1024 * 1024;
pub const HEADER_READ_MAX: Duration = Duration::from_secs(10);
pub const BODY_READ_MAX: Duration = Duration::from_secs(10);
pub const ANSWER_MAX: Duration = Duration::from_secs(60);
pub const STREAM_MAX: Duration = Duration::from_secs(3600);
pub const CONNECTIONS_PER_REQUEST: usize = 2;
const HTTP2_PING_EVERY: Duration = Duration::from_secs(30);
/// How long a connection may go without a new request before it is shut
/// down (gracefully: what it has in flight ends first).
pub const IDLE_MAX: Duration = Duration::from_secs(60);

/// The places a node's HTTP server shares among its requests.
#[derive(Clone)]
pub struct Limits {
    requests: Arc<Semaphore>,
    requests_max: usize,
    streams: Arc<Semaphore>,
    streams_max: usize,
    bodies: Arc<Semaphore>,
}

impl Limits {
    pub fn new(requests_max: usize) -> Self {
        let streams_max = (requests_max / 4).max(1);
        Self {
            requests: Arc::new(Semaphore::new(requests_max)),
            requests_max,
            streams: Arc::new(Semaphore::new(streams_max)),
            streams_max,
            bodies: Arc::new(Semaphore::new(BODY_BUDGET_BYTES)),
        }
    }
}

/// Serves `router` on `listener` (HTTPS with `tls`) until the task is
/// dropped, and with it every connection it opened (so nothing holds the
/// node after it stops).
pub async fn serve(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    requests_max: usize,
    tls: Option<TlsAcceptor>,
) {
    let connections = Arc::new(Semaphore::new(
        requests_max.saturating_mul(CONNECTIONS_PER_REQUEST),
    ));
    let mut open = tokio::task::JoinSet::new();
    loop {
        while open.try_join_next().is_some() {}
        let Ok(place) = connections.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // One connection that failed on the way in.
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Out of descriptors, say: wait a little rather than spin.
                tracing::warn!(%error, "the HTTP listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        open.spawn(connection(router.clone(), stream, tls.clone(), place));
    }
}

fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// One connection, HTTP/1.1 or HTTP/2 (over TLS with `tls`), its place
/// held until it ends.
async fn connection(
    router: axum::Router,
    stream: tokio::net::TcpStream,
    tls: Option<TlsAcceptor>,
    place: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_connection(router, stream).await,
        // A handshake is bounded as the headers are.
        Some(tls) => match tokio::time::timeout(HEADER_READ_MAX, tls.accept(stream)).await {
            Ok(Ok(stream)) => serve_connection(router, stream).await,
            Ok(Err(error)) => tracing::debug!(%error, "a TLS handshake failed"),
            Err(_) => tracing::debug!("a TLS handshake took too long"),
        },
    }
    drop(place);
}

/// When a connection last sent a request.
struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last request.
    last_ms: AtomicU64,
    first: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            first: tokio::sync::Notify::new(),
        }
    }

    fn request(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
        self.first.notify_one();
    }

    /// How long since the last request.
    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }
}

/// Serves HTTP on one connection until it ends. Its first request must
/// arrive within [`HEADER_READ_MAX`]: hyper's own header timeout starts
/// only once it knows the protocol, and it waits for the bytes that say
/// which without end (a connection that sends nothing, or part of the
/// HTTP/2 preface, would hold its place for good). After that, one that
/// sends no new request for [`IDLE_MAX`] is shut down gracefully (what it
/// has in flight, an event stream say, runs to its end): an HTTP/2
/// connection that answers pings would otherwise hold its place for good.
async fn serve_connection<Io>(router: axum::Router, io: Io)
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper::service::Service as _;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let activity = Arc::new(Activity::new());
    let seen = activity.clone();
    let inner = hyper_util::service::TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |request| {
        seen.request();
        inner.call(request)
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_PING_EVERY)
        .keep_alive_timeout(HEADER_READ_MAX);
    let serving = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(serving);
    let ended = tokio::select! {
        ended = &mut serving => Some(ended),
        seen = tokio::time::timeout(HEADER_READ_MAX, activity.first.notified()) => match seen {
            Ok(()) => None,
            Err(_) => {
                tracing::debug!("an HTTP connection sent no request in time");
                return;
            }
        },
    };
    let ended = match ended {
        Some(ended) => ended,
        None => loop {
            let wait = IDLE_MAX.saturating_sub(activity.idle());
            tokio::select! {
                ended = &mut serving => break ended,
                () = tokio::time::sleep(wait) => {
                    if activity.idle() >= IDLE_MAX {
                        serving.as_mut().graceful_shutdown();
                        break serving.await;
                    }
                }
            }
        },
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "an HTTP connection ended");
    }
}

/// The middleware that keeps every limit above but the connections', and
/// counts every answer in the metrics: a route's by its method and
/// template (the guard's labels), any other (no such route, or refused
/// here before routing) as `other` and `none`.
pub async fn limit(State(http): State<Http>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let answer = limited(&http, request, next).await;
    let (method, template) = match answer.extensions().get::<super::guard::Routed>() {
        Some(routed) => (routed.method.as_str(), routed.template.as_str()),
        None => ("other", "none"),
    };
    crate::metrics::http_answered(
        method,
        template,
        answer.status().as_u16(),
        started.elapsed(),
    );
    answer
}

async fn limited(http: &Http, request: Request, next: Next) -> Response {
    let limits = &http.limits;
    let path = request.uri().path();
    if path.starts_with("/health/") {
        return next.run(request).await;
    }
    // A request with a body from a caller no key names is refused before
    // it takes a place or has its body read (the route's own rule is the
    // guard's, once routed; no public route takes a body).
    if request.body().size_hint().exact() != Some(0) {
        let authorization = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .map(|value| value.as_bytes());
        if let Err(denied) = http.node().auth.check(Some(auth::ANY_ROLE), authorization) {
            return super::guard::refusal(&denied);
        }
    }
    // Only a GET of the events is a stream; another method there is
    // answered 405 like any request.
    let stream = path == events::PATH && request.method() == Method::GET;
    let (places, max, what) = if stream {
        (&limits.streams, limits.streams_max, "event streams")
    } else {
        (&limits.requests, limits.requests_max, "requests")
    };
    let Ok(place) = places.clone().try_acquire_owned() else {
        return too_many(format!("this node answers at most {max} {what} at once")).into_response();
    };
    let (request, budget) = match read_body(limits, request).await {
        Ok(read) => read,
        Err(error) => return error.into_response(),
    };
    if stream {
        drop(budget);
        // A stream holds its place until the client goes away, or for
        // STREAM_MAX: then it ends, and the client resumes where it was.
        let (parts, body) = next.run(request).await.into_parts();
        let body = body
            .into_data_stream()
            .take_until(tokio::time::sleep(STREAM_MAX))
            .map(move |chunk| {
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
                "no answer within {} s, and the outcome is not known: a transaction may be \
                 retried with the same idempotency key; read the pools before repeating a \
                 rebalance",
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
        // Read and dropped (up to a bound), so that a client still sending
        // is not cut off before it can read the refusal; one that waits
        // for 100-continue is refused before it sends.
        let waits = request.headers().contains_key(axum::http::header::EXPECT);
        if !waits && declared <= BODY_DRAIN_MAX as u64 {
            let _ = tokio::time::timeout(BODY_READ_MAX, drain(request.into_body())).await;
        }
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
