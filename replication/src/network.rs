//! The Raft network, behind a [`Transport`] so that real sockets and a
//! simulated network are interchangeable. Every RPC has a deadline: an RPC
//! without one is how replication wedges under a partition. The deadline
//! grows with the bytes an RPC carries, and an append carries a bounded
//! number of bytes: a fixed deadline is how a large entry, a long catch-up
//! batch or a snapshot wedges replication for good (audit finding 9).

use crate::types::{Group, TypeConfig};
use openraft::alias::{EntryOf, SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, EntryPayload, RaftNetworkV2};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Bytes of entries one append carries at most (as JSON carries them): a
/// longer batch goes a prefix at a time, each answered as a partial
/// success, after which openraft sends the rest.
pub const APPEND_BYTES_MAX: usize = 8 * 1024 * 1024;

/// What an entry adds to an append besides its payload: its log id and
/// JSON's framing (about 130 bytes with the largest numbers), counted
/// generously.
const ENTRY_FRAME_BYTES: usize = 256;

/// A membership entry's payload, counted generously: a few nodes, each an
/// id and an address.
const MEMBERSHIP_BYTES: usize = 4 * 1024;

/// How long an RPC may take: a base for the round trip and the far side's
/// work, plus the time its bytes take over the slowest link the deployment
/// promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub base: Duration,
    pub link_bytes_per_s: u64,
}

/// The longest deadline an RPC is given, whatever the settings and its
/// size: a day (a setting meant as "no deadline" must not overflow
/// tonic's, which panics past about 11,000 years).
pub const DEADLINE_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// The link rate a deployment promises each RPC unless it says otherwise:
/// 1 MiB/s, far below any link between regions today. It is a share, not
/// the link: every group's RPCs to one peer share one connection, so a
/// link near this rate carrying several large RPCs at once misses their
/// deadlines. Set it to what one RPC can count on when the link is busy.
pub const LINK_BYTES_PER_S_DEFAULT: u64 = 1024 * 1024;

impl From<Duration> for Deadlines {
    /// `base`, over links of [`LINK_BYTES_PER_S_DEFAULT`].
    fn from(base: Duration) -> Self {
        Self {
            base,
            link_bytes_per_s: LINK_BYTES_PER_S_DEFAULT,
        }
    }
}

impl Deadlines {
    /// The deadline of an RPC that carries `bytes`; at most
    /// [`DEADLINE_MAX`].
    pub fn for_bytes(&self, bytes: usize) -> Duration {
        #[cfg(feature = "chaos-bite")]
        if bytes_unbounded() {
            return self.base.min(DEADLINE_MAX);
        }
        let carried = carry_time(bytes, self.link_bytes_per_s);
        self.base.saturating_add(carried).min(DEADLINE_MAX)
    }
}

/// How long `bytes` take over a link of `bytes_per_s` (a rate of zero
/// counts as one byte a second); saturates, never overflows.
pub fn carry_time(bytes: usize, bytes_per_s: u64) -> Duration {
    let rate = u128::from(bytes_per_s.max(1));
    let micros = (bytes as u128).saturating_mul(1_000_000) / rate;
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// The bytes an entry takes in an append (its payload in base64 inside
/// JSON, and its frame).
pub fn entry_bytes(entry: &EntryOf<TypeConfig>) -> usize {
    let payload = match &entry.payload {
        EntryPayload::Normal(proposal) => proposal.encoded_bytes().saturating_mul(4) / 3,
        EntryPayload::Membership(_) => MEMBERSHIP_BYTES,
        EntryPayload::Blank => 0,
    };
    payload.saturating_add(ENTRY_FRAME_BYTES)
}

/// How many of `entries` one append carries: the longest prefix within
/// [`APPEND_BYTES_MAX`], and at least one; and their bytes.
fn append_prefix(entries: &[EntryOf<TypeConfig>]) -> (usize, usize) {
    let bytes_max = append_bytes_max();
    let mut bytes = 0usize;
    let mut count = 0;
    for entry in entries {
        let more = entry_bytes(entry);
        if count > 0 && bytes.saturating_add(more) > bytes_max {
            break;
        }
        bytes = bytes.saturating_add(more);
        count += 1;
    }
    (count, bytes)
}

/// The bytes of entries one append carries at most: [`APPEND_BYTES_MAX`],
/// or no bound with finding 9 put back.
pub(crate) fn append_bytes_max() -> usize {
    #[cfg(feature = "chaos-bite")]
    if bytes_unbounded() {
        return usize::MAX;
    }
    APPEND_BYTES_MAX
}

/// Audit finding 9 put back (the `bytes-unbounded` chaos bite).
#[cfg(feature = "chaos-bite")]
fn bytes_unbounded() -> bool {
    use ledger_reservations::bite::{Bite, is};
    is(Bite::BytesUnbounded)
}

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
    pub(crate) deadlines: Deadlines,
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
            deadlines: self.deadlines,
        }
    }
}

pub(crate) struct Connection<T: Transport> {
    transport: Arc<T>,
    from: u64,
    to: Peer,
    group: Group,
    deadlines: Deadlines,
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
            .bounded(self.deadlines.base.min(option.hard_ttl()), call)
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
        mut request: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // A batch beyond the byte bound goes a prefix at a time: openraft
        // takes a partial success as progress and sends the rest next.
        let (count, bytes) = append_prefix(&request.entries);
        let rest_unsent = count < request.entries.len();
        request.entries.truncate(count);
        let last_sent = request.entries.last().map(|entry| entry.log_id);
        // Within our deadline, not openraft's: openraft gives every append
        // its heartbeat interval (100 to 300 ms) to live, and a follower
        // that takes longer to write a batch (a busy disk, a loaded
        // machine) is slow, not unreachable. Answered as unreachable, the
        // leader backs off and sends again, and every commit of the region
        // waits seconds (seen by the chaos suite's calm scenario).
        let call = self
            .transport
            .append_entries(self.from, &self.to, self.group, request);
        let answer = self
            .bounded(self.deadlines.for_bytes(bytes), call)
            .await
            .map_err(|error| RPCError::Unreachable(Unreachable::new(&error)))?;
        Ok(match answer {
            AppendEntriesResponse::Success if rest_unsent => {
                AppendEntriesResponse::PartialSuccess(last_sent)
            }
            answer => answer,
        })
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
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let bytes = snapshot.snapshot.len();
        let call = self
            .transport
            .full_snapshot(self.from, &self.to, self.group, vote, snapshot);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            // Within a deadline its size scales, not openraft's fixed one:
            // a snapshot outgrows any fixed deadline as the ledger grows.
            result = self.bounded(self.deadlines.for_bytes(bytes), call) => {
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

    /// A peer that takes every append and keeps how many entries each
    /// carried.
    #[derive(Default)]
    struct Taking(std::sync::Mutex<Vec<usize>>);

    impl Transport for Taking {
        async fn append_entries(
            &self,
            _from: u64,
            _to: &Peer,
            _group: Group,
            request: AppendEntriesRequest<TypeConfig>,
        ) -> Result<AppendEntriesResponse<TypeConfig>, TransportError> {
            if let Ok(mut carried) = self.0.lock() {
                carried.push(request.entries.len());
            }
            Ok(AppendEntriesResponse::Success)
        }

        async fn vote(
            &self,
            _from: u64,
            to: &Peer,
            _group: Group,
            _ballot: Ballot,
            _request: VoteRequest<TypeConfig>,
        ) -> Result<VoteResponse<TypeConfig>, TransportError> {
            Err(TransportError::Unsupported { node: to.id })
        }

        async fn full_snapshot(
            &self,
            _from: u64,
            to: &Peer,
            _group: Group,
            _vote: VoteOf<TypeConfig>,
            _snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        ) -> Result<SnapshotResponse<TypeConfig>, TransportError> {
            Err(TransportError::Unsupported { node: to.id })
        }
    }

    /// An entry of `transfers` transfers, each with as much metadata as a
    /// transfer may carry (about 33 KB).
    fn bulky(index: u64, transfers: usize) -> EntryOf<TypeConfig> {
        use ledger_hlc::{NodeId, Stamp};
        use ledger_reservations::{
            AccountId, AccountKind, CurrencyCode, Event, EventBody, METADATA_ENTRIES_MAX,
            METADATA_VALUE_BYTES_MAX, Transfer, TransferId, TransferKind,
        };
        let metadata: ledger_reservations::Metadata = (0..METADATA_ENTRIES_MAX)
            .map(|at| {
                (
                    format!("line-{at:02}"),
                    "m".repeat(METADATA_VALUE_BYTES_MAX),
                )
            })
            .collect();
        let event = |id: usize| Event {
            stamp: Stamp::new(1, 0, NodeId(1)),
            body: EventBody::Transfer(Transfer {
                id: TransferId(id as u128),
                debit: AccountId(1),
                credit: AccountId(2),
                units: 1,
                currency: CurrencyCode::new("USD").expect("code"),
                debit_kind: AccountKind::User,
                credit_kind: AccountKind::User,
                kind: TransferKind::Posted,
                reference: None,
                metadata: Some(Box::new(metadata.clone())),
            }),
        };
        openraft::Entry {
            log_id: openraft::testing::log_id::<TypeConfig>(1, 1, index),
            payload: EntryPayload::Normal(crate::Proposal::region(
                (0..transfers).map(event).collect(),
            )),
        }
    }

    fn taking() -> (Arc<Taking>, Connection<Taking>) {
        let taking = Arc::new(Taking::default());
        let connection = Connection {
            transport: taking.clone(),
            from: 1,
            to: Peer {
                id: 2,
                addr: "local-2".to_owned(),
            },
            group: Group::Control,
            deadlines: Deadlines::from(Duration::from_secs(1)),
        };
        (taking, connection)
    }

    fn append(entries: Vec<EntryOf<TypeConfig>>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: VoteOf::<TypeConfig>::new(1, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        }
    }

    #[tokio::test]
    async fn a_batch_past_the_byte_bound_goes_a_prefix_at_a_time() {
        // About 2 MB each as JSON carries them: four fit in one append.
        let entries: Vec<_> = (1..=6).map(|index| bulky(index, 45)).collect();
        let each = entry_bytes(&entries[0]);
        assert!(4 * each <= APPEND_BYTES_MAX && 5 * each > APPEND_BYTES_MAX);
        let fourth = entries[3].log_id;
        let (taking, mut connection) = taking();
        let answer = connection
            .append_entries(append(entries), option())
            .await
            .expect("answered");
        assert_eq!(answer, AppendEntriesResponse::PartialSuccess(Some(fourth)));
        let small: Vec<_> = (1..=3).map(|index| bulky(index, 1)).collect();
        let answer = connection
            .append_entries(append(small), option())
            .await
            .expect("answered");
        assert_eq!(answer, AppendEntriesResponse::Success);
        let huge = vec![bulky(1, 300), bulky(2, 1)];
        assert!(entry_bytes(&huge[0]) > APPEND_BYTES_MAX);
        let answer = connection
            .append_entries(append(huge), option())
            .await
            .expect("answered");
        assert!(matches!(answer, AppendEntriesResponse::PartialSuccess(_)));
        let carried = taking.0.lock().map(|carried| carried.clone()).ok();
        assert_eq!(
            carried,
            Some(vec![4, 3, 1]),
            "an entry too large goes alone"
        );
    }

    #[test]
    fn a_deadline_grows_with_the_bytes_over_the_slowest_link() {
        let deadlines = Deadlines {
            base: Duration::from_secs(2),
            link_bytes_per_s: 1_000_000,
        };
        assert_eq!(deadlines.for_bytes(0), Duration::from_secs(2));
        assert_eq!(deadlines.for_bytes(3_000_000), Duration::from_secs(5));
        // Saturates, never overflows, and stays within what tonic carries.
        assert_eq!(deadlines.for_bytes(usize::MAX), DEADLINE_MAX);
        let forever = Deadlines {
            base: Duration::from_millis(u64::MAX),
            link_bytes_per_s: 1,
        };
        assert_eq!(forever.for_bytes(0), DEADLINE_MAX);
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
            deadlines: Deadlines {
                base: Duration::from_secs(1),
                link_bytes_per_s: 1024 * 1024,
            },
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
