//! `ledger pools`: an account's reservation pools, their policy, and moving
//! reservation between regions.

use super::account::account_json;
use super::{Column, Endpoint, Table, answer, print_change, print_json, refused};
use anyhow::Context;
use clap::Subcommand;
use ledger_proto::v1 as api;

#[derive(Subcommand)]
pub enum PoolsCommand {
    /// An account's pools in every region.
    Show {
        #[command(flatten)]
        endpoint: Endpoint,
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Sets an account's pool policy: every region keeps at least `floor`
    /// available, pulling from regions above theirs ("0" removes it).
    Policy {
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        account: String,
        #[arg(long)]
        floor: String,
        #[arg(long)]
        json: bool,
    },
    /// Moves reservation from the region of the node it is sent to.
    Rebalance {
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        account: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        to_region: u32,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: PoolsCommand) -> anyhow::Result<()> {
    match command {
        PoolsCommand::Show {
            endpoint,
            account,
            json,
        } => show(&endpoint, account, json).await,
        PoolsCommand::Policy {
            endpoint,
            account,
            floor,
            json,
        } => {
            let request = api::SetPoolPolicyRequest { account, floor };
            let response = endpoint.connect().await?.set_pool_policy(request).await?;
            print_change(response, json)
        }
        PoolsCommand::Rebalance {
            endpoint,
            account,
            amount,
            to_region,
            json,
        } => {
            let request = api::RebalanceRequest {
                account,
                amount,
                to_region,
            };
            rebalance(&endpoint, request, json).await
        }
    }
}

const POOLS: Table = Table(&[
    Column::left("region", 7),
    Column::right("available", 14),
    Column::right("held", 14),
]);

async fn show(endpoint: &Endpoint, account: String, json: bool) -> anyhow::Result<()> {
    let response = endpoint
        .connect()
        .await?
        .lookup_accounts(vec![account])
        .await?;
    let view = response.accounts.first().context("unknown account")?;
    if json {
        return print_json(&account_json(view));
    }
    POOLS.print_header();
    for region in &view.regions {
        POOLS.print_row(&[&region.region, &region.available, &region.held]);
    }
    println!("in flight between regions: {}", view.in_flight);
    if !view.pool_floor.is_empty() {
        println!("pool policy: keep {} in every region", view.pool_floor);
    }
    Ok(())
}

async fn rebalance(
    endpoint: &Endpoint,
    request: api::RebalanceRequest,
    json: bool,
) -> anyhow::Result<()> {
    use api::rebalance_response::Result as Released;
    let response = endpoint.connect().await?.rebalance(request).await?;
    let applied = answer(response.result.map(|result| match result {
        Released::Applied(applied) => Ok(applied),
        Released::Error(error) => Err(refused(&error)),
    }))?;
    if json {
        return print_json(
            &serde_json::json!({ "region": applied.region, "index": applied.index }),
        );
    }
    println!(
        "released from region {} at index {}",
        applied.region, applied.index
    );
    Ok(())
}
