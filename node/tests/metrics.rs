//! `/metrics` as Prometheus reads it: parsed by a Prometheus text parser,
//! every metric the operators' dashboard uses is there, and each moves
//! when the thing it counts happens (transfers, a pull, a withdrawal's
//! saga, a refused key, Raft applying).

mod common;

use common::*;
use ledger_node::auth::Role;
use ledger_node::client::Client;
use ledger_node::dev::{Cluster, DevKeys};
use prometheus_parse::{Scrape, Value};
use std::time::Duration;

async fn scrape(cluster: &Cluster, node: usize) -> Scrape {
    let keys = cluster.keys.as_ref().expect("keys");
    let text = reqwest::Client::new()
        .get(format!("http://{}/metrics", cluster.nodes[node].http))
        .bearer_auth(&keys.operator)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("answered")
        .error_for_status()
        .expect("200")
        .text()
        .await
        .expect("text");
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text")
}

/// The sum of `name`'s samples whose labels include `labels` (a
/// histogram's: how many it counted); `None` when there is none.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, want)| sample.labels.get(key) == Some(*want))
        })
        .map(|sample| match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |bucket| bucket.count),
            Value::Summary(_) => f64::NAN,
        })
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

fn present(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(scrape, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} is not in /metrics"))
}

/// Calls `/grpc.health.v1.Health/NoSuchMethod` (public, no key): answered
/// UNIMPLEMENTED.
async fn unknown_health_method(address: &str) {
    let channel = channel(address).await;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/NoSuchMethod");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let answer = grpc.unary(tonic::Request::new(()), path, codec).await;
    assert_eq!(
        answer.expect_err("no such method").code(),
        tonic::Code::Unimplemented
    );
}

async fn client_of(cluster: &Cluster, region: u16) -> Client {
    let address = cluster.api_of(region).expect("a region").to_owned();
    cluster
        .connect(&address, Role::Client)
        .await
        .expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_served_and_moves_when_its_thing_happens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = DevKeys::generate().expect("keys");
    let cluster = cluster_with(3, 1, 13_500, dir.path(), |options| {
        options.keys = Some(keys)
    })
    .await;
    let before = scrape(&cluster, 0).await;
    for group in ["control", "region-0", "region-1", "region-2"] {
        for name in [
            "ledger_raft_committed_index",
            "ledger_raft_applied_index",
            "ledger_raft_lag_entries",
            "ledger_raft_last_event_age_milliseconds",
            "ledger_raft_term",
            "ledger_raft_leader",
        ] {
            present(&before, name, &[("group", group)]);
        }
    }
    for name in [
        "ledger_clock_offset_milliseconds",
        "ledger_clock_refuses_to_lead",
        "ledger_clock_drift_refusals_total",
        "ledger_commands_in_flight",
    ] {
        present(&before, name, &[]);
    }
    for actor in ["router", "writer", "account"] {
        present(
            &before,
            "ledger_actor_mailbox_messages",
            &[("actor", actor)],
        );
    }
    present(
        &before,
        "ledger_actor_mailbox_deepest_messages",
        &[("actor", "account")],
    );
    // Every series says which node it is from, and that node's region.
    present(
        &before,
        "ledger_commands_in_flight",
        &[("node", "1"), ("node_region", "0")],
    );
    // The cluster's start asked every node for its status.
    let status = [
        ("service", "Admin"),
        ("method", "ClusterStatus"),
        ("code", "Ok"),
    ];
    present(&before, "ledger_grpc_requests_total", &status);
    present(&before, "ledger_grpc_request_duration_seconds", &status);
    let refused = [("reason", "unauthenticated")];
    let refused_before = present(&before, "ledger_auth_refusals_total", &refused);

    let (r0, r1) = (client_of(&cluster, 0).await, client_of(&cluster, 1).await);
    open_accounts(&r0, &[10, 11]).await;
    let topup = of_region(0, transfer(1, BANK, 10, "50.00"));
    assert!(applied(&submit(&r0, topup).await).is_some());
    // Funds of 11 in region 1 only: a debit of it in region 0 pulls.
    let far = of_region(1, transfer(2, BANK, 11, "8.00"));
    assert!(applied(&submit(&r1, far).await).is_some());
    wait_pool(&r0, 11, 1, "8.00").await;
    let pulled = submit(&r0, of_region(0, transfer(3, 11, 10, "3.00"))).await;
    assert!(applied(&pulled).is_some(), "{pulled:?}");
    let slow = of_region(0, withdrawal(4, 10, "5.00", "slow:iban:DE001", 60_000));
    assert!(applied(&submit(&r0, slow).await).is_some());
    let anonymous = Client::connect(cluster.api_of(0).expect("a node"))
        .await
        .expect("connects");
    assert!(anonymous.lookup_accounts(vec![id(10)]).await.is_err());
    unknown_health_method(cluster.api_of(0).expect("a node")).await;
    let nowhere = reqwest::Client::new()
        .get(format!("http://{}/no/such/route", cluster.nodes[0].http))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("answered");
    assert_eq!(nowhere.status(), reqwest::StatusCode::NOT_FOUND);

    let after = scrape(&cluster, 0).await;
    let grew = |name: &str, labels: &[(&str, &str)]| {
        let (was, is) = (
            value(&before, name, labels).unwrap_or(0.0),
            present(&after, name, labels),
        );
        assert!(is > was, "{name} {labels:?}: {was} then {is}");
    };
    grew("ledger_commands_total", &[("outcome", "applied")]);
    let transfers = [("method", "CreateTransfers"), ("code", "Ok")];
    grew("ledger_grpc_requests_total", &transfers);
    grew("ledger_grpc_request_duration_seconds", &transfers);
    grew("ledger_entry_events", &[]);
    grew("ledger_entry_bytes", &[("group", "region-0")]);
    grew("ledger_entry_bytes", &[("group", "region-1")]);
    grew("ledger_pulls_total", &[("outcome", "asked")]);
    grew("ledger_pulls_total", &[("outcome", "applied")]);
    grew("ledger_raft_applied_index", &[("group", "region-0")]);
    grew("ledger_raft_applied_index", &[("group", "region-1")]);
    assert!(present(&after, "ledger_auth_refusals_total", &refused) > refused_before);
    // A refusal's code is counted too (a trailers-only answer).
    let unauthenticated = [("method", "LookupAccounts"), ("code", "Unauthenticated")];
    grew("ledger_grpc_requests_total", &unauthenticated);
    // A path no rule names is `unknown`, never its text, even where a
    // whole service is public.
    assert_eq!(
        value(
            &after,
            "ledger_grpc_requests_total",
            &[("method", "NoSuchMethod")]
        ),
        None
    );
    grew("ledger_grpc_requests_total", &[("method", "unknown")]);
    // An answer from no route (here, none matched) is counted too.
    grew(
        "ledger_http_requests_total",
        &[("route", "none"), ("status", "404")],
    );
    // The first scrape is in the second's counts.
    grew(
        "ledger_http_requests_total",
        &[("route", "/metrics"), ("status", "200")],
    );
    let usd_users = [("region", "0"), ("currency", "USD"), ("kind", "USER")];
    assert!(present(&after, "ledger_pool_available", &usd_users) > 0.0);
    present(&after, "ledger_pool_held", &usd_users);
    present(&after, "ledger_pulls_open", &[("region", "0")]);
    // The slow payout runs for seconds: its saga is in flight now. The
    // accounts just used have actors, counted at the router's next sweep
    // (each second; an actor retires after 5 idle seconds).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = scrape(&cluster, 0).await;
        let saga = value(&now, "ledger_sagas_in_flight", &[("kind", "withdrawal")]);
        let accounts = value(&now, "ledger_actors_alive", &[("actor", "account")]);
        if saga >= Some(1.0) && accounts >= Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sagas in flight {saga:?}, account actors {accounts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.stop().await;
}
