//! Nodes in one process that talk gRPC over 127.0.0.1: the real transport.

mod common;

use common::top_up;
use ledger_replication::*;
use ledger_reservations::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(30);

struct Served {
    node: ReplicaNode,
    server: JoinHandle<()>,
}

/// Starts every node of `nodes` (id, region) on its own loopback port.
async fn start(nodes: &[(u64, u16)], dir: &std::path::Path) -> (Layout, BTreeMap<u64, Served>) {
    let mut listeners = BTreeMap::new();
    for (id, _) in nodes {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        listeners.insert(*id, listener);
    }
    let layout = Layout {
        nodes: nodes
            .iter()
            .map(|(id, region)| NodeConfig {
                id: *id,
                region: RegionId(*region),
                addr: listeners[id].local_addr().expect("address").to_string(),
                api: String::new(),
                http: String::new(),
            })
            .collect(),
        control_voters: vec![],
    };
    let timings = Timings::local();
    let mut served = BTreeMap::new();
    for (id, listener) in listeners {
        let transport = Arc::new(GrpcTransport::new(timings.deadlines()));
        let node = ReplicaNode::start(
            id,
            &layout,
            timings,
            &Storage::Dir(dir.join(format!("node-{id}"))),
            transport,
            ledger_replication::Faults::default(),
        )
        .await
        .expect("starts");
        let service = node.raft_service();
        let server = tokio::spawn(async move {
            if let Err(error) = serve(service, listener, GateLayer::open(), None).await {
                panic!("server failed: {error}");
            }
        });
        served.insert(id, Served { node, server });
    }
    for served in served.values() {
        served.node.initialize().await.expect("initializes");
    }
    (layout, served)
}

async fn leader(nodes: &BTreeMap<u64, Served>, group: Group) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some((id, _)) = nodes
            .iter()
            .find(|(_, served)| served.node.is_leader(group))
        {
            return *id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader of {group}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wire(nodes: &BTreeMap<u64, Served>, layout: &Layout) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut added = 0;
        for served in nodes.values() {
            added += served.node.wire_learners().await.expect("wires");
        }
        let mut complete = true;
        for group in layout.groups() {
            let leader = leader(nodes, group).await;
            // A leader just elected may not have applied anything yet (nor
            // added a learner): then no node has, and that is not complete.
            let applied = nodes[&leader].node.applied_index(group);
            complete &= applied.is_some()
                && nodes
                    .values()
                    .all(|served| served.node.applied_index(group) >= applied);
        }
        if added == 0 && complete {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "membership incomplete"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn propose(nodes: &BTreeMap<u64, Served>, group: Group, event: Event) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let id = leader(nodes, group).await;
        match nodes[&id]
            .node
            .propose(group, Proposal::region(vec![event.clone()]))
            .await
        {
            Ok(applied) => return applied.index,
            Err(ProposeError::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("proposal failed: {error}"),
        }
    }
}

fn balance(served: &Served, region: u16) -> i128 {
    served.node.ledger().read(|ledger| {
        ledger
            .region(RegionId(region))
            .and_then(|state| state.pool(AccountId(2)))
            .map_or(0, |pool| pool.available)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_regions_replicate_over_grpc_and_survive_a_leader_loss() {
    let dir = tempfile::tempdir().expect("dir");
    // Region 0 on three voters, regions 1 and 2 on one node each.
    let (layout, mut nodes) = start(&[(1, 0), (2, 0), (3, 0), (4, 1), (5, 2)], dir.path()).await;
    wire(&nodes, &layout).await;

    let region0 = Group::Region(RegionId(0));
    let region1 = Group::Region(RegionId(1));
    let first = propose(&nodes, region0, top_up(1, 100, 1_000)).await;
    let other = propose(&nodes, region1, top_up(2, 7, 1_000)).await;
    for served in nodes.values() {
        served
            .node
            .wait_applied(region0, first, WAIT)
            .await
            .expect("region 0 everywhere");
        served
            .node
            .wait_applied(region1, other, WAIT)
            .await
            .expect("region 1 everywhere");
        assert_eq!(balance(served, 0), 100);
        assert_eq!(balance(served, 1), 7);
    }

    // The region 0 leader goes away; the other two elect a new one.
    let lost = leader(&nodes, region0).await;
    let gone = nodes.remove(&lost).expect("running");
    gone.server.abort();
    gone.node.shutdown().await;
    let second = propose(&nodes, region0, top_up(3, 50, 2_000)).await;
    for served in nodes.values() {
        served
            .node
            .wait_applied(region0, second, WAIT)
            .await
            .expect("applied");
        assert_eq!(balance(served, 0), 150);
    }
    for served in nodes.into_values() {
        served.server.abort();
        served.node.shutdown().await;
    }
}

/// A peer of a version without PreVote serves no such path: tonic answers
/// UNIMPLEMENTED, which the transport reports as unsupported (and the Raft
/// network then counts as a granted pre-vote, never as a vote).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_pre_vote_is_reported_as_unsupported() {
    use ledger_proto::internal::v1::raft_transport_server::RaftTransportServer;
    use openraft::alias::VoteOf;
    use openraft::raft::VoteRequest;
    use raft_types::TypeConfig;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("address").to_string();
    // A gRPC server that serves no Raft RPC at all: every path unknown.
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_optional_service::<RaftTransportServer<RaftService>>(None)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let transport = GrpcTransport::new(Duration::from_secs(5));
    let older = Peer { id: 2, addr };
    let request = || VoteRequest::<TypeConfig>::new(VoteOf::<TypeConfig>::new(3, 1), None);
    for ballot in [Ballot::PreVote, Ballot::Vote] {
        let answer = transport
            .vote(1, &older, Group::Control, ballot, request())
            .await;
        assert_eq!(
            answer,
            Err(TransportError::Unsupported { node: 2 }),
            "{ballot:?}"
        );
    }
    server.abort();
}
