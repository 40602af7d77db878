//! `ledger status`: the cluster as one node sees it, and every node's clock
//! against this machine's.

use super::{Column, Endpoint, Table, print_json};
use clap::Args;
use ledger_node::client::CALL_TIMEOUT;
use ledger_proto::v1 as api;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    #[arg(long)]
    json: bool,
}

/// A node's clock minus this machine's and the round trip of the call that
/// measured it, in milliseconds; `None` for a node that did not answer.
type Offset = Option<(f64, f64)>;

/// How long a node has to answer the clock's measure.
const CLOCK_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

const GROUPS: Table = Table(&[
    Column::left("group", 10),
    Column::right("leader", 7),
    Column::right("committed", 10),
    Column::right("applied", 10),
    Column::right("lag", 8),
    Column::right("last event age", 14),
    Column::rest("voters").after(2),
]);

const CLOCKS: Table = Table(&[
    Column::left("node", 5),
    Column::left("region", 7),
    Column::left("api", 22),
    Column::rest("clock offset from this machine"),
]);

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let status = args.endpoint.connect().await?.status().await?;
    let clocks = clock_offsets(&args.endpoint, &status.nodes).await;
    if args.json {
        return print_json(&status_json(&status, &clocks));
    }
    println!(
        "node {} in region {}; clock {} ns, {} ms off its peers'{}; stamps refused for drift: {}",
        status.node,
        status.region,
        status.clock_ns,
        status.clock_offset_ms,
        if status.refuses_to_lead {
            " (past the drift limit: it refuses to lead)"
        } else {
            ""
        },
        status.drift_refused
    );
    GROUPS.print_header();
    for group in &status.groups {
        let voters: Vec<String> = group.voters.iter().map(u64::to_string).collect();
        GROUPS.print_row(&[
            &group.group,
            &group.leader,
            &group.committed_index,
            &group.applied_index,
            &group.lag_entries,
            &format!("{} ms", group.last_event_age_ms),
            &format!("[{}]", voters.join(", ")),
        ]);
    }
    println!();
    CLOCKS.print_header();
    for (node, offset) in &clocks {
        let offset = offset.map_or("unreachable".into(), |(offset, round_trip)| {
            format!("{offset:+.1} ms (± {:.1} ms)", round_trip / 2.0)
        });
        CLOCKS.print_row(&[&node.id, &node.region, &node.api, &offset]);
    }
    Ok(())
}

fn status_json(
    status: &api::ClusterStatusResponse,
    clocks: &[(api::NodeInfo, Offset)],
) -> serde_json::Value {
    serde_json::json!({
        "nodes": clocks.iter().map(|(node, offset)| serde_json::json!({
            "id": node.id, "region": node.region, "api": node.api,
            "clock_offset_ms": offset.map(|(offset, _)| offset),
            "clock_offset_uncertainty_ms": offset.map(|(_, round_trip)| round_trip / 2.0),
        })).collect::<Vec<_>>(),
        "node": status.node,
        "region": status.region,
        "clock_ns": status.clock_ns,
        "drift_refused": status.drift_refused,
        "clock_offset_ms": status.clock_offset_ms,
        "refuses_to_lead": status.refuses_to_lead,
        "groups": status.groups.iter().map(|group| serde_json::json!({
            "group": group.group, "leader": group.leader,
            "committed_index": group.committed_index,
            "applied_index": group.applied_index,
            "lag_entries": group.lag_entries,
            "last_event_age_ms": group.last_event_age_ms,
            "voters": group.voters,
        })).collect::<Vec<_>>(),
    })
}

/// Each node's clock against this machine's: the node's clock when it
/// answered minus the middle of the call, with the call's round trip (the
/// offset is within half of it).
async fn clock_offsets(
    endpoint: &Endpoint,
    nodes: &[api::NodeInfo],
) -> Vec<(api::NodeInfo, Offset)> {
    let now_ns = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            })
    };
    let mut measured = Vec::with_capacity(nodes.len());
    for node in nodes {
        let offset = match tokio::time::timeout(
            CLOCK_CONNECT_TIMEOUT,
            endpoint.connect_to(&node.api, CALL_TIMEOUT),
        )
        .await
        {
            Ok(Ok(client)) => ledger_node::clock_watch::measure(&client, now_ns)
                .await
                .map(|offset| (offset.peer_minus_own_ms, offset.round_trip_ms)),
            _ => None,
        };
        measured.push((node.clone(), offset));
    }
    measured
}
