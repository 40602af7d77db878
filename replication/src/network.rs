//! The Raft network, behind a [`Transport`] so that real sockets and a
//! simulated network are interchangeable. Every RPC has a deadline: an RPC
//! without one is how replication wedges under a partition.

use crate::types::{Group, TypeConfig};
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetworkV2};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Why an RPC did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("node {node} is unreachable: {reason}")]
    Unreachable { node: u64, reason: String },
    #[error("node {node} did not answer within {deadline:?}")]
    Timeout { node: u64, deadline: Duration },
    /// The node answered that it serves no such RPC: it runs an older
    /// version (one without PreVote, say).
    #[error("node {node} does not serve this RPC (an older version)")]
    Unsupported { node: u64 },
}

/// The two elections' ballots: a vote, which the target may grant, keeping
/// it and moving to the candidate's term; and a pre-vote, which asks
/// whether it would, and changes nothing. One path carries both, with the
/// same deadline and the same errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ballot {
    Vote,
    PreVote,
}

/// The node an RPC goes to: its id and the address its membership entry
/// gives (replicated with the group, so a node added later is reachable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    pub addr: String,
}

/// Carries the Raft RPCs of every group from node `from` to node `to`.
pub trait Transport: Send + Sync + 'static {
    fn append_entries(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        request: AppendEntriesRequest<TypeConfig>,
    ) -> impl Future<Output = Result<AppendEntriesResponse<TypeConfig>, TransportError>> + Send;

    fn vote(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        ballot: Ballot,
        request: VoteRequest<TypeConfig>,
    ) -> impl Future<Output = Result<VoteResponse<TypeConfig>, TransportError>> + Send;

    fn full_snapshot(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
    ) -> impl Future<Output = Result<SnapshotResponse<TypeConfig>, TransportError>> + Send;
}

/// The network of one group on one node, as openraft sees it.
pub(crate) struct GroupNetwork<T: Transport> {
    pub(crate) transport: Arc<T>,
    pub(crate) from: u64,
    pub(crate) group: Group,
    pub(crate) deadline: Duration,
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for GroupNetwork<T> {
    type Network = Connection<T>;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        Connection {
            transport: self.transport.clone(),
            from: self.from,
            to: Peer {
                id: target,
                addr: node.addr.clone(),
            },
            group: self.group,
            deadline: self.deadline,
        }
    }
}

pub(crate) struct Connection<T: Transport> {
    transport: Arc<T>,
    from: u64,
    to: Peer,
    group: Group,
    deadline: Duration,
}

impl<T: Transport> Connection<T> {
    /// Runs `call` within `deadline`.
    async fn bounded<R>(
        &self,
        deadline: Duration,
        call: impl Future<Output = Result<R, TransportError>>,
    ) -> Result<R, TransportError> {
        match tokio::time::timeout(deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                node: self.to.id,
                deadline,
            }),
        }
    }

    /// Sends a vote or a pre-vote, within our deadline and openraft's.
    async fn ballot(
        &self,
        ballot: Ballot,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        // What a peer without pre-vote is taken to answer: a grant, as
        // openraft takes a network without it. That peer runs an older
        // version and does not pre-vote itself, so the cluster elects as it
        // did before the upgrade. Counted as refusing, it would keep a node
        // that needs its grant from ever standing.
        let granted = VoteResponse::new(request.vote, None, true);
        let call = self
            .transport
            .vote(self.from, &self.to, self.group, ballot, request);
        match self
            .bounded(self.deadline.min(option.hard_ttl()), call)
            .await
        {
            Ok(response) => Ok(response),
            Err(TransportError::Unsupported { .. }) if ballot == Ballot::PreVote => Ok(granted),
            // Unreachable, never a grant: a node cut off from its peers
            // must not count them as granting and raise its term.
            Err(error) => Err(RPCError::Unreachable(Unreachable::new(&error))),
        }
    }
}

impl<T: Transport> RaftNetworkV2<TypeConfig> for Connection<T> {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // Within our deadline, not openraft's: openraft gives every append
        // its heartbeat interval (100 to 300 ms) to live, and a follower
        // that takes longer to write a batch (a busy disk, a loaded
        // machine) is slow, not unreachable. Answered as unreachable, the
        // leader backs off and sends again, and every commit of the region
        // waits seconds (seen by the chaos suite's calm scenario).
        let call = self
            .transport
            .append_entries(self.from, &self.to, self.group, request);
        self.bounded(self.deadline, call)
            .await
            .map_err(|error| RPCError::Unreachable(Unreachable::new(&error)))
    }

    async fn vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ballot(Ballot::Vote, request, option).await
    }

    async fn pre_vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ballot(Ballot::PreVote, request, option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let call = self
            .transport
            .full_snapshot(self.from, &self.to, self.group, vote, snapshot);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = self.bounded(self.deadline.min(option.hard_ttl()), call) => {
                result.map_err(|error| StreamingError::Unreachable(Unreachable::new(&error)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that answers every RPC with one error.
    struct Failing(TransportError);

    impl Transport for Failing {
        async fn append_entries(
            &self,
            _from: u64,
            _to: &Peer,
            _group: Group,
            _request: AppendEntriesRequest<TypeConfig>,
        ) -> Result<AppendEntriesResponse<TypeConfig>, TransportError> {
            Err(self.0.clone())
        }

        async fn vote(
            &self,
            _from: u64,
            _to: &Peer,
            _group: Group,
            _ballot: Ballot,
            _request: VoteRequest<TypeConfig>,
        ) -> Result<VoteResponse<TypeConfig>, TransportError> {
            Err(self.0.clone())
        }

        async fn full_snapshot(
            &self,
            _from: u64,
            _to: &Peer,
            _group: Group,
            _vote: VoteOf<TypeConfig>,
            _snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        ) -> Result<SnapshotResponse<TypeConfig>, TransportError> {
            Err(self.0.clone())
        }
    }

    fn connection(error: TransportError) -> Connection<Failing> {
        Connection {
            transport: Arc::new(Failing(error)),
            from: 1,
            to: Peer {
                id: 2,
                addr: "local-2".to_owned(),
            },
            group: Group::Control,
            deadline: Duration::from_secs(1),
        }
    }

    fn request() -> VoteRequest<TypeConfig> {
        VoteRequest::new(VoteOf::<TypeConfig>::new(7, 1), None)
    }

    fn option() -> RPCOption {
        RPCOption::new(Duration::from_secs(1))
    }

    #[tokio::test]
    async fn a_peer_without_pre_vote_counts_as_granting_it_and_nothing_else() {
        let unsupported = || connection(TransportError::Unsupported { node: 2 });
        let answer = unsupported().pre_vote(request(), option()).await;
        let granted = answer.expect("an older peer's pre-vote is a grant");
        assert!(granted.vote_granted);
        assert_eq!(granted.vote, request().vote);
        let vote = unsupported().vote(request(), option()).await;
        assert!(
            matches!(vote, Err(RPCError::Unreachable(_))),
            "a real vote is never granted for it: {vote:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_peer_grants_no_pre_vote() {
        let cut = TransportError::Unreachable {
            node: 2,
            reason: "cut".to_owned(),
        };
        for ballot in [Ballot::Vote, Ballot::PreVote] {
            let answer = connection(cut.clone())
                .ballot(ballot, request(), option())
                .await;
            assert!(
                matches!(answer, Err(RPCError::Unreachable(_))),
                "{ballot:?}: {answer:?}"
            );
        }
    }
}
