//! `ledger account`: open, show, trace, freeze and close accounts.

use super::{Column, Endpoint, Table, answer, print_change, print_json, refused};
use clap::Subcommand;
use ledger_proto::v1 as api;

#[derive(Subcommand)]
pub enum AccountCommand {
    Create {
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        id: String,
        #[arg(long)]
        currency: String,
        /// USER, EXTERNAL or SYSTEM.
        #[arg(long)]
        kind: String,
        #[arg(long, default_value = "")]
        owner: String,
        #[arg(long)]
        json: bool,
    },
    Show {
        #[command(flatten)]
        endpoint: Endpoint,
        ids: Vec<String>,
        /// Holding everything committed before the call, in every region.
        #[arg(long)]
        strong: bool,
        #[arg(long)]
        json: bool,
    },
    /// Every movement of an account in every region, with the balance after.
    History {
        #[command(flatten)]
        endpoint: Endpoint,
        id: String,
        /// The latest this many movements (at most 10,000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// No movements in or out until unfrozen.
    Freeze {
        #[command(flatten)]
        endpoint: Endpoint,
        id: String,
        #[arg(long)]
        json: bool,
    },
    Unfreeze {
        #[command(flatten)]
        endpoint: Endpoint,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// For good: a closed account is never reopened.
    Close {
        #[command(flatten)]
        endpoint: Endpoint,
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: AccountCommand) -> anyhow::Result<()> {
    use AccountCommand::*;
    use api::AccountStatus::{Active, Closed, Frozen};
    match command {
        Create {
            endpoint,
            id,
            currency,
            kind,
            owner,
            json,
        } => {
            let account = api::NewAccount {
                id,
                currency,
                kind: kind_of(&kind)? as i32,
                owner,
                metadata: Default::default(),
            };
            create(&endpoint, account, json).await
        }
        Show {
            endpoint,
            ids,
            strong,
            json,
        } => show(&endpoint, ids, strong, json).await,
        History {
            endpoint,
            id,
            limit,
            json,
        } => history(&endpoint, id, limit, json).await,
        Freeze { endpoint, id, json } => change_status(&endpoint, id, Frozen, json).await,
        Unfreeze { endpoint, id, json } => change_status(&endpoint, id, Active, json).await,
        Close { endpoint, id, json } => change_status(&endpoint, id, Closed, json).await,
    }
}

fn kind_of(kind: &str) -> anyhow::Result<api::AccountKind> {
    match kind.to_ascii_uppercase().as_str() {
        "USER" => Ok(api::AccountKind::User),
        "EXTERNAL" => Ok(api::AccountKind::External),
        "SYSTEM" => Ok(api::AccountKind::System),
        other => anyhow::bail!("unknown kind {other:?}: USER, EXTERNAL or SYSTEM"),
    }
}

async fn create(endpoint: &Endpoint, account: api::NewAccount, json: bool) -> anyhow::Result<()> {
    use api::account_result::Result as Created;
    let response = endpoint
        .connect()
        .await?
        .create_accounts(vec![account])
        .await?;
    let result = response.results.into_iter().next().and_then(|result| {
        result.result.map(|result| match result {
            Created::Created(created) => Ok(created),
            Created::Error(error) => Err(refused(&error)),
        })
    });
    let created = answer(result)?;
    if json {
        return print_json(&serde_json::json!({ "created": created }));
    }
    if created {
        println!("created");
    } else {
        println!("already exists with the same content");
    }
    Ok(())
}

async fn show(
    endpoint: &Endpoint,
    ids: Vec<String>,
    strong: bool,
    json: bool,
) -> anyhow::Result<()> {
    let response = endpoint
        .connect()
        .await?
        .lookup_accounts_with(ids, strong)
        .await?;
    if json {
        let accounts: Vec<serde_json::Value> = response.accounts.iter().map(account_json).collect();
        return print_json(&accounts);
    }
    for view in &response.accounts {
        let status = api::AccountStatus::try_from(view.status)
            .map(|status| {
                status
                    .as_str_name()
                    .trim_start_matches("ACCOUNT_STATUS_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_else(|_| "unknown".into());
        println!(
            "[{status}] {} {} owner {:?}: total {}, available {}, in flight {}",
            view.id, view.currency, view.owner, view.total, view.available, view.in_flight
        );
        for region in &view.regions {
            println!(
                "  region {:<3} available {:>14} held {:>14}  (as of index {})",
                region.region, region.available, region.held, region.as_of_index
            );
        }
    }
    for missing in &response.missing {
        println!("{missing}: unknown here");
    }
    Ok(())
}

const HISTORY: Table = Table(&[
    Column::left("region", 7),
    Column::left("movement", 12),
    Column::right("change", 12),
    Column::right("balance", 12),
    Column::right("held", 10),
    Column::rest("transfer").after(2),
]);

async fn history(
    endpoint: &Endpoint,
    account: String,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let request = api::AccountHistoryRequest {
        account,
        limit,
        ..Default::default()
    };
    let response = endpoint.connect().await?.account_history(request).await?;
    if json {
        return print_json(&history_json(&response));
    }
    HISTORY.print_header();
    for entry in &response.entries {
        HISTORY.print_row(&[
            &format!("r{}", entry.region),
            &entry.movement,
            &entry.balance_change,
            &entry.balance,
            &entry.held,
            &entry.transfer_id,
        ]);
    }
    if response.truncated {
        println!("(earlier movements left out: raise --limit)");
    }
    Ok(())
}

fn history_json(response: &api::AccountHistoryResponse) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = response
        .entries
        .iter()
        .map(|entry| {
            serde_json::json!({
                "stamp_ns": entry.stamp_ns, "region": entry.region,
                "transfer_id": entry.transfer_id, "movement": entry.movement,
                "counterparty": entry.counterparty,
                "balance_change": entry.balance_change,
                "held_change": entry.held_change,
                "balance": entry.balance, "held": entry.held,
            })
        })
        .collect();
    serde_json::json!({
        "entries": entries, "balance": response.balance,
        "held": response.held, "truncated": response.truncated,
    })
}

async fn change_status(
    endpoint: &Endpoint,
    account: String,
    status: api::AccountStatus,
    json: bool,
) -> anyhow::Result<()> {
    let request = api::ChangeAccountStatusRequest {
        account,
        status: status as i32,
    };
    let response = endpoint
        .connect()
        .await?
        .change_account_status(request)
        .await?;
    print_change(response, json)
}

/// An account as `--json` shows it (`account show`, `pools show`).
pub fn account_json(view: &api::AccountView) -> serde_json::Value {
    serde_json::json!({
        "id": view.id, "currency": view.currency, "owner": view.owner,
        "total": view.total, "available": view.available, "in_flight": view.in_flight,
        "pool_floor": view.pool_floor,
        "regions": view.regions.iter().map(|region| serde_json::json!({
            "region": region.region, "available": region.available, "held": region.held,
            "as_of_index": region.as_of_index,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_table_lines_up_as_its_format_strings_did() {
        assert_eq!(
            HISTORY.line(&[
                "region", "movement", "change", "balance", "held", "transfer"
            ]),
            format!(
                "{:<7} {:<12} {:>12} {:>12} {:>10}  transfer",
                "region", "movement", "change", "balance", "held"
            )
        );
        assert_eq!(
            HISTORY.line(&["r1", "transfer", "-2.50", "7.50", "0.00", "abc"]),
            format!(
                "r{:<6} {:<12} {:>12} {:>12} {:>10}  {}",
                1, "transfer", "-2.50", "7.50", "0.00", "abc"
            )
        );
    }
}
