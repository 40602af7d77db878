//! Traces across regions: every node sends its spans over OTLP to a
//! collector (here a small tonic server in the test); a rebalance asked of
//! region 0, with the caller's `traceparent`, is one trace that region 1's
//! grant continues, with the expected parents; so is a transfer in region
//! 0 that pulls from region 1 (region 1's answer, region 0's grant).

mod common;

use common::*;
use ledger_node::auth::Role;
use ledger_node::client::Client;
use ledger_node::dev::{Cluster, DevKeys};
use ledger_proto::v1 as api;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The caller's trace and span, as a gateway would send them.
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER: &str = "b7ad6b7169203331";
/// The trace and span of the caller whose transfer pulls.
const PULL_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PULL_CALLER: &str = "00f067aa0ba902b7";

/// A span as the collector received it, with the region of the node that
/// sent it.
#[derive(Debug, Clone)]
struct Received {
    from_region: i64,
    name: String,
    trace: String,
    id: String,
    parent: String,
    attributes: Vec<KeyValue>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        attribute(&self.attributes, key)
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(text) => Some(text.clone()),
        Value::IntValue(n) => Some(n.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The collector: keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.0.lock().expect("the spans");
        for resource_spans in request.into_inner().resource_spans {
            let from_region = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| attribute(&resource.attributes, "ledger.region"))
                .and_then(|region| region.parse().ok())
                .unwrap_or(-1);
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    kept.push(Received {
                        from_region,
                        name: span.name,
                        trace: hex(&span.trace_id),
                        id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        attributes: span.attributes,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    fn of_trace(&self, trace: &str) -> Vec<Received> {
        let kept = self.0.lock().expect("the spans");
        kept.iter()
            .filter(|span| span.trace == trace)
            .cloned()
            .collect()
    }
}

async fn collector() -> (Collector, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address");
    let collector = Collector::default();
    let server = TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (collector, format!("http://{address}"))
}

/// `message` as a caller with `key` sends it, from span `caller` of `trace`.
fn traced<T>(message: T, key: &str, trace: &str, caller: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    metadata.insert(
        "traceparent",
        format!("00-{trace}-{caller}-01").parse().expect("ascii"),
    );
    request
}

/// Asks region 0 to move `amount` of `account` to region 1, as a caller in
/// trace [`TRACE`].
async fn rebalance_in_trace(cluster: &Cluster, account: u128, amount: &str) {
    let keys = cluster.keys.as_ref().expect("keys");
    let address = cluster.api_of(0).expect("region 0");
    let channel = channel(address).await;
    let mut admin = api::admin_client::AdminClient::new(channel);
    let request = traced(
        api::RebalanceRequest {
            account: id(account),
            amount: amount.into(),
            to_region: 1,
        },
        &keys.operator,
        TRACE,
        CALLER,
    );
    let answer = admin
        .rebalance(request)
        .await
        .expect("answered")
        .into_inner();
    assert!(
        matches!(
            answer.result,
            Some(api::rebalance_response::Result::Applied(_))
        ),
        "{answer:?}"
    );
}

/// Waits until the collector holds spans of [`TRACE`] that `done` accepts.
async fn wait_for(collector: &Collector, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
    wait_for_trace(collector, TRACE, done).await
}

/// Waits until the collector holds spans of `trace` that `done` accepts.
async fn wait_for_trace(
    collector: &Collector,
    trace: &str,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let spans = collector.of_trace(trace);
        if done(&spans) {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trace is not whole: {:#?}",
            spans
                .iter()
                .map(|span| (span.from_region, &span.name, &span.id, &span.parent))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn named<'a>(spans: &'a [Received], name: &str, region: i64) -> Vec<&'a Received> {
    spans
        .iter()
        .filter(|span| span.name == name && span.from_region == region)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_and_a_pull_are_each_one_trace_across_both_regions() {
    const ALICE: u128 = 10;
    let (collector, endpoint) = collector().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = DevKeys::generate().expect("keys");
    let cluster = cluster_with(2, 1, 8_500, dir.path(), |options| {
        options.keys = Some(keys);
        options.otlp_endpoint = Some(endpoint);
    })
    .await;
    let r0 = cluster
        .connect(cluster.api_of(0).expect("region 0"), Role::Client)
        .await
        .expect("connects");
    let r1 = cluster
        .connect(cluster.api_of(1).expect("region 1"), Role::Client)
        .await
        .expect("connects");
    open_accounts(&r0, &[ALICE]).await;
    let top_up = submit(&r0, transfer(1, BANK, ALICE, "100.00")).await;
    assert!(applied(&top_up).is_some(), "{top_up:?}");

    rebalance_in_trace(&cluster, ALICE, "40.00").await;
    wait_pool(&r1, ALICE, 1, "40.00").await;

    let request_name = "/ledger.v1.Admin/Rebalance";
    let spans = wait_for(&collector, |spans| {
        let grants = named(spans, "grant", 1);
        !named(spans, request_name, 0).is_empty()
            && grants.iter().any(|grant| {
                named(spans, "writer.entry", 1)
                    .iter()
                    .any(|entry| entry.parent == grant.id)
            })
            && !named(spans, "raft.apply", 1).is_empty()
    })
    .await;

    // Region 0: the call continues the caller's span.
    let request = named(&spans, request_name, 0)[0];
    assert_eq!(request.parent, CALLER);
    assert_eq!(request.attribute("ledger.region").as_deref(), Some("0"));
    let of_region_0: Vec<&str> = spans
        .iter()
        .filter(|span| span.from_region == 0)
        .map(|span| span.id.as_str())
        .collect();
    // Its entry, in its trace.
    let entry_0 = named(&spans, "writer.entry", 0);
    assert!(
        entry_0
            .iter()
            .any(|entry| of_region_0.contains(&entry.parent.as_str())),
        "{entry_0:#?}"
    );
    // Region 1: the grant's parent is a span of region 0 (the call that
    // released), and region 1's entry holding it is the grant's child.
    let grant = named(&spans, "grant", 1)
        .into_iter()
        .find(|grant| of_region_0.contains(&grant.parent.as_str()))
        .unwrap_or_else(|| panic!("no grant whose parent is region 0's: {spans:#?}"));
    assert_eq!(grant.attribute("from").as_deref(), Some("0"));
    let entry_1 = named(&spans, "writer.entry", 1)
        .into_iter()
        .find(|entry| entry.parent == grant.id)
        .expect("region 1's entry is the grant's child");
    // Region 1's node applies region 0's entry within the trace (the
    // release), and region 0's applies region 1's (the grant).
    let applied_by = |region: i64, group: &str| {
        named(&spans, "raft.apply", region)
            .into_iter()
            .any(|apply| apply.attribute("group").as_deref() == Some(group))
    };
    assert!(applied_by(1, "region-0"), "{spans:#?}");
    let entry_1_applied_in_0 = wait_for(&collector, |spans| {
        named(spans, "raft.apply", 0)
            .iter()
            .any(|apply| apply.parent == entry_1.id)
    })
    .await;
    assert!(!entry_1_applied_in_0.is_empty());
    assert!(applied_by(0, "region-0"));
    // The tree, for a person (`--no-capture`; docs/operations.md shows one).
    print_tree(&entry_1_applied_in_0, CALLER, 0);

    a_pull_is_one_trace(&cluster, &collector, &r0, &r1).await;
}

/// A debit in region 0 of an account whose funds are in region 1 pulls:
/// region 1 answers within the caller's trace, and region 0's grant of the
/// answer is a child of region 1's span.
async fn a_pull_is_one_trace(cluster: &Cluster, collector: &Collector, r0: &Client, r1: &Client) {
    const BOB: u128 = 11;
    const CAROL: u128 = 12;
    open_accounts(r0, &[BOB, CAROL]).await;
    let far = submit(r1, of_region(1, transfer(20, BANK, BOB, "8.00"))).await;
    assert!(applied(&far).is_some(), "{far:?}");
    wait_pool(r0, BOB, 1, "8.00").await;

    let keys = cluster.keys.as_ref().expect("keys");
    let channel = channel(cluster.api_of(0).expect("region 0")).await;
    let mut ledger = api::ledger_client::LedgerClient::new(channel);
    let request = traced(
        api::CreateTransfersRequest {
            commands: vec![of_region(0, transfer(21, BOB, CAROL, "3.00"))],
        },
        &keys.client,
        PULL_TRACE,
        PULL_CALLER,
    );
    let answer = ledger
        .create_transfers(request)
        .await
        .expect("answered")
        .into_inner();
    assert!(applied(&answer.results[0]).is_some(), "{answer:?}");

    let spans = wait_for_trace(collector, PULL_TRACE, |spans| {
        // Region 1's answer continues a span of region 0 (the ask), and
        // region 0's grant of the release it decided is its child.
        named(spans, "pull.answer", 1).iter().any(|answer| {
            ids_of_region(spans, 0).contains(&answer.parent.as_str())
                && named(spans, "grant", 0)
                    .iter()
                    .any(|grant| grant.parent == answer.id)
        })
    })
    .await;
    print_tree(&spans, PULL_CALLER, 0);
}

/// The ids of the spans region `region`'s nodes sent.
fn ids_of_region(spans: &[Received], region: i64) -> Vec<&str> {
    spans
        .iter()
        .filter(|span| span.from_region == region)
        .map(|span| span.id.as_str())
        .collect()
}

fn print_tree(spans: &[Received], parent: &str, depth: usize) {
    for span in spans.iter().filter(|span| span.parent == parent) {
        let group = span
            .attribute("group")
            .map(|group| format!(" {group}"))
            .unwrap_or_default();
        println!(
            "{:indent$}{} [region {}{group}] {}",
            "",
            span.name,
            span.from_region,
            span.id,
            indent = depth * 2
        );
        print_tree(spans, &span.id, depth + 1);
    }
}
