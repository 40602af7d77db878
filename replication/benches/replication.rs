//! Durable appends and group commit, measured on this machine.
//!
//! `cargo bench -p ledger-replication`. Prints, for each case, the median of
//! its rounds. Data goes to a temporary directory under `target/` (a real
//! disk, so fsync costs what it costs).

use ledger_hlc::{NodeId, Stamp};
use ledger_replication::raft_types::TypeConfig;
use ledger_replication::*;
use ledger_reservations::*;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::testing::log_id;
use openraft::{Entry, EntryPayload};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EVENTS_PER_ENTRY: usize = 100;
const ENTRIES_PER_ROUND: u64 = 64;
const ROUNDS: usize = 15;
const PROPOSALS: usize = 400;

fn event(id: u128) -> Event {
    Event {
        stamp: Stamp::new(1_700_000_000_000_000_000 + id as u64, 0, NodeId(1)),
        body: EventBody::Transfer(Transfer {
            id: TransferId(id),
            debit: AccountId(1),
            credit: AccountId(2 + id % 1_000),
            units: 100,
            currency: CurrencyCode::new("USD").expect("code"),
            debit_kind: AccountKind::External,
            credit_kind: AccountKind::User,
            kind: TransferKind::Posted,
            reference: None,
            metadata: None,
        }),
    }
}

fn events(first: u128) -> Vec<Event> {
    (0..EVENTS_PER_ENTRY as u128)
        .map(|n| event(first + n))
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn scratch_dir() -> tempfile::TempDir {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&base).expect("bench directory");
    tempfile::tempdir_in(base).expect("temporary directory")
}

/// Entries per second appended durably, in batches of `per_call` entries.
async fn appends(per_call: u64) -> f64 {
    let dir = scratch_dir();
    let db = Arc::new(redb::Database::create(dir.path().join("log.redb")).expect("database"));
    let (mut log, _) = LogStore::open(db, Group::Region(RegionId(0))).expect("log");
    let mut index = 0u64;
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        let entries: Vec<_> = (0..ENTRIES_PER_ROUND)
            .map(|_| {
                index += 1;
                Entry {
                    log_id: log_id::<TypeConfig>(1, 1, index),
                    payload: EntryPayload::Normal(Proposal::region(events(
                        u128::from(index) * 1_000,
                    ))),
                }
            })
            .collect();
        let start = Instant::now();
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let call: Vec<_> = entries.by_ref().take(per_call as usize).collect();
            log.append(call, IOFlushed::noop()).await.expect("appends");
        }
        rates.push(ENTRIES_PER_ROUND as f64 / start.elapsed().as_secs_f64());
    }
    median(rates)
}

/// Entries per second committed (and applied on the leader) through a group
/// of three nodes over gRPC on 127.0.0.1, with `concurrency` proposals in flight.
async fn group_commit(concurrency: usize) -> f64 {
    let dir = scratch_dir();
    let mut listeners = BTreeMap::new();
    for id in 1..=3u64 {
        listeners.insert(
            id,
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binds"),
        );
    }
    let layout = Layout {
        nodes: listeners
            .iter()
            .map(|(id, listener)| NodeConfig {
                id: *id,
                region: RegionId(0),
                addr: listener.local_addr().expect("address").to_string(),
                api: String::new(),
                http: String::new(),
            })
            .collect(),
        control_voters: vec![],
    };
    let timings = Timings {
        snapshot_every_entries: 100_000,
        ..Timings::local()
    };
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for (id, listener) in listeners {
        let transport = Arc::new(GrpcTransport::new(timings.deadlines()));
        let node = ReplicaNode::start(
            id,
            &layout,
            timings,
            &Storage::Dir(dir.path().join(format!("n{id}"))),
            transport,
            ledger_replication::Faults::default(),
        )
        .await
        .expect("starts");
        servers.push(tokio::spawn(serve(
            node.raft_service(),
            listener,
            GateLayer::open(),
            None,
        )));
        nodes.push(node);
    }
    for node in &nodes {
        node.initialize().await.expect("initializes");
    }
    let group = Group::Region(RegionId(0));
    let leader = loop {
        if let Some(node) = nodes.iter().find(|node| node.is_leader(group)) {
            break node;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let leader = Arc::new(leader);
    let start = Instant::now();
    let mut next = 0usize;
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    use futures_util::StreamExt;
    while next < PROPOSALS || !in_flight.is_empty() {
        while next < PROPOSALS && in_flight.len() < concurrency {
            let proposal = Proposal::region(events(next as u128 * 1_000));
            let leader = leader.clone();
            in_flight.push(async move { leader.propose(group, proposal).await });
            next += 1;
        }
        if let Some(result) = in_flight.next().await {
            result.expect("committed");
        }
    }
    let rate = PROPOSALS as f64 / start.elapsed().as_secs_f64();
    drop(in_flight);
    for server in servers {
        server.abort();
    }
    rate
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("events per entry: {EVENTS_PER_ENTRY}; {ROUNDS} rounds of {ENTRIES_PER_ROUND} entries");
        let batched = appends(ENTRIES_PER_ROUND).await;
        let single = appends(1).await;
        println!("durable append, one fsync per batch of {ENTRIES_PER_ROUND}: {batched:.0} entries/s (median)");
        println!("durable append, one fsync per entry:        {single:.0} entries/s (median)");
        println!("ratio batch / per entry: {:.1}x", batched / single);
        for concurrency in [1, 16] {
            let rate = group_commit(concurrency).await;
            println!(
                "3-node group over gRPC loopback, {concurrency} in flight: {rate:.0} entries/s = {:.0} events/s ({PROPOSALS} proposals)",
                rate * EVENTS_PER_ENTRY as f64
            );
        }
    });
}
