//! The demonstration `ledger dev --demo` runs through the public API:
//! accounts, top-ups and transfers in every region, a payment with capture,
//! a refund, a refused over-spend, and a rebalance between regions.

use crate::auth::Role;
use crate::client::{Client, ClientError};
use crate::dev::Cluster;
use crate::ids;
use anyhow::Context;
use ledger_proto::v1 as api;
use std::time::Duration;

const USD: &str = "USD";

fn id(n: u128) -> String {
    ids::format(0xDE00_0000_0000_0000_0000_0000_0000_0000 | n)
}

fn account(n: u128, kind: api::AccountKind, owner: &str) -> api::NewAccount {
    api::NewAccount {
        id: id(n),
        currency: USD.into(),
        kind: kind as i32,
        owner: owner.into(),
        metadata: Default::default(),
    }
}

fn movement(debit: u128, credit: u128, amount: &str, reference: &str) -> api::Move {
    api::Move {
        debit: id(debit),
        credit: id(credit),
        amount: amount.into(),
        currency: USD.into(),
        reference: reference.into(),
        metadata: Default::default(),
    }
}

/// The region that decides transfer `n` of the demonstration: the one it is
/// sent to first.
fn region_of(n: u128) -> u128 {
    match n {
        2 | 5 | 10 | 11 => 1,
        3 | 6 | 12 => 2,
        _ => 0,
    }
}

/// The id of transfer `n`: its high half names its region (decision 0009;
/// with fewer regions, the high half modulo their number).
fn transfer_id(n: u128) -> String {
    ids::format((region_of(n) << 64) | 0xDE00_0000_0000_1000 | n)
}

fn command(transfer: u128, kind: api::transfer_command::Kind) -> api::TransferCommand {
    api::TransferCommand {
        id: transfer_id(transfer),
        linked: false,
        kind: Some(kind),
    }
}

const BANK: u128 = 1;
const SHOP: u128 = 2;
const ALICE: u128 = 10;
const BOB: u128 = 11;
const CAROL: u128 = 12;

fn describe(result: &api::TransferResult) -> String {
    match &result.result {
        Some(api::transfer_result::Result::Applied(done)) => applied(done),
        Some(api::transfer_result::Result::Error(error)) => refusal(error),
        None => "no answer".to_owned(),
    }
}

fn applied(applied: &api::Applied) -> String {
    if applied.new {
        format!(
            "committed in region {} at index {}",
            applied.region, applied.index
        )
    } else {
        format!(
            "already applied in region {} (idempotent retry)",
            applied.region
        )
    }
}

/// The message of a refusal already says what is available where.
fn refusal(error: &api::Error) -> String {
    format!("refused: {}: {}", error.code, error.message)
}

fn describe_account(account: &api::NewAccount, result: &api::AccountResult) -> String {
    match &result.result {
        Some(api::account_result::Result::Created(true)) => {
            format!("account {} created", account.id)
        }
        Some(api::account_result::Result::Created(false)) => {
            format!(
                "account {} already exists with the same content",
                account.id
            )
        }
        Some(api::account_result::Result::Error(error)) => refusal(error),
        None => "no answer".to_owned(),
    }
}

fn describe_release(response: &api::RebalanceResponse) -> String {
    match &response.result {
        Some(api::rebalance_response::Result::Applied(done)) => applied(done),
        Some(api::rebalance_response::Result::Error(error)) => refusal(error),
        None => "no answer".to_owned(),
    }
}

async fn run(
    client: &Client,
    what: &str,
    commands: Vec<api::TransferCommand>,
) -> Result<(), ClientError> {
    let response = client.create_transfers(commands).await?;
    for result in &response.results {
        println!("  {what:<46} {}", describe(result));
    }
    Ok(())
}

/// Waits (a few seconds at most) until `client`'s node has applied the given
/// transfers, wherever they were decided: replicas lag by a few
/// milliseconds.
async fn caught_up(client: &Client, transfers: &[u128]) -> Result<(), ClientError> {
    let ids: Vec<String> = transfers.iter().map(|n| transfer_id(*n)).collect();
    for _ in 0..50 {
        if client
            .lookup_transfers(ids.clone())
            .await?
            .missing
            .is_empty()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  (node {} has not applied every transfer yet)",
        client.address()
    );
    Ok(())
}

async fn balances(client: &Client, title: &str) -> Result<(), ClientError> {
    let names = [
        (ALICE, "alice"),
        (BOB, "bob"),
        (CAROL, "carol"),
        (SHOP, "shop"),
        (BANK, "bank"),
    ];
    let response = client
        .lookup_accounts(names.iter().map(|(n, _)| id(*n)).collect())
        .await?;
    println!("\n{title} (as node {} sees them)", client.address());
    println!(
        "  {:<8} {:>12} {:>12}  per region (available / held)",
        "account", "total", "in flight"
    );
    for ((_, name), view) in names.iter().zip(&response.accounts) {
        let regions: Vec<String> = view
            .regions
            .iter()
            .map(|region| format!("r{} {}/{}", region.region, region.available, region.held))
            .collect();
        println!(
            "  {name:<8} {:>12} {:>12}  {}",
            view.total,
            view.in_flight,
            regions.join("  ")
        );
    }
    Ok(())
}

pub async fn run_demo(cluster: &Cluster) -> anyhow::Result<()> {
    let first = cluster.api_of(0).context("region 0")?;
    let r0 = cluster.connect(first, Role::Client).await?;
    let r1 = cluster
        .connect(cluster.api_of(1).unwrap_or(first), Role::Client)
        .await?;
    let r2 = cluster
        .connect(cluster.api_of(2).unwrap_or(first), Role::Client)
        .await?;
    let operator = cluster.connect(first, Role::Operator).await?;
    open_accounts(&r0).await?;
    transfers_in_every_region(&r0, &r1, &r2).await?;
    payment(&r0).await?;

    println!("\n== spending more than the region holds");
    let too_much = pay(10, BOB, ALICE, "500.00", "too much");
    run(&r1, "region 1: bob -> alice 500.00", vec![too_much]).await?;
    caught_up(&r1, &[3, 6, 9]).await?;
    balances(&r1, "balances").await?;

    rebalance_and_pull(&operator, &r1, &r2).await?;
    caught_up(&r2, &[9, 11, 12]).await?;
    balances(&r2, "balances after the rebalance and the pull").await?;

    history(&r0).await?;
    println!(
        "\nEvery node holds every region's log: the two tables were read from different nodes,\n\
         each once it had applied the transfers above, and every currency still sums to zero."
    );
    Ok(())
}

/// Transfer `n` of the demonstration: a plain move.
fn pay(n: u128, debit: u128, credit: u128, amount: &str, reference: &str) -> api::TransferCommand {
    let kind = api::transfer_command::Kind::Transfer(movement(debit, credit, amount, reference));
    command(n, kind)
}

async fn open_accounts(r0: &Client) -> anyhow::Result<()> {
    println!("\n== accounts (global control log)");
    let accounts = vec![
        account(BANK, api::AccountKind::External, "the bank"),
        account(SHOP, api::AccountKind::System, "shop revenue"),
        account(ALICE, api::AccountKind::User, "alice"),
        account(BOB, api::AccountKind::User, "bob"),
        account(CAROL, api::AccountKind::User, "carol"),
    ];
    let created = r0.create_accounts(accounts.clone()).await?;
    for (account, result) in accounts.iter().zip(&created.results) {
        let outcome = describe_account(account, result);
        println!("  {:<14} {outcome}", account.owner);
    }
    // Every region learns of the accounts from the control log.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

async fn transfers_in_every_region(r0: &Client, r1: &Client, r2: &Client) -> anyhow::Result<()> {
    println!("\n== top-ups, one in each region");
    let top_up = |n, to, amount| vec![pay(n, BANK, to, amount, "top-up")];
    run(
        r0,
        "region 0: bank -> alice 100.00",
        top_up(1, ALICE, "100.00"),
    )
    .await?;
    run(r1, "region 1: bank -> bob 80.00", top_up(2, BOB, "80.00")).await?;
    run(
        r2,
        "region 2: bank -> carol 60.00",
        top_up(3, CAROL, "60.00"),
    )
    .await?;

    println!("\n== transfers in every region");
    let lunch = || vec![pay(4, ALICE, BOB, "10.00", "lunch")];
    run(r0, "region 0: alice -> bob 10.00", lunch()).await?;
    let coffee = vec![pay(5, BOB, CAROL, "5.50", "coffee")];
    run(r1, "region 1: bob -> carol 5.50", coffee).await?;
    let tip = vec![pay(6, CAROL, ALICE, "2.25", "tip")];
    run(r2, "region 2: carol -> alice 2.25", tip).await?;
    run(r0, "region 0: the same transfer again (retry)", lunch()).await?;
    // Its id is region 0's: region 1 sends it there, never decides it.
    run(
        r1,
        "region 1: the same transfer (a hedged request)",
        lunch(),
    )
    .await?;
    Ok(())
}

async fn payment(r0: &Client) -> anyhow::Result<()> {
    use api::transfer_command::Kind;
    println!("\n== a payment with capture, then a refund (region 0)");
    let hold = api::Hold {
        transfer: Some(movement(ALICE, SHOP, "30.00", "order 42")),
        timeout_ms: 60_000,
    };
    run(
        r0,
        "hold alice -> shop 30.00",
        vec![command(7, Kind::Pending(hold))],
    )
    .await?;
    let capture = api::Post {
        pending_id: transfer_id(7),
        amount: "25.00".into(),
    };
    let capture = vec![command(8, Kind::Post(capture))];
    run(r0, "capture 25.00 of it (5.00 returns)", capture).await?;
    let refund = api::Refund {
        payment_id: transfer_id(7),
        amount: "10.00".into(),
        reference: "one item returned".into(),
        metadata: Default::default(),
    };
    let refund = vec![command(9, Kind::Refund(refund))];
    run(r0, "refund 10.00 of the payment", refund).await?;
    Ok(())
}

/// `operator`: an operator's client of region 0.
async fn rebalance_and_pull(operator: &Client, r1: &Client, r2: &Client) -> anyhow::Result<()> {
    println!("\n== rebalance: move 20.00 of alice's reservation from region 0 to region 1");
    let rebalanced = operator
        .rebalance(api::RebalanceRequest {
            account: id(ALICE),
            amount: "20.00".into(),
            to_region: 1,
        })
        .await?;
    println!(
        "  {:<46} {}",
        "region 0: release 20.00 of alice's to region 1",
        describe_release(&rebalanced)
    );
    // Region 1's leader sees the release in its replica and grants it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let spend = vec![pay(11, ALICE, CAROL, "15.00", "spent in region 1")];
    run(r1, "region 1: alice -> carol 15.00 (from the grant)", spend).await?;

    println!("\n== a debit past the region's pool pulls from the others (region 2)");
    // Alice has 2.25 in region 2 and more elsewhere: region 2 asks the
    // others to release the difference (events in the logs), then decides.
    let rent = vec![pay(12, ALICE, CAROL, "20.00", "rent share")];
    run(r2, "region 2: alice -> carol 20.00", rent).await?;
    Ok(())
}

async fn history(r0: &Client) -> anyhow::Result<()> {
    println!("\n== alice's history, every region in stamp order (strong read on node 1)");
    r0.lookup_accounts_with(vec![id(ALICE)], true).await?;
    let history = r0
        .account_history(api::AccountHistoryRequest {
            account: id(ALICE),
            ..Default::default()
        })
        .await?;
    println!(
        "  {:<7} {:<12} {:>10} {:>10} {:>8}",
        "region", "movement", "change", "balance", "held"
    );
    for entry in &history.entries {
        println!(
            "  r{:<6} {:<12} {:>10} {:>10} {:>8}",
            entry.region, entry.movement, entry.balance_change, entry.balance, entry.held
        );
    }
    Ok(())
}
