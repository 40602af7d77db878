//! A client of the public API, for the CLI, `ledger dev --demo` and tests.
//! It follows NOT_LEADER redirects and bounds every call with a deadline.

use ledger_proto::v1 as api;
use ledger_proto::v1::admin_client::AdminClient;
use ledger_proto::v1::ledger_client::LedgerClient;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Deadline of one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed for one call, at most.
const REDIRECTS_MAX: usize = 5;
/// How long a call keeps retrying while no leader is known.
const NO_LEADER_WAIT: Duration = Duration::from_secs(15);
/// How long a call waits before asking again while no leader is known.
const NO_LEADER_RETRY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {address}: {reason}")]
    Connect { address: String, reason: String },
    /// A call the server refused or that failed on the way. Shown as its
    /// code and message, once ([`refusal`]); it names no source, so that a
    /// chain of causes (`{:#}`) does not print the status a second time.
    #[error("{}", refusal(.0))]
    Status(tonic::Status),
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        Self::Status(status)
    }
}

/// A status as a person reads it: `CODE: message`. The code is the stable
/// one the server puts first in its messages (`INVALID_AMOUNT: ...`), else
/// the gRPC code's name (`UNAVAILABLE: ...`); then the causes of a failure
/// on the way (a transport error's), each once.
pub fn refusal(status: &tonic::Status) -> String {
    let message = status.message();
    let mut line = if starts_with_code(message) {
        message.to_owned()
    } else if message.is_empty() {
        code_name(status.code()).to_owned()
    } else {
        format!("{}: {message}", code_name(status.code()))
    };
    if let Some(source) = std::error::Error::source(status) {
        push_causes(&mut line, source);
    }
    line
}

/// How far a read's node had applied each region's log: `(region, index)`
/// in region order, as two views of the cluster are compared.
pub fn applied_by_region(watermarks: &[api::Watermark]) -> Vec<(u32, u64)> {
    let mut applied: Vec<(u32, u64)> = watermarks
        .iter()
        .map(|mark| (mark.region, mark.applied_index))
        .collect();
    applied.sort_unstable();
    applied
}

/// Whether a message opens with a stable code (or is one).
fn starts_with_code(message: &str) -> bool {
    crate::api::split_code(message).0.is_some()
}

/// The name the gRPC protocol gives a code.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Appends `error` and its causes to `line`, each after a colon, leaving
/// out any already in it: tonic and hyper often repeat a cause's text in
/// the error that wraps it.
fn push_causes(line: &mut String, error: &(dyn std::error::Error + 'static)) {
    let mut cause = Some(error);
    while let Some(error) = cause {
        let text = error.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = error.source();
    }
}

/// An error with its causes ("transport error" alone says little).
pub(crate) fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    if let Some(source) = error.source() {
        push_causes(&mut line, source);
    }
    line
}

/// Mints transfer ids that the region of one node decides (decision 0009:
/// an id's high half names its region), so that a client's transfers are
/// decided where it sends them, never sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minter {
    index: usize,
    regions: usize,
}

impl Minter {
    /// For the node that answered `status`.
    pub fn of(status: &api::ClusterStatusResponse) -> Self {
        Self::of_region(status, status.region).unwrap_or(Self {
            index: 0,
            regions: 1,
        })
    }

    /// For `region` of the cluster that `status` describes, if it has it.
    pub fn of_region(status: &api::ClusterStatusResponse, region: u32) -> Option<Self> {
        let mut regions: Vec<u32> = status.nodes.iter().map(|node| node.region).collect();
        regions.sort_unstable();
        regions.dedup();
        Some(Self {
            index: regions.binary_search(&region).ok()?,
            regions: regions.len(),
        })
    }

    /// The id nearest `raw` that the node's region decides.
    pub fn id(&self, raw: u128) -> String {
        crate::ids::format(
            ledger_reservations::TransferId(raw)
                .minted_for(self.index, self.regions)
                .0,
        )
    }
}

/// Puts the caller's key (`authorization: Bearer <key>`) on every call,
/// and the caller's trace (`traceparent`) when it is recorded.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(key) = &self.0 {
            request.metadata_mut().insert("authorization", key.clone());
        }
        if let Some(parent) = crate::telemetry::traceparent()
            .and_then(|parent| MetadataValue::<Ascii>::try_from(parent).ok())
        {
            request.metadata_mut().insert("traceparent", parent);
        }
        Ok(request)
    }
}

type Keyed = InterceptedService<Channel, Bearer>;

/// How a client reaches a node: each call's deadline, the key it shows,
/// and TLS (the CA it trusts, and a certificate of its own for a node).
#[derive(Clone)]
pub struct Access {
    pub deadline: Duration,
    pub key: Option<MetadataValue<Ascii>>,
    pub tls: Option<ClientTlsConfig>,
}

impl Access {
    /// No key, no TLS, the default deadline.
    pub fn open() -> Self {
        Self {
            deadline: CALL_TIMEOUT,
            key: None,
            tls: None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    address: String,
    access: Access,
    ledger: LedgerClient<Keyed>,
    admin: AdminClient<Keyed>,
}

impl Client {
    /// A client that shows no key (a cluster with authentication off).
    pub async fn connect(address: &str) -> Result<Self, ClientError> {
        Self::connect_with(address, Access::open()).await
    }

    /// A client that shows `key` ([`ledger_replication::bearer`]) with
    /// every call, each of which may take up to `deadline`, without TLS.
    pub async fn connect_as(
        address: &str,
        deadline: Duration,
        key: Option<MetadataValue<Ascii>>,
    ) -> Result<Self, ClientError> {
        let access = Access {
            deadline,
            key,
            tls: None,
        };
        Self::connect_with(address, access).await
    }

    /// A client of the node at `address`, reached as `access` says.
    pub async fn connect_with(address: &str, access: Access) -> Result<Self, ClientError> {
        let connect_error = |reason: String| ClientError::Connect {
            address: address.to_owned(),
            reason,
        };
        let scheme = if access.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|error| connect_error(with_causes(&error)))?;
        if let Some(tls) = &access.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|error| connect_error(with_causes(&error)))?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .timeout(access.deadline)
            // A connection that died without a word (a cut network) is
            // found by an unanswered ping and replaced, not waited on.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(|error| connect_error(with_causes(&error)))?;
        let bearer = Bearer(access.key.clone());
        Ok(Self {
            address: address.to_owned(),
            ledger: LedgerClient::with_interceptor(channel.clone(), bearer.clone()),
            admin: AdminClient::with_interceptor(channel, bearer),
            access,
        })
    }

    /// A client of another node, reached the way this one is.
    pub async fn to(&self, address: &str) -> Result<Self, ClientError> {
        Self::connect_with(address, self.access.clone()).await
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// A [`Minter`] of this node's region.
    pub async fn minter(&self) -> Result<Minter, ClientError> {
        Ok(Minter::of(&self.status().await?))
    }

    pub async fn status(&self) -> Result<api::ClusterStatusResponse, ClientError> {
        let mut admin = self.admin.clone();
        Ok(admin
            .cluster_status(api::ClusterStatusRequest {})
            .await?
            .into_inner())
    }

    /// Sends a call, following NOT_LEADER answers (nothing was appended):
    /// to the leader they name, or, while none is known, to this node again
    /// a little later, for [`NO_LEADER_WAIT`] at most. Waiting does not use
    /// up redirects: an election may take several rounds of asking.
    ///
    /// Right after a leader fails, the nodes still name it until they have
    /// seen another elected: a named leader that cannot be reached (nothing
    /// was sent to it) counts as no leader known, not as the call's answer.
    async fn following_leader<R, Fut>(
        &self,
        call: impl Fn(Client) -> Fut,
        redirect: impl Fn(&R) -> Redirect,
    ) -> Result<R, ClientError>
    where
        Fut: std::future::Future<Output = Result<R, ClientError>>,
    {
        let waiting_until = tokio::time::Instant::now() + NO_LEADER_WAIT;
        let mut client = self.clone();
        let mut redirects = 0;
        loop {
            let response = call(client.clone()).await?;
            match redirect(&response) {
                Redirect::None => return Ok(response),
                // A node naming itself is between terms: as no leader known.
                Redirect::To(address) if address != client.address => {
                    if redirects < REDIRECTS_MAX {
                        redirects += 1;
                        match client.to(&address).await {
                            Ok(leader) => {
                                client = leader;
                                continue;
                            }
                            Err(ClientError::Connect { .. }) => {}
                            Err(other) => return Err(other),
                        }
                    } else if tokio::time::Instant::now() >= waiting_until {
                        return Err(tonic::Status::unavailable("too many redirects").into());
                    }
                }
                Redirect::To(_) | Redirect::Wait => {}
            }
            // No leader to send it to yet: the NOT_LEADER answer stands once
            // the wait is over (it is retryable), else ask this node again.
            if tokio::time::Instant::now() >= waiting_until {
                return Ok(response);
            }
            tokio::time::sleep(NO_LEADER_RETRY).await;
            client = self.clone();
            redirects = 0;
        }
    }

    /// Creates accounts on the control group's leader, wherever it is.
    pub async fn create_accounts(
        &self,
        accounts: Vec<api::NewAccount>,
    ) -> Result<api::CreateAccountsResponse, ClientError> {
        let call = |client: Client| {
            let request = api::CreateAccountsRequest {
                accounts: accounts.clone(),
            };
            async move {
                let mut ledger = client.ledger;
                Ok(ledger.create_accounts(request).await?.into_inner())
            }
        };
        self.following_leader(call, |response: &api::CreateAccountsResponse| {
            redirect_of(
                response
                    .results
                    .iter()
                    .filter_map(|result| match &result.result {
                        Some(api::account_result::Result::Error(error)) => Some(error),
                        _ => None,
                    }),
            )
        })
        .await
    }

    /// Submits transfers through this node; follows a NOT_LEADER redirect
    /// to the region's leader. The node sends on the commands of ids that
    /// another region decides (decision 0009).
    pub async fn create_transfers(
        &self,
        commands: Vec<api::TransferCommand>,
    ) -> Result<api::CreateTransfersResponse, ClientError> {
        self.create_transfers_marked(commands, false).await
    }

    /// [`Client::create_transfers`] from a node that sends a call on: the
    /// node receiving it decides what is its own and sends nothing further.
    pub async fn create_transfers_forwarded(
        &self,
        commands: Vec<api::TransferCommand>,
    ) -> Result<api::CreateTransfersResponse, ClientError> {
        self.create_transfers_marked(commands, true).await
    }

    async fn create_transfers_marked(
        &self,
        commands: Vec<api::TransferCommand>,
        forwarded: bool,
    ) -> Result<api::CreateTransfersResponse, ClientError> {
        let call = |client: Client| {
            let mut request = tonic::Request::new(api::CreateTransfersRequest {
                commands: commands.clone(),
            });
            if forwarded {
                request.metadata_mut().insert(
                    crate::forward::FORWARDED,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
            }
            async move {
                let mut ledger = client.ledger;
                Ok(ledger.create_transfers(request).await?.into_inner())
            }
        };
        self.following_leader(call, |response: &api::CreateTransfersResponse| {
            // Sent again only if no command was answered: one applied (by
            // the region it was sent on to) stays answered.
            let errors: Option<Vec<&api::Error>> = response
                .results
                .iter()
                .map(|result| match &result.result {
                    Some(api::transfer_result::Result::Error(error)) => Some(error),
                    _ => None,
                })
                .collect();
            errors.map_or(Redirect::None, |errors| redirect_of(errors.into_iter()))
        })
        .await
    }

    /// This node's view of the accounts.
    pub async fn lookup_accounts(
        &self,
        ids: Vec<String>,
    ) -> Result<api::LookupAccountsResponse, ClientError> {
        self.lookup_accounts_with(ids, false).await
    }

    /// The accounts, `strong`ly: holding everything committed before the call.
    pub async fn lookup_accounts_with(
        &self,
        ids: Vec<String>,
        strong: bool,
    ) -> Result<api::LookupAccountsResponse, ClientError> {
        let mut ledger = self.ledger.clone();
        Ok(ledger
            .lookup_accounts(api::LookupAccountsRequest { ids, strong })
            .await?
            .into_inner())
    }

    pub async fn account_history(
        &self,
        request: api::AccountHistoryRequest,
    ) -> Result<api::AccountHistoryResponse, ClientError> {
        let mut ledger = self.ledger.clone();
        Ok(ledger.account_history(request).await?.into_inner())
    }

    /// The transfers of a region's log from an offset, then live.
    pub async fn stream_transfers(
        &self,
        request: api::StreamTransfersRequest,
    ) -> Result<tonic::Streaming<api::TransferEvent>, ClientError> {
        let mut ledger = self.ledger.clone();
        Ok(ledger.stream_transfers(request).await?.into_inner())
    }

    pub async fn read_index(&self, region: u32) -> Result<api::ReadIndexResponse, ClientError> {
        let mut admin = self.admin.clone();
        Ok(admin
            .read_index(api::ReadIndexRequest { region })
            .await?
            .into_inner())
    }

    pub async fn lookup_transfers(
        &self,
        ids: Vec<String>,
    ) -> Result<api::LookupTransfersResponse, ClientError> {
        let mut ledger = self.ledger.clone();
        Ok(ledger
            .lookup_transfers(api::LookupTransfersRequest { ids, strong: false })
            .await?
            .into_inner())
    }

    /// Changes an account's status on the control group's leader.
    pub async fn change_account_status(
        &self,
        request: api::ChangeAccountStatusRequest,
    ) -> Result<api::ChangeAccountStatusResponse, ClientError> {
        let call = |client: Client| {
            let request = request.clone();
            async move {
                let mut admin = client.admin;
                Ok(admin.change_account_status(request).await?.into_inner())
            }
        };
        self.following_leader(call, control_redirect).await
    }

    /// Sets an account's pool policy on the control group's leader.
    pub async fn set_pool_policy(
        &self,
        request: api::SetPoolPolicyRequest,
    ) -> Result<api::ChangeAccountStatusResponse, ClientError> {
        let call = |client: Client| {
            let request = request.clone();
            async move {
                let mut admin = client.admin;
                Ok(admin.set_pool_policy(request).await?.into_inner())
            }
        };
        self.following_leader(call, control_redirect).await
    }

    pub async fn rebalance(
        &self,
        request: api::RebalanceRequest,
    ) -> Result<api::RebalanceResponse, ClientError> {
        let mut admin = self.admin.clone();
        Ok(admin.rebalance(request).await?.into_inner())
    }

    /// Adds a node as this node sees it (call it on every node, through a
    /// client connected with [`MEMBERSHIP_CALL_TIMEOUT`]).
    pub async fn add_member(
        &self,
        request: api::AddMemberRequest,
    ) -> Result<api::MembershipResponse, ClientError> {
        let mut admin = self.admin.clone();
        Ok(admin.add_member(request).await?.into_inner())
    }

    /// Removes a node as this node sees it (call it on every node).
    pub async fn remove_member(&self, id: u64) -> Result<api::MembershipResponse, ClientError> {
        let mut admin = self.admin.clone();
        let request = api::RemoveMemberRequest { id };
        Ok(admin.remove_member(request).await?.into_inner())
    }
}

/// Deadline of a membership call: a node may lead every group, and each
/// change waits up to 30 s (a new learner catches up before it votes).
pub const MEMBERSHIP_CALL_TIMEOUT: Duration = Duration::from_secs(180);

fn control_redirect(response: &api::ChangeAccountStatusResponse) -> Redirect {
    redirect_of(
        match &response.result {
            Some(api::change_account_status_response::Result::Error(error)) => Some(error),
            _ => None,
        }
        .into_iter(),
    )
}

/// An answer that says to send the call to another node of the region.
fn moves_on(error: &api::Error) -> bool {
    error.code == "NOT_LEADER" || error.code == "CLOCK_DRIFT"
}

enum Redirect {
    None,
    To(String),
    Wait,
}

/// A call every command of which was refused with NOT_LEADER is sent again
/// to the named leader (nothing was appended); with no leader known yet, a
/// little later. Any other answer is the answer.
fn redirect_of<'a>(mut errors: impl Iterator<Item = &'a api::Error>) -> Redirect {
    match errors.next() {
        // A node whose clock is off is not leading either.
        Some(error) if moves_on(error) && errors.all(|other| other.code == error.code) => {
            if error.redirect.is_empty() {
                Redirect::Wait
            } else {
                Redirect::To(error.redirect.clone())
            }
        }
        _ => Redirect::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_shows_the_servers_code_and_message_once() {
        let message = "INVALID_AMOUNT: command 0: amount: \"12.5x\" is not an amount";
        let error = ClientError::from(tonic::Status::invalid_argument(message));
        assert_eq!(error.to_string(), message);
        // A chain of causes (`{:#}`) adds nothing to it.
        assert!(std::error::Error::source(&error).is_none());
    }

    #[test]
    fn a_message_without_a_code_gets_the_grpc_codes_name() {
        let refused = |status: tonic::Status| refusal(&status);
        assert_eq!(
            refused(tonic::Status::unavailable("too many redirects")),
            "UNAVAILABLE: too many redirects"
        );
        assert_eq!(
            refused(tonic::Status::invalid_argument(
                "status: ACTIVE, FROZEN or CLOSED"
            )),
            "INVALID_ARGUMENT: status: ACTIVE, FROZEN or CLOSED"
        );
        assert_eq!(
            refused(tonic::Status::invalid_argument("UNKNOWN_REGION")),
            "UNKNOWN_REGION"
        );
        assert_eq!(
            refused(tonic::Status::deadline_exceeded("")),
            "DEADLINE_EXCEEDED"
        );
    }

    #[test]
    fn the_causes_of_a_failure_on_the_way_appear_each_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("transport error")]
        struct Transport(#[source] std::io::Error);
        let cause = Transport(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        // As tonic builds it: the message is the error's text, the error
        // its source.
        let status = tonic::Status::from_error(Box::new(cause));
        assert_eq!(
            refusal(&status),
            "UNKNOWN: transport error: connection refused"
        );
    }
}
