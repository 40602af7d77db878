//! A node's replication settings from a TOML file: which node it is, where
//! its data lives, where it listens, the Raft timings and the whole layout.
//! Unknown fields are errors, so a misspelt setting is never ignored.

use crate::node::{Layout, LayoutError, NodeConfig, Timings};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// This node's id; must be in the layout.
    pub node_id: u64,
    /// Where the node's database lives.
    pub data_dir: PathBuf,
    /// The address the Raft service listens on (`host:port`).
    pub listen: String,
    #[serde(default)]
    pub timings: Timings,
    /// Every node of the cluster.
    pub nodes: Vec<NodeConfig>,
    /// Voters of the global control group; empty means the lowest-id node of
    /// each region.
    #[serde(default)]
    pub control_voters: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("election timeouts must be above the heartbeat and min below max")]
    Timings,
    #[error("link_bytes_per_s must be above zero")]
    LinkRate,
}

impl ReplicaConfig {
    /// The cluster layout the file describes.
    pub fn layout(&self) -> Layout {
        Layout {
            nodes: self.nodes.clone(),
            control_voters: self.control_voters.clone(),
        }
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone do not: the layout, this node in it, and
    /// consistent timings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.layout().validate()?;
        if !self.nodes.iter().any(|node| node.id == self.node_id) {
            return Err(LayoutError::NotInLayout(self.node_id).into());
        }
        let timings = &self.timings;
        if timings.election_min_ms <= timings.heartbeat_ms
            || timings.election_max_ms <= timings.election_min_ms
        {
            return Err(ConfigError::Timings);
        }
        if timings.link_bytes_per_s == 0 {
            return Err(ConfigError::LinkRate);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_reservations::RegionId;

    const EXAMPLE: &str = r#"
node_id = 2
data_dir = "/var/lib/ledger"
listen = "0.0.0.0:7001"
control_voters = [1, 2, 3]

[timings]
heartbeat_ms = 300
election_min_ms = 1500
election_max_ms = 3000
rpc_deadline_ms = 2000
link_bytes_per_s = 1048576
snapshot_every_entries = 5000
keep_entries_after_snapshot = 1000

[[nodes]]
id = 1
region = 0
addr = "eu-1:7001"

[[nodes]]
id = 2
region = 1
addr = "us-1:7001"

[[nodes]]
id = 3
region = 2
addr = "ap-1:7001"
"#;

    #[test]
    fn a_config_file_lists_the_regions_and_nodes() {
        let config = ReplicaConfig::from_toml(EXAMPLE).expect("valid");
        assert_eq!(config.node_id, 2);
        assert_eq!(
            config.layout().regions(),
            vec![RegionId(0), RegionId(1), RegionId(2)]
        );
        assert_eq!(config.timings, Timings::default());
        assert_eq!(config.nodes[2].addr, "ap-1:7001");
    }

    #[test]
    fn timings_default_when_left_out() {
        let text = EXAMPLE.replace("[timings]", "[unused]");
        // An unknown table is refused...
        assert!(matches!(
            ReplicaConfig::from_toml(&text),
            Err(ConfigError::Parse(_))
        ));
        // ...and leaving the table out gives the defaults.
        let start = EXAMPLE.find("[timings]").expect("table");
        let end = EXAMPLE.find("[[nodes]]").expect("nodes");
        let text = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
        assert_eq!(
            ReplicaConfig::from_toml(&text).expect("valid").timings,
            Timings::default()
        );
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let cases = [
            (
                EXAMPLE.replace("node_id = 2", "node_id = 9"),
                "not in the layout",
            ),
            (EXAMPLE.replace("id = 3", "id = 2"), "listed twice"),
            (
                EXAMPLE.replace("control_voters = [1, 2, 3]", "control_voters = [7]"),
                "control voter 7",
            ),
            (EXAMPLE.replace("listen", "listne"), "unknown field"),
            (format!("colour = \"blue\"\n{EXAMPLE}"), "unknown field"),
            (
                EXAMPLE.replace("addr = \"eu-1:7001\"", "addr = \"eu-1:7001\"\nweight = 3"),
                "unknown field",
            ),
            (
                EXAMPLE.replace("heartbeat_ms = 300", "heartbeat_ms = 300\njitter_ms = 5"),
                "unknown field",
            ),
            (
                EXAMPLE.replace("region = 2", "region = \"two\""),
                "invalid type",
            ),
            (
                EXAMPLE.replace("election_min_ms = 1500", "election_min_ms = 100"),
                "election timeouts",
            ),
            (
                EXAMPLE.replace("link_bytes_per_s = 1048576", "link_bytes_per_s = 0"),
                "link_bytes_per_s",
            ),
        ];
        for (text, reason) in cases {
            let error = ReplicaConfig::from_toml(&text)
                .expect_err("refused")
                .to_string();
            assert!(error.contains(reason), "{error:?} should say {reason:?}");
        }
    }
}
