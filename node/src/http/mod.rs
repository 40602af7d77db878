//! The HTTP/JSON API (axum), in the shape the billing engine's users know.
//!
//! Every handler turns its JSON into the gRPC API's request and calls the
//! same [`Api`] the gRPC services are, so a rule is never implemented twice:
//! what HTTP adds is the shape (camelCase, decimal strings, statuses), the
//! idempotency keys of any text, redirects to the leader (307) and Server-
//! Sent Events. The OpenAPI document is generated from the handlers' own
//! types and routes (utoipa), so it cannot drift from what is served.

mod accounts;
mod docs;
mod error;
mod events;
mod guard;
mod health;
mod limits;
mod metrics;
pub mod model;
mod operators;
mod transactions;

pub use transactions::key_id;

use crate::api::Api;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use error::ApiError;
use ledger_proto::v1 as api;
use std::sync::{Arc, OnceLock};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use limits::BODY_BYTES_MAX;

/// What every handler shares.
#[derive(Clone)]
pub struct Http {
    api: Api,
    limits: limits::Limits,
    /// The OpenAPI document as served, made once the router is.
    document: Arc<OnceLock<String>>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ledger",
        description = "A multi-region, active-active ledger: accounts, transactions, \
            reservation pools and events over HTTP/JSON. Amounts are decimal strings, \
            taken exactly. Errors are `{ code, message, retryable, details }` with the \
            gRPC API's stable codes. A node that does not lead its region answers a \
            write with 307 to its region's leader."
    ),
    tags(
        (name = "accounts", description = "Open accounts and read their balances and history"),
        (name = "transactions", description = "Top-ups, withdrawals, transfers, payments, refunds"),
        (name = "events", description = "Transactions as they are applied (Server-Sent Events)"),
        (name = "operators", description = "Reservation pools and the cluster"),
        (name = "health", description = "Liveness and readiness"),
        (name = "docs", description = "This document")
    )
)]
struct ApiDoc;

/// The router with every route, and the OpenAPI document of exactly those.
pub fn router(api: Api) -> (axum::Router, utoipa::openapi::OpenApi) {
    let requests_max = api.node().settings.http_requests_max;
    let (routes, document) = OpenApiRouter::<Http>::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::create))
        .routes(routes!(accounts::get))
        .routes(routes!(accounts::balance))
        .routes(routes!(accounts::history))
        .routes(routes!(transactions::topup))
        .routes(routes!(transactions::withdrawal))
        .routes(routes!(transactions::transfer))
        .routes(routes!(transactions::payment))
        .routes(routes!(transactions::refund))
        .routes(routes!(transactions::capture))
        .routes(routes!(transactions::void))
        .routes(routes!(transactions::get))
        .routes(routes!(transactions::batch))
        .routes(routes!(events::stream))
        .routes(routes!(operators::pools))
        .routes(routes!(operators::rebalance))
        .routes(routes!(operators::policy))
        .routes(routes!(operators::cluster))
        .routes(routes!(metrics::text))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(docs::document))
        .routes(routes!(docs::page))
        .split_for_parts();
    let http = Http {
        api,
        limits: limits::Limits::new(requests_max),
        document: Arc::new(OnceLock::new()),
    };
    let text = document
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    let _ = http.document.set(text);
    let router = routes
        .route_layer(axum::middleware::from_fn_with_state(
            http.clone(),
            guard::guard,
        ))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            http.clone(),
            limits::limit,
        ))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(http);
    (router, document)
}

/// Serves the HTTP API on `listener` (HTTPS with `tls`) until the task is
/// dropped.
pub async fn serve(
    api: Api,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let requests_max = api.node().settings.http_requests_max;
    let (router, _) = router(api);
    limits::serve(router, listener, requests_max, tls).await;
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(
        "NO_ROUTE",
        format!("no route {}; see /api/docs", uri.path()),
    )
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{} does not take this method; see /api/docs", uri.path()),
    )
}

impl Http {
    fn node(&self) -> &crate::runtime::NodeHandle {
        self.api.node()
    }

    /// A refusal of the ledger: a NOT_LEADER (or CLOCK_DRIFT) naming a leader that serves HTTP
    /// is a redirect to the same path there (307 keeps the method and the
    /// body); anything else is the refusal itself.
    fn refusal(&self, error: &api::Error, uri: &Uri) -> Response {
        match self.leader_url(error, uri) {
            Some(location) => (
                StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, location)],
                axum::Json(error::body_of(error)),
            )
                .into_response(),
            None => ApiError::refused(error).into_response(),
        }
    }

    /// The leader's URL for this request, for a NOT_LEADER that names a
    /// leader serving HTTP.
    fn leader_url(&self, error: &api::Error, uri: &Uri) -> Option<String> {
        // CLOCK_DRIFT names the leader too: this node's clock is off and it
        // hands its region to another.
        if !matches!(error.code.as_str(), "NOT_LEADER" | "CLOCK_DRIFT") || error.redirect.is_empty()
        {
            return None;
        }
        let layout = self.node().replica.layout();
        let leader = layout
            .nodes
            .iter()
            .find(|node| node.api == error.redirect && !node.http.is_empty())?;
        let path = uri.path_and_query().map_or("/", |path| path.as_str());
        // Every node of a cluster serves HTTPS or none does.
        let scheme = match self.node().settings.tls {
            Some(_) => "https",
            None => "http",
        };
        Some(format!("{scheme}://{}{path}", leader.http))
    }
}

/// The common refusals of every operation, for the document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum Refusals {
    /// The request can never succeed as sent (its shape, an id, an amount).
    #[response(status = 400)]
    BadRequest(model::ErrorBody),
    /// What it names does not exist.
    #[response(status = 404)]
    NotFound(model::ErrorBody),
    /// The route does not take this method.
    #[response(status = 405)]
    MethodNotAllowed(model::ErrorBody),
    /// The body did not arrive in time.
    #[response(status = 408)]
    Timeout(model::ErrorBody),
    /// It clashes with what exists (an id used for other content).
    #[response(status = 409)]
    Conflict(model::ErrorBody),
    /// The body is larger than the node takes.
    #[response(status = 413)]
    TooLarge(model::ErrorBody),
    /// The body is not sent as JSON.
    #[response(status = 415)]
    NotJson(model::ErrorBody),
    /// A rule of the ledger refuses it now (funds, status, currency, ...).
    #[response(status = 422)]
    Refused(model::ErrorBody),
    /// Too much at once: retry shortly.
    #[response(status = 429)]
    TooMany(model::ErrorBody),
    /// The node or a region cannot answer now: retry (NOT_LEADER without a
    /// leader to redirect to, OUTCOME_UNKNOWN, REGION_UNAVAILABLE, ...).
    #[response(status = 503)]
    Unavailable(model::ErrorBody),
}
