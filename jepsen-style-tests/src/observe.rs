//! The final reads: every node's view of every account of the run, once
//! the views agree (or the wait is over), and which transfers of the
//! history each node holds.

use crate::bank::Bank;
use crate::cluster::Cluster;
use crate::history::AccountRead;
use ledger_node::auth::Role;
use ledger_node::client::applied_by_region;
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
    /// `posted`, `pending`, `post`, `void` or `refund`.
    pub kind: String,
    /// A hold's: `open`, `posted`, `voided` or `expired`; else empty.
    pub state: String,
    /// Its HLC stamp: ns, counter, node.
    pub stamp: (u64, u32, u64),
}

impl Found {
    /// A transfer as the API answers it.
    pub fn of(transfer: ledger_proto::v1::TransferView) -> Self {
        Self {
            debit: transfer.debit,
            credit: transfer.credit,
            amount: transfer.amount,
            kind: transfer.kind,
            state: transfer.state,
            stamp: (
                transfer.stamp_ns,
                transfer.stamp_logical,
                transfer.stamp_node,
            ),
        }
    }

    /// What it moves from debit to credit, as of now: a plain move its
    /// amount, a hold its amount once posted (the workload and the rail
    /// post whole holds), a post or void record nothing of its own.
    pub fn moved(&self) -> Option<rust_decimal::Decimal> {
        let amount = self.amount.parse().ok()?;
        Some(match (self.kind.as_str(), self.state.as_str()) {
            ("posted", _) | ("pending", "posted") => amount,
            _ => rust_decimal::Decimal::ZERO,
        })
    }
}

/// One movement of an account, as `AccountHistory` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub stamp: (u64, u32, u64),
    pub transfer: String,
    /// `transfer`, `hold`, `hold_posted`, …
    pub movement: String,
    pub balance_change: String,
    pub held_change: String,
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
    /// Every USER account's movements in stamp order, as the first node
    /// that answered gives them; or why they could not be read.
    pub movements: Result<BTreeMap<String, Vec<Movement>>, String>,
    /// When the views were read (ns since the epoch, as the history's).
    pub read_ns: u128,
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
            let movements = match nodes.first() {
                Some(first) => movements_of(cluster, first.node, &bank.users())
                    .await
                    .map_err(|error| format!("{error:#}")),
                None => Err("no node gave a final view".to_owned()),
            };
            return Ok(Finals {
                nodes,
                absent,
                converged: difference.is_empty(),
                difference,
                movements,
                read_ns: crate::history::now_ns(),
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
            crate::keys::connect(&node.api, Role::Operator)
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
pub fn difference(views: &[Result<NodeFinal, String>]) -> String {
    if let Some(Err(reason)) = views.iter().find(|view| view.is_err()) {
        return reason.clone();
    }
    let views: Vec<&NodeFinal> = views.iter().flatten().collect();
    // A release not granted yet (a rebalance just before the stop, say) is
    // not a view at rest: the grant is one housekeeping round away.
    if let Some((node, account)) = views.iter().find_map(|view| {
        view.accounts
            .iter()
            .find(|account| {
                account
                    .in_flight
                    .parse::<rust_decimal::Decimal>()
                    .is_ok_and(|in_flight| !in_flight.is_zero())
            })
            .map(|account| (view.node, account))
    }) {
        return format!(
            "node {node}: {} has {} in flight",
            account.id, account.in_flight
        );
    }
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

fn api_of(cluster: &Cluster, node: u64) -> String {
    cluster
        .nodes()
        .iter()
        .find(|known| known.id == node)
        .map(|known| known.api.clone())
        .unwrap_or_default()
}

/// Movements asked in one call, at most (the API's own bound).
const MOVEMENTS_PAGE: u32 = 10_000;

/// Every movement of each of `accounts` at `node`, in stamp order: the
/// API answers the latest page first, so earlier pages are asked for up to
/// the earliest stamp seen (its nanosecond again, the repeats left out).
async fn movements_of(
    cluster: &Cluster,
    node: u64,
    accounts: &[String],
) -> anyhow::Result<BTreeMap<String, Vec<Movement>>> {
    let client = crate::keys::connect(&api_of(cluster, node), Role::Operator).await?;
    let mut all = BTreeMap::new();
    for account in accounts {
        let mut movements: Vec<Movement> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut to_ns = 0;
        loop {
            let page = client
                .account_history(ledger_proto::v1::AccountHistoryRequest {
                    account: account.clone(),
                    to_ns,
                    limit: MOVEMENTS_PAGE,
                    ..Default::default()
                })
                .await?;
            let earlier: Vec<Movement> = page
                .entries
                .iter()
                .map(movement)
                .filter(|new| seen.insert((new.stamp, new.transfer.clone(), new.movement.clone())))
                .collect();
            let Some(first) = earlier.first().map(|first| first.stamp.0) else {
                break;
            };
            movements.splice(0..0, earlier);
            if !page.truncated {
                break;
            }
            // Movements stamped up to the earliest's nanosecond (the bound
            // is inclusive: a nanosecond a page split is asked again).
            to_ns = first;
        }
        movements.sort_by_key(|seen| seen.stamp);
        all.insert(account.clone(), movements);
    }
    Ok(all)
}

pub fn movement(entry: &ledger_proto::v1::HistoryEntry) -> Movement {
    Movement {
        stamp: (entry.stamp_ns, entry.stamp_logical, entry.stamp_node),
        transfer: entry.transfer_id.clone(),
        movement: entry.movement.clone(),
        balance_change: entry.balance_change.clone(),
        held_change: entry.held_change.clone(),
    }
}

async fn with_transfers(
    mut view: NodeFinal,
    cluster: &Cluster,
    ids: &[String],
) -> anyhow::Result<NodeFinal> {
    let client = crate::keys::connect(&api_of(cluster, view.node), Role::Operator).await?;
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let response = client.lookup_transfers(chunk.to_vec()).await?;
        for transfer in response.transfers {
            view.found.insert(transfer.id.clone(), Found::of(transfer));
        }
    }
    Ok(view)
}
