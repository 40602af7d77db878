//! The `ledger` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ledger_node::api::Api;
use ledger_node::client::Client;
use ledger_node::config::NodeSettings;
use ledger_node::dev::{Cluster, DevOptions};
use ledger_node::{demo, runtime};
use ledger_proto::v1 as api;
use std::path::PathBuf;

// The node allocates many small, short-lived objects across threads (a
// message per account per request); mimalloc serves them with far less
// contention than the system allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ledger",
    version,
    about = "A multi-region, active-active ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Runs a node from a settings file.
    Node {
        #[arg(long)]
        config: PathBuf,
        /// Stop when standard input closes (how `ledger dev` stops its nodes).
        #[arg(long)]
        exit_on_stdin_close: bool,
    },
    /// Runs a whole cluster on this machine, one process per node.
    Dev {
        #[arg(long, default_value_t = 3)]
        regions: u16,
        #[arg(long, default_value_t = 1)]
        nodes_per_region: u16,
        /// Raft ports start here, API ports 100 above.
        #[arg(long, default_value_t = 27_000)]
        base_port: u16,
        /// Where the nodes keep their data (a fresh temporary directory by default).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Runs the demonstration once the cluster is up.
        #[arg(long)]
        demo: bool,
        /// Stops the cluster after the demonstration instead of waiting for Ctrl-C.
        #[arg(long)]
        exit_after_demo: bool,
    },
    /// Cluster status as a node sees it.
    Status {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
        #[arg(long)]
        json: bool,
    },
    /// Accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// One transfer. It is decided by the region its id names (decision
    /// 0009): without `--id`, a fresh id of the region of the node it is
    /// sent to; a retry gives the id printed the first time.
    Transfer {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        currency: String,
        #[arg(long, default_value = "")]
        reference: String,
        #[arg(long)]
        json: bool,
    },
    /// Reservation pools.
    #[command(subcommand)]
    Pools(PoolsCommand),
    /// A bounded load of random transfers through one region's API.
    Bench {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
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
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    Create {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        currency: String,
        /// USER, EXTERNAL or SYSTEM.
        #[arg(long)]
        kind: String,
        #[arg(long, default_value = "")]
        owner: String,
        #[arg(long)]
        json: bool,
    },
    Show {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
        ids: Vec<String>,
        /// Holding everything committed before the call, in every region.
        #[arg(long)]
        strong: bool,
        #[arg(long)]
        json: bool,
    },
    /// Every movement of an account in every region, with the balance after.
    History {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
        id: String,
        /// The latest this many movements (at most 10,000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// No movements in or out until unfrozen.
    Freeze {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
        id: String,
        #[arg(long)]
        json: bool,
    },
    Unfreeze {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// For good: a closed account is never reopened.
    Close {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PoolsCommand {
    /// An account's pools in every region.
    Show {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Sets an account's pool policy: every region keeps at least `floor`
    /// available, pulling from regions above theirs ("0" removes it).
    Policy {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        floor: String,
        #[arg(long)]
        json: bool,
    },
    /// Moves reservation from the region of the node it is sent to.
    Rebalance {
        #[arg(long, default_value = "127.0.0.1:27100")]
        api: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        to_region: u32,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    match run_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line for a person; the chain of causes, not a backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(cli.command))
}

/// Prints JSON for another program; one that stops reading early (a pipe
/// into `head`) is not an error.
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

async fn run(command: Commands) -> anyhow::Result<()> {
    match command {
        Commands::Node {
            config,
            exit_on_stdin_close,
        } => node(config, exit_on_stdin_close).await,
        Commands::Dev {
            regions,
            nodes_per_region,
            base_port,
            data_dir,
            demo,
            exit_after_demo,
        } => {
            let temporary = match &data_dir {
                Some(_) => None,
                None => Some(tempfile_dir()?),
            };
            let data_dir = data_dir
                .or_else(|| temporary.clone())
                .context("a data directory")?;
            let options = DevOptions::new(regions, nodes_per_region, base_port, data_dir);
            println!(
                "starting {regions} regions x {nodes_per_region} node(s) in {} ...",
                options.data_dir.display()
            );
            let cluster = Cluster::start(&options).await?;
            println!(
                "\n{:<6} {:<7} {:<18} {:<18} log",
                "node", "region", "api (gRPC)", "raft"
            );
            for node in &cluster.nodes {
                println!(
                    "{:<6} {:<7} {:<18} {:<18} {}",
                    node.id,
                    node.region,
                    node.api,
                    node.raft,
                    node.log.display()
                );
            }
            if demo && let Err(error) = demo::run_demo(&cluster).await {
                eprintln!("the demonstration failed: {error:#}");
                cluster.stop().await;
                return Err(error);
            }
            if !(demo && exit_after_demo) {
                println!("\nthe cluster runs; Ctrl-C stops it");
                tokio::signal::ctrl_c().await?;
            }
            println!("stopping ...");
            cluster.stop().await;
            if let Some(dir) = temporary {
                let _ = std::fs::remove_dir_all(dir);
            }
            Ok(())
        }
        Commands::Bench {
            api,
            accounts,
            transfers,
            batch,
            concurrency,
            seconds_max,
            ids_of_region,
            json,
        } => {
            let options = ledger_node::bench::BenchOptions {
                api,
                accounts,
                transfers,
                batch,
                concurrency,
                seconds_max,
                ids_of_region,
            };
            let report = ledger_node::bench::run(&options).await?;
            let summary = serde_json::json!({
                "applied": report.applied,
                "rejected": report.rejected,
                "seconds": report.elapsed.as_secs_f64(),
                "transfers_per_second": report.transfers_per_second(),
                "call_latency_ms": { "p50": report.latency_ms(0.5), "p99": report.latency_ms(0.99) },
                "settings": { "accounts": accounts, "batch": batch, "concurrency": concurrency },
            });
            if json {
                return print_json(&summary);
            }
            println!(
                "{} transfers applied, {} rejected, in {:.2} s: {:.0} transfers/s; call latency p50 {:.1} ms, p99 {:.1} ms ({} accounts, batches of {}, {} clients)",
                report.applied,
                report.rejected,
                report.elapsed.as_secs_f64(),
                report.transfers_per_second(),
                report.latency_ms(0.5),
                report.latency_ms(0.99),
                accounts,
                batch,
                concurrency
            );
            Ok(())
        }
        Commands::Status { api, json } => {
            let status = Client::connect(&api).await?.status().await?;
            let clocks = clock_offsets(&status.nodes).await;
            if json {
                return print_json(&serde_json::json!({
                    "nodes": clocks.iter().map(|(node, offset)| serde_json::json!({
                        "id": node.id, "region": node.region, "api": node.api,
                        "clock_offset_ms": offset.map(|(offset, _)| offset),
                        "clock_offset_uncertainty_ms": offset.map(|(_, rtt)| rtt / 2.0),
                    })).collect::<Vec<_>>(),
                    "node": status.node,
                    "region": status.region,
                    "clock_ns": status.clock_ns,
                    "drift_refused": status.drift_refused,
                    "clock_offset_ms": status.clock_offset_ms,
                    "refuses_to_lead": status.refuses_to_lead,
                    "groups": status.groups.iter().map(|group| serde_json::json!({
                        "group": group.group, "leader": group.leader,
                        "committed_index": group.committed_index,
                        "applied_index": group.applied_index,
                        "lag_entries": group.lag_entries,
                        "last_event_age_ms": group.last_event_age_ms,
                        "voters": group.voters,
                    })).collect::<Vec<_>>(),
                }));
            }
            println!(
                "node {} in region {}; clock {} ns, {} ms off its peers'{}; stamps refused for drift: {}",
                status.node,
                status.region,
                status.clock_ns,
                status.clock_offset_ms,
                if status.refuses_to_lead {
                    " (past the drift limit: it refuses to lead)"
                } else {
                    ""
                },
                status.drift_refused
            );
            println!(
                "{:<10} {:>7} {:>10} {:>10} {:>8} {:>14}  voters",
                "group", "leader", "committed", "applied", "lag", "last event age"
            );
            for group in status.groups {
                println!(
                    "{:<10} {:>7} {:>10} {:>10} {:>8} {:>11} ms  {:?}",
                    group.group,
                    group.leader,
                    group.committed_index,
                    group.applied_index,
                    group.lag_entries,
                    group.last_event_age_ms,
                    group.voters
                );
            }
            println!(
                "\n{:<5} {:<7} {:<22} clock offset from this machine",
                "node", "region", "api"
            );
            for (node, offset) in clocks {
                let offset = offset.map_or("unreachable".into(), |(offset, rtt)| {
                    format!("{offset:+.1} ms (± {:.1} ms)", rtt / 2.0)
                });
                println!(
                    "{:<5} {:<7} {:<22} {offset}",
                    node.id, node.region, node.api
                );
            }
            Ok(())
        }
        Commands::Account(AccountCommand::Create {
            api,
            id,
            currency,
            kind,
            owner,
            json,
        }) => {
            let kind = match kind.to_ascii_uppercase().as_str() {
                "USER" => api::AccountKind::User,
                "EXTERNAL" => api::AccountKind::External,
                "SYSTEM" => api::AccountKind::System,
                other => anyhow::bail!("unknown kind {other:?}: USER, EXTERNAL or SYSTEM"),
            };
            let account = api::NewAccount {
                id,
                currency,
                kind: kind as i32,
                owner,
                metadata: Default::default(),
            };
            let response = Client::connect(&api)
                .await?
                .create_accounts(vec![account])
                .await?;
            let result = response
                .results
                .into_iter()
                .next()
                .and_then(|result| result.result);
            match result {
                Some(api::account_result::Result::Created(created)) if json => {
                    print_json(&serde_json::json!({ "created": created }))
                }
                Some(api::account_result::Result::Created(created)) => {
                    println!(
                        "{}",
                        if created {
                            "created"
                        } else {
                            "already exists with the same content"
                        }
                    );
                    Ok(())
                }
                Some(api::account_result::Result::Error(error)) => Err(refused(&error)),
                None => anyhow::bail!("no answer"),
            }
        }
        Commands::Account(AccountCommand::Freeze { api, id, json }) => {
            change_status(api, id, api::AccountStatus::Frozen, json).await
        }
        Commands::Account(AccountCommand::Unfreeze { api, id, json }) => {
            change_status(api, id, api::AccountStatus::Active, json).await
        }
        Commands::Account(AccountCommand::Close { api, id, json }) => {
            change_status(api, id, api::AccountStatus::Closed, json).await
        }
        Commands::Account(AccountCommand::History {
            api,
            id,
            limit,
            json,
        }) => {
            let response = Client::connect(&api)
                .await?
                .account_history(api::AccountHistoryRequest {
                    account: id,
                    limit,
                    ..Default::default()
                })
                .await?;
            if json {
                let entries: Vec<serde_json::Value> = response
                    .entries
                    .iter()
                    .map(|entry| {
                        serde_json::json!({
                            "stamp_ns": entry.stamp_ns, "region": entry.region,
                            "transfer_id": entry.transfer_id, "movement": entry.movement,
                            "counterparty": entry.counterparty,
                            "balance_change": entry.balance_change,
                            "held_change": entry.held_change,
                            "balance": entry.balance, "held": entry.held,
                        })
                    })
                    .collect();
                return print_json(&serde_json::json!({
                    "entries": entries, "balance": response.balance,
                    "held": response.held, "truncated": response.truncated,
                }));
            }
            println!(
                "{:<7} {:<12} {:>12} {:>12} {:>10}  transfer",
                "region", "movement", "change", "balance", "held"
            );
            for entry in &response.entries {
                println!(
                    "r{:<6} {:<12} {:>12} {:>12} {:>10}  {}",
                    entry.region,
                    entry.movement,
                    entry.balance_change,
                    entry.balance,
                    entry.held,
                    entry.transfer_id
                );
            }
            if response.truncated {
                println!("(earlier movements left out: raise --limit)");
            }
            Ok(())
        }
        Commands::Account(AccountCommand::Show {
            api,
            ids,
            strong,
            json,
        }) => {
            let response = Client::connect(&api)
                .await?
                .lookup_accounts_with(ids, strong)
                .await?;
            if json {
                return print_json(
                    &response
                        .accounts
                        .iter()
                        .map(account_json)
                        .collect::<Vec<_>>(),
                );
            }
            for view in &response.accounts {
                let status = api::AccountStatus::try_from(view.status)
                    .map(|status| {
                        status
                            .as_str_name()
                            .trim_start_matches("ACCOUNT_STATUS_")
                            .to_ascii_lowercase()
                    })
                    .unwrap_or_else(|_| "unknown".into());
                print!("[{status}] ");
                println!(
                    "{} {} owner {:?}: total {}, available {}, in flight {}",
                    view.id, view.currency, view.owner, view.total, view.available, view.in_flight
                );
                for region in &view.regions {
                    println!(
                        "  region {:<3} available {:>14} held {:>14}  (as of index {})",
                        region.region, region.available, region.held, region.as_of_index
                    );
                }
            }
            for missing in &response.missing {
                println!("{missing}: unknown here");
            }
            Ok(())
        }
        Commands::Pools(PoolsCommand::Show { api, account, json }) => {
            let response = Client::connect(&api)
                .await?
                .lookup_accounts(vec![account])
                .await?;
            let view = response.accounts.first().context("unknown account")?;
            if json {
                return print_json(&account_json(view));
            }
            println!("{:<7} {:>14} {:>14}", "region", "available", "held");
            for region in &view.regions {
                println!(
                    "{:<7} {:>14} {:>14}",
                    region.region, region.available, region.held
                );
            }
            println!("in flight between regions: {}", view.in_flight);
            if !view.pool_floor.is_empty() {
                println!("pool policy: keep {} in every region", view.pool_floor);
            }
            Ok(())
        }
        Commands::Pools(PoolsCommand::Policy {
            api,
            account,
            floor,
            json,
        }) => {
            let response = Client::connect(&api)
                .await?
                .set_pool_policy(api::SetPoolPolicyRequest { account, floor })
                .await?;
            print_change(response, json)
        }
        Commands::Pools(PoolsCommand::Rebalance {
            api,
            account,
            amount,
            to_region,
            json,
        }) => {
            let response = Client::connect(&api)
                .await?
                .rebalance(api::RebalanceRequest {
                    account,
                    amount,
                    to_region,
                })
                .await?;
            match response.result {
                Some(api::rebalance_response::Result::Applied(applied)) if json => print_json(
                    &serde_json::json!({ "region": applied.region, "index": applied.index }),
                ),
                Some(api::rebalance_response::Result::Applied(applied)) => {
                    println!(
                        "released from region {} at index {}",
                        applied.region, applied.index
                    );
                    Ok(())
                }
                Some(api::rebalance_response::Result::Error(error)) => Err(refused(&error)),
                None => anyhow::bail!("no answer"),
            }
        }
        Commands::Transfer {
            api,
            id,
            from,
            to,
            amount,
            currency,
            reference,
            json,
        } => {
            let client = Client::connect(&api).await?;
            let id = match id {
                Some(id) => id,
                None => client.minter().await?.id(fresh_id()),
            };
            let command = api::TransferCommand {
                id: id.clone(),
                linked: false,
                kind: Some(api::transfer_command::Kind::Transfer(api::Move {
                    debit: from,
                    credit: to,
                    amount,
                    currency,
                    reference,
                    metadata: Default::default(),
                })),
            };
            let response = client.create_transfers(vec![command]).await?;
            match response
                .results
                .into_iter()
                .next()
                .and_then(|result| result.result)
            {
                Some(api::transfer_result::Result::Applied(applied)) if json => print_json(
                    &serde_json::json!({ "id": id, "new": applied.new, "region": applied.region, "index": applied.index }),
                ),
                Some(api::transfer_result::Result::Applied(applied)) => {
                    println!(
                        "{id} committed in region {} at index {}{}",
                        applied.region,
                        applied.index,
                        if applied.new {
                            ""
                        } else {
                            " (already applied)"
                        }
                    );
                    Ok(())
                }
                Some(api::transfer_result::Result::Error(error)) => Err(refused(&error)),
                None => anyhow::bail!("no answer"),
            }
        }
    }
}

/// A fresh 128-bit id: the clock's nanoseconds and the process id, mixed
/// by the standard library's randomly keyed hasher.
fn fresh_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut halves = [0u64; 2];
    for (salt, half) in halves.iter_mut().enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos()),
        );
        hasher.write_u32(std::process::id());
        hasher.write_usize(salt);
        *half = hasher.finish();
    }
    (u128::from(halves[0]) << 64) | u128::from(halves[1])
}

async fn change_status(
    api: String,
    account: String,
    status: api::AccountStatus,
    json: bool,
) -> anyhow::Result<()> {
    let request = api::ChangeAccountStatusRequest {
        account,
        status: status as i32,
    };
    let response = Client::connect(&api)
        .await?
        .change_account_status(request)
        .await?;
    print_change(response, json)
}

/// Each node's clock against this machine's: the node's clock when it
/// answered minus the middle of the call, with the call's round trip (the
/// offset is within half of it). `None` for a node that did not answer.
async fn clock_offsets(nodes: &[api::NodeInfo]) -> Vec<(api::NodeInfo, Option<(f64, f64)>)> {
    let now_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            })
    };
    let mut measured = Vec::with_capacity(nodes.len());
    for node in nodes {
        let asked = match tokio::time::timeout(
            std::time::Duration::from_secs(2),
            Client::connect(&node.api),
        )
        .await
        {
            Ok(Ok(client)) => ledger_node::clock_watch::measure(&client, now_ns)
                .await
                .map(|offset| (offset.peer_minus_own_ms, offset.round_trip_ms)),
            _ => None,
        };
        measured.push((node.clone(), asked));
    }
    measured
}

/// A refusal from the API as the CLI reports it: the code, then the message.
fn refused(error: &api::Error) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", error.code, error.message)
}

/// Prints the answer of a change through the control log.
fn print_change(response: api::ChangeAccountStatusResponse, json: bool) -> anyhow::Result<()> {
    match response.result {
        Some(api::change_account_status_response::Result::Changed(changed)) if json => {
            print_json(&serde_json::json!({ "changed": changed }))
        }
        Some(api::change_account_status_response::Result::Changed(changed)) => {
            println!("{}", if changed { "changed" } else { "already so" });
            Ok(())
        }
        Some(api::change_account_status_response::Result::Error(error)) => Err(refused(&error)),
        None => anyhow::bail!("no answer"),
    }
}

fn account_json(view: &api::AccountView) -> serde_json::Value {
    serde_json::json!({
        "id": view.id, "currency": view.currency, "owner": view.owner,
        "total": view.total, "available": view.available, "in_flight": view.in_flight,
        "pool_floor": view.pool_floor,
        "regions": view.regions.iter().map(|region| serde_json::json!({
            "region": region.region, "available": region.available, "held": region.held,
            "as_of_index": region.as_of_index,
        })).collect::<Vec<_>>(),
    })
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ledger-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn node(config: PathBuf, exit_on_stdin_close: bool) -> anyhow::Result<()> {
    let settings = NodeSettings::from_file(&config)?;
    let id = settings.replication.node_id;
    let running = runtime::start(settings, |handle, listener| {
        Api::new(handle).serve(listener)
    })
    .await?;
    tracing::info!(node = id, "running");
    let stdin_closed = async {
        if exit_on_stdin_close {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let fatal = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        () = stdin_closed => None,
        fatal = running.fatal() => Some(fatal),
    };
    tracing::info!(node = id, "stopping");
    running.stop().await;
    match fatal {
        // Stopped on purpose, cleanly, with an error status and the reason.
        Some((group, reason)) => anyhow::bail!("group {group} stopped: {reason}; the node stopped"),
        None => Ok(()),
    }
}
