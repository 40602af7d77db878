//! Who may call each route: the roles [`crate::auth::HTTP`] lists for it.
//! No key, or one this node does not know: 401 `UNAUTHENTICATED`; a key of
//! a role the route does not take: 403 `PERMISSION_DENIED`.

use super::Http;
use super::error::ApiError;
use crate::auth::{self, Denied};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

/// Lets a request through to its route only with a key of a role the
/// route takes (any, for a public route; none, with authentication off).
pub async fn guard(
    State(http): State<Http>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let template = matched
        .as_ref()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let access = auth::http_access(&method, &template);
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .map(|value| value.as_bytes());
    let node = http.api.node();
    let answer = match node.auth.check(access, authorization) {
        Ok(()) => {
            let span = crate::telemetry::server_span(
                "http",
                &format!("{method} {template}"),
                request.headers(),
                node.replica.id(),
                node.replica.region().0,
            );
            let answer = next.run(request).instrument(span.clone()).await;
            if answer.status().is_server_error() {
                span.record("otel.status_code", "ERROR");
            }
            answer
        }
        Err(denied) => refusal(&denied),
    };
    let status = answer.status().as_u16();
    // Labels of a bounded set: a method no rule names is `other`.
    let method = if access.is_some() {
        method.as_str()
    } else {
        "other"
    };
    crate::metrics::http_answered(method, &template, status, started.elapsed());
    answer
}

/// The answer to a call `denied` refuses.
pub(super) fn refusal(denied: &Denied) -> Response {
    let status = match denied {
        Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Denied::PermissionDenied { .. } => StatusCode::FORBIDDEN,
    };
    let mut answer = ApiError::new(status, denied.code(), denied.reason()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        answer
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    answer
}
