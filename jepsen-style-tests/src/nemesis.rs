//! Nemeses: the faults a scenario puts on the cluster, chosen by its seed,
//! each undone by [`Faults::heal`]. Partitions and loss are packets the
//! kernel drops ([`crate::net`]); latency is packets between regions held
//! by a delayer of ours on an NFQUEUE ([`crate::delay`]: this kernel has
//! no `netem`); crashes are `kill -9`; pauses are
//! SIGSTOP/SIGCONT; clock faults move one node's clock through the
//! test-only offset every node reads when it runs with fault injection
//! (why not `libfaketime`: it would also move the monotonic clock that
//! Raft's timers and tokio run on, so a jump would be an election storm of
//! our own making rather than a wall clock that is wrong).

use crate::net::{Delayer, Network, Rule};
use crate::rng::Rng;
use ledger_node::auth::Role;
use ledger_node::dev::Cluster as Nodes;
use std::fmt::Write as _;
use std::time::Duration;

/// Ports every node listens on, at its own host's address.
pub const RAFT_PORT: u16 = 7000;
pub const API_PORT: u16 = 7100;
pub const HTTP_PORT: u16 = 8080;

/// How long the latency nemesis holds each packet between regions, each
/// way (a round trip between regions takes twice this)...
pub const LATENCY: Duration = Duration::from_millis(100);
/// ...give or take up to this much, packet by packet.
pub const LATENCY_JITTER: Duration = Duration::from_millis(20);
/// The longest a connection between regions may take to open under the
/// latency nemesis beyond its two held packets (a loaded machine).
const LATENCY_SLACK: Duration = Duration::from_secs(1);

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nemesis {
    /// One region cut off from the rest, both ways.
    CutRegion,
    /// The regions in two groups that cannot reach each other.
    Split,
    /// Every node sees a majority of the others, and no two the same one
    /// (one-way drops).
    MajoritiesRing,
    /// Two sides cut from each other, one region reaching both.
    Bridge,
    /// One region hears nothing from the others; they still hear it.
    OneWay,
    /// A region's leader cut from every other node.
    LeaderIsolated,
    /// Every node drops a fifth of what the others send it.
    Loss,
    /// Every packet between regions held 100 ± 20 ms by its sender.
    Latency,
    /// `kill -9` of one node, started again on its data at the heal.
    KillNode,
    /// `kill -9` of a region's leader.
    KillLeader,
    /// `kill -9` of every node of a region.
    KillRegion,
    /// SIGSTOP of one node, SIGCONT at the heal.
    Pause,
    /// One node's clock stepped seconds ahead or behind.
    ClockJump,
    /// One node's clock jumping back and forth every half second.
    ClockStrobe,
}

impl Nemesis {
    pub const ALL: [Nemesis; 14] = [
        Nemesis::CutRegion,
        Nemesis::Split,
        Nemesis::MajoritiesRing,
        Nemesis::Bridge,
        Nemesis::OneWay,
        Nemesis::LeaderIsolated,
        Nemesis::Loss,
        Nemesis::Latency,
        Nemesis::KillNode,
        Nemesis::KillLeader,
        Nemesis::KillRegion,
        Nemesis::Pause,
        Nemesis::ClockJump,
        Nemesis::ClockStrobe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nemesis::CutRegion => "cut-region",
            Nemesis::Split => "split",
            Nemesis::MajoritiesRing => "majorities-ring",
            Nemesis::Bridge => "bridge",
            Nemesis::OneWay => "one-way",
            Nemesis::LeaderIsolated => "leader-isolated",
            Nemesis::Loss => "loss",
            Nemesis::Latency => "latency",
            Nemesis::KillNode => "kill-node",
            Nemesis::KillLeader => "kill-leader",
            Nemesis::KillRegion => "kill-region",
            Nemesis::Pause => "pause",
            Nemesis::ClockJump => "clock-jump",
            Nemesis::ClockStrobe => "clock-strobe",
        }
    }

    /// Whether the fault means anything on `regions` × `per_region`.
    pub fn applies(self, regions: usize, per_region: usize) -> bool {
        match self {
            Nemesis::Bridge => regions >= 3,
            // Below 5 hosts every host reaches every other.
            Nemesis::MajoritiesRing => regions * per_region >= 5,
            Nemesis::LeaderIsolated => per_region >= 3,
            _ => regions >= 2,
        }
    }
}

/// The cluster's nodes as the nemeses see them: node `id` runs on host
/// `id - 1`, regions in order, `per_region` nodes each.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub regions: usize,
    pub per_region: usize,
}

impl Shape {
    pub fn hosts(self) -> usize {
        self.regions * self.per_region
    }

    pub fn hosts_of(self, region: usize) -> Vec<usize> {
        (region * self.per_region..(region + 1) * self.per_region).collect()
    }

    pub fn region_of(self, host: usize) -> usize {
        host / self.per_region.max(1)
    }

    pub fn id_of(host: usize) -> u64 {
        host as u64 + 1
    }

    fn host_of(id: u64) -> usize {
        (id as usize).saturating_sub(1)
    }
}

/// The faults in force, to be undone.
#[derive(Debug, Default)]
pub struct Faults {
    rules: bool,
    killed: Vec<u64>,
    paused: Vec<u64>,
    skewed: Vec<u64>,
    strobe: Option<tokio::task::JoinHandle<()>>,
    /// Killed when dropped, so a run cut short leaves none running.
    delayers: Vec<Delayer>,
}

impl Drop for Faults {
    /// A run cut short must not leave a clock strobing.
    fn drop(&mut self) {
        if let Some(strobe) = self.strobe.take() {
            strobe.abort();
        }
    }
}

/// Rules that cut every host of `a` from every host of `b`, both ways.
fn cut(a: &[usize], b: &[usize]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for &x in a {
        for &y in b {
            rules.push(Rule::Drop { from: x, to: y });
            rules.push(Rule::Drop { from: y, to: x });
        }
    }
    rules
}

fn shuffled(mut items: Vec<usize>, rng: &mut Rng) -> Vec<usize> {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
    items
}

/// A partition: its rules, in words, and the region it cuts off whole
/// from every other, if it does.
pub struct Partition {
    pub rules: Vec<Rule>,
    pub what: String,
    pub cut_off: Option<usize>,
}

/// The rules of a partition nemesis; `None` for the others. `leader` is
/// the host to isolate for [`Nemesis::LeaderIsolated`].
pub fn partition(
    nemesis: Nemesis,
    shape: Shape,
    rng: &mut Rng,
    leader: Option<usize>,
) -> Option<Partition> {
    let all: Vec<usize> = (0..shape.hosts()).collect();
    let others = |mine: &[usize]| -> Vec<usize> {
        all.iter().copied().filter(|h| !mine.contains(h)).collect()
    };
    let regions = shuffled((0..shape.regions).collect(), rng);
    let hosts_of =
        |list: &[usize]| -> Vec<usize> { list.iter().flat_map(|r| shape.hosts_of(*r)).collect() };
    let alone = |side: &[usize]| (side.len() == 1).then(|| side[0]);
    let (rules, what, cut_off) = match nemesis {
        Nemesis::CutRegion => {
            let mine = shape.hosts_of(regions[0]);
            let what = format!("region {} cut off", regions[0]);
            (cut(&mine, &others(&mine)), what, Some(regions[0]))
        }
        Nemesis::Split => {
            let (a, b) = regions.split_at((regions.len() / 2).max(1));
            let what = format!("regions {a:?} apart from {b:?}");
            (cut(&hosts_of(a), &hosts_of(b)), what, alone(a))
        }
        Nemesis::Bridge => {
            let (bridge, rest) = regions.split_first()?;
            let (a, b) = rest.split_at(rest.len() / 2);
            let what = format!("regions {a:?} apart from {b:?}, region {bridge} reaching both");
            (cut(&hosts_of(a), &hosts_of(b)), what, None)
        }
        Nemesis::MajoritiesRing => majorities_ring(all.clone(), rng),
        Nemesis::OneWay => {
            // TCP needs both ways, so connections between the region and
            // the others stop too; what the others sent before still lands.
            let mine = shape.hosts_of(regions[0]);
            let rules = others(&mine)
                .into_iter()
                .flat_map(|from| mine.iter().map(move |&to| Rule::Drop { from, to }))
                .collect();
            let what = format!("region {} hears no other region", regions[0]);
            (rules, what, Some(regions[0]))
        }
        Nemesis::LeaderIsolated => {
            let leader = leader?;
            let what = format!(
                "node {} (a leader) cut from every node",
                Shape::id_of(leader)
            );
            (cut(&[leader], &others(&[leader])), what, None)
        }
        Nemesis::Loss => {
            let rules = all
                .iter()
                .map(|&to| Rule::Loss {
                    to,
                    probability: 0.2,
                })
                .collect();
            (
                rules,
                "a fifth of the packets between nodes dropped".into(),
                None,
            )
        }
        _ => return None,
    };
    Some(Partition {
        rules,
        what,
        cut_off,
    })
}

/// Hosts on a shuffled ring, each reaching only the hosts within `d` places
/// of it, both ways, where `d` is the least that makes the host and those
/// it reaches a majority: every host sees a majority, no two the same one.
fn majorities_ring(all: Vec<usize>, rng: &mut Rng) -> (Vec<Rule>, String, Option<usize>) {
    let ring = shuffled(all, rng);
    let n = ring.len();
    let d = (n / 2).div_ceil(2);
    let apart = |a: usize, b: usize| {
        let gap = a.abs_diff(b);
        gap.min(n - gap) > d
    };
    let mut rules = Vec::new();
    for (i, &x) in ring.iter().enumerate() {
        for (j, &y) in ring.iter().enumerate() {
            if apart(i, j) {
                rules.push(Rule::Drop { from: y, to: x });
            }
        }
    }
    let what = format!("majorities ring over hosts {ring:?}, each reaching {d} either side");
    (rules, what, None)
}

/// The leader of `region`'s log as a node of that region sees it.
pub async fn leader_of(nodes: &Nodes, shape: Shape, region: usize) -> Option<u64> {
    leadership(nodes, shape, region, None)
        .await
        .map(|(leader, _)| leader)
}

/// The leader of `region`'s log and its term, as the first node of that
/// region (but `skip`) that knows a leader says.
pub async fn leadership(
    nodes: &Nodes,
    shape: Shape,
    region: usize,
    skip: Option<u64>,
) -> Option<(u64, u64)> {
    for host in shape.hosts_of(region) {
        let id = Shape::id_of(host);
        if skip == Some(id) {
            continue;
        }
        let Some(node) = nodes.nodes.iter().find(|node| node.id == id) else {
            continue;
        };
        let Ok(client) = crate::keys::connect(&node.api, Role::Operator).await else {
            continue;
        };
        if let Ok(status) = client.status().await {
            let name = format!("region-{region}");
            if let Some(group) = status.groups.iter().find(|group| group.group == name)
                && group.leader != 0
            {
                return Some((group.leader, group.term));
            }
        }
    }
    None
}

/// What a fault did: in words, and the region it cut off whole, if any.
pub struct Injected {
    pub what: String,
    pub cut_off: Option<usize>,
    /// A leader cut from every node: its region and id.
    pub isolated: Option<(usize, u64)>,
}

/// Puts `nemesis` on the cluster.
pub async fn inject(
    nemesis: Nemesis,
    shape: Shape,
    rng: &mut Rng,
    net: &Network,
    nodes: &mut Nodes,
    faults: &mut Faults,
) -> anyhow::Result<Injected> {
    let region = rng.below(shape.regions as u64) as usize;
    let any_node = Shape::id_of(rng.below(shape.hosts() as u64) as usize);
    let leader = leader_of(nodes, shape, region).await;
    if let Some(partition) = partition(nemesis, shape, rng, leader.map(Shape::host_of)) {
        net.set(&partition.rules)?;
        faults.rules = true;
        holds(net, &partition.rules)?;
        return Ok(Injected {
            what: partition.what,
            cut_off: partition.cut_off,
            isolated: leader
                .filter(|_| nemesis == Nemesis::LeaderIsolated)
                .map(|leader| (region, leader)),
        });
    }
    let what = match nemesis {
        Nemesis::KillNode | Nemesis::KillLeader | Nemesis::KillRegion => {
            let victims: Vec<u64> = match nemesis {
                Nemesis::KillNode => vec![any_node],
                Nemesis::KillLeader => vec![leader.unwrap_or(any_node)],
                _ => shape
                    .hosts_of(region)
                    .into_iter()
                    .map(Shape::id_of)
                    .collect(),
            };
            for &id in &victims {
                nodes.kill(id).await?;
                faults.killed.push(id);
            }
            format!("kill -9 of nodes {victims:?}")
        }
        Nemesis::Pause => {
            let id = leader.unwrap_or(any_node);
            signal(nodes, id, "STOP")?;
            faults.paused.push(id);
            format!("node {id} paused (SIGSTOP)")
        }
        Nemesis::ClockJump => {
            let seconds = 2 + rng.below(7) as i64;
            let offset = if rng.below(2) == 0 { seconds } else { -seconds } * 1000;
            nodes.skew_clock(any_node, offset)?;
            faults.skewed.push(any_node);
            format!("node {any_node}'s clock {offset:+} ms")
        }
        Nemesis::ClockStrobe => {
            let offset = (1 + rng.below(5) as i64) * 1000;
            faults.strobe = Some(tokio::spawn(strobe(nodes.clock_of(any_node), offset)));
            faults.skewed.push(any_node);
            format!("node {any_node}'s clock strobing ±{offset} ms every 500 ms")
        }
        Nemesis::Latency => {
            let seed = rng.next_u64();
            tokio::task::block_in_place(|| latency(shape, seed, net, faults))?
        }
        _ => anyhow::bail!("{} is not a fault of this kind", nemesis.name()),
    };
    Ok(Injected {
        what,
        cut_off: None,
        isolated: None,
    })
}

/// Moves a clock `offset_ms` ahead and back every half second until
/// aborted.
async fn strobe(skew: impl Fn(i64) -> anyhow::Result<()> + Send + 'static, offset_ms: i64) {
    let mut ahead = true;
    loop {
        let _ = skew(if ahead { offset_ms } else { -offset_ms });
        ahead = !ahead;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Undoes every fault in force: links restored, killed nodes started on
/// their data, paused ones continued, clocks set right. Goes on past a
/// step that fails, and answers the first failure.
pub async fn heal(net: &Network, nodes: &mut Nodes, faults: &mut Faults) -> anyhow::Result<()> {
    if let Some(strobe) = faults.strobe.take() {
        strobe.abort();
        let _ = strobe.await;
    }
    let mut failures = Vec::new();
    // A delayer that died while in force made a cut of the latency: the
    // run must not pass as if it had been latency.
    for delayer in &mut faults.delayers {
        failures.push(delayer.alive());
    }
    if std::mem::take(&mut faults.rules) {
        failures.push(net.set(&[]));
    }
    // Only once no rule sends them packets: a delayer stopped first
    // would drop them.
    for delayer in std::mem::take(&mut faults.delayers) {
        failures.push(delayer.stop());
    }
    for id in std::mem::take(&mut faults.paused) {
        failures.push(signal(nodes, id, "CONT"));
    }
    for id in std::mem::take(&mut faults.skewed) {
        failures.push(nodes.skew_clock(id, 0));
    }
    for id in std::mem::take(&mut faults.killed) {
        failures.push(nodes.restart(id));
    }
    failures.into_iter().collect()
}

impl Faults {
    /// Whatever a run cut short may have left: every link, every running
    /// node paused, every clock (to be healed before the nodes stop).
    pub fn everything(running: Vec<u64>) -> Self {
        Self {
            rules: true,
            killed: Vec::new(),
            paused: running.clone(),
            skewed: running,
            strobe: None,
            delayers: Vec::new(),
        }
    }
}

/// Fails unless the first cut of `rules` is real: a connection from its
/// source to the Raft port of its target does not open.
fn holds(net: &Network, rules: &[Rule]) -> anyhow::Result<()> {
    let Some(&Rule::Drop { from, to }) =
        rules.iter().find(|rule| matches!(rule, Rule::Drop { .. }))
    else {
        return Ok(());
    };
    let target = std::net::SocketAddr::from((net.address(to), RAFT_PORT));
    let opened =
        tokio::task::block_in_place(|| net.connect_time(from, target, Duration::from_millis(500)))?;
    match opened {
        None => Ok(()),
        Some(time) => anyhow::bail!(
            "the cut from host {from} to host {to} does not hold: a connection opened in {time:?}"
        ),
    }
}

/// Every host holds what it sends to the hosts of other regions.
pub fn between_regions(shape: Shape) -> Vec<Rule> {
    let hosts = 0..shape.hosts();
    hosts
        .clone()
        .flat_map(|from| hosts.clone().map(move |to| (from, to)))
        .filter(|&(from, to)| shape.region_of(from) != shape.region_of(to))
        .map(|(from, to)| Rule::Delay { from, to })
        .collect()
}

/// Puts [`LATENCY`] between regions: a delayer in every host first (a
/// rule with no delayer bound drops), then the rules, then the proof.
fn latency(shape: Shape, seed: u64, net: &Network, faults: &mut Faults) -> anyhow::Result<String> {
    for host in 0..shape.hosts() {
        let delayer = net.delayer(host, LATENCY, LATENCY_JITTER, seed ^ host as u64)?;
        faults.delayers.push(delayer);
    }
    net.set(&between_regions(shape))?;
    faults.rules = true;
    let measured = latency_holds(net, shape)?;
    Ok(format!(
        "every packet between regions held {} ± {} ms by its sender; measured: {measured}",
        LATENCY.as_millis(),
        LATENCY_JITTER.as_millis()
    ))
}

/// Fails unless the latency is real and only between regions: a
/// connection from region 0 to region 1 (its SYN held by the sender, the
/// SYN-ACK by the receiver) takes at least twice the least hold; one
/// within a region, where the shape has one, and one from the clients take
/// less than one hold. Says what it measured.
fn latency_holds(net: &Network, shape: Shape) -> anyhow::Result<String> {
    let timeout = (LATENCY + LATENCY_JITTER) * 2 + LATENCY_SLACK;
    let least = (LATENCY - LATENCY_JITTER) * 2;
    let fast = LATENCY - LATENCY_JITTER;
    let ms = |time: Duration| format!("{:.1} ms", time.as_secs_f64() * 1000.0);
    let (from, to) = (shape.hosts_of(0)[0], shape.hosts_of(1)[0]);
    let target = std::net::SocketAddr::from((net.address(to), RAFT_PORT));
    let far = net.connect_time(from, target, timeout)?;
    let far = far.ok_or_else(|| {
        anyhow::anyhow!(
            "under latency no connection from host {from} to host {to} opened within {timeout:?}"
        )
    })?;
    anyhow::ensure!(
        far >= least,
        "the latency does not hold: a connection from host {from} to host {to} opened in {}, under {}",
        ms(far),
        ms(least)
    );
    let mut said = format!(
        "connect from host {from} to host {to} (another region) {}",
        ms(far)
    );
    let client = net.client_connect_time(target, timeout)?;
    anyhow::ensure!(
        client.is_some_and(|time| time < fast),
        "the clients are delayed too: a connection to host {to} took {client:?}"
    );
    let _ = write!(
        said,
        ", from the clients {}",
        ms(client.unwrap_or_default())
    );
    if let [near_from, near_to, ..] = shape.hosts_of(0)[..] {
        let target = std::net::SocketAddr::from((net.address(near_to), RAFT_PORT));
        let near = net.connect_time(near_from, target, timeout)?;
        anyhow::ensure!(
            near.is_some_and(|time| time < fast),
            "a region's own traffic is delayed: host {near_from} to {near_to} took {near:?}"
        );
        let _ = write!(said, ", within region 0 {}", ms(near.unwrap_or_default()));
    }
    Ok(said)
}

/// Sends a signal (`STOP`, `CONT`) to a running node's process.
fn signal(nodes: &Nodes, id: u64, name: &str) -> anyhow::Result<()> {
    let pid = nodes
        .pid(id)
        .ok_or_else(|| anyhow::anyhow!("node {id} is not running"))?;
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}
