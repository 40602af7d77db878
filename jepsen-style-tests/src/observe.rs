//! The final reads: every node's view of every account of the run, once
//! the views agree (or the wait is over), and which transfers of the
//! history each node holds.

use crate::bank::Bank;
use crate::cluster::Cluster;
use crate::history::AccountRead;
use ledger_node::client::{Client, applied_by_region};
use std::collections::BTreeMap;
use std::time::Duration;

/// What one node holds at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFinal {
    pub node: u64,
    pub accounts: Vec<AccountRead>,
    /// Per region, the index of its log this node has applied.
    pub applied: Vec<(u32, u64)>,
    /// The transfers of the history this node holds, by id.
    pub found: BTreeMap<String, Found>,
}

/// A transfer as a node holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub debit: String,
    pub credit: String,
    pub amount: String,
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct Finals {
    pub nodes: Vec<NodeFinal>,
    /// The nodes of the layout that gave no view, and why.
    pub absent: Vec<(u64, String)>,
    /// Every node answered with the same figures having applied the same
    /// index of every region's log, within the wait.
    pub converged: bool,
    /// Why not, when not: the last difference seen.
    pub difference: String,
}

/// Reads every node until their views agree, for `within` at most, then
/// asks each for the transfers `ids`.
pub async fn finals(
    cluster: &Cluster,
    bank: &Bank,
    ids: &[String],
    within: Duration,
) -> anyhow::Result<Finals> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let views = views(cluster, bank).await;
        let difference = difference(&views);
        if difference.is_empty() || tokio::time::Instant::now() >= deadline {
            let mut nodes = Vec::new();
            let mut absent = Vec::new();
            for (node, view) in cluster.nodes().iter().zip(views) {
                match view {
                    Ok(view) => match with_transfers(view, cluster, ids).await {
                        Ok(view) => nodes.push(view),
                        Err(error) => absent.push((node.id, format!("{error:#}"))),
                    },
                    Err(why) => absent.push((node.id, why)),
                }
            }
            return Ok(Finals {
                nodes,
                absent,
                converged: difference.is_empty(),
                difference,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every node's view, or why it gave none.
async fn views(cluster: &Cluster, bank: &Bank) -> Vec<Result<NodeFinal, String>> {
    let mut views = Vec::new();
    for node in cluster.nodes() {
        let answer = async {
            Client::connect(&node.api)
                .await?
                .lookup_accounts(bank.all())
                .await
        }
        .await;
        views.push(match answer {
            Ok(response) if response.missing.is_empty() => Ok(NodeFinal {
                node: node.id,
                accounts: response.accounts.iter().map(AccountRead::of).collect(),
                applied: applied_by_region(&response.watermarks),
                found: BTreeMap::new(),
            }),
            Ok(response) => Err(format!("node {} lacks {:?}", node.id, response.missing)),
            Err(error) => Err(format!("node {}: {error}", node.id)),
        });
    }
    views
}

/// Empty when every node answered the same figures as of the same log
/// positions; else what differs.
fn difference(views: &[Result<NodeFinal, String>]) -> String {
    if let Some(Err(reason)) = views.iter().find(|view| view.is_err()) {
        return reason.clone();
    }
    let views: Vec<&NodeFinal> = views.iter().flatten().collect();
    match views
        .windows(2)
        .find(|pair| (&pair[0].accounts, &pair[0].applied) != (&pair[1].accounts, &pair[1].applied))
    {
        Some(pair) => format!(
            "node {} applied {:?}, node {} applied {:?} (or their figures differ)",
            pair[0].node, pair[0].applied, pair[1].node, pair[1].applied
        ),
        None => String::new(),
    }
}

/// Chunks of ids asked in one lookup.
const LOOKUP_CHUNK: usize = 1_000;

async fn with_transfers(
    mut view: NodeFinal,
    cluster: &Cluster,
    ids: &[String],
) -> anyhow::Result<NodeFinal> {
    let address = cluster
        .nodes()
        .iter()
        .find(|node| node.id == view.node)
        .map(|node| node.api.clone())
        .unwrap_or_default();
    let client = Client::connect(&address).await?;
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let response = client.lookup_transfers(chunk.to_vec()).await?;
        for transfer in response.transfers {
            view.found.insert(
                transfer.id,
                Found {
                    debit: transfer.debit,
                    credit: transfer.credit,
                    amount: transfer.amount,
                },
            );
        }
    }
    Ok(view)
}
