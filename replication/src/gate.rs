//! Who may call a gRPC server: a [`Gate`] decides each call from its path
//! and headers before any service sees it, and [`GateLayer`] puts one in
//! front of a tonic server. The node's API and its Raft port use the same
//! one; what a caller must show is the node's business ([`Gate`]), this is
//! only where it is asked.

use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::codegen::{BoxFuture, Service};
use tonic::metadata::{Ascii, MetadataValue};

/// The `authorization` value that shows `key`: `Bearer <key>`.
pub fn bearer(key: &str) -> Result<MetadataValue<Ascii>, InvalidKey> {
    if key.is_empty() || !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(InvalidKey);
    }
    format!("Bearer {key}").parse().map_err(|_| InvalidKey)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a key is printable ASCII with no spaces, and not empty")]
pub struct InvalidKey;

/// Decides whether a call to `path` (`/package.Service/Method`) with these
/// headers goes through; the refusal is the call's answer.
pub trait Gate: Send + Sync + 'static {
    fn admit(&self, path: &str, headers: &HeaderMap) -> Result<(), tonic::Status>;
}

/// Lets every call through: a cluster with authentication off.
pub struct Open;

impl Gate for Open {
    fn admit(&self, _path: &str, _headers: &HeaderMap) -> Result<(), tonic::Status> {
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
        match self.gate.admit(request.uri().path(), request.headers()) {
            Ok(()) => {
                let answer = self.inner.call(request);
                Box::pin(answer)
            }
            Err(refusal) => Box::pin(std::future::ready(Ok(refusal.into_http()))),
        }
    }
}
