//! `jepsen`: the chaos suite's command line.
//!
//! ```text
//! jepsen list                                       # the scenarios
//! jepsen run --scenario cut-region --seed 7 --time 20s
//! jepsen plot --out target/jepsen/cut-region-7      # draw its plot.png again
//! ```
//!
//! `run` starts real `ledger` processes in network namespaces of their own
//! (as root), puts the scenario's faults on them under load, and exits 1
//! when a checker finds something wrong. The bank workload's steps can also
//! be run one by one against any cluster whose layout this machine reaches
//! (the deploy test does, against Compose):
//!
//! ```text
//! jepsen bank setup --api HOST:PORT --history run.jsonl
//! jepsen bank run   --api HOST:PORT --history run.jsonl --seconds 20
//! jepsen bank check --api HOST:PORT --history run.jsonl
//! ```
//!
//! `probe` and `delay` are what the harness runs inside a host's
//! namespace: a TCP connect that says how long it took, and the delayer of
//! the latency nemesis (NFQUEUE).

use clap::{Args, Parser, Subcommand};
use ledger_jepsen::bank::{self, Bank};
use ledger_jepsen::check::{Evidence, check_all, findings};
use ledger_jepsen::cluster::Cluster;
use ledger_jepsen::history::{History, Recorder};
use ledger_jepsen::{observe, plot, scenario, sim, workload};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "jepsen", about = "Chaos tests of the ledger cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Names the scenarios, with their faults and cluster shape.
    List,
    /// Runs a scenario against real processes in network namespaces.
    Run(RunArgs),
    /// Draws a results folder's plot.png again from its history.jsonl and
    /// faults.jsonl (an older run's folder, say).
    Plot {
        /// The results folder of a `jepsen run`.
        #[arg(long)]
        out: PathBuf,
    },
    /// The bank workload: transfers between funded users in every region.
    #[command(subcommand)]
    Bank(BankCommand),
    /// What the harness runs inside a host to test a link.
    #[command(subcommand)]
    Probe(ProbeCommand),
    /// The whole cluster in this process on a simulated network, disk and
    /// clock (no root, no namespaces): one seed is one run. Runs `--seed`
    /// alone with its trace, or `--count` seeds from `--from`, or seeds
    /// for `--minutes`; every failing seed goes to `--failures`.
    Sim(SimArgs),
    /// What the harness runs inside a host to delay the packets an
    /// iptables rule sends to an NFQUEUE: each held `--ms ± --jitter-ms`,
    /// in order, then let go.
    Delay(DelayArgs),
}

#[derive(Args)]
struct SimArgs {
    /// Replays this one seed and writes its trace (`--trace`, else
    /// stdout).
    #[arg(long, conflicts_with_all = ["count", "minutes"])]
    seed: Option<u64>,
    /// Where `--seed` writes its trace.
    #[arg(long, requires = "seed")]
    trace: Option<PathBuf>,
    /// The first seed of a campaign.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Seeds to run.
    #[arg(long)]
    count: Option<u64>,
    /// Runs seeds until this many minutes have passed.
    #[arg(long)]
    minutes: Option<u64>,
    /// Appends each failing seed, a line each, to this file.
    #[arg(long, default_value = "sim-failures.txt")]
    failures: PathBuf,
    #[arg(long, default_value_t = 3)]
    regions: u32,
    #[arg(long, default_value_t = 3)]
    nodes_per_region: u64,
    /// Seconds the clients work under faults in each run.
    #[arg(long, default_value_t = 10)]
    faults_for: u64,
    /// Puts an audit finding back on purpose in every node (a chaos bite:
    /// `unsettled-barrier`, `admit-dependent`, `admit-unchecked`, ...).
    #[cfg(feature = "chaos-bite")]
    #[arg(long)]
    bite: Option<String>,
}

#[derive(Args)]
struct DelayArgs {
    /// The NFQUEUE number to bind (`iptables ... -j NFQUEUE --queue-num N`).
    #[arg(long)]
    queue: u16,
    /// How long each packet is held.
    #[arg(long, default_value_t = 100)]
    ms: u64,
    /// Each packet's hold is `ms` plus or minus up to this much.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Draws the jitter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Exit when standard input closes (the harness holds it open).
    #[arg(long)]
    exit_on_stdin_close: bool,
}

#[derive(Subcommand)]
enum ProbeCommand {
    /// Prints `connected in N us` or `unreachable`.
    Connect {
        #[arg(long)]
        addr: std::net::SocketAddr,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Accepts and closes connections for a while.
    Listen {
        #[arg(long)]
        addr: std::net::SocketAddr,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

#[derive(Args)]
struct RunArgs {
    #[arg(long)]
    scenario: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long faults go on: seconds, with or without `s`.
    #[arg(long, default_value = "20s", value_parser = seconds)]
    time: Duration,
    /// The results folder (target/jepsen/<scenario>-<seed> by default).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `ledger` binary (the one beside this program by default).
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Nodes per region, in place of the scenario's.
    #[arg(long)]
    nodes_per_region: Option<usize>,
    #[arg(long, default_value_t = 8)]
    users: u32,
    /// Clients per region.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// What each user gets in each region's pool.
    #[arg(long, default_value = "1000.00")]
    funds: String,
    /// The largest amount of a transfer, in cents.
    #[arg(long, default_value_t = 2_000)]
    max_cents: u64,
    /// Runs every node with this chaos bite (a node built with the
    /// `chaos-bite` feature breaks one invariant on purpose), to see the
    /// checker that must catch it fail.
    #[arg(long)]
    bite: Option<String>,
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.trim_end_matches('s')
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{text:?} is not a number of seconds (such as 20s)"))
}

#[derive(Subcommand)]
enum BankCommand {
    /// Opens the run's accounts and funds every user in every region.
    Setup {
        #[command(flatten)]
        run: Common,
        /// What each user gets in each region's pool.
        #[arg(long, default_value = "1000.00")]
        funds: String,
    },
    /// Sends transfers from clients in every region for a while.
    Run {
        #[command(flatten)]
        run: Common,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Clients per region.
        #[arg(long, default_value_t = 2)]
        clients: usize,
        /// Only these regions get load (all when none is given).
        #[arg(long = "region")]
        regions: Vec<u32>,
        /// The largest amount of a transfer, in cents.
        #[arg(long, default_value_t = 2_000)]
        max_cents: u64,
        /// Stop before the seconds are over once this file exists.
        #[arg(long)]
        stop_file: Option<PathBuf>,
        /// Fail unless every region that got load acknowledged transfers
        /// (a region cut off must keep spending its own pools).
        #[arg(long)]
        every_region_acknowledges: bool,
    },
    /// Waits for the nodes to converge, then runs every checker.
    Check {
        #[command(flatten)]
        run: Common,
        /// How long the nodes have to converge.
        #[arg(long, default_value_t = 120)]
        converge_seconds: u64,
    },
}

#[derive(Args)]
struct Common {
    /// A node to learn the layout from; several may be given (the first
    /// that answers is asked). The layout's addresses must be reachable.
    #[arg(long, required = true)]
    api: Vec<String>,
    /// The history file, appended to by every step of a run.
    #[arg(long)]
    history: PathBuf,
    /// Names the run's accounts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 8)]
    users: u32,
}

impl Common {
    fn bank(&self) -> Bank {
        Bank {
            seed: self.seed,
            users: self.users,
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The simulation runs its own runtimes, on this thread.
    let cli = match cli.command {
        Command::Sim(args) => return exit(sim(&args)),
        command => Cli { command },
    };
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    exit(outcome)
}

fn exit(outcome: anyhow::Result<bool>) -> std::process::ExitCode {
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("jepsen: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn sim_options(args: &SimArgs, seed: u64) -> anyhow::Result<sim::Options> {
    let mut options = sim::Options::new(seed);
    options.regions = args.regions;
    options.nodes_per_region = args.nodes_per_region;
    options.faults_for = Duration::from_secs(args.faults_for);
    #[cfg(feature = "chaos-bite")]
    if let Some(name) = &args.bite {
        options.bite = Some(
            serde_json::from_value(serde_json::Value::String(name.clone()))
                .map_err(|_| anyhow::anyhow!("no chaos bite named {name:?}"))?,
        );
    }
    Ok(options)
}

/// The command that replays `seed` as `args` ran it.
fn replay_line(args: &SimArgs, seed: u64) -> String {
    #[cfg(feature = "chaos-bite")]
    let bite = match &args.bite {
        Some(name) => format!(" --features chaos-bite -- sim --bite {name}"),
        None => " -- sim".to_owned(),
    };
    #[cfg(not(feature = "chaos-bite"))]
    let bite = " -- sim";
    format!(
        "cargo run --release -p ledger-jepsen --bin jepsen{bite} --seed {seed} --regions {} \
         --nodes-per-region {} --faults-for {} --trace sim-{seed}.log",
        args.regions, args.nodes_per_region, args.faults_for
    )
}

/// Whether every seed run passed.
fn sim(args: &SimArgs) -> anyhow::Result<bool> {
    if let Some(seed) = args.seed {
        let report = sim::run(&sim_options(args, seed)?);
        match &args.trace {
            Some(path) => std::fs::write(path, &report.trace)?,
            None => print!("{}", report.trace),
        }
        eprintln!("{}", sim_line(&report));
        return Ok(report.passed());
    }
    let started = std::time::Instant::now();
    let until = args
        .minutes
        .map(|minutes| Duration::from_secs(minutes * 60));
    let count = args
        .count
        .unwrap_or(if until.is_some() { u64::MAX } else { 10 });
    let (mut ran, mut failed, mut simulated) = (0u64, 0u64, Duration::ZERO);
    for seed in args.from..args.from.saturating_add(count) {
        if until.is_some_and(|until| started.elapsed() >= until) {
            break;
        }
        let report = sim::run(&sim_options(args, seed)?);
        ran += 1;
        simulated += report.simulated;
        println!("{}", sim_line(&report));
        if !report.passed() {
            failed += 1;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&args.failures)?;
            use std::io::Write;
            writeln!(file, "{seed}\t{}", replay_line(args, seed))?;
            println!("  replay: {}", replay_line(args, seed));
        }
    }
    println!(
        "{ran} seeds, {failed} failed, {:.0} s simulated in {:.0} s",
        simulated.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(failed == 0)
}

fn sim_line(report: &sim::Report) -> String {
    let verdict = if report.passed() {
        "ok".to_owned()
    } else {
        report
            .findings
            .iter()
            .map(|(name, wrong)| format!("{name}: {}", wrong.first().map_or("", String::as_str)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!(
        "seed {}: {verdict} ({:.1} s simulated, {} calls, {} acknowledged, {} faults, {} messages, {} dropped, {} doubled, {:.1} MB)",
        report.seed,
        report.simulated.as_secs_f64(),
        report.calls,
        report.acknowledged,
        report.faults,
        report.network.sent,
        report.network.dropped,
        report.network.duplicated,
        report.network.bytes as f64 / 1e6,
    )
}

/// Whether the step passed.
async fn run(command: Command) -> anyhow::Result<bool> {
    let command = match command {
        Command::List => {
            list();
            return Ok(true);
        }
        Command::Run(args) => return run_scenario(args).await,
        Command::Plot { out } => {
            println!("plot: {}", plot::write(&out)?.display());
            return Ok(true);
        }
        Command::Probe(probe) => {
            match probe {
                ProbeCommand::Connect { addr, timeout_ms } => {
                    ledger_jepsen::probe::connect(addr, Duration::from_millis(timeout_ms))?
                }
                ProbeCommand::Listen { addr, seconds } => {
                    ledger_jepsen::probe::listen(addr, seconds)?
                }
            }
            return Ok(true);
        }
        Command::Delay(args) => {
            let settings = ledger_jepsen::delay::Settings {
                queue: args.queue,
                delay: Duration::from_millis(args.ms),
                jitter: Duration::from_millis(args.jitter_ms),
                seed: args.seed,
                exit_on_stdin_close: args.exit_on_stdin_close,
            };
            tokio::task::spawn_blocking(move || ledger_jepsen::delay::run(&settings)).await??;
            return Ok(true);
        }
        Command::Bank(command) => command,
        Command::Sim(args) => return sim(&args),
    };
    match command {
        BankCommand::Setup { run, funds } => {
            let cluster = Cluster::discover(&run.api).await?;
            let recorder = Recorder::append_to(&run.history)?;
            bank::setup(&cluster, &run.bank(), &funds, &recorder).await?;
            recorder.whole()?;
            println!(
                "setup: {} users funded with {funds} in each of {} regions",
                run.users,
                cluster.regions().len()
            );
            Ok(true)
        }
        BankCommand::Run {
            run,
            seconds,
            clients,
            regions,
            max_cents,
            stop_file,
            every_region_acknowledges,
        } => {
            let cluster = Cluster::discover(&run.api).await?;
            let recorder = Arc::new(Recorder::append_to(&run.history)?);
            let options = workload::RunOptions {
                seconds,
                clients_per_region: clients,
                regions,
                max_cents,
                read_every: 10,
                stop_file,
                resend_elsewhere_every: 10,
                // Against a cluster that lives on between runs, ids must
                // differ run to run: drawn from the recorder's own nonce.
                seed: None,
            };
            let counts = workload::run(&cluster, &run.bank(), &options, recorder.clone()).await?;
            recorder.whole()?;
            let mut passed = true;
            for (region, counts) in &counts {
                println!(
                    "run: region {region}: {} acknowledged, refused {:?}, {} not sent, {} unknown, {} reads; {}",
                    counts.acknowledged,
                    counts.refused,
                    counts.not_sent,
                    counts.unknown,
                    counts.reads,
                    counts.kinds_line()
                );
                if every_region_acknowledges && counts.acknowledged == 0 {
                    println!("run: region {region} acknowledged nothing");
                    passed = false;
                }
            }
            Ok(passed)
        }
        BankCommand::Check {
            run,
            converge_seconds,
        } => check(&run, Duration::from_secs(converge_seconds)).await,
    }
}

async fn check(run: &Common, within: Duration) -> anyhow::Result<bool> {
    let cluster = Cluster::discover(&run.api).await?;
    let history = History::read(&run.history)?;
    let ids: Vec<String> = history.transfers.keys().cloned().collect();
    let finals = observe::finals(&cluster, &run.bank(), &ids, within).await?;
    let evidence = Evidence {
        history: &history,
        finals: &finals,
        cut_off: &[],
    };
    println!(
        "check: {} history lines, {} transfer ids, {} reads, {} of {} nodes read",
        history.lines,
        ids.len(),
        history.reads.len(),
        finals.nodes.len(),
        cluster.nodes().len()
    );
    let verdicts = check_all(&evidence);
    for line in findings(&verdicts, 20).lines() {
        println!("check: {line}");
    }
    Ok(verdicts.iter().all(|(_, wrong)| wrong.is_empty()))
}

fn list() {
    for scenario in scenario::SCENARIOS {
        println!(
            "{:<16} {} x {}  {}",
            scenario.name, scenario.regions, scenario.per_region, scenario.about
        );
    }
}

async fn run_scenario(args: RunArgs) -> anyhow::Result<bool> {
    let Some(chosen) = scenario::find(&args.scenario) else {
        anyhow::bail!("no scenario {:?}; `jepsen list` names them", args.scenario);
    };
    let ledger = match args.ledger {
        Some(ledger) => ledger,
        None => std::env::current_exe()?
            .parent()
            .map(|dir| dir.join("ledger"))
            .filter(|ledger| ledger.exists())
            .ok_or_else(|| {
                anyhow::anyhow!("no ledger binary beside this program: build it or pass --ledger")
            })?,
    };
    let settings = scenario::Settings {
        seed: args.seed,
        time: args.time,
        out: args.out.unwrap_or_else(|| {
            PathBuf::from("target/jepsen").join(format!("{}-{}", chosen.name, args.seed))
        }),
        ledger,
        probe: std::env::current_exe()?,
        per_region: args.nodes_per_region,
        users: args.users,
        clients_per_region: args.clients,
        funds: args.funds,
        max_cents: args.max_cents,
        bite: args.bite,
    };
    // One run at a time in a folder: a second would delete the first's
    // evidence and data while it runs. The lock goes with the process.
    let lock_path = settings.out.with_extension("lock");
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let lock = std::fs::File::create(&lock_path)?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "another run is writing {}; choose another --out",
            settings.out.display()
        );
    }
    // A folder of an earlier run is replaced; any other is not touched.
    if settings.out.join("reproduce.txt").exists() {
        std::fs::remove_dir_all(&settings.out)?;
    } else if settings
        .out
        .read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
    {
        anyhow::bail!(
            "{} holds something that is not a run's results; choose another --out",
            settings.out.display()
        );
    }
    let report = scenario::run(chosen, &settings).await?;
    print!("{}", scenario::summary(&report));
    Ok(report.passed())
}
