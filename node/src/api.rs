//! The public (`Ledger`) and operators' (`Admin`) gRPC services.

use crate::runtime::{CommandResult, NodeHandle};
use crate::wire::{self, BATCH_COMMANDS_MAX};
use ledger_proto::v1 as api;
use ledger_proto::v1::admin_server::{Admin, AdminServer};
use ledger_proto::v1::ledger_server::{Ledger, LedgerServer};
use ledger_replication::Group;
use ledger_reservations::{Command, ControlCommand, Item, RegionId};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The largest request either service accepts.
pub const API_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct Api {
    node: Arc<NodeHandle>,
}

impl Api {
    pub fn new(node: Arc<NodeHandle>) -> Self {
        Self { node }
    }

    /// Serves both services on `listener` until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
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
        let served = tonic::transport::Server::builder()
            .tcp_nodelay(true)
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

fn at(index: usize, error: wire::WireError) -> Status {
    Status::invalid_argument(format!("command {index}: {error}; nothing was applied"))
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
        let commands = request.into_inner().commands;
        if commands.len() > BATCH_COMMANDS_MAX {
            return Err(too_many(commands.len()));
        }
        let items = commands
            .iter()
            .enumerate()
            .map(|(index, command)| wire::item(command).map_err(|error| at(index, error)))
            .collect::<Result<Vec<Item>, Status>>()?;
        let results = self.node.submit(items).await;
        Ok(Response::new(api::CreateTransfersResponse {
            results: results
                .iter()
                .map(|result| self.transfer_result(result))
                .collect(),
        }))
    }

    async fn lookup_accounts(
        &self,
        request: Request<api::LookupAccountsRequest>,
    ) -> Result<Response<api::LookupAccountsResponse>, Status> {
        let ids = request.into_inner().ids;
        let parsed = parse_ids(&ids, wire::account_id)?;
        // One read of the ledger: every account at the same applied position.
        let response = self.node.replica.ledger().read(|ledger| {
            let mut response = api::LookupAccountsResponse::default();
            for (text, id) in ids.iter().zip(parsed) {
                match (ledger.control().account(id), ledger.balance(id)) {
                    (Some(account), Some(balance)) => response
                        .accounts
                        .push(wire::account_view(account, &balance)),
                    _ => response.missing.push(text.clone()),
                }
            }
            response
        });
        Ok(Response::new(response))
    }

    async fn lookup_transfers(
        &self,
        request: Request<api::LookupTransfersRequest>,
    ) -> Result<Response<api::LookupTransfersResponse>, Status> {
        let ids = request.into_inner().ids;
        let parsed = parse_ids(&ids, wire::transfer_id)?;
        let response = self.node.replica.ledger().read(|ledger| {
            let mut response = api::LookupTransfersResponse::default();
            for (text, id) in ids.iter().zip(parsed) {
                let found = ledger
                    .regions()
                    .iter()
                    .find_map(|region| region.transfer(id));
                match found {
                    Some(record) => {
                        let scale = ledger
                            .control()
                            .currency(record.transfer.currency)
                            .map_or(0, |currency| currency.scale);
                        response.transfers.push(wire::transfer_view(record, scale));
                    }
                    None => response.missing.push(text.clone()),
                }
            }
            response
        });
        Ok(Response::new(response))
    }
}

impl Api {
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
    async fn cluster_status(
        &self,
        _request: Request<api::ClusterStatusRequest>,
    ) -> Result<Response<api::ClusterStatusResponse>, Status> {
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
            });
        }
        Ok(Response::new(api::ClusterStatusResponse {
            node: replica.id(),
            region: u32::from(replica.region().0),
            groups,
            clock_ns: now_ns,
            drift_refused: clock.refused_count(),
        }))
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

    async fn rebalance(
        &self,
        request: Request<api::RebalanceRequest>,
    ) -> Result<Response<api::RebalanceResponse>, Status> {
        let request = request.into_inner();
        let account = wire::account_id("account", &request.account)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let amount = request
            .amount
            .trim()
            .parse()
            .map_err(|error| Status::invalid_argument(format!("amount: {error}")))?;
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
        let account = wire::account_id("account", &request.account)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let command = match api::AccountStatus::try_from(request.status) {
            Ok(api::AccountStatus::Active) => ControlCommand::Unfreeze { account },
            Ok(api::AccountStatus::Frozen) => ControlCommand::Freeze { account },
            Ok(api::AccountStatus::Closed) => ControlCommand::Close { account },
            _ => return Err(Status::invalid_argument("status: ACTIVE, FROZEN or CLOSED")),
        };
        let result = self.node.change_status(command).await;
        Ok(api::ChangeAccountStatusResponse {
            result: Some(match (&result, Self::error_of(&result)) {
                (CommandResult::Applied { fresh, .. }, _) => {
                    api::change_account_status_response::Result::Changed(*fresh)
                }
                (_, error) => {
                    api::change_account_status_response::Result::Error(error.unwrap_or_default())
                }
            }),
        })
    }
}

/// The group name a client sees for a region.
pub fn region_group(region: RegionId) -> String {
    Group::Region(region).name()
}
