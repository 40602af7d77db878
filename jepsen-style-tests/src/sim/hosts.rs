//! The simulated machines: each node runs in a tokio runtime of its own,
//! single-threaded, its clock paused and its random choices seeded, and
//! every runtime of the simulation is moved on by the same tick in a fixed
//! order, on one thread. A crash drops the node's runtime, and with it
//! every task the node had, mid-step, as a power cut would; its disk keeps
//! what the crash leaves of it.

use super::disk::{Disk, Loss};
use super::net::Net;
use crate::rng::Rng;
use ledger_hlc::Clock;
use ledger_node::api::Api;
use ledger_node::auth::Auth;
use ledger_node::config::NodeSettings;
use ledger_node::runtime::{Actors, Grounds, open_replica, start_deciding};
use ledger_node::saga::SimulatedPayouts;
use ledger_replication::{Faults, Storage};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::runtime::{Builder, Handle, RngSeed, Runtime};

/// The simulation's wall clock: 2026-01-01 00:00 UTC plus the time
/// simulated. Every node reads it, set off by its own skew (its faults').
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    elapsed_ns: Arc<AtomicU64>,
}

/// 2026-01-01T00:00:00Z, in ns since the epoch.
const EPOCH_NS: u64 = 1_767_225_600 * 1_000_000_000;

impl SimClock {
    pub fn advance(&self, by: Duration) {
        self.elapsed_ns
            .fetch_add(by.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Time simulated so far.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_ns.load(Ordering::Relaxed))
    }
}

impl Clock for SimClock {
    fn now_ns(&self) -> u64 {
        EPOCH_NS + self.elapsed_ns.load(Ordering::Relaxed)
    }
}

/// A paused, seeded, single-threaded runtime.
pub fn runtime(seed: u64) -> std::io::Result<Runtime> {
    Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .rng_seed(RngSeed::from_bytes(&seed.to_le_bytes()))
        .build()
}

/// The APIs of the nodes up now, by node id, each with its node's runtime:
/// what the clients call. A call runs in the node's runtime, as a request
/// runs in the node's process, so that a crash ends it mid-way.
#[derive(Clone, Default)]
pub struct Directory(Arc<Mutex<BTreeMap<u64, (Api, Handle)>>>);

impl Directory {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, (Api, Handle)>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, node: u64) -> Option<(Api, Handle)> {
        self.lock().get(&node).cloned()
    }

    fn set(&self, node: u64, api: Option<(Api, Handle)>) {
        match api {
            Some(api) => self.lock().insert(node, api),
            None => self.lock().remove(&node),
        };
    }
}

/// One simulated machine.
pub struct Host {
    pub id: u64,
    pub region: u32,
    settings: NodeSettings,
    pub disk: Disk,
    /// Its clock's skew and its disk's stall.
    pub faults: Faults,
    runtime: Option<Runtime>,
    /// How its start ended, once it has: the actors are kept so that they
    /// live as long as the runtime.
    started: Arc<Mutex<Option<Result<Actors, String>>>>,
    incarnation: u64,
}

impl Host {
    pub fn new(id: u64, region: u32, settings: NodeSettings) -> Self {
        Self {
            id,
            region,
            settings,
            disk: Disk::default(),
            faults: Faults::default(),
            runtime: None,
            started: Arc::default(),
            incarnation: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.runtime.is_some()
    }

    /// Why its last start failed, if it did.
    pub fn start_failure(&self) -> Option<String> {
        match &*self.started.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(Err(why)) => Some(why.clone()),
            _ => None,
        }
    }

    /// Boots the node: a new runtime, the node's start spawned in it.
    pub fn boot(&mut self, seed: u64, net: &Net, clock: &SimClock, directory: &Directory) {
        self.incarnation += 1;
        let runtime = match runtime(seed ^ (self.id << 32) ^ self.incarnation) {
            Ok(runtime) => runtime,
            Err(error) => {
                *self.started.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Err(format!("no runtime: {error}")));
                return;
            }
        };
        let grounds = Grounds {
            transport: Arc::new(net.clone()),
            storage: Storage::Simulated(self.disk.attach()),
            faults: self.faults.clone(),
            clock: Arc::new(clock.clone()),
            payouts: Arc::new(SimulatedPayouts),
            auth: Arc::new(Auth::open()),
            peer_tls: None,
        };
        let (settings, net, directory) = (self.settings.clone(), net.clone(), directory.clone());
        let (started, id) = (self.started.clone(), self.id);
        *started.lock().unwrap_or_else(|p| p.into_inner()) = None;
        runtime.spawn(async move {
            let result = async {
                let replica = open_replica(&settings, &grounds).await?;
                net.attach(&replica);
                let (handle, actors) = start_deciding(settings, replica, grounds).await?;
                directory.set(id, Some((Api::new(handle), Handle::current())));
                anyhow::Ok(actors)
            }
            .await
            .map_err(|error| format!("{error:#}"));
            *started.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        });
        self.runtime = Some(runtime);
    }

    /// Cuts the power: the node's tasks are dropped where they stand, it
    /// leaves the network, and its disk loses what `loss` says.
    pub fn crash(
        &mut self,
        net: &Net,
        directory: &Directory,
        loss: Loss,
        rng: &mut Rng,
    ) -> (usize, usize, usize) {
        directory.set(self.id, None);
        net.detach(self.id);
        let what = self.disk.crash(loss, rng);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = None;
        what
    }

    /// Moves the node on by `tick`.
    pub fn step(&mut self, tick: Duration) {
        if let Some(runtime) = &self.runtime {
            runtime.block_on(async { tokio::time::sleep(tick).await });
        }
    }
}
