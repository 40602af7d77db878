//! The node's metrics in the Prometheus text format ([`crate::metrics`]).

use super::Http;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Requests, latencies, Raft indexes and lag, pool totals, pulls, clocks
/// and refusals, as Prometheus reads them.
#[utoipa::path(
    get, path = "/metrics", tag = "operators",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 503, description = "This process serves no metrics", body = String, content_type = "text/plain")
    )
)]
pub async fn text(State(http): State<Http>) -> Response {
    match crate::metrics::render(&http.api) {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics are off in this process\n",
        )
            .into_response(),
    }
}
