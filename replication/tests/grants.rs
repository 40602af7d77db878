//! Releases are granted exactly once, across leader changes and partitions.

mod common;

use common::*;
use ledger_hlc::{Hlc, NodeId, SystemClock};
use ledger_replication::*;
use ledger_reservations::*;
use std::collections::BTreeMap;

/// Region 0 on node 1, region 1 on nodes 2, 3 and 4, region 2 on node 5.
const NODES: &[(u64, u16)] = &[(1, 0), (2, 1), (3, 1), (4, 1), (5, 2)];
const BANK: AccountId = AccountId(1);
const ALICE: AccountId = AccountId(10);
const REGION1: Group = Group::Region(RegionId(1));

struct Bank {
    cluster: Cluster,
    clocks: BTreeMap<u64, Hlc<SystemClock>>,
}

impl Bank {
    async fn start() -> Self {
        let cluster = Cluster::start(layout(NODES), Timings::local()).await;
        let clocks = NODES
            .iter()
            .map(|(id, _)| (*id, Hlc::new(NodeId(*id), SystemClock)))
            .collect();
        let mut bank = Self { cluster, clocks };
        for (id, kind) in [(BANK, AccountKind::External), (ALICE, AccountKind::User)] {
            bank.control(ControlCommand::CreateAccount(NewAccount {
                id,
                currency: CurrencyCode::new("USD").expect("code"),
                kind,
                owner: String::new(),
                metadata: Metadata::new(),
            }))
            .await;
        }
        bank
    }

    async fn control(&mut self, command: ControlCommand) {
        let leader = self.cluster.wait_leader(Group::Control).await;
        let node = &self.cluster.nodes[&leader];
        let stamp = self.clocks[&leader].stamp();
        let Ok(Decision::Append(event)) = node
            .ledger()
            .read(|ledger| ledger.decide_control(&command, stamp))
        else {
            panic!("{command:?} is decided");
        };
        let applied = node
            .propose(Group::Control, Proposal::Control(vec![event]))
            .await
            .expect("committed");
        for node in self.cluster.nodes.values() {
            node.wait_applied(Group::Control, applied.index, WAIT)
                .await
                .expect("applied");
        }
    }

    /// Decides a command on the leader of `region` and commits it there.
    async fn region(&mut self, region: u16, command: Command) -> u64 {
        let group = Group::Region(RegionId(region));
        let leader = self.cluster.wait_leader(group).await;
        let node = &self.cluster.nodes[&leader];
        let stamp = self.clocks[&leader].stamp();
        let Ok(Decision::Append(event)) =
            node.ledger().read(|ledger| ledger.decide(&command, stamp))
        else {
            panic!("{command:?} is decided");
        };
        node.propose(group, Proposal::region(vec![event]))
            .await
            .expect("committed")
            .index
    }

    async fn release(&mut self, cents: i64) -> u64 {
        let command = Command::Release {
            account: ALICE,
            amount: Decimal::new(cents, 2),
            to: RegionId(1),
        };
        self.region(0, command).await
    }

    /// Waits until region 1's nodes have region 0's log up to `index`, then
    /// runs the grant round on region 1's leader.
    async fn grant(&mut self, index: u64) -> usize {
        for id in [2, 3, 4] {
            if let Some(node) = self.cluster.nodes.get(&id) {
                node.wait_applied(Group::Region(RegionId(0)), index, WAIT)
                    .await
                    .expect("replicated");
            }
        }
        let leader = self.cluster.wait_leader(REGION1).await;
        self.cluster.nodes[&leader]
            .grant_releases(&self.clocks[&leader])
            .await
            .expect("grants")
    }

    fn pool(&self, node: u64, region: u16) -> i128 {
        self.cluster.nodes[&node].ledger().read(|ledger| {
            ledger
                .region(RegionId(region))
                .and_then(|state| state.pool(ALICE))
                .map_or(0, |pool| pool.available)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_granted_exactly_once_across_leader_changes_and_partitions() {
    let mut bank = Bank::start().await;
    bank.region(
        0,
        Command::Transfer(TransferRequest {
            id: TransferId(1),
            debit: BANK,
            credit: ALICE,
            amount: Decimal::new(10_000, 2),
            currency: CurrencyCode::new("USD").expect("code"),
            reference: None,
            metadata: Metadata::new(),
        }),
    )
    .await;

    let first = bank.release(3_000).await;
    assert_eq!(bank.grant(first).await, 1);
    assert_eq!(bank.grant(first).await, 0, "nothing granted twice");

    // The leader grants, then crashes; the new leader must not grant again.
    let second = bank.release(1_000).await;
    assert_eq!(bank.grant(second).await, 1);
    let old_leader = bank.cluster.wait_leader(REGION1).await;
    bank.cluster.crash(old_leader).await;
    assert_eq!(
        bank.grant(second).await,
        0,
        "the new leader resumes at the high-water mark"
    );
    let third = bank.release(500).await;
    assert_eq!(bank.grant(third).await, 1);

    // Region 0 cut off: it keeps releasing within its pool; region 1 sees
    // nothing until the link returns, then grants it once.
    for other in [2, 3, 4, 5] {
        bank.cluster.transport.cut(1, other);
    }
    let fourth = bank.release(500).await;
    let leader = bank.cluster.wait_leader(REGION1).await;
    assert_eq!(
        bank.cluster.nodes[&leader]
            .grant_releases(&bank.clocks[&leader])
            .await
            .expect("round"),
        0
    );
    bank.cluster.transport.heal();
    assert_eq!(bank.grant(fourth).await, 1);

    // The crashed node returns and catches up. It restarts believing it
    // still leads region 1 in its old term (openraft restores a leader at
    // start-up), so the index to reach is not asked of "the leader": every
    // node waits for everything any node has seen committed, which holds
    // the fourth grant.
    bank.cluster.boot(old_leader).await;
    bank.cluster.wait_caught_up(REGION1).await;
    for node in bank.cluster.nodes.values() {
        node.wait_applied(Group::Region(RegionId(0)), fourth, WAIT)
            .await
            .expect("caught up");
    }

    for (id, node) in &bank.cluster.nodes {
        node.ledger()
            .read(|ledger| ledger.validate())
            .unwrap_or_else(|error| panic!("node {id}: {error}"));
        let home = node
            .ledger()
            .read(|ledger| ledger.region(RegionId(1)).cloned())
            .expect("region 1");
        assert_eq!(home.granted_from(RegionId(0)), 4, "node {id}");
        assert_eq!(
            bank.pool(*id, 1),
            5_000,
            "node {id}: 30 + 10 + 5 + 5 granted"
        );
        assert_eq!(bank.pool(*id, 0), 5_000, "node {id}: 100 less 50 released");
        let balance = node
            .ledger()
            .read(|ledger| ledger.balance(ALICE))
            .expect("known");
        assert_eq!(
            balance.total,
            Money {
                units: 10_000,
                scale: 2
            }
        );
        assert_eq!(balance.in_flight.units, 0);
    }
}
