//! `ledger bench`: a bounded load through one region's API.

use super::{Endpoint, print_json};
use clap::Args;
use ledger_node::bench::{BenchOptions, BenchReport};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    #[arg(long, default_value_t = 10_000)]
    accounts: u64,
    #[arg(long, default_value_t = 200_000)]
    transfers: u64,
    /// Transfers per call.
    #[arg(long, default_value_t = 1_000)]
    batch: u64,
    /// Clients sending at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u64,
    /// Stop sending after this many seconds.
    #[arg(long, default_value_t = 60)]
    seconds_max: u64,
    /// Send ids of this region instead of the node's own: the node
    /// sends every transfer on to it (what that costs).
    #[arg(long)]
    ids_of_region: Option<u32>,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let options = BenchOptions {
        accounts: args.accounts,
        transfers: args.transfers,
        batch: args.batch,
        concurrency: args.concurrency,
        seconds_max: args.seconds_max,
        ids_of_region: args.ids_of_region,
    };
    let client = args.endpoint.connect().await?;
    let report = ledger_node::bench::run(&client, &options).await?;
    if args.json {
        return print_json(&summary_json(&report, &options));
    }
    println!(
        "{} transfers applied, {} rejected, in {:.2} s: {:.0} transfers/s; call latency p50 {:.1} ms, p99 {:.1} ms ({} accounts, batches of {}, {} clients)",
        report.applied,
        report.rejected,
        report.elapsed.as_secs_f64(),
        report.transfers_per_second(),
        report.latency_ms(0.5),
        report.latency_ms(0.99),
        options.accounts,
        options.batch,
        options.concurrency
    );
    Ok(())
}

fn summary_json(report: &BenchReport, options: &BenchOptions) -> serde_json::Value {
    serde_json::json!({
        "applied": report.applied,
        "rejected": report.rejected,
        "seconds": report.elapsed.as_secs_f64(),
        "transfers_per_second": report.transfers_per_second(),
        "call_latency_ms": { "p50": report.latency_ms(0.5), "p99": report.latency_ms(0.99) },
        "settings": {
            "accounts": options.accounts,
            "batch": options.batch,
            "concurrency": options.concurrency,
        },
    })
}
