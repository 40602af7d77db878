//! The bank workload: clients in every region send random transfers
//! between the users, each an id of their own region (as a gateway near it
//! would), retry a transfer whose outcome is unknown with the same id, and
//! now and then read every account. Everything goes into the history.

use crate::bank::{Bank, CURRENCY};
use crate::cluster::{Cluster, RegionClient};
use crate::history::{AccountRead, Event, Outcome, Read, Recorder, Transfer};
use crate::rng::Rng;
use ledger_node::client::ClientError;
use ledger_proto::v1 as api;
use std::collections::BTreeMap;
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
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.acknowledged += other.acknowledged;
        for (code, count) in &other.refused {
            *self.refused.entry(code.clone()).or_default() += count;
        }
        self.not_sent += other.not_sent;
        self.unknown += other.unknown;
        self.reads += other.reads;
        self.resent += other.resent;
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(options.seconds);
    let all = cluster.regions();
    let mut clients = tokio::task::JoinSet::new();
    for region in regions {
        let minter = cluster.minter(region)?;
        let next = all
            .iter()
            .position(|r| *r == region)
            .map(|at| all[(at + 1) % all.len()])
            .filter(|next| *next != region);
        for index in 0..options.clients_per_region {
            let client = Clients {
                home: RegionClient::new(cluster, region, index),
                elsewhere: next.map(|next| RegionClient::new(cluster, next, index)),
            };
            let (bank, options, recorder) = (*bank, options.clone(), recorder.clone());
            // Apart from the seeds setup draws its top-up ids from (the
            // same seed there gave a transfer a top-up's id: caught as one
            // id acknowledged, then refused IDEMPOTENCY_CONFLICT).
            let base = options.seed.unwrap_or_else(|| recorder.nonce()) ^ WORKLOAD_SEED;
            let seed = base ^ (u64::from(region) << 48) ^ index as u64;
            clients.spawn(async move {
                let counts =
                    client_loop(client, minter, &bank, &options, &recorder, seed, deadline).await;
                (region, counts)
            });
        }
    }
    let mut counts: BTreeMap<u32, Counts> = BTreeMap::new();
    while let Some(done) = clients.join_next().await {
        let (region, region_counts) = done?;
        counts.entry(region).or_default().add(&region_counts);
    }
    Ok(counts)
}

/// A client's way into its own region, and into the next one for resends.
struct Clients {
    home: RegionClient,
    elsewhere: Option<RegionClient>,
}

async fn client_loop(
    clients: Clients,
    minter: ledger_node::client::Minter,
    bank: &Bank,
    options: &RunOptions,
    recorder: &Recorder,
    seed: u64,
    deadline: tokio::time::Instant,
) -> Counts {
    let Clients {
        home: mut client,
        mut elsewhere,
    } = clients;
    let users = bank.users();
    let mut rng = Rng::new(seed);
    let mut counts = Counts::default();
    let mut sent = 0u64;
    while tokio::time::Instant::now() < deadline && !options.stopped() {
        let debit = rng.below(users.len() as u64) as usize;
        let credit = (debit + 1 + rng.below(users.len() as u64 - 1) as usize) % users.len();
        let cents = 1 + rng.below(options.max_cents.max(1));
        let transfer = Transfer {
            id: minter.id(rng.next_u128()),
            debit: users[debit].clone(),
            credit: users[credit].clone(),
            amount: rust_decimal::Decimal::new(cents as i64, 2).to_string(),
        };
        let mut outcome = Outcome::Unknown {
            reason: "not sent".into(),
        };
        for attempt in 0..ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            outcome = send(&mut client, recorder, std::slice::from_ref(&transfer))
                .await
                .remove(0);
            if !matches!(outcome, Outcome::Unknown { .. }) {
                break;
            }
        }
        counts.count(&outcome);
        if matches!(outcome, Outcome::Ok { .. })
            && options.resend_elsewhere_every > 0
            && counts
                .acknowledged
                .is_multiple_of(options.resend_elsewhere_every)
            && let Some(other) = &mut elsewhere
        {
            send(other, recorder, std::slice::from_ref(&transfer)).await;
            counts.resent += 1;
        }
        if matches!(outcome, Outcome::NotSent { .. } | Outcome::Unknown { .. }) {
            // The region is down or electing: do not spin on it.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sent += 1;
        if sent.is_multiple_of(options.read_every.max(1)) && read(&mut client, bank, recorder).await
        {
            counts.reads += 1;
        }
    }
    counts
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
    let commands = transfers.iter().map(command).collect();
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

fn command(transfer: &Transfer) -> api::TransferCommand {
    api::TransferCommand {
        id: transfer.id.clone(),
        linked: false,
        kind: Some(api::transfer_command::Kind::Transfer(api::Move {
            debit: transfer.debit.clone(),
            credit: transfer.credit.clone(),
            amount: transfer.amount.clone(),
            currency: CURRENCY.into(),
            reference: String::new(),
            metadata: Default::default(),
        })),
    }
}

/// The outcome of each of `count` commands from the call's answer.
fn outcomes(
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

/// A plain read of every account through the client's node; false when it
/// did not answer (a node catching up says STALE_REPLICA).
async fn read(client: &mut RegionClient, bank: &Bank, recorder: &Recorder) -> bool {
    let Ok(connected) = client.get().await else {
        return false;
    };
    let Ok(response) = connected.lookup_accounts(bank.all()).await else {
        client.reset();
        return false;
    };
    // A read that lacks an account (the control log has not reached the
    // node yet) is not a read of the whole run: left out.
    if !response.missing.is_empty() {
        return false;
    }
    let read = Read {
        node: client.node(),
        accounts: response.accounts.iter().map(AccountRead::of).collect(),
    };
    recorder.record(&recorder.next_op(), client.region, Event::Read(read));
    true
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
