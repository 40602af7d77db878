//! The bank workload: clients in every region send random transfers
//! between the users, each an id of their own region (as a gateway near it
//! would), retry a transfer whose outcome is unknown with the same id, and
//! now and then read every account. Everything goes into the history.

use crate::bank::Bank;
use crate::cluster::{Cluster, RegionClient};
use crate::history::{Event, Outcome, Recorder, Transfer};
use crate::ops::{self, Fate, Op};
use crate::rng::Rng;
use ledger_node::auth::Role;
use ledger_node::client::{ClientError, Minter};
use ledger_proto::v1 as api;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub seconds: u64,
    pub clients_per_region: usize,
    /// The regions that get load; all when empty.
    pub regions: Vec<u32>,
    /// The largest amount of one transfer, in cents.
    pub max_cents: u64,
    /// A read of every account after this many transfers of a client.
    pub read_every: u64,
    /// Stop sending, before `seconds` are over, once this file exists.
    pub stop_file: Option<std::path::PathBuf>,
    /// Every this many acknowledged transfers, a client sends the same
    /// transfer again through the next region, as a gateway that failed
    /// over would (0: never). It must be answered as the same decision.
    pub resend_elsewhere_every: u64,
    /// What the clients' choices (accounts, amounts, ids) are drawn from:
    /// the run's seed on a fresh cluster, so that the seed gives the same
    /// calls; `None` for a random one (ids must differ run to run on a
    /// cluster that lives on).
    pub seed: Option<u64>,
}

impl RunOptions {
    fn stopped(&self) -> bool {
        self.stop_file.as_ref().is_some_and(|file| file.exists())
    }
}

/// What a run's calls came to, per region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub acknowledged: u64,
    pub refused: BTreeMap<String, u64>,
    pub not_sent: u64,
    pub unknown: u64,
    pub reads: u64,
    /// Transfers sent again through another region.
    pub resent: u64,
    /// Commands sent, by kind (`move`, `chained`, `hold`, ...).
    pub kinds: BTreeMap<&'static str, u64>,
    /// Operators' calls made (rebalances, pool policies).
    pub operator: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.acknowledged += other.acknowledged;
        for (code, count) in &other.refused {
            *self.refused.entry(code.clone()).or_default() += count;
        }
        self.not_sent += other.not_sent;
        self.unknown += other.unknown;
        self.reads += other.reads;
        self.resent += other.resent;
        for (kind, count) in &other.kinds {
            *self.kinds.entry(kind).or_default() += count;
        }
        self.operator += other.operator;
    }

    /// The commands sent by kind and the operators' calls, in words.
    pub fn kinds_line(&self) -> String {
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        format!(
            "commands {}; operators' calls {}",
            kinds.join(", "),
            self.operator
        )
    }

    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Ok { .. } => self.acknowledged += 1,
            Outcome::Refused { code } => *self.refused.entry(code.clone()).or_default() += 1,
            Outcome::NotSent { .. } => self.not_sent += 1,
            Outcome::Unknown { .. } => self.unknown += 1,
        }
    }
}

/// Mixed into every client's seed ("workload" in ASCII).
const WORKLOAD_SEED: u64 = 0x776f_726b_6c6f_6164;

/// Attempts of one transfer whose outcome stays unknown, at most.
const ATTEMPTS_MAX: usize = 3;

pub async fn run(
    cluster: &Cluster,
    bank: &Bank,
    options: &RunOptions,
    recorder: Arc<Recorder>,
) -> anyhow::Result<BTreeMap<u32, Counts>> {
    anyhow::ensure!(bank.users >= 2, "at least two users");
    let regions = if options.regions.is_empty() {
        cluster.regions()
    } else {
        options.regions.clone()
    };
    let plan = Plan {
        cluster,
        bank: *bank,
        options,
        recorder: &recorder,
        all: cluster.regions(),
        deadline: tokio::time::Instant::now() + Duration::from_secs(options.seconds),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for region in regions {
        let minter = cluster.minter(region)?;
        for index in 0..options.clients_per_region {
            plan.spawn_client(&mut tasks, region, minter, index);
        }
        for side in [Side::Operator, Side::StrongReader] {
            plan.spawn_side(&mut tasks, region, minter, side);
        }
    }
    let mut counts: BTreeMap<u32, Counts> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (region, region_counts) = done?;
        counts.entry(region).or_default().add(&region_counts);
    }
    Ok(counts)
}

/// What every task of a run is made from.
struct Plan<'a> {
    cluster: &'a Cluster,
    bank: Bank,
    options: &'a RunOptions,
    recorder: &'a Arc<Recorder>,
    /// Every region of the layout, in order.
    all: Vec<u32>,
    deadline: tokio::time::Instant,
}

type Tasks = tokio::task::JoinSet<(u32, Counts)>;

impl Plan<'_> {
    /// A task's seed: the run's (or, on a cluster that lives on, the
    /// recorder's nonce), the region's and the task's own `salt`. Apart
    /// from the seeds setup draws its top-up ids from (the same seed there
    /// gave a transfer a top-up's id: caught as one id acknowledged, then
    /// refused IDEMPOTENCY_CONFLICT).
    fn seed(&self, region: u32, salt: u64) -> u64 {
        let base = self.options.seed.unwrap_or_else(|| self.recorder.nonce()) ^ WORKLOAD_SEED;
        base ^ (u64::from(region) << 48) ^ salt
    }

    /// Client `index` of `region`, resending through the next region.
    fn spawn_client(&self, tasks: &mut Tasks, region: u32, minter: Minter, index: usize) {
        let all = &self.all;
        let next = all
            .iter()
            .position(|r| *r == region)
            .map(|at| all[(at + 1) % all.len()])
            .filter(|next| *next != region);
        let home = RegionClient::new(self.cluster, region, index, Role::Client);
        let elsewhere = next.map(|next| RegionClient::new(self.cluster, next, index, Role::Client));
        let (bank, options, recorder) = (self.bank, self.options.clone(), self.recorder.clone());
        let (seed, deadline) = (self.seed(region, index as u64), self.deadline);
        tasks.spawn(async move {
            let worker = Worker {
                home,
                elsewhere,
                minter,
                bank: &bank,
                users: bank.users(),
                options: &options,
                recorder: &recorder,
                rng: Rng::new(seed),
                counts: Counts::default(),
                holds: VecDeque::new(),
                resending: None,
            };
            (region, client_loop(worker, deadline).await)
        });
    }

    fn spawn_side(&self, tasks: &mut Tasks, region: u32, minter: Minter, side: Side) {
        let client = RegionClient::new(self.cluster, region, side as usize, Role::Operator);
        let (bank, options, recorder) = (self.bank, self.options.clone(), self.recorder.clone());
        let seed = self.seed(region, SIDE_SEED ^ side as u64);
        let (regions, deadline) = (self.all.clone(), self.deadline);
        tasks.spawn(async move {
            let mut rng = Rng::new(seed);
            let draw = ops::Draw {
                rng: &mut rng,
                users: &bank.users(),
                max_cents: options.max_cents,
                minter: &minter,
                bank,
            };
            let counts = side_loop(side, client, draw, &regions, &options, &recorder, deadline);
            (region, counts.await)
        });
    }
}

/// Calls made beside the clients' transfers, each by a task of its own per
/// region, so that a call that waits on another region (a strong read, a
/// pool policy through the control log) never holds transfers up.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// Rebalances (two in three) and pool policies.
    Operator,
    /// Strong reads of a few users in one call.
    StrongReader,
}

/// Mixed into a side task's seed ("side" in ASCII).
const SIDE_SEED: u64 = 0x7369_6465 << 16;

/// How often a side task calls.
const SIDE_EVERY: Duration = Duration::from_millis(250);

async fn side_loop(
    side: Side,
    mut client: RegionClient,
    mut draw: ops::Draw<'_>,
    regions: &[u32],
    options: &RunOptions,
    recorder: &Recorder,
    deadline: tokio::time::Instant,
) -> Counts {
    let mut counts = Counts::default();
    while tokio::time::Instant::now() < deadline && !options.stopped() {
        tokio::time::sleep(SIDE_EVERY).await;
        if options.stopped() {
            // Nothing after the stop: the final reads follow it.
            break;
        }
        match side {
            Side::Operator if draw.rng.below(3) < 2 => {
                ops::rebalance(&mut client, &mut draw, regions, recorder).await;
                counts.operator += 1;
            }
            Side::Operator => {
                ops::policy(&mut client, &mut draw, recorder).await;
                counts.operator += 1;
            }
            Side::StrongReader => {
                let ids = ops::some_users(&mut draw);
                if ops::read(&mut client, ids, true, true, recorder).await {
                    counts.reads += 1;
                }
            }
        }
    }
    counts
}

/// One client: its connections, its choices and what its calls came to.
struct Worker<'a> {
    home: RegionClient,
    elsewhere: Option<RegionClient>,
    minter: Minter,
    bank: &'a Bank,
    users: Vec<String>,
    options: &'a RunOptions,
    recorder: &'a Arc<Recorder>,
    rng: Rng,
    counts: Counts,
    /// Acknowledged holds to post or void, with when.
    holds: VecDeque<(Transfer, Fate, tokio::time::Instant)>,
    /// A transfer sent again through the next region, in flight: it holds
    /// that region's client until answered, and never holds this client
    /// up (a gateway's failover is not its other calls' business; a
    /// resend held until the heal once stopped a cut-off region's clients).
    resending: Option<tokio::task::JoinHandle<RegionClient>>,
}

async fn client_loop(mut worker: Worker<'_>, deadline: tokio::time::Instant) -> Counts {
    let mut sent = 0u64;
    while tokio::time::Instant::now() < deadline && !worker.options.stopped() {
        worker.resolve_due_holds().await;
        match ops::draw(&mut worker.rng) {
            Op::Move => worker.moving().await,
            Op::Chain => {
                let chain = worker.draw().chain();
                worker.call(&chain).await;
            }
            Op::Hold => worker.hold().await,
            Op::Withdrawal => {
                let withdrawal = worker.draw().withdrawal();
                worker.call(std::slice::from_ref(&withdrawal)).await;
            }
        }
        sent += 1;
        if sent.is_multiple_of(worker.options.read_every.max(1))
            && ops::read(
                &mut worker.home,
                worker.bank.all(),
                false,
                false,
                worker.recorder,
            )
            .await
        {
            worker.counts.reads += 1;
        }
    }
    if let Some(resending) = worker.resending.take() {
        // Its history lines are written before the run is checked.
        let _ = resending.await;
    }
    worker.counts
}

impl Worker<'_> {
    fn draw(&mut self) -> ops::Draw<'_> {
        self.parts().1
    }

    /// The client of its region and its choices, apart.
    fn parts(&mut self) -> (&mut RegionClient, ops::Draw<'_>) {
        let draw = ops::Draw {
            rng: &mut self.rng,
            users: &self.users,
            max_cents: self.options.max_cents,
            minter: &self.minter,
            bank: *self.bank,
        };
        (&mut self.home, draw)
    }

    /// A plain move; every so many acknowledged, sent again through the
    /// next region, as a gateway that failed over would.
    async fn moving(&mut self) {
        let transfer = self.draw().moving();
        let outcome = self.call(std::slice::from_ref(&transfer)).await.remove(0);
        if matches!(outcome, Outcome::Ok { .. })
            && self.options.resend_elsewhere_every > 0
            && self
                .counts
                .acknowledged
                .is_multiple_of(self.options.resend_elsewhere_every)
        {
            self.resend_elsewhere(transfer).await;
        }
    }

    /// Sends `transfer` again through the next region, in a task of its
    /// own; skipped while the last one is still unanswered.
    async fn resend_elsewhere(&mut self, transfer: Transfer) {
        if let Some(resending) = self.resending.take_if(|resending| resending.is_finished()) {
            // Finished: at once (none back if it panicked).
            self.elsewhere = resending.await.ok();
        }
        let Some(mut other) = self.elsewhere.take() else {
            return;
        };
        let recorder = Arc::clone(self.recorder);
        self.resending = Some(tokio::spawn(async move {
            send(&mut other, &recorder, std::slice::from_ref(&transfer)).await;
            other
        }));
        self.counts.resent += 1;
    }

    /// A hold; once acknowledged, its post or void is due a little later
    /// (or it is left to expire).
    async fn hold(&mut self) {
        let hold = self.draw().hold();
        let outcome = self.call(std::slice::from_ref(&hold)).await.remove(0);
        let (fate, after) = ops::fate(&mut self.rng);
        if matches!(outcome, Outcome::Ok { .. }) && fate != Fate::Expire {
            let due = tokio::time::Instant::now() + after;
            self.holds.push_back((hold, fate, due));
        }
    }

    async fn resolve_due_holds(&mut self) {
        while let Some((_, _, due)) = self.holds.front()
            && *due <= tokio::time::Instant::now()
        {
            let Some((hold, fate, _)) = self.holds.pop_front() else {
                break;
            };
            let id = self.draw().id();
            if let Some(resolution) = ops::resolution(&hold, fate, id) {
                self.call(std::slice::from_ref(&resolution)).await;
            }
        }
    }

    /// Sends `transfers` in one call, again with the same ids while any
    /// outcome is unknown (at most [`ATTEMPTS_MAX`] times), and counts the
    /// outcomes.
    async fn call(&mut self, transfers: &[Transfer]) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for attempt in 0..ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            outcomes = send(&mut self.home, self.recorder, transfers).await;
            if !outcomes
                .iter()
                .any(|o| matches!(o, Outcome::Unknown { .. }))
            {
                break;
            }
        }
        for (transfer, outcome) in transfers.iter().zip(&outcomes) {
            self.counts.count(outcome);
            *self.counts.kinds.entry(kind_name(transfer)).or_default() += 1;
        }
        if outcomes.iter().any(home_down) {
            // The region is down or electing: do not spin on it.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        outcomes
    }
}

/// Whether an outcome says the client's own region could not take the
/// call. `REGION_UNAVAILABLE` does not: the home node answered at once that
/// the region deciding the id is out of reach, and the next call (most
/// decided at home) goes through; waiting on it slowed every region while
/// any one was cut off.
fn home_down(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::NotSent { code } => code != "REGION_UNAVAILABLE",
        Outcome::Unknown { .. } => true,
        Outcome::Ok { .. } | Outcome::Refused { .. } => false,
    }
}

/// A command's kind as the counts name it.
fn kind_name(transfer: &Transfer) -> &'static str {
    match (&transfer.kind, &transfer.chain) {
        (crate::history::Kind::Move, Some(_)) => "chained",
        (kind, _) => kind.name(),
    }
}

/// Sends `transfers` in one call through `client`'s region, recording each
/// invocation and completion; one outcome per transfer, in order.
pub async fn send(
    client: &mut RegionClient,
    recorder: &Recorder,
    transfers: &[Transfer],
) -> Vec<Outcome> {
    let ops: Vec<String> = transfers.iter().map(|_| recorder.next_op()).collect();
    for (op, transfer) in ops.iter().zip(transfers) {
        recorder.record(op, client.region, Event::Invoke(transfer.clone()));
    }
    let commands = ops::commands(transfers);
    let answer = match client.get().await {
        Ok(connected) => connected.create_transfers(commands).await,
        Err(error) => Err(error),
    };
    let outcomes = outcomes(answer, transfers.len());
    if outcomes
        .iter()
        .any(|o| matches!(o, Outcome::NotSent { .. } | Outcome::Unknown { .. }))
    {
        client.reset();
    }
    for (op, outcome) in ops.iter().zip(&outcomes) {
        recorder.record(op, client.region, Event::Complete(outcome.clone()));
    }
    outcomes
}

/// The outcome of each of `count` commands from the call's answer.
pub fn outcomes(
    answer: Result<api::CreateTransfersResponse, ClientError>,
    count: usize,
) -> Vec<Outcome> {
    match answer {
        Ok(response) if response.results.len() == count => {
            response.results.iter().map(outcome_of).collect()
        }
        Ok(response) => vec![
            Outcome::Unknown {
                reason: format!("{} results for {count} commands", response.results.len()),
            };
            count
        ],
        // Nothing reached the node.
        Err(ClientError::Connect { reason, .. }) => vec![Outcome::NotSent { code: reason }; count],
        Err(error) => vec![
            Outcome::Unknown {
                reason: error.to_string(),
            };
            count
        ],
    }
}

/// Codes of refusals that say nothing was appended anywhere.
const NOT_SENT: &[&str] = &["NOT_LEADER", "REGION_UNAVAILABLE", "CLOCK_DRIFT"];
/// Codes of refusals decided by the region's leader beside the core's own
/// ([`ledger_reservations::Reject::CODES`]).
const DECIDED: &[&str] = &["PULL_TIMED_OUT"];

fn outcome_of(result: &api::TransferResult) -> Outcome {
    match &result.result {
        Some(api::transfer_result::Result::Applied(applied)) => Outcome::Ok {
            decided_by: applied.region,
            index: applied.index,
            new: applied.new,
        },
        Some(api::transfer_result::Result::Error(error)) => {
            let code = error.code.as_str();
            if ledger_reservations::Reject::CODES.contains(&code) || DECIDED.contains(&code) {
                Outcome::Refused { code: code.into() }
            } else if NOT_SENT.contains(&code) {
                Outcome::NotSent { code: code.into() }
            } else {
                Outcome::Unknown {
                    reason: format!("{code}: {}", error.message),
                }
            }
        }
        None => Outcome::Unknown {
            reason: "an empty result".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str) -> api::TransferResult {
        api::TransferResult {
            result: Some(api::transfer_result::Result::Error(api::Error {
                code: code.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn each_answer_has_the_outcome_it_means() {
        assert!(matches!(
            outcome_of(&error("INSUFFICIENT_FUNDS")),
            Outcome::Refused { .. }
        ));
        assert!(matches!(
            outcome_of(&error("PULL_TIMED_OUT")),
            Outcome::Refused { .. }
        ));
        assert!(matches!(
            outcome_of(&error("NOT_LEADER")),
            Outcome::NotSent { .. }
        ));
        assert!(matches!(
            outcome_of(&error("OUTCOME_UNKNOWN")),
            Outcome::Unknown { .. }
        ));
        assert!(matches!(
            outcome_of(&error("UNAVAILABLE")),
            Outcome::Unknown { .. }
        ));
        let broken = outcomes(Err(tonic_status_unavailable()), 2);
        assert_eq!(broken.len(), 2);
        assert!(broken.iter().all(|o| matches!(o, Outcome::Unknown { .. })));
        let short = outcomes(Ok(api::CreateTransfersResponse { results: vec![] }), 1);
        assert!(matches!(short[0], Outcome::Unknown { .. }));
    }

    fn tonic_status_unavailable() -> ClientError {
        ClientError::Status(tonic::Status::unavailable("connection reset"))
    }
}
