//! The public (`Ledger`) and operators' (`Admin`) gRPC services.

use crate::forward::{self, Forwarder};
use crate::runtime::{CommandResult, NodeHandle};
use crate::wire::{self, BATCH_COMMANDS_MAX};
use ledger_proto::v1 as api;
use ledger_proto::v1::admin_server::{Admin, AdminServer};
use ledger_proto::v1::ledger_server::{Ledger, LedgerServer};
use ledger_replication::Group;
use ledger_reservations::{Command, ControlCommand, Item, RegionId};
use ledger_reservations::{HistoryEntry, HistoryRead, Money, RecordsSince, Stamp};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The largest request either service accepts.
pub const API_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct Api {
    node: Arc<NodeHandle>,
    forwarder: Arc<Forwarder>,
}

impl Api {
    pub fn new(node: Arc<NodeHandle>) -> Self {
        Self {
            forwarder: Arc::new(Forwarder::new(node.clone())),
            node,
        }
    }

    /// The node it answers for.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// What CreateTransfers answers (the trait method counts its outcomes).
    async fn create_transfers_answer(
        &self,
        request: Request<api::CreateTransfersRequest>,
    ) -> Result<Response<api::CreateTransfersResponse>, Status> {
        let forwarded = request.metadata().contains_key(forward::FORWARDED);
        let commands = request.into_inner().commands;
        if commands.len() > BATCH_COMMANDS_MAX {
            return Err(too_many(commands.len()));
        }
        let items = commands
            .iter()
            .enumerate()
            .map(|(index, command)| wire::item(command).map_err(|error| at(index, error)))
            .collect::<Result<Vec<Item>, Status>>()?;
        let (home, origins) = self.node.replica.ledger().read(|ledger| {
            let origins: Vec<RegionId> = items
                .iter()
                .map(|item| {
                    item.command
                        .transfer_id()
                        .map_or(ledger.home(), |id| ledger.origin_of(id))
                })
                .collect();
            (ledger.home(), origins)
        });
        let split =
            forward::split(&items, &origins, home).map_err(|(index, error)| at(index, error))?;
        // Chaos bite `decide-retry-elsewhere`: every call is decided here,
        // as if sent on (decision 0009 broken on purpose; see `crate::bite`).
        #[cfg(feature = "chaos-bite")]
        let forwarded = forwarded || crate::bite::is(crate::bite::Bite::DecideRetryElsewhere);
        // A call sent on by another node is decided here whatever it holds:
        // what is not this region's is refused (NOT_ORIGIN), never sent on.
        if forwarded || split.elsewhere.is_empty() {
            let results = self.node.submit(items).await;
            return Ok(Response::new(api::CreateTransfersResponse {
                results: results
                    .iter()
                    .map(|result| self.transfer_result(result))
                    .collect(),
            }));
        }
        let results = self.decide_split(commands, items, split).await;
        Ok(Response::new(api::CreateTransfersResponse { results }))
    }

    /// This node's view of the cluster: its groups, clock and layout.
    pub fn status(&self) -> api::ClusterStatusResponse {
        let replica = &self.node.replica;
        let clock = self.node.clock();
        let now_ns = ledger_hlc::Clock::now_ns(clock.clock());
        let mut groups = Vec::new();
        for group in replica.layout().groups() {
            let Some(progress) = replica.progress(group) else {
                continue;
            };
            let last_stamp = replica.ledger().read(|ledger| match group {
                Group::Region(region) => ledger.region(region).map(|state| state.last_stamp()),
                Group::Control => Some(ledger.control().last_stamp()),
            });
            let last_event_age_ms = last_stamp
                .filter(|stamp| stamp.physical_ns() > 0)
                .map_or(0, |stamp| {
                    now_ns.saturating_sub(stamp.physical_ns()) / 1_000_000
                });
            groups.push(api::GroupStatus {
                group: group.name(),
                leader: progress.leader.unwrap_or(0),
                applied_index: progress.applied,
                voters: progress.voters.iter().copied().collect(),
                committed_index: progress.committed,
                lag_entries: progress.lag_entries(),
                last_event_age_ms,
                term: progress.term,
            });
        }
        api::ClusterStatusResponse {
            node: replica.id(),
            region: u32::from(replica.region().0),
            groups,
            clock_ns: now_ns,
            drift_refused: clock.refused_count(),
            clock_offset_ms: self.node.clock_offset_ms(),
            refuses_to_lead: self.node.clock_off(),
            nodes: replica
                .layout()
                .nodes
                .iter()
                .map(|node| api::NodeInfo {
                    id: node.id,
                    region: u32::from(node.region.0),
                    api: node.api.clone(),
                    http: node.http.clone(),
                })
                .collect(),
        }
    }

    /// Serves both services on `listener` (over TLS with `tls`) until the
    /// task is dropped.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) {
        let gate = ledger_replication::GateLayer::new(Arc::new(crate::telemetry::Traced {
            gate: self.node.auth.clone(),
            node: self.node.replica.id(),
            region: self.node.replica.region().0,
        }));
        let ledger = LedgerServer::new(self.clone())
            .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(API_MESSAGE_BYTES_MAX);
        let admin = AdminServer::new(self)
            .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(API_MESSAGE_BYTES_MAX);
        // grpc.health.v1: serving once the node runs; grpcurl-style tools
        // list and call the services through reflection.
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter.set_serving::<LedgerServer<Api>>().await;
        health_reporter.set_serving::<AdminServer<Api>>().await;
        // Only what this port serves (the Raft transport has a port of its own).
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ledger_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("ledger.v1.Ledger")
            .with_service_name("ledger.v1.Admin")
            .with_service_name("grpc.health.v1.Health")
            .build_v1();
        let reflection = match reflection {
            Ok(reflection) => Some(reflection),
            Err(error) => {
                tracing::error!(%error, "server reflection is off: the descriptors do not load");
                None
            }
        };
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            server = match server.tls_config(tls) {
                Ok(server) => server,
                Err(error) => {
                    tracing::error!(%error, "the API server did not start: its TLS is refused");
                    return;
                }
            };
        }
        let served = server
            .tcp_nodelay(true)
            .layer(gate)
            .add_service(health)
            .add_optional_service(reflection)
            .add_service(ledger)
            .add_service(admin)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the API server stopped");
        }
    }

    fn applied(&self, fresh: bool, index: u64) -> api::Applied {
        api::Applied {
            new: fresh,
            region: u32::from(self.node.replica.region().0),
            index,
        }
    }

    fn error_of(result: &CommandResult) -> Option<api::Error> {
        match result {
            CommandResult::Applied { .. } => None,
            CommandResult::Rejected(reject) => Some(wire::error(reject)),
            CommandResult::Unavailable(failure) => Some(wire::node_error(
                failure.code,
                &failure.message,
                failure.retryable,
                failure.redirect.clone(),
            )),
            CommandResult::PullTimedOut(shortfall) => Some(wire::pull_timed_out(shortfall)),
        }
    }
}

fn too_many(count: usize) -> Status {
    Status::invalid_argument(format!(
        "{count} commands in one call; at most {BATCH_COMMANDS_MAX}"
    ))
}

/// Every id of a look-up, or the first that is not one.
fn parse_ids<T>(
    ids: &[String],
    parse: fn(&str, &str) -> Result<T, wire::WireError>,
) -> Result<Vec<T>, Status> {
    if ids.len() > BATCH_COMMANDS_MAX {
        return Err(too_many(ids.len()));
    }
    ids.iter()
        .enumerate()
        .map(|(index, id)| parse("ids", id).map_err(|error| at(index, error)))
        .collect()
}

/// The stable code a refusal's message opens with ("INVALID_AMOUNT: ..."),
/// and the rest of the message; how clients (the CLI, the HTTP API) read
/// back what [`refused`] and [`at`] write.
pub fn split_code(message: &str) -> (Option<&str>, &str) {
    let (code, rest) = message.split_once(": ").unwrap_or((message, ""));
    let is_code = code.starts_with(|first: char| first.is_ascii_uppercase())
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if is_code {
        (Some(code), rest)
    } else {
        (None, message)
    }
}

/// A request refused as a whole, its code first.
fn refused(error: wire::WireError) -> Status {
    Status::invalid_argument(format!("{}: {error}", error.code()))
}

fn at(index: usize, error: wire::WireError) -> Status {
    Status::invalid_argument(format!(
        "{}: command {index}: {error}; nothing was applied",
        error.code()
    ))
}

#[tonic::async_trait]
impl Ledger for Api {
    async fn create_accounts(
        &self,
        request: Request<api::CreateAccountsRequest>,
    ) -> Result<Response<api::CreateAccountsResponse>, Status> {
        let accounts = request.into_inner().accounts;
        if accounts.len() > BATCH_COMMANDS_MAX {
            return Err(too_many(accounts.len()));
        }
        let accounts = accounts
            .iter()
            .enumerate()
            .map(|(index, account)| wire::new_account(account).map_err(|error| at(index, error)))
            .collect::<Result<Vec<_>, Status>>()?;
        let results = self.node.create_accounts(accounts).await;
        let results = results
            .iter()
            .map(|result| api::AccountResult {
                result: Some(match (result, Self::error_of(result)) {
                    (CommandResult::Applied { fresh, .. }, _) => {
                        api::account_result::Result::Created(*fresh)
                    }
                    (_, error) => api::account_result::Result::Error(error.unwrap_or_default()),
                }),
            })
            .collect();
        Ok(Response::new(api::CreateAccountsResponse { results }))
    }

    async fn create_transfers(
        &self,
        request: Request<api::CreateTransfersRequest>,
    ) -> Result<Response<api::CreateTransfersResponse>, Status> {
        // A call another node sent on is counted there, where its client called.
        let forwarded = request.metadata().contains_key(forward::FORWARDED);
        let response = self.create_transfers_answer(request).await?;
        if !forwarded {
            crate::metrics::commands_answered(&response.get_ref().results);
        }
        Ok(response)
    }

    async fn lookup_accounts(
        &self,
        request: Request<api::LookupAccountsRequest>,
    ) -> Result<Response<api::LookupAccountsResponse>, Status> {
        let request = request.into_inner();
        let ids = request.ids;
        let parsed = parse_ids(&ids, wire::account_id)?;
        if request.strong {
            self.strong_read().await?;
        }
        // One read of the ledger, at one consistent cut of every region.
        let now_ns = self.now_ns();
        let response = self
            .consistent(|ledger| {
                let mut response = api::LookupAccountsResponse {
                    watermarks: watermarks(ledger, now_ns),
                    ..Default::default()
                };
                for (text, id) in ids.iter().zip(&parsed) {
                    match (ledger.control().account(*id), ledger.balance(*id)) {
                        (Some(account), Some(balance)) => response.accounts.push(
                            wire::account_view(account, &balance, ledger.control().policy(*id)),
                        ),
                        _ => response.missing.push(text.clone()),
                    }
                }
                response
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn account_history(
        &self,
        request: Request<api::AccountHistoryRequest>,
    ) -> Result<Response<api::AccountHistoryResponse>, Status> {
        let request = request.into_inner();
        let account = wire::account_id("account", &request.account).map_err(refused)?;
        let limit = match request.limit {
            0 => HISTORY_LIMIT_DEFAULT,
            limit => usize::try_from(limit).unwrap_or(usize::MAX),
        };
        if limit > HISTORY_LIMIT_MAX {
            return Err(Status::invalid_argument(format!(
                "limit {limit}: at most {HISTORY_LIMIT_MAX}"
            )));
        }
        let as_of = (request.as_of_ns > 0).then(|| {
            Stamp::new(
                request.as_of_ns,
                request.as_of_logical,
                ledger_hlc::NodeId(request.as_of_node),
            )
        });
        let to_ns = (request.to_ns > 0).then_some(request.to_ns);
        // The history is read a slice at a time, so that a long one never
        // holds the state that apply needs; it is the history as of the
        // first slice, which is also where the watermarks are read.
        let mut read = HistoryRead::new(account);
        let now_ns = self.now_ns();
        let (scale, watermarks, mut done) = self
            .consistent(|ledger| {
                let account = ledger
                    .control()
                    .account(account)
                    .ok_or_else(|| Status::not_found(format!("UNKNOWN_ACCOUNT: {account}")))?;
                let done = read.step(ledger, HISTORY_SLICE);
                Ok::<_, Status>((account.currency.scale, watermarks(ledger, now_ns), done))
            })
            .await??;
        while !done {
            tokio::task::yield_now().await;
            done = self
                .node
                .replica
                .ledger()
                .read(|ledger| read.step(ledger, HISTORY_SLICE));
        }
        let history = read.finish();
        let upto: Vec<&HistoryEntry> = history
            .iter()
            .take_while(|entry| as_of.is_none_or(|as_of| entry.stamp <= as_of))
            .collect();
        let (balance, held) = upto
            .last()
            .map_or((0, 0), |entry| (entry.balance, entry.held));
        let matching: Vec<&HistoryEntry> = upto
            .into_iter()
            .filter(|entry| {
                let ns = entry.stamp.physical_ns();
                ns >= request.from_ns && to_ns.is_none_or(|to| ns <= to)
            })
            .collect();
        let truncated = matching.len() > limit;
        let money = |units: i128| Money { units, scale }.to_string();
        let entries = matching[matching.len().saturating_sub(limit)..]
            .iter()
            .map(|entry| history_entry(entry, &money))
            .collect();
        Ok(Response::new(api::AccountHistoryResponse {
            entries,
            balance: money(balance),
            held: money(held),
            watermarks,
            truncated,
        }))
    }

    type StreamTransfersStream =
        Pin<Box<dyn futures_util::Stream<Item = Result<api::TransferEvent, Status>> + Send>>;

    async fn stream_transfers(
        &self,
        request: Request<api::StreamTransfersRequest>,
    ) -> Result<Response<Self::StreamTransfersStream>, Status> {
        let request = request.into_inner();
        let region = u16::try_from(request.region)
            .ok()
            .map(RegionId)
            .filter(|region| self.node.replica.layout().regions().contains(region))
            .ok_or_else(|| {
                Status::invalid_argument(format!("UNKNOWN_REGION: {}", request.region))
            })?;
        let account = match request.account.as_str() {
            "" => None,
            text => Some(wire::account_id("account", text).map_err(refused)?),
        };
        let mut feed = TransferFeed {
            region,
            account,
            next: usize::try_from(request.from_offset).unwrap_or(usize::MAX),
            walk: None,
            found: Default::default(),
        };
        let node = self.node.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(STREAM_CHUNK);
        // Polls the region's transfers; ends when the client goes away.
        tokio::spawn(async move {
            loop {
                let events = node.replica.ledger().read(|ledger| feed.poll(ledger));
                let quiet = events.is_empty() && feed.walk.is_none();
                for event in events {
                    if sender.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                if quiet {
                    if sender.is_closed() {
                        return;
                    }
                    tokio::time::sleep(STREAM_POLL).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }

    async fn lookup_transfers(
        &self,
        request: Request<api::LookupTransfersRequest>,
    ) -> Result<Response<api::LookupTransfersResponse>, Status> {
        let request = request.into_inner();
        let ids = request.ids;
        let parsed = parse_ids(&ids, wire::transfer_id)?;
        if request.strong {
            self.strong_read().await?;
        }
        let response = self.node.replica.ledger().read(|ledger| {
            let mut response = api::LookupTransfersResponse::default();
            for (text, id) in ids.iter().zip(parsed) {
                let found = ledger
                    .regions()
                    .iter()
                    .find_map(|region| region.transfer(id));
                match found {
                    Some(record) => {
                        response
                            .transfers
                            .push(wire::transfer_view(record, ledger.control()));
                    }
                    None => response.missing.push(text.clone()),
                }
            }
            response
        });
        Ok(Response::new(response))
    }
}

/// Movements an account history answers, by default and at most.
const HISTORY_LIMIT_DEFAULT: usize = 1_000;
/// How long a plain read waits for this node's replicas to form a
/// consistent cut, and how often it looks.
const CONSISTENT_READ_WAIT: Duration = Duration::from_secs(2);
const CONSISTENT_READ_POLL: Duration = Duration::from_millis(20);
/// Records of an account's history read per hold of the state.
const HISTORY_SLICE: usize = 4_096;
const HISTORY_LIMIT_MAX: usize = 10_000;
/// How often a stream looks for new transfers, and how many it sends from
/// one look.
const STREAM_POLL: Duration = Duration::from_millis(50);
const STREAM_CHUNK: usize = 1_024;
/// Records of an account's chain walked per hold of the state.
const STREAM_WALK_SLICE: usize = 4_096;
/// How long a strong read waits for a region's leader and for this node to
/// apply up to its index.
const STRONG_READ_DEADLINE: Duration = Duration::from_secs(5);

impl Api {
    fn now_ns(&self) -> u64 {
        ledger_hlc::Clock::now_ns(self.node.clock().clock())
    }

    /// Runs `read` once this node's replicas form a consistent cut
    /// ([`ledger_reservations::Ledger::behind`]: every grant counted has its
    /// release counted), waiting a little for a replica that lags; refuses,
    /// retryably, if one stays behind (a node cut off from a region's
    /// leader), rather than answer with figures that never were together.
    async fn consistent<T>(
        &self,
        mut read: impl FnMut(&ledger_reservations::Ledger) -> T,
    ) -> Result<T, Status> {
        let deadline = tokio::time::Instant::now() + CONSISTENT_READ_WAIT;
        loop {
            let answer = self.node.replica.ledger().read(|ledger| {
                let behind = ledger.behind();
                if behind.is_empty() {
                    Ok(read(ledger))
                } else {
                    Err(behind)
                }
            });
            match answer {
                Ok(value) => return Ok(value),
                Err(behind) if tokio::time::Instant::now() >= deadline => {
                    let regions: Vec<String> = behind.iter().map(ToString::to_string).collect();
                    return Err(Status::unavailable(format!(
                        "STALE_REPLICA: this node's replica of {} is behind what the other \
                         regions it holds already reflect; retry, here or at another node, \
                         or read strong",
                        regions.join(", ")
                    )));
                }
                Err(_) => tokio::time::sleep(CONSISTENT_READ_POLL).await,
            }
        }
    }

    /// Waits until this node has applied, in every region's log, everything
    /// committed before now, as each region's leader confirms it.
    async fn strong_read(&self) -> Result<(), Status> {
        let replica = &self.node.replica;
        for region in replica.layout().regions() {
            let group = Group::Region(region);
            let unavailable = |reason: String| {
                Status::unavailable(format!(
                    "REGION_UNAVAILABLE: region {} cannot confirm a strong read: {reason}",
                    region.0
                ))
            };
            let index = if replica.is_leader(group) {
                replica
                    .read_barrier(group)
                    .await
                    .map_err(|error| unavailable(error.to_string()))?;
                replica.applied_index(group).unwrap_or(0)
            } else {
                let leader = replica.leader(group).await;
                let address = self.node.api_address(leader);
                if address.is_empty() {
                    return Err(unavailable("no leader known".into()));
                }
                let asked = tokio::time::timeout(STRONG_READ_DEADLINE, async {
                    let client = self.node.client_of(&address).await?;
                    client.read_index(u32::from(region.0)).await
                })
                .await
                .map_err(|_| unavailable(format!("{address} did not answer in time")))?
                .map_err(|error| unavailable(error.to_string()))?;
                match asked.result {
                    Some(api::read_index_response::Result::Index(index)) => index,
                    Some(api::read_index_response::Result::Error(error)) => {
                        return Err(unavailable(format!("{}: {}", error.code, error.message)));
                    }
                    None => return Err(unavailable("an empty answer".into())),
                }
            };
            replica
                .wait_applied(group, index, STRONG_READ_DEADLINE)
                .await
                .map_err(|error| unavailable(error.to_string()))?;
        }
        Ok(())
    }

    /// Decides this region's commands here and sends the others on to
    /// their regions, at once, and answers each in its place.
    async fn decide_split(
        &self,
        commands: Vec<api::TransferCommand>,
        items: Vec<Item>,
        split: forward::Split,
    ) -> Vec<api::TransferResult> {
        let mut items: Vec<Option<Item>> = items.into_iter().map(Some).collect();
        let mine: Vec<Item> = split
            .home
            .iter()
            .filter_map(|index| items.get_mut(*index).and_then(Option::take))
            .collect();
        let local = async {
            if mine.is_empty() {
                Vec::new()
            } else {
                self.node.submit(mine).await
            }
        };
        let sent_on =
            futures_util::future::join_all(split.elsewhere.iter().map(|(region, indexes)| {
                let commands = indexes
                    .iter()
                    .filter_map(|index| commands.get(*index).cloned())
                    .collect();
                self.forwarder.forward(*region, commands)
            }));
        let (local, sent_on) = tokio::join!(local, sent_on);
        let mut results = vec![api::TransferResult::default(); commands.len()];
        for (index, result) in split.home.iter().zip(&local) {
            if let Some(slot) = results.get_mut(*index) {
                *slot = self.transfer_result(result);
            }
        }
        for ((_, indexes), answers) in split.elsewhere.iter().zip(sent_on) {
            for (index, answer) in indexes.iter().zip(answers) {
                if let Some(slot) = results.get_mut(*index) {
                    *slot = answer;
                }
            }
        }
        results
    }

    fn transfer_result(&self, result: &CommandResult) -> api::TransferResult {
        api::TransferResult {
            result: Some(match (result, Self::error_of(result)) {
                (CommandResult::Applied { fresh, index }, _) => {
                    api::transfer_result::Result::Applied(self.applied(*fresh, *index))
                }
                (_, error) => api::transfer_result::Result::Error(error.unwrap_or_default()),
            }),
        }
    }
}

#[tonic::async_trait]
impl Admin for Api {
    async fn add_member(
        &self,
        request: Request<api::AddMemberRequest>,
    ) -> Result<Response<api::MembershipResponse>, Status> {
        crate::members::add(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_member(
        &self,
        request: Request<api::RemoveMemberRequest>,
    ) -> Result<Response<api::MembershipResponse>, Status> {
        crate::members::remove(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn cluster_status(
        &self,
        _request: Request<api::ClusterStatusRequest>,
    ) -> Result<Response<api::ClusterStatusResponse>, Status> {
        Ok(Response::new(self.status()))
    }

    async fn change_account_status(
        &self,
        request: Request<api::ChangeAccountStatusRequest>,
    ) -> Result<Response<api::ChangeAccountStatusResponse>, Status> {
        Ok(Response::new(
            self.change_account_status_inner(request.into_inner())
                .await?,
        ))
    }

    async fn set_pool_policy(
        &self,
        request: Request<api::SetPoolPolicyRequest>,
    ) -> Result<Response<api::ChangeAccountStatusResponse>, Status> {
        let request = request.into_inner();
        let account = wire::account_id("account", &request.account).map_err(refused)?;
        let floor = wire::amount("floor", &request.floor).map_err(refused)?;
        Ok(Response::new(
            self.control_change(ControlCommand::SetPoolPolicy { account, floor })
                .await,
        ))
    }

    async fn read_index(
        &self,
        request: Request<api::ReadIndexRequest>,
    ) -> Result<Response<api::ReadIndexResponse>, Status> {
        let region = u16::try_from(request.into_inner().region)
            .map(RegionId)
            .map_err(|_| Status::invalid_argument("UNKNOWN_REGION"))?;
        let group = Group::Region(region);
        let replica = &self.node.replica;
        let result = match replica.read_barrier(group).await {
            Ok(()) => {
                api::read_index_response::Result::Index(replica.applied_index(group).unwrap_or(0))
            }
            Err(error) => {
                let failure = self.node.failure(&error);
                api::read_index_response::Result::Error(wire::node_error(
                    failure.code,
                    &failure.message,
                    failure.retryable,
                    failure.redirect,
                ))
            }
        };
        Ok(Response::new(api::ReadIndexResponse {
            result: Some(result),
        }))
    }

    async fn rebalance(
        &self,
        request: Request<api::RebalanceRequest>,
    ) -> Result<Response<api::RebalanceResponse>, Status> {
        let request = request.into_inner();
        let account = wire::account_id("account", &request.account).map_err(refused)?;
        let amount = wire::amount("amount", &request.amount).map_err(refused)?;
        let to = u16::try_from(request.to_region)
            .map(RegionId)
            .map_err(|_| Status::invalid_argument("to_region out of range"))?;
        let results = self
            .node
            .submit(vec![Item::single(Command::Release {
                account,
                amount,
                to,
            })])
            .await;
        let result = results
            .first()
            .map(|result| self.transfer_result(result))
            .and_then(|result| result.result)
            .map(|result| match result {
                api::transfer_result::Result::Applied(applied) => {
                    api::rebalance_response::Result::Applied(applied)
                }
                api::transfer_result::Result::Error(error) => {
                    api::rebalance_response::Result::Error(error)
                }
            });
        Ok(Response::new(api::RebalanceResponse { result }))
    }
}

impl Api {
    async fn change_account_status_inner(
        &self,
        request: api::ChangeAccountStatusRequest,
    ) -> Result<api::ChangeAccountStatusResponse, Status> {
        let account = wire::account_id("account", &request.account).map_err(refused)?;
        let command = match api::AccountStatus::try_from(request.status) {
            Ok(api::AccountStatus::Active) => ControlCommand::Unfreeze { account },
            Ok(api::AccountStatus::Frozen) => ControlCommand::Freeze { account },
            Ok(api::AccountStatus::Closed) => ControlCommand::Close { account },
            _ => return Err(Status::invalid_argument("status: ACTIVE, FROZEN or CLOSED")),
        };
        Ok(self.control_change(command).await)
    }

    /// Applies a change of an account through the control log.
    async fn control_change(&self, command: ControlCommand) -> api::ChangeAccountStatusResponse {
        let result = self.node.change_status(command).await;
        api::ChangeAccountStatusResponse {
            result: Some(match (&result, Self::error_of(&result)) {
                (CommandResult::Applied { fresh, .. }, _) => {
                    api::change_account_status_response::Result::Changed(*fresh)
                }
                (_, error) => {
                    api::change_account_status_response::Result::Error(error.unwrap_or_default())
                }
            }),
        }
    }
}

/// The group name a client sees for a region.
pub fn region_group(region: RegionId) -> String {
    Group::Region(region).name()
}

/// Where a stream of a region's transfers is: the next offset, and, with an
/// account filter, the walk back along the account's chain (a slice per
/// hold of the state, so a long chain never holds what apply needs) and the
/// offsets it found, not yet sent.
struct TransferFeed {
    region: RegionId,
    account: Option<ledger_reservations::AccountId>,
    next: usize,
    walk: Option<RecordsSince>,
    found: std::collections::VecDeque<usize>,
}

impl TransferFeed {
    /// The next events, at most a chunk; none while a walk is under way or
    /// nothing is new.
    fn poll(&mut self, ledger: &ledger_reservations::Ledger) -> Vec<api::TransferEvent> {
        let Some(state) = ledger.region(self.region) else {
            return Vec::new();
        };
        let event = |offset: usize| {
            let record = state.transfers().get(offset)?;
            Some(api::TransferEvent {
                offset: offset as u64,
                transfer: Some(wire::transfer_view(record, ledger.control())),
            })
        };
        let events: Vec<api::TransferEvent> = match self.account {
            Some(account) => {
                if self.found.is_empty() {
                    let next = self.next;
                    let step = self
                        .walk
                        .get_or_insert_with(|| RecordsSince::new(account, next))
                        .step(state, STREAM_WALK_SLICE);
                    if let Some(offsets) = step {
                        self.found.extend(offsets);
                        self.walk = None;
                    }
                }
                let count = self.found.len().min(STREAM_CHUNK);
                self.found.drain(..count).filter_map(event).collect()
            }
            None => {
                let end = state
                    .transfer_count()
                    .min(self.next.saturating_add(STREAM_CHUNK));
                (self.next..end).filter_map(event).collect()
            }
        };
        if let Some(last) = events.last() {
            self.next = last.offset as usize + 1;
        }
        events
    }
}

/// Per region, the position of its log this node's figures are as of, and
/// how old that region's newest entry applied here is.
fn watermarks(ledger: &ledger_reservations::Ledger, now_ns: u64) -> Vec<api::Watermark> {
    ledger
        .regions()
        .iter()
        .map(|region| {
            let applied = region.applied();
            api::Watermark {
                region: u32::from(region.id().0),
                applied_index: applied.map_or(0, |position| position.index),
                age_ms: applied.map_or(0, |_| {
                    now_ns.saturating_sub(region.last_stamp().physical_ns()) / 1_000_000
                }),
            }
        })
        .collect()
}

fn history_entry(entry: &HistoryEntry, money: &impl Fn(i128) -> String) -> api::HistoryEntry {
    let (stamp_ns, stamp_logical, stamp_node) = entry.stamp.to_parts();
    api::HistoryEntry {
        stamp_ns,
        stamp_logical,
        stamp_node,
        region: u32::from(entry.region.0),
        transfer_id: crate::ids::format(entry.transfer.0),
        movement: entry.movement.name().into(),
        counterparty: crate::ids::format(entry.counterparty.0),
        balance_change: money(entry.balance_change),
        held_change: money(entry.held_change),
        balance: money(entry.balance),
        held: money(entry.held),
    }
}
