//! A network of hosts made by the kernel: one network namespace per host,
//! each with its own address on a bridge, so that faults are packets the
//! kernel drops, not flags a node honours.
//!
//! ```text
//!  this process (root namespace)          hub namespace          host i
//!  <tag>r  10.213.S.1/24  ── veth ──  up0 ─┐
//!                                          br0 ── p<i> ── veth ── eth0 10.213.S.(10+i)/24
//! ```
//!
//! The bridge lives in a namespace of its own so that nothing of the
//! machine's own firewall (Docker's FORWARD policy among it) sees the
//! traffic between hosts. Each host drops what a fault says in its own
//! `INPUT` chain: a cut is a drop of a peer's packets, a one-way cut the
//! drop on one side only, loss a random drop (`-m statistic`). Latency
//! is a host's `OUTPUT` to the chosen peers sent to an NFQUEUE that a
//! delayer of ours ([`crate::delay`], started with [`Network::delayer`])
//! holds packets in, so each is delayed once, by its sender.
//!
//! Everything is named after this process (`lj<pid>`), and dropping the
//! [`Network`] deletes it; a run killed before that leaves namespaces
//! that the next [`Network::create`] finds (their process is gone) and
//! deletes.

use anyhow::Context;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The first two octets of every address a network hands out.
const PREFIX: [u8; 2] = [10, 213];
/// The last octet of host 0; host i is `HOST_BASE + i`.
const HOST_BASE: u8 = 10;
/// Where networks claim their third octet, a locked file each.
const CLAIMS: &str = "/run/ledger-jepsen";
/// How long a delayer has to bind its queue.
const DELAYER_START_MAX: Duration = Duration::from_secs(5);

/// A fault between hosts, as the kernel applies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// `to` drops every packet from `from` (a one-way cut; two rules make
    /// a cut both ways).
    Drop { from: usize, to: usize },
    /// `to` drops packets from every other host with this probability.
    Loss { to: usize, probability: f64 },
    /// `from` holds what it sends to `to` in its delayer's queue
    /// ([`Network::delayer`]); with no delayer bound, it is dropped.
    Delay { from: usize, to: usize },
}

/// Namespaces, links and addresses of one run.
pub struct Network {
    tag: String,
    subnet: u8,
    hosts: usize,
    /// Held while the network lives: its subnet is this run's.
    _claim: std::fs::File,
    /// This suite's `jepsen` binary, run inside a host to probe a link.
    probe: PathBuf,
}

impl Network {
    /// Makes `hosts` hosts on one bridge. Fails, saying why, where
    /// namespaces cannot be made (not root, no iproute2, no iptables): a
    /// run never goes on without real faults.
    pub fn create(hosts: usize, probe: PathBuf) -> anyhow::Result<Self> {
        anyhow::ensure!(
            hosts >= 1 && hosts <= usize::from(u8::MAX - HOST_BASE),
            "between 1 and {} hosts",
            u8::MAX - HOST_BASE
        );
        preflight()?;
        sweep_stale();
        let tag = format!("lj{}", std::process::id());
        let (subnet, claim) = claim_subnet()?;
        let network = Self {
            tag,
            subnet,
            hosts,
            _claim: claim,
            probe,
        };
        network.build().with_context(|| {
            format!(
                "making network namespaces for {hosts} hosts (run as root, with iproute2 and iptables)"
            )
        })?;
        Ok(network)
    }

    fn build(&self) -> anyhow::Result<()> {
        let hub = self.hub();
        run("ip", &["netns", "add", &hub])?;
        in_ns(&hub, "ip", &["link", "set", "lo", "up"])?;
        in_ns(&hub, "ip", &["link", "add", "br0", "type", "bridge"])?;
        in_ns(&hub, "ip", &["link", "set", "br0", "up"])?;
        let root_end = format!("{}r", self.tag);
        run(
            "ip",
            &[
                "link", "add", &root_end, "type", "veth", "peer", "name", "up0", "netns", &hub,
            ],
        )?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", self.client()),
                "dev",
                &root_end,
            ],
        )?;
        run("ip", &["link", "set", &root_end, "up"])?;
        in_ns(&hub, "ip", &["link", "set", "up0", "master", "br0", "up"])?;
        for host in 0..self.hosts {
            self.build_host(host)?;
        }
        Ok(())
    }

    fn build_host(&self, host: usize) -> anyhow::Result<()> {
        let hub = self.hub();
        let ns = self.namespace(host);
        let port = format!("p{host}");
        run("ip", &["netns", "add", &ns])?;
        in_ns(&ns, "ip", &["link", "set", "lo", "up"])?;
        in_ns(
            &hub,
            "ip",
            &[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        in_ns(&hub, "ip", &["link", "set", &port, "master", "br0", "up"])?;
        let address = format!("{}/24", self.address(host));
        in_ns(&ns, "ip", &["addr", "add", &address, "dev", "eth0"])?;
        in_ns(&ns, "ip", &["link", "set", "eth0", "up"])?;
        Ok(())
    }

    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// Host `host`'s address.
    pub fn address(&self, host: usize) -> Ipv4Addr {
        let last = u8::try_from(usize::from(HOST_BASE) + host).unwrap_or(u8::MAX);
        Ipv4Addr::new(PREFIX[0], PREFIX[1], self.subnet, last)
    }

    /// This process's address on the bridge: clients come from it, and no
    /// fault drops it.
    pub fn client(&self) -> Ipv4Addr {
        Ipv4Addr::new(PREFIX[0], PREFIX[1], self.subnet, 1)
    }

    /// The namespace of host `host`.
    pub fn namespace(&self, host: usize) -> String {
        format!("{}-h{host}", self.tag)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.tag)
    }

    /// What runs a program inside host `host`.
    pub fn launcher(&self, host: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.namespace(host),
        ]
    }

    /// How long a TCP connection from host `from` to `to` takes to open
    /// (one round trip), or `None` when it does not open within `timeout`.
    /// A fault is checked this way before a run relies on it.
    pub fn connect_time(
        &self,
        from: usize,
        to: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<Option<Duration>> {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.namespace(from)])
            .arg(&self.probe)
            .args([
                "probe",
                "connect",
                "--addr",
                &to.to_string(),
                "--timeout-ms",
            ])
            .arg(timeout.as_millis().to_string())
            .output()
            .context("running the probe")?;
        let said = String::from_utf8_lossy(&output.stdout);
        match said.trim().strip_prefix("connected in ") {
            Some(micros) => Ok(Some(Duration::from_micros(
                micros.trim_end_matches(" us").parse()?,
            ))),
            None if said.trim() == "unreachable" => Ok(None),
            None => anyhow::bail!(
                "the probe from host {from} to {to} said {:?} {:?}",
                said.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }
    }

    /// Starts `jepsen probe listen` inside host `host` on `port` for
    /// `seconds`: something to connect to where no node runs.
    pub fn listener(&self, host: usize, port: u16, seconds: u64) -> anyhow::Result<Child> {
        let addr = SocketAddr::from((self.address(host), port));
        Command::new("ip")
            .args(["netns", "exec", &self.namespace(host)])
            .arg(&self.probe)
            .args(["probe", "listen", "--addr", &addr.to_string(), "--seconds"])
            .arg(seconds.to_string())
            .spawn()
            .context("starting a listener")
    }

    /// Applies `rules` in place of every rule before: an empty list heals.
    pub fn set(&self, rules: &[Rule]) -> anyhow::Result<()> {
        for host in 0..self.hosts {
            let ns = self.namespace(host);
            iptables(&ns, &["-F", "INPUT"])?;
            iptables(&ns, &["-F", "OUTPUT"])?;
            for rule in rules {
                if let Some(args) = self.iptables_rule(host, rule) {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    iptables(&ns, &args)?;
                }
            }
        }
        Ok(())
    }

    /// The iptables rule that makes `rule` in host `host`, if it has one
    /// there: drops in `INPUT` by the receiver, delays in `OUTPUT` by the
    /// sender.
    fn iptables_rule(&self, host: usize, rule: &Rule) -> Option<Vec<String>> {
        let args: Vec<String> = match *rule {
            Rule::Drop { from, to } if to == host => {
                let source = self.address(from).to_string();
                vec!["-A", "INPUT", "-i", "eth0", "-s", &source, "-j", "DROP"]
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            }
            Rule::Loss { to, probability } if to == host => {
                let probability = format!("{probability:.4}");
                let client = self.client().to_string();
                let mut args = vec!["-A", "INPUT", "-i", "eth0", "!", "-s", &client];
                args.extend(["-m", "statistic", "--mode", "random"]);
                args.extend(["--probability", &probability, "-j", "DROP"]);
                args.into_iter().map(str::to_owned).collect()
            }
            Rule::Delay { from, to } if from == host => {
                let target = self.address(to).to_string();
                let queue = queue_of(host).to_string();
                let mut args = vec!["-A", "OUTPUT", "-o", "eth0", "-d", &target];
                args.extend(["-j", "NFQUEUE", "--queue-num", &queue]);
                args.into_iter().map(str::to_owned).collect()
            }
            _ => return None,
        };
        Some(args)
    }

    /// Starts a delayer in host `host`, bound to its queue
    /// ([`Rule::Delay`]) and holding each packet `delay ± jitter`; returns
    /// once the kernel says the queue is bound.
    pub fn delayer(
        &self,
        host: usize,
        delay: Duration,
        jitter: Duration,
        seed: u64,
    ) -> anyhow::Result<Delayer> {
        let queue = queue_of(host);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace(host)])
            .arg(&self.probe)
            .args(["delay", "--queue", &queue.to_string(), "--ms"])
            .arg(delay.as_millis().to_string())
            .arg("--jitter-ms")
            .arg(jitter.as_millis().to_string())
            .args(["--seed", &seed.to_string(), "--exit-on-stdin-close"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("starting a delayer")?;
        let mut delayer = Delayer {
            host,
            namespace: self.namespace(host),
            queue,
            child,
        };
        let until = Instant::now() + DELAYER_START_MAX;
        while !delayer.bound()? {
            delayer.alive()?;
            anyhow::ensure!(
                Instant::now() < until,
                "the delayer of host {host} did not bind queue {queue} within {DELAYER_START_MAX:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(delayer)
    }

    /// How long a TCP connection from this process (the clients' side) to
    /// `to` takes to open, or `None` when it does not within `timeout`.
    pub fn client_connect_time(
        &self,
        to: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<Option<Duration>> {
        let began = Instant::now();
        match std::net::TcpStream::connect_timeout(&to, timeout) {
            Ok(_) => Ok(Some(began.elapsed())),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                Ok(Some(began.elapsed()))
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::HostUnreachable
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(error).with_context(|| format!("connecting to {to}")),
        }
    }
}

/// The NFQUEUE number of host `host`'s delayer (queues are per namespace;
/// one number per host keeps listings plain).
pub fn queue_of(host: usize) -> u16 {
    u16::try_from(host).unwrap_or(u16::MAX)
}

/// A delayer running in a host ([`Network::delayer`]): killed when dropped.
#[derive(Debug)]
pub struct Delayer {
    host: usize,
    namespace: String,
    queue: u16,
    child: std::process::Child,
}

impl Delayer {
    pub fn host(&self) -> usize {
        self.host
    }

    /// The delayer's process (`ip netns exec` runs it in its own place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the delayer is gone: its queue then drops what the rule
    /// sends there (the fault became a cut).
    pub fn alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "the delayer of host {} (queue {}) exited: {status}",
                self.host,
                self.queue
            ),
        }
    }

    /// Whether the kernel lists the delayer's queue as bound in its host
    /// (`/proc/net/netfilter/nfnetlink_queue`, one line a bound queue).
    pub fn bound(&self) -> anyhow::Result<bool> {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.namespace, "cat"])
            .arg("/proc/net/netfilter/nfnetlink_queue")
            .output()
            .context("reading the host's bound queues")?;
        anyhow::ensure!(
            output.status.success(),
            "no /proc/net/netfilter/nfnetlink_queue in host {} (is nfnetlink_queue loaded?): {}",
            self.host,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let queue = self.queue.to_string();
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|line| line.split_whitespace().next() == Some(queue.as_str())))
    }

    /// Fails when it had already exited; stops it either way.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let alive = self.alive();
        let _ = self.child.kill();
        let _ = self.child.wait();
        alive
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        delete_namespaces(&self.tag);
    }
}

/// Says plainly what is missing when namespaces cannot be made here.
fn preflight() -> anyhow::Result<()> {
    for (program, args) in [("ip", ["-V"]), ("iptables", ["-V"])] {
        let ran = Command::new(program).args(args).output();
        anyhow::ensure!(
            ran.is_ok_and(|output| output.status.success()),
            "`{program}` does not run here: the chaos harness needs iproute2 and iptables"
        );
    }
    let probe = format!("lj{}-probe", std::process::id());
    run("ip", &["netns", "add", &probe]).context(
        "cannot make a network namespace (the chaos harness must run as root, or with \
         CAP_NET_ADMIN and CAP_SYS_ADMIN); it does not fall back to a fake network",
    )?;
    let _ = run("ip", &["netns", "delete", &probe]);
    Ok(())
}

/// Takes a third octet no other live network holds: an exclusive lock on
/// its claim file, which the kernel lets go when the holder's process ends
/// however it ends. The file is kept; the lock is the claim.
fn claim_subnet() -> anyhow::Result<(u8, std::fs::File)> {
    std::fs::create_dir_all(CLAIMS).with_context(|| format!("creating {CLAIMS}"))?;
    let start = (std::process::id() % 250) as u8;
    for step in 0..250u8 {
        let subnet = start.wrapping_add(step) % 250;
        let path = PathBuf::from(CLAIMS).join(format!("{subnet}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if file.try_lock().is_ok() {
            return Ok((subnet, file));
        }
    }
    anyhow::bail!("every subnet of 10.213.0.0/16 is held by a running harness ({CLAIMS})")
}

fn alive(pid: &str) -> bool {
    std::path::Path::new("/proc").join(pid).exists()
}

/// The names of every network namespace on the machine.
fn namespaces() -> Vec<String> {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Deletes the namespaces of runs whose process is gone.
fn sweep_stale() {
    let mut stale: Vec<String> = namespaces()
        .iter()
        .filter_map(|name| Some(name.strip_prefix("lj")?.split('-').next()?.to_owned()))
        .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !alive(pid))
        .map(|pid| format!("lj{pid}"))
        .collect();
    stale.sort();
    stale.dedup();
    for tag in stale {
        delete_namespaces(&tag);
    }
}

/// Deletes every namespace named after `tag` (their links go with them).
fn delete_namespaces(tag: &str) {
    let prefix = format!("{tag}-");
    for name in namespaces().iter().filter(|name| name.starts_with(&prefix)) {
        let _ = Command::new("ip").args(["netns", "delete", name]).output();
    }
    // The root end of the hub's link goes with the hub; this is in case
    // the hub was never made.
    let _ = Command::new("ip")
        .args(["link", "delete", &format!("{tag}r")])
        .output();
}

fn iptables(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    in_ns(ns, "iptables", &all)
}

fn in_ns(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(
        output.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
