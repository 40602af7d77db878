//! Who may call a gRPC server: a [`Gate`] decides each call from its path
//! and headers before any service sees it, and [`GateLayer`] puts one in
//! front of a tonic server. The node's API and its Raft port use the same
//! one; what a caller must show is the node's business ([`Gate`]), this is
//! only where it is asked.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::codegen::{BoxFuture, Service};
use tonic::metadata::{Ascii, MetadataValue};
use tracing::Instrument;

/// The `authorization` value that shows `key`: `Bearer <key>`.
pub fn bearer(key: &str) -> Result<MetadataValue<Ascii>, InvalidKey> {
    if key.is_empty() || !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(InvalidKey);
    }
    let mut value: MetadataValue<Ascii> =
        format!("Bearer {key}").parse().map_err(|_| InvalidKey)?;
    // Left out of debug output and of HPACK's tables.
    value.set_sensitive(true);
    Ok(value)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a key is printable ASCII with no spaces, and not empty")]
pub struct InvalidKey;

/// Decides whether a call to `path` (`/package.Service/Method`) with these
/// headers goes through; the refusal is the call's answer. `certified`:
/// the caller showed a TLS certificate this server verified.
pub trait Gate: Send + Sync + 'static {
    fn admit(&self, path: &str, headers: &HeaderMap, certified: bool) -> Result<(), tonic::Status>;

    /// Told of every call once its answer's headers are ready (a refusal
    /// of [`Gate::admit`]'s too): its code (`Ok` unless the headers carry
    /// another; a stream's later end is not seen) and how long it took.
    fn answered(&self, _path: &str, _code: tonic::Code, _elapsed: Duration) {}

    /// The span an admitted call runs in (none by default).
    fn span(&self, _path: &str, _headers: &HeaderMap) -> tracing::Span {
        tracing::Span::none()
    }
}

/// Lets every call through: a cluster with authentication off.
pub struct Open;

impl Gate for Open {
    fn admit(&self, _path: &str, _headers: &HeaderMap, _: bool) -> Result<(), tonic::Status> {
        Ok(())
    }
}

/// A tower layer that asks its [`Gate`] before each call.
#[derive(Clone)]
pub struct GateLayer {
    gate: Arc<dyn Gate>,
}

impl GateLayer {
    pub fn new(gate: Arc<dyn Gate>) -> Self {
        Self { gate }
    }

    /// Lets every call through.
    pub fn open() -> Self {
        Self::new(Arc::new(Open))
    }
}

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            gate: self.gate.clone(),
            inner,
        }
    }
}

/// A service behind a [`Gate`].
#[derive(Clone)]
pub struct Gated<S> {
    gate: Arc<dyn Gate>,
    inner: S,
}

impl<S, B> Service<Request<B>> for Gated<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        let gate = self.gate.clone();
        match gate.admit(&path, request.headers(), certified(request.extensions())) {
            Ok(()) => {
                let span = gate.span(&path, request.headers());
                let answer = {
                    let _entered = span.enter();
                    self.inner.call(request)
                };
                // A call its caller gave up on is dropped before it is
                // answered: told as CANCELLED.
                let mut pending = Pending {
                    gate,
                    path,
                    started,
                    answered: false,
                };
                Box::pin(
                    async move {
                        let response = match answer.await {
                            Ok(response) => response,
                            Err(error) => {
                                pending.answer(tonic::Code::Unknown);
                                return Err(error);
                            }
                        };
                        let code = code_of(response.headers());
                        if code != tonic::Code::Ok {
                            tracing::Span::current().record("otel.status_code", "ERROR");
                        }
                        pending.answer(code);
                        Ok(response)
                    }
                    .instrument(span),
                )
            }
            Err(refusal) => {
                gate.answered(&path, refusal.code(), started.elapsed());
                Box::pin(std::future::ready(Ok(refusal.into_http())))
            }
        }
    }
}

/// Whether the connection a call came on showed a client certificate that
/// the server's TLS verified (it refuses one it cannot).
fn certified(extensions: &tonic::codegen::http::Extensions) -> bool {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .is_some_and(|certificates| !certificates.is_empty())
}

/// A call let through and not yet answered.
struct Pending {
    gate: Arc<dyn Gate>,
    path: String,
    started: Instant,
    answered: bool,
}

impl Pending {
    fn answer(&mut self, code: tonic::Code) {
        self.answered = true;
        self.gate.answered(&self.path, code, self.started.elapsed());
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            self.answer(tonic::Code::Cancelled);
        }
    }
}

/// The gRPC code an answer's headers carry: a call refused at once is
/// answered with headers alone; one that goes on carries its code in the
/// trailers, after these (`Ok` here).
fn code_of(headers: &HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Lets every call through and keeps what it is told of.
    #[derive(Default)]
    struct Recording(Mutex<Vec<(String, tonic::Code)>>);

    impl Gate for Recording {
        fn admit(&self, _path: &str, _headers: &HeaderMap, _: bool) -> Result<(), tonic::Status> {
            Ok(())
        }

        fn answered(&self, path: &str, code: tonic::Code, _elapsed: Duration) {
            if let Ok(mut told) = self.0.lock() {
                told.push((path.to_owned(), code));
            }
        }
    }

    /// A service that answers `Ok` at once, or never.
    #[derive(Clone)]
    struct Answers(bool);

    impl Service<Request<()>> for Answers {
        type Response = Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: Request<()>) -> Self::Future {
            match self.0 {
                true => Box::pin(std::future::ready(Ok(Response::new(
                    tonic::body::Body::empty(),
                )))),
                false => Box::pin(std::future::pending()),
            }
        }
    }

    fn call(
        service: &mut Gated<Answers>,
        path: &'static str,
    ) -> BoxFuture<Response<tonic::body::Body>, std::convert::Infallible> {
        service.call(Request::builder().uri(path).body(()).expect("a request"))
    }

    #[tokio::test]
    async fn a_call_given_up_on_is_told_as_cancelled() {
        let recording = Arc::new(Recording::default());
        let layer = GateLayer::new(recording.clone());
        let mut answering = tower_layer::Layer::layer(&layer, Answers(true));
        let mut silent = tower_layer::Layer::layer(&layer, Answers(false));
        assert!(call(&mut answering, "/s/Answered").await.is_ok());
        let given_up = call(&mut silent, "/s/GivenUp");
        let waited = tokio::time::timeout(Duration::from_millis(10), given_up).await;
        assert!(waited.is_err(), "the silent service answered");
        let told = recording
            .0
            .lock()
            .map(|told| told.clone())
            .unwrap_or_default();
        assert_eq!(
            told,
            vec![
                ("/s/Answered".to_owned(), tonic::Code::Ok),
                ("/s/GivenUp".to_owned(), tonic::Code::Cancelled),
            ]
        );
    }
}
