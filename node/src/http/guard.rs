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
    // Labels of a bounded set: a method no rule names is `other`. Counted
    // by the limits, which see every answer (their own refusals too).
    let method = if access.is_some() {
        method.to_string()
    } else {
        "other".to_owned()
    };
    let mut answer = answer;
    answer.extensions_mut().insert(Routed { method, template });
    answer
}

/// The labels of an answer from a route: its method and template.
#[derive(Clone)]
pub(super) struct Routed {
    pub(super) method: String,
    pub(super) template: String,
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
