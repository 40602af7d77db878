//! A transport inside one process, for tests and the simulation: RPCs are
//! calls on the target node's Raft, and links between nodes can be cut.

use crate::network::{Ballot, Peer, Transport, TransportError};
use crate::node::Raft;
use crate::types::{Group, TypeConfig};
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
struct Routes {
    rafts: BTreeMap<(u64, Group), Raft>,
    /// Cut links, both directions, as (lower id, higher id).
    cut: BTreeSet<(u64, u64)>,
}

/// The in-process network. Clones share it.
#[derive(Clone, Default)]
pub struct LocalTransport {
    routes: Arc<Mutex<Routes>>,
}

impl LocalTransport {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts every group of `node` on the network.
    pub fn attach(&self, node: &crate::ReplicaNode) {
        let mut routes = self.routes();
        for (group, raft) in node.rafts() {
            routes.rafts.insert((node.id(), *group), raft.clone());
        }
    }

    /// Takes a node off the network, as a crash would.
    pub fn remove_node(&self, node: u64) {
        self.routes().rafts.retain(|(id, _), _| *id != node);
    }

    /// Cuts the link between two nodes, both ways.
    pub fn cut(&self, a: u64, b: u64) {
        self.routes().cut.insert((a.min(b), a.max(b)));
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.routes().cut.clear();
    }

    fn target(&self, from: u64, to: u64, group: Group) -> Result<Raft, TransportError> {
        let routes = self.routes();
        if routes.cut.contains(&(from.min(to), from.max(to))) {
            return Err(TransportError::Unreachable {
                node: to,
                reason: "link cut".to_owned(),
            });
        }
        routes
            .rafts
            .get(&(to, group))
            .cloned()
            .ok_or_else(|| TransportError::Unreachable {
                node: to,
                reason: "not running".to_owned(),
            })
    }
}

fn down(node: u64, error: impl std::fmt::Display) -> TransportError {
    TransportError::Unreachable {
        node,
        reason: error.to_string(),
    }
}

impl Transport for LocalTransport {
    async fn append_entries(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        request: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<TypeConfig>, TransportError> {
        let raft = self.target(from, to.id, group)?;
        raft.append_entries(request)
            .await
            .map_err(|error| down(to.id, error))
    }

    async fn vote(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        ballot: Ballot,
        request: VoteRequest<TypeConfig>,
    ) -> Result<VoteResponse<TypeConfig>, TransportError> {
        let raft = self.target(from, to.id, group)?;
        let answer = match ballot {
            Ballot::Vote => raft.vote(request).await,
            Ballot::PreVote => raft.pre_vote(request).await,
        };
        answer.map_err(|error| down(to.id, error))
    }

    async fn full_snapshot(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
    ) -> Result<SnapshotResponse<TypeConfig>, TransportError> {
        let raft = self.target(from, to.id, group)?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|error| down(to.id, error))
    }
}
