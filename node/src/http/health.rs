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

/// The node can take writes for its region: it knows its region's leader
/// and the control log's, and has applied what its region committed.
#[utoipa::path(
    get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready, and why", body = Health)
    )
)]
pub async fn ready(State(http): State<Http>) -> (StatusCode, axum::Json<Health>) {
    let replica = &http.node().replica;
    let mut reasons = Vec::new();
    for group in [Group::Region(replica.region()), Group::Control] {
        match replica.progress(group) {
            None => reasons.push(format!("{}: not running here", group.name())),
            Some(progress) => {
                if progress.leader.is_none() {
                    reasons.push(format!("{}: no leader known", group.name()));
                }
                if group != Group::Control && progress.applied < progress.committed {
                    reasons.push(format!(
                        "{}: applied {} of {} committed",
                        group.name(),
                        progress.applied,
                        progress.committed
                    ));
                }
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
