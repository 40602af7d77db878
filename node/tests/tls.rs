//! Mutual TLS: a cluster whose nodes call each other with certificates of
//! their CA works end to end, and a node with a certificate of another CA
//! can neither send Raft messages to it nor be sent any (so it cannot
//! join), even holding the cluster's node key; nor may a node key without
//! a node's certificate change the membership.

mod common;

use common::{
    BANK, api_of, applied, cluster_with, of_region, open_accounts, submit, transfer, wait_pool,
};
use ledger_node::auth::Role;
use ledger_node::client::{Access, CALL_TIMEOUT, Client, ClientError};
use ledger_node::dev::{Cluster, DevKeys};
use ledger_node::tls::{Tls, TlsSettings};
use ledger_proto::internal::v1::raft_transport_server::RaftTransportServer;
use ledger_replication::raft_types::TypeConfig;
use ledger_replication::{
    Ballot, Group, GrpcTransport, Peer, RaftService, Transport, TransportError,
};
use openraft::alias::VoteOf;
use openraft::raft::VoteRequest;
use std::path::Path;
use std::time::Duration;

/// Node `node`'s TLS of the dev cluster in `dir`, trusting the CA of the
/// dev cluster in `trusting` (its own, unless another is named).
fn tls_of(dir: &Path, node: u64, trusting: &Path) -> Tls {
    let settings = TlsSettings {
        ca: dir.join("tls/ca.pem"),
        cert: dir.join(format!("tls/node-{node}.pem")),
        key: dir.join(format!("tls/node-{node}.key")),
        server_name: None,
    };
    let tls = Tls::load(&settings, &["127.0.0.1"]).expect("the dev cluster's TLS files load");
    tls.trusting(&trusting.join("tls/ca.pem"))
        .expect("the CA reads")
}

/// A Raft transport that calls with `tls` and shows `keys`' node key.
fn transport(tls: &Tls, keys: &DevKeys) -> GrpcTransport {
    GrpcTransport::new(Duration::from_secs(5))
        .with_key(keys.bearer(Role::Node).expect("a key"))
        .with_tls(tls.client())
}

/// A pre-vote (which changes nothing) from node 99 to node `id` at `addr`.
async fn pre_vote(transport: &GrpcTransport, id: u64, addr: &str) -> Result<(), TransportError> {
    let peer = Peer {
        id,
        addr: addr.to_owned(),
    };
    let request = VoteRequest::<TypeConfig>::new(VoteOf::<TypeConfig>::new(0, 99), None);
    transport
        .vote(99, &peer, Group::Control, Ballot::PreVote, request)
        .await
        .map(|_| ())
}

/// [`pre_vote`] to every node of `to`.
async fn pre_votes(transport: &GrpcTransport, to: &Cluster) -> Vec<Result<(), TransportError>> {
    let mut answers = Vec::new();
    for node in &to.nodes {
        answers.push(pre_vote(transport, node.id, &node.raft).await);
    }
    answers
}

fn all_refused(answers: &[Result<(), TransportError>]) -> bool {
    answers
        .iter()
        .all(|answer| matches!(answer, Err(TransportError::Unreachable { .. })))
}

/// A server that shows `tls`'s certificate, takes callers of its CA and
/// serves no Raft RPC (every call UNIMPLEMENTED once through TLS).
async fn bare_server(tls: &Tls) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("an address").to_string();
    let server = tonic::transport::Server::builder()
        .tls_config(tls.raft_server())
        .expect("TLS")
        .add_optional_service::<RaftTransportServer<RaftService>>(None)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    let task = tokio::spawn(async move {
        let _ = server.await;
    });
    (addr, task)
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

    let silent = tokio::spawn(closed_after_handshake(
        cluster.nodes[0].http.clone(),
        ours.path().join("tls/ca.pem"),
    ));
    clients_go_over_tls(&cluster, &keys, ours.path()).await;

    let (ours, theirs) = (ours.path(), theirs.path());
    // Raft: each cluster's own node is answered by its peers ...
    let member = transport(&tls_of(ours, 1, ours), &keys);
    let answers = pre_votes(&member, &cluster).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let outsider = transport(&tls_of(theirs, 1, theirs), &keys);
    let answers = pre_votes(&outsider, &stranger).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    // ... a node of the other CA is not, though it shows the node key and
    // trusts the cluster's CA (so the cluster's servers refuse it) ...
    let outsider = transport(&tls_of(theirs, 1, ours), &keys);
    let answers = pre_votes(&outsider, &cluster).await;
    assert!(all_refused(&answers), "{answers:?}");
    // ... nor does a caller with no certificate get in ...
    let anonymous = GrpcTransport::new(Duration::from_secs(5))
        .with_key(keys.bearer(Role::Node).expect("a key"))
        .with_tls(ledger_node::tls::client_trusting(
            ledger_node::tls::read_ca(&ours.join("tls/ca.pem")).expect("the CA"),
            None,
        ));
    let answers = pre_votes(&anonymous, &cluster).await;
    assert!(all_refused(&answers), "{answers:?}");
    // ... and the cluster's nodes send nothing to a server of another CA,
    // even one that would take their certificate: it cannot join.
    let (stranger_addr, stranger_server) = bare_server(&tls_of(theirs, 1, ours)).await;
    let answer = pre_vote(&member, 7, &stranger_addr).await;
    assert!(
        matches!(answer, Err(TransportError::Unreachable { .. })),
        "{answer:?}"
    );
    // (One of the cluster's CA is reached: UNIMPLEMENTED, as it serves none.)
    let (own_addr, own_server) = bare_server(&tls_of(ours, 2, ours)).await;
    let answer = pre_vote(&member, 7, &own_addr).await;
    assert_eq!(answer, Err(TransportError::Unsupported { node: 7 }));
    stranger_server.abort();
    own_server.abort();

    membership_needs_a_node_certificate(&cluster, &keys, ours).await;
    let waited = silent.await.expect("the silent client ran");
    assert!(waited >= Duration::from_secs(5), "closed after {waited:?}");
    stranger.stop().await;
    cluster.stop().await;
}

/// Clients: over TLS the APIs answer and a transfer goes through; in
/// plain text they answer nothing; `ledger health` reads HTTPS.
async fn clients_go_over_tls(cluster: &Cluster, keys: &DevKeys, dir: &Path) {
    let client = cluster
        .connect(&api_of(cluster, 1), Role::Client)
        .await
        .expect("a TLS client connects");
    open_accounts(&client, &[10]).await;
    let result = submit(&client, of_region(0, transfer(1, BANK, 10, "5.00"))).await;
    assert!(applied(&result).is_some(), "{result:?}");
    let other = cluster
        .connect(&api_of(cluster, 2), Role::Client)
        .await
        .expect("a TLS client connects");
    // Region 1's node applies region 0's entry, sent over mutual TLS.
    wait_pool(&other, 10, 0, "5.00").await;
    // A transfer of region 1's, sent to region 0's node, is sent on with
    // the node's key and certificate, and decided there.
    let sent_on = submit(&client, of_region(1, transfer(2, BANK, 10, "1.00"))).await;
    assert_eq!(
        applied(&sent_on).map(|applied| applied.region),
        Some(1),
        "{sent_on:?}"
    );
    let plain = Access {
        deadline: CALL_TIMEOUT,
        key: Some(keys.bearer(Role::Client).expect("a key")),
        tls: None,
    };
    let refused = match Client::connect_with(&api_of(cluster, 1), plain).await {
        Ok(client) => client.status().await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a plain-text client was answered");

    // The HTTP port serves HTTPS with the same certificate, and nothing else.
    let ca = dir.join("tls/ca.pem");
    let pem = std::fs::read(&ca).expect("the CA");
    let https = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a certificate"))
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
    let health = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["health", "--http", http, "--tls-ca"])
        .arg(&ca)
        .output()
        .await
        .expect("ledger health runs");
    assert!(health.status.success(), "{health:?}");
}

/// Connects to the HTTPS port at `address`, finishes the handshake and
/// sends nothing: how long until the node closes the connection (it must
/// not hold its place for good).
async fn closed_after_handshake(address: String, ca: std::path::PathBuf) -> Duration {
    use tokio_rustls::rustls::pki_types::ServerName;
    let connector = ledger_node::tls::connector(&ca).expect("the CA");
    let tcp = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    let name = ServerName::try_from("127.0.0.1").expect("a name");
    let stream = connector.connect(name, tcp).await.expect("a handshake");
    common::closed_after(stream).await
}

/// A call with a node key changes the membership only with a node's
/// certificate: a key taken from a node is not enough.
async fn membership_needs_a_node_certificate(cluster: &Cluster, keys: &DevKeys, dir: &Path) {
    let ca = ledger_node::tls::read_ca(&dir.join("tls/ca.pem")).expect("the CA");
    let key = Some(keys.bearer(Role::Node).expect("a key"));
    let without = Access {
        deadline: CALL_TIMEOUT,
        key: key.clone(),
        tls: Some(ledger_node::tls::client_trusting(ca, None)),
    };
    let api = api_of(cluster, 1);
    let client = Client::connect_with(&api, without).await.expect("connects");
    match client.remove_member(2).await {
        Err(ClientError::Status(status)) => {
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}")
        }
        other => panic!("a node key without a certificate: {other:?}"),
    }
    let with = Access {
        deadline: CALL_TIMEOUT,
        key,
        tls: Some(tls_of(dir, 1, dir).client()),
    };
    let client = Client::connect_with(&api, with).await.expect("connects");
    // Past the gate: refused for what it asks (no node 99), not for who asks.
    match client.remove_member(99).await {
        Err(ClientError::Status(status)) => {
            assert_ne!(status.code(), tonic::Code::Unauthenticated, "{status:?}")
        }
        other => panic!("removing no such node: {other:?}"),
    }
}
