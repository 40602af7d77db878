//! The state machine of one group: applies committed entries to the node's
//! ledger (the region's own state, a replica of another region's, or the
//! control state) and keeps snapshots.
//!
//! Every group of a node shares one [`Ledger`]. A snapshot of a group holds
//! that group's part of it (a `RegionState` or the `Control`), with a
//! checksum; it is stored durably in the node's database and restored on
//! open, so a restart replays only the log after it.

use crate::codec::{self, Format};
use crate::disk::Blocking;
use crate::traces::{TraceBook, TraceContext, TraceKey, entry_trace};
use crate::types::{Applied, Group, Proposal, TypeConfig};
use futures_util::StreamExt;
use ledger_reservations::{Control, Ledger, Position, RegionState};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

const SNAPSHOT_META: &str = "meta";
const SNAPSHOT_DATA: &str = "data";

/// Where one group's state machine stands.
#[derive(Debug, Clone, Default)]
struct Progress {
    applied: Option<LogIdOf<TypeConfig>>,
    membership: StoredMembershipOf<TypeConfig>,
}

struct Inner {
    ledger: Ledger,
    progress: BTreeMap<Group, Progress>,
}

/// A node's ledger, shared by the state machines of all its groups and read
/// by the rest of the node. The lock is never held across an await.
#[derive(Clone)]
pub struct SharedLedger {
    inner: Arc<RwLock<Inner>>,
    /// Traces of the releases and pulls applied here, for the region that
    /// acts on them; a
    /// lock of its own, so that taking one never waits for an apply.
    traces: Arc<Mutex<TraceBook>>,
}

impl SharedLedger {
    pub fn new(ledger: Ledger) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner {
                ledger,
                progress: BTreeMap::new(),
            })),
            traces: Arc::default(),
        }
    }

    /// The trace of a release or a pull applied here, kept: for what may
    /// be tried again (a pull's answer), until the book forgets it.
    pub fn trace(&self, key: &TraceKey) -> Option<TraceContext> {
        self.book().get(key)
    }

    /// The trace of a release or a pull applied here, forgotten once taken.
    pub fn take_trace(&self, key: &TraceKey) -> Option<TraceContext> {
        self.book().take(key)
    }

    fn book(&self) -> MutexGuard<'_, TraceBook> {
        // A map of contexts: a panic elsewhere cannot leave it half-written.
        self.traces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the ledger as applied so far. Readers (deciders, the writer's
    /// admission, the API) read at once; applying waits for them, and they
    /// for it.
    pub fn read<R>(&self, read: impl FnOnce(&Ledger) -> R) -> R {
        read(&self.shared().ledger)
    }

    // A panic while applying leaves the ledger in an unknown state; the node
    // stops on it (apply errors are fatal), so poison is not read past.
    fn shared(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn exclusive(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One group's part of the ledger, as a snapshot holds it.
#[derive(Debug, Serialize, Deserialize)]
enum GroupState {
    Region(Box<RegionState>),
    Control(Control),
}

/// The state machine of one group.
#[derive(Clone)]
pub struct StateMachine {
    group: Group,
    shared: SharedLedger,
    db: Arc<Database>,
    snapshot_table: Arc<str>,
    blocking: Blocking,
}

fn other<E: std::error::Error + Send + Sync + 'static>(error: E) -> io::Error {
    io::Error::other(error)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl StateMachine {
    /// The state machine of `group`, restored from its stored snapshot if
    /// there is one.
    pub fn open(db: Arc<Database>, group: Group, shared: SharedLedger) -> io::Result<Self> {
        let machine = Self {
            group,
            shared,
            db,
            snapshot_table: Arc::from(format!("{}/snapshot", group.name())),
            blocking: Blocking::default(),
        };
        {
            let txn = machine.db.begin_write().map_err(other)?;
            txn.open_table(machine.snapshots()).map_err(other)?;
            txn.commit().map_err(other)?;
        }
        if let Some((meta, data)) = machine.stored_snapshot()? {
            machine.restore(&meta, &data)?;
        }
        Ok(machine)
    }

    /// Runs its disk work on the calling task (a simulated disk).
    pub(crate) fn inline_io(mut self) -> Self {
        self.blocking = Blocking::Inline;
        self
    }

    pub fn shared(&self) -> &SharedLedger {
        &self.shared
    }

    fn snapshots(&self) -> TableDefinition<'_, &'static str, &'static [u8]> {
        TableDefinition::new(&self.snapshot_table)
    }

    fn stored_snapshot(&self) -> io::Result<Option<(SnapshotMetaOf<TypeConfig>, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(other)?;
        let table = txn.open_table(self.snapshots()).map_err(other)?;
        let meta = table.get(SNAPSHOT_META).map_err(other)?;
        let data = table.get(SNAPSHOT_DATA).map_err(other)?;
        match (meta, data) {
            (Some(meta), Some(data)) => Ok(Some((
                codec::decode(Format::Json, meta.value())?,
                data.value().to_vec(),
            ))),
            _ => Ok(None),
        }
    }

    /// Stores a snapshot unless the one stored is as new or newer: openraft
    /// builds snapshots in a task of its own, so one built here and one
    /// installed from the leader can be stored in either order, and the log
    /// may already be purged up to the newer one.
    fn store_snapshot(&self, meta: &SnapshotMetaOf<TypeConfig>, data: &[u8]) -> io::Result<()> {
        let encoded = codec::encode(Format::Json, meta)?;
        let txn = self.db.begin_write().map_err(other)?;
        {
            let mut table = txn.open_table(self.snapshots()).map_err(other)?;
            let stored: Option<SnapshotMetaOf<TypeConfig>> =
                match table.get(SNAPSHOT_META).map_err(other)? {
                    Some(bytes) => Some(codec::decode(Format::Json, bytes.value())?),
                    None => None,
                };
            if stored.is_some_and(|stored| stored.last_log_id >= meta.last_log_id) {
                return Ok(());
            }
            table
                .insert(SNAPSHOT_META, encoded.as_slice())
                .map_err(other)?;
            table.insert(SNAPSHOT_DATA, data).map_err(other)?;
        }
        txn.commit().map_err(other)
    }

    /// Stores a snapshot as this machine's disk work runs ([`Blocking`]):
    /// never on one of the runtime's workers over a real disk (redb's write
    /// lock and its fsync can wait long).
    async fn store_snapshot_blocking(
        &self,
        meta: SnapshotMetaOf<TypeConfig>,
        data: Vec<u8>,
    ) -> io::Result<Vec<u8>> {
        let machine = self.clone();
        self.blocking
            .run("snapshot I/O", move || {
                machine.store_snapshot(&meta, &data)?;
                Ok(data)
            })
            .await
    }

    /// Replaces this group's part of the ledger with a snapshot's.
    fn restore(&self, meta: &SnapshotMetaOf<TypeConfig>, data: &[u8]) -> io::Result<()> {
        let state: GroupState = codec::decode(Format::Postcard, data)?;
        let mut inner = self.shared.exclusive();
        match (self.group, state) {
            (Group::Region(region), GroupState::Region(state)) if state.id() == region => {
                inner.ledger.install_region(*state).map_err(other)?;
            }
            (Group::Control, GroupState::Control(control)) => inner.ledger.install_control(control),
            (group, _) => return Err(invalid(format!("snapshot of another group than {group}"))),
        }
        inner.progress.insert(
            self.group,
            Progress {
                applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            },
        );
        Ok(())
    }

    /// Applies one committed entry; returns how many events it applied.
    fn apply_entry(
        &self,
        inner: &mut Inner,
        log_id: LogIdOf<TypeConfig>,
        payload: &EntryPayload<Proposal, u64, openraft::BasicNode>,
    ) -> io::Result<u32> {
        let mut applied = 0u32;
        let index = log_id.index;
        match (payload, self.group) {
            (EntryPayload::Blank, _) => {}
            (EntryPayload::Membership(membership), _) => {
                let progress = inner.progress.entry(self.group).or_default();
                progress.membership =
                    StoredMembershipOf::<TypeConfig>::new(Some(log_id), membership.clone());
            }
            (EntryPayload::Normal(Proposal::Region { events, trace }), Group::Region(region)) => {
                for (offset, event) in events.iter().enumerate() {
                    let position = Position::new(index, offset_u32(offset)?);
                    if inner.ledger.apply(region, position, event).map_err(other)? {
                        applied += 1;
                    }
                }
                if let Some(trace) = trace {
                    let home = inner.ledger.home();
                    self.shared.book().record(home, region, events, trace);
                }
            }
            (EntryPayload::Normal(Proposal::Control(events)), Group::Control) => {
                for (offset, event) in events.iter().enumerate() {
                    let position = Position::new(index, offset_u32(offset)?);
                    if inner.ledger.apply_control(position, event).map_err(other)? {
                        applied += 1;
                    }
                }
            }
            (EntryPayload::Normal(proposal), group) => {
                return Err(invalid(format!("{proposal} in the log of {group}")));
            }
        }
        inner.progress.entry(self.group).or_default().applied = Some(log_id);
        Ok(applied)
    }
}

fn offset_u32(offset: usize) -> io::Result<u32> {
    u32::try_from(offset).map_err(|_| invalid(format!("entry with more than {} events", u32::MAX)))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> io::Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>)> {
        let inner = self.shared.shared();
        let progress = inner.progress.get(&self.group).cloned().unwrap_or_default();
        Ok((progress.applied, progress.membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: futures_util::Stream<Item = io::Result<EntryResponder<TypeConfig>>>
            + Unpin
            + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let span = tracing::info_span!(
                "raft.apply",
                group = %self.group,
                index = entry.log_id.index,
                events = tracing::field::Empty,
            );
            if let Some(context) = entry_trace(&entry.payload) {
                context.adopt(&span);
            }
            let applied = {
                let _applying = span.enter();
                let mut inner = self.shared.exclusive();
                self.apply_entry(&mut inner, entry.log_id, &entry.payload)?
            };
            span.record("events", applied);
            if let Some(responder) = responder {
                responder.send(Applied {
                    index: entry.log_id.index,
                    events: applied,
                });
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Self::SnapshotData,
    ) -> io::Result<()> {
        self.restore(meta, &snapshot)?;
        self.store_snapshot_blocking(meta.clone(), snapshot)
            .await
            .map(|_| ())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<Option<SnapshotOf<TypeConfig, Self::SnapshotData>>> {
        let machine = self.clone();
        let stored = self
            .blocking
            .run("snapshot I/O", move || machine.stored_snapshot())
            .await?;
        Ok(stored.map(|(meta, snapshot)| SnapshotOf::<TypeConfig, Vec<u8>> { meta, snapshot }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, Vec<u8>>> {
        // Cloned under the lock; encoded and stored outside it.
        let (meta, state) = {
            let inner = self.shared.shared();
            let progress = inner.progress.get(&self.group).cloned().unwrap_or_default();
            let state = match self.group {
                Group::Region(region) => GroupState::Region(
                    inner
                        .ledger
                        .region(region)
                        .cloned()
                        .map(Box::new)
                        .ok_or_else(|| invalid(format!("no region {region} in this ledger")))?,
                ),
                Group::Control => GroupState::Control(inner.ledger.control().clone()),
            };
            let meta = SnapshotMetaOf::<TypeConfig> {
                last_log_id: progress.applied,
                last_membership: progress.membership,
            };
            (meta, state)
        };
        let data = codec::encode(Format::Postcard, &state)?;
        let data = self.store_snapshot_blocking(meta.clone(), data).await?;
        Ok(SnapshotOf::<TypeConfig, Vec<u8>> {
            meta,
            snapshot: data,
        })
    }
}
