//! `ledger dev`: a whole cluster on this machine, and the demonstration.

use super::{Column, Table};
use anyhow::Context;
use clap::Args;
use ledger_node::demo;
use ledger_node::dev::{Cluster, DevKeys, DevOptions};
use std::path::PathBuf;

#[derive(Args)]
pub struct DevArgs {
    #[arg(long, default_value_t = 3)]
    regions: u16,
    #[arg(long, default_value_t = 1)]
    nodes_per_region: u16,
    /// Raft ports start here, gRPC API ports 100 above, HTTP ports 200 above.
    #[arg(long, default_value_t = 27_000)]
    base_port: u16,
    /// Where the nodes keep their data (a fresh temporary directory by default).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Runs the demonstration once the cluster is up.
    #[arg(long)]
    demo: bool,
    /// Stops the cluster after the demonstration instead of waiting for Ctrl-C.
    #[arg(long)]
    exit_after_demo: bool,
    /// Lets every call through: no API keys (for tools that try every route
    /// with one client, such as the schema tests).
    #[arg(long)]
    no_auth: bool,
    /// Sends every node's spans to this OTLP/gRPC collector
    /// (`http://127.0.0.1:4317`); `OTEL_EXPORTER_OTLP_ENDPOINT` does too.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Mutual TLS between the nodes and TLS for clients, with a throwaway
    /// CA and node certificates made in `<data-dir>/tls`.
    #[arg(long)]
    tls: bool,
}

const NODES: Table = Table(&[
    Column::left("node", 6),
    Column::left("region", 7),
    Column::left("api (gRPC)", 18),
    Column::left("http", 18),
    Column::left("raft", 18),
    Column::rest("log"),
]);

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let temporary = match &args.data_dir {
        Some(_) => None,
        None => Some(temporary_dir()?),
    };
    let data_dir = args
        .data_dir
        .or_else(|| temporary.clone())
        .context("a data directory")?;
    let mut options = DevOptions::new(
        args.regions,
        args.nodes_per_region,
        args.base_port,
        data_dir,
    );
    options.otlp_endpoint = args.otlp_endpoint;
    options.tls = args.tls;
    if !args.no_auth {
        options.keys = Some(DevKeys::generate()?);
    }
    println!(
        "starting {} regions x {} node(s) in {} ...",
        args.regions,
        args.nodes_per_region,
        options.data_dir.display()
    );
    let cluster = Cluster::start(&options).await?;
    println!();
    NODES.print_header();
    for node in &cluster.nodes {
        NODES.print_row(&[
            &node.id,
            &node.region,
            &node.api,
            &node.http,
            &node.raft,
            &node.log.display(),
        ]);
    }
    let ca = cluster.tls.as_ref().map(|tls| tls.ca.as_path());
    if let Some(keys) = &cluster.keys {
        print_keys(keys, &options.data_dir, &cluster.nodes[0].http, ca)?;
    }
    if let Some(tls) = &cluster.tls {
        println!(
            "\nTLS is on: the nodes call each other with certificates of a CA made for this \
             run, and both APIs take TLS only; `ledger` trusts it with\n  \
             export LEDGER_TLS_CA={}",
            tls.ca.display()
        );
    }
    if args.demo
        && let Err(error) = demo::run_demo(&cluster).await
    {
        eprintln!("the demonstration failed: {error:#}");
        cluster.stop().await;
        return Err(error);
    }
    if !(args.demo && args.exit_after_demo) {
        println!("\nthe cluster runs; Ctrl-C stops it");
        tokio::signal::ctrl_c().await?;
    }
    println!("stopping ...");
    cluster.stop().await;
    if let Some(dir) = temporary {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// Writes the keys where a shell can read them, and says how to use them
/// (over HTTPS trusting `ca`, if given).
fn print_keys(
    keys: &DevKeys,
    dir: &std::path::Path,
    http: &str,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let file = dir.join("keys.env");
    let text = format!(
        "# API keys of this dev cluster, one per role; `ledger` reads LEDGER_API_KEY.\n\
         LEDGER_CLIENT_KEY={}\nLEDGER_OPERATOR_KEY={}\nLEDGER_NODE_KEY={}\n\
         LEDGER_API_KEY={}\n",
        keys.client, keys.operator, keys.node, keys.client
    );
    ledger_node::dev::write_private(&file, &text)?;
    println!(
        "\nauthentication is on; the keys are in {file}:\n  \
         client    {client}\n  operator  {operator}\n  node      {node}\n\
         use them with\n  \
         set -a; . {file}; set +a          # LEDGER_API_KEY: the client key\n  \
         LEDGER_API_KEY=$LEDGER_OPERATOR_KEY ledger pools ...\n  \
         curl{cacert} -H \"Authorization: Bearer $LEDGER_CLIENT_KEY\" {scheme}://{http}/api/v1/accounts/...",
        file = file.display(),
        cacert = ca.map_or(String::new(), |ca| format!(" --cacert {}", ca.display())),
        scheme = if ca.is_some() { "https" } else { "http" },
        client = keys.client,
        operator = keys.operator,
        node = keys.node,
    );
    Ok(())
}

fn temporary_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("ledger-dev-{}", std::process::id()));
    // Made here, for this user only: never one that was there before.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("making {}", dir.display()))?;
    Ok(dir)
}
