//! `ledger bench`: a bounded load through the public API of one region, for
//! people measuring a cluster. Creates and funds accounts, then sends
//! batches of random transfers between them from several clients at once.

use crate::client::{Client, Minter};
use crate::ids;
use anyhow::Context;
use ledger_proto::v1 as api;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub accounts: u64,
    pub transfers: u64,
    pub batch: u64,
    pub concurrency: u64,
    /// Stops sending after this long, whatever is left.
    pub seconds_max: u64,
    /// Ids of this region instead of the node's: the node sends every
    /// transfer on to it (decision 0009), which measures what that costs.
    pub ids_of_region: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    pub applied: u64,
    pub rejected: u64,
    pub elapsed: Duration,
    pub call_latencies_ms: Vec<f64>,
}

impl BenchReport {
    pub fn transfers_per_second(&self) -> f64 {
        self.applied as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub fn latency_ms(&self, quantile: f64) -> f64 {
        let mut sorted = self.call_latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
        sorted.get(index).copied().unwrap_or(0.0)
    }
}

/// Ids of this run: a random-looking prefix per run, so runs do not collide.
fn account_id(run: u64, n: u64) -> String {
    ids::format((u128::from(run) << 64) | u128::from(n) | (1 << 63))
}

/// A transfer id of this run that the region benchmarked decides.
fn transfer_id(minter: Minter, run: u64, n: u64) -> String {
    minter.id((u128::from(run) << 64) | u128::from(n))
}

/// Runs the load through `client` (the node it talks to, with its key).
pub async fn run(client: &Client, options: &BenchOptions) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(options.accounts >= 2, "at least two accounts");
    anyhow::ensure!(
        (1..=8_190).contains(&options.batch),
        "a batch is 1 to 8,190 transfers"
    );
    anyhow::ensure!(options.concurrency >= 1, "at least one client");
    let run =
        u64::from(std::process::id()) << 32 | u64::from(Instant::now().elapsed().subsec_nanos());
    let status = client.status().await?;
    let minter = match options.ids_of_region {
        Some(region) => Minter::of_region(&status, region)
            .with_context(|| format!("region {region} is not in the cluster"))?,
        None => Minter::of(&status),
    };
    let bank = account_id(run, 0);

    let mut accounts = vec![api::NewAccount {
        id: bank.clone(),
        currency: "USD".into(),
        kind: api::AccountKind::External as i32,
        owner: "bench bank".into(),
        metadata: Default::default(),
    }];
    accounts.extend((1..=options.accounts).map(|n| api::NewAccount {
        id: account_id(run, n),
        currency: "USD".into(),
        kind: api::AccountKind::User as i32,
        owner: String::new(),
        metadata: Default::default(),
    }));
    for chunk in accounts.chunks(8_190) {
        client
            .create_accounts(chunk.to_vec())
            .await
            .context("creating accounts")?;
    }
    // Fund every account in this region, retrying while the region has not
    // heard of the accounts yet.
    let funding: Vec<api::TransferCommand> = (1..=options.accounts)
        .map(|n| {
            transfer(
                transfer_id(minter, run, u64::MAX - n),
                &bank,
                &account_id(run, n),
                "1000.00",
            )
        })
        .collect();
    for chunk in funding.chunks(8_190) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let response = client.create_transfers(chunk.to_vec()).await?;
            let pending = response.results.iter().any(|result| {
                matches!(&result.result, Some(api::transfer_result::Result::Error(error)) if error.retryable)
            });
            if !pending {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "funding did not go through");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let next = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(options.seconds_max);
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..options.concurrency {
        let (client, next, options) = (client.clone(), next.clone(), options.clone());
        workers.push(tokio::spawn(async move {
            let mut report = BenchReport::default();
            let mut draw = 0x9E37_79B9_7F4A_7C15u64 ^ worker;
            let mut random = move || {
                draw ^= draw << 13;
                draw ^= draw >> 7;
                draw ^= draw << 17;
                draw
            };
            while Instant::now() < stop_at {
                let first = next.fetch_add(options.batch, Ordering::Relaxed);
                if first >= options.transfers {
                    break;
                }
                let count = options.batch.min(options.transfers - first);
                let commands: Vec<api::TransferCommand> = (first..first + count)
                    .map(|n| {
                        let debit = 1 + random() % options.accounts;
                        let credit =
                            1 + (debit + random() % (options.accounts - 1)) % options.accounts;
                        let cents = 1 + random() % 100;
                        let amount = format!("{}.{:02}", cents / 100, cents % 100);
                        transfer(
                            transfer_id(minter, run, n),
                            &account_id(run, debit),
                            &account_id(run, credit),
                            &amount,
                        )
                    })
                    .collect();
                let sent = Instant::now();
                let Ok(response) = client.create_transfers(commands).await else {
                    report.rejected += count;
                    continue;
                };
                report
                    .call_latencies_ms
                    .push(sent.elapsed().as_secs_f64() * 1_000.0);
                for result in response.results {
                    match result.result {
                        Some(api::transfer_result::Result::Applied(_)) => report.applied += 1,
                        _ => report.rejected += 1,
                    }
                }
            }
            report
        }));
    }
    let mut total = BenchReport::default();
    for worker in workers {
        let report = worker.await?;
        total.applied += report.applied;
        total.rejected += report.rejected;
        total.call_latencies_ms.extend(report.call_latencies_ms);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

fn transfer(id: String, debit: &str, credit: &str, amount: &str) -> api::TransferCommand {
    api::TransferCommand {
        id,
        linked: false,
        kind: Some(api::transfer_command::Kind::Transfer(api::Move {
            debit: debit.to_owned(),
            credit: credit.to_owned(),
            amount: amount.to_owned(),
            currency: "USD".into(),
            reference: String::new(),
            metadata: Default::default(),
        })),
    }
}
