//! Named scenarios: a cluster of real `ledger` processes in network
//! namespaces, the bank workload in every region, nemeses on a schedule
//! drawn from the seed, then the heal, the final reads and every checker.
//! A run leaves its evidence in a folder: the history, each checker's
//! report, the faults with their times, every node's log and the command
//! that runs it again.

use crate::bank::{self, Bank};
use crate::check::{Checker, CutOff, Evidence, Served, availability, check_all, findings};
use crate::cluster::Cluster;
use crate::history::{History, Recorder, now_ns};
use crate::nemesis::{self, API_PORT, Faults, HTTP_PORT, Nemesis, RAFT_PORT, Shape};
use crate::net::Network;
use crate::observe;
use crate::rng::Rng;
use crate::workload::{self, Counts, RunOptions};
use anyhow::Context;
use ledger_node::dev::{Cluster as Nodes, DevNode, DevOptions};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Load before the first fault, and after the last heal.
const SETTLE: Duration = Duration::from_secs(3);
/// How long the nodes have to agree once every fault is healed.
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub nemeses: &'static [Nemesis],
    pub regions: usize,
    pub per_region: usize,
}

use Nemesis as N;

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "calm",
        about: "no fault at all: the baseline of every other scenario",
        nemeses: &[],
        regions: 3,
        per_region: 1,
    },
    Scenario {
        name: "cut-region",
        about: "one region at a time cut off from the rest; it keeps spending its pools",
        nemeses: &[N::CutRegion],
        regions: 3,
        per_region: 1,
    },
    Scenario {
        name: "split",
        about: "the regions split in two",
        nemeses: &[N::Split],
        regions: 3,
        per_region: 1,
    },
    Scenario {
        name: "majorities-ring",
        about: "every node hears a majority, no two the same one",
        nemeses: &[N::MajoritiesRing],
        regions: 3,
        per_region: 3,
    },
    Scenario {
        name: "bridge",
        about: "two sides apart, one region reaching both",
        nemeses: &[N::Bridge],
        regions: 3,
        per_region: 1,
    },
    Scenario {
        name: "one-way",
        about: "a region hears no other; the others still hear it",
        nemeses: &[N::OneWay],
        regions: 3,
        per_region: 1,
    },
    Scenario {
        name: "leader-isolated",
        about: "a region's leader cut from every other node",
        nemeses: &[N::LeaderIsolated],
        regions: 3,
        per_region: 3,
    },
    Scenario {
        name: "loss",
        about: "a fifth of the packets between nodes dropped",
        nemeses: &[N::Loss],
        regions: 3,
        per_region: 1,
    },
    Scenario {
        name: "latency",
        about: "every packet between regions held 100 ± 20 ms by its sender (NFQUEUE)",
        nemeses: &[N::Latency],
        regions: 3,
        per_region: 2,
    },
    Scenario {
        name: "kill-node",
        about: "kill -9 of a node, started again on its data",
        nemeses: &[N::KillNode],
        regions: 3,
        per_region: 3,
    },
    Scenario {
        name: "kill-leader",
        about: "kill -9 of a region's leader, started again on its data",
        nemeses: &[N::KillLeader],
        regions: 3,
        per_region: 1,
    },
    Scenario {
        name: "kill-region",
        about: "kill -9 of every node of a region",
        nemeses: &[N::KillRegion],
        regions: 3,
        per_region: 3,
    },
    Scenario {
        name: "pause",
        about: "a region's leader stopped with SIGSTOP, then continued",
        nemeses: &[N::Pause],
        regions: 3,
        per_region: 1,
    },
    Scenario {
        name: "clock-jump",
        about: "a node's wall clock stepped seconds ahead or behind",
        nemeses: &[N::ClockJump],
        regions: 3,
        per_region: 1,
    },
    Scenario {
        name: "clock-strobe",
        about: "a node's wall clock jumping back and forth every half second",
        nemeses: &[N::ClockStrobe],
        regions: 3,
        per_region: 1,
    },
    Scenario {
        name: "mixed",
        about: "every nemesis, one after another, drawn from the seed",
        nemeses: &Nemesis::ALL,
        regions: 3,
        per_region: 3,
    },
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|scenario| scenario.name == name)
}

/// How one run goes.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    /// Faults happen for this long.
    pub time: Duration,
    /// The results folder.
    pub out: PathBuf,
    /// The `ledger` binary the nodes run.
    pub ledger: PathBuf,
    /// This suite's `jepsen` binary (it probes links from inside a host).
    pub probe: PathBuf,
    /// Nodes per region, in place of the scenario's.
    pub per_region: Option<usize>,
    pub users: u32,
    pub clients_per_region: usize,
    /// What each user gets in each region's pool.
    pub funds: String,
    /// The largest amount of a transfer, in cents.
    pub max_cents: u64,
    /// The chaos bite every node runs with, if any.
    pub bite: Option<String>,
}

/// A fault and when it was in force, in seconds since the load began.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultPeriod {
    pub nemesis: &'static str,
    pub what: String,
    pub from_s: f64,
    pub to_s: f64,
    /// The region it cut off whole from every other, if it did.
    pub cut_off: Option<u32>,
    pub from_ns: u128,
    pub to_ns: u128,
    /// For a leader isolated: whether the leader its region chose kept
    /// leading once the old one was back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<Kept>,
}

/// A region's leadership after an isolated leader came back: (leader,
/// term) as the region's other nodes said at the heal (the leader they
/// chose meanwhile, waited for) and after the quiet that follows. With
/// pre-vote the node that comes back cannot win an election it calls, nor
/// raise the term: both stay as they were.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Kept {
    pub region: usize,
    pub isolated: u64,
    pub at_heal: Option<(u64, u64)>,
    pub after_quiet: Option<(u64, u64)>,
}

impl Kept {
    /// The summary's line: what was seen, and kept, disturbed or not
    /// judged.
    pub fn line(&self) -> String {
        let verdict = match (self.at_heal, self.disturbed()) {
            (None, _) => "not judged (no other leader chosen while it was away)",
            (_, Some(_)) => "DISTURBED",
            (_, None) => "kept",
        };
        format!(
            "node {} isolated, then back: region {}'s (leader, term) {:?} at the heal, {:?} after the quiet: {verdict}",
            self.isolated, self.region, self.at_heal, self.after_quiet
        )
    }

    /// Why the leadership was disturbed, if it was; not judged (`None`)
    /// when the region chose no other leader while the old one was away.
    pub fn disturbed(&self) -> Option<String> {
        match (self.at_heal, self.after_quiet) {
            (None, _) => None,
            (Some(before), Some(after)) if before == after => None,
            (before, after) => Some(format!(
                "region {}: after node {} came back, (leader, term) went from {before:?} at the heal to {after:?}",
                self.region, self.isolated
            )),
        }
    }
}

/// What a run came to.
pub struct Report {
    pub command: String,
    pub counts: BTreeMap<u32, Counts>,
    /// Per region, the time acknowledged calls took: p50, p99, max.
    pub latency: BTreeMap<u32, [Duration; 3]>,
    pub faults: Vec<FaultPeriod>,
    pub history_lines: usize,
    pub verdicts: Vec<(&'static Checker, Vec<String>)>,
    /// Per cut-off region and cut: transfers acknowledged, of those counted.
    pub available: Vec<Served>,
    /// Lines of the nodes' logs that say something broke, by what they say.
    pub alarms: BTreeMap<&'static str, usize>,
    pub out: PathBuf,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|(_, wrong)| wrong.is_empty())
            && self.alarms.is_empty()
            && self.idle().is_empty()
            && self.disturbed().is_empty()
    }

    /// Every leadership disturbed by an isolated leader's return.
    pub fn disturbed(&self) -> Vec<String> {
        self.faults
            .iter()
            .filter_map(|fault| fault.kept.as_ref()?.disturbed())
            .collect()
    }

    /// The regions that acknowledged nothing: a run that tested nothing
    /// there does not pass.
    pub fn idle(&self) -> Vec<u32> {
        self.counts
            .iter()
            .filter(|(_, counts)| counts.acknowledged == 0)
            .map(|(region, _)| *region)
            .collect()
    }
}

/// The command that runs `scenario` again as `settings` say.
pub fn command(scenario: &Scenario, settings: &Settings) -> String {
    let mut line = format!(
        "jepsen run --scenario {} --seed {} --time {}s --users {} --clients {}",
        scenario.name,
        settings.seed,
        settings.time.as_secs(),
        settings.users,
        settings.clients_per_region
    );
    let _ = write!(
        line,
        " --funds {} --max-cents {}",
        settings.funds, settings.max_cents
    );
    if let Some(per_region) = settings.per_region {
        let _ = write!(line, " --nodes-per-region {per_region}");
    }
    if let Some(bite) = &settings.bite {
        let _ = write!(line, " --bite {bite}");
    }
    line
}

/// Runs `scenario`: everything it starts is stopped and deleted when it
/// returns, whether it passed, failed or was interrupted (Ctrl-C).
pub async fn run(scenario: &Scenario, settings: &Settings) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("creating {}", settings.out.display()))?;
    let settings = &Settings {
        out: std::fs::canonicalize(&settings.out)?,
        ..settings.clone()
    };
    let command = command(scenario, settings);
    std::fs::write(settings.out.join("reproduce.txt"), format!("{command}\n"))?;
    let shape = Shape {
        regions: scenario.regions,
        per_region: settings.per_region.unwrap_or(scenario.per_region),
    };
    let stopped = stop_signal()?;
    tokio::pin!(stopped);
    let net = Network::create(shape.hosts(), settings.probe.clone())?;
    // Interrupted while the nodes start, the start is dropped, and with it
    // every node (killed on drop), then the network.
    let mut nodes = tokio::select! {
        nodes = start(&net, shape, settings) => nodes?,
        signal = &mut stopped => anyhow::bail!("stopped by {signal} while the nodes started"),
    };
    let outcome = tokio::select! {
        outcome = drive(scenario, settings, shape, &net, &mut nodes) => outcome,
        signal = &mut stopped => Err(anyhow::anyhow!("stopped by {signal}")),
    };
    // SIGCONT first: a paused node would not stop when asked.
    let mut left = Faults::everything(nodes.running());
    let _ = nemesis::heal(&net, &mut nodes, &mut left).await;
    nodes.stop().await;
    drop(net);
    let ran = outcome?;
    let report = Report {
        command,
        latency: latencies(&ran.history),
        history_lines: ran.history.lines,
        counts: ran.counts,
        faults: ran.faults,
        verdicts: ran.verdicts,
        available: ran.available,
        alarms: alarms(&settings.out.join("nodes")),
        out: settings.out.clone(),
    };
    std::fs::write(settings.out.join("checks.txt"), checks_text(&report))?;
    // A picture of the run, not a verdict: a failure to draw it only warns.
    if let Err(error) = crate::plot::write(&settings.out) {
        eprintln!("plot: not drawn: {error:#}");
    }
    Ok(report)
}

/// What [`drive`] saw, before it is a [`Report`].
struct Ran {
    counts: BTreeMap<u32, Counts>,
    faults: Vec<FaultPeriod>,
    history: History,
    verdicts: Vec<(&'static Checker, Vec<String>)>,
    available: Vec<Served>,
}

/// Per region, p50, p99 and max of the time acknowledged calls took.
pub fn latencies(history: &History) -> BTreeMap<u32, [Duration; 3]> {
    let mut by_region: BTreeMap<u32, Vec<u128>> = BTreeMap::new();
    for call in &history.calls {
        if matches!(call.outcome, crate::history::Outcome::Ok { .. }) {
            by_region
                .entry(call.region)
                .or_default()
                .push(call.completed_ns.saturating_sub(call.invoked_ns));
        }
    }
    by_region
        .into_iter()
        .map(|(region, mut times)| {
            times.sort_unstable();
            let at = |share: f64| {
                let index = ((times.len() as f64 * share).ceil() as usize).clamp(1, times.len());
                Duration::from_nanos(u64::try_from(times[index - 1]).unwrap_or(u64::MAX))
            };
            (region, [at(0.50), at(0.99), at(1.0)])
        })
        .collect()
}

/// Resolves with the signal's name at the first SIGINT, SIGTERM or SIGHUP,
/// so that a run stopped by any of them still heals, stops its nodes and
/// deletes its network.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => "SIGHUP",
        }
    })
}

/// The nodes, one per host, each listening on its host's address.
async fn start(net: &Network, shape: Shape, settings: &Settings) -> anyhow::Result<Nodes> {
    let data_dir = settings.out.join("nodes");
    let mut planned = Vec::new();
    for host in 0..shape.hosts() {
        let id = Shape::id_of(host);
        let address = net.address(host);
        planned.push(DevNode {
            id,
            region: u16::try_from(shape.region_of(host))?,
            raft: format!("{address}:{RAFT_PORT}"),
            api: format!("{address}:{API_PORT}"),
            http: format!("{address}:{HTTP_PORT}"),
            config: data_dir.join(format!("node-{id}.toml")),
            log: data_dir.join(format!("node-{id}.log")),
            launcher: net.launcher(host),
        });
    }
    let mut options = DevOptions::new(
        u16::try_from(shape.regions)?,
        u16::try_from(shape.per_region)?,
        RAFT_PORT,
        data_dir,
    );
    options.binary = Some(settings.ledger.clone());
    options.fault_injection = true;
    options.keys = Some(crate::keys::make()?);
    options.bite = settings.bite.clone();
    Nodes::start_nodes(planned, &options).await
}

/// Setup, load with faults on a schedule, the heal, the final reads and
/// the checkers.
async fn drive(
    scenario: &Scenario,
    settings: &Settings,
    shape: Shape,
    net: &Network,
    nodes: &mut Nodes,
) -> anyhow::Result<Ran> {
    let apis: Vec<String> = nodes.nodes.iter().map(|node| node.api.clone()).collect();
    let cluster = Cluster::discover(&apis).await?;
    let bank = Bank {
        seed: settings.seed,
        users: settings.users,
    };
    let history_path = settings.out.join("history.jsonl");
    let recorder = Arc::new(Recorder::append_to(&history_path)?);
    bank::setup(&cluster, &bank, &settings.funds, &recorder).await?;

    let stop_file = settings.out.join("stop");
    let _ = std::fs::remove_file(&stop_file);
    let options = RunOptions {
        seconds: settings.time.as_secs() + 600,
        clients_per_region: settings.clients_per_region,
        regions: Vec::new(),
        max_cents: settings.max_cents,
        read_every: 10,
        stop_file: Some(stop_file.clone()),
        resend_elsewhere_every: 10,
        seed: Some(settings.seed),
    };
    let load = {
        let (cluster, recorder) = (cluster.clone(), recorder.clone());
        tokio::spawn(async move { workload::run(&cluster, &bank, &options, recorder).await })
    };
    let faults = schedule(scenario, settings, shape, net, nodes).await;
    tokio::time::sleep(SETTLE).await;
    std::fs::write(&stop_file, "")?;
    let counts = load.await??;
    let faults = faults?;
    recorder.whole()?;
    let history = History::read(&history_path)?;
    let ids: Vec<String> = history.transfers.keys().cloned().collect();
    let finals = observe::finals(&cluster, &bank, &ids, CONVERGE_WITHIN).await?;
    let cut_off: Vec<CutOff> = faults
        .iter()
        .filter_map(|fault| {
            Some(CutOff {
                region: fault.cut_off?,
                from_ns: fault.from_ns,
                to_ns: fault.to_ns,
            })
        })
        .collect();
    let evidence = Evidence {
        history: &history,
        finals: &finals,
        cut_off: &cut_off,
    };
    let verdicts = check_all(&evidence);
    let available = availability(&evidence);
    write_faults(settings, &faults)?;
    Ok(Ran {
        counts,
        faults,
        history,
        verdicts,
        available,
    })
}

/// Faults one after another for `settings.time`: each held 3 to 6 s, then
/// healed, then 2 to 4 s of quiet. Every choice is the seed's.
async fn schedule(
    scenario: &Scenario,
    settings: &Settings,
    shape: Shape,
    net: &Network,
    nodes: &mut Nodes,
) -> anyhow::Result<Vec<FaultPeriod>> {
    let mut rng = Rng::new(settings.seed ^ 0x6e65_6d65_7369_7300);
    let nemeses: Vec<Nemesis> = scenario
        .nemeses
        .iter()
        .copied()
        .filter(|nemesis| nemesis.applies(shape.regions, shape.per_region))
        .collect();
    anyhow::ensure!(
        scenario.nemeses.is_empty() || !nemeses.is_empty(),
        "no nemesis of {} applies to {} regions x {} nodes",
        scenario.name,
        shape.regions,
        shape.per_region
    );
    let began = Instant::now();
    let mut periods = Vec::new();
    tokio::time::sleep(SETTLE).await;
    if nemeses.is_empty() {
        tokio::time::sleep(settings.time.saturating_sub(SETTLE)).await;
    }
    while !nemeses.is_empty() && began.elapsed() < settings.time {
        let nemesis = nemeses[rng.below(nemeses.len() as u64) as usize];
        let hold = Duration::from_millis(3_000 + rng.below(3_001));
        let quiet = Duration::from_millis(2_000 + rng.below(2_001));
        let mut faults = Faults::default();
        let from_s = began.elapsed().as_secs_f64();
        let from_ns = now_ns();
        let injected = nemesis::inject(nemesis, shape, &mut rng, net, nodes, &mut faults).await;
        let injected = match injected {
            Ok(injected) => injected,
            Err(error) => {
                nemesis::heal(net, nodes, &mut faults).await?;
                return Err(error.context(format!("injecting {}", nemesis.name())));
            }
        };
        println!("[{from_s:6.1} s] {}: {}", nemesis.name(), injected.what);
        tokio::time::sleep(hold).await;
        // The leader the region chose meanwhile, before the heal.
        let mut kept = match injected.isolated {
            Some((region, isolated)) => Some(Kept {
                region,
                isolated,
                at_heal: new_leader(nodes, shape, region, isolated).await,
                after_quiet: None,
            }),
            None => None,
        };
        let to_ns = now_ns();
        nemesis::heal(net, nodes, &mut faults).await?;
        let to_s = began.elapsed().as_secs_f64();
        println!("[{to_s:6.1} s] healed");
        tokio::time::sleep(quiet).await;
        if let Some(kept) = &mut kept {
            kept.after_quiet =
                nemesis::leadership(nodes, shape, kept.region, Some(kept.isolated)).await;
        }
        periods.push(FaultPeriod {
            nemesis: nemesis.name(),
            what: injected.what,
            from_s,
            to_s,
            cut_off: injected
                .cut_off
                .and_then(|region| u32::try_from(region).ok()),
            from_ns,
            to_ns,
            kept,
        });
    }
    Ok(periods)
}

/// How long the region of an isolated leader is given to choose another.
const NEW_LEADER_WAIT: Duration = Duration::from_secs(15);

/// The leader (and term) `region` chose in place of `isolated`, as its
/// other nodes say, waited for up to [`NEW_LEADER_WAIT`]; `None` if it
/// chose none in that time.
async fn new_leader(
    nodes: &Nodes,
    shape: Shape,
    region: usize,
    isolated: u64,
) -> Option<(u64, u64)> {
    let deadline = Instant::now() + NEW_LEADER_WAIT;
    loop {
        let seen = nemesis::leadership(nodes, shape, region, Some(isolated)).await;
        if seen.is_some_and(|(leader, _)| leader != isolated) || Instant::now() >= deadline {
            return seen.filter(|(leader, _)| *leader != isolated);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn write_faults(settings: &Settings, faults: &[FaultPeriod]) -> anyhow::Result<()> {
    let mut text = String::new();
    for fault in faults {
        text.push_str(&serde_json::to_string(fault)?);
        text.push('\n');
    }
    std::fs::write(settings.out.join("faults.jsonl"), text)?;
    Ok(())
}

/// What a node's log must never say, each a bug seen before: a panic; the
/// HTTP/2 server closing a connection because a peer reset too many
/// streams it had not taken up yet (every RPC on it lost).
const ALARMS: &[(&str, &str)] = &[
    ("panic", "panicked at"),
    ("http2-reset-limit", "pending-accept streams reached limit"),
];

/// How many lines of the logs in `dir` say each alarm.
fn alarms(dir: &std::path::Path) -> BTreeMap<&'static str, usize> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "log") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            for (name, said) in ALARMS {
                if line.contains(said) {
                    *found.entry(*name).or_default() += 1;
                }
            }
        }
    }
    found
}

/// Each checker's verdict and everything it found, as `checks.txt` holds it.
pub fn checks_text(report: &Report) -> String {
    findings(&report.verdicts, usize::MAX)
}

/// Per region, the calls by outcome and the latency of those
/// acknowledged; then the commands by kind.
fn counts_table(report: &Report) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<7} {:>12} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8} {:>8}  refused by code",
        "region",
        "acknowledged",
        "refused",
        "not sent",
        "unknown",
        "reads",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    for (region, counts) in &report.counts {
        let refused: u64 = counts.refused.values().sum();
        let [p50, p99, max] = report
            .latency
            .get(region)
            .map(|times| times.map(|time| time.as_secs_f64() * 1000.0))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "{region:<7} {:>12} {refused:>8} {:>8} {:>8} {:>6} {p50:>8.1} {p99:>8.1} {max:>8.1}  {:?}",
            counts.acknowledged, counts.not_sent, counts.unknown, counts.reads, counts.refused
        );
    }
    let mut all = Counts::default();
    for counts in report.counts.values() {
        all.add(counts);
    }
    let _ = writeln!(text, "{}", all.kinds_line());
    text
}

/// The summary a person reads: operations by outcome per region, the
/// faults, each checker's verdict, where the evidence is, and the command
/// that runs it again.
pub fn summary(report: &Report) -> String {
    let mut text = counts_table(report);
    let _ = writeln!(
        text,
        "\n{} faults, {} history lines",
        report.faults.len(),
        report.history_lines
    );
    for served in &report.available {
        let share = served.acknowledged as f64 * 100.0 / served.counted.max(1) as f64;
        let _ = writeln!(
            text,
            "region {} cut off: {} of {} transfers acknowledged ({share:.1}%), sent at {:.1}/s (no region cut: {:.1}/s)",
            served.cut.region, served.acknowledged, served.counted, served.rate, served.calm_rate
        );
    }
    text.push('\n');
    for (checker, wrong) in &report.verdicts {
        let verdict = if wrong.is_empty() {
            "ok".to_owned()
        } else {
            format!("FAIL ({})", wrong.len())
        };
        let _ = writeln!(text, "{:<20} {verdict}", checker.name);
    }
    for (alarm, count) in &report.alarms {
        let _ = writeln!(text, "node logs: {count} lines of {alarm}");
    }
    for kept in report.faults.iter().filter_map(|fault| fault.kept.as_ref()) {
        let _ = writeln!(text, "{}", kept.line());
    }
    for region in report.idle() {
        let _ = writeln!(
            text,
            "region {region} acknowledged nothing: the run tested nothing there"
        );
    }
    let _ = writeln!(
        text,
        "\nverdict: {}\nevidence: {}{}\nagain:    {}",
        if report.passed() { "passed" } else { "FAILED" },
        report.out.display(),
        crate::plot::mention(&report.out),
        report.command
    );
    text
}

#[cfg(test)]
mod tests {
    use super::Kept;

    #[test]
    fn a_leadership_is_kept_only_when_leader_and_term_stay() {
        let kept = |at_heal, after_quiet| Kept {
            region: 1,
            isolated: 4,
            at_heal,
            after_quiet,
        };
        assert_eq!(kept(Some((5, 3)), Some((5, 3))).disturbed(), None);
        assert!(
            kept(Some((5, 3)), Some((5, 4))).disturbed().is_some(),
            "a term raised"
        );
        assert!(
            kept(Some((5, 3)), Some((4, 4))).disturbed().is_some(),
            "deposed"
        );
        let not_judged = kept(None, Some((5, 3)));
        assert_eq!(not_judged.disturbed(), None, "no other leader chosen");
        assert!(
            not_judged
                .line()
                .ends_with("not judged (no other leader chosen while it was away)")
        );
        assert!(
            kept(Some((5, 3)), None).disturbed().is_some(),
            "no leader after"
        );
        assert!(kept(Some((5, 3)), Some((5, 3))).line().ends_with(": kept"));
    }
}
