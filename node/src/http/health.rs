//! Liveness and readiness, for load balancers and orchestrators.

use super::Http;
use super::model::Health;
use axum::extract::State;
use axum::http::StatusCode;
use ledger_replication::Group;

/// The node's HTTP server answers.
#[utoipa::path(
    get, path = "/health/live", tag = "health",
    responses((status = 200, description = "It answers", body = Health))
)]
pub async fn live() -> axum::Json<Health> {
    axum::Json(Health {
        status: "live".into(),
        reasons: Vec::new(),
    })
}

/// How far a node's applied index may trail what its region committed and
/// the node still take traffic: a node replaying its log after a restart is
/// further behind; one that is answering under load is not.
pub const READY_LAG_ENTRIES: u64 = 1_000;

/// The node can take its region's traffic: it knows its region's leader and
/// has applied what its region committed (to within a few entries). The
/// control log is not asked: a region cut off from it still decides its
/// transfers, and a node that drained it would stop them.
#[utoipa::path(
    get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready, and why", body = Health)
    )
)]
pub async fn ready(State(http): State<Http>) -> (StatusCode, axum::Json<Health>) {
    let replica = &http.node().replica;
    let group = Group::Region(replica.region());
    let mut reasons = Vec::new();
    match replica.progress(group) {
        None => reasons.push(format!("{}: not running here", group.name())),
        Some(progress) => {
            if progress.leader.is_none() {
                reasons.push(format!("{}: no leader known", group.name()));
            }
            if progress.lag_entries() > READY_LAG_ENTRIES {
                reasons.push(format!(
                    "{}: applied {} of {} committed",
                    group.name(),
                    progress.applied,
                    progress.committed
                ));
            }
        }
    }
    let (status, text) = if reasons.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    };
    (
        status,
        axum::Json(Health {
            status: text.into(),
            reasons,
        }),
    )
}
