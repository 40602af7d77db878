//! The `ledger` command line as a person runs it: the built binary, its
//! standard error and exit status. A refusal is printed once, as its code
//! and message.

mod common;

use common::*;
use std::process::Output;

/// Runs the `ledger` binary with `args`.
async fn ledger(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("the binary runs")
}

/// Standard error of a run that failed, which must be one line.
fn one_error_line(output: &Output) -> String {
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr.trim_end().to_owned()
}

/// Runs `ledger` with `args`, which must fail with one error line while
/// its standard output names `reason`; answers the error line.
async fn refused_with(args: &[&str], reason: &str) -> String {
    let output = ledger(args).await;
    let line = one_error_line(&output);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(reason),
        "{output:?}"
    );
    line
}

#[tokio::test]
async fn a_refusal_of_the_node_is_printed_once_as_its_code_and_message() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(1, 1, 24_500, dir.path()).await;
    let api = cluster.api_of(0).expect("a node").to_owned();

    let bad_amount = ledger(&[
        "transfer",
        "--api",
        &api,
        "--from",
        "1",
        "--to",
        "2",
        "--amount",
        "12.5x",
        "--currency",
        "USD",
    ])
    .await;
    let line = one_error_line(&bad_amount);
    assert!(line.starts_with("error: INVALID_AMOUNT: "), "{line}");
    assert_eq!(line.matches("is not an amount").count(), 1, "{line}");
    assert!(line.contains(r#"amount: "12.5x""#), "{line}");

    let bad_id = ledger(&["account", "show", "--api", &api, "zz"]).await;
    let line = one_error_line(&bad_id);
    assert!(line.starts_with("error: INVALID_REQUEST: "), "{line}");
    assert_eq!(line.matches("invalid id").count(), 1, "{line}");

    // A refusal inside an answer (not a gRPC status) reads the same.
    let unknown_region = ledger(&[
        "pools",
        "rebalance",
        "--api",
        &api,
        "--account",
        "1",
        "--amount",
        "1",
        "--to-region",
        "7",
    ])
    .await;
    assert_eq!(
        one_error_line(&unknown_region),
        "error: UNKNOWN_REGION: unknown region r7"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_node_that_cannot_be_reached_is_named_once() {
    // A port nothing listens on: taken from the system, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let api = format!("127.0.0.1:{port}");
    let output = ledger(&["status", "--api", &api]).await;
    let line = one_error_line(&output);
    assert!(
        line.starts_with(&format!("error: cannot reach {api}: transport error: ")),
        "{line}"
    );
    assert_eq!(line.matches("cannot reach").count(), 1, "{line}");
}

#[tokio::test]
async fn a_bad_argument_is_refused_before_any_call() {
    let output = ledger(&[
        "account",
        "create",
        "--api",
        "127.0.0.1:1",
        "--id",
        "7",
        "--currency",
        "USD",
        "--kind",
        "PERSON",
    ])
    .await;
    assert_eq!(
        one_error_line(&output),
        r#"error: unknown kind "PERSON": USER, EXTERNAL or SYSTEM"#
    );
}

/// The voters of `group` as node `api` sees them, once they are `wanted`.
async fn wait_voters(api: &str, group: &str, wanted: &[u64]) {
    let client = ledger_node::client::Client::connect(api)
        .await
        .expect("connects");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = client.status().await.expect("answers");
        let voters = status
            .groups
            .iter()
            .find(|known| known.group == group)
            .map(|known| known.voters.clone())
            .unwrap_or_default();
        if voters == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{group} voters {voters:?}, not {wanted:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_removed_from_its_region_and_added_back() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(2, 2, 20_500, dir.path()).await;
    let api = api_of(&cluster, 1);
    let second = cluster
        .nodes
        .iter()
        .find(|node| node.id == 2)
        .expect("node 2")
        .clone();
    wait_voters(&api, "region-0", &[1, 2]).await;

    let removed = ledger(&["members", "remove", "--api", &api, "--id", "2"]).await;
    assert!(removed.status.success(), "{removed:?}");
    wait_voters(&api, "region-0", &[1]).await;
    wait_voters(&api_of(&cluster, 3), "region-0", &[1]).await;

    // The last node of a region stays: its log would have no voter.
    let line = refused_with(
        &["members", "remove", "--api", &api, "--id", "1"],
        "LAST_VOTER",
    )
    .await;
    assert!(line.contains("did not make the change"), "{line}");
    refused_with(
        &["members", "remove", "--api", &api, "--id", "42"],
        "NODE_NOT_FOUND",
    )
    .await;
    // Two ids at one address would be one process voting twice.
    let third = cluster.nodes.iter().find(|node| node.id == 3).expect("3");
    refused_with(
        &[
            "members",
            "add",
            "--api",
            &api,
            "--id",
            "9",
            "--region",
            "1",
            "--addr",
            &third.raft,
            "--node-api",
            "127.0.0.1:2",
        ],
        "already listens",
    )
    .await;
    // Regions cannot be added to a running cluster.
    refused_with(
        &[
            "members",
            "add",
            "--api",
            &api,
            "--id",
            "9",
            "--region",
            "5",
            "--addr",
            "127.0.0.1:1",
            "--node-api",
            "127.0.0.1:2",
        ],
        "UNKNOWN_REGION",
    )
    .await;

    let added = ledger(&[
        "members",
        "add",
        "--api",
        &api,
        "--id",
        "2",
        "--region",
        "0",
        "--addr",
        &second.raft,
        "--node-api",
        &second.api,
        "--http",
        &second.http,
    ])
    .await;
    assert!(added.status.success(), "{added:?}");
    assert!(
        String::from_utf8_lossy(&added.stdout).contains("changed"),
        "{added:?}"
    );
    wait_voters(&api, "region-0", &[1, 2]).await;
    // It decides again: its region commits through it.
    let client = ledger_node::client::Client::connect(&second.api)
        .await
        .expect("connects");
    open_accounts(&client, &[10]).await;
    cluster.stop().await;
}

/// The CLI shows the key in `LEDGER_API_KEY`: without one a node with
/// authentication on refuses it, once, as `UNAUTHENTICATED`; with a client
/// key it reads, and the client key may not steer a pool.
#[tokio::test]
async fn the_cli_shows_the_key_from_the_environment() {
    let dir = tempfile::tempdir().expect("dir");
    let keys = ledger_node::dev::DevKeys::generate().expect("keys");
    let cluster = cluster_with(1, 1, 12_500, dir.path(), |options| {
        options.keys = Some(keys.clone())
    })
    .await;
    let api = cluster.api_of(0).expect("a node").to_owned();
    let with_key = |key: Option<&str>, args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"));
        command
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("LEDGER_API_KEY");
        if let Some(key) = key {
            command.env("LEDGER_API_KEY", key);
        }
        async move { command.output().await.expect("the binary runs") }
    };
    let status = ["status", "--api", &api];
    let line = one_error_line(&with_key(None, &status).await);
    assert!(line.contains("UNAUTHENTICATED"), "{line}");
    let read = with_key(Some(&keys.client), &status).await;
    assert!(read.status.success(), "{read:?}");
    let policy = [
        "pools",
        "policy",
        "--api",
        &api,
        "--account",
        "7",
        "--floor",
        "5.00",
    ];
    let line = one_error_line(&with_key(Some(&keys.client), &policy).await);
    assert!(line.contains("PERMISSION_DENIED"), "{line}");
    // `ledger top` reads every node's metrics with an operator's key.
    let top = with_key(Some(&keys.operator), &["top", "--api", &api, "--once"]).await;
    assert!(top.status.success(), "{top:?}");
    let view = String::from_utf8_lossy(&top.stdout);
    assert!(view.contains("transfers/s"), "{view}");
    let row = view
        .lines()
        .find(|line| line.starts_with("1 "))
        .expect("node 1's row");
    assert!(
        !row.contains("no metrics") && row.contains("region-0"),
        "{view}"
    );
    cluster.stop().await;
}
