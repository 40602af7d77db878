//! Mutual TLS: a cluster whose nodes call each other with certificates of
//! their CA works end to end, and a node with a certificate of another CA
//! can neither send Raft messages to it nor be sent any (so it cannot
//! join), even holding the cluster's node key.

mod common;

use common::{
    BANK, api_of, applied, cluster_with, of_region, open_accounts, submit, transfer, wait_pool,
};
use ledger_node::auth::Role;
use ledger_node::client::{Access, CALL_TIMEOUT, Client};
use ledger_node::dev::{Cluster, DevKeys};
use ledger_node::tls::{Tls, TlsSettings};
use ledger_replication::raft_types::TypeConfig;
use ledger_replication::{Ballot, Group, GrpcTransport, Peer, Transport, TransportError};
use openraft::alias::VoteOf;
use openraft::raft::VoteRequest;
use std::path::Path;
use std::time::Duration;

/// The Raft transport of a node with the certificate in `dir`'s TLS files
/// (a dev cluster's), showing `keys`' node key.
fn transport_of(dir: &Path, node: u64, keys: &DevKeys) -> GrpcTransport {
    let tls = dir.join("tls");
    let settings = TlsSettings {
        ca: tls.join("ca.pem"),
        cert: tls.join(format!("node-{node}.pem")),
        key: tls.join(format!("node-{node}.key")),
        server_name: None,
    };
    let tls = Tls::load(&settings).expect("the dev cluster's TLS files load");
    GrpcTransport::new(Duration::from_secs(5))
        .with_key(keys.bearer(Role::Node).expect("a key"))
        .with_tls(tls.client())
}

/// A pre-vote (which changes nothing) from node 99 to every node of `to`.
async fn pre_votes(transport: &GrpcTransport, to: &Cluster) -> Vec<Result<(), TransportError>> {
    let mut answers = Vec::new();
    for node in &to.nodes {
        let peer = Peer {
            id: node.id,
            addr: node.raft.clone(),
        };
        let request = VoteRequest::<TypeConfig>::new(VoteOf::<TypeConfig>::new(0, 99), None);
        let answer = transport
            .vote(99, &peer, Group::Control, Ballot::PreVote, request)
            .await;
        answers.push(answer.map(|_| ()));
    }
    answers
}

fn all_refused(answers: &[Result<(), TransportError>]) -> bool {
    answers
        .iter()
        .all(|answer| matches!(answer, Err(TransportError::Unreachable { .. })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_clusters_certificates_take_part() {
    let keys = DevKeys::generate().expect("keys");
    let ours = tempfile::tempdir().expect("dir");
    let theirs = tempfile::tempdir().expect("dir");
    let tls = |options: &mut ledger_node::dev::DevOptions| {
        options.tls = true;
        options.keys = Some(keys.clone());
    };
    // Two regions: being ready means each node applied the other region's
    // log, every entry of which came over mutual TLS.
    let cluster = cluster_with(2, 1, 6_500, ours.path(), tls).await;
    // Another cluster with the same keys and a CA of its own.
    let stranger = cluster_with(1, 1, 6_510, theirs.path(), tls).await;

    // Clients: over TLS, the API answers and a transfer goes through.
    let client = cluster
        .connect(&api_of(&cluster, 1), Role::Client)
        .await
        .expect("a TLS client connects");
    open_accounts(&client, &[10]).await;
    let result = submit(&client, of_region(0, transfer(1, BANK, 10, "5.00"))).await;
    assert!(applied(&result).is_some(), "{result:?}");
    let other = cluster
        .connect(&api_of(&cluster, 2), Role::Client)
        .await
        .expect("a TLS client connects");
    // Region 1's node applies region 0's entry, sent over mutual TLS.
    wait_pool(&other, 10, 0, "5.00").await;
    // Without TLS, the API port answers nothing.
    let plain = Access {
        deadline: CALL_TIMEOUT,
        key: Some(keys.bearer(Role::Client).expect("a key")),
        tls: None,
    };
    let refused = match Client::connect_with(&api_of(&cluster, 1), plain).await {
        Ok(client) => client.status().await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a plain-text client was answered");
    // The HTTP port serves HTTPS with the same certificate, and nothing else.
    let ca = std::fs::read(ours.path().join("tls/ca.pem")).expect("the CA");
    let https = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a certificate"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTPS client");
    let http = &cluster.nodes[0].http;
    let metrics = https
        .get(format!("https://{http}/metrics"))
        .bearer_auth(&keys.operator)
        .send()
        .await
        .expect("answered over HTTPS");
    assert_eq!(metrics.status(), reqwest::StatusCode::OK);
    let plain = reqwest::Client::new()
        .get(format!("http://{http}/health/live"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "answered in plain text: {plain:?}");

    // Raft: each cluster's own node is answered by its peers ...
    let member = transport_of(ours.path(), 1, &keys);
    let answers = pre_votes(&member, &cluster).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let outsider = transport_of(theirs.path(), 1, &keys);
    let answers = pre_votes(&outsider, &stranger).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    // ... a node of the other CA is not, though it shows the node key ...
    let answers = pre_votes(&outsider, &cluster).await;
    assert!(all_refused(&answers), "{answers:?}");
    // ... nor may the cluster's nodes send it anything: it cannot join.
    let answers = pre_votes(&member, &stranger).await;
    assert!(all_refused(&answers), "{answers:?}");
    // A caller with no certificate at all is refused too.
    let anonymous = GrpcTransport::new(Duration::from_secs(5))
        .with_key(keys.bearer(Role::Node).expect("a key"))
        .with_tls(ledger_node::tls::client_trusting(
            ledger_node::tls::read_ca(&ours.path().join("tls/ca.pem")).expect("the CA"),
            None,
        ));
    let answers = pre_votes(&anonymous, &cluster).await;
    assert!(all_refused(&answers), "{answers:?}");

    stranger.stop().await;
    cluster.stop().await;
}
