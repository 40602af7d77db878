//! `ledger dev`: a whole cluster on this machine, one process per node.

use crate::auth::{self, Role};
use crate::client::{Access, CALL_TIMEOUT, Client, ClientError};
use crate::config::NodeSettings;
use crate::tls::DevCa;
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig};

/// How long the cluster may take to elect every leader.
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after being asked.
const STOP_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct DevOptions {
    pub regions: u16,
    pub nodes_per_region: u16,
    pub base_port: u16,
    pub data_dir: PathBuf,
    /// The `ledger` binary to run the nodes with (this one by default).
    pub binary: Option<PathBuf>,
    /// Lets [`Cluster::cut`] partition the nodes and [`Cluster::stall_disk`]
    /// stall their disks (for tests).
    pub fault_injection: bool,
    /// How long a proposal waits before its outcome is unknown.
    pub propose_deadline_ms: u64,
    /// How long a parked account actor waits to be resumed.
    pub park_deadline_ms: u64,
    /// Whether nodes compare their clocks and refuse to lead when off.
    pub clock_watch: bool,
    /// HTTP requests each node answers at once.
    pub http_requests_max: usize,
    /// A chaos bite every node runs with (`chaos_bite`: a mode of
    /// `ledger_node::bite::Bite`, such as `"skip-pool-check"`); the nodes
    /// refuse it unless built with the `chaos-bite` feature.
    pub bite: Option<String>,
    /// The keys every node takes (authentication on), or none (off).
    pub keys: Option<DevKeys>,
    /// Where every node sends its spans (OTLP/gRPC), or none (traces off).
    pub otlp_endpoint: Option<String>,
    /// Mutual TLS between the nodes, and TLS for clients, with a throwaway
    /// CA made at start ([`DevTls`]).
    pub tls: bool,
}

/// The TLS files of a dev cluster, in `<data_dir>/tls`: the CA's
/// certificate, and each node's certificate (valid for the hosts of its
/// addresses and `localhost`) and key. The CA's key is not kept.
pub struct DevTls {
    pub ca: PathBuf,
    /// What a client of the cluster trusts.
    pub client: ClientTlsConfig,
}

impl DevTls {
    /// The directory the files are in.
    fn dir(data_dir: &Path) -> PathBuf {
        data_dir.join("tls")
    }

    /// Makes a CA and a certificate for each of `nodes`.
    fn make(data_dir: &Path, nodes: &[DevNode]) -> anyhow::Result<Self> {
        let dir = Self::dir(data_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca = DevCa::new("ledger dev CA").context("making the dev CA")?;
        let ca_file = dir.join("ca.pem");
        write_private(&ca_file, &ca.pem())?;
        for node in nodes {
            let mut names = vec!["localhost".to_owned()];
            for address in [&node.raft, &node.api, &node.http] {
                let host = crate::tls::host_of(address).to_owned();
                if !names.contains(&host) {
                    names.push(host);
                }
            }
            let issued = ca
                .issue(&format!("node-{}", node.id), &names)
                .with_context(|| format!("making node {}'s certificate", node.id))?;
            let (cert, key) = Self::node_files(data_dir, node.id);
            write_private(&cert, &issued.cert)?;
            write_private(&key, &issued.key)?;
        }
        Ok(Self {
            client: crate::tls::client_trusting(Certificate::from_pem(ca.pem()), None),
            ca: ca_file,
        })
    }

    /// Node `id`'s certificate and key files.
    fn node_files(data_dir: &Path, id: u64) -> (PathBuf, PathBuf) {
        let dir = Self::dir(data_dir);
        (
            dir.join(format!("node-{id}.pem")),
            dir.join(format!("node-{id}.key")),
        )
    }

    /// The `[tls]` section of node `id`'s settings.
    fn settings_text(data_dir: &Path, id: u64) -> String {
        let (cert, key) = Self::node_files(data_dir, id);
        format!(
            "\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            Self::dir(data_dir).join("ca.pem"),
            cert,
            key
        )
    }
}

/// One key per role, made for a dev cluster: every node accepts each and
/// shows the `node` key to its peers.
#[derive(Clone, PartialEq, Eq)]
pub struct DevKeys {
    pub client: String,
    pub operator: String,
    pub node: String,
}

/// Debug output never shows the keys.
impl std::fmt::Debug for DevKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevKeys { <hidden> }")
    }
}

impl DevKeys {
    /// Three fresh keys from the operating system's generator.
    pub fn generate() -> anyhow::Result<Self> {
        let key = || auth::new_key().context("making an API key");
        Ok(Self {
            client: key()?,
            operator: key()?,
            node: key()?,
        })
    }

    pub fn of(&self, role: Role) -> &str {
        match role {
            Role::Client => &self.client,
            Role::Operator => &self.operator,
            Role::Node => &self.node,
        }
    }

    /// The `authorization` value of `role`'s key.
    pub fn bearer(
        &self,
        role: Role,
    ) -> Result<MetadataValue<Ascii>, ledger_replication::InvalidKey> {
        ledger_replication::bearer(self.of(role))
    }

    /// The `[auth]` section of every node's settings.
    fn settings_text(&self) -> String {
        let mut text = format!("\n[auth]\nnode_key = \"{}\"\n", self.node);
        for role in Role::ALL {
            text.push_str(&format!(
                "\n[[auth.keys]]\nname = \"dev-{name}\"\nrole = \"{name}\"\nsha256 = \"{digest}\"\n",
                name = role.name(),
                digest = auth::digest_hex(self.of(role)),
            ));
        }
        text
    }
}

impl DevOptions {
    /// The nodes' default for how long a proposal waits.
    pub const PROPOSE_DEADLINE_MS: u64 = 10_000;

    /// `regions` × `nodes_per_region` nodes from `base_port`, with the
    /// nodes' default settings and no fault injection.
    pub fn new(regions: u16, nodes_per_region: u16, base_port: u16, data_dir: PathBuf) -> Self {
        Self {
            regions,
            nodes_per_region,
            base_port,
            data_dir,
            binary: None,
            fault_injection: false,
            propose_deadline_ms: Self::PROPOSE_DEADLINE_MS,
            park_deadline_ms: NodeSettings::PARK_DEADLINE_MS,
            clock_watch: true,
            http_requests_max: NodeSettings::HTTP_REQUESTS_MAX,
            bite: None,
            keys: None,
            otlp_endpoint: None,
            tls: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DevNode {
    pub id: u64,
    pub region: u16,
    pub raft: String,
    pub api: String,
    /// Where its HTTP/JSON API listens.
    pub http: String,
    pub config: PathBuf,
    pub log: PathBuf,
    /// What runs the node's command: empty to run it as it is, else a
    /// prefix such as `ip netns exec <namespace>` that ends by exec'ing it
    /// (so that the process started is the node, and a kill reaches it).
    pub launcher: Vec<String>,
}

/// The nodes of a dev cluster and the settings files they run from.
pub fn plan(options: &DevOptions) -> anyhow::Result<Vec<DevNode>> {
    anyhow::ensure!(options.regions >= 1, "at least one region");
    anyhow::ensure!(
        options.nodes_per_region >= 1,
        "at least one node per region"
    );
    let count = u32::from(options.regions) * u32::from(options.nodes_per_region);
    anyhow::ensure!(
        u32::from(options.base_port) + 200 + count <= u32::from(u16::MAX),
        "ports past 65535; choose a lower --base-port"
    );
    let mut nodes = Vec::new();
    for region in 0..options.regions {
        for slot in 0..options.nodes_per_region {
            let index = region * options.nodes_per_region + slot;
            let id = u64::from(index) + 1;
            nodes.push(DevNode {
                id,
                region,
                raft: format!("127.0.0.1:{}", options.base_port + index),
                api: format!("127.0.0.1:{}", options.base_port + 100 + index),
                http: format!("127.0.0.1:{}", options.base_port + 200 + index),
                config: options.data_dir.join(format!("node-{id}.toml")),
                log: options.data_dir.join(format!("node-{id}.log")),
                launcher: Vec::new(),
            });
        }
    }
    Ok(nodes)
}

fn settings_text(node: &DevNode, all: &[DevNode], options: &DevOptions) -> String {
    let data_dir = &options.data_dir;
    let faults = options.fault_injection;
    let propose_deadline_ms = options.propose_deadline_ms;
    let park_deadline_ms = options.park_deadline_ms;
    let clock_watch = options.clock_watch;
    let http_requests_max = options.http_requests_max;
    let mut text = format!(
        "api_listen = \"{api}\"\nhttp_listen = \"{http}\"\nhttp_requests_max = {http_requests_max}\nfault_injection = {faults}\npark_deadline_ms = {park_deadline_ms}\nclock_watch = {clock_watch}\n\n[replication]\nnode_id = {id}\ndata_dir = \"{dir}\"\nlisten = \"{raft}\"\n\n[replication.timings]\nheartbeat_ms = 100\nelection_min_ms = 600\nelection_max_ms = 1200\nrpc_deadline_ms = 1000\nsnapshot_every_entries = 5000\nkeep_entries_after_snapshot = 1000\npropose_deadline_ms = {propose_deadline_ms}\n",
        api = node.api,
        http = node.http,
        id = node.id,
        dir = data_dir.join(format!("node-{}", node.id)).display(),
        raft = node.raft,
    );
    if let Some(bite) = &options.bite {
        text.insert_str(0, &format!("chaos_bite = \"{bite}\"\n"));
    }
    match &options.keys {
        Some(keys) => text.push_str(&keys.settings_text()),
        None => text.insert_str(0, "insecure_no_auth = true\n"),
    }
    if let Some(endpoint) = &options.otlp_endpoint {
        text.push_str(&format!("\n[telemetry]\notlp_endpoint = {endpoint:?}\n"));
    }
    if options.tls {
        text.push_str(&DevTls::settings_text(data_dir, node.id));
    }
    for other in all {
        text.push_str(&format!(
            "\n[[replication.nodes]]\nid = {}\nregion = {}\naddr = \"{}\"\napi = \"{}\"\nhttp = \"{}\"\n",
            other.id, other.region, other.raft, other.api, other.http
        ));
    }
    text
}

/// Writes `text` to `path`, readable by this user only (settings and key
/// files hold keys).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // A file that was there before keeps its mode through open: set it.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A client of the node at `address` that shows `keys`' key of `role`
/// (none without keys).
pub async fn connect_as(
    keys: Option<&DevKeys>,
    address: &str,
    role: Role,
) -> Result<Client, ClientError> {
    connect_over(keys, None, address, role).await
}

/// [`connect_as`], over TLS with `tls`.
async fn connect_over(
    keys: Option<&DevKeys>,
    tls: Option<&ClientTlsConfig>,
    address: &str,
    role: Role,
) -> Result<Client, ClientError> {
    let key = keys
        .map(|keys| keys.bearer(role))
        .transpose()
        .map_err(|error| ClientError::Connect {
            address: address.to_owned(),
            reason: error.to_string(),
        })?;
    let access = Access {
        deadline: CALL_TIMEOUT,
        key,
        tls: tls.cloned(),
    };
    Client::connect_with(address, access).await
}

/// A running dev cluster.
pub struct Cluster {
    pub nodes: Vec<DevNode>,
    /// The keys the nodes take, if authentication is on.
    pub keys: Option<DevKeys>,
    /// The cluster's TLS files and what its clients trust, if TLS is on.
    pub tls: Option<DevTls>,
    children: BTreeMap<u64, Child>,
    data_dir: PathBuf,
    exe: PathBuf,
}

/// Starts one node's process, its output appended to its log.
fn spawn(exe: &Path, node: &DevNode) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)?;
    let mut command = match node.launcher.split_first() {
        None => Command::new(exe),
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(exe);
            command
        }
    };
    // Each node's settings file says who it is and where it listens: the
    // overrides a container sets for its own node must not reach them.
    for name in [
        "LEDGER_NODE_ID",
        "LEDGER_NODE_NAME",
        "LEDGER_API_LISTEN",
        "LEDGER_HTTP_LISTEN",
        "LEDGER_RAFT_LISTEN",
        "LEDGER_DATA_DIR",
        "LEDGER_NODE_KEY",
    ] {
        command.env_remove(name);
    }
    command
        .arg("node")
        .arg("--config")
        .arg(&node.config)
        .arg("--exit-on-stdin-close")
        .stdin(std::process::Stdio::piped())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting node {}", node.id))
}

impl Cluster {
    /// Writes the settings, starts one `ledger node` process per node and
    /// waits until every group has a leader.
    pub async fn start(options: &DevOptions) -> anyhow::Result<Self> {
        Self::start_nodes(plan(options)?, options).await
    }

    /// Starts `nodes` as [`Cluster::start`] does its own plan: for a
    /// harness that chooses the nodes' addresses and launchers itself.
    pub async fn start_nodes(nodes: Vec<DevNode>, options: &DevOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&options.data_dir)
            .with_context(|| format!("creating {}", options.data_dir.display()))?;
        let exe = match &options.binary {
            Some(binary) => binary.clone(),
            None => std::env::current_exe().context("finding the ledger binary")?,
        };
        let tls = match options.tls {
            true => Some(DevTls::make(&options.data_dir, &nodes)?),
            false => None,
        };
        let mut children = BTreeMap::new();
        for node in &nodes {
            let settings = settings_text(node, &nodes, options);
            write_private(&node.config, &settings)?;
            children.insert(node.id, spawn(&exe, node)?);
        }
        let cluster = Self {
            nodes,
            keys: options.keys.clone(),
            tls,
            children,
            data_dir: options.data_dir.clone(),
            exe,
        };
        let mut cluster = cluster;
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        loop {
            self.none_exited()?;
            let waiting = self.waiting_for().await;
            if waiting.is_empty() {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the cluster is not ready after {READY_WAIT:?}: {}; see the logs in {}",
                waiting.join("; "),
                self.data_dir.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Fails, with the end of its log, when a node's process has ended
    /// (its settings refused, its port taken): waiting would not help.
    fn none_exited(&mut self) -> anyhow::Result<()> {
        for (id, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self
                    .nodes
                    .iter()
                    .find(|node| node.id == *id)
                    .and_then(|node| std::fs::read_to_string(&node.log).ok())
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                anyhow::bail!(
                    "node {id} exited ({status}) while starting:\n{}",
                    tail.join("\n")
                );
            }
        }
        Ok(())
    }

    /// What the cluster still waits for: a node that does not answer, a
    /// group without a leader or that a node has applied nothing of. Empty
    /// once every group has a leader and every node is in every group.
    async fn waiting_for(&self) -> Vec<String> {
        let mut waiting = Vec::new();
        for node in &self.nodes {
            let Ok(client) = self.connect(&node.api, Role::Operator).await else {
                waiting.push(format!("node {} does not answer", node.id));
                continue;
            };
            let Ok(status) = client.status().await else {
                waiting.push(format!("node {} gives no status", node.id));
                continue;
            };
            for group in &status.groups {
                if group.leader == 0 || group.applied_index == 0 {
                    waiting.push(format!(
                        "node {}: {} (leader {}, applied {})",
                        node.id, group.group, group.leader, group.applied_index
                    ));
                }
            }
            if status.groups.len() != usize::from(self.regions()) + 1 {
                waiting.push(format!(
                    "node {} runs {} groups",
                    node.id,
                    status.groups.len()
                ));
            }
        }
        waiting
    }

    fn regions(&self) -> u16 {
        self.nodes
            .iter()
            .map(|node| node.region)
            .max()
            .map_or(0, |max| max + 1)
    }

    /// A client of the node at `address` that shows the key of `role`
    /// (none, with authentication off).
    pub async fn connect(&self, address: &str, role: Role) -> Result<Client, ClientError> {
        let tls = self.tls.as_ref().map(|tls| &tls.client);
        connect_over(self.keys.as_ref(), tls, address, role).await
    }

    /// The ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        self.children.keys().copied().collect()
    }

    /// The API address of a node of `region`.
    pub fn api_of(&self, region: u16) -> Option<&str> {
        self.nodes
            .iter()
            .find(|node| node.region == region)
            .map(|node| node.api.as_str())
    }

    /// Cuts every node of `side` off from every node of `other`, both ways
    /// (the nodes must run with fault injection on).
    pub fn cut(&self, side: &[u64], other: &[u64]) -> anyhow::Result<()> {
        for node in &self.nodes {
            let blocked: Vec<u64> = if side.contains(&node.id) {
                other.to_vec()
            } else if other.contains(&node.id) {
                side.to_vec()
            } else {
                continue;
            };
            let text = blocked
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            let dir = self.data_dir.join(format!("node-{}", node.id));
            std::fs::create_dir_all(&dir)?;
            std::fs::write(ledger_replication::Faults::file(&dir), text)?;
        }
        Ok(())
    }

    /// Makes every append of `node` to its logs wait `delay` (zero ends it),
    /// as a stalled disk would.
    pub fn stall_disk(&self, node: u64, delay: std::time::Duration) -> anyhow::Result<()> {
        let dir = self.data_dir.join(format!("node-{node}"));
        std::fs::create_dir_all(&dir)?;
        let file = ledger_replication::Faults::append_delay_file(&dir);
        std::fs::write(file, delay.as_millis().to_string())?;
        Ok(())
    }

    /// Sets `node`'s clock `offset_ms` off the machine's (zero ends it), as
    /// a clock that was stepped or runs fast would be.
    pub fn skew_clock(&self, node: u64, offset_ms: i64) -> anyhow::Result<()> {
        self.clock_of(node)(offset_ms)
    }

    /// What sets `node`'s clock offset, for a task that moves it on its
    /// own ([`Cluster::skew_clock`]).
    pub fn clock_of(
        &self,
        node: u64,
    ) -> impl Fn(i64) -> anyhow::Result<()> + Send + Sync + 'static + use<> {
        let dir = self.data_dir.join(format!("node-{node}"));
        move |offset_ms| {
            std::fs::create_dir_all(&dir)?;
            let file = ledger_replication::Faults::clock_offset_file(&dir);
            std::fs::write(file, offset_ms.to_string())?;
            Ok(())
        }
    }

    /// Restores every link.
    pub fn heal(&self) -> anyhow::Result<()> {
        for node in &self.nodes {
            let file =
                ledger_replication::Faults::file(&self.data_dir.join(format!("node-{}", node.id)));
            if file.exists() {
                std::fs::write(file, "")?;
            }
        }
        Ok(())
    }

    /// Starts a killed node again on its data.
    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self
            .nodes
            .iter()
            .find(|node| node.id == id)
            .with_context(|| format!("no node {id}"))?;
        anyhow::ensure!(!self.children.contains_key(&id), "node {id} is running");
        let child = spawn(&self.exe, node)?;
        self.children.insert(id, child);
        Ok(())
    }

    /// The process id of running node `id`.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children.get(&id).and_then(Child::id)
    }

    /// Kills a node at once, as a crash would (kill -9).
    pub async fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(mut child) = self.children.remove(&id) {
            child.kill().await?;
        }
        Ok(())
    }

    /// Asks every node to stop (by closing its stdin) and waits for it.
    pub async fn stop(mut self) {
        for child in self.children.values_mut() {
            drop(child.stdin.take());
        }
        for (id, mut child) in std::mem::take(&mut self.children) {
            match tokio::time::timeout(STOP_WAIT, child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!("node {id} did not stop in {STOP_WAIT:?}; killing it");
                    let _ = child.kill().await;
                }
            }
        }
    }
}
