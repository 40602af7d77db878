//! Logs and traces. Log lines go to stderr; traces, when switched on (a
//! `[telemetry] otlp_endpoint` in the node's settings, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), go over OTLP/gRPC to a collector. Off,
//! no OpenTelemetry layer is installed: spans stay plain `tracing` spans and
//! nothing is recorded for export.
//!
//! A trace crosses nodes in W3C `traceparent` headers (gRPC metadata and
//! HTTP headers alike: [`server_span`], [`traceparent`]) and regions in the log
//! entries themselves ([`ledger_replication::EntryTrace`]).

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::Duration;
use tonic::codegen::http::{HeaderMap, HeaderName};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

/// The node's `[telemetry]` settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Where spans go (`http://collector:4317`); none: traces are off
    /// unless `OTEL_EXPORTER_OTLP_ENDPOINT` names one.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces recorded, 0 to 1 (a trace a caller started
    /// follows the caller's choice).
    pub sample_ratio: f64,
}

// A ratio that is not a number is refused by `validate`.
impl Eq for TelemetrySettings {}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 1.0,
        }
    }
}

impl TelemetrySettings {
    /// Where spans go: the settings' endpoint, else the environment's.
    pub fn endpoint(&self) -> Option<String> {
        self.otlp_endpoint.clone().or_else(|| {
            std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|endpoint| !endpoint.trim().is_empty())
        })
    }

    /// The field at fault and why, when a setting cannot be used.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(("telemetry.sample_ratio", "must be a share, from 0 to 1"));
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err((
                "telemetry.otlp_endpoint",
                "must be a URL such as http://collector:4317",
            ));
        }
        Ok(())
    }
}

/// The provider traces are exported through, once started.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the process's subscriber: log lines to stderr at `RUST_LOG`'s
/// levels (info by default) and, when `settings` (or the environment) name
/// a collector, spans to it. Once per process, inside the runtime (the
/// exporter's channel lives on it); returns whether traces are on.
/// `node`: the node's id and region, for the spans' resource.
pub fn init(node: Option<(&TelemetrySettings, u64, u16)>) -> anyhow::Result<bool> {
    let exporting = node.and_then(|(settings, id, region)| {
        let endpoint = settings.endpoint()?;
        Some((endpoint, settings.sample_ratio, id, region))
    });
    let provider = exporting
        .as_ref()
        .map(|(endpoint, ratio, id, region)| provider(endpoint, *ratio, *id, *region))
        .transpose()?;
    let traces = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("ledger")));
    Registry::default()
        .with(traces)
        .with(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours only for a person at a terminal: not in a
                // container's or a service manager's log.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init()
        .context("installing the log subscriber")?;
    let (Some(provider), Some((endpoint, ratio, _, _))) = (provider, exporting) else {
        return Ok(false);
    };
    let _ = PROVIDER.set(provider);
    tracing::info!(%endpoint, ratio, "traces go over OTLP");
    Ok(true)
}

/// A tracer provider exporting over OTLP/gRPC to `endpoint` as `node` of
/// `region`, sampling new traces at `ratio`. Built inside the runtime (the exporter's channel
/// lives on it).
fn provider(
    endpoint: &str,
    ratio: f64,
    node: u64,
    region: u16,
) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .with_context(|| format!("an OTLP exporter to {endpoint}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("ledger")
        .with_attributes([
            opentelemetry::KeyValue::new("service.instance.id", node.to_string()),
            opentelemetry::KeyValue::new("ledger.node", node as i64),
            opentelemetry::KeyValue::new("ledger.region", i64::from(region)),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// Sends the spans still buffered; called once, as the process ends.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5))
    {
        eprintln!("traces: the last spans were not sent: {error}");
    }
}

/// A server's span for one call: named `name` (`/ledger.v1.Ledger/Transfer`,
/// `POST /v1/transfers`), continuing the caller's trace when its headers
/// carry a `traceparent`.
pub fn server_span(
    protocol: &'static str,
    name: &str,
    headers: &HeaderMap,
    node: u64,
    region: u16,
) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        otel.name = name,
        otel.kind = "server",
        rpc.system = protocol,
        ledger.node = node,
        ledger.region = region,
        otel.status_code = tracing::field::Empty,
    );
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(parent);
    }
    span
}

/// The current span's context as a W3C `traceparent` value, so that the
/// node called continues this trace; none when it is not recorded.
pub fn traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_sampled() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// A gRPC server's [`Gate`](ledger_replication::Gate) that also runs each
/// call it admits in a [`server_span`] of this node.
pub struct Traced {
    pub gate: std::sync::Arc<dyn ledger_replication::Gate>,
    pub node: u64,
    pub region: u16,
}

impl ledger_replication::Gate for Traced {
    fn admit(&self, path: &str, headers: &HeaderMap, certified: bool) -> Result<(), tonic::Status> {
        self.gate.admit(path, headers, certified)
    }

    fn answered(&self, path: &str, code: tonic::Code, elapsed: Duration) {
        self.gate.answered(path, code, elapsed);
    }

    fn span(&self, path: &str, headers: &HeaderMap) -> tracing::Span {
        // Probes and tools' discovery are nobody's transfer.
        if path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.") {
            return tracing::Span::none();
        }
        server_span("grpc", path, headers, self.node, self.region)
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}
