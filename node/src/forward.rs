//! A transfer id is decided by one region, ever: the one its high half
//! names (decision 0009). A node that receives commands of other regions'
//! ids sends them on to those regions and relays their answers; it never
//! decides them, whatever the client sent where.

use crate::client::{Client, ClientError};
use crate::runtime::NodeHandle;
use crate::wire::WireError;
use ledger_proto::v1 as api;
use ledger_replication::Group;
use ledger_reservations::{Item, RegionId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Marks a call a node sent on: the node that receives it decides what is
/// its own and refuses the rest, so a call never goes round.
pub const FORWARDED: &str = "x-ledger-forwarded";
/// How long a call sent on may take, redirects to that region's leader
/// included.
const FORWARD_DEADLINE: Duration = Duration::from_secs(20);
/// How often a call sent on looks whether its region is still in reach.
const REACH_POLL: Duration = Duration::from_millis(100);

/// The commands of one call, by the region that decides them, with their
/// places in the call.
pub struct Split {
    pub home: Vec<usize>,
    pub elsewhere: BTreeMap<RegionId, Vec<usize>>,
}

/// Splits a call's commands by the region that decides them. A linked
/// chain is decided whole by one region, so its ids must all be of one.
pub fn split(
    items: &[Item],
    origins: &[RegionId],
    home: RegionId,
) -> Result<Split, (usize, WireError)> {
    let mut split = Split {
        home: Vec::new(),
        elsewhere: BTreeMap::new(),
    };
    let mut chain_origin: Option<RegionId> = None;
    for (index, (item, origin)) in items.iter().zip(origins).enumerate() {
        if chain_origin.is_some_and(|chain| chain != *origin) {
            return Err((
                index,
                WireError::Invalid {
                    field: "id".into(),
                    reason: "a linked chain's ids must all be of one region (decision 0009)".into(),
                },
            ));
        }
        chain_origin = item.linked.then_some(*origin);
        if *origin == home {
            split.home.push(index);
        } else {
            split.elsewhere.entry(*origin).or_default().push(index);
        }
    }
    Ok(split)
}

/// Sends calls on to other regions, with a client per region kept between
/// calls.
pub struct Forwarder {
    node: Arc<NodeHandle>,
    clients: tokio::sync::Mutex<BTreeMap<RegionId, Client>>,
}

impl Forwarder {
    pub fn new(node: Arc<NodeHandle>) -> Self {
        Self {
            node,
            clients: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Sends `commands` to `region` and answers each with that region's
    /// answer. If the region cannot be reached, nothing was sent:
    /// `REGION_UNAVAILABLE`, naming it. If the call was sent and no answer
    /// came, the region may have decided them: `OUTCOME_UNKNOWN`. Both are
    /// retried with the same ids; only that region ever decides them, and a
    /// client must not take either for a refusal and pay under a new id.
    pub async fn forward(
        &self,
        region: RegionId,
        commands: Vec<api::TransferCommand>,
    ) -> Vec<api::TransferResult> {
        let count = commands.len();
        if let Some(since) = self.node.replica.out_of_reach(Group::Region(region)) {
            // Its leader cannot reach this node, so this node most likely
            // cannot reach it either: a call sent now would be held until
            // the network heals, then answered, or not.
            let why = format!(
                "whose leader has not reached this node for {} ms",
                since.as_millis()
            );
            return self.unavailable(region, count, &why);
        }
        let client = match self.client(region).await {
            Ok(client) => client,
            Err(reason) => {
                return self.unavailable(
                    region,
                    count,
                    &format!("which cannot be reached ({reason})"),
                );
            }
        };
        let answer = tokio::select! {
            // An answer that is in wins over the region going out of reach.
            biased;
            answer = tokio::time::timeout(
                FORWARD_DEADLINE,
                client.create_transfers_forwarded(commands),
            ) => answer,
            // A call sent into a cut is held until the network heals:
            // unknown as soon as the region is seen out of reach.
            since = self.out_of_reach(region) => Ok(Err(ClientError::Status(
                tonic::Status::unavailable(format!(
                    "its leader has not reached this node for {} ms",
                    since.as_millis()
                )),
            ))),
        };
        let failure = match answer {
            Ok(Ok(response)) if response.results.len() == count => return response.results,
            Ok(Ok(response)) => {
                format!("it answered {} of {count} commands", response.results.len())
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {FORWARD_DEADLINE:?}"),
        };
        self.forget(region).await;
        failed(
            count,
            "OUTCOME_UNKNOWN",
            format!(
                "sent to region {region}, which decides these ids, and {failure}: they may \
                 have been decided; retry the same ids to learn it"
            ),
            String::new(),
        )
    }

    /// Resolves once `region`'s leader has stopped reaching this node, with
    /// how long since it last did.
    async fn out_of_reach(&self, region: RegionId) -> Duration {
        loop {
            if let Some(since) = self.node.replica.out_of_reach(Group::Region(region)) {
                return since;
            }
            tokio::time::sleep(REACH_POLL).await;
        }
    }

    /// `REGION_UNAVAILABLE` for each of `count` commands of `region`: not
    /// sent, `why`.
    fn unavailable(&self, region: RegionId, count: usize, why: &str) -> Vec<api::TransferResult> {
        failed(
            count,
            "REGION_UNAVAILABLE",
            format!(
                "these ids are decided by region {region} only, {why}; nothing was sent; \
                 retry the same ids"
            ),
            self.address_of(region).unwrap_or_default(),
        )
    }

    /// A client of `region`, connected outside the lock, so that a region
    /// that does not answer delays only the calls sent to it.
    async fn client(&self, region: RegionId) -> Result<Client, String> {
        let address = self
            .address_of(region)
            .ok_or_else(|| format!("no node of region {region} can be reached"))?;
        if let Some(client) = self.clients.lock().await.get(&region)
            && client.address() == address
        {
            return Ok(client.clone());
        }
        let client = self
            .node
            .client_of(&address)
            .await
            .map_err(|error| error.to_string())?;
        self.clients.lock().await.insert(region, client.clone());
        Ok(client)
    }

    async fn forget(&self, region: RegionId) {
        self.clients.lock().await.remove(&region);
    }

    /// The API of `region`'s leader as this node knows it, else of any of
    /// its nodes; none this node is cut off from (fault injection).
    fn address_of(&self, region: RegionId) -> Option<String> {
        let layout = self.node.replica.layout();
        let faults = &self.node.faults;
        let leader = self
            .node
            .replica
            .progress(Group::Region(region))
            .and_then(|progress| progress.leader);
        let nodes: Vec<_> = layout
            .nodes
            .iter()
            .filter(|node| {
                node.region == region && !node.api.is_empty() && !faults.is_blocked(node.id)
            })
            .collect();
        nodes
            .iter()
            .find(|node| Some(node.id) == leader)
            .or_else(|| nodes.first())
            .map(|node| node.api.clone())
    }
}

/// The same failure for each of `count` commands.
fn failed(count: usize, code: &str, message: String, redirect: String) -> Vec<api::TransferResult> {
    let error = api::Error {
        code: code.into(),
        message,
        retryable: true,
        redirect,
        ..api::Error::default()
    };
    let result = api::TransferResult {
        result: Some(api::transfer_result::Result::Error(error)),
    };
    vec![result; count]
}
