//! One transfer id, one decision, in one region, whatever a client sends
//! where (issue 9, audit finding 11, decision 0009): the reproduction of the
//! hedged requests that paid twice, across every pair of regions, with the
//! two regions healthy and cut from each other.

mod common;

use common::*;
use ledger_proto::v1 as api;
use std::collections::BTreeMap;
use std::time::Duration;

/// Ids per case, spread over the three regions' ids.
const IDS_PER_CASE: u128 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedged_requests_move_money_once_across_every_region_pair() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = cluster(3, 1, 31_000, dir.path()).await;
    let clients = region_clients(&cluster).await;
    let cases: Vec<(usize, usize, bool)> = [(0, 1), (0, 2), (1, 2)]
        .into_iter()
        .flat_map(|(a, b)| [(a, b, false), (a, b, true)])
        .collect();
    let payees: Vec<u128> = (0..cases.len() as u128).map(|case| 20 + case).collect();
    open_accounts(&clients[0], &payees).await;
    // Every region knows the payees before they are paid.
    converged(&cluster, &cluster.running(), &payees).await;

    for (case, (a, b, cut)) in cases.iter().copied().enumerate() {
        let payee = payees[case];
        if cut {
            cluster.cut(&[a as u64 + 1], &[b as u64 + 1]).expect("cut");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Each id sent at the same moment to both regions, as a client
        // that hedges its requests would; no region is named anywhere.
        let commands: Vec<api::TransferCommand> = (0..IDS_PER_CASE)
            .map(|k| {
                let n = 1_000 + 10 * case as u128 + k;
                of_region(k as usize % 3, transfer(n, BANK, payee, "2.00"))
            })
            .collect();
        let mut calls = Vec::new();
        for command in &commands {
            for region in [a, b] {
                let client = clients[region].clone();
                let command = command.clone();
                calls.push(tokio::spawn(async move {
                    client.create_transfers(vec![command]).await
                }));
            }
        }
        let mut decided_in: BTreeMap<String, u32> = BTreeMap::new();
        for (index, call) in calls.into_iter().enumerate() {
            let command = &commands[index / 2];
            match call.await.expect("the call's task") {
                Ok(response) => match applied(&response.results[0]) {
                    // Whichever region answers, the deciding region is the
                    // id's own, the same for both copies.
                    Some(done) => {
                        let region = *decided_in.entry(command.id.clone()).or_insert(done.region);
                        assert_eq!(region, done.region, "{} decided in two regions", command.id);
                    }
                    None => eprintln!("case {case}: {}", code(&response.results[0])),
                },
                Err(failure) => eprintln!("case {case}: no answer: {failure}"),
            }
        }
        if cut {
            cluster.heal().expect("heal");
        }
        // The client retries what it has no answer for, anywhere; every
        // retry learns the first decision.
        for command in &commands {
            for region in [a, b] {
                let result = submit(&clients[region], command.clone()).await;
                assert!(applied(&result).is_some(), "case {case}: {result:?}");
            }
        }
        let views = converged(&cluster, &cluster.running(), &[payee]).await;
        assert_eq!(
            views,
            ["10.00"],
            "case {case} (regions {a} and {b}, cut: {cut}): five transfers of 2.00, once each"
        );
    }
    // Nothing arrives late: every payee still holds what it was paid once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let views = converged(&cluster, &cluster.running(), &payees).await;
    assert!(views.iter().all(|total| total == "10.00"), "{views:?}");
}
