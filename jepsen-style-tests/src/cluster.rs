//! The cluster as its layout names it: every node, its region and API
//! address, learned from the first node given that answers.

use anyhow::Context;
use ledger_node::auth::Role;
use ledger_node::client::{Client, Minter};
use ledger_proto::v1 as api;

#[derive(Debug, Clone)]
pub struct Cluster {
    /// What the node that answered said; its layout lists every node.
    pub status: api::ClusterStatusResponse,
}

impl Cluster {
    /// Asks each address in turn for the cluster's layout.
    pub async fn discover(addresses: &[String]) -> anyhow::Result<Self> {
        let mut reasons = Vec::new();
        for address in addresses {
            let answer = async {
                crate::keys::connect(address, Role::Operator)
                    .await?
                    .status()
                    .await
            }
            .await;
            match answer {
                Ok(status) => return Ok(Self { status }),
                Err(error) => reasons.push(format!("{address}: {error}")),
            }
        }
        anyhow::bail!("no node answered: {}", reasons.join("; "))
    }

    pub fn nodes(&self) -> &[api::NodeInfo] {
        &self.status.nodes
    }

    /// Every region of the layout, in order.
    pub fn regions(&self) -> Vec<u32> {
        let mut regions: Vec<u32> = self.nodes().iter().map(|node| node.region).collect();
        regions.sort_unstable();
        regions.dedup();
        regions
    }

    /// `region`'s nodes: id and API address.
    pub fn nodes_of(&self, region: u32) -> Vec<(u64, String)> {
        self.nodes()
            .iter()
            .filter(|node| node.region == region)
            .map(|node| (node.id, node.api.clone()))
            .collect()
    }

    /// Mints transfer ids that `region` decides.
    pub fn minter(&self, region: u32) -> anyhow::Result<Minter> {
        Minter::of_region(&self.status, region)
            .with_context(|| format!("region {region} is not in the layout"))
    }
}

/// A client of one region that moves on to the region's next node when the
/// one it has cannot be reached (a node killed or restarting).
pub struct RegionClient {
    pub region: u32,
    /// Whose key it shows.
    role: Role,
    nodes: Vec<(u64, String)>,
    next: usize,
    /// The node asked and a client of it.
    client: Option<(u64, Client)>,
}

impl RegionClient {
    pub fn new(cluster: &Cluster, region: u32, start: usize, role: Role) -> Self {
        Self {
            region,
            role,
            nodes: cluster.nodes_of(region),
            next: start,
            client: None,
        }
    }

    /// The client in use, or a new one to the region's next node.
    pub async fn get(&mut self) -> Result<Client, ledger_node::client::ClientError> {
        if let Some((_, client)) = &self.client {
            return Ok(client.clone());
        }
        let Some((node, address)) = self.nodes.get(self.next % self.nodes.len().max(1)) else {
            return Err(ledger_node::client::ClientError::Connect {
                address: format!("region {}", self.region),
                reason: "the layout names no node of it".into(),
            });
        };
        self.next += 1;
        let client = crate::keys::connect(address, self.role).await?;
        self.client = Some((*node, client.clone()));
        Ok(client)
    }

    /// The node asked last (0 before any).
    pub fn node(&self) -> u64 {
        self.client.as_ref().map_or(0, |(node, _)| *node)
    }

    /// Drops the client after a failure on the way, so that the next call
    /// connects again (to the next node of the region).
    pub fn reset(&mut self) {
        self.client = None;
    }
}
