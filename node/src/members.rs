//! Membership changes asked through the admin API (`AddMember`,
//! `RemoveMember`): checked here, then done by the replica in the groups
//! this node leads. `ledger members` asks every node.

use crate::runtime::NodeHandle;
use ledger_proto::v1 as api;
use ledger_replication::{NodeConfig, NodeError};
use ledger_reservations::RegionId;
use tonic::Status;

pub async fn add(
    node: &NodeHandle,
    request: api::AddMemberRequest,
) -> Result<api::MembershipResponse, Status> {
    let replica = &node.replica;
    let layout = replica.layout();
    let invalid = |reason: String| Status::invalid_argument(format!("INVALID_FIELD: {reason}"));
    if request.id == 0 {
        return Err(invalid("id: node id 0 is reserved".into()));
    }
    let region = u16::try_from(request.region)
        .ok()
        .map(RegionId)
        .filter(|region| layout.regions().contains(region))
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "UNKNOWN_REGION: region {} is not in the layout; regions cannot be added to a \
                 running cluster (an id's region is its high half modulo their number)",
                request.region
            ))
        })?;
    for (field, value, required) in [
        ("addr", &request.addr, true),
        ("api", &request.api, true),
        ("http", &request.http, false),
    ] {
        if (required || !value.is_empty()) && !is_host_port(value) {
            return Err(invalid(format!("{field}: {value:?} is not host:port")));
        }
    }
    if let Some(known) = layout.nodes.iter().find(|known| known.id == request.id)
        && known.region != region
    {
        return Err(invalid(format!(
            "id: node {} is in region {}; a node never changes region",
            request.id, known.region.0
        )));
    }
    let config = NodeConfig {
        id: request.id,
        region,
        addr: request.addr,
        api: request.api,
        http: request.http,
    };
    let groups = replica
        .add_member(config, request.control_voter)
        .await
        .map_err(failed)?;
    Ok(answer(groups))
}

pub async fn remove(
    node: &NodeHandle,
    request: api::RemoveMemberRequest,
) -> Result<api::MembershipResponse, Status> {
    let replica = &node.replica;
    let layout = replica.layout();
    if let Some(known) = layout.nodes.iter().find(|known| known.id == request.id) {
        let in_region = layout
            .nodes
            .iter()
            .filter(|other| other.region == known.region)
            .count();
        if in_region <= 1 {
            return Err(Status::failed_precondition(format!(
                "LAST_VOTER: node {} is the only node of region {}, whose log would have no \
                 voter left; add another node to the region first",
                request.id, known.region.0
            )));
        }
    }
    let groups = replica.remove_member(request.id).await.map_err(failed)?;
    Ok(answer(groups))
}

fn answer(groups: Vec<ledger_replication::Group>) -> api::MembershipResponse {
    api::MembershipResponse {
        groups: groups.into_iter().map(|group| group.name()).collect(),
    }
}

fn failed(error: NodeError) -> Status {
    match error {
        NodeError::MembershipUnconfirmed { .. } => {
            Status::deadline_exceeded(format!("MEMBERSHIP_UNCONFIRMED: {error}; ask again"))
        }
        other => Status::unavailable(format!("MEMBERSHIP_FAILED: {other}; ask again")),
    }
}

/// `host:port`, with a port that is a number.
fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::is_host_port;

    #[test]
    fn addresses_are_host_and_port() {
        for good in ["ledger-eu-2:7000", "10.0.0.1:1", "[::1]:7000"] {
            assert!(is_host_port(good), "{good}");
        }
        for bad in [
            "",
            "ledger-eu-2",
            ":7000",
            "host:port",
            "host:70000",
            "a b:1",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }
}
