//! openraft's own storage test suite against the redb log and the ledger
//! state machine, and the durability properties the suite does not cover.

mod common;

use ledger_replication::raft_types::TypeConfig;
use ledger_replication::{Group, LogStore, SharedLedger, StateMachine};
use ledger_reservations::{Ledger, RegionId};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use std::sync::Arc;

struct Builder;

fn open_node(dir: &std::path::Path) -> (Arc<redb::Database>, SharedLedger) {
    let db = Arc::new(redb::Database::create(dir.join("node.redb")).expect("database opens"));
    let ledger = Ledger::new(RegionId(0), &[RegionId(0), RegionId(1)]).expect("layout");
    (db, SharedLedger::new(ledger))
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (db, shared) = open_node(dir.path());
        let group = Group::Region(RegionId(0));
        let (log, report) = LogStore::open(db.clone(), group).expect("log opens");
        assert!(report.cut.is_empty());
        let machine = StateMachine::open(db, group, shared).expect("state machine opens");
        Ok((dir, log, machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openraft_storage_suite_passes() {
    Suite::test_all(Builder)
        .await
        .expect("every storage test passes");
}

mod durability {
    use super::*;
    use ledger_replication::Proposal;
    use ledger_reservations::*;
    use openraft::alias::EntryOf;
    use openraft::storage::{IOFlushed, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
    use openraft::testing::log_id;
    use openraft::{Entry, EntryPayload, RaftLogReader};
    use redb::ReadableTable;

    const GROUP: Group = Group::Region(RegionId(0));

    fn entry(index: u64, events: Vec<Event>) -> EntryOf<TypeConfig> {
        Entry {
            log_id: log_id::<TypeConfig>(1, 1, index),
            payload: EntryPayload::Normal(Proposal::region(events)),
        }
    }

    fn top_up(id: u128, cents: u128) -> Event {
        common::top_up(id, cents, 1_000 + id as u64)
    }

    async fn append(log: &mut LogStore, entries: Vec<EntryOf<TypeConfig>>) {
        log.append(entries, IOFlushed::noop())
            .await
            .expect("appends");
    }

    fn corrupt(dir: &std::path::Path, index: u64) {
        let db = redb::Database::create(dir.join("node.redb")).expect("opens");
        let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("region-0/log");
        let txn = db.begin_write().expect("write");
        {
            let mut log = txn.open_table(table).expect("table");
            let mut record = log
                .get(index)
                .expect("reads")
                .expect("present")
                .value()
                .to_vec();
            let last = record.len() - 1;
            record[last] ^= 0x01;
            log.insert(index, record.as_slice()).expect("writes");
        }
        txn.commit().expect("commits");
    }

    /// A node directory whose region-0 log holds entries 1 to 5.
    async fn log_of_five() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        let (db, _) = open_node(dir.path());
        let (mut log, _) = LogStore::open(db, GROUP).expect("opens");
        let entries = (1..=5)
            .map(|index| entry(index, vec![top_up(index as u128, 100)]))
            .collect();
        append(&mut log, entries).await;
        dir
    }

    /// A transfer carrying as much metadata as one may (about 33 KB).
    fn bulky(id: u128) -> Event {
        let mut event = top_up(id, 100);
        if let EventBody::Transfer(transfer) = &mut event.body {
            transfer.metadata = Some(Box::new(
                (0..METADATA_ENTRIES_MAX)
                    .map(|at| {
                        (
                            format!("line-{at:02}"),
                            "m".repeat(METADATA_VALUE_BYTES_MAX),
                        )
                    })
                    .collect(),
            ));
        }
        event
    }

    #[tokio::test]
    async fn replication_reads_at_most_an_append_s_bytes_and_at_least_one_entry() {
        let dir = tempfile::tempdir().expect("dir");
        let (db, _) = open_node(dir.path());
        let (mut log, _) = LogStore::open(db, GROUP).expect("opens");
        // About 4.4 MB each as stored: one goes per read of 8 MiB.
        let entries = (1..=5)
            .map(|index| {
                let events = (0..100)
                    .map(|at| bulky(index as u128 * 1_000 + at))
                    .collect();
                entry(index, events)
            })
            .collect();
        append(&mut log, entries).await;
        let all = log.try_get_log_entries(1..6).await.expect("reads");
        assert_eq!(all.len(), 5);
        let limited = log.limited_get_log_entries(1, 6).await.expect("reads");
        assert_eq!(limited.len(), 1);
        assert_eq!(limited[0], all[0]);
        let small = (6..=9)
            .map(|index| entry(index, vec![top_up(index as u128, 100)]))
            .collect();
        append(&mut log, small).await;
        let limited = log.limited_get_log_entries(6, 10).await.expect("reads");
        assert_eq!(limited.len(), 4, "small entries are read whole");
    }

    #[tokio::test]
    async fn a_corrupt_tail_is_cut_off_on_open_and_never_read() {
        let dir = log_of_five().await;
        corrupt(dir.path(), 5);
        corrupt(dir.path(), 4);
        let (db, _) = open_node(dir.path());
        let (mut log, report) = LogStore::open(db, GROUP).expect("opens");
        assert_eq!(report.cut, vec![5, 4]);
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id.map(|id| id.index), Some(3));
        assert_eq!(
            log.try_get_log_entries(1..10).await.expect("reads").len(),
            3
        );
    }

    #[tokio::test]
    async fn a_corrupt_record_before_the_tail_is_an_error_when_read() {
        let dir = log_of_five().await;
        corrupt(dir.path(), 2);
        let (db, _) = open_node(dir.path());
        let (mut log, report) = LogStore::open(db, GROUP).expect("opens");
        assert!(report.cut.is_empty(), "only the tail is cut");
        let error = log
            .try_get_log_entries(1..10)
            .await
            .expect_err("a bad record is not read");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn the_vote_the_committed_index_and_the_log_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let vote = openraft::impls::Vote::new(3, 7);
        {
            let (db, _) = open_node(dir.path());
            let (mut log, _) = LogStore::open(db, GROUP).expect("opens");
            append(
                &mut log,
                (1..=3).map(|index| entry(index, vec![])).collect(),
            )
            .await;
            log.save_vote(&vote).await.expect("vote");
            log.save_committed(Some(log_id::<TypeConfig>(1, 1, 2)))
                .await
                .expect("committed");
            log.purge(log_id::<TypeConfig>(1, 1, 1))
                .await
                .expect("purge");
        }
        let (db, _) = open_node(dir.path());
        let (mut log, _) = LogStore::open(db, GROUP).expect("opens");
        assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
        assert_eq!(
            log.read_committed().await.expect("committed"),
            Some(log_id::<TypeConfig>(1, 1, 2))
        );
        let state = log.get_log_state().await.expect("state");
        assert_eq!(
            state.last_purged_log_id,
            Some(log_id::<TypeConfig>(1, 1, 1))
        );
        assert_eq!(state.last_log_id, Some(log_id::<TypeConfig>(1, 1, 3)));
    }

    #[tokio::test]
    async fn the_state_machine_restarts_from_its_snapshot() {
        let dir = tempfile::tempdir().expect("dir");
        let before = {
            let (db, shared) = open_node(dir.path());
            let mut machine = StateMachine::open(db, GROUP, shared.clone()).expect("opens");
            let entries = vec![
                entry(1, vec![top_up(1, 100), top_up(2, 250)]),
                entry(2, vec![top_up(3, 5)]),
            ];
            let stream =
                futures_util::stream::iter(entries.into_iter().map(|entry| Ok((entry, None))));
            machine.apply(stream).await.expect("applies");
            let snapshot = machine.build_snapshot().await.expect("builds");
            assert_eq!(snapshot.meta.last_log_id.map(|id| id.index), Some(2));
            shared.read(|ledger| ledger.region(RegionId(0)).cloned().expect("region"))
        };
        assert_eq!(
            before.pool(AccountId(2)).map(|pool| pool.available),
            Some(355)
        );
        let (db, shared) = open_node(dir.path());
        let mut machine = StateMachine::open(db, GROUP, shared.clone()).expect("opens");
        let after = shared.read(|ledger| ledger.region(RegionId(0)).cloned().expect("region"));
        assert_eq!(after, before);
        let (applied, _) = machine.applied_state().await.expect("state");
        assert_eq!(applied.map(|id| id.index), Some(2));
        // Re-applying what the snapshot holds changes nothing.
        let stream = futures_util::stream::iter([Ok((entry(2, vec![top_up(3, 5)]), None))]);
        machine.apply(stream).await.expect("applies");
        assert_eq!(
            shared.read(|ledger| ledger.region(RegionId(0)).cloned()),
            Some(before)
        );
    }

    /// openraft builds snapshots in a task of its own: one built from an
    /// older state can reach the disk after a newer one was installed from
    /// the leader (and the log purged up to it). The stored snapshot never
    /// goes back, or the node could not restart.
    #[tokio::test]
    async fn a_stored_snapshot_is_never_replaced_by_an_older_one() {
        let built = |entries: Vec<EntryOf<TypeConfig>>| async move {
            let dir = tempfile::tempdir().expect("dir");
            let (db, shared) = open_node(dir.path());
            let mut machine = StateMachine::open(db, GROUP, shared).expect("opens");
            let stream =
                futures_util::stream::iter(entries.into_iter().map(|entry| Ok((entry, None))));
            machine.apply(stream).await.expect("applies");
            machine.build_snapshot().await.expect("builds")
        };
        let older = built(vec![entry(1, vec![top_up(1, 100)])]).await;
        let newer = built(vec![
            entry(1, vec![top_up(1, 100)]),
            entry(2, vec![top_up(2, 5)]),
        ])
        .await;
        let dir = tempfile::tempdir().expect("dir");
        let (db, shared) = open_node(dir.path());
        let mut machine = StateMachine::open(db, GROUP, shared).expect("opens");
        machine
            .install_snapshot(&newer.meta, newer.snapshot)
            .await
            .expect("installs");
        machine
            .install_snapshot(&older.meta, older.snapshot)
            .await
            .expect("stores nothing");
        let current = machine
            .get_current_snapshot()
            .await
            .expect("reads")
            .expect("a snapshot");
        assert_eq!(current.meta.last_log_id.map(|id| id.index), Some(2));
    }

    #[tokio::test]
    async fn an_event_that_does_not_fit_the_state_is_a_fatal_error() {
        let dir = tempfile::tempdir().expect("dir");
        let (db, shared) = open_node(dir.path());
        let mut machine = StateMachine::open(db, GROUP, shared).expect("opens");
        let twice = vec![
            entry(1, vec![top_up(1, 100)]),
            entry(2, vec![top_up(1, 100)]),
        ];
        let stream = futures_util::stream::iter(twice.into_iter().map(|entry| Ok((entry, None))));
        assert!(
            machine.apply(stream).await.is_err(),
            "the same transfer twice in a log"
        );
    }
}
