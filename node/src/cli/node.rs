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
    let region = settings
        .replication
        .nodes
        .iter()
        .find(|node| node.id == settings.replication.node_id)
        .map_or(0, |node| node.region.0);
    ledger_node::telemetry::init(Some((
        &settings.telemetry,
        settings.replication.node_id,
        region,
    )))?;
    let id = settings.replication.node_id;
    // Watched from the start: a node asked to stop while it opens and
    // replays its log stops then, instead of being killed after the grace
    // period (as a container's first process it has no default handler).
    let terminated = terminated();
    tokio::pin!(terminated);
    let starting = runtime::start(settings, |handle, listener, tls| {
        Api::new(handle).serve(listener, tls)
    });
    let running = tokio::select! {
        running = starting => running?,
        () = &mut terminated => {
            tracing::info!(node = id, "asked to stop while starting");
            return Ok(());
        }
    };
    tracing::info!(node = id, "running");
    let fatal = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        () = &mut terminated => None,
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

/// Done when the process is asked to stop (SIGTERM: `docker stop`, a
/// Kubernetes pod ending).
async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(error) => {
            tracing::warn!(%error, "SIGTERM cannot be watched; stop the node with SIGINT");
            std::future::pending::<()>().await;
        }
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
