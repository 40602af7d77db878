//! `ledger transfer`: one transfer.

use super::{Endpoint, answer, print_json, refused};
use clap::Args;
use ledger_proto::v1 as api;

#[derive(Args)]
pub struct TransferArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    #[arg(long)]
    amount: String,
    #[arg(long)]
    currency: String,
    #[arg(long, default_value = "")]
    reference: String,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: TransferArgs) -> anyhow::Result<()> {
    use api::transfer_result::Result as Decided;
    let client = args.endpoint.connect().await?;
    let id = match args.id {
        Some(id) => id,
        None => client.minter().await?.id(ledger_node::ids::fresh()),
    };
    let command = api::TransferCommand {
        id: id.clone(),
        linked: false,
        kind: Some(api::transfer_command::Kind::Transfer(api::Move {
            debit: args.from,
            credit: args.to,
            amount: args.amount,
            currency: args.currency,
            reference: args.reference,
            metadata: Default::default(),
        })),
    };
    let response = client.create_transfers(vec![command]).await?;
    let result = response.results.into_iter().next().and_then(|result| {
        result.result.map(|result| match result {
            Decided::Applied(applied) => Ok(applied),
            Decided::Error(error) => Err(refused(&error)),
        })
    });
    let applied = answer(result)?;
    if args.json {
        return print_json(&serde_json::json!({
            "id": id, "new": applied.new, "region": applied.region, "index": applied.index,
        }));
    }
    println!(
        "{id} committed in region {} at index {}{}",
        applied.region,
        applied.index,
        if applied.new {
            ""
        } else {
            " (already applied)"
        }
    );
    Ok(())
}
