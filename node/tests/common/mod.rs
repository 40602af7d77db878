//! What the end-to-end tests share: a cluster of real `ledger` processes on
//! 127.0.0.1, and commands and answers of the public API.

#![allow(dead_code)] // each test binary uses its own part

use ledger_node::client::Client;
use ledger_node::dev::{Cluster, DevOptions};
use ledger_node::ids;
use ledger_proto::v1 as api;
use ledger_reservations::TransferId;
use std::time::Duration;

pub const USD: &str = "USD";
pub const BANK: u128 = 1;
pub const SHOP: u128 = 2;

pub fn id(n: u128) -> String {
    ids::format(n)
}

pub async fn cluster(
    regions: u16,
    nodes_per_region: u16,
    base_port: u16,
    dir: &std::path::Path,
) -> Cluster {
    cluster_with(regions, nodes_per_region, base_port, dir, |_| {}).await
}

/// Every test's cluster takes its own ports: `base_port` to `base_port + 8`
/// for Raft, 100 above for the gRPC API and 200 above for HTTP. All stay below 32768, where the
/// kernel's range of ephemeral ports begins: a port in that range can be
/// taken by any outgoing connection of the machine, and a node that cannot
/// bind it never starts.
///
/// [`cluster`] with its options changed by `tune` (how long a proposal or a
/// parked actor waits, say).
pub async fn cluster_with(
    regions: u16,
    nodes_per_region: u16,
    base_port: u16,
    dir: &std::path::Path,
    tune: impl FnOnce(&mut DevOptions),
) -> Cluster {
    assert!(
        u32::from(base_port) + 300 <= 32_768,
        "base port {base_port}: its HTTP ports would reach the ephemeral range"
    );
    let mut options = DevOptions::new(regions, nodes_per_region, base_port, dir.to_owned());
    options.binary = Some(env!("CARGO_BIN_EXE_ledger").into());
    options.fault_injection = true;
    tune(&mut options);
    Cluster::start(&options).await.expect("the cluster starts")
}

/// Reads `stream` until the node closes it (at most 30 s); how long that
/// took.
pub async fn closed_after(mut stream: impl tokio::io::AsyncRead + Unpin) -> Duration {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the connection was not closed: {read:?}"
    );
    started.elapsed()
}

/// A channel to the gRPC API at `address`.
pub async fn channel(address: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("an endpoint")
        .connect()
        .await
        .expect("the node answers")
}

/// The API address of node `id`.
pub fn api_of(cluster: &Cluster, id: u64) -> String {
    cluster
        .nodes
        .iter()
        .find(|node| node.id == id)
        .map(|node| node.api.clone())
        .expect("a node")
}

/// The node that `client`'s node says leads `group`, once one does that is
/// not `not` (0: any).
pub async fn leader_other_than(client: &Client, group: &str, not: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(status) = client.status().await
            && let Some(leader) = status
                .groups
                .iter()
                .find(|known| known.group == group)
                .map(|known| known.leader)
                .filter(|leader| *leader != 0 && *leader != not)
        {
            return leader;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader of {group} but {not}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of each of the three regions' first node.
pub async fn region_clients(cluster: &Cluster) -> [Client; 3] {
    let mut clients = Vec::new();
    for region in 0..3 {
        let address = cluster.api_of(region).expect("region");
        clients.push(Client::connect(address).await.expect("connects"));
    }
    clients
        .try_into()
        .unwrap_or_else(|_| unreachable!("three clients"))
}

pub fn account_in(n: u128, kind: api::AccountKind, currency: &str) -> api::NewAccount {
    api::NewAccount {
        id: id(n),
        currency: currency.into(),
        kind: kind as i32,
        owner: format!("owner {n}"),
        metadata: Default::default(),
    }
}

pub fn account(n: u128, kind: api::AccountKind) -> api::NewAccount {
    account_in(n, kind, USD)
}

/// Command `n` (transfer id `0x10_0000 + n`), on its own.
pub fn command(n: u128, kind: api::transfer_command::Kind) -> api::TransferCommand {
    api::TransferCommand {
        id: id(0x10_0000 + n),
        linked: false,
        kind: Some(kind),
    }
}

/// The id of command `n` moved to the nearest one that `region` of three
/// decides (decision 0009: only that region ever decides it).
pub fn id_of_region(region: usize, n: u128) -> String {
    ids::format(TransferId(0x10_0000 + n).minted_for(region, 3).0)
}

/// `command` with its id moved to the nearest one that `region` of three
/// decides.
pub fn of_region(region: usize, mut command: api::TransferCommand) -> api::TransferCommand {
    let raw = ids::parse(&command.id).expect("an id");
    command.id = ids::format(TransferId(raw).minted_for(region, 3).0);
    command
}

pub fn movement(
    n: u128,
    debit: u128,
    credit: u128,
    amount: &str,
    currency: &str,
) -> api::TransferCommand {
    command(
        n,
        api::transfer_command::Kind::Transfer(api::Move {
            debit: id(debit),
            credit: id(credit),
            amount: amount.into(),
            currency: currency.into(),
            reference: String::new(),
            metadata: Default::default(),
        }),
    )
}

pub fn transfer(n: u128, debit: u128, credit: u128, amount: &str) -> api::TransferCommand {
    movement(n, debit, credit, amount, USD)
}

pub fn hold(
    n: u128,
    debit: u128,
    credit: u128,
    amount: &str,
    timeout_ms: u64,
) -> api::TransferCommand {
    let mut command = transfer(n, debit, credit, amount);
    if let Some(api::transfer_command::Kind::Transfer(body)) = command.kind.take() {
        command.kind = Some(api::transfer_command::Kind::Pending(api::Hold {
            transfer: Some(body),
            timeout_ms,
        }));
    }
    command
}

pub fn void(n: u128, pending: u128) -> api::TransferCommand {
    command(
        n,
        api::transfer_command::Kind::Void(api::Void {
            pending_id: id(0x10_0000 + pending),
        }),
    )
}

pub fn withdrawal(
    n: u128,
    account: u128,
    amount: &str,
    destination: &str,
    timeout_ms: u64,
) -> api::TransferCommand {
    command(
        n,
        api::transfer_command::Kind::Withdrawal(api::Withdrawal {
            account: id(account),
            external: id(BANK),
            amount: amount.into(),
            currency: USD.into(),
            destination: destination.into(),
            timeout_ms,
        }),
    )
}

pub fn applied(result: &api::TransferResult) -> Option<&api::Applied> {
    match &result.result {
        Some(api::transfer_result::Result::Applied(applied)) => Some(applied),
        _ => None,
    }
}

pub fn error(result: &api::TransferResult) -> Option<&api::Error> {
    match &result.result {
        Some(api::transfer_result::Result::Error(error)) => Some(error),
        _ => None,
    }
}

pub fn code(result: &api::TransferResult) -> String {
    match &result.result {
        Some(api::transfer_result::Result::Applied(_)) => "APPLIED".into(),
        Some(api::transfer_result::Result::Error(error)) => error.code.clone(),
        None => "NONE".into(),
    }
}

/// Creates accounts and checks each was created, retrying the call while
/// an answer is retryable (a change of the control log's leader leaves an
/// outcome unknown): a retry of the same accounts is answered as created.
pub async fn create(client: &Client, accounts: Vec<api::NewAccount>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = client
            .create_accounts(accounts.clone())
            .await
            .expect("answered");
        let retry = response.results.iter().any(|result| {
            matches!(&result.result, Some(api::account_result::Result::Error(error)) if error.retryable)
        });
        if !retry || tokio::time::Instant::now() > deadline {
            for result in response.results {
                assert!(
                    matches!(result.result, Some(api::account_result::Result::Created(_))),
                    "{result:?}"
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bank (EXTERNAL), the shop (SYSTEM) and `users` (USER), in USD.
pub async fn open_accounts(client: &Client, users: &[u128]) {
    let mut accounts = vec![
        account(BANK, api::AccountKind::External),
        account(SHOP, api::AccountKind::System),
    ];
    accounts.extend(
        users
            .iter()
            .map(|user| account(*user, api::AccountKind::User)),
    );
    create(client, accounts).await;
}

/// Sends commands in one call, retrying the whole call while the node
/// does not answer or answers that every command should be retried (no
/// leader yet, an account not known there yet), as a gateway would.
pub async fn submit_all(
    client: &Client,
    commands: Vec<api::TransferCommand>,
) -> Vec<api::TransferResult> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match client.create_transfers(commands.clone()).await {
            Ok(response) => {
                let retry = response.results.iter().all(|result| {
                    error(result)
                        .is_some_and(|error| error.retryable && error.code != "INSUFFICIENT_FUNDS")
                });
                if !retry || tokio::time::Instant::now() > deadline {
                    return response.results;
                }
            }
            Err(failure) if tokio::time::Instant::now() < deadline => {
                eprintln!("retrying after {failure}");
            }
            Err(failure) => panic!("no answer: {failure}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`submit_all`] of one command.
pub async fn submit(client: &Client, command: api::TransferCommand) -> api::TransferResult {
    submit_all(client, vec![command])
        .await
        .into_iter()
        .next()
        .expect("one result")
}

/// The available amount of `account` in `region`'s pool, as `client` sees it.
pub async fn pool(client: &Client, account: u128, region: u32) -> Option<String> {
    let response = client
        .lookup_accounts(vec![id(account)])
        .await
        .expect("answered");
    response.accounts.first().and_then(|view| {
        view.regions
            .iter()
            .find(|pool| pool.region == region)
            .map(|pool| pool.available.clone())
    })
}

/// Waits until `client` sees `available` in `region`'s pool of `account`.
pub async fn wait_pool(client: &Client, account: u128, region: u32, available: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = pool(client, account, region).await;
        if found.as_deref() == Some(available) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pool of {account} in region {region}: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Moves `amount` of `account`'s reservation from the region of `client`'s
/// node to region `to`, and checks that the release was applied.
pub async fn rebalanced(client: &Client, account: u128, amount: &str, to: u32) {
    let response = client
        .rebalance(api::RebalanceRequest {
            account: id(account),
            amount: amount.into(),
            to_region: to,
        })
        .await
        .expect("answered");
    assert!(
        matches!(
            response.result,
            Some(api::rebalance_response::Result::Applied(_))
        ),
        "{response:?}"
    );
}

/// Waits until transfer `n` is in `state` as `client` sees it.
pub async fn wait_state(client: &Client, n: u128, state: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(found) = client.lookup_transfers(vec![id(0x10_0000 + n)]).await
            && found
                .transfers
                .first()
                .is_some_and(|transfer| transfer.state == state)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "transfer {n} never {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts every node of the cluster still answers and still commits: a
/// top-up in each region is applied.
pub async fn every_region_commits(cluster: &Cluster, account: u128, first_id: u128) {
    let clients = region_clients(cluster).await;
    for (region, client) in clients.iter().enumerate() {
        let n = first_id + region as u128;
        // An id of that region's, so that it decides it (decision 0009).
        let command = of_region(region, transfer(n, BANK, account, "1.00"));
        let result = submit(client, command).await;
        assert_eq!(
            applied(&result).map(|done| done.region),
            Some(region as u32),
            "region {region} commits: {result:?}"
        );
    }
}

/// The totals of `accounts` as `client`'s node sees them.
pub async fn totals(client: &Client, accounts: &[u128]) -> Vec<String> {
    let response = client
        .lookup_accounts(accounts.iter().map(|n| id(*n)).collect())
        .await
        .expect("answered");
    totals_of(&response)
}

/// The totals a lookup answered, in order. An account this node has not
/// heard of yet shows as missing, so views with and without it differ until
/// the control log reaches the node.
fn totals_of(response: &api::LookupAccountsResponse) -> Vec<String> {
    let mut totals: Vec<String> = response
        .accounts
        .iter()
        .map(|view| view.total.clone())
        .collect();
    totals.extend(response.missing.iter().map(|id| format!("missing {id}")));
    totals
}

/// Waits until every node holds the same state, and returns the totals of
/// `accounts` there: every node reports the same totals having applied the
/// same index of every region's log. Equal totals alone are not enough: two
/// nodes that each lack another region's latest transfer can show the same
/// sum.
pub async fn converged(cluster: &Cluster, nodes: &[u64], accounts: &[u128]) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut views = Vec::new();
        for node in nodes {
            let address = &cluster
                .nodes
                .iter()
                .find(|known| known.id == *node)
                .expect("node")
                .api;
            let client = Client::connect(address).await.expect("connects");
            let response = match client
                .lookup_accounts(accounts.iter().map(|n| id(*n)).collect())
                .await
            {
                Ok(response) => response,
                // A node still catching up after a heal says so, for as
                // long as its replicas do not form one cut (2 s at a time):
                // it has not converged yet.
                Err(ledger_node::client::ClientError::Status(status))
                    if status.message().starts_with("STALE_REPLICA") =>
                {
                    views.push((
                        vec![format!("node {node}: {}", status.message())],
                        Vec::new(),
                    ));
                    continue;
                }
                Err(error) => panic!("node {node} answers: {error}"),
            };
            views.push((
                totals_of(&response),
                ledger_node::client::applied_by_region(&response.watermarks),
            ));
        }
        if views.windows(2).all(|pair| pair[0] == pair[1]) {
            return views.remove(0).0;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "views differ: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
