//! A node's settings: the API addresses and its replication settings, from
//! a TOML file; `LEDGER_NODE_ID`, `LEDGER_API_LISTEN`, `LEDGER_HTTP_LISTEN`,
//! `LEDGER_RAFT_LISTEN`, `LEDGER_DATA_DIR` and `LEDGER_NODE_KEY` override the file, so that
//! every node of a cluster can read one file: a Compose service sets its
//! node's id; a Kubernetes pod, which cannot, sets `LEDGER_NODE_NAME` to its
//! own name and is the node of the layout whose Raft address has that host
//! name (`ledger-eu-0` is `ledger-eu-0.ledger-eu.ledger.svc...:7000`).

use crate::auth::{Auth, AuthError, AuthSettings};
use ledger_replication::{ConfigError, ReplicaConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// Where the public and admin gRPC APIs listen.
    pub api_listen: String,
    /// Where the HTTP/JSON API listens; it is not served when left out.
    #[serde(default)]
    pub http_listen: Option<String>,
    /// HTTP requests answered at once (an open event stream is one); past
    /// it a request is refused with 429 at once.
    #[serde(default = "http_requests_max_default")]
    pub http_requests_max: usize,
    /// Lets tests cut this node off from peers listed in
    /// `<data_dir>/blocked-peers`. Off unless set; never for production.
    #[serde(default)]
    pub fault_injection: bool,
    /// How long an account actor parked by a linked chain waits to be
    /// resumed before it decides again (and resets the gate, so that nothing
    /// decided from then on counts on the chain either way).
    #[serde(default = "park_deadline_ms_default")]
    pub park_deadline_ms: u64,
    /// Compares this node's clock with its peers' every second and refuses
    /// to lead while it is off past the drift limit (on by default; tests
    /// of a leader whose clock jumped turn it off).
    #[serde(default = "clock_watch_default")]
    pub clock_watch: bool,
    /// Breaks one invariant on purpose (tests of the chaos suite's
    /// checkers); exists only with the `chaos-bite` feature, so a release
    /// build refuses it as an unknown field.
    #[cfg(feature = "chaos-bite")]
    #[serde(default)]
    pub chaos_bite: Option<crate::bite::Bite>,
    /// The API keys this node accepts and the one it shows its peers
    /// ([`crate::auth`]). Required, unless `insecure_no_auth` says that
    /// every call may go through.
    #[serde(default)]
    pub auth: Option<AuthSettings>,
    /// Lets every call through, Raft's included: for tests and closed
    /// networks only. A node with neither this nor `[auth]` refuses to
    /// start, so that no node is open by a setting left out.
    #[serde(default)]
    pub insecure_no_auth: bool,
    /// Mutual TLS between nodes, and TLS for clients ([`crate::tls`]); off
    /// unless set, and then the Raft port takes only the cluster's nodes.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsSettings>,
    /// Where traces go ([`crate::telemetry`]); off unless set.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetrySettings,
    pub replication: ReplicaConfig,
}

fn http_requests_max_default() -> usize {
    NodeSettings::HTTP_REQUESTS_MAX
}

fn clock_watch_default() -> bool {
    true
}

fn park_deadline_ms_default() -> u64 {
    NodeSettings::PARK_DEADLINE_MS
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The reason is in the message, not a source, so that it is said once.
    #[error("cannot read {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error(transparent)]
    Replication(#[from] ConfigError),
    #[error("invalid configuration: auth: {0}")]
    Auth(#[from] AuthError),
    #[error("invalid configuration: LEDGER_NODE_NAME {name:?} {reason}")]
    NodeName { name: String, reason: &'static str },
    #[error("invalid configuration: {field} {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

impl NodeSettings {
    /// The default of [`NodeSettings::http_requests_max`].
    pub const HTTP_REQUESTS_MAX: usize = 512;
    /// The most [`NodeSettings::http_requests_max`] may be.
    const HTTP_REQUESTS_MAX_MAX: usize = 100_000;
    /// The default of [`NodeSettings::park_deadline_ms`].
    pub const PARK_DEADLINE_MS: u64 = 30_000;
    /// The longest park deadline accepted: an hour.
    const PARK_DEADLINE_MS_MAX: u64 = 3_600_000;

    /// Parses settings, then applies overrides from `env` (a lookup, so
    /// tests need not touch the process environment).
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let mut settings: Self = toml::from_str(text)?;
        match (env("LEDGER_NODE_ID"), env("LEDGER_NODE_NAME")) {
            (Some(_), Some(_)) => {
                return Err(SettingsError::Invalid {
                    field: "LEDGER_NODE_ID",
                    reason: "and LEDGER_NODE_NAME are both set; set one",
                });
            }
            (Some(value), None) => {
                settings.replication.node_id =
                    value.trim().parse().map_err(|_| SettingsError::Invalid {
                        field: "LEDGER_NODE_ID",
                        reason: "must be a node id of the layout (a whole number)",
                    })?;
            }
            (None, Some(name)) => settings.replication.node_id = settings.node_named(&name)?,
            (None, None) => {}
        }
        if settings.replication.node_id == 0 {
            return Err(SettingsError::Invalid {
                field: "node_id",
                reason: "is 0: these settings name no node (a file shared by every node); \
                         set LEDGER_NODE_ID or LEDGER_NODE_NAME",
            });
        }
        if let Some(value) = env("LEDGER_API_LISTEN") {
            settings.api_listen = value;
        }
        if let Some(value) = env("LEDGER_HTTP_LISTEN") {
            settings.http_listen = Some(value);
        }
        if let Some(value) = env("LEDGER_RAFT_LISTEN") {
            settings.replication.listen = value;
        }
        if let Some(value) = env("LEDGER_DATA_DIR") {
            settings.replication.data_dir = PathBuf::from(value);
        }
        match (&mut settings.auth, settings.insecure_no_auth) {
            (Some(auth), false) => {
                if let Some(key) = env("LEDGER_NODE_KEY") {
                    auth.node_key = Some(key);
                }
                Auth::new(auth)?;
            }
            (None, true) if env("LEDGER_NODE_KEY").is_some() => {
                return Err(SettingsError::Invalid {
                    field: "LEDGER_NODE_KEY",
                    reason: "is set but insecure_no_auth = true lets every call through: \
                             list the keys in [auth] instead",
                });
            }
            (None, true) => {}
            (Some(_), true) => {
                return Err(SettingsError::Invalid {
                    field: "insecure_no_auth",
                    reason: "and [auth] are both set; choose one",
                });
            }
            (None, false) => {
                return Err(SettingsError::Invalid {
                    field: "auth",
                    reason: "is missing: list the API keys this node takes in [auth] \
                             (docs/operations.md), or set insecure_no_auth = true to let \
                             every call through",
                });
            }
        }
        settings.replication.validate()?;
        settings
            .telemetry
            .validate()
            .map_err(|(field, reason)| SettingsError::Invalid { field, reason })?;
        if !(1..=Self::HTTP_REQUESTS_MAX_MAX).contains(&settings.http_requests_max) {
            return Err(SettingsError::Invalid {
                field: "http_requests_max",
                reason: "must be from 1 to 100000",
            });
        }
        if !(1..=Self::PARK_DEADLINE_MS_MAX).contains(&settings.park_deadline_ms) {
            return Err(SettingsError::Invalid {
                field: "park_deadline_ms",
                reason: "must be from 1 ms to an hour",
            });
        }
        Ok(settings)
    }

    /// The id of the layout's node whose Raft address has host `name`
    /// exactly, or else whose host name's first label is `name` (a pod's
    /// name in its DNS name); an IP address is matched whole only.
    fn node_named(&self, name: &str) -> Result<u64, SettingsError> {
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(SettingsError::Invalid {
                field: "LEDGER_NODE_NAME",
                reason: "is empty",
            });
        }
        let host = |addr: &str| {
            let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        };
        let nodes = &self.replication.nodes;
        let exact: Vec<u64> = nodes
            .iter()
            .filter(|node| host(&node.addr) == name)
            .map(|node| node.id)
            .collect();
        let named = if exact.is_empty() {
            nodes
                .iter()
                .filter(|node| {
                    let host = host(&node.addr);
                    host.parse::<std::net::IpAddr>().is_err()
                        && host.split('.').next() == Some(name.as_str())
                })
                .map(|node| node.id)
                .collect()
        } else {
            exact
        };
        match named.as_slice() {
            [id] => Ok(*id),
            [] => Err(SettingsError::NodeName {
                name,
                reason: "names no node of the layout (no Raft address has that host)",
            }),
            _ => Err(SettingsError::NodeName {
                name,
                reason: "names several nodes of the layout",
            }),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|reason| SettingsError::Read {
            path: path.to_owned(),
            reason,
        })?;
        Self::from_toml(&text, |name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
api_listen = "127.0.0.1:7101"
insecure_no_auth = true

[replication]
node_id = 1
data_dir = "/tmp/ledger-1"
listen = "127.0.0.1:7001"

[[replication.nodes]]
id = 1
region = 0
addr = "127.0.0.1:7001"
api = "127.0.0.1:7101"
"#;

    #[test]
    fn settings_parse_and_the_environment_overrides_them() {
        let settings = NodeSettings::from_toml(TEXT, |_| None).expect("valid");
        assert_eq!(settings.api_listen, "127.0.0.1:7101");
        let overridden = NodeSettings::from_toml(TEXT, |name| {
            (name == "LEDGER_API_LISTEN").then(|| "0.0.0.0:9000".to_owned())
        })
        .expect("valid");
        assert_eq!(overridden.api_listen, "0.0.0.0:9000");
        let env = |wanted: &'static str| {
            move |name: &str| (name == "LEDGER_NODE_ID").then(|| wanted.to_owned())
        };
        let three = TEXT.replace("[[replication.nodes]]", "[[replication.nodes]]\nid = 3\nregion = 1\naddr = \"127.0.0.1:7003\"\napi = \"127.0.0.1:7103\"\n\n[[replication.nodes]]");
        let named = NodeSettings::from_toml(&three, env("3")).expect("valid");
        assert_eq!(named.replication.node_id, 3);
        let by_name = |name: &'static str| {
            move |key: &str| (key == "LEDGER_NODE_NAME").then(|| name.to_owned())
        };
        let pods = three.replace("127.0.0.1:7003", "ledger-us-0.ledger-us.ledger.svc:7000");
        let pod = NodeSettings::from_toml(&pods, by_name("ledger-us-0")).expect("valid");
        assert_eq!(pod.replication.node_id, 3);
        let host = NodeSettings::from_toml(&pods, by_name("ledger-us-0.ledger-us.ledger.svc"));
        assert_eq!(host.expect("valid").replication.node_id, 3);
        let upper = NodeSettings::from_toml(&pods, by_name(" LEDGER-US-0 ")).expect("valid");
        assert_eq!(upper.replication.node_id, 3);
        let error = NodeSettings::from_toml(&pods, by_name("")).expect_err("refused");
        assert!(error.to_string().contains("empty"), "{error}");
        // An address is matched whole, never by its first number.
        let error = NodeSettings::from_toml(&three, by_name("127")).expect_err("refused");
        assert!(error.to_string().contains("names no node"), "{error}");
        let both = |key: &str| match key {
            "LEDGER_NODE_ID" => Some("3".to_owned()),
            "LEDGER_NODE_NAME" => Some("ledger-us-0".to_owned()),
            _ => None,
        };
        let error = NodeSettings::from_toml(&pods, both).expect_err("refused");
        assert!(error.to_string().contains("set one"), "{error}");
        for name in ["ledger-us-1", "ledger-us"] {
            let error = NodeSettings::from_toml(&pods, by_name(name)).expect_err("refused");
            assert!(
                error.to_string().contains("names no node"),
                "{name}: {error}"
            );
        }
        // Two nodes on one host (ports apart) cannot be told apart by name.
        let error = NodeSettings::from_toml(&three, by_name("127.0.0.1")).expect_err("refused");
        assert!(error.to_string().contains("several"), "{error}");
        for (wanted, reason) in [("three", "whole number"), ("4", "not in the layout")] {
            let error = NodeSettings::from_toml(&three, env(wanted))
                .expect_err("refused")
                .to_string();
            assert!(error.contains(reason), "{error} should say {reason}");
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        for (text, reason) in [
            (TEXT.replace("api_listen", "api_lisen"), "unknown field"),
            (
                TEXT.replace("node_id = 1", "node_id = 4"),
                "not in the layout",
            ),
            (format!("{TEXT}\nextra = 1"), "unknown field"),
            (
                format!("park_deadline_ms = 0\n{TEXT}"),
                "park_deadline_ms must be",
            ),
            // No node is open by a setting left out.
            (
                TEXT.replace("insecure_no_auth = true\n", ""),
                "auth is missing",
            ),
            (
                format!("{TEXT}\n[auth]\nkeys = []\nnode_key = \"k\"\n"),
                "choose one",
            ),
        ] {
            let error = NodeSettings::from_toml(&text, |_| None)
                .expect_err("refused")
                .to_string();
            assert!(error.contains(reason), "{error} should say {reason}");
        }
    }

    #[cfg(feature = "chaos-bite")]
    #[test]
    fn a_chaos_bite_is_one_of_its_modes() {
        use crate::bite::Bite;
        let with = |value: &str| format!("chaos_bite = \"{value}\"\n{TEXT}");
        let settings = NodeSettings::from_toml(&with("skip-pool-check"), |_| None).expect("valid");
        assert_eq!(settings.chaos_bite, Some(Bite::SkipPoolCheck));
        for bite in Bite::ALL {
            let settings = NodeSettings::from_toml(&with(bite.name()), |_| None).expect("valid");
            assert_eq!(settings.chaos_bite, Some(bite));
        }
        let none = NodeSettings::from_toml(TEXT, |_| None).expect("valid");
        assert_eq!(none.chaos_bite, None);
        let error = NodeSettings::from_toml(&with("eat-money"), |_| None)
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("unknown variant `eat-money`")
                && error.contains("`skip-pool-check`, `grant-twice`, `answer-before-commit`")
                && error.contains("`decide-retry-elsewhere`"),
            "{error}"
        );
    }

    #[cfg(not(feature = "chaos-bite"))]
    #[test]
    fn a_chaos_bite_is_refused_without_the_feature() {
        let text = format!("chaos_bite = \"skip-pool-check\"\n{TEXT}");
        let error = NodeSettings::from_toml(&text, |_| None)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("unknown field `chaos_bite`"), "{error}");
    }

    #[test]
    fn the_example_in_deploy_is_valid() {
        let text = include_str!("../../deploy/config/three-regions.node-1.toml");
        let settings = NodeSettings::from_toml(text, |_| None).expect("the example parses");
        assert_eq!(settings.replication.nodes.len(), 3);
        assert!(
            settings
                .replication
                .nodes
                .iter()
                .all(|node| !node.api.is_empty())
        );
    }

    /// Every node of the Compose and Kubernetes clusters finds itself in
    /// the settings it is given, the way its container says who it is.
    #[test]
    fn every_deployed_node_finds_itself() {
        let compose = [
            (include_str!("../../deploy/compose/one-per-region.toml"), 3),
            (
                include_str!("../../deploy/compose/three-per-region.toml"),
                9,
            ),
        ];
        for (text, nodes) in compose {
            // A shared file names no node: a container that does not say
            // which it is is refused.
            let error = NodeSettings::from_toml(text, |_| None).expect_err("refused");
            assert!(error.to_string().contains("name no node"), "{error}");
            let first = |key: &str| (key == "LEDGER_NODE_ID").then(|| "1".to_owned());
            let settings = NodeSettings::from_toml(text, first).expect("parses");
            assert_eq!(settings.replication.nodes.len(), nodes);
            for node in &settings.replication.nodes {
                let id = node.id.to_string();
                let env = |key: &str| (key == "LEDGER_NODE_ID").then(|| id.clone());
                let found = NodeSettings::from_toml(text, env).expect("its id");
                assert_eq!(found.replication.node_id, node.id);
                assert!(node.addr.starts_with("ledger-") && !node.http.is_empty());
            }
        }
        // The ConfigMap holds the file indented under `ledger.toml: |`.
        let configmap = include_str!("../../deploy/k8s/base/configmap.yaml");
        let text: String = configmap
            .lines()
            .skip_while(|line| line.trim() != "ledger.toml: |")
            .skip(1)
            .map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line)))
            .collect();
        let first = |key: &str| (key == "LEDGER_NODE_NAME").then(|| "ledger-eu-0".to_owned());
        let settings = NodeSettings::from_toml(&text, first).expect("the ConfigMap's file");
        assert_eq!(settings.replication.nodes.len(), 9);
        assert!(
            NodeSettings::from_toml(&text, |_| None).is_err(),
            "no node named"
        );
        for (region, name) in ["eu", "us", "ap"].iter().enumerate() {
            for ordinal in 0..3 {
                let pod = format!("ledger-{name}-{ordinal}");
                let env = |key: &str| (key == "LEDGER_NODE_NAME").then(|| pod.clone());
                let found = NodeSettings::from_toml(&text, env).expect("the pod's node");
                let node = found.replication.node_id;
                assert_eq!(node, region as u64 * 100 + ordinal + 1, "{pod}");
            }
        }
    }
}
