//! `ledger node`: one node, from a settings file.

use clap::Args;
use ledger_node::api::Api;
use ledger_node::config::NodeSettings;
use ledger_node::runtime;
use std::path::PathBuf;

#[derive(Args)]
pub struct NodeArgs {
    #[arg(long)]
    config: PathBuf,
    /// Stop when standard input closes (how `ledger dev` stops its nodes).
    #[arg(long)]
    exit_on_stdin_close: bool,
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let settings = NodeSettings::from_file(&args.config)?;
    let id = settings.replication.node_id;
    let running = runtime::start(settings, |handle, listener| {
        Api::new(handle).serve(listener)
    })
    .await?;
    tracing::info!(node = id, "running");
    let fatal = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        () = stdin_closed(args.exit_on_stdin_close) => None,
        fatal = running.fatal() => Some(fatal),
    };
    tracing::info!(node = id, "stopping");
    running.stop().await;
    match fatal {
        // Stopped on purpose, cleanly, with an error status and the reason.
        Some((group, reason)) => anyhow::bail!("group {group} stopped: {reason}; the node stopped"),
        None => Ok(()),
    }
}

/// Done when standard input closes, if the node watches it; else never.
async fn stdin_closed(watched: bool) {
    if watched {
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
    } else {
        std::future::pending::<()>().await;
    }
}
