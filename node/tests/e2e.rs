//! End-to-end tests against real `ledger` processes on 127.0.0.1, through
//! the public API only.

mod common;

use common::*;
use ledger_node::client::Client;
use ledger_node::dev::Cluster;
use ledger_proto::v1 as api;
use std::collections::BTreeSet;
use std::time::Duration;

/// Connects to a restarted node once it answers (60 s at most).
async fn reconnect(address: &str) -> Client {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(client) = Client::connect(address).await
            && client.status().await.is_ok()
        {
            return client;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{address} comes back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A follower of region 0 refuses a transfer with NOT_LEADER and the
/// leader's API address, and applies nothing (asked with a raw client, which
/// does not follow redirects).
async fn not_leader_names_the_leader(cluster: &Cluster, status: &api::ClusterStatusResponse) {
    let leader = status
        .groups
        .iter()
        .find(|group| group.group == "region-0")
        .map(|group| group.leader)
        .expect("a leader");
    let follower = cluster
        .nodes
        .iter()
        .find(|node| node.region == 0 && node.id != leader)
        .expect("a follower");
    let leader_api = &cluster
        .nodes
        .iter()
        .find(|node| node.id == leader)
        .expect("leader")
        .api;
    let mut raw =
        ledger_proto::v1::ledger_client::LedgerClient::connect(format!("http://{}", follower.api))
            .await
            .expect("connects");
    let request = api::CreateTransfersRequest {
        commands: vec![transfer(999, BANK, 10, "1.00")],
    };
    let response = raw
        .create_transfers(request)
        .await
        .expect("answered")
        .into_inner();
    let refused = response.results.first().and_then(error).expect("refused");
    assert_eq!(refused.code, "NOT_LEADER");
    assert!(refused.retryable);
    assert_eq!(&refused.redirect, leader_api);
    let lookup = raw
        .lookup_transfers(api::LookupTransfersRequest {
            ids: vec![id(0x10_0000 + 999)],
            strong: false,
        })
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(lookup.missing.len(), 1, "nothing applied");
}

/// grpc.health.v1 says SERVING for the public service, and server
/// reflection lists every service, as grpcurl-style tools need.
async fn serves_health_and_reflection(address: &str) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let channel = channel(address).await;
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: "ledger.v1.Ledger".into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("a message")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("a service list: {answer:?}");
    };
    let names: BTreeSet<String> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    for expected in [
        "ledger.v1.Ledger",
        "ledger.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(expected), "{expected} in {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_regions_decide_locally_and_converge() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 21_000, dir.path()).await;
    let client = |region: u16| Client::connect(cluster.api_of(region).expect("region"));
    let r0 = client(0).await.expect("r0");
    let r1 = client(1).await.expect("r1");
    let r2 = client(2).await.expect("r2");
    let users = [10, 11, 12];
    serves_health_and_reflection(cluster.api_of(0).expect("region 0")).await;
    open_accounts(&r0, &users).await;

    // Top-ups and transfers in every region.
    for (n, (region, user)) in [(&r0, 10), (&r1, 11), (&r2, 12)].into_iter().enumerate() {
        let command = of_region(n, transfer(n as u128, BANK, user, "100.00"));
        let result = submit(region, command).await;
        assert!(applied(&result).is_some(), "{result:?}");
    }
    let result = submit(&r1, of_region(1, transfer(10, 11, 12, "30.00"))).await;
    assert_eq!(applied(&result).map(|a| a.region), Some(1));

    // An idempotent retry, and the same id with other content.
    let retry = submit(&r1, of_region(1, transfer(10, 11, 12, "30.00"))).await;
    assert_eq!(applied(&retry).map(|a| a.new), Some(false));
    let conflict = submit(&r1, of_region(1, transfer(10, 11, 12, "31.00"))).await;
    assert_eq!(
        error(&conflict).map(|e| e.code.as_str()),
        Some("IDEMPOTENCY_CONFLICT")
    );

    // A region spends its own pool (pulling from others what its pool
    // lacks) and refuses what exceeds the balance everywhere, saying what is
    // where as far as it has seen: first let region 0 see region 1's last
    // transfer.
    wait_pool(&r0, 11, 1, "70.00").await;
    let refused = submit(&r0, transfer(11, 11, 10, "70.01")).await;
    let refused = error(&refused).expect("refused");
    assert_eq!(refused.code, "INSUFFICIENT_FUNDS");
    assert_eq!(
        (
            refused.available_local.as_str(),
            refused.available_global.as_str()
        ),
        ("0.00", "70.00")
    );

    // Rebalance 50.00 of user 11 from region 1 to region 0, then spend it there.
    rebalanced(&r1, 11, "50.00", 0).await;
    wait_pool(&r0, 11, 0, "50.00").await;
    let spent = submit(&r0, transfer(12, 11, 10, "40.00")).await;
    assert!(
        applied(&spent).is_some(),
        "the grant arrives and the region spends it: {spent:?}"
    );

    // Bad input of every kind is refused whole, and nothing is applied.
    let mut bad = transfer(13, BANK, 10, "1.001");
    let answer = submit(&r0, bad.clone()).await;
    assert_eq!(
        error(&answer).map(|e| e.code.as_str()),
        Some("INVALID_AMOUNT")
    );
    bad.id = "not-an-id".into();
    let whole = r0
        .create_transfers(vec![transfer(14, BANK, 10, "1.00"), bad])
        .await;
    assert!(
        matches!(whole, Err(ledger_node::client::ClientError::Status(ref status)) if status.code() == tonic::Code::InvalidArgument)
    );
    let missing = r0
        .lookup_transfers(vec![id(0x10_0000 + 14)])
        .await
        .expect("answered");
    assert_eq!(
        missing.missing.len(),
        1,
        "the valid command of the refused call was not applied"
    );

    // A payment held for 1 s whose capture never comes: the ledger voids it
    // by its timeout, and the money is back.
    let hold = api::TransferCommand {
        id: id_of_region(2, 20),
        linked: false,
        kind: Some(api::transfer_command::Kind::Pending(api::Hold {
            transfer: Some(api::Move {
                debit: id(12),
                credit: id(SHOP),
                amount: "25.00".into(),
                currency: USD.into(),
                reference: "order never captured".into(),
                metadata: Default::default(),
            }),
            timeout_ms: 1_000,
        })),
    };
    assert!(applied(&submit(&r2, hold).await).is_some());
    wait_pool(&r2, 12, 2, "75.00").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = r2
            .lookup_transfers(vec![id_of_region(2, 20)])
            .await
            .expect("answered");
        if found
            .transfers
            .first()
            .is_some_and(|transfer| transfer.state == "expired")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hold expires: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_pool(&r2, 12, 2, "100.00").await;
    let capture = api::TransferCommand {
        id: id_of_region(2, 21),
        linked: false,
        kind: Some(api::transfer_command::Kind::Post(api::Post {
            pending_id: id_of_region(2, 20),
            amount: String::new(),
        })),
    };
    let late = submit(&r2, capture).await;
    assert_eq!(
        error(&late).map(|e| e.code.as_str()),
        Some("PENDING_EXPIRED")
    );

    let all = [BANK, SHOP, 10, 11, 12];
    let views = converged(&cluster, &cluster.running(), &all).await;
    assert_eq!(views, ["-300.00", "0.00", "140.00", "30.00", "130.00"]);

    // The status reports, per group, what is committed and applied here.
    let status = r1.status().await.expect("status");
    assert_eq!(status.groups.len(), 4);
    assert!(status.clock_ns > 0);
    for group in &status.groups {
        assert!(group.leader != 0, "{group:?}");
        assert!(
            group.applied_index <= group.committed_index + 1,
            "{group:?}"
        );
        assert_eq!(
            group.lag_entries,
            group.committed_index.saturating_sub(group.applied_index)
        );
        assert!(group.last_event_age_ms < 60_000, "{group:?}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_leader_mid_load_loses_no_acknowledged_transfer() {
    let dir = tempfile::tempdir().expect("dir");
    // Region 0 on three nodes (1, 2, 3); regions 1 and 2 on three each too.
    let mut cluster = cluster(3, 3, 22_000, dir.path()).await;
    let entry = Client::connect(cluster.api_of(0).expect("region 0"))
        .await
        .expect("connects");
    open_accounts(&entry, &[10]).await;

    let status = entry.status().await.expect("status");
    not_leader_names_the_leader(&cluster, &status).await;
    let leader = status
        .groups
        .iter()
        .find(|group| group.group == "region-0")
        .map(|group| group.leader)
        .expect("leader");
    let mut acknowledged = BTreeSet::new();
    let mut killed = false;
    for n in 0..60u128 {
        if n == 20 {
            cluster.kill(leader).await.expect("killed");
            killed = true;
        }
        // Any surviving node of region 0 takes the request and redirects.
        let address = cluster
            .nodes
            .iter()
            .find(|node| node.region == 0 && cluster.running().contains(&node.id))
            .map(|node| node.api.clone())
            .expect("a survivor");
        let client = Client::connect(&address).await.expect("connects");
        let result = submit(&client, transfer(100 + n, BANK, 10, "1.00")).await;
        if applied(&result).is_some() {
            acknowledged.insert(id(0x10_0000 + 100 + n));
        }
    }
    assert!(killed);
    assert!(
        acknowledged.len() >= 50,
        "most transfers go through: {}",
        acknowledged.len()
    );

    // Every acknowledged transfer is on every surviving node.
    for node in cluster.running() {
        let address = &cluster
            .nodes
            .iter()
            .find(|known| known.id == node)
            .expect("node")
            .api;
        let client = Client::connect(address).await.expect("connects");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let found = client
                .lookup_transfers(acknowledged.iter().cloned().collect())
                .await
                .expect("answered");
            if found.missing.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {node} lacks {:?}",
                found.missing
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let survivors = cluster.running();
    let views = converged(&cluster, &survivors, &[BANK, 10]).await;
    let expected = format!("{}.00", acknowledged.len());
    assert_eq!(
        views[1], expected,
        "the account holds exactly the acknowledged top-ups"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_cut_off_keeps_spending_its_pool_and_converges_after_the_heal() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 23_000, dir.path()).await;
    let r0 = Client::connect(cluster.api_of(0).expect("r0"))
        .await
        .expect("r0");
    let r1 = Client::connect(cluster.api_of(1).expect("r1"))
        .await
        .expect("r1");
    open_accounts(&r0, &[10, 11]).await;
    assert!(applied(&submit(&r0, transfer(1, BANK, 10, "100.00")).await).is_some());
    let top_up = of_region(1, transfer(2, BANK, 10, "100.00"));
    assert!(applied(&submit(&r1, top_up).await).is_some());
    // Node 2 (region 1) sees region 0's top-up before the cut.
    wait_pool(&r1, 10, 0, "100.00").await;

    cluster.cut(&[2], &[1, 3]).expect("cut");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Region 1, alone, spends within its pool and refuses past it: it asks
    // region 0 for the difference (a pull), which cannot arrive during the
    // cut, and says what is available here and in all.
    let spent = submit(&r1, of_region(1, transfer(3, 10, 11, "60.00"))).await;
    assert_eq!(applied(&spent).map(|a| a.region), Some(1), "{spent:?}");
    // A transfer of region 0's id sent to region 1 during the cut (a
    // hedged request, a gateway failing over) is not decided there: region
    // 1 cannot reach region 0 and says so, retryably.
    let hedged = r1
        .create_transfers(vec![transfer(5, 10, 11, "30.00")])
        .await
        .expect("answered");
    let hedged = error(&hedged.results[0]).expect("not decided in region 1");
    assert_eq!(hedged.code, "REGION_UNAVAILABLE", "{hedged:?}");
    assert!(hedged.retryable);
    let refused = r1
        .create_transfers(vec![of_region(1, transfer(4, 10, 11, "50.00"))])
        .await
        .expect("answered");
    let refused = error(&refused.results[0]).expect("refused");
    assert_eq!(refused.code, "PULL_TIMED_OUT");
    assert_eq!(refused.available_local, "40.00");
    assert_eq!(
        refused.available_global, "140.00",
        "region 0's 100.00 as last seen"
    );
    let short = r1
        .create_transfers(vec![of_region(1, transfer(6, 10, 11, "500.00"))])
        .await
        .expect("answered");
    let short = error(&short.results[0]).expect("refused");
    assert_eq!(short.code, "INSUFFICIENT_FUNDS", "past the global balance");
    assert_eq!(
        (
            short.available_local.as_str(),
            short.available_global.as_str()
        ),
        ("40.00", "140.00")
    );

    // Region 0 keeps committing its own log, and the control log its
    // entries on the majority that remains.
    let other_side = submit(&r0, transfer(5, 10, 11, "30.00")).await;
    assert_eq!(
        applied(&other_side).map(|a| a.region),
        Some(0),
        "{other_side:?}"
    );
    open_accounts(&r0, &[12]).await;
    // The cut is real: region 1 does not see what region 0 committed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let unseen = r1
        .lookup_transfers(vec![id(0x10_0000 + 5)])
        .await
        .expect("answered");
    assert_eq!(
        unseen.missing.len(),
        1,
        "node 2 must not see region 0 during the cut"
    );

    cluster.heal().expect("heal");
    let all = [BANK, 10, 11, 12];
    let views = converged(&cluster, &cluster.running(), &all).await;
    assert_eq!(views, ["-200.00", "110.00", "90.00", "0.00"]);
    // The pull asked during the cut is answered after the heal: region 0
    // releases the 10.00 asked, region 1 grants it.
    wait_pool(&r1, 10, 1, "50.00").await;
    wait_pool(&r1, 10, 0, "60.00").await;
    // The hedge, retried in region 1 after the heal, is answered by region
    // 0 with what it decided: the money moved once.
    let retried = submit(&r1, transfer(5, 10, 11, "30.00")).await;
    let retried = applied(&retried).expect("applied");
    assert_eq!((retried.region, retried.new), (0, false));
    // Every node holds every region's log.
    let decided = vec![
        id(0x10_0000 + 1),
        id_of_region(1, 2),
        id_of_region(1, 3),
        id(0x10_0000 + 5),
    ];
    for node in &cluster.nodes {
        let client = Client::connect(&node.api).await.expect("connects");
        let found = client
            .lookup_transfers(decided.clone())
            .await
            .expect("answered");
        assert!(
            found.missing.is_empty(),
            "node {} lacks {:?}",
            node.id,
            found.missing
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_killed_mid_load_comes_back_with_everything_it_acknowledged() {
    let dir = tempfile::tempdir().expect("dir");
    // Three regions, one node each: killing region 1's node stops region 1.
    let mut cluster = cluster(3, 1, 24_000, dir.path()).await;
    let r1_address = cluster.api_of(1).expect("region 1").to_owned();
    let r0 = Client::connect(cluster.api_of(0).expect("region 0"))
        .await
        .expect("r0");
    open_accounts(&r0, &[10]).await;
    let r1 = Client::connect(&r1_address).await.expect("r1");

    // A load on region 1 while its only node is killed: a request cut off
    // by the kill has an unknown outcome, never a failed one.
    // First, one transfer retried until region 1 knows the accounts.
    // Ids of region 1's, so that region 1 decides them (decision 0009).
    let warm_up = submit(&r1, of_region(1, transfer(199, BANK, 10, "1.00"))).await;
    assert!(applied(&warm_up).is_some(), "{warm_up:?}");
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let count = counted.clone();
    let load = tokio::spawn(async move {
        let (mut acknowledged, mut unknown) = (vec![id_of_region(1, 199)], 0usize);
        for n in 0..400u128 {
            let command = of_region(1, transfer(200 + n, BANK, 10, "1.00"));
            match r1.create_transfers(vec![command]).await {
                Ok(response) if response.results.first().and_then(applied).is_some() => {
                    acknowledged.push(id_of_region(1, 200 + n));
                    count.store(acknowledged.len(), std::sync::atomic::Ordering::SeqCst);
                }
                _ => {
                    unknown += 1;
                    break;
                }
            }
        }
        (acknowledged, unknown)
    });
    // Killed mid-load: once the load is under way (some acknowledged),
    // however slow the machine is.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while counted.load(std::sync::atomic::Ordering::SeqCst) < 6 {
        assert!(tokio::time::Instant::now() < deadline, "the load runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill(2).await.expect("killed");
    let (acknowledged, unknown) = load.await.expect("the load ends");
    assert!(
        acknowledged.len() >= 5,
        "load before the kill: {}",
        acknowledged.len()
    );
    assert!(acknowledged.len() < 400, "the kill happened mid-load");
    // The other regions go on (ids past the load's 200..600).
    assert!(applied(&submit(&r0, transfer(1_000, BANK, 10, "5.00")).await).is_some());

    cluster.restart(2).expect("restarts");
    let r1 = reconnect(&r1_address).await;
    let found = r1
        .lookup_transfers(acknowledged.clone())
        .await
        .expect("answered");
    assert!(
        found.missing.is_empty(),
        "lost after kill -9: {:?}",
        found.missing
    );
    // And region 1 decides again.
    let again = of_region(1, transfer(1_001, BANK, 10, "1.00"));
    assert!(applied(&submit(&r1, again).await).is_some());
    let views = converged(&cluster, &cluster.running(), &[BANK, 10]).await;
    // 5.00 from region 0 and 1.00 after the restart, plus every acknowledged
    // top-up and possibly the one whose answer the kill cut off.
    let total: f64 = views[1].parse().expect("a number");
    let low = 6.0 + acknowledged.len() as f64;
    assert!(
        total >= low && total <= low + unknown as f64,
        "total {total}, acknowledged {}, unknown {unknown}",
        acknowledged.len()
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_pay_out_or_give_the_money_back_and_resume_after_a_crash() {
    let dir = tempfile::tempdir().expect("dir");
    let mut cluster = cluster(3, 1, 25_000, dir.path()).await;
    let address = cluster.api_of(0).expect("region 0").to_owned();
    let r0 = Client::connect(&address).await.expect("r0");
    open_accounts(&r0, &[10]).await;
    assert!(applied(&submit(&r0, transfer(1, BANK, 10, "100.00")).await).is_some());

    // Paid out: the hold is posted to the external account.
    assert!(
        applied(&submit(&r0, withdrawal(2, 10, "30.00", "iban:DE001", 30_000)).await).is_some()
    );
    wait_state(&r0, 2, "posted").await;
    wait_pool(&r0, 10, 0, "70.00").await;

    // Refused by the rail: voided, the money is back.
    assert!(
        applied(
            &submit(
                &r0,
                withdrawal(3, 10, "20.00", "fail:account closed", 30_000)
            )
            .await
        )
        .is_some()
    );
    wait_state(&r0, 3, "voided").await;
    wait_pool(&r0, 10, 0, "70.00").await;

    // The rail does not answer before the withdrawal's deadline; asked
    // again after it, it refuses, and the hold is voided (the ledger never
    // expires a withdrawal hold: the rail may have paid).
    assert!(
        applied(&submit(&r0, withdrawal(4, 10, "5.00", "hang:nowhere", 1_500)).await).is_some()
    );
    wait_state(&r0, 4, "voided").await;
    wait_pool(&r0, 10, 0, "70.00").await;

    // The node dies while the payout is under way; after the restart the
    // leader finds the open withdrawal and finishes it, once.
    assert!(
        applied(&submit(&r0, withdrawal(5, 10, "10.00", "slow:iban:DE002", 60_000)).await)
            .is_some()
    );
    let before = r0
        .lookup_transfers(vec![id(0x10_0000 + 5)])
        .await
        .expect("answered");
    assert_eq!(
        before.transfers.first().map(|t| t.state.as_str()),
        Some("open"),
        "mid-saga"
    );
    cluster.kill(1).await.expect("killed");
    cluster.restart(1).expect("restarted");
    let r0 = reconnect(&address).await;
    wait_state(&r0, 5, "posted").await;
    let post = ledger_engine::step_id(ledger_reservations::TransferId(0x10_0000 + 5), 1);
    let found = r0
        .lookup_transfers(vec![id(post.0)])
        .await
        .expect("answered");
    assert_eq!(found.transfers.len(), 1, "one posting of the withdrawal");

    let views = converged(&cluster, &cluster.running(), &[BANK, 10]).await;
    assert_eq!(views, ["-60.00", "60.00"]);
    cluster.stop().await;
}

fn resolve(n: u128, pending: u128, kind: &str, amount: &str) -> api::TransferCommand {
    use api::transfer_command::Kind;
    let pending_id = id(0x10_0000 + pending);
    command(
        n,
        match kind {
            "post" => Kind::Post(api::Post {
                pending_id,
                amount: amount.into(),
            }),
            "void" => Kind::Void(api::Void { pending_id }),
            _ => Kind::Refund(api::Refund {
                payment_id: pending_id,
                amount: amount.into(),
                reference: String::new(),
                metadata: Default::default(),
            }),
        },
    )
}

/// Waits until `client`'s node has applied the control entry that gave
/// `account` its `status`.
async fn wait_status(client: &Client, account: u128, status: api::AccountStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = client
            .lookup_accounts(vec![id(account)])
            .await
            .expect("answered");
        if found
            .accounts
            .first()
            .is_some_and(|view| view.status == status as i32)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{account} never {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_reaches_the_client_with_its_code() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 26_000, dir.path()).await;
    let r0 = Client::connect(cluster.api_of(0).expect("r0"))
        .await
        .expect("r0");
    open_accounts(&r0, &[10, 11]).await;
    let euro = api::NewAccount {
        id: id(20),
        currency: "EUR".into(),
        kind: api::AccountKind::User as i32,
        owner: "e".into(),
        metadata: Default::default(),
    };
    create(&r0, vec![euro]).await;
    wait_status(&r0, 20, api::AccountStatus::Active).await;
    assert_eq!(
        code(&submit(&r0, transfer(1, BANK, 10, "100.00")).await),
        "APPLIED"
    );
    assert_eq!(
        code(&submit(&r0, hold(2, 10, SHOP, "10.00", 60_000)).await),
        "APPLIED"
    );
    assert_eq!(
        code(&submit(&r0, transfer(3, 10, SHOP, "5.00")).await),
        "APPLIED"
    );

    let mut long_reference = transfer(40, BANK, 10, "1.00");
    if let Some(api::transfer_command::Kind::Transfer(body)) = &mut long_reference.kind {
        body.reference = "x".repeat(300);
    }
    // A void of region 0's hold with an id of region 1's: refused the same
    // way wherever it is decided (decision 0009).
    let elsewhere = of_region(1, resolve(41, 2, "void", ""));
    let cases: Vec<(&str, api::TransferCommand)> = vec![
        ("UNKNOWN_ACCOUNT", transfer(30, 10, 99, "1.00")),
        ("SAME_ACCOUNT", transfer(31, 10, 10, "1.00")),
        ("CURRENCY_MISMATCH", movement(32, 10, 20, "1.00", "USD")),
        ("UNKNOWN_CURRENCY", movement(33, 10, 11, "1.00", "XYZ")),
        ("INVALID_AMOUNT", transfer(34, 10, 11, "-1.00")),
        ("INVALID_AMOUNT", transfer(35, 10, 11, "1.001")),
        ("INVALID_TIMEOUT", hold(36, 10, SHOP, "1.00", 0)),
        ("IDEMPOTENCY_CONFLICT", transfer(1, BANK, 10, "100.01")),
        ("INSUFFICIENT_FUNDS", transfer(37, 10, 11, "1000.00")),
        ("INVALID_FIELD", long_reference),
        ("TARGET_IN_OTHER_REGION", elsewhere),
        ("TRANSFER_NOT_FOUND", resolve(50, 999, "post", "")),
        ("NOT_PENDING", resolve(51, 3, "post", "")),
        ("POST_EXCEEDS_PENDING", resolve(52, 2, "post", "10.01")),
        ("NOT_REFUNDABLE", resolve(53, 2, "refund", "1.00")),
        ("REFUND_EXCEEDS_PAYMENT", resolve(54, 3, "refund", "5.01")),
    ];
    // Sent once each: several of these codes are retryable by design.
    for (expected, command) in cases {
        let response = r0
            .create_transfers(vec![command.clone()])
            .await
            .expect("answered");
        assert_eq!(code(&response.results[0]), expected, "{command:?}");
        if expected == "UNKNOWN_CURRENCY" {
            // A typo stays a typo: retrying it cannot help.
            let refused = error(&response.results[0]).expect("an error");
            assert!(!refused.retryable, "{refused:?}");
        }
    }
    // An amount is a plain decimal string, taken exactly: anything else is
    // refused whole, never rounded or read another way.
    for (n, text) in [
        "0.99999999999999999999999999999",
        "1e2",
        "1_0.00",
        "1.",
        " 1.00",
    ]
    .into_iter()
    .enumerate()
    {
        let whole = r0
            .create_transfers(vec![transfer(70 + n as u128, BANK, 10, text)])
            .await;
        assert!(
            matches!(
                whole,
                Err(ledger_node::client::ClientError::Status(ref status))
                    if status.code() == tonic::Code::InvalidArgument
                        && status.message().starts_with("INVALID_AMOUNT")
            ),
            "{text:?}: {whole:?}"
        );
    }
    // Resolved pending transfers, and linked chains.
    assert_eq!(
        code(&submit(&r0, resolve(55, 2, "post", "4.00")).await),
        "APPLIED"
    );
    assert_eq!(
        code(&submit(&r0, resolve(56, 2, "void", "")).await),
        "PENDING_ALREADY_RESOLVED"
    );
    let mut first = transfer(60, 10, 11, "1.00");
    first.linked = true;
    let second = transfer(61, 10, 11, "10000.00");
    let chain = r0
        .create_transfers(vec![first.clone(), second])
        .await
        .expect("answered");
    let codes: Vec<String> = chain.results.iter().map(code).collect();
    assert_eq!(codes, ["LINKED_CHAIN_FAILED", "INSUFFICIENT_FUNDS"]);
    first.id = id(0x10_0000 + 62);
    let open = r0.create_transfers(vec![first]).await.expect("answered");
    assert_eq!(code(&open.results[0]), "LINKED_CHAIN_OPEN");

    // Account status, through the control log.
    let status = |account: u128, status: api::AccountStatus| api::ChangeAccountStatusRequest {
        account: id(account),
        status: status as i32,
    };
    let changed = |response: api::ChangeAccountStatusResponse| match response.result {
        Some(api::change_account_status_response::Result::Changed(changed)) => changed.to_string(),
        Some(api::change_account_status_response::Result::Error(error)) => error.code,
        None => "NONE".into(),
    };
    assert_eq!(
        changed(
            r0.change_account_status(status(11, api::AccountStatus::Frozen))
                .await
                .expect("answered")
        ),
        "true"
    );
    assert_eq!(
        changed(
            r0.change_account_status(status(11, api::AccountStatus::Frozen))
                .await
                .expect("answered")
        ),
        "false"
    );
    wait_status(&r0, 11, api::AccountStatus::Frozen).await;
    assert_eq!(
        code(&submit(&r0, transfer(70, 10, 11, "1.00")).await),
        "ACCOUNT_FROZEN"
    );
    assert_eq!(
        changed(
            r0.change_account_status(status(11, api::AccountStatus::Active))
                .await
                .expect("answered")
        ),
        "true"
    );
    wait_status(&r0, 11, api::AccountStatus::Active).await;
    assert_eq!(
        code(&submit(&r0, transfer(71, 10, 11, "1.00")).await),
        "APPLIED"
    );
    assert_eq!(
        changed(
            r0.change_account_status(status(11, api::AccountStatus::Closed))
                .await
                .expect("answered")
        ),
        "true"
    );
    wait_status(&r0, 11, api::AccountStatus::Closed).await;
    assert_eq!(
        code(&submit(&r0, transfer(72, 10, 11, "1.00")).await),
        "ACCOUNT_CLOSED"
    );
    assert_eq!(
        changed(
            r0.change_account_status(status(11, api::AccountStatus::Active))
                .await
                .expect("answered")
        ),
        "ACCOUNT_CLOSED"
    );
    assert_eq!(
        changed(
            r0.change_account_status(status(99, api::AccountStatus::Frozen))
                .await
                .expect("answered")
        ),
        "UNKNOWN_ACCOUNT"
    );
    let other_owner = api::NewAccount {
        id: id(10),
        currency: USD.into(),
        kind: api::AccountKind::User as i32,
        owner: "someone else".into(),
        metadata: Default::default(),
    };
    let exists = r0
        .create_accounts(vec![other_owner])
        .await
        .expect("answered");
    assert!(
        matches!(&exists.results[0].result, Some(api::account_result::Result::Error(error)) if error.code == "ACCOUNT_EXISTS")
    );

    // Rebalancing rules.
    let rebalance = |account: u128, to_region: u32| api::RebalanceRequest {
        account: id(account),
        amount: "1.00".into(),
        to_region,
    };
    let rebalance_code = |response: api::RebalanceResponse| match response.result {
        Some(api::rebalance_response::Result::Applied(_)) => "APPLIED".to_owned(),
        Some(api::rebalance_response::Result::Error(error)) => error.code,
        None => "NONE".into(),
    };
    assert_eq!(
        rebalance_code(r0.rebalance(rebalance(10, 0)).await.expect("answered")),
        "SAME_REGION"
    );
    assert_eq!(
        rebalance_code(r0.rebalance(rebalance(BANK, 1)).await.expect("answered")),
        "POOL_NOT_APPLICABLE"
    );
    assert_eq!(
        rebalance_code(r0.rebalance(rebalance(10, 7)).await.expect("answered")),
        "UNKNOWN_REGION"
    );
    cluster.stop().await;
}

/// Many requests taking from one account at once: its actor decides each
/// against the committed state plus its own transfers in flight, so they
/// share entries (they do not wait for each other's commit), exactly as many
/// succeed as the pool covers, and chains over two payers (decided by a
/// coordinator that parks both actors) never overdraw either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_has_many_transfers_in_flight_and_is_never_overspent() {
    const SINGLES: u128 = 200;
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 20_000, dir.path()).await;
    let r0 = Client::connect(cluster.api_of(0).expect("r0"))
        .await
        .expect("r0");
    open_accounts(&r0, &[10, 11, 12]).await;
    for (n, user) in [(1, 10), (2, 11)] {
        let result = submit(&r0, transfer(n, BANK, user, "100.00")).await;
        assert!(applied(&result).is_some(), "{result:?}");
    }

    // 200 single transfers of 1.00 from 10 (100 would fit), and 20 chains
    // that take 1.00 from 10 and 4.00 from 11 (11 covers 25), all at once.
    let mut requests = Vec::new();
    for n in 0..SINGLES {
        requests.push(vec![transfer(1_000 + n, 10, 12, "1.00")]);
    }
    for n in 0..20u128 {
        let mut first = transfer(200 + 2 * n, 10, 12, "1.00");
        first.linked = true;
        requests.push(vec![first, transfer(201 + 2 * n, 11, 12, "4.00")]);
    }
    let calls = requests.into_iter().map(|commands| {
        let client = r0.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            // Retryable refusals (a coordinator that found an account busy)
            // are retried as a client would; the same ids keep it idempotent.
            for _ in 0..50 {
                let response = client.create_transfers(commands.clone()).await;
                results = response.expect("answered").results;
                let retry = results.iter().any(|result| {
                    error(result).is_some_and(|e| e.retryable && e.code != "INSUFFICIENT_FUNDS")
                });
                if !retry {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            results
        })
    });
    let mut indexes = BTreeSet::new();
    let mut applied_count = 0;
    let mut refused = 0;
    let mut chains_refused = 0;
    for (request, call) in calls.collect::<Vec<_>>().into_iter().enumerate() {
        let results = call.await.expect("joined");
        if request >= SINGLES as usize && results.iter().any(|result| error(result).is_some()) {
            chains_refused += 1;
        }
        for result in results {
            match (applied(&result), error(&result)) {
                (Some(applied), _) => {
                    applied_count += 1;
                    indexes.insert(applied.index);
                }
                (_, Some(error))
                    if error.code == "INSUFFICIENT_FUNDS"
                        || error.code == "LINKED_CHAIN_FAILED" =>
                {
                    refused += 1;
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
    }
    assert_eq!(applied_count + refused, SINGLES as usize + 40);
    let view = r0
        .lookup_accounts(vec![id(10), id(11), id(12)])
        .await
        .expect("answered");
    let pools: Vec<(String, String)> = view
        .accounts
        .iter()
        .map(|account| {
            let pool = account
                .regions
                .iter()
                .find(|pool| pool.region == 0)
                .expect("region 0");
            (pool.available.clone(), pool.held.clone())
        })
        .collect();
    // Whatever interleaving: never below zero, and every unit accounted for.
    let amount = |text: &str| text.parse::<f64>().expect("a number");
    let (a10, a11, a12) = (
        amount(&pools[0].0),
        amount(&pools[1].0),
        amount(&pools[2].0),
    );
    assert!(a10 >= 0.0 && a11 >= 0.0, "{pools:?}");
    assert_eq!(a10 + a11 + a12, 200.0, "{pools:?}");
    // A refusal is for want of funds at its moment, and pools here only
    // shrink: some single of 1.00 was refused (they would need 200.00), so
    // 10 ends with less than that; a refused chain leaves 10 under 1.00 or
    // 11 under 4.00.
    assert!(a10 < 1.0, "{pools:?}");
    assert!(chains_refused == 0 || a10 < 1.0 || a11 < 4.0, "{pools:?}");
    assert!(
        indexes.len() < applied_count,
        "{applied_count} transfers in {} entries: transfers of one account share entries",
        indexes.len()
    );
    // And the region still commits (an overdraft would have stopped it).
    let result = submit(&r0, transfer(3, BANK, 12, "1.00")).await;
    assert!(applied(&result).is_some(), "{result:?}");
}

/// A debit past this region's pool but within the account's global balance
/// pulls the difference from the regions that have it, then goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debit_past_the_local_pool_pulls_the_difference_from_other_regions() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 19_000, dir.path()).await;
    let [r0, r1, r2] = region_clients(&cluster).await;
    open_accounts(&r0, &[10, 11]).await;
    for (n, region) in [(1, &r0), (2, &r1), (3, &r2)] {
        let command = of_region(n as usize - 1, transfer(n, BANK, 10, "30.00"));
        let result = submit(region, command).await;
        assert!(applied(&result).is_some(), "{result:?}");
    }
    // Region 0 sees the other regions' pools before it decides.
    wait_pool(&r0, 10, 1, "30.00").await;
    wait_pool(&r0, 10, 2, "30.00").await;

    let result = submit(&r0, transfer(4, 10, 11, "75.00")).await;
    let done = applied(&result).unwrap_or_else(|| panic!("pulled and applied: {result:?}"));
    assert_eq!(done.region, 0);
    // 45.00 came over: 30.00 from one region and 15.00 from the other.
    let view = r0.lookup_accounts(vec![id(10)]).await.expect("answered");
    let pools: Vec<String> = view.accounts[0]
        .regions
        .iter()
        .map(|pool| pool.available.clone())
        .collect();
    let mut others = vec![pools[1].clone(), pools[2].clone()];
    others.sort();
    assert_eq!(pools[0], "0.00", "{pools:?}");
    assert_eq!(others, ["0.00", "15.00"], "{pools:?}");
    assert_eq!(view.accounts[0].total, "15.00");
    cluster.stop().await;
}

/// Account history with the balance after each movement and as of a stamp,
/// a live stream of a region's transfers for one account, and strong reads
/// that hold everything committed before them (and fail, naming the region,
/// when a region's leader is cut off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_stream_and_strong_reads() {
    use tokio_stream::StreamExt;
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 18_000, dir.path()).await;
    let [r0, r1, r2] = region_clients(&cluster).await;
    open_accounts(&r0, &[10, 11]).await;
    for (command, region) in [
        (transfer(1, BANK, 10, "100.00"), &r0),
        (transfer(2, 10, 11, "30.00"), &r0),
        (of_region(1, transfer(3, BANK, 11, "50.00")), &r1),
    ] {
        let result = submit(region, command).await;
        assert!(applied(&result).is_some(), "{result:?}");
    }

    // Strong: region 2's node answers with both regions' transfers, at once.
    let strong = r2
        .lookup_accounts_with(vec![id(11)], true)
        .await
        .expect("answered");
    assert_eq!(strong.accounts[0].total, "80.00");

    // History of 10 in stamp order, and its balance as of the first stamp.
    let history = |as_of: Option<&api::HistoryEntry>| api::AccountHistoryRequest {
        account: id(10),
        as_of_ns: as_of.map_or(0, |entry| entry.stamp_ns),
        as_of_logical: as_of.map_or(0, |entry| entry.stamp_logical),
        as_of_node: as_of.map_or(0, |entry| entry.stamp_node),
        ..Default::default()
    };
    let all = r0.account_history(history(None)).await.expect("answered");
    let seen: Vec<(&str, &str, &str)> = all
        .entries
        .iter()
        .map(|entry| {
            (
                entry.movement.as_str(),
                entry.balance_change.as_str(),
                entry.balance.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("transfer", "100.00", "100.00"),
            ("transfer", "-30.00", "70.00")
        ]
    );
    assert_eq!(all.balance, "70.00");
    let then = r0
        .account_history(history(all.entries.first()))
        .await
        .expect("answered");
    assert_eq!((then.entries.len(), then.balance.as_str()), (1, "100.00"));

    // The stream of region 0's transfers of 11: what is there, then live.
    let mut stream = r0
        .stream_transfers(api::StreamTransfersRequest {
            region: 0,
            from_offset: 0,
            account: id(11),
        })
        .await
        .expect("stream");
    let first = stream.next().await.expect("an event").expect("ok");
    assert_eq!(
        first.transfer.as_ref().map(|t| t.id.clone()),
        Some(id(0x10_0000 + 2))
    );
    for command in [transfer(5, BANK, 10, "1.00"), transfer(4, BANK, 11, "5.00")] {
        let result = submit(&r0, command).await;
        assert!(applied(&result).is_some(), "{result:?}");
    }
    let live = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("in time")
        .expect("an event")
        .expect("ok");
    assert_eq!(
        live.offset,
        first.offset + 2,
        "the top-up of 10 between is not 11's"
    );
    assert_eq!(live.transfer.map(|t| t.amount), Some("5.00".into()));

    // Region 2's only node cut off from the others commits a transfer they
    // cannot see: a strong read elsewhere refuses rather than answer
    // without it.
    cluster.cut(&[3], &[1, 2]).expect("cut");
    // The nodes read their blocked peers every 100 ms: let the cut take
    // effect before region 2 commits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = submit(&r2, of_region(2, transfer(6, BANK, 11, "1.00"))).await;
    assert!(applied(&result).is_some(), "{result:?}");
    let refused = r0.lookup_accounts_with(vec![id(11)], true).await;
    let message = format!("{:?}", refused.expect_err("refused"));
    assert!(
        message.contains("REGION_UNAVAILABLE: region 2"),
        "{message}"
    );
    cluster.heal().expect("heal");
    cluster.stop().await;
}

/// A pool policy keeps a floor of an account's reservation in every region:
/// the regions below it pull from the one above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_policy_keeps_a_floor_in_every_region() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 17_000, dir.path()).await;
    let [r0, r1, _] = region_clients(&cluster).await;
    open_accounts(&r0, &[10]).await;
    let result = submit(&r0, transfer(1, BANK, 10, "100.00")).await;
    assert!(applied(&result).is_some(), "{result:?}");
    let policy = |floor: &str| api::SetPoolPolicyRequest {
        account: id(10),
        floor: floor.into(),
    };
    let set = r1.set_pool_policy(policy("20.00")).await.expect("answered");
    assert_eq!(
        set.result,
        Some(api::change_account_status_response::Result::Changed(true))
    );
    let bad = r1.set_pool_policy(policy("-1")).await.expect("answered");
    assert!(
        matches!(&bad.result, Some(api::change_account_status_response::Result::Error(e)) if e.code == "INVALID_AMOUNT"),
        "{bad:?}"
    );
    // Regions 1 and 2 each pull 20.00 from region 0, which keeps 60.00.
    wait_pool(&r0, 10, 1, "20.00").await;
    wait_pool(&r0, 10, 2, "20.00").await;
    wait_pool(&r0, 10, 0, "60.00").await;
    let view = r0.lookup_accounts(vec![id(10)]).await.expect("answered");
    assert_eq!(view.accounts[0].pool_floor, "20.00");
    assert_eq!(view.accounts[0].total, "100.00");
    cluster.stop().await;
}
