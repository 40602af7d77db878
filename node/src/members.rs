//! Membership changes asked through the admin API (`AddMember`,
//! `RemoveMember`): checked here, then done by the replica in the groups
//! this node leads. `ledger members` asks every node.

use crate::runtime::NodeHandle;
use ledger_proto::v1 as api;
use ledger_replication::{Group, NodeConfig, NodeError, ReplicaNode};
use ledger_reservations::RegionId;
use tonic::Status;

/// One membership change at a time on this node: the checks below and the
/// change they allow must not interleave with another's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn add(
    node: &NodeHandle,
    request: api::AddMemberRequest,
) -> Result<api::MembershipResponse, Status> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let replica = &node.replica;
    let region = addable(replica, &request)?;
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

/// Whether the node `request` describes may be added here: answers its
/// region, or why not.
fn addable(replica: &ReplicaNode, request: &api::AddMemberRequest) -> Result<RegionId, Status> {
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
    let known = layout.nodes.iter().find(|known| known.id == request.id);
    if let Some(known) = known
        && (known.region, &known.addr, &known.api, &known.http)
            != (region, &request.addr, &request.api, &request.http)
    {
        return Err(invalid(format!(
            "id: node {} is known in region {} at {} (api {}, http {:?}); a node keeps its \
             region and addresses: remove it first to add it anew",
            request.id, known.region.0, known.addr, known.api, known.http
        )));
    }
    if known.is_none() {
        still_a_voter(replica, request.id)?;
    }
    // Two ids at one address would be one process voting as two.
    if let Some(other) = layout.nodes.iter().find(|other| {
        other.id != request.id && (other.addr == request.addr || other.api == request.api)
    }) {
        return Err(invalid(format!(
            "addr: node {} already listens at {} (api {})",
            other.id, other.addr, other.api
        )));
    }
    Ok(region)
}

/// Refuses to add back node `id`, removed here, while its removal has not
/// reached a group it votes in (that group's leader was down), as seen by
/// that group's leader: it must finish leaving before it comes back, or it
/// would vote again with what it lost. (Other nodes see it as a voter again
/// once the leader has added it back; they are not the ones to refuse.)
fn still_a_voter(replica: &ReplicaNode, id: u64) -> Result<(), Status> {
    if !replica.was_removed(id) {
        return Ok(());
    }
    let layout = replica.layout();
    match layout
        .groups()
        .into_iter()
        .find(|group| replica.is_leader(*group) && replica.voters(*group).contains(&id))
    {
        None => Ok(()),
        Some(group) => Err(Status::failed_precondition(format!(
            "STILL_A_VOTER: node {id} is still a voter of {}: ask ledger members remove again \
             until its removal is done, then add it",
            group.name()
        ))),
    }
}

pub async fn remove(
    node: &NodeHandle,
    request: api::RemoveMemberRequest,
) -> Result<api::MembershipResponse, Status> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let replica = &node.replica;
    let layout = replica.layout();
    let id = request.id;
    let known = layout.nodes.iter().find(|known| known.id == id);
    // Regions first: a region's last voter is the refusal that matters most.
    let mut voter_of: Vec<Group> = layout
        .groups()
        .into_iter()
        .filter(|group| replica.voters(*group).contains(&id))
        .collect();
    voter_of.sort_by_key(|group| matches!(group, Group::Control));
    if known.is_none() && voter_of.is_empty() {
        // Asked again after it was done here: nothing left to do.
        if replica.was_removed(id) {
            return Ok(answer(Vec::new()));
        }
        return Err(Status::not_found(format!(
            "NODE_NOT_FOUND: node {id} is neither in the layout nor a voter here"
        )));
    }
    for group in &voter_of {
        let voters = replica.voters(*group);
        let left = voters.len() - 1;
        let refusal = match group {
            Group::Region(region) if left == 0 => Some(format!(
                "LAST_VOTER: node {id} is the only voter of region {}, whose log would have \
                 none; add another node to the region first",
                region.0
            )),
            Group::Control if control_too_few(voters.len(), left) => Some(format!(
                "CONTROL_VOTER: node {id} votes in the control log, which would be left \
                 with {left}; add another control voter first (ledger members add \
                 --control-voter)"
            )),
            _ => None,
        };
        if let Some(refusal) = refusal {
            return Err(Status::failed_precondition(refusal));
        }
    }
    let groups = replica.remove_member(id).await.map_err(failed)?;
    Ok(answer(groups))
}

/// Whether the control log, from `voters`, would be left with too few:
/// none at all, or fewer than three once it had three or more (two of three
/// can still decide, but one more loss stops accounts being opened).
fn control_too_few(voters: usize, left: usize) -> bool {
    left == 0 || (voters >= 3 && left < 3)
}

fn answer(groups: Vec<Group>) -> api::MembershipResponse {
    api::MembershipResponse {
        groups: groups.into_iter().map(|group| group.name()).collect(),
    }
}

fn failed(error: NodeError) -> Status {
    match error {
        NodeError::MembershipUnconfirmed { .. } => {
            Status::deadline_exceeded(format!("MEMBERSHIP_UNCONFIRMED: {error}; ask again"))
        }
        // Raft refused the change (leadership moved, or the membership it
        // would make is not one): the message says which.
        NodeError::Membership { .. } => Status::aborted(format!("MEMBERSHIP_REFUSED: {error}")),
        other => Status::internal(format!("MEMBERSHIP_FAILED: {other}")),
    }
}

/// `host:port` as the transport dials it (an authority, nothing more),
/// with a port that is not 0.
fn is_host_port(text: &str) -> bool {
    text.parse::<tonic::codegen::http::uri::Authority>()
        .is_ok_and(|authority| {
            authority.as_str() == text
                && !authority.host().is_empty()
                && authority.port_u16().is_some_and(|port| port != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::{control_too_few, is_host_port};

    #[test]
    fn the_control_log_keeps_three_voters_once_it_has_them() {
        assert!(control_too_few(3, 2), "three to two");
        assert!(!control_too_few(4, 3), "four to three");
        assert!(!control_too_few(2, 1), "a two-region cluster may go to one");
        assert!(control_too_few(1, 0), "never none");
    }

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
