//! The durable Raft log of one group, in a redb database shared by every
//! group of a node (a table per group).
//!
//! Each `append` is one write transaction, committed with redb's immediate
//! durability: one fsync for the whole batch, however many entries (group
//! commit). Every record carries a CRC32; on open, records at the tail whose
//! checksum fails are reported and cut off, so they are never applied. A
//! bad record anywhere else is an I/O error when read, which stops the node.

use crate::codec::{self, Format};
use crate::disk::Blocking;
use crate::faults::Faults;
use crate::traces::entry_trace;
use crate::types::{Group, TypeConfig};
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use tracing::Instrument;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// What opening a log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Indexes of the corrupt records cut off the tail, highest first.
    pub cut: Vec<u64>,
}

/// The log of one group. Clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    group: Group,
    log_table: Arc<str>,
    meta_table: Arc<str>,
    faults: Faults,
    blocking: Blocking,
}

fn other<E: std::error::Error + Send + Sync + 'static>(error: E) -> io::Error {
    io::Error::other(error)
}

impl LogStore {
    /// Opens (creating if needed) the log of `group` in `db`, cutting off a
    /// corrupt tail.
    /// Stalls every append as `faults` says (chaos tests).
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Runs its disk work on the calling task (a simulated disk).
    pub(crate) fn inline_io(mut self) -> Self {
        self.blocking = Blocking::Inline;
        self
    }

    pub fn open(db: Arc<Database>, group: Group) -> io::Result<(Self, OpenReport)> {
        let store = Self {
            db,
            group,
            log_table: Arc::from(format!("{}/log", group.name())),
            meta_table: Arc::from(format!("{}/meta", group.name())),
            faults: Faults::default(),
            blocking: Blocking::default(),
        };
        let mut report = OpenReport::default();
        let txn = store.db.begin_write().map_err(other)?;
        {
            txn.open_table(store.meta()).map_err(other)?;
            let mut log = txn.open_table(store.log()).map_err(other)?;
            loop {
                let last = log.last().map_err(other)?.map(|(index, record)| {
                    (index.value(), codec::verified(record.value()).is_ok())
                });
                match last {
                    Some((index, false)) => {
                        tracing::warn!(group = %group, index, "corrupt record at the tail of the log: cut off");
                        log.remove(index).map_err(other)?;
                        report.cut.push(index);
                    }
                    _ => break,
                }
            }
            if !report.cut.is_empty() {
                // The committed index is a hint kept for restarts; it must
                // not point past the log, or the node would try to apply
                // entries it no longer has. The leader sends them again.
                let remaining = match log.last().map_err(other)? {
                    Some((_, record)) => {
                        let entry: EntryOf<TypeConfig> =
                            codec::decode(Format::Json, record.value())?;
                        Some(entry.log_id)
                    }
                    None => None,
                };
                let mut meta = txn.open_table(store.meta()).map_err(other)?;
                let committed: Option<Option<LogIdOf<TypeConfig>>> =
                    match meta.get(COMMITTED).map_err(other)? {
                        Some(bytes) => Some(codec::decode(Format::Json, bytes.value())?),
                        None => None,
                    };
                let past_the_log = committed.flatten().is_some_and(|committed| {
                    remaining
                        .as_ref()
                        .is_none_or(|last| committed.index > last.index)
                });
                if past_the_log {
                    let bytes = codec::encode(Format::Json, &remaining)?;
                    meta.insert(COMMITTED, bytes.as_slice()).map_err(other)?;
                }
            }
        }
        txn.commit().map_err(other)?;
        Ok((store, report))
    }

    pub fn group(&self) -> Group {
        self.group
    }

    /// Runs `work` as this store's disk work runs ([`Blocking`]).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&LogStore) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let store = self.clone();
        self.blocking.run("log I/O", move || work(&store)).await
    }

    fn log(&self) -> TableDefinition<'_, u64, &'static [u8]> {
        TableDefinition::new(&self.log_table)
    }

    fn meta(&self) -> TableDefinition<'_, &'static str, &'static [u8]> {
        TableDefinition::new(&self.meta_table)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let txn = self.db.begin_read().map_err(other)?;
        let table = txn.open_table(self.meta()).map_err(other)?;
        match table.get(key).map_err(other)? {
            Some(bytes) => Ok(Some(codec::decode(Format::Json, bytes.value())?)),
            None => Ok(None),
        }
    }

    fn write_meta(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let txn = self.db.begin_write().map_err(other)?;
        {
            let mut table = txn.open_table(self.meta()).map_err(other)?;
            table.insert(key, bytes).map_err(other)?;
        }
        txn.commit().map_err(other)
    }

    fn last_entry_log_id(&self) -> io::Result<Option<LogIdOf<TypeConfig>>> {
        let txn = self.db.begin_read().map_err(other)?;
        let table = txn.open_table(self.log()).map_err(other)?;
        match table.last().map_err(other)? {
            Some((_, record)) => {
                let entry: EntryOf<TypeConfig> = codec::decode(Format::Json, record.value())?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }

    /// Removes the entries of `range` and, in the same transaction, writes
    /// `meta` (the new purge point), so a crash leaves one or the other.
    fn remove_range(
        &self,
        range: (Bound<u64>, Bound<u64>),
        meta: Option<(&str, Vec<u8>)>,
    ) -> io::Result<()> {
        let txn = self.db.begin_write().map_err(other)?;
        {
            if let Some((key, bytes)) = &meta {
                let mut table = txn.open_table(self.meta()).map_err(other)?;
                table.insert(*key, bytes.as_slice()).map_err(other)?;
            }
            let mut log = txn.open_table(self.log()).map_err(other)?;
            log.retain_in::<u64, _>(range, |_, _| false)
                .map_err(other)?;
        }
        txn.commit().map_err(other)
    }
}

impl LogStore {
    /// The entries of `range`, in order, until their stored bytes pass
    /// `bytes_max` (at least one entry when the range holds any).
    async fn read_range(
        &mut self,
        range: (Bound<u64>, Bound<u64>),
        bytes_max: usize,
    ) -> io::Result<Vec<EntryOf<TypeConfig>>> {
        self.blocking(move |store| {
            let txn = store.db.begin_read().map_err(other)?;
            let table = txn.open_table(store.log()).map_err(other)?;
            let mut entries = Vec::new();
            let mut bytes = 0usize;
            for row in table.range::<u64>(range).map_err(other)? {
                let (_, record) = row.map_err(other)?;
                let stored = record.value();
                if !entries.is_empty() && bytes.saturating_add(stored.len()) > bytes_max {
                    break;
                }
                bytes = bytes.saturating_add(stored.len());
                entries.push(codec::decode(Format::Json, stored)?);
            }
            Ok(entries)
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<EntryOf<TypeConfig>>> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        self.read_range(range, usize::MAX).await
    }

    /// What replication sends next: at most an append's bytes as stored
    /// (the stored JSON is what the wire carries), so a follower catching
    /// up on large entries is not read hundreds of entries it will not be
    /// sent (the network cuts an append at the same bound).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> io::Result<Vec<EntryOf<TypeConfig>>> {
        let range = (Bound::Included(start), Bound::Excluded(end));
        self.read_range(range, crate::network::append_bytes_max())
            .await
    }

    async fn read_vote(&mut self) -> io::Result<Option<VoteOf<TypeConfig>>> {
        self.blocking(|store| store.read_meta(VOTE)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        self.blocking(|store| {
            let last_purged_log_id: Option<LogIdOf<TypeConfig>> = store.read_meta(PURGED)?;
            let last_log_id = store.last_entry_log_id()?.or(last_purged_log_id);
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> io::Result<()> {
        let bytes = codec::encode(Format::Json, vote)?;
        self.blocking(move |store| store.write_meta(VOTE, &bytes))
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<TypeConfig>>) -> io::Result<()> {
        let bytes = codec::encode(Format::Json, &committed)?;
        self.blocking(move |store| store.write_meta(COMMITTED, &bytes))
            .await
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogIdOf<TypeConfig>>> {
        self.blocking(|store| {
            Ok(store
                .read_meta::<Option<LogIdOf<TypeConfig>>>(COMMITTED)?
                .flatten())
        })
        .await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // A disk stall, when a chaos test injects one: it holds the write
        // transaction (and so redb's write lock), as a slow fsync would.
        let stall = self.blocking.stall(self.faults.append_delay()).await;
        let mut traced = None;
        let records = entries
            .into_iter()
            .map(|entry| {
                traced = traced.or_else(|| entry_trace(&entry.payload));
                Ok((entry.log_id.index, codec::encode(Format::Json, &entry)?))
            })
            .collect::<io::Result<Vec<(u64, Vec<u8>)>>>();
        if let Ok(records) = &records {
            // The `metrics` facade: nothing unless the process installed a
            // recorder (the node serves it at /metrics).
            let bytes =
                metrics::histogram!("ledger_entry_bytes", "group" => self.group.to_string());
            for (_, record) in records {
                bytes.record(record.len() as f64);
            }
        }
        let span = tracing::info_span!(
            "raft.append",
            group = %self.group,
            entries = records.as_ref().map_or(0, Vec::len),
        );
        if let Some(context) = traced {
            context.adopt(&span);
        }
        let result = match records {
            Ok(records) => {
                self.blocking(move |store| {
                    let txn = store.db.begin_write().map_err(other)?;
                    {
                        let mut log = txn.open_table(store.log()).map_err(other)?;
                        for (index, bytes) in &records {
                            log.insert(*index, bytes.as_slice()).map_err(other)?;
                        }
                    }
                    if !stall.is_zero() {
                        std::thread::sleep(stall);
                    }
                    // One fsync for the whole batch.
                    txn.commit().map_err(other)
                })
                .instrument(span)
                .await
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.io_completed(Err(io::Error::new(error.kind(), error.to_string())));
                Err(error)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<TypeConfig>>) -> io::Result<()> {
        let start = match last_log_id {
            Some(log_id) => Bound::Excluded(log_id.index),
            None => Bound::Unbounded,
        };
        self.blocking(move |store| store.remove_range((start, Bound::Unbounded), None))
            .await
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> io::Result<()> {
        let purged = codec::encode(Format::Json, &log_id)?;
        self.blocking(move |store| {
            store.remove_range(
                (Bound::Unbounded, Bound::Included(log_id.index)),
                Some((PURGED, purged)),
            )
        })
        .await
    }
}
