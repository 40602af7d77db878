//! Who may call what, through real nodes: every gRPC method either port
//! serves (read from the descriptors the servers are built from) and every
//! HTTP route (read from the OpenAPI document a node serves) is tried with
//! no key, a wrong key and each role's key. Only the roles the method's rule
//! names get through; a method or route with no rule is refused to every
//! role, so one added without a rule fails here.

mod common;

use common::*;
use ledger_node::auth::{self, Access, Role};
use ledger_node::dev::{Cluster, DevKeys};
use prost::Message;
use std::time::Duration;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;

/// What a call was answered, as far as who may make it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Unauthenticated,
    PermissionDenied,
    /// Anything else: the call reached its method (which may have refused
    /// an empty request on its own grounds).
    Through,
}

/// The keys tried: none, one no node knows, and each role's.
fn callers(keys: &DevKeys) -> Vec<(String, Option<String>)> {
    let mut callers = vec![
        ("no key".to_owned(), None),
        ("a wrong key".to_owned(), Some("0".repeat(64))),
    ];
    for role in Role::ALL {
        callers.push((role.name().to_owned(), Some(keys.of(role).to_owned())));
    }
    callers
}

/// What a caller must be answered under `access`.
fn expected(access: Option<Access>, caller: &str) -> Verdict {
    let role = Role::ALL.into_iter().find(|role| role.name() == caller);
    match (access, role) {
        (Some(Access::Public), _) => Verdict::Through,
        (_, None) => Verdict::Unauthenticated,
        (Some(Access::Roles(roles)), Some(role)) if roles.contains(&role) => Verdict::Through,
        (_, Some(_)) => Verdict::PermissionDenied,
    }
}

/// Every `/package.Service/Method` of the ledger's descriptors.
fn grpc_methods() -> Vec<(String, bool)> {
    let set = prost_types::FileDescriptorSet::decode(ledger_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptors decode");
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                methods.push((path, method.server_streaming()));
            }
        }
    }
    methods
}

/// Calls `path` with an empty request (every field left out) and `key`.
async fn call_grpc(
    channel: tonic::transport::Channel,
    path: &str,
    streaming: bool,
    key: Option<&str>,
) -> Verdict {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    let mut request = tonic::Request::new(());
    if let Some(key) = key {
        let value: MetadataValue<_> = format!("Bearer {key}").parse().expect("a header value");
        request.metadata_mut().insert("authorization", value);
    }
    request.set_timeout(Duration::from_secs(10));
    let path = PathAndQuery::try_from(path.to_owned()).expect("a path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let code = if streaming {
        grpc.server_streaming(request, path, codec)
            .await
            .err()
            .map(|status| status.code())
    } else {
        grpc.unary(request, path, codec)
            .await
            .err()
            .map(|status| status.code())
    };
    match code {
        Some(tonic::Code::Unauthenticated) => Verdict::Unauthenticated,
        Some(tonic::Code::PermissionDenied) => Verdict::PermissionDenied,
        _ => Verdict::Through,
    }
}

async fn authenticated_cluster(base_port: u16, dir: &std::path::Path) -> Cluster {
    let keys = DevKeys::generate().expect("keys");
    cluster_with(2, 1, base_port, dir, |options| options.keys = Some(keys)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_lets_through_only_the_roles_its_rule_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = authenticated_cluster(30_500, dir.path()).await;
    let keys = cluster.keys.clone().expect("keys");
    let node = &cluster.nodes[0];
    let (api, raft) = (channel(&node.api).await, channel(&node.raft).await);
    let methods = grpc_methods();
    assert!(
        methods
            .iter()
            .any(|(path, _)| path.contains("RaftTransport")),
        "the descriptors hold the Raft transport: {methods:?}"
    );
    let mut wrong = Vec::new();
    for (path, streaming) in &methods {
        let access = auth::grpc_access(path);
        assert!(
            access.is_some(),
            "{path} has no rule in ledger_node::auth::GRPC"
        );
        let port = if path.contains(".internal.") {
            &raft
        } else {
            &api
        };
        for (caller, key) in callers(&keys) {
            let got = call_grpc(port.clone(), path, *streaming, key.as_deref()).await;
            let want = expected(access, &caller);
            if got != want {
                wrong.push(format!("{path} as {caller}: {got:?}, not {want:?}"));
            }
        }
    }
    // Health checks need no key; the description of the API needs one.
    let health = call_grpc(api.clone(), "/grpc.health.v1.Health/Check", false, None).await;
    assert_eq!(health, Verdict::Through);
    assert!(wrong.is_empty(), "{wrong:#?}");
    for path in auth::GRPC.iter().map(|(path, _)| path) {
        assert!(
            methods.iter().any(|(method, _)| method == path),
            "the rule for {path} names no method"
        );
    }
    cluster.stop().await;
}

/// Every route of a node's OpenAPI document: its method and template.
async fn http_routes(http: &reqwest::Client, address: &str) -> Vec<(String, String)> {
    let document: serde_json::Value = http
        .get(format!("http://{address}/api/docs/openapi.json"))
        .send()
        .await
        .expect("the document is served without a key")
        .json()
        .await
        .expect("JSON");
    let paths = document["paths"].as_object().expect("paths");
    let mut routes = Vec::new();
    for (template, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            routes.push((method.to_uppercase(), template.clone()));
        }
    }
    routes
}

async fn call_http(
    http: &reqwest::Client,
    address: &str,
    method: &str,
    template: &str,
    key: Option<&str>,
) -> Verdict {
    let path = template
        .replace("{id}", &id(77))
        .replace("{account}", &id(77));
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = http
        .request(method.clone(), format!("http://{address}{path}"))
        .timeout(Duration::from_secs(10));
    if method != reqwest::Method::GET {
        request = request.json(&serde_json::json!({}));
    }
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let status = request.send().await.expect("an answer").status();
    match status.as_u16() {
        401 => Verdict::Unauthenticated,
        403 => Verdict::PermissionDenied,
        _ => Verdict::Through,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_lets_through_only_the_roles_its_rule_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = authenticated_cluster(29_500, dir.path()).await;
    let keys = cluster.keys.clone().expect("keys");
    let address = &cluster.nodes[0].http;
    let http = reqwest::Client::new();
    let routes = http_routes(&http, address).await;
    assert!(routes.len() >= 20, "{routes:?}");
    let mut wrong = Vec::new();
    for (method, template) in &routes {
        let access = auth::http_access(&method.parse().expect("a method"), template);
        assert!(
            access.is_some(),
            "{method} {template} has no rule in ledger_node::auth::HTTP"
        );
        for (caller, key) in callers(&keys) {
            let got = call_http(&http, address, method, template, key.as_deref()).await;
            let want = expected(access, &caller);
            if got != want {
                wrong.push(format!(
                    "{method} {template} as {caller}: {got:?}, not {want:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    for (method, template, _) in auth::HTTP {
        assert!(
            routes
                .iter()
                .any(|route| route.0 == *method && route.1 == *template),
            "the rule for {method} {template} names no route"
        );
    }
    cluster.stop().await;
}

/// With authentication on, a client's key moves money as before: the nodes
/// show each other their node key when one sends a command on to the
/// region that decides it and when a strong read asks the leader for its
/// index, and Raft replicates between them (the cluster would not start
/// otherwise). A client without a key is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_nodes_send_on_and_read_across_regions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = DevKeys::generate().expect("keys");
    let cluster = cluster_with(3, 1, 11_500, dir.path(), |options| {
        options.keys = Some(keys)
    })
    .await;
    let [r0, r1] = [0, 1].map(|region| cluster.api_of(region).expect("a region").to_owned());
    let client = |address: String| {
        let cluster = &cluster;
        async move {
            cluster
                .connect(&address, Role::Client)
                .await
                .expect("connects")
        }
    };
    let (r0_client, r1_client) = (client(r0.clone()).await, client(r1.clone()).await);
    open_accounts(&r0_client, &[10, 11]).await;
    let topup = of_region(0, transfer(1, BANK, 10, "50.00"));
    assert!(applied(&submit(&r0_client, topup).await).is_some());
    // Region 1's node sends this on to region 0, which decides its id.
    let sent_on = of_region(0, transfer(2, 10, 11, "20.00"));
    let result = submit(&r1_client, sent_on).await;
    assert!(applied(&result).is_some(), "{result:?}");
    let strong = r1_client
        .lookup_accounts_with(vec![id(11)], true)
        .await
        .expect("a strong read through region 1");
    assert_eq!(strong.accounts.len(), 1, "{strong:?}");

    let anonymous = ledger_node::client::Client::connect(&r0)
        .await
        .expect("connects");
    let refused = anonymous
        .lookup_accounts(vec![id(11)])
        .await
        .expect_err("no key, no balances");
    assert!(refused.to_string().contains("UNAUTHENTICATED"), "{refused}");
    cluster.stop().await;
}
