//! The simulation's clients: the bank workload's accounts, draws and
//! commands (`bank`, `ops`), sent to the nodes' own API handlers in
//! process, each call's answer classified as the chaos suite classifies
//! it (`workload::outcomes`) and written to the same history. A client
//! keeps to its region's nodes, follows a refusal that names the leader,
//! and retries a transfer whose outcome is unknown under the same id.

use super::hosts::{Directory, SimClock};
use crate::bank::Bank;
use crate::history::{Entry, Event, Kind, Outcome, Transfer};
use crate::observe::{Finals, Found, NodeFinal};
use crate::ops::{self, Draw, Fate, Op};
use crate::rng::Rng;
use ledger_node::api::Api;
use ledger_node::client::{ClientError, Minter, applied_by_region};
use ledger_proto::v1 as api;
use ledger_proto::v1::ledger_server::Ledger;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::Request;

/// How long a client waits for an answer before it counts the call's
/// outcome unknown.
const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// Attempts of one transfer whose outcome stays unknown, at most.
const ATTEMPTS_MAX: usize = 3;
/// One call in this many is bulky ([`Bulk::Full`]), of 16 to 32 moves.
const BULKY_ONE_IN: u64 = 400;

/// The history as it is written, in memory.
#[derive(Clone)]
pub struct Recorder {
    clock: SimClock,
    entries: Arc<Mutex<Vec<Entry>>>,
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl Recorder {
    pub fn new(clock: SimClock) -> Self {
        Self {
            clock,
            entries: Arc::default(),
            count: Arc::default(),
        }
    }

    /// The clock it stamps its lines with.
    pub fn clock(&self) -> SimClock {
        self.clock.clone()
    }

    /// Simulated time, in ns, as the history's times.
    pub fn now_ns(&self) -> u128 {
        self.clock.elapsed().as_nanos()
    }

    fn next_op(&self) -> String {
        let n = self
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("sim-{n}")
    }

    fn record(&self, op: &str, region: u32, event: Event) {
        let entry = Entry {
            op: op.to_owned(),
            time_ns: self.now_ns(),
            region,
            event,
        };
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(entry);
    }

    /// Every entry so far, in the order written.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// The nodes' APIs as the clients reach them.
#[derive(Clone)]
pub struct Gateway {
    pub directory: Directory,
    /// Every node: its id, region and API address (what a redirect names).
    pub nodes: Vec<(u64, u32, String)>,
}

impl Gateway {
    /// Runs `call` on `node`'s API in the node's runtime; a node down, or
    /// one that goes down before it answers, is a failure on the way.
    async fn call<T, F, Fut>(&self, node: u64, call: F) -> Result<T, ClientError>
    where
        T: Send + 'static,
        F: FnOnce(Api) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
    {
        let Some((api, runtime)) = self.directory.get(node) else {
            return Err(ClientError::Connect {
                address: format!("node {node}"),
                reason: "down".into(),
            });
        };
        let running = runtime.spawn(call(api));
        match tokio::time::timeout(CALL_DEADLINE, running).await {
            Ok(Ok(Ok(response))) => Ok(response.into_inner()),
            Ok(Ok(Err(status))) => Err(ClientError::Status(status)),
            Ok(Err(_)) => Err(ClientError::Status(tonic::Status::unavailable(
                "the node went down before it answered",
            ))),
            Err(_) => Err(ClientError::Status(tonic::Status::deadline_exceeded(
                "no answer in time",
            ))),
        }
    }

    fn nodes_of(&self, region: u32) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, of, _)| *of == region)
            .map(|(id, _, _)| *id)
            .collect()
    }

    fn node_at(&self, address: &str) -> Option<u64> {
        self.nodes
            .iter()
            .find(|(_, _, api)| api == address)
            .map(|(id, _, _)| *id)
    }

    pub async fn create_transfers(
        &self,
        node: u64,
        commands: Vec<api::TransferCommand>,
    ) -> Result<api::CreateTransfersResponse, ClientError> {
        let request = Request::new(api::CreateTransfersRequest { commands });
        self.call(
            node,
            |api| async move { api.create_transfers(request).await },
        )
        .await
    }

    pub async fn create_accounts(
        &self,
        node: u64,
        accounts: Vec<api::NewAccount>,
    ) -> Result<api::CreateAccountsResponse, ClientError> {
        let request = Request::new(api::CreateAccountsRequest { accounts });
        self.call(
            node,
            |api| async move { api.create_accounts(request).await },
        )
        .await
    }

    /// A node's view of `ids` and of the history's transfers `transfers`.
    pub async fn view(
        &self,
        node: u64,
        ids: &[String],
        transfers: &[String],
    ) -> Result<NodeFinal, String> {
        let request = Request::new(api::LookupAccountsRequest {
            ids: ids.to_vec(),
            strong: false,
        });
        let accounts = self
            .call(
                node,
                |api| async move { api.lookup_accounts(request).await },
            )
            .await
            .map_err(|error| format!("node {node}: {error}"))?;
        if !accounts.missing.is_empty() {
            return Err(format!("node {node} lacks {:?}", accounts.missing));
        }
        let request = Request::new(api::LookupTransfersRequest {
            ids: transfers.to_vec(),
            strong: false,
        });
        let found = self
            .call(
                node,
                |api| async move { api.lookup_transfers(request).await },
            )
            .await
            .map_err(|error| format!("node {node}: {error}"))?;
        Ok(NodeFinal {
            node,
            accounts: accounts
                .accounts
                .iter()
                .map(crate::history::AccountRead::of)
                .collect(),
            applied: applied_by_region(&accounts.watermarks),
            found: found
                .transfers
                .into_iter()
                .map(|transfer| (transfer.id.clone(), Found::of(transfer)))
                .collect(),
        })
    }

    /// Every node's view, the first answering node's movements of
    /// `users`, and whether the views agree.
    pub async fn finals(
        &self,
        ids: &[String],
        users: &[String],
        transfers: &[String],
        read_ns: u128,
    ) -> Finals {
        let mut views = Vec::new();
        for (node, _, _) in &self.nodes {
            views.push(self.view(*node, ids, transfers).await);
        }
        let difference = crate::observe::difference(&views);
        let mut nodes = Vec::new();
        let mut absent = Vec::new();
        for ((node, _, _), view) in self.nodes.iter().zip(views) {
            match view {
                Ok(view) => nodes.push(view),
                Err(why) => absent.push((*node, why)),
            }
        }
        let movements = match nodes.first() {
            Some(first) => self.movements(first.node, users).await,
            None => Err("no node gave a final view".to_owned()),
        };
        Finals {
            nodes,
            absent,
            converged: difference.is_empty(),
            difference,
            movements,
            read_ns,
        }
    }

    async fn movements(
        &self,
        node: u64,
        users: &[String],
    ) -> Result<BTreeMap<String, Vec<crate::observe::Movement>>, String> {
        let mut all = BTreeMap::new();
        for user in users {
            let request = Request::new(api::AccountHistoryRequest {
                account: user.clone(),
                limit: 10_000,
                ..Default::default()
            });
            let page = self
                .call(
                    node,
                    |api| async move { api.account_history(request).await },
                )
                .await
                .map_err(|error| error.to_string())?;
            if page.truncated {
                return Err(format!("{user}: more than one page of movements"));
            }
            let mut movements: Vec<_> = page.entries.iter().map(crate::observe::movement).collect();
            movements.sort_by_key(|movement| movement.stamp);
            all.insert(user.clone(), movements);
        }
        Ok(all)
    }
}

/// A client of one region.
pub struct Client {
    pub region: u32,
    gateway: Gateway,
    recorder: Recorder,
    /// The node it sends to: the leader as last named, else the next one.
    node: u64,
    next: usize,
}

impl Client {
    pub fn new(region: u32, gateway: Gateway, recorder: Recorder, start: usize) -> Self {
        let nodes = gateway.nodes_of(region);
        let node = nodes.get(start % nodes.len().max(1)).copied().unwrap_or(0);
        Self {
            region,
            gateway,
            recorder,
            node,
            next: start,
        }
    }

    /// Moves to the node a refusal names, or to the region's next one.
    fn follow(&mut self, outcomes: &[Outcome], redirect: Option<&str>) {
        let lost = outcomes
            .iter()
            .any(|o| matches!(o, Outcome::NotSent { .. } | Outcome::Unknown { .. }));
        if !lost {
            return;
        }
        if let Some(node) = redirect.and_then(|address| self.gateway.node_at(address)) {
            self.node = node;
            return;
        }
        let nodes = self.gateway.nodes_of(self.region);
        self.next += 1;
        self.node = nodes
            .get(self.next % nodes.len().max(1))
            .copied()
            .unwrap_or(0);
    }

    /// Sends `transfers` in one call, each invocation and completion
    /// written to the history; one outcome per transfer. A bulky call's
    /// transfers carry a full reference and metadata.
    pub async fn send(&mut self, transfers: &[Transfer], bulk: Bulk) -> Vec<Outcome> {
        let ops: Vec<String> = transfers.iter().map(|_| self.recorder.next_op()).collect();
        for (op, transfer) in ops.iter().zip(transfers) {
            self.recorder
                .record(op, self.region, Event::Invoke(transfer.clone()));
        }
        let mut commands = ops::commands(transfers);
        if bulk == Bulk::Full {
            commands.iter_mut().for_each(fill);
        }
        let answer = self.gateway.create_transfers(self.node, commands).await;
        let redirect = answer.as_ref().ok().and_then(|response| {
            response
                .results
                .iter()
                .find_map(|result| match &result.result {
                    Some(api::transfer_result::Result::Error(error))
                        if !error.redirect.is_empty() =>
                    {
                        Some(error.redirect.clone())
                    }
                    _ => None,
                })
        });
        let outcomes = crate::workload::outcomes(answer, transfers.len());
        self.follow(&outcomes, redirect.as_deref());
        for (op, outcome) in ops.iter().zip(&outcomes) {
            self.recorder
                .record(op, self.region, Event::Complete(outcome.clone()));
        }
        outcomes
    }

    /// Sends `transfers` until each is decided or was tried
    /// [`ATTEMPTS_MAX`] times with its outcome unknown; a transfer never
    /// sent is sent again too (nothing of it was appended).
    pub async fn settle(
        &mut self,
        mut transfers: Vec<Transfer>,
        bulk: Bulk,
    ) -> Vec<(Transfer, Outcome)> {
        let mut settled = Vec::new();
        for attempt in 1..=ATTEMPTS_MAX {
            let outcomes = self.send(&transfers, bulk).await;
            let mut again = Vec::new();
            for (transfer, outcome) in transfers.into_iter().zip(outcomes) {
                match outcome {
                    Outcome::NotSent { .. } | Outcome::Unknown { .. } if attempt < ATTEMPTS_MAX => {
                        again.push(transfer)
                    }
                    outcome => settled.push((transfer, outcome)),
                }
            }
            if again.is_empty() {
                break;
            }
            transfers = again;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        settled
    }
}

/// What a call's transfers carry besides their moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bulk {
    Bare,
    /// A reference and metadata as large as the API takes (about 32 KB a
    /// transfer): what a gateway that attaches invoices sends. The entries
    /// they fill take seconds to cross a slow link (audit finding 9).
    Full,
}

/// Gives a move a reference and metadata as large as the API takes.
fn fill(command: &mut api::TransferCommand) {
    use api::transfer_command::Kind as Command;
    let moving = match &mut command.kind {
        Some(Command::Transfer(moving)) => moving,
        Some(Command::Pending(api::Hold {
            transfer: Some(moving),
            ..
        })) => moving,
        _ => return,
    };
    moving.reference = "r".repeat(ledger_reservations::REFERENCE_BYTES_MAX);
    moving.metadata = (0..ledger_reservations::METADATA_ENTRIES_MAX)
        .map(|at| {
            let value = "m".repeat(ledger_reservations::METADATA_VALUE_BYTES_MAX);
            (format!("invoice-line-{at:02}"), value)
        })
        .collect();
}

/// A minter of ids of `region`, of a layout of `regions`.
pub fn minter(regions: &[u32], region: u32) -> Option<Minter> {
    let status = api::ClusterStatusResponse {
        nodes: regions
            .iter()
            .map(|region| api::NodeInfo {
                region: *region,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    Minter::of_region(&status, region)
}

/// One client's loop until `until` (simulated time): moves, chains and
/// holds (posted, voided or left to expire) of the bank's users.
pub async fn work(
    mut client: Client,
    bank: Bank,
    minter: Minter,
    seed: u64,
    until: tokio::time::Instant,
) {
    let mut rng = Rng::new(seed);
    // Its own draws, so that bulky calls leave the others' sequence alone.
    let mut bulk_rng = Rng::new(seed ^ 0x0062_756c_6b79);
    let users = bank.users();
    let mut holds: Vec<(Transfer, Fate, tokio::time::Instant)> = Vec::new();
    while tokio::time::Instant::now() < until {
        let mut resolve_rng = Rng::new(rng.next_u64());
        let now = tokio::time::Instant::now();
        if let Some(at) = holds.iter().position(|(_, _, due)| *due <= now) {
            let (hold, fate, _) = holds.swap_remove(at);
            let id = minter.id(resolve_rng.next_u128());
            if let Some(resolution) = ops::resolution(&hold, fate, id) {
                client.settle(vec![resolution], Bulk::Bare).await;
            }
            continue;
        }
        let mut draw = Draw {
            rng: &mut rng,
            users: &users,
            max_cents: 2_000,
            minter: &minter,
            bank,
        };
        // Now and then a call of many transfers with full metadata.
        if bulk_rng.below(BULKY_ONE_IN) == 0 {
            let count = 16 + draw.rng.below(17);
            let transfers = (0..count).map(|_| draw.moving()).collect();
            client.settle(transfers, Bulk::Full).await;
            continue;
        }
        let transfers = match ops::draw(draw.rng) {
            Op::Chain => draw.chain(),
            Op::Hold => vec![draw.hold()],
            // A gateway that batches its retries sends a transfer twice in
            // one call now and then (audit finding 2's trigger).
            Op::Move | Op::Withdrawal if draw.rng.below(40) == 0 => {
                let moving = draw.moving();
                vec![moving.clone(), moving]
            }
            Op::Move | Op::Withdrawal => vec![draw.moving()],
        };
        for (transfer, outcome) in client.settle(transfers, Bulk::Bare).await {
            if matches!(transfer.kind, Kind::Hold { .. }) && matches!(outcome, Outcome::Ok { .. }) {
                let (fate, after) = ops::fate(&mut rng);
                holds.push((transfer, fate, tokio::time::Instant::now() + after));
            }
        }
        tokio::time::sleep(Duration::from_millis(5 + rng.below(45))).await;
    }
}

/// Opens the bank's accounts and tops every user up by `funds` in every
/// region, retrying until done or `until`; false if it could not.
pub async fn setup(
    gateway: &Gateway,
    recorder: &Recorder,
    bank: &Bank,
    regions: &[u32],
    funds: &str,
    until: tokio::time::Instant,
) -> Result<(), String> {
    let mut next = 0;
    loop {
        let (node, _, _) = gateway.nodes[next % gateway.nodes.len()];
        next += 1;
        let answer = gateway.create_accounts(node, bank.new_accounts()).await;
        let done = answer.as_ref().is_ok_and(|response| {
            response.results.iter().all(|result| {
                matches!(result.result, Some(api::account_result::Result::Created(_)))
            })
        });
        if done {
            break;
        }
        if tokio::time::Instant::now() >= until {
            return Err(format!("the accounts were not opened: {answer:?}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for region in regions {
        let minter = minter(regions, *region).ok_or("a region not in the layout")?;
        let mut pending = bank.top_ups(*region, minter, funds);
        let mut client = Client::new(*region, gateway.clone(), recorder.clone(), 0);
        while !pending.is_empty() {
            let outcomes = client.send(&pending, Bulk::Bare).await;
            pending = pending
                .into_iter()
                .zip(outcomes)
                .filter(|(_, outcome)| !matches!(outcome, Outcome::Ok { .. }))
                .map(|(transfer, _)| transfer)
                .collect();
            if tokio::time::Instant::now() >= until && !pending.is_empty() {
                return Err(format!(
                    "{} top-ups of region {region} not applied",
                    pending.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(())
}

/// A hostile client on accounts of its own, which no checker reads: it
/// sends at the same moment, in calls of their own, a transfer and a void
/// that share an id (two deciders take the id at once: one of them is
/// dropped) and a spend that the void's money must fund. Admission must drop the spend
/// with the void; a writer that admits it (audit finding 5) puts an
/// overdraft in the log, and the region stops. Its calls are not in the
/// history.
pub struct Prober {
    pub client: Client,
    /// The race's second and third connections.
    pub beside: Client,
    pub after: Client,
    /// Its accounts: 0 funds the others; 1 holds, voids and spends; 2
    /// takes the id first; 3 is paid.
    pub accounts: Bank,
    pub minter: Minter,
    pub rng: Rng,
}

impl Prober {
    fn moving(&mut self, debit: u32, credit: u32, amount: &str) -> Transfer {
        let id = self.minter.id(self.rng.next_u128());
        let (debit, credit) = (self.accounts.account(debit), self.accounts.account(credit));
        Transfer::moving(id, debit, credit, amount.to_owned())
    }

    /// One round: a top-up of 5.00 held whole, then the race.
    async fn round(&mut self) {
        let top_up = self.moving(0, 1, "5.00");
        let mut hold = self.moving(1, 3, "5.00");
        hold.kind = Kind::Hold { timeout_ms: 60_000 };
        for transfer in [top_up, hold.clone()] {
            let outcome = self
                .client
                .send(std::slice::from_ref(&transfer), Bulk::Bare)
                .await;
            if !matches!(outcome[0], Outcome::Ok { .. }) {
                return;
            }
        }
        let taken = self.moving(2, 3, "0.01");
        let void = Transfer {
            kind: Kind::Void {
                pending: hold.id.clone(),
            },
            ..Transfer::moving(
                taken.id.clone(),
                hold.debit.clone(),
                hold.credit,
                hold.amount,
            )
        };
        let spend = self.moving(1, 3, "5.00");
        // The spend a moment after the void, in a call of its own: decided
        // over the void in flight, a submission of its own.
        tokio::join!(
            self.client.send(std::slice::from_ref(&taken), Bulk::Bare),
            self.beside.send(std::slice::from_ref(&void), Bulk::Bare),
            async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                self.after
                    .send(std::slice::from_ref(&spend), Bulk::Bare)
                    .await
            }
        );
    }

    pub async fn run(mut self, until: tokio::time::Instant) {
        while tokio::time::Instant::now() < until {
            self.round().await;
            tokio::time::sleep(Duration::from_millis(100 + self.rng.below(400))).await;
        }
    }
}
