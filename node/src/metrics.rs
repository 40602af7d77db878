//! Prometheus metrics, served as text at `/metrics` on the node's HTTP
//! port (through the `metrics` facade and its Prometheus exporter).
//!
//! Counted as things happen: gRPC and HTTP requests by operation and code,
//! with their latency; commands by outcome; pulls asked and how they ended;
//! entries by events. Read when scraped: every group's Raft indexes,
//! term, leader and lag; pool totals per region, currency and kind (never
//! one series per account); open pulls; the clock against the peers and
//! the stamps refused for drift; calls refused for want of a key or role;
//! commands in flight. Every label takes a bounded set of values: a path
//! no rule names is counted as `unknown`, not by its text.

use crate::api::Api;
use crate::auth;
use crate::runtime::CommandResult;
use ledger_proto::v1 as api;
use ledger_reservations::{AccountKind, CurrencyCode, RegionId};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

/// Seconds: a call on loopback takes a millisecond, a pull or a call cut
/// off from its leader several seconds.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Events in one log entry (a call of 8,190 transfers makes more than
/// 8,190, and the writer batches calls).
const EVENTS_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0,
];

/// Bytes of one log entry as stored: a heartbeat's few hundred up to the
/// largest an RPC carries.
const BYTES_BUCKETS: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// How long a gauge no scrape has set stays served. Every gauge is set at
/// each scrape, so only one of a thing that is gone reaches it.
const GAUGE_IDLE: Duration = Duration::from_secs(60);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histograms' samples are folded in while nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds recorded samples into the histograms every [`UPKEEP_EVERY`]:
/// the exporter keeps each sample until then, so a node nobody scrapes
/// would hold every call's sample.
pub async fn upkeep(handle: &'static PrometheusHandle) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

/// This process's recorder, installed by the first call, every series
/// labelled with the node's id (`node`) and region (`node_region`; a pool's
/// own region is `region`); `None` when another recorder was installed
/// first (the node then serves no metrics).
pub fn install(node: u64, region: u16) -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                // A gauge not set for a while is of a thing that is gone (a
                // group this node left, a currency no pool holds): dropped.
                .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
                .add_global_label("node", node.to_string())
                .add_global_label("node_region", region.to_string())
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full("ledger_entry_events".into()),
                        EVENTS_BUCKETS,
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full("ledger_entry_bytes".into()),
                        BYTES_BUCKETS,
                    )
                })
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "ledger_grpc_requests_total",
        "gRPC calls answered, by service, method and code"
    );
    describe_histogram!(
        "ledger_grpc_request_duration_seconds",
        "gRPC calls: time until the answer's headers"
    );
    describe_counter!(
        "ledger_http_requests_total",
        "HTTP requests answered, by route, method and status"
    );
    describe_histogram!(
        "ledger_http_request_duration_seconds",
        "HTTP requests: time until the answer's headers"
    );
    describe_counter!(
        "ledger_commands_total",
        "Commands of CreateTransfers by outcome: applied, repeat, or the refusal's code"
    );
    describe_histogram!(
        "ledger_entry_events",
        "Events in each log entry this node's writer proposed"
    );
    describe_counter!(
        "ledger_pulls_total",
        "Pulls (a debit past the region's pool) asked, and how each ended"
    );
    describe_gauge!(
        "ledger_raft_committed_index",
        "Committed index of each group, as this node knows it"
    );
    describe_gauge!(
        "ledger_raft_applied_index",
        "Applied index of each group on this node"
    );
    describe_gauge!(
        "ledger_raft_lag_entries",
        "Committed entries of each group this node has not applied"
    );
    describe_gauge!(
        "ledger_raft_last_event_age_milliseconds",
        "Age of the newest event this node applied from each group"
    );
    describe_gauge!(
        "ledger_raft_term",
        "Raft term of each group as this node knows it"
    );
    describe_gauge!(
        "ledger_raft_leader",
        "Node id of each group's leader as this node knows it (0: none)"
    );
    describe_gauge!(
        "ledger_pool_available",
        "Reservation available per region, currency and account kind, in currency units"
    );
    describe_gauge!(
        "ledger_pool_held",
        "Reservation held by pending transfers per region, currency and account kind"
    );
    describe_gauge!("ledger_pulls_open", "Pulls open in each region's state");
    describe_gauge!(
        "ledger_clock_offset_milliseconds",
        "This node's clock against its peers' median (positive: ahead)"
    );
    describe_gauge!(
        "ledger_clock_refuses_to_lead",
        "1 while this node's clock is past the drift limit"
    );
    describe_counter!(
        "ledger_clock_drift_refusals_total",
        "Stamps from peers refused as too far ahead of this node's clock"
    );
    describe_counter!(
        "ledger_auth_refusals_total",
        "Calls refused: unauthenticated (no known key) or permission_denied (role)"
    );
    describe_gauge!(
        "ledger_commands_in_flight",
        "Commands being decided on this node"
    );
    describe_gauge!(
        "ledger_actors_alive",
        "Actors alive on this node, by kind (account actors at the router's last sweep)"
    );
    describe_gauge!(
        "ledger_actor_mailbox_messages",
        "Messages sent to an actor and not yet taken up, by actor (all account actors summed)"
    );
    describe_gauge!(
        "ledger_actor_mailbox_deepest_messages",
        "Messages waiting in the fullest account actor's mailbox"
    );
    describe_histogram!(
        "ledger_entry_bytes",
        "Bytes of each log entry this node writes to its logs, by group"
    );
    describe_gauge!(
        "ledger_sagas_in_flight",
        "Sagas running on this node, by kind"
    );
}

/// Methods of the services [`auth`] rules by prefix, by name.
const SERVICE_METHODS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
];

/// A gRPC call answered `code` after `elapsed`. Its method is a label only
/// if it is one this node serves by name; any other path is `unknown`.
pub fn grpc_answered(path: &str, code: tonic::Code, elapsed: Duration) {
    let known =
        auth::GRPC.iter().any(|(known, _)| *known == path) || SERVICE_METHODS.contains(&path);
    let (service, method) = match known {
        true => split_path(path),
        false => ("unknown", "unknown"),
    };
    let labels = [
        ("service", service.to_owned()),
        ("method", method.to_owned()),
        ("code", format!("{code:?}")),
    ];
    counter!("ledger_grpc_requests_total", &labels).increment(1);
    histogram!("ledger_grpc_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
}

/// `/ledger.v1.Ledger/CreateTransfers` as (`Ledger`, `CreateTransfers`).
fn split_path(path: &str) -> (&str, &str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let method = parts.next().unwrap_or_default();
    let service = service.rsplit('.').next().unwrap_or(service);
    (service, method)
}

/// An HTTP request to the route `template` answered `status` after `elapsed`.
pub fn http_answered(method: &str, template: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("route", template.to_owned()),
        ("method", method.to_owned()),
        ("status", status.to_string()),
    ];
    counter!("ledger_http_requests_total", &labels).increment(1);
    histogram!("ledger_http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
}

/// The outcome of each command of a CreateTransfers call a client made
/// of this node (one sent on by another node is counted there). A code
/// is a label only if it is one of the ledger's stable codes (a peer's
/// answer passes through): any other is `other`.
pub fn commands_answered(results: &[api::TransferResult]) {
    let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
    for result in results {
        let outcome = match &result.result {
            Some(api::transfer_result::Result::Applied(applied)) if applied.new => "applied",
            Some(api::transfer_result::Result::Applied(_)) => "repeat",
            Some(api::transfer_result::Result::Error(error)) if stable_code(&error.code) => {
                error.code.as_str()
            }
            Some(api::transfer_result::Result::Error(_)) | None => "other",
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    for (outcome, count) in outcomes {
        counter!("ledger_commands_total", "outcome" => outcome.to_owned()).increment(count);
    }
}

/// A code as the ledger writes them: a few upper-case words.
fn stable_code(code: &str) -> bool {
    (1..=40).contains(&code.len())
        && code
            .bytes()
            .all(|byte| byte.is_ascii_uppercase() || byte == b'_')
}

/// A log entry of `events` events proposed by this node's writer.
pub fn entry_proposed(events: usize) {
    histogram!("ledger_entry_events").record(events as f64);
}

/// A pull asked of the other regions.
pub fn pull_asked() {
    counter!("ledger_pulls_total", "outcome" => "asked").increment(1);
}

/// How a pull ended.
pub fn pull_ended(result: &CommandResult) {
    let outcome = match result {
        CommandResult::Applied { .. } => "applied",
        CommandResult::Rejected(_) => "refused",
        CommandResult::Unavailable(_) => "unavailable",
        CommandResult::PullTimedOut(_) => "timed_out",
    };
    counter!("ledger_pulls_total", "outcome" => outcome).increment(1);
}

/// The metrics as Prometheus text, with what is read when scraped brought
/// up to date first; `None` when this process serves no metrics.
pub fn render(api: &Api) -> Option<String> {
    let handle = HANDLE.get()?.as_ref()?;
    let status = api.status();
    for group in &status.groups {
        let name = || [("group", group.group.clone())];
        gauge!("ledger_raft_committed_index", &name()).set(group.committed_index as f64);
        gauge!("ledger_raft_applied_index", &name()).set(group.applied_index as f64);
        gauge!("ledger_raft_lag_entries", &name()).set(group.lag_entries as f64);
        gauge!("ledger_raft_last_event_age_milliseconds", &name())
            .set(group.last_event_age_ms as f64);
        gauge!("ledger_raft_term", &name()).set(group.term as f64);
        gauge!("ledger_raft_leader", &name()).set(group.leader as f64);
    }
    gauge!("ledger_clock_offset_milliseconds").set(status.clock_offset_ms as f64);
    gauge!("ledger_clock_refuses_to_lead").set(f64::from(u8::from(status.refuses_to_lead)));
    counter!("ledger_clock_drift_refusals_total").absolute(status.drift_refused);
    let node = api.node();
    let (unauthenticated, denied) = node.auth.refused();
    counter!("ledger_auth_refusals_total", "reason" => "unauthenticated").absolute(unauthenticated);
    counter!("ledger_auth_refusals_total", "reason" => "permission_denied").absolute(denied);
    gauge!("ledger_commands_in_flight").set(node.commands_in_flight() as f64);
    actors();
    pools(api);
    Some(handle.render())
}

/// Pool totals and open pulls of every region this node holds. The sums
/// are taken under the ledger's read lock with nothing allocated per pool;
/// the labels are made after it is let go.
fn pools(api: &Api) {
    type Totals = BTreeMap<(RegionId, CurrencyCode, &'static str), (i128, i128)>;
    let replica = &api.node().replica;
    let regions = replica.layout().regions();
    let (totals, pulls, scales) = replica.ledger().read(|ledger| {
        let scales: BTreeMap<CurrencyCode, u8> = ledger
            .control()
            .currencies()
            .map(|currency| (currency.code, currency.scale))
            .collect();
        let mut totals = Totals::new();
        let mut pulls = Vec::with_capacity(regions.len());
        for region in &regions {
            let Some(state) = ledger.region(*region) else {
                continue;
            };
            for (_, pool) in state.pools() {
                let total = totals
                    .entry((*region, pool.currency, kind_name(pool.kind)))
                    .or_insert((0, 0));
                total.0 = total.0.saturating_add(pool.available);
                total.1 = total.1.saturating_add(pool.held);
            }
            pulls.push((*region, state.pulls().count()));
        }
        (totals, pulls, scales)
    });
    for ((region, currency, kind), (available, held)) in totals {
        let labels = [
            ("region", region.0.to_string()),
            ("currency", currency.to_string()),
            ("kind", kind.to_owned()),
        ];
        let scale = scales.get(&currency).copied().unwrap_or(0);
        let unit = 10f64.powi(i32::from(scale));
        gauge!("ledger_pool_available", &labels).set(available as f64 / unit);
        gauge!("ledger_pool_held", &labels).set(held as f64 / unit);
    }
    for (region, open) in pulls {
        gauge!("ledger_pulls_open", "region" => region.0.to_string()).set(open as f64);
    }
}

/// The actors alive and what waits in their mailboxes.
fn actors() {
    let census = crate::actors::census::read();
    let alive = |kind: &'static str, count: u64| {
        gauge!("ledger_actors_alive", "actor" => kind).set(count as f64);
    };
    alive("account", census.accounts_alive);
    let queued = |actor: &'static str, count: u64| {
        gauge!("ledger_actor_mailbox_messages", "actor" => actor).set(count as f64);
    };
    queued("router", census.router_queued);
    queued("writer", census.writer_queued);
    queued("account", census.accounts_queued);
    gauge!("ledger_actor_mailbox_deepest_messages", "actor" => "account")
        .set(census.account_deepest as f64);
    let sagas = |kind: &'static str, count: u64| {
        gauge!("ledger_sagas_in_flight", "kind" => kind).set(count as f64);
    };
    sagas("withdrawal", census.withdrawal_sagas);
    sagas("pull", census.pull_sagas);
}

/// An account kind as the API names it (`USER`).
fn kind_name(kind: AccountKind) -> &'static str {
    crate::wire::kind_to_wire(kind)
        .as_str_name()
        .trim_start_matches("ACCOUNT_KIND_")
}
