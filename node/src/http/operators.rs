//! For operators: an account's reservation pools, moving reservation
//! between regions by hand, pool policies, and the cluster as this node
//! sees it.

use super::accounts::{look_up, no_answer, regions};
use super::error::{ApiError, Body, Path, answered};
use super::model::{self, Changed, PoolPolicy, Pools, Rebalance, Rebalanced};
use super::{Http, Refusals};
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use ledger_proto::v1 as api;
use ledger_proto::v1::admin_server::Admin;
use tonic::Request;

/// An account's pools: what each region may spend without asking another.
#[utoipa::path(
    get, path = "/api/v1/pools/{account}", tag = "operators",
    params(("account" = String, Path, description = "The account's id")),
    responses((status = 200, description = "Its pools", body = Pools), Refusals)
)]
pub async fn pools(
    State(http): State<Http>,
    Path(account): Path<String>,
) -> Result<axum::Json<Pools>, ApiError> {
    let (view, watermarks) = look_up(&http, &account, false).await?;
    Ok(axum::Json(Pools {
        account_id: view.id,
        currency: view.currency,
        regions: regions(&view.regions),
        in_flight: view.in_flight,
        pool_floor: (!view.pool_floor.is_empty()).then_some(view.pool_floor),
        watermarks,
    }))
}

/// Moves reservation of an account from the region of the node asked to
/// `toRegion` (sent to that region's leader: 307 from a follower).
#[utoipa::path(
    post, path = "/api/v1/pools/{account}/rebalance", tag = "operators",
    params(("account" = String, Path, description = "The account's id")),
    request_body = Rebalance,
    responses(
        (status = 200, description = "Released; granted in the other region once it applies it", body = Rebalanced),
        (status = 307, description = "Sent to the region's leader"),
        Refusals
    )
)]
pub async fn rebalance(
    State(http): State<Http>,
    uri: Uri,
    Path(account): Path<String>,
    Body(body): Body<Rebalance>,
) -> Result<Response, ApiError> {
    let account = crate::ids::format(super::accounts::parse_account(&account)?);
    let response = answered(
        http.api
            .rebalance(Request::new(api::RebalanceRequest {
                account,
                amount: body.amount,
                to_region: body.to_region,
            }))
            .await,
    )?;
    match response.result {
        Some(api::rebalance_response::Result::Applied(applied)) => Ok(axum::Json(Rebalanced {
            region: applied.region,
            index: applied.index,
        })
        .into_response()),
        Some(api::rebalance_response::Result::Error(error)) => Ok(http.refusal(&error, &uri)),
        None => Err(no_answer()),
    }
}

/// Sets an account's pool policy (through the global control log): every
/// region keeps at least `floor` available, pulling from regions above it.
#[utoipa::path(
    put, path = "/api/v1/pools/{account}/policy", tag = "operators",
    params(("account" = String, Path, description = "The account's id")),
    request_body = PoolPolicy,
    responses(
        (status = 200, description = "Set", body = Changed),
        (status = 307, description = "Sent to the control log's leader"),
        Refusals
    )
)]
pub async fn policy(
    State(http): State<Http>,
    uri: Uri,
    Path(account): Path<String>,
    Body(body): Body<PoolPolicy>,
) -> Result<Response, ApiError> {
    let account = crate::ids::format(super::accounts::parse_account(&account)?);
    let response = answered(
        http.api
            .set_pool_policy(Request::new(api::SetPoolPolicyRequest {
                account,
                floor: body.floor,
            }))
            .await,
    )?;
    match response.result {
        Some(api::change_account_status_response::Result::Changed(changed)) => {
            Ok(axum::Json(Changed { changed }).into_response())
        }
        Some(api::change_account_status_response::Result::Error(error)) => {
            Ok(http.refusal(&error, &uri))
        }
        None => Err(no_answer()),
    }
}

/// Regions, nodes, leaders, commit and apply positions, clock offsets.
#[utoipa::path(
    get, path = "/api/v1/cluster", tag = "operators",
    responses((status = 200, description = "The cluster as this node sees it", body = model::Cluster), Refusals)
)]
pub async fn cluster(State(http): State<Http>) -> Result<axum::Json<model::Cluster>, ApiError> {
    let status = answered(
        http.api
            .cluster_status(Request::new(api::ClusterStatusRequest {}))
            .await,
    )?;
    let layout = http.node().replica.layout();
    let http_of = |id: u64| {
        layout
            .nodes
            .iter()
            .find(|node| node.id == id)
            .map(|node| node.http.clone())
            .unwrap_or_default()
    };
    Ok(axum::Json(model::Cluster {
        node: status.node,
        region: status.region,
        groups: status
            .groups
            .into_iter()
            .map(|group| model::GroupStatus {
                group: group.group,
                leader: group.leader,
                voters: group.voters,
                committed_index: group.committed_index,
                applied_index: group.applied_index,
                lag_entries: group.lag_entries,
                last_event_age_ms: group.last_event_age_ms,
            })
            .collect(),
        nodes: status
            .nodes
            .into_iter()
            .map(|node| model::ClusterNode {
                http: http_of(node.id),
                id: node.id,
                region: node.region,
                api: node.api,
            })
            .collect(),
        clock_ns: status.clock_ns.to_string(),
        clock_offset_ms: status.clock_offset_ms,
        drift_refused: status.drift_refused,
        refuses_to_lead: status.refuses_to_lead,
    }))
}
