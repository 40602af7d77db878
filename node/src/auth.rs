//! Who may call what. A caller shows an API key (`authorization: Bearer
//! <key>`, in gRPC metadata or an HTTP header); the node knows each key it
//! accepts by its SHA-256 only, with the key's role. Every gRPC method and
//! HTTP route is listed below with the roles that may call it: a method or
//! route missing from the lists is refused to every caller, so one added
//! without a role fails closed (and `tests/auth.rs` fails).
//!
//! - `client`: accounts and transfers, lookups, history, the stream;
//! - `operator`: pools (rebalance, policies), account status (freeze,
//!   close); and the lookups and history, to see what it steers (never to
//!   move money);
//! - `node`: Raft, what one node asks another for a client (a command
//!   sent on to the region that decides it, a read index), and membership:
//!   a node added is sent the node key and every region's log, so adding
//!   one takes the power of a node, not an operator's.
//!
//! A call marked as sent on by another node (`x-ledger-forwarded`) needs
//! the node role too, whatever its method's rule.
//!
//! Every role may read the cluster's status: a client learns its region
//! (to mint ids) and its leaders from it. `/metrics` is an operator's or a
//! node's. Health checks and the API's own
//! description are public.
//!
//! A node's settings hold `[auth]`, or `insecure_no_auth = true` (every
//! call goes through, and the node says so when it starts); with neither,
//! the node refuses to start.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tonic::codegen::http::{HeaderMap, Method};
use tonic::metadata::{Ascii, MetadataValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Operator,
    Node,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Client, Role::Operator, Role::Node];

    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Operator => "operator",
            Role::Node => "node",
        }
    }
}

/// What a call must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: health checks and the API's description.
    Public,
    /// A key of one of these roles.
    Roles(&'static [Role]),
}

const CLIENT: Access = Access::Roles(&[Role::Client]);
const OPERATOR: Access = Access::Roles(&[Role::Operator]);
const NODE: Access = Access::Roles(&[Role::Node]);
/// A client's command, or the same sent on by the node that took it.
const CLIENT_OR_NODE: Access = Access::Roles(&[Role::Client, Role::Node]);
/// The metrics: an operator's, or a node's (a scraper holds one of
/// those keys; a client may not make every node walk its pools).
const WATCH: Access = Access::Roles(&[Role::Operator, Role::Node]);
/// A read of accounts and transfers: a client's, or an operator's.
const READ: Access = Access::Roles(&[Role::Client, Role::Operator]);
/// A key of any role: a caller known to this node.
pub const ANY_ROLE: Access = Access::Roles(&Role::ALL);

/// Every gRPC method either port serves, with what it needs.
pub const GRPC: &[(&str, Access)] = &[
    ("/ledger.v1.Ledger/CreateAccounts", CLIENT),
    ("/ledger.v1.Ledger/CreateTransfers", CLIENT_OR_NODE),
    ("/ledger.v1.Ledger/LookupAccounts", READ),
    ("/ledger.v1.Ledger/LookupTransfers", READ),
    ("/ledger.v1.Ledger/AccountHistory", READ),
    ("/ledger.v1.Ledger/StreamTransfers", CLIENT),
    ("/ledger.v1.Admin/ClusterStatus", ANY_ROLE),
    ("/ledger.v1.Admin/ReadIndex", NODE),
    ("/ledger.v1.Admin/Rebalance", OPERATOR),
    ("/ledger.v1.Admin/ChangeAccountStatus", OPERATOR),
    ("/ledger.v1.Admin/SetPoolPolicy", OPERATOR),
    ("/ledger.v1.Admin/AddMember", NODE),
    ("/ledger.v1.Admin/RemoveMember", NODE),
    ("/ledger.internal.v1.RaftTransport/AppendEntries", NODE),
    ("/ledger.internal.v1.RaftTransport/Vote", NODE),
    ("/ledger.internal.v1.RaftTransport/PreVote", NODE),
    ("/ledger.internal.v1.RaftTransport/InstallSnapshot", NODE),
];

/// Whole gRPC services with one rule: health checks are public, server
/// reflection (the API's description) needs any key.
const GRPC_SERVICES: &[(&str, Access)] = &[
    ("/grpc.health.v1.Health/", Access::Public),
    ("/grpc.reflection.v1.ServerReflection/", ANY_ROLE),
];

/// Every HTTP route, as its method and path template, with what it needs.
pub const HTTP: &[(&str, &str, Access)] = &[
    ("POST", "/api/v1/accounts", CLIENT),
    ("GET", "/api/v1/accounts/{id}", READ),
    ("GET", "/api/v1/accounts/{id}/balance", READ),
    ("GET", "/api/v1/accounts/{id}/history", READ),
    ("POST", "/api/v1/transactions/topup", CLIENT),
    ("POST", "/api/v1/transactions/transfer", CLIENT),
    ("POST", "/api/v1/transactions/payment", CLIENT),
    ("POST", "/api/v1/transactions/withdrawal", CLIENT),
    ("POST", "/api/v1/transactions/refund", CLIENT),
    ("POST", "/api/v1/transactions/{id}/capture", CLIENT),
    ("POST", "/api/v1/transactions/{id}/void", CLIENT),
    ("POST", "/api/v1/transactions/batch", CLIENT),
    ("GET", "/api/v1/transactions/{id}", READ),
    ("GET", "/api/v1/events", CLIENT),
    ("GET", "/api/v1/pools/{account}", READ),
    ("POST", "/api/v1/pools/{account}/rebalance", OPERATOR),
    ("PUT", "/api/v1/pools/{account}/policy", OPERATOR),
    ("GET", "/api/v1/cluster", ANY_ROLE),
    ("GET", "/metrics", WATCH),
    ("GET", "/health/live", Access::Public),
    ("GET", "/health/ready", Access::Public),
    ("GET", "/api/docs/openapi.json", Access::Public),
    ("GET", "/api/docs", Access::Public),
];

/// What a gRPC call to `path` needs; `None`: no such method, refused.
pub fn grpc_access(path: &str) -> Option<Access> {
    let exact = GRPC.iter().find(|(known, _)| *known == path);
    let service = || {
        GRPC_SERVICES
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
    };
    exact.or_else(service).map(|(_, access)| *access)
}

/// What an HTTP call of `method` to the route `template` needs; `None`: no
/// such route, refused. A HEAD is the GET of the same route.
pub fn http_access(method: &Method, template: &str) -> Option<Access> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    HTTP.iter()
        .find(|(known_method, known, _)| *known_method == method.as_str() && *known == template)
        .map(|(_, _, access)| *access)
}

/// A node's `[auth]` settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The keys this node accepts.
    pub keys: Vec<KeySetting>,
    /// The key this node shows its peers: one of their `node` keys.
    /// `LEDGER_NODE_KEY` overrides it, so that it need not be in the file.
    #[serde(default)]
    pub node_key: Option<String>,
}

/// Debug output never shows the node key.
impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("keys", &self.keys)
            .field("node_key", &self.node_key.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// A key a node accepts: the SHA-256 of the key (64 hex digits; `ledger
/// key` makes a key and prints it), its role, and a name for the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySetting {
    pub name: String,
    pub role: Role,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("key {name:?}: sha256 must be 64 hex digits")]
    Digest { name: String },
    #[error("key {name:?}: its sha256 is also another key's")]
    Duplicate { name: String },
    #[error(
        "no node key: set auth.node_key or LEDGER_NODE_KEY to a key whose sha256 the other \
         nodes list with role \"node\""
    )]
    NoNodeKey,
    #[error("the node key {0}")]
    NodeKey(ledger_replication::InvalidKey),
    #[error("no [auth] and no insecure_no_auth = true: this node would let every call through")]
    Missing,
}

/// The keys a node accepts, by digest.
#[derive(Debug)]
struct Keys {
    by_digest: HashMap<[u8; 32], (Role, String)>,
}

/// A call this node refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No key, a malformed one, or one this node does not know.
    Unauthenticated(&'static str),
    /// A known key whose role may not make this call (or no such call).
    PermissionDenied { role: Role },
}

impl Denied {
    /// The stable code: `UNAUTHENTICATED` or `PERMISSION_DENIED`.
    pub fn code(&self) -> &'static str {
        match self {
            Denied::Unauthenticated(_) => "UNAUTHENTICATED",
            Denied::PermissionDenied { .. } => "PERMISSION_DENIED",
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Denied::Unauthenticated(why) => (*why).to_owned(),
            Denied::PermissionDenied { role } => {
                format!("a {} key may not make this call", role.name())
            }
        }
    }
}

/// Who may call this node, and how many calls it refused.
#[derive(Debug, Default)]
pub struct Auth {
    /// `None`: authentication is off, every call goes through.
    keys: Option<Keys>,
    /// The `authorization` value this node shows its peers.
    node_key: Option<MetadataValue<Ascii>>,
    /// Whether a gRPC call with a node key must also show a certificate.
    node_certificates: bool,
    unauthenticated: AtomicU64,
    permission_denied: AtomicU64,
}

impl Auth {
    /// Every call goes through.
    pub fn open() -> Self {
        Self::default()
    }

    /// From a node's `[auth]` settings.
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthError> {
        let mut by_digest = HashMap::new();
        for key in &settings.keys {
            let digest = digest_of_hex(&key.sha256).ok_or_else(|| AuthError::Digest {
                name: key.name.clone(),
            })?;
            if by_digest
                .insert(digest, (key.role, key.name.clone()))
                .is_some()
            {
                return Err(AuthError::Duplicate {
                    name: key.name.clone(),
                });
            }
        }
        let node_key = settings.node_key.as_deref().ok_or(AuthError::NoNodeKey)?;
        let node_key = ledger_replication::bearer(node_key).map_err(AuthError::NodeKey)?;
        Ok(Self {
            keys: Some(Keys { by_digest }),
            node_key: Some(node_key),
            ..Self::default()
        })
    }

    pub fn is_on(&self) -> bool {
        self.keys.is_some()
    }

    /// What this node shows its peers, if authentication is on.
    pub fn node_key(&self) -> Option<&MetadataValue<Ascii>> {
        self.node_key.as_ref()
    }

    /// Whether a call that needs `access` (`None`: no such call) goes
    /// through with this `authorization` header; a refusal is counted.
    pub fn check(
        &self,
        access: Option<Access>,
        authorization: Option<&[u8]>,
    ) -> Result<(), Denied> {
        self.counted(self.role_for(access, authorization).map(|_| ()))
    }

    /// Requires a verified certificate of every gRPC call made with a node
    /// key ([`crate::tls`] on).
    pub fn with_node_certificates(mut self) -> Self {
        self.node_certificates = true;
        self
    }

    /// The role of a call that needs `access` and goes through with this
    /// `authorization` header (`None`: a public call, or authentication off).
    fn role_for(
        &self,
        access: Option<Access>,
        authorization: Option<&[u8]>,
    ) -> Result<Option<Role>, Denied> {
        let Some(keys) = &self.keys else {
            return Ok(None);
        };
        match access {
            Some(Access::Public) => Ok(None),
            _ => keys.role_of(authorization).and_then(|role| match access {
                Some(Access::Roles(roles)) if roles.contains(&role) => Ok(Some(role)),
                _ => Err(Denied::PermissionDenied { role }),
            }),
        }
    }

    /// `decided`, with a refusal counted.
    fn counted(&self, decided: Result<(), Denied>) -> Result<(), Denied> {
        match &decided {
            Err(Denied::Unauthenticated(_)) => &self.unauthenticated,
            Err(Denied::PermissionDenied { .. }) => &self.permission_denied,
            Ok(()) => return decided,
        }
        .fetch_add(1, Ordering::Relaxed);
        decided
    }

    /// Calls refused for want of a known key, and for a key of the wrong role.
    pub fn refused(&self) -> (u64, u64) {
        (
            self.unauthenticated.load(Ordering::Relaxed),
            self.permission_denied.load(Ordering::Relaxed),
        )
    }
}

impl Keys {
    fn role_of(&self, authorization: Option<&[u8]>) -> Result<Role, Denied> {
        let value = authorization.ok_or(Denied::Unauthenticated(
            "this node needs an API key: authorization: Bearer <key>",
        ))?;
        // The scheme's case does not matter (RFC 9110, 11.1).
        let key = value
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .and_then(|_| value.get(7..))
            .ok_or(Denied::Unauthenticated(
                "the authorization header is not Bearer <key>",
            ))?;
        // Looked up by digest: how long the lookup takes says nothing
        // about how close a wrong key came to a right one.
        let digest: [u8; 32] = Sha256::digest(key).into();
        self.by_digest
            .get(&digest)
            .map(|(role, _)| *role)
            .ok_or(Denied::Unauthenticated("this node knows no such key"))
    }
}

/// The gRPC servers' gate: each call needs what [`GRPC`] lists for it.
impl ledger_replication::Gate for Auth {
    fn admit(&self, path: &str, headers: &HeaderMap, certified: bool) -> Result<(), tonic::Status> {
        let authorization = headers.get("authorization").map(|value| value.as_bytes());
        // Only a node sends a call on: a caller that says it is one shows
        // a node's key.
        let access = match headers.contains_key(crate::forward::FORWARDED) {
            true => grpc_access(path).map(|_| NODE),
            false => grpc_access(path),
        };
        let decided = self
            .role_for(access, authorization)
            .and_then(|role| match role {
                // With mutual TLS, a node key alone (taken from a node,
                // say) is not a node: it must come with a node's certificate.
                Some(Role::Node) if self.node_certificates && !certified => Err(
                    Denied::Unauthenticated("a node's key needs a node's certificate (mutual TLS)"),
                ),
                _ => Ok(()),
            });
        self.counted(decided).map_err(|denied| {
            let message = format!("{}: {}", denied.code(), denied.reason());
            match denied {
                Denied::Unauthenticated(_) => tonic::Status::unauthenticated(message),
                Denied::PermissionDenied { .. } => tonic::Status::permission_denied(message),
            }
        })
    }

    fn answered(&self, path: &str, code: tonic::Code, elapsed: std::time::Duration) {
        crate::metrics::grpc_answered(path, code, elapsed);
    }
}

/// A fresh key: 32 bytes of the operating system's generator, as 64 hex digits.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex(&bytes))
}

/// The SHA-256 of `key`, as a node's settings list it.
pub fn digest_hex(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn digest_of_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(keys: &[(&str, Role)]) -> AuthSettings {
        AuthSettings {
            keys: keys
                .iter()
                .map(|(key, role)| KeySetting {
                    name: format!("{}-key", role.name()),
                    role: *role,
                    sha256: digest_hex(key),
                })
                .collect(),
            node_key: Some("node-secret".into()),
        }
    }

    fn bearer(key: &str) -> Vec<u8> {
        format!("Bearer {key}").into_bytes()
    }

    #[test]
    fn a_key_goes_through_where_its_role_may_go_and_each_refusal_is_counted() {
        let auth =
            Auth::new(&settings(&[("c", Role::Client), ("o", Role::Operator)])).expect("valid");
        let transfers = grpc_access("/ledger.v1.Ledger/CreateTransfers");
        assert_eq!(auth.check(transfers, Some(&bearer("c"))), Ok(()));
        assert_eq!(
            auth.check(transfers, Some(&bearer("o"))),
            Err(Denied::PermissionDenied {
                role: Role::Operator
            })
        );
        assert!(matches!(
            auth.check(transfers, Some(&bearer("x"))),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.check(transfers, Some(b"c")),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.check(transfers, None),
            Err(Denied::Unauthenticated(_))
        ));
        assert_eq!(auth.refused(), (3, 1));
        // No such method: refused to every role.
        assert!(auth.check(None, Some(&bearer("o"))).is_err());
        assert_eq!(auth.check(Some(Access::Public), None), Ok(()));
    }

    #[test]
    fn with_authentication_off_every_call_goes_through() {
        let open = Auth::open();
        assert!(!open.is_on());
        assert_eq!(open.check(None, None), Ok(()));
        assert_eq!(open.refused(), (0, 0));
    }

    #[test]
    fn settings_that_cannot_work_are_refused_with_the_reason() {
        let mut bad = settings(&[("c", Role::Client)]);
        bad.keys[0].sha256 = "abc".into();
        assert!(matches!(Auth::new(&bad), Err(AuthError::Digest { .. })));
        let mut twice = settings(&[("c", Role::Client), ("c", Role::Operator)]);
        assert!(matches!(
            Auth::new(&twice),
            Err(AuthError::Duplicate { .. })
        ));
        twice.keys.pop();
        twice.node_key = None;
        assert_eq!(Auth::new(&twice).err(), Some(AuthError::NoNodeKey));
        twice.node_key = Some("two words".into());
        assert!(matches!(Auth::new(&twice), Err(AuthError::NodeKey(_))));
    }

    #[test]
    fn a_new_key_is_64_hex_digits_and_each_is_new() {
        let (one, two) = (new_key().expect("a key"), new_key().expect("a key"));
        assert_eq!(one.len(), 64);
        assert!(one.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(one, two);
        assert_eq!(
            digest_of_hex(&digest_hex(&one)).map(|digest| hex(&digest)),
            Some(digest_hex(&one))
        );
    }

    /// The roles as operators are told them (module docs), method by
    /// method: what the table must say whatever else changes in it.
    #[test]
    fn each_role_reaches_what_it_is_for_and_nothing_else() {
        let may = |role: Role, path: &str| matches!(grpc_access(path), Some(Access::Roles(roles)) if roles.contains(&role));
        let ledger = |method: &str| format!("/ledger.v1.Ledger/{method}");
        let admin = |method: &str| format!("/ledger.v1.Admin/{method}");
        let raft = |method: &str| format!("/ledger.internal.v1.RaftTransport/{method}");
        for method in ["CreateAccounts", "CreateTransfers", "StreamTransfers"] {
            assert!(may(Role::Client, &ledger(method)), "{method}");
            assert!(!may(Role::Operator, &ledger(method)), "{method}");
        }
        for method in ["LookupAccounts", "LookupTransfers", "AccountHistory"] {
            assert!(may(Role::Client, &ledger(method)), "{method}");
            assert!(may(Role::Operator, &ledger(method)), "{method}");
            assert!(!may(Role::Node, &ledger(method)), "{method}");
        }
        for method in ["Rebalance", "SetPoolPolicy", "ChangeAccountStatus"] {
            assert!(may(Role::Operator, &admin(method)), "{method}");
            assert!(!may(Role::Client, &admin(method)), "{method}");
            assert!(!may(Role::Node, &admin(method)), "{method}");
        }
        for method in ["AddMember", "RemoveMember", "ReadIndex"] {
            assert!(may(Role::Node, &admin(method)), "{method}");
            assert!(!may(Role::Client, &admin(method)), "{method}");
            assert!(!may(Role::Operator, &admin(method)), "{method}");
        }
        for role in Role::ALL {
            assert!(may(role, &admin("ClusterStatus")), "{role:?}");
        }
        for method in ["AppendEntries", "Vote", "PreVote", "InstallSnapshot"] {
            assert!(may(Role::Node, &raft(method)), "{method}");
            assert!(!may(Role::Client, &raft(method)), "{method}");
            assert!(!may(Role::Operator, &raft(method)), "{method}");
        }
        let put = Method::PUT;
        assert_eq!(
            http_access(&put, "/api/v1/pools/{account}/policy"),
            Some(OPERATOR)
        );
        assert_eq!(
            http_access(&Method::GET, "/health/ready"),
            Some(Access::Public)
        );
        assert_eq!(http_access(&Method::GET, "/api/v1/nowhere"), None);
    }

    /// Each HTTP route calls one gRPC method (or none, for the public
    /// ones): a role the method refuses may not reach it over HTTP either.
    #[test]
    fn each_route_takes_no_role_its_grpc_method_refuses() {
        let method_of = |verb: &str, template: &str| -> Option<&str> {
            Some(match (verb, template) {
                ("POST", "/api/v1/accounts") => "/ledger.v1.Ledger/CreateAccounts",
                ("GET", "/api/v1/accounts/{id}" | "/api/v1/accounts/{id}/balance") => {
                    "/ledger.v1.Ledger/LookupAccounts"
                }
                ("GET", "/api/v1/pools/{account}") => "/ledger.v1.Ledger/LookupAccounts",
                ("GET", "/api/v1/accounts/{id}/history") => "/ledger.v1.Ledger/AccountHistory",
                ("GET", "/api/v1/transactions/{id}") => "/ledger.v1.Ledger/LookupTransfers",
                ("POST", path) if path.starts_with("/api/v1/transactions/") => {
                    "/ledger.v1.Ledger/CreateTransfers"
                }
                ("GET", "/api/v1/events") => "/ledger.v1.Ledger/StreamTransfers",
                ("POST", "/api/v1/pools/{account}/rebalance") => "/ledger.v1.Admin/Rebalance",
                ("PUT", "/api/v1/pools/{account}/policy") => "/ledger.v1.Admin/SetPoolPolicy",
                ("GET", "/api/v1/cluster" | "/metrics") => "/ledger.v1.Admin/ClusterStatus",
                _ => return None,
            })
        };
        for (verb, template, access) in HTTP {
            match (method_of(verb, template), access) {
                (None, Access::Public) => {}
                (Some(path), Access::Roles(roles)) => {
                    let Some(Access::Roles(allowed)) = grpc_access(path) else {
                        panic!("{path} has no roles");
                    };
                    for role in *roles {
                        assert!(
                            allowed.contains(role),
                            "{verb} {template} lets {role:?} do {path}"
                        );
                    }
                }
                other => panic!("{verb} {template}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_scheme_is_read_in_any_case_and_a_forwarded_call_needs_a_node_key() {
        use ledger_replication::Gate;
        let auth = Auth::new(&settings(&[("c", Role::Client), ("n", Role::Node)])).expect("valid");
        let transfers = grpc_access("/ledger.v1.Ledger/CreateTransfers");
        assert_eq!(auth.check(transfers, Some(b"bearer c")), Ok(()));
        assert_eq!(auth.check(transfers, Some(b"BEARER c")), Ok(()));
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer c".parse().expect("a value"));
        let path = "/ledger.v1.Ledger/CreateTransfers";
        assert!(auth.admit(path, &headers, false).is_ok());
        headers.insert(crate::forward::FORWARDED, "1".parse().expect("a value"));
        let refused = auth
            .admit(path, &headers, false)
            .expect_err("a client is not a node");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        headers.insert("authorization", "Bearer n".parse().expect("a value"));
        assert!(auth.admit(path, &headers, false).is_ok());
        // With mutual TLS, a node key needs a certificate; a client's does not.
        let tls = Auth::new(&settings(&[("c", Role::Client), ("n", Role::Node)]))
            .expect("valid")
            .with_node_certificates();
        let refused = tls
            .admit(path, &headers, false)
            .expect_err("a node key alone");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(tls.admit(path, &headers, true).is_ok());
        headers.remove(crate::forward::FORWARDED);
        headers.insert("authorization", "Bearer c".parse().expect("a value"));
        assert!(tls.admit(path, &headers, false).is_ok());
        assert_eq!(
            http_access(&Method::HEAD, "/health/live"),
            Some(Access::Public)
        );
    }

    #[test]
    fn the_rules_name_each_method_and_route_once() {
        let mut paths: Vec<&str> = GRPC.iter().map(|(path, _)| *path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), GRPC.len());
        let mut routes: Vec<(&str, &str)> = HTTP.iter().map(|(m, p, _)| (*m, *p)).collect();
        routes.sort_unstable();
        routes.dedup();
        assert_eq!(routes.len(), HTTP.len());
    }
}
