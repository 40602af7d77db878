//! The `ledger` command line: parses the command, starts the runtime, runs
//! the command (`cli`) and turns its outcome into the exit status.

mod cli;

use anyhow::Context;
use clap::Parser;

// The node allocates many small, short-lived objects across threads (a
// message per account per request); mimalloc serves them with far less
// contention than the system allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line for a person; the chain of causes, not a backtrace.
            eprintln!("{}", cli::error_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    // rustls' provider for this process, chosen once: ring (tonic's TLS
    // takes the process default, and would refuse to pick between two).
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(cli::run(cli.command));
    // The spans still buffered, before the runtime their channel is on goes.
    ledger_node::telemetry::shutdown();
    result
}
