//! The simulated network between the nodes' Raft groups: every RPC and its
//! answer cross it, each way delayed as the seed decides, and, while the
//! network is lossy, dropped or delivered twice; links can be cut one way
//! or both. Messages are counted in bytes (as gRPC would carry them): each
//! takes its bytes' time over its link (fast inside a region, slow between
//! regions), and one larger than gRPC's limit is refused. Each message has
//! the link to itself: messages in flight do not queue behind each other.
//! Delivery itself is replication's in-process transport: a call on the
//! target node's Raft, which runs it in the target's runtime.

use crate::rng::Rng;
use ledger_replication::raft_types::TypeConfig;
use ledger_replication::{
    Ballot, Group, LocalTransport, Peer, RAFT_MESSAGE_BYTES_MAX, ReplicaNode, Transport,
    TransportError, carry_time, entry_bytes,
};
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What the network does to messages, as the nemesis sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weather {
    /// One-way delay, from `delay_ms.0` to `delay_ms.1` (ms), drawn per
    /// message: messages overtake each other when it spreads.
    pub delay_ms: (u64, u64),
    /// Out of 1,000 messages, how many are dropped, and how many are
    /// delivered twice.
    pub drop_per_mille: u64,
    pub duplicate_per_mille: u64,
}

impl Weather {
    pub const CALM: Weather = Weather {
        delay_ms: (1, 3),
        drop_per_mille: 0,
        duplicate_per_mille: 0,
    };
}

/// What a message holds besides its payload (ids, vote, framing), and the
/// size of one that holds nothing else (a vote, an answer).
const FRAME_BYTES: usize = 128;

/// The links' speeds, in bytes a second.
#[derive(Debug, Clone)]
pub struct Links {
    /// Each node's region.
    pub region_of: BTreeMap<u64, u32>,
    pub within_region: u64,
    pub between_regions: u64,
}

impl Links {
    fn rate(&self, from: u64, to: u64) -> u64 {
        match self.region_of.get(&from) == self.region_of.get(&to) {
            true => self.within_region,
            false => self.between_regions,
        }
    }

    /// How long `bytes` take from `from` to `to`.
    fn time(&self, from: u64, to: u64, bytes: usize) -> Duration {
        carry_time(bytes, self.rate(from, to))
    }
}

#[derive(Debug)]
struct State {
    rng: Rng,
    weather: Weather,
    /// Links cut, one way: (from, to).
    cut: BTreeSet<(u64, u64)>,
    counts: Counts,
}

/// Messages the network carried, dropped and doubled, the bytes it
/// carried, and the messages it refused as too large.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub bytes: u64,
    pub too_large: u64,
}

/// The network. Clones share it.
#[derive(Clone)]
pub struct Net {
    delivery: LocalTransport,
    links: Arc<Links>,
    state: Arc<Mutex<State>>,
}

/// What becomes of one message.
enum Fate {
    Lost,
    Delivered {
        delay: Duration,
        again: Option<Duration>,
    },
}

impl Net {
    pub fn new(seed: u64, links: Links) -> Self {
        Self {
            delivery: LocalTransport::default(),
            links: Arc::new(links),
            state: Arc::new(Mutex::new(State {
                rng: Rng::new(seed),
                weather: Weather::CALM,
                cut: BTreeSet::new(),
                counts: Counts::default(),
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a (re)started node's groups on the network.
    pub fn attach(&self, node: &ReplicaNode) {
        self.delivery.attach(node);
    }

    /// Takes a crashed node off the network.
    pub fn detach(&self, node: u64) {
        self.delivery.remove_node(node);
    }

    pub fn set_weather(&self, weather: Weather) {
        self.state().weather = weather;
    }

    /// Cuts the link from `from` to `to` (that way only).
    pub fn cut(&self, from: u64, to: u64) {
        self.state().cut.insert((from, to));
    }

    pub fn heal(&self) {
        self.state().cut.clear();
    }

    pub fn counts(&self) -> Counts {
        self.state().counts
    }

    fn fate(&self, from: u64, to: u64, bytes: usize) -> Fate {
        let mut state = self.state();
        state.counts.sent += 1;
        let weather = state.weather;
        let (low, high) = weather.delay_ms;
        let carried = self.links.time(from, to, bytes);
        let delay = |rng: &mut Rng| {
            Duration::from_millis(low + rng.below(high.saturating_sub(low) + 1)) + carried
        };
        if state.cut.contains(&(from, to)) || state.rng.below(1_000) < weather.drop_per_mille {
            state.counts.dropped += 1;
            return Fate::Lost;
        }
        state.counts.bytes += bytes as u64;
        let first = delay(&mut state.rng);
        let again = (state.rng.below(1_000) < weather.duplicate_per_mille).then(|| {
            state.counts.duplicated += 1;
            first + delay(&mut state.rng)
        });
        Fate::Delivered {
            delay: first,
            again,
        }
    }

    /// Carries one RPC of `bytes` from `from` to `to.id` and its answer
    /// back. A message lost either way is the caller's deadline running
    /// out (openraft's network bounds every RPC); one past gRPC's size
    /// limit is refused at once, as gRPC refuses to encode it.
    async fn carry<R, Fut>(
        &self,
        from: u64,
        to: u64,
        bytes: usize,
        call: impl Fn() -> Fut + Send + Sync + 'static,
    ) -> Result<R, TransportError>
    where
        R: Send + 'static,
        Fut: Future<Output = Result<R, TransportError>> + Send + 'static,
    {
        if bytes > RAFT_MESSAGE_BYTES_MAX {
            self.state().counts.too_large += 1;
            return Err(TransportError::Unreachable {
                node: to,
                reason: format!("a message of {bytes} bytes is over the limit"),
            });
        }
        let Fate::Delivered { delay, again } = self.fate(from, to, bytes) else {
            return std::future::pending().await;
        };
        let call = Arc::new(call);
        if let Some(again) = again {
            let call = call.clone();
            tokio::spawn(async move {
                tokio::time::sleep(again).await;
                let _ = call().await;
            });
        }
        tokio::time::sleep(delay).await;
        let answer = call().await;
        match self.fate(to, from, FRAME_BYTES) {
            Fate::Lost => std::future::pending().await,
            Fate::Delivered { delay, .. } => {
                tokio::time::sleep(delay).await;
                answer
            }
        }
    }
}

impl Transport for Net {
    async fn append_entries(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        request: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<TypeConfig>, TransportError> {
        let (delivery, peer) = (self.delivery.clone(), to.clone());
        let bytes = request
            .entries
            .iter()
            .map(entry_bytes)
            .fold(FRAME_BYTES, usize::saturating_add);
        self.carry(from, to.id, bytes, move || {
            let (delivery, peer, request) = (delivery.clone(), peer.clone(), request.clone());
            async move { delivery.append_entries(from, &peer, group, request).await }
        })
        .await
    }

    async fn vote(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        ballot: Ballot,
        request: VoteRequest<TypeConfig>,
    ) -> Result<VoteResponse<TypeConfig>, TransportError> {
        let (delivery, peer) = (self.delivery.clone(), to.clone());
        self.carry(from, to.id, FRAME_BYTES, move || {
            let (delivery, peer, request) = (delivery.clone(), peer.clone(), request.clone());
            async move { delivery.vote(from, &peer, group, ballot, request).await }
        })
        .await
    }

    async fn full_snapshot(
        &self,
        from: u64,
        to: &Peer,
        group: Group,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
    ) -> Result<SnapshotResponse<TypeConfig>, TransportError> {
        let (delivery, peer) = (self.delivery.clone(), to.clone());
        let bytes = snapshot.snapshot.len().saturating_add(FRAME_BYTES);
        self.carry(from, to.id, bytes, move || {
            let (delivery, peer) = (delivery.clone(), peer.clone());
            let (vote, snapshot) = (vote, snapshot.clone());
            async move {
                delivery
                    .full_snapshot(from, &peer, group, vote, snapshot)
                    .await
            }
        })
        .await
    }
}
