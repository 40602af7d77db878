//! The API keys of the cluster under test: every node takes them, and each
//! client of the harness shows the key of its role (transfers and plain
//! reads as a client; operators' calls, status and final reads as an
//! operator), so that the nodes' own keyed calls to each other (Raft,
//! commands sent on, read indexes) run under every fault too. One cluster
//! per process: the keys are set once, when it starts.

use ledger_node::auth::Role;
use ledger_node::client::{Client, ClientError};
use ledger_node::dev::DevKeys;
use std::sync::OnceLock;

static KEYS: OnceLock<DevKeys> = OnceLock::new();

/// Makes the keys of this process's cluster (once; the same after).
pub fn make() -> anyhow::Result<DevKeys> {
    if let Some(keys) = KEYS.get() {
        return Ok(keys.clone());
    }
    let keys = DevKeys::generate()?;
    Ok(KEYS.get_or_init(|| keys).clone())
}

/// A client of the node at `address` with `role`'s key (none when this
/// process started no cluster: one given, as the bank workload's).
pub async fn connect(address: &str, role: Role) -> Result<Client, ClientError> {
    ledger_node::dev::connect_as(KEYS.get(), address, role).await
}
