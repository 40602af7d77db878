//! The Raft transport over gRPC: one service and one connection between two
//! nodes for every group. Requests and answers carry openraft's messages,
//! encoded here; nothing outside this crate reads them.

use crate::codec::{self, Format};
use crate::faults::Faults;
use crate::gate::GateLayer;
use crate::network::{Ballot, Deadlines, Peer, Transport, TransportError};
use crate::node::Raft;
use crate::types::{Group, TypeConfig};
use ledger_proto::internal::v1 as wire;
use ledger_proto::internal::v1::raft_transport_client::RaftTransportClient;
use ledger_proto::internal::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
use ledger_reservations::RegionId;
use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// The largest Raft message either side accepts: a whole snapshot travels
/// in one message for now.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A peer's connection is pinged this often, idle or not, and dropped when
/// a ping is not answered within [`KEEPALIVE_TIMEOUT`]; the channel then
/// connects again, resolving the peer's name again. Without it a connection
/// that died without a word (a network cut and healed, a peer that came
/// back at another address) is kept for ever and every RPC on it times out:
/// the deploy test saw a region's log stop reaching two regions after its
/// node was reconnected. The timeout is long enough for a ping's answer
/// queued behind a snapshot on a slow link between regions.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

fn to_wire(group: Group) -> wire::Group {
    wire::Group {
        kind: Some(match group {
            Group::Region(region) => wire::group::Kind::Region(u32::from(region.0)),
            Group::Control => wire::group::Kind::Control(true),
        }),
    }
}

fn from_wire(group: Option<wire::Group>) -> Result<Group, Status> {
    match group.and_then(|group| group.kind) {
        Some(wire::group::Kind::Region(region)) => u16::try_from(region)
            .map(|region| Group::Region(RegionId(region)))
            .map_err(|_| Status::invalid_argument(format!("region {region} out of range"))),
        Some(wire::group::Kind::Control(_)) => Ok(Group::Control),
        None => Err(Status::invalid_argument("the request names no group")),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    codec::encode(Format::Json, value).map_err(|error| Status::internal(error.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    codec::decode(Format::Json, bytes).map_err(|error| Status::invalid_argument(error.to_string()))
}

/// When each group last reached this node with an append (a heartbeat
/// included): whether its leader can reach this node now.
#[derive(Clone, Debug, Default)]
pub struct Heard(Arc<std::sync::Mutex<BTreeMap<Group, std::time::Instant>>>);

impl Heard {
    fn mark(&self, group: Group) {
        let mut heard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        heard.insert(group, std::time::Instant::now());
    }

    /// How long ago `group` last reached this node; `None` if it never has.
    pub fn since(&self, group: Group) -> Option<std::time::Duration> {
        let heard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        heard.get(&group).map(|at| at.elapsed())
    }
}

/// Serves the Raft RPCs of a node's groups.
#[derive(Clone)]
pub struct RaftService {
    rafts: Arc<BTreeMap<Group, Raft>>,
    faults: Faults,
    heard: Heard,
}

impl RaftService {
    pub(crate) fn new(rafts: BTreeMap<Group, Raft>, heard: Heard) -> Self {
        Self {
            rafts: Arc::new(rafts),
            faults: Faults::default(),
            heard,
        }
    }

    /// Refuses RPCs from the peers `faults` blocks.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The tonic service, with the message size limit on both directions.
    pub fn into_server(self) -> RaftTransportServer<Self> {
        RaftTransportServer::new(self)
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
    }

    fn raft(&self, from: u64, group: Option<wire::Group>) -> Result<&Raft, Status> {
        if self.faults.is_blocked(from) {
            return Err(Status::unavailable(format!(
                "node {from} is cut off (fault injection)"
            )));
        }
        let group = from_wire(group)?;
        self.rafts
            .get(&group)
            .ok_or_else(|| Status::not_found(format!("this node runs no group {group}")))
    }

    /// Answers a vote or a pre-vote.
    async fn ballot(
        &self,
        ballot: Ballot,
        request: Request<wire::RaftRequest>,
    ) -> Result<Response<wire::RaftReply>, Status> {
        let request = request.into_inner();
        let raft = self.raft(request.from, request.group)?;
        let rpc: VoteRequest<TypeConfig> = decode(&request.payload)?;
        reply(match ballot {
            Ballot::Vote => raft.vote(rpc).await,
            Ballot::PreVote => raft.pre_vote(rpc).await,
        })
    }
}

fn reply<T: Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
) -> Result<Response<wire::RaftReply>, Status> {
    Ok(Response::new(match result {
        Ok(answer) => wire::RaftReply {
            payload: encode(&answer)?,
            error: String::new(),
        },
        Err(error) => wire::RaftReply {
            payload: Vec::new(),
            error: error.to_string(),
        },
    }))
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        request: Request<wire::RaftRequest>,
    ) -> Result<Response<wire::RaftReply>, Status> {
        let request = request.into_inner();
        let raft = self.raft(request.from, request.group)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&request.payload)?;
        if let Ok(group) = from_wire(request.group) {
            self.heard.mark(group);
        }
        reply(raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        request: Request<wire::RaftRequest>,
    ) -> Result<Response<wire::RaftReply>, Status> {
        self.ballot(Ballot::Vote, request).await
    }

    async fn pre_vote(
        &self,
        request: Request<wire::RaftRequest>,
    ) -> Result<Response<wire::RaftReply>, Status> {
        self.ballot(Ballot::PreVote, request).await
    }

    async fn install_snapshot(
        &self,
        request: Request<wire::RaftRequest>,
    ) -> Result<Response<wire::RaftReply>, Status> {
        let request = request.into_inner();
        let raft = self.raft(request.from, request.group)?;
        if let Ok(group) = from_wire(request.group) {
            self.heard.mark(group);
        }
        let (vote, meta): (VoteOf<TypeConfig>, SnapshotMetaOf<TypeConfig>) =
            decode(&request.payload)?;
        let snapshot = SnapshotOf::<TypeConfig, Vec<u8>> {
            meta,
            snapshot: request.snapshot,
        };
        reply(raft.install_full_snapshot(vote, snapshot).await)
    }
}

/// Streams a peer may reset before this server takes them up, before the
/// connection is closed (h2's default is 20).
const RESETS_BEFORE_GOAWAY: usize = 10_000;

/// Serves `service` on `listener`, each call asked of `gate` first, until
/// the server fails or the task is dropped.
/// With `tls`, only callers that show a certificate it accepts get in.
pub async fn serve(
    service: RaftService,
    listener: tokio::net::TcpListener,
    gate: GateLayer,
    tls: Option<ServerTlsConfig>,
) -> Result<(), tonic::transport::Error> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .tcp_nodelay(true)
        .layer(gate)
        // A peer drops an RPC it stops waiting for (openraft gives a
        // heartbeat one interval), and h2 counts each such stream reset
        // before this server took it up; at 20 (h2's default, a guard
        // against rapid-reset floods from strangers) it closes the whole
        // connection, every group's RPCs on it with it. Only the cluster's
        // own nodes reach this port.
        .http2_max_pending_accept_reset_streams(Some(RESETS_BEFORE_GOAWAY))
        .add_service(service.into_server())
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
}

/// Sends Raft RPCs to other nodes over gRPC: one lazily connected channel
/// per peer, shared by every group, at the address its membership entry gives.
pub struct GrpcTransport {
    deadlines: Deadlines,
    faults: Faults,
    /// The `authorization` value every RPC carries (a node's key), if any.
    key: Option<MetadataValue<Ascii>>,
    /// How peers are called over TLS (this node's certificate and the CA
    /// theirs must be signed by), if they are.
    tls: Option<ClientTlsConfig>,
    clients: Mutex<BTreeMap<u64, (String, RaftTransportClient<Channel>)>>,
}

impl GrpcTransport {
    /// `deadlines` bound every RPC, by the bytes it carries.
    pub fn new(deadlines: impl Into<Deadlines>) -> Self {
        Self {
            deadlines: deadlines.into(),
            faults: Faults::default(),
            key: None,
            tls: None,
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sends nothing to the peers `faults` blocks.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Shows `key` (made by [`crate::bearer`]) with every RPC, to peers
    /// that ask for one.
    pub fn with_key(mut self, key: MetadataValue<Ascii>) -> Self {
        self.key = Some(key);
        self
    }

    /// Calls every peer over TLS with `tls`.
    pub fn with_tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    fn clients(&self) -> MutexGuard<'_, BTreeMap<u64, (String, RaftTransportClient<Channel>)>> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn client(&self, peer: &Peer) -> Result<RaftTransportClient<Channel>, TransportError> {
        if self.faults.is_blocked(peer.id) {
            return Err(TransportError::Unreachable {
                node: peer.id,
                reason: "cut off (fault injection)".to_owned(),
            });
        }
        if let Some((addr, client)) = self.clients().get(&peer.id)
            && *addr == peer.addr
        {
            return Ok(client.clone());
        }
        let node = peer.id;
        let unreachable = |reason: String| TransportError::Unreachable { node, reason };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", peer.addr))
            .map_err(|error| unreachable(error.to_string()))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|error| unreachable(error.to_string()))?;
        }
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let client = RaftTransportClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
        // One channel per peer: a peer that moved replaces its old one.
        self.clients()
            .insert(node, (peer.addr.clone(), client.clone()));
        Ok(client)
    }

    fn request(
        &self,
        from: u64,
        group: Group,
        payload: Vec<u8>,
        snapshot: Vec<u8>,
    ) -> Request<wire::RaftRequest> {
        // Each RPC's deadline by its size (the channel has none of its own:
        // one fixed deadline would cut off every large snapshot).
        let deadline = self
            .deadlines
            .for_bytes(payload.len().saturating_add(snapshot.len()));
        let mut request = Request::new(wire::RaftRequest {
            group: Some(to_wire(group)),
            from,
            payload,
            snapshot,
        });
        request.set_timeout(deadline);
        if let Some(key) = &self.key {
            request.metadata_mut().insert("authorization", key.clone());
        }
        request
    }
}

fn answer<T: DeserializeOwned>(
    node: u64,
    reply: Result<Response<wire::RaftReply>, Status>,
) -> Result<T, TransportError> {
    let unreachable = |reason: String| TransportError::Unreachable { node, reason };
    let reply = reply
        .map_err(|status| match status.code() {
            // The path is not served: tonic's answer for an RPC the peer's
            // version lacks (our own refusals use other codes).
            tonic::Code::Unimplemented => TransportError::Unsupported { node },
            _ => unreachable(status.to_string()),
        })?
        .into_inner();
    if !reply.error.is_empty() {
        return Err(unreachable(reply.error));
    }
    codec::decode(Format::Json, &reply.payload).map_err(|error| unreachable(error.to_string()))
}

fn payload<T: Serialize>(node: u64, value: &T) -> Result<Vec<u8>, TransportError> {
    codec::encode(Format::Json, value).map_err(|error| TransportError::Unreachable {
        node,
        reason: error.to_string(),
    })
}

impl Transport for GrpcTransport {
    async fn append_entries(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        request: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<TypeConfig>, TransportError> {
        let mut client = self.client(to)?;
        let node = to.id;
        let request = self.request(from, group, payload(node, &request)?, Vec::new());
        answer(node, client.append_entries(request).await)
    }

    async fn vote(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        ballot: Ballot,
        request: VoteRequest<TypeConfig>,
    ) -> Result<VoteResponse<TypeConfig>, TransportError> {
        let mut client = self.client(to)?;
        let node = to.id;
        let request = self.request(from, group, payload(node, &request)?, Vec::new());
        let reply = match ballot {
            Ballot::Vote => client.vote(request).await,
            Ballot::PreVote => client.pre_vote(request).await,
        };
        answer(node, reply)
    }

    async fn full_snapshot(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
    ) -> Result<SnapshotResponse<TypeConfig>, TransportError> {
        let mut client = self.client(to)?;
        let node = to.id;
        let head = payload(node, &(vote, snapshot.meta))?;
        let request = self.request(from, group, head, snapshot.snapshot);
        answer(node, client.install_snapshot(request).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rpc_the_peer_does_not_serve_is_unsupported_not_unreachable() {
        let older: Result<VoteResponse<TypeConfig>, _> = answer(2, Err(Status::unimplemented("")));
        assert_eq!(older, Err(TransportError::Unsupported { node: 2 }));
        let cut: Result<VoteResponse<TypeConfig>, _> =
            answer(2, Err(Status::unavailable("node 1 is cut off")));
        assert!(matches!(
            cut,
            Err(TransportError::Unreachable { node: 2, .. })
        ));
    }

    #[test]
    fn a_group_is_heard_from_when_it_appends() {
        let heard = Heard::default();
        let region = Group::Region(ledger_reservations::RegionId(1));
        assert_eq!(heard.since(region), None, "never heard");
        heard.mark(region);
        let since = heard.since(region).expect("heard");
        assert!(since < std::time::Duration::from_secs(60), "{since:?}");
        assert_eq!(heard.since(Group::Control), None, "each group apart");
    }
}
