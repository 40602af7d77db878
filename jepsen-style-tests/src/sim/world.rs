//! One run: the cluster booted, the bank set up, the clients at work while
//! the nemesis strikes, then every fault healed and the views read until
//! they agree, and the checkers' verdict. Everything happens on the
//! calling thread, one tick at a time.

use super::client::{self, Bulk, Client, Gateway, Recorder};
use super::disk::Loss;
use super::hosts::{Directory, Host, SimClock, runtime};
use super::nemesis::{Fault, Layout};
use super::net::{Counts, Links, Net, Weather};
use crate::bank::Bank;
use crate::check::{CHECKERS, Evidence};
use crate::history::{History, Outcome, Transfer};
use crate::observe::Finals;
use crate::rng::Rng;
use ledger_node::config::NodeSettings;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Mixed into the probers' seeds ("probers" in ASCII).
const PROBER_SEED: u64 = 0x0070_726f_6265_7273;

/// Mixed into every client's seed ("clients" in ASCII).
const CLIENT_SEED: u64 = 0x0063_6c69_656e_7473;

/// How long an account actor parked by a chain waits for its coordinator
/// before it decides again: shorter than a node's default (30 s), so that
/// the runs reach that path.
const PARK_DEADLINE_MS: u64 = 2_000;

/// One step of simulated time.
const TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub regions: u32,
    pub nodes_per_region: u64,
    pub users: u32,
    pub clients_per_region: usize,
    /// How long the clients work while the nemesis strikes.
    pub faults_for: Duration,
    /// Once the faults stop, every region must commit again and every
    /// view agree within this.
    pub settle_within: Duration,
    /// Whether the nemesis strikes at all.
    pub faults: bool,
    /// What each user is topped up by in each region: little makes debits
    /// pull from other regions often.
    pub funds: String,
    /// The speed of a link between regions, in bytes a second (inside a
    /// region links are a hundred times faster); the nodes are told it as
    /// the slowest link they can count on. Slow enough that a call of
    /// transfers carrying full metadata takes seconds to cross.
    pub link_bytes_per_s: u64,
    /// An audit finding put back on purpose (a chaos bite), to show the
    /// simulation catches it.
    #[cfg(feature = "chaos-bite")]
    pub bite: Option<ledger_reservations::bite::Bite>,
}

impl Options {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            regions: 3,
            nodes_per_region: 3,
            users: 6,
            clients_per_region: 2,
            faults_for: Duration::from_secs(20),
            settle_within: Duration::from_secs(60),
            faults: true,
            // Every other seed tops up little, so that pulls are frequent.
            funds: if seed.is_multiple_of(2) { "1000" } else { "40" }.to_owned(),
            link_bytes_per_s: 256 * 1024,
            #[cfg(feature = "chaos-bite")]
            bite: None,
        }
    }
}

/// What a run did and what its checkers found.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    /// Every fault, every history line and the final views, in order, each
    /// with its simulated time: the same seed writes the same trace.
    pub trace: String,
    /// What each checker found wrong (only those that found something),
    /// and what went wrong outside them (a setup or a region that never
    /// committed again).
    pub findings: Vec<(String, Vec<String>)>,
    pub simulated: Duration,
    /// Transfer calls made, and transfers acknowledged.
    pub calls: usize,
    pub acknowledged: usize,
    pub faults: usize,
    pub network: Counts,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Where the run is: the world loop reads it to know what the nemesis may
/// do; the driver task moves it on.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Setup,
    Faults,
    /// Faults stopped: the world heals everything once.
    Healing,
    Done,
}

/// What the driver hands back.
#[derive(Default)]
struct Outcomes {
    finals: Option<Finals>,
    failures: Vec<String>,
}

fn settings(id: u64, nodes: &[(u64, u32)], link_bytes_per_s: u64) -> Result<NodeSettings, String> {
    let mut text = format!(
        "api_listen = \"sim\"\ninsecure_no_auth = true\nclock_watch = false\n\
         park_deadline_ms = {PARK_DEADLINE_MS}\n\
         [replication]\nnode_id = {id}\ndata_dir = \"/nonexistent\"\nlisten = \"sim\"\n\
         [replication.timings]\nlink_bytes_per_s = {link_bytes_per_s}\n"
    );
    for (node, region) in nodes {
        let _ = write!(
            text,
            "[[replication.nodes]]\nid = {node}\nregion = {region}\naddr = \"raft-{node}\"\napi = \"api-{node}\"\n"
        );
    }
    NodeSettings::from_toml(&text, |_| None)
        .map_err(|error| format!("simulated node settings: {error}"))
}

struct World {
    options: Options,
    clock: SimClock,
    net: Net,
    directory: Directory,
    hosts: Vec<Host>,
    layout: Layout,
    rng: Rng,
    trace: String,
    /// Nodes down, with when each comes back.
    down: BTreeMap<u64, Duration>,
    /// Nodes whose power goes at a coming write, with when it goes anyway.
    cutting: BTreeMap<u64, Duration>,
    faults: usize,
}

impl World {
    fn note(&mut self, line: &str) {
        let _ = writeln!(
            self.trace,
            "[{:>9.3}] {line}",
            self.clock.elapsed().as_secs_f64()
        );
    }

    fn host(&mut self, id: u64) -> Option<&mut Host> {
        self.hosts.iter_mut().find(|host| host.id == id)
    }

    fn boot(&mut self, id: u64) {
        let (seed, net, clock, directory) = (
            self.options.seed,
            self.net.clone(),
            self.clock.clone(),
            self.directory.clone(),
        );
        if let Some(host) = self.host(id) {
            host.boot(seed, &net, &clock, &directory);
        }
        self.note(&format!("node {id} boots"));
    }

    fn crash(&mut self, id: u64, loss: Loss) {
        let (net, directory) = (self.net.clone(), self.directory.clone());
        let mut rng = Rng::new(self.rng.next_u64());
        let Some(host) = self.host(id).filter(|host| host.is_up()) else {
            return;
        };
        let (kept, lost, torn) = host.crash(&net, &directory, loss, &mut rng);
        let back = self.clock.elapsed() + Duration::from_millis(500 + self.rng.below(6_000));
        self.down.insert(id, back);
        self.note(&format!(
            "node {id} crashes ({loss:?}: {kept} unsynced writes kept, {lost} lost, {torn} torn)"
        ));
    }

    fn leader_of(&self, region: u32) -> Option<u64> {
        self.layout.nodes_of(region).into_iter().find_map(|node| {
            let (api, _) = self.directory.get(node)?;
            let replica = &api.node().replica;
            replica
                .is_leader(ledger_replication::Group::Region(replica.region()))
                .then_some(node)
        })
    }

    fn strike(&mut self, fault: Fault) {
        self.faults += 1;
        self.note(&format!("fault: {fault:?}"));
        match fault {
            Fault::Weather(weather) => self.net.set_weather(weather),
            Fault::Partition { sides, one_way, .. } => {
                for (from, to) in sides {
                    for a in &from {
                        for b in &to {
                            self.net.cut(*a, *b);
                            if !one_way {
                                self.net.cut(*b, *a);
                            }
                        }
                    }
                }
            }
            Fault::IsolateLeader { region } => {
                if let Some(leader) = self.leader_of(region) {
                    self.note(&format!("the leader of region {region} is node {leader}"));
                    let peers = self.layout.nodes_of(region);
                    for peer in peers.into_iter().filter(|peer| *peer != leader) {
                        self.net.cut(leader, peer);
                        self.net.cut(peer, leader);
                    }
                }
            }
            Fault::Heal => self.net.heal(),
            Fault::Crash { node, loss } => self.crash(node, loss),
            Fault::PowerCut { node, after_writes } => {
                let deadline = self.clock.elapsed() + Duration::from_secs(2);
                if let Some(host) = self.host(node).filter(|host| host.is_up()) {
                    host.disk.cut_power_after(after_writes);
                    self.cutting.insert(node, deadline);
                }
            }
            Fault::CrashRegion { region, loss } => {
                for node in self.layout.nodes_of(region) {
                    self.crash(node, loss);
                }
            }
            Fault::Restart { node } => {
                self.down.remove(&node);
                self.boot(node);
            }
            Fault::Clock { node, offset_ms } => {
                if let Some(host) = self.host(node) {
                    host.faults.set_clock_offset_ms(offset_ms);
                }
            }
            Fault::SlowDisk { node, delay_ms } => {
                if let Some(host) = self.host(node) {
                    host.faults
                        .set_append_delay(Duration::from_millis(delay_ms));
                }
            }
        }
    }

    /// Ends every fault: the network calm and whole, every node up, every
    /// clock and disk as it should be.
    fn heal_all(&mut self) {
        self.note("the faults stop: everything heals");
        self.net.heal();
        self.net.set_weather(Weather::CALM);
        let cutting: Vec<u64> = std::mem::take(&mut self.cutting).into_keys().collect();
        for node in cutting {
            self.crash(node, Loss::Unsynced);
        }
        for host in &mut self.hosts {
            host.faults.set_clock_offset_ms(0);
            host.faults.set_append_delay(Duration::ZERO);
        }
        let down: Vec<u64> = std::mem::take(&mut self.down).into_keys().collect();
        for node in down {
            self.boot(node);
        }
    }

    /// Crashes the nodes whose power went mid-write (or whose wait for a
    /// write is over), losing what they had not synced.
    fn power_cuts(&mut self) {
        let now = self.clock.elapsed();
        let cut: Vec<u64> = self
            .cutting
            .iter()
            .filter(|(node, deadline)| {
                **deadline <= now
                    || self
                        .hosts
                        .iter()
                        .any(|host| host.id == **node && host.disk.is_cut())
            })
            .map(|(node, _)| *node)
            .collect();
        for node in cut {
            self.cutting.remove(&node);
            self.crash(node, Loss::Unsynced);
        }
    }

    /// Every group of a node up that stopped on an entry it could not
    /// apply (a committed entry always applies: never one).
    fn stopped_groups(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter_map(|host| {
                let (api, _) = self.directory.get(host.id)?;
                let (group, reason) = api.node().replica.fatal()?;
                Some(format!("node {}: group {group} stopped: {reason}", host.id))
            })
            .collect()
    }

    /// The report of a run the simulation itself could not set up.
    fn failed(self, why: String) -> Report {
        Report {
            seed: self.options.seed,
            trace: self.trace,
            findings: vec![("simulation".into(), vec![why])],
            simulated: self.clock.elapsed(),
            calls: 0,
            acknowledged: 0,
            faults: self.faults,
            network: self.net.counts(),
        }
    }

    fn step(&mut self) {
        self.clock.advance(TICK);
        for host in &mut self.hosts {
            host.step(TICK);
        }
    }
}

pub fn run(options: &Options) -> Report {
    ledger_replication::rt::seed_this_thread(options.seed);
    #[cfg(feature = "chaos-bite")]
    ledger_reservations::bite::set(options.bite);
    let regions: Vec<u32> = (0..options.regions).collect();
    let nodes: Vec<(u64, u32)> = regions
        .iter()
        .flat_map(|region| {
            (0..options.nodes_per_region).map(move |k| {
                (
                    u64::from(*region) * options.nodes_per_region + k + 1,
                    *region,
                )
            })
        })
        .collect();
    let layout = Layout {
        regions: regions
            .iter()
            .map(|region| {
                let of = nodes.iter().filter(|(_, r)| r == region).map(|(id, _)| *id);
                (*region, of.collect())
            })
            .collect(),
    };
    let mut world = World {
        options: options.clone(),
        clock: SimClock::default(),
        net: Net::new(
            options.seed ^ 0x006e_6574_776f_726b,
            Links {
                region_of: nodes.iter().copied().collect(),
                within_region: options.link_bytes_per_s.saturating_mul(100),
                between_regions: options.link_bytes_per_s,
            },
        ),
        directory: Directory::default(),
        hosts: Vec::new(),
        layout,
        rng: Rng::new(options.seed ^ 0x006e_656d_6573_6973),
        trace: String::new(),
        down: BTreeMap::new(),
        cutting: BTreeMap::new(),
        faults: 0,
    };
    let _ = writeln!(
        world.trace,
        "seed {} · {} regions × {} nodes · {} users funded {} a region · {} clients per region · faults {} for {:?} · {} bytes/s between regions",
        options.seed,
        options.regions,
        options.nodes_per_region,
        options.users,
        options.funds,
        options.clients_per_region,
        if options.faults { "on" } else { "off" },
        options.faults_for,
        options.link_bytes_per_s
    );
    #[cfg(feature = "chaos-bite")]
    if let Some(bite) = options.bite {
        let _ = writeln!(
            world.trace,
            "chaos bite {}: breaks {}",
            bite.name(),
            bite.breaks()
        );
    }
    for (id, region) in &nodes {
        match settings(*id, &nodes, options.link_bytes_per_s) {
            Ok(settings) => world.hosts.push(Host::new(*id, *region, settings)),
            Err(why) => return world.failed(why),
        }
    }
    for (id, _) in &nodes {
        world.boot(*id);
    }
    let clients = match runtime(options.seed ^ 0x636c_6965_6e74) {
        Ok(clients) => clients,
        Err(error) => return world.failed(format!("no runtime: {error}")),
    };
    let recorder = Recorder::new(world.clock.clone());
    let gateway = Gateway {
        directory: world.directory.clone(),
        nodes: nodes
            .iter()
            .map(|(id, region)| (*id, *region, format!("api-{id}")))
            .collect(),
    };
    let phase = Arc::new(Mutex::new(Phase::Setup));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let bank = Bank {
        seed: options.seed,
        users: options.users,
    };
    clients.spawn(drive(
        options.clone(),
        bank,
        regions.clone(),
        gateway.clone(),
        recorder.clone(),
        phase.clone(),
        outcomes.clone(),
    ));
    let mut next_fault = Duration::from_secs(1);
    let mut healed = false;
    loop {
        world.step();
        clients.block_on(async { tokio::time::sleep(TICK).await });
        let now = world.clock.elapsed();
        let current = phase.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match current {
            Phase::Setup => {}
            Phase::Faults if options.faults => {
                world.power_cuts();
                let due: Vec<u64> = world
                    .down
                    .iter()
                    .filter(|(_, back)| **back <= now)
                    .map(|(node, _)| *node)
                    .collect();
                for node in due {
                    world.strike(Fault::Restart { node });
                }
                if now >= next_fault {
                    let fault = world.layout.next(&mut world.rng);
                    world.strike(fault);
                    next_fault = now + Duration::from_millis(300 + world.rng.below(3_000));
                }
            }
            Phase::Faults => {}
            Phase::Healing if !healed => {
                world.heal_all();
                healed = true;
            }
            Phase::Healing => {}
            Phase::Done => break,
        }
    }
    let simulated = world.clock.elapsed();
    let entries = recorder.entries();
    for entry in &entries {
        let line = serde_json::to_string(entry).unwrap_or_else(|error| error.to_string());
        let _ = writeln!(world.trace, "{line}");
    }
    let history = History::of(entries);
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|p| p.into_inner()));
    let mut findings: Vec<(String, Vec<String>)> = Vec::new();
    let stopped = world.stopped_groups();
    if !stopped.is_empty() {
        findings.push(("applies".into(), stopped));
    }
    if !outcomes.failures.is_empty() {
        findings.push(("liveness".into(), outcomes.failures));
    }
    if let Some(finals) = &outcomes.finals {
        for node in &finals.nodes {
            let _ = writeln!(
                world.trace,
                "node {} applied {:?}: {:?}",
                node.node, node.applied, node.accounts
            );
        }
        let evidence = Evidence {
            history: &history,
            finals,
            cut_off: &[],
        };
        for checker in CHECKERS {
            let wrong = (checker.check)(&evidence);
            if !wrong.is_empty() {
                findings.push((checker.name.to_owned(), wrong));
            }
        }
    }
    for (name, wrong) in &findings {
        let _ = writeln!(
            world.trace,
            "{name}: {} found, first: {}",
            wrong.len(),
            wrong.first().map_or("", String::as_str)
        );
    }
    let acknowledged = history
        .calls
        .iter()
        .filter(|call| matches!(call.outcome, Outcome::Ok { .. }))
        .count();
    Report {
        seed: options.seed,
        trace: world.trace,
        findings,
        simulated,
        calls: history.calls.len(),
        acknowledged,
        faults: world.faults,
        network: world.net.counts(),
    }
}

fn set(phase: &Mutex<Phase>, to: Phase) {
    *phase.lock().unwrap_or_else(|p| p.into_inner()) = to;
}

/// The run as the clients see it: setup, work under faults, then, healed,
/// a transfer that every region must commit, and the final views.
async fn drive(
    options: Options,
    bank: Bank,
    regions: Vec<u32>,
    gateway: Gateway,
    recorder: Recorder,
    phase: Arc<Mutex<Phase>>,
    outcomes: Arc<Mutex<Outcomes>>,
) {
    let fail = |why: String| {
        outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failures
            .push(why);
    };
    let setup_until = tokio::time::Instant::now() + Duration::from_secs(60);
    let funds = options.funds.as_str();
    if let Err(why) = client::setup(&gateway, &recorder, &bank, &regions, funds, setup_until).await
    {
        fail(format!("setup: {why}"));
        set(&phase, Phase::Done);
        return;
    }
    // The probers' accounts, topped up in every region; their calls go to
    // a history of their own, which no checker reads.
    let probed = Bank {
        seed: options.seed ^ PROBER_SEED,
        users: 3,
    };
    let aside = Recorder::new(recorder.clock());
    if let Err(why) = client::setup(&gateway, &aside, &probed, &regions, "1", setup_until).await {
        fail(format!("setup of the probers: {why}"));
        set(&phase, Phase::Done);
        return;
    }
    set(&phase, Phase::Faults);
    let until = tokio::time::Instant::now() + options.faults_for;
    let mut clients = tokio::task::JoinSet::new();
    for region in &regions {
        let Some(minter) = client::minter(&regions, *region) else {
            continue;
        };
        let prober = client::Prober {
            client: Client::new(*region, gateway.clone(), aside.clone(), 0),
            beside: Client::new(*region, gateway.clone(), aside.clone(), 0),
            after: Client::new(*region, gateway.clone(), aside.clone(), 0),
            accounts: probed,
            minter,
            rng: Rng::new(options.seed ^ PROBER_SEED ^ u64::from(*region)),
        };
        clients.spawn(prober.run(until));
    }
    for region in &regions {
        let Some(minter) = client::minter(&regions, *region) else {
            continue;
        };
        for index in 0..options.clients_per_region {
            let client = Client::new(*region, gateway.clone(), recorder.clone(), index);
            // Apart from the seeds the top-ups' ids are drawn from.
            let seed = options.seed ^ CLIENT_SEED ^ (u64::from(*region) << 48) ^ index as u64;
            clients.spawn(client::work(client, bank, minter, seed, until));
        }
    }
    while clients.join_next().await.is_some() {}
    set(&phase, Phase::Healing);
    let settle_until = tokio::time::Instant::now() + options.settle_within;
    // Liveness: every region commits again.
    for region in &regions {
        let Some(minter) = client::minter(&regions, *region) else {
            continue;
        };
        let mut client = Client::new(*region, gateway.clone(), recorder.clone(), 0);
        let users = bank.users();
        let mut rng = Rng::new(options.seed ^ 0x6c69_7665);
        let probe = Transfer::moving(
            minter.id(rng.next_u128()),
            users[0].clone(),
            users[1 % users.len()].clone(),
            "0.01".into(),
        );
        loop {
            let outcome = client.send(std::slice::from_ref(&probe), Bulk::Bare).await;
            if matches!(outcome[0], Outcome::Ok { .. }) {
                break;
            }
            if tokio::time::Instant::now() >= settle_until {
                fail(format!(
                    "region {region} did not commit within {:?} of the faults' end: {:?}",
                    options.settle_within, outcome[0]
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Every view converges.
    let ids = bank.all();
    let users = bank.users();
    let transfers: Vec<String> = History::of(recorder.entries())
        .transfers
        .into_keys()
        .collect();
    loop {
        let read_ns = recorder.now_ns();
        let finals = gateway.finals(&ids, &users, &transfers, read_ns).await;
        if finals.converged || tokio::time::Instant::now() >= settle_until {
            outcomes.lock().unwrap_or_else(|p| p.into_inner()).finals = Some(finals);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    set(&phase, Phase::Done);
}
