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

/// Lets a request through to its route only with a key of a role the
/// route takes (any, for a public route; none, with authentication off).
pub async fn guard(
    State(http): State<Http>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let access = matched.and_then(|path| auth::http_access(request.method(), path.as_str()));
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .map(|value| value.as_bytes());
    let denied = match http.api.node().auth.check(access, authorization) {
        Ok(()) => return next.run(request).await,
        Err(denied) => denied,
    };
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
