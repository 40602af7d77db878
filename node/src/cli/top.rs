//! `ledger top`: the cluster at a glance, read from every node's
//! `/metrics` each second: transfers per second and the p99 of
//! CreateTransfers per node, its groups' lag, its clock, the groups it
//! leads, and every region's pools (the figures of the Grafana dashboard in
//! `deploy/grafana/`).

use super::{Endpoint, api_key};
use clap::Args;
use ledger_proto::v1 as api;
use prometheus_parse::{Sample, Scrape, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct TopArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    /// Seconds between two views.
    #[arg(long, default_value_t = 1)]
    every: u64,
    /// Draws one view (over one interval) and exits.
    #[arg(long)]
    once: bool,
}

/// One node's metrics at one moment.
struct Reading {
    at: Instant,
    scrape: Option<Scrape>,
}

pub async fn run(args: TopArgs) -> anyhow::Result<()> {
    let status = args.endpoint.connect().await?.status().await?;
    let (http, scheme) = args.endpoint.http_client(Duration::from_secs(2))?;
    let key = api_key()?;
    let every = Duration::from_secs(args.every.max(1));
    let reader = Reader {
        http,
        scheme,
        key: key.as_deref(),
    };
    let mut last = reader.read_all(&status.nodes).await;
    loop {
        tokio::time::sleep(every).await;
        let now = reader.read_all(&status.nodes).await;
        let view = draw(&status.nodes, &last, &now);
        if args.once {
            print!("{view}");
            return Ok(());
        }
        // On a terminal: home and clear the screen, then the view.
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            print!("\x1b[H\x1b[2J");
        }
        print!("{view}");
        last = now;
    }
}

/// Reads the nodes' `/metrics`.
struct Reader<'a> {
    http: reqwest::Client,
    scheme: &'static str,
    key: Option<&'a str>,
}

impl Reader<'_> {
    async fn read_all(&self, nodes: &[api::NodeInfo]) -> Vec<Reading> {
        // At once: a node that does not answer holds up no other.
        let reads = nodes.iter().map(|node| async move {
            let scrape = match node.http.is_empty() {
                true => None,
                false => self.read(&node.http).await,
            };
            Reading {
                at: Instant::now(),
                scrape,
            }
        });
        futures_util::future::join_all(reads).await
    }

    /// A node's `/metrics`, or `None` if it does not answer them.
    async fn read(&self, address: &str) -> Option<Scrape> {
        let mut request = self
            .http
            .get(format!("{}://{address}/metrics", self.scheme));
        if let Some(key) = self.key {
            request = request.bearer_auth(key);
        }
        let text = request
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .text()
            .await
            .ok()?;
        Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).ok()
    }
}

/// How much a counter grew between two readings; a node that restarted in
/// between counts from zero again.
fn growth(before: f64, after: f64) -> f64 {
    if after >= before {
        after - before
    } else {
        after
    }
}

fn matching<'a>(
    scrape: &'a Scrape,
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a Sample> {
    scrape.samples.iter().filter(move |sample| {
        sample.metric == name
            && labels
                .iter()
                .all(|(key, want)| sample.labels.get(key) == Some(*want))
    })
}

fn sum(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(scrape, name, labels).map(value).sum()
}

/// Cumulative counts by upper bound of a histogram, summed over its series.
fn buckets(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> BTreeMap<u64, f64> {
    let mut counts = BTreeMap::new();
    for sample in matching(scrape, name, labels) {
        if let Value::Histogram(histogram) = &sample.value {
            for bucket in histogram {
                *counts.entry(bucket.less_than.to_bits()).or_insert(0.0) += bucket.count;
            }
        }
    }
    counts
}

/// The smallest bucket bound under which `quantile` of what was counted
/// between two readings falls (seconds); `None` when nothing was.
fn quantile_between(
    before: &BTreeMap<u64, f64>,
    after: &BTreeMap<u64, f64>,
    quantile: f64,
) -> Option<f64> {
    let mut bounds: Vec<(f64, f64)> = after
        .iter()
        .map(|(bits, count)| {
            let was = before.get(bits).copied().unwrap_or(0.0);
            (f64::from_bits(*bits), growth(was, *count))
        })
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = bounds.last()?.1;
    if total <= 0.0 {
        return None;
    }
    bounds
        .iter()
        .find(|(_, count)| *count >= quantile * total)
        .map(|(bound, _)| *bound)
}

fn draw(nodes: &[api::NodeInfo], last: &[Reading], now: &[Reading]) -> String {
    let mut out = format!(
        "{:<5} {:<7} {:>12} {:>9} {:>10} {:>13} {:>9}  leads\n",
        "node", "region", "transfers/s", "p99 ≤ ms", "lag", "event age ms", "clock ms"
    );
    let mut pools: BTreeMap<(String, String), f64> = BTreeMap::new();
    for ((node, before), after) in nodes.iter().zip(last).zip(now) {
        let (Some(was), Some(is)) = (&before.scrape, &after.scrape) else {
            out.push_str(&format!("{:<5} {:<7} no metrics\n", node.id, node.region));
            continue;
        };
        let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let applied = [("outcome", "applied")];
        let rate = growth(
            sum(was, "ledger_commands_total", &applied),
            sum(is, "ledger_commands_total", &applied),
        ) / seconds;
        let calls = [("method", "CreateTransfers")];
        let name = "ledger_grpc_request_duration_seconds";
        let p99 = quantile_between(
            &buckets(was, name, &calls),
            &buckets(is, name, &calls),
            0.99,
        )
        .map_or("-".to_owned(), |bound| format!("{:.1}", bound * 1000.0));
        let lag = matching(is, "ledger_raft_lag_entries", &[])
            .map(value)
            .fold(0.0, f64::max);
        let age = matching(is, "ledger_raft_last_event_age_milliseconds", &[])
            .map(value)
            .fold(0.0, f64::max);
        let clock = sum(is, "ledger_clock_offset_milliseconds", &[]);
        let id = node.id.to_string();
        let leads: Vec<String> = matching(is, "ledger_raft_leader", &[])
            .filter(|sample| value(sample) as u64 == node.id)
            .filter_map(|sample| sample.labels.get("group").map(str::to_owned))
            .collect();
        out.push_str(&format!(
            "{id:<5} {:<7} {rate:>12.1} {p99:>9} {lag:>10} {age:>13} {clock:>+9.1}  {}\n",
            node.region,
            leads.join(", ")
        ));
        for sample in matching(is, "ledger_pool_available", &[("kind", "USER")]) {
            let key = (
                sample.labels.get("region").unwrap_or("?").to_owned(),
                sample.labels.get("currency").unwrap_or("?").to_owned(),
            );
            let held = pools.entry(key).or_insert(f64::MIN);
            *held = held.max(value(sample));
        }
    }
    out.push_str("\npools of USER accounts, available (the largest any node reports):\n");
    for ((region, currency), available) in pools {
        out.push_str(&format!(
            "  region {region:<3} {currency:<5} {available:>16.2}\n"
        ));
    }
    out
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(f64, f64)]) -> BTreeMap<u64, f64> {
        pairs
            .iter()
            .map(|(bound, count)| (bound.to_bits(), *count))
            .collect()
    }

    #[test]
    fn the_quantile_is_the_bound_under_which_it_falls_between_two_readings() {
        let before = counts(&[(0.01, 10.0), (0.1, 10.0), (f64::INFINITY, 10.0)]);
        // 100 calls since: 98 under 10 ms, 2 under 100 ms.
        let after = counts(&[(0.01, 108.0), (0.1, 110.0), (f64::INFINITY, 110.0)]);
        assert_eq!(quantile_between(&before, &after, 0.5), Some(0.01));
        assert_eq!(quantile_between(&before, &after, 0.99), Some(0.1));
        assert_eq!(
            quantile_between(&after, &after, 0.99),
            None,
            "nothing since"
        );
    }

    #[test]
    fn a_counter_that_went_down_was_reset_by_a_restart() {
        assert_eq!(growth(10.0, 25.0), 15.0);
        assert_eq!(growth(500.0, 7.0), 7.0);
        let restarted = counts(&[(0.01, 1.0), (0.1, 2.0), (f64::INFINITY, 2.0)]);
        let before = counts(&[(0.01, 900.0), (0.1, 990.0), (f64::INFINITY, 1000.0)]);
        assert_eq!(quantile_between(&before, &restarted, 0.99), Some(0.1));
    }
}
