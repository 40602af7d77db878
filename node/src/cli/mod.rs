//! The `ledger` command line: the commands, one module per group, and what
//! they share: one way to reach a node (`--api`), to print a table and to
//! print `--json`, and to report a refusal.

mod account;
mod bench;
mod dev;
mod health;
mod key;
mod members;
mod node;
mod pools;
mod status;
mod top;
mod transfer;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ledger_node::client::{Access, CALL_TIMEOUT, Client};
use ledger_proto::v1 as api;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "ledger",
    version,
    about = "A multi-region, active-active ledger"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Runs a node from a settings file.
    Node(node::NodeArgs),
    /// Runs a whole cluster on this machine, one process per node.
    Dev(dev::DevArgs),
    /// Cluster status as a node sees it.
    Status(status::StatusArgs),
    /// Accounts.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// One transfer. It is decided by the region its id names (decision
    /// 0009): without `--id`, a fresh id of the region of the node it is
    /// sent to; a retry gives the id printed the first time.
    Transfer(transfer::TransferArgs),
    /// Whether a node is ready for its region's traffic (or live), by
    /// its HTTP port: for container health checks and probes.
    Health(health::HealthArgs),
    /// Adds a node to the running cluster, or removes one.
    #[command(subcommand)]
    Members(members::MembersCommand),
    /// Reservation pools.
    #[command(subcommand)]
    Pools(pools::PoolsCommand),
    /// A bounded load of random transfers through one region's API.
    Bench(bench::BenchArgs),
    /// A fresh API key, and how a node's settings list it.
    Key(key::KeyArgs),
    /// The cluster at a glance, refreshed every second, from every node's
    /// metrics.
    Top(top::TopArgs),
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    // A node installs its logs and traces from its settings; every other
    // command logs only.
    if !matches!(command, Command::Node(_)) {
        ledger_node::telemetry::init(None)?;
    }
    match command {
        Command::Node(args) => node::run(args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Account(command) => account::run(command).await,
        Command::Transfer(args) => transfer::run(args).await,
        Command::Health(args) => health::run(args).await,
        Command::Members(command) => members::run(command).await,
        Command::Pools(command) => pools::run(command).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Key(args) => key::run(args),
        Command::Top(args) => top::run(args).await,
    }
}

// The node a command asks: `--api`. (Not a doc comment: clap would show it
// as the help of every command without one of its own.)
#[derive(Args)]
pub struct Endpoint {
    #[arg(long, default_value = "127.0.0.1:27100")]
    api: String,
    /// The CA certificate (PEM) of a cluster that serves TLS: calls go over
    /// TLS and the node's certificate is checked against it.
    #[arg(long, env = "LEDGER_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// The name the node's certificate must carry, in place of the host
    /// of `--api`.
    #[arg(long, env = "LEDGER_TLS_SERVER_NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
    /// A certificate (PEM) to show the node, with `--tls-key`: a node's,
    /// which a call with a node key (`ledger members`) needs under mutual TLS.
    #[arg(long, env = "LEDGER_TLS_CERT", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "LEDGER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

/// The API key every call shows (a node with authentication on refuses
/// calls without one): from the environment only, so that it is in no
/// command line (`ps`, the shell's history).
const API_KEY_VARIABLE: &str = "LEDGER_API_KEY";

/// The key in [`API_KEY_VARIABLE`], if set.
pub fn api_key() -> anyhow::Result<Option<String>> {
    match std::env::var(API_KEY_VARIABLE) {
        Ok(key) => Ok(Some(key)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(error) => anyhow::bail!("{API_KEY_VARIABLE}: {error}"),
    }
}

impl Endpoint {
    pub async fn connect(&self) -> anyhow::Result<Client> {
        self.connect_to(&self.api, CALL_TIMEOUT).await
    }

    /// An HTTP client of the nodes' HTTP ports, and the scheme they serve
    /// (`https` with `--tls-ca`, which it then trusts alone).
    pub fn http_client(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<(reqwest::Client, &'static str)> {
        let builder = reqwest::Client::builder().timeout(timeout);
        match &self.tls_ca {
            None => Ok((builder.build()?, "http")),
            Some(path) => {
                let pem =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let ca = reqwest::Certificate::from_pem(&pem)
                    .with_context(|| format!("reading {}", path.display()))?;
                let client = builder
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(ca)
                    .build()?;
                Ok((client, "https"))
            }
        }
    }

    /// A client of another node than `--api`, with this endpoint's key.
    pub async fn connect_to(&self, address: &str, deadline: Duration) -> anyhow::Result<Client> {
        let key = match api_key()? {
            Some(key) => Some(
                ledger_replication::bearer(&key)
                    .map_err(|error| anyhow::anyhow!("{API_KEY_VARIABLE}: {error}"))?,
            ),
            None => None,
        };
        let tls = match &self.tls_ca {
            Some(path) => {
                let tls = ledger_node::tls::client_trusting(
                    ledger_node::tls::read_ca(path)?,
                    self.tls_server_name.as_deref(),
                );
                match (&self.tls_cert, &self.tls_key) {
                    (Some(cert), Some(key)) => {
                        Some(tls.identity(ledger_node::tls::read_identity(cert, key)?))
                    }
                    _ => Some(tls),
                }
            }
            None => None,
        };
        let access = Access { deadline, key, tls };
        Ok(Client::connect_with(address, access).await?)
    }
}

/// Prints JSON for another program; one that stops reading early (a pipe
/// into `head`) is not an error.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// A column of a [`Table`].
#[derive(Clone, Copy)]
pub struct Column {
    title: &'static str,
    width: usize,
    right: bool,
    /// Spaces before it (none before the first column).
    gap: usize,
}

impl Column {
    pub const fn left(title: &'static str, width: usize) -> Self {
        Self {
            title,
            width,
            right: false,
            gap: 1,
        }
    }

    pub const fn right(title: &'static str, width: usize) -> Self {
        Self {
            title,
            width,
            right: true,
            gap: 1,
        }
    }

    /// The last column, as wide as its text.
    pub const fn rest(title: &'static str) -> Self {
        Self::left(title, 0)
    }

    pub const fn after(self, gap: usize) -> Self {
        Self { gap, ..self }
    }
}

/// A table for people, on standard output: a header, then a line per row.
pub struct Table(pub &'static [Column]);

impl Table {
    pub fn print_header(&self) {
        let titles: Vec<&str> = self.0.iter().map(|column| column.title).collect();
        println!("{}", self.line(&titles));
    }

    pub fn print_row(&self, cells: &[&dyn std::fmt::Display]) {
        let cells: Vec<String> = cells.iter().map(ToString::to_string).collect();
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        println!("{}", self.line(&cells));
    }

    fn line(&self, cells: &[&str]) -> String {
        let mut line = String::new();
        for (index, (column, cell)) in self.0.iter().zip(cells).enumerate() {
            if index > 0 {
                line.push_str(&" ".repeat(column.gap));
            }
            let width = column.width;
            line.push_str(&if column.right {
                format!("{cell:>width$}")
            } else {
                format!("{cell:<width$}")
            });
        }
        line
    }
}

/// How `main` reports an error: one line, with the causes of it that are
/// not already in it (a refusal has none).
pub fn error_line(error: &anyhow::Error) -> String {
    format!("error: {error:#}")
}

/// What a call did, or its refusal; `None`: the node said nothing.
pub fn answer<T>(answer: Option<anyhow::Result<T>>) -> anyhow::Result<T> {
    answer.unwrap_or_else(|| Err(anyhow::anyhow!("no answer")))
}

/// A refusal from the API as the CLI reports it: the code, then the message.
pub fn refused(error: &api::Error) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", error.code, error.message)
}

/// Prints the answer of a change through the control log.
pub fn print_change(response: api::ChangeAccountStatusResponse, json: bool) -> anyhow::Result<()> {
    use api::change_account_status_response::Result as Change;
    let changed = answer(response.result.map(|result| match result {
        Change::Changed(changed) => Ok(changed),
        Change::Error(error) => Err(refused(&error)),
    }))?;
    if json {
        return print_json(&serde_json::json!({ "changed": changed }));
    }
    println!("{}", if changed { "changed" } else { "already so" });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_its_code_then_its_message() {
        let error = api::Error {
            code: "INSUFFICIENT_FUNDS".into(),
            message: "asked 100.00, available 14.00".into(),
            ..api::Error::default()
        };
        assert_eq!(
            error_line(&refused(&error)),
            "error: INSUFFICIENT_FUNDS: asked 100.00, available 14.00"
        );
    }

    #[test]
    fn a_status_from_the_server_prints_once() {
        let message = "INVALID_AMOUNT: command 0: amount: \"12.5x\" is not an amount";
        let status = tonic::Status::invalid_argument(message);
        let error = anyhow::Error::from(ledger_node::client::ClientError::from(status));
        assert_eq!(error_line(&error), format!("error: {message}"));
    }
}
