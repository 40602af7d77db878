//! `ledger members`: adds a node to the running cluster or removes one. A
//! change is asked of every node of the layout, since each group's leader
//! does its part and every node keeps the layout (the API addresses it
//! redirects to). The settings files must say the same for the change to
//! outlive a restart: see deploy/README.md.

use super::{Endpoint, print_json};
use clap::Subcommand;
use ledger_node::client::{Client, MEMBERSHIP_CALL_TIMEOUT};
use ledger_proto::v1 as api;

#[derive(Subcommand)]
pub enum MembersCommand {
    /// Adds a running node (its settings list it) to a region: as a learner
    /// that catches up, then as a voter of the region's log.
    Add {
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        id: u64,
        #[arg(long)]
        region: u32,
        /// Its Raft address (host:port).
        #[arg(long)]
        addr: String,
        /// Its gRPC API address (host:port).
        #[arg(long)]
        node_api: String,
        /// Its HTTP API address (host:port), if it serves one.
        #[arg(long, default_value = "")]
        http: String,
        /// Also a voter of the control log.
        #[arg(long)]
        control_voter: bool,
        #[arg(long)]
        json: bool,
    },
    /// Removes a node from every group (never a region's last node).
    Remove {
        #[command(flatten)]
        endpoint: Endpoint,
        #[arg(long)]
        id: u64,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: MembersCommand) -> anyhow::Result<()> {
    let (endpoint, change, json) = match command {
        MembersCommand::Add {
            endpoint,
            id,
            region,
            addr,
            node_api,
            http,
            control_voter,
            json,
        } => {
            let request = api::AddMemberRequest {
                id,
                region,
                addr,
                api: node_api,
                http,
                control_voter,
            };
            (endpoint, Change::Add(request), json)
        }
        MembersCommand::Remove { endpoint, id, json } => (endpoint, Change::Remove(id), json),
    };
    let status = endpoint.connect().await?.status().await?;
    let mut answers = Vec::new();
    for node in &status.nodes {
        // The node removed is not asked: it is stopped first (see
        // deploy/README.md), often dead, and has no part in its removal.
        if matches!(change, Change::Remove(id) if id == node.id) {
            continue;
        }
        let answer = match endpoint
            .connect_to(&node.api, MEMBERSHIP_CALL_TIMEOUT)
            .await
        {
            Ok(client) => change.ask(&client).await,
            Err(error) => Err(error.to_string()),
        };
        answers.push((node.id, answer));
    }
    let mut failed = answers.iter().filter(|(_, answer)| answer.is_err()).count();
    // Done only when no group counts it any more: a group whose leader was
    // the node removed (or was being elected) has not removed it yet.
    if failed == 0
        && let Change::Remove(id) = change
        && let Err(voter_of) = removed_everywhere(&endpoint, id).await
    {
        println!(
            "node {id} is still a voter of {voter_of}: no leader there removed it (was it \
             running and leading? stop it first); ask again"
        );
        failed += 1;
    }
    if json {
        let nodes: Vec<serde_json::Value> = answers
            .iter()
            .map(|(node, answer)| match answer {
                Ok(groups) => serde_json::json!({ "node": node, "changed": groups }),
                Err(error) => serde_json::json!({ "node": node, "error": error }),
            })
            .collect();
        print_json(&serde_json::json!({ "nodes": nodes }))?;
    } else {
        for (node, answer) in &answers {
            match answer {
                Ok(groups) if groups.is_empty() => println!("node {node}: layout updated"),
                Ok(groups) => println!("node {node}: changed {}", groups.join(", ")),
                Err(error) => println!("node {node}: {error}"),
            }
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} nodes did not make the change; ask again (it is safe to repeat)",
        answers.len()
    );
    Ok(())
}

/// Waits until the node asked no longer counts `id` as a voter of any
/// group (a minute at most); else names the groups that still do.
async fn removed_everywhere(endpoint: &Endpoint, id: u64) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let still: Vec<String> = match endpoint.connect().await {
            Ok(client) => match client.status().await {
                Ok(status) => status
                    .groups
                    .iter()
                    .filter(|group| group.voters.contains(&id))
                    .map(|group| group.group.clone())
                    .collect(),
                Err(error) => vec![error.to_string()],
            },
            Err(error) => vec![error.to_string()],
        };
        if still.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(still.join(", "));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

enum Change {
    Add(api::AddMemberRequest),
    Remove(u64),
}

impl Change {
    /// The groups the node changed, or why it did not.
    async fn ask(&self, client: &Client) -> Result<Vec<String>, String> {
        let answer = match self {
            Change::Add(request) => client.add_member(request.clone()).await,
            Change::Remove(id) => client.remove_member(*id).await,
        };
        answer
            .map(|response| response.groups)
            .map_err(|error| error.to_string())
    }
}
