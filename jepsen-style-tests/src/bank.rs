//! The bank workload's accounts and their funding: a bank (EXTERNAL) and
//! users (USER) in one currency, each user funded in every region's pool,
//! so that every region can spend on its own when it is cut off.

use crate::cluster::{Cluster, RegionClient};
use crate::history::{Outcome, Recorder, Transfer};
use crate::rng::Rng;
use crate::workload::send;
use anyhow::Context;
use ledger_node::auth::Role;
use ledger_node::client::Minter;
use ledger_proto::v1 as api;
use std::time::Duration;

pub const CURRENCY: &str = "USD";

/// The accounts of a run, named by its seed: the same seed, the same ids.
#[derive(Debug, Clone, Copy)]
pub struct Bank {
    pub seed: u64,
    pub users: u32,
}

impl Bank {
    /// Account `n`: 0 is the bank, 1 to `users` the users.
    pub fn account(&self, n: u32) -> String {
        ledger_node::ids::format(
            (u128::from(self.seed) << 64) | (0x6a65_7073 << 32) | u128::from(n),
        )
    }

    pub fn bank(&self) -> String {
        self.account(0)
    }

    pub fn users(&self) -> Vec<String> {
        (1..=self.users).map(|n| self.account(n)).collect()
    }

    /// The bank first, then the users.
    pub fn all(&self) -> Vec<String> {
        (0..=self.users).map(|n| self.account(n)).collect()
    }

    /// The top-ups of every user by `funds` in `region`, each an id of
    /// that region named by the seed (the same every setup).
    pub fn top_ups(&self, region: u32, minter: Minter, funds: &str) -> Vec<Transfer> {
        let mut rng = Rng::new(self.seed ^ (u64::from(region) << 40));
        self.users()
            .into_iter()
            .map(|user| {
                let id = minter.id(rng.next_u128());
                Transfer::moving(id, self.bank(), user, funds.to_owned())
            })
            .collect()
    }

    pub fn new_accounts(&self) -> Vec<api::NewAccount> {
        let open = |n: u32, kind: api::AccountKind, owner: String| api::NewAccount {
            id: self.account(n),
            currency: CURRENCY.into(),
            kind: kind as i32,
            owner,
            metadata: Default::default(),
        };
        let mut accounts = vec![open(0, api::AccountKind::External, "jepsen bank".into())];
        accounts.extend(
            (1..=self.users).map(|n| open(n, api::AccountKind::User, format!("jepsen user {n}"))),
        );
        accounts
    }
}

/// How long setup keeps retrying (a leader being elected, the control log
/// reaching a region) before it gives up.
const SETUP_DEADLINE: Duration = Duration::from_secs(90);

/// Opens the accounts (again: a second setup finds them as they are) and
/// tops every user up by `funds` in every region's pool, each top-up an id
/// of that region named by the seed, so that a second setup applies none
/// twice. Every top-up is in the history.
pub async fn setup(
    cluster: &Cluster,
    bank: &Bank,
    funds: &str,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    open_accounts(cluster, bank).await?;
    for region in cluster.regions() {
        let mut pending = bank.top_ups(region, cluster.minter(region)?, funds);
        let mut client = RegionClient::new(cluster, region, 0, Role::Client);
        let deadline = tokio::time::Instant::now() + SETUP_DEADLINE;
        while !pending.is_empty() {
            let outcomes = send(&mut client, recorder, &pending).await;
            let mut left = Vec::new();
            for (transfer, outcome) in pending.into_iter().zip(outcomes) {
                if !matches!(outcome, Outcome::Ok { .. }) {
                    anyhow::ensure!(
                        tokio::time::Instant::now() < deadline,
                        "top-up {} in region {region} not applied: {outcome:?}",
                        transfer.id
                    );
                    left.push(transfer);
                }
            }
            pending = left;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    Ok(())
}

async fn open_accounts(cluster: &Cluster, bank: &Bank) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + SETUP_DEADLINE;
    let mut next = 0;
    loop {
        let node = &cluster.nodes()[next % cluster.nodes().len().max(1)];
        next += 1;
        let answer = async {
            crate::keys::connect(&node.api, Role::Client)
                .await?
                .create_accounts(bank.new_accounts())
                .await
        }
        .await;
        let refusals: Vec<String> = match answer {
            Ok(response) => response
                .results
                .iter()
                .filter_map(|result| match &result.result {
                    Some(api::account_result::Result::Created(_)) => None,
                    Some(api::account_result::Result::Error(error)) => {
                        Some(format!("{}: {}", error.code, error.message))
                    }
                    None => Some("no result".into()),
                })
                .collect(),
            Err(error) => vec![error.to_string()],
        };
        if refusals.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow::anyhow!(refusals.join("; ")))
                .context("the accounts could not be opened");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Bank;

    #[test]
    fn a_seed_names_its_accounts() {
        let bank = Bank { seed: 7, users: 3 };
        let all = bank.all();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0], bank.bank());
        assert_eq!(&all[1..], bank.users().as_slice());
        let mut distinct = all.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4);
        assert_ne!(Bank { seed: 8, users: 3 }.bank(), bank.bank());
        assert!(all.iter().all(|id| ledger_node::ids::parse(id).is_ok()));
    }
}
