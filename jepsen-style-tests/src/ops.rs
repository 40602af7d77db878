//! The workload's operations beside a plain move: what each client draws
//! next, the commands of chains, holds and withdrawals, and the calls of
//! the operators and strong readers that run beside the clients.

use crate::bank::{Bank, CURRENCY};
use crate::cluster::RegionClient;
use crate::history::{AccountRead, Admin, Event, Kind, Read, Recorder, Transfer};
use crate::rng::Rng;
use ledger_node::client::{Client, Minter};
use ledger_proto::v1 as api;
use std::time::Duration;

/// What a client does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Move,
    /// Two or three moves linked: all or nothing.
    Chain,
    /// A hold, later posted, voided or left to expire.
    Hold,
    Withdrawal,
}

/// Out of 100 draws, how many of each.
const MIX: &[(Op, u64)] = &[
    (Op::Move, 70),
    (Op::Chain, 12),
    (Op::Hold, 12),
    (Op::Withdrawal, 6),
];

pub fn draw(rng: &mut Rng) -> Op {
    let mut left = rng.below(MIX.iter().map(|(_, weight)| weight).sum());
    for (op, weight) in MIX {
        if left < *weight {
            return *op;
        }
        left -= weight;
    }
    Op::Move
}

/// A client's choices: users, amounts, and ids of its region.
pub struct Draw<'a> {
    pub rng: &'a mut Rng,
    pub users: &'a [String],
    pub max_cents: u64,
    pub minter: &'a Minter,
    pub bank: Bank,
}

impl Draw<'_> {
    pub fn user(&mut self) -> String {
        self.users[self.rng.below(self.users.len() as u64) as usize].clone()
    }

    /// Two distinct users: debit, then credit.
    pub fn pair(&mut self) -> (String, String) {
        let count = self.users.len() as u64;
        let debit = self.rng.below(count);
        let credit = (debit + 1 + self.rng.below(count - 1)) % count;
        (
            self.users[debit as usize].clone(),
            self.users[credit as usize].clone(),
        )
    }

    pub fn amount(&mut self) -> String {
        let cents = 1 + self.rng.below(self.max_cents.max(1));
        rust_decimal::Decimal::new(cents as i64, 2).to_string()
    }

    pub fn id(&mut self) -> String {
        self.minter.id(self.rng.next_u128())
    }

    pub fn moving(&mut self) -> Transfer {
        let (debit, credit) = self.pair();
        let id = self.id();
        Transfer::moving(id, debit, credit, self.amount())
    }

    /// Two or three moves, linked.
    pub fn chain(&mut self) -> Vec<Transfer> {
        let mut chain: Vec<Transfer> = (0..2 + self.rng.below(2)).map(|_| self.moving()).collect();
        let first = chain[0].id.clone();
        for transfer in &mut chain {
            transfer.chain = Some(first.clone());
        }
        chain
    }

    /// A hold that expires 2 to 4 s after it is stamped.
    pub fn hold(&mut self) -> Transfer {
        let mut hold = self.moving();
        hold.kind = Kind::Hold {
            timeout_ms: 2_000 + self.rng.below(2_001),
        };
        hold
    }

    /// A withdrawal to the bank's rail; one in four to a destination the
    /// simulated rail refuses.
    pub fn withdrawal(&mut self) -> Transfer {
        let id = self.id();
        let destination = if self.rng.below(4) == 0 {
            "fail:jepsen".to_owned()
        } else {
            format!("jepsen:{}", self.rng.below(1_000))
        };
        Transfer {
            kind: Kind::Withdrawal { destination },
            ..Transfer::moving(id, self.user(), self.bank.bank(), self.amount())
        }
    }
}

/// What becomes of a hold once acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Post,
    Void,
    Expire,
}

/// A hold's fate, and how long after its acknowledgement it is resolved.
pub fn fate(rng: &mut Rng) -> (Fate, Duration) {
    let fate = match rng.below(10) {
        0..4 => Fate::Post,
        4..7 => Fate::Void,
        _ => Fate::Expire,
    };
    (fate, Duration::from_millis(100 + rng.below(1_400)))
}

/// The command that posts or voids `hold` whole, with an id of `minter`'s
/// region (a hold is resolved in its own).
pub fn resolution(hold: &Transfer, fate: Fate, id: String) -> Option<Transfer> {
    let pending = hold.id.clone();
    let kind = match fate {
        Fate::Post => Kind::Post { pending },
        Fate::Void => Kind::Void { pending },
        Fate::Expire => return None,
    };
    Some(Transfer {
        kind,
        chain: None,
        ..Transfer::moving(
            id,
            hold.debit.clone(),
            hold.credit.clone(),
            hold.amount.clone(),
        )
    })
}

/// The commands of one call of `transfers`, each of a chain linked to the
/// next of the same chain.
pub fn commands(transfers: &[Transfer]) -> Vec<api::TransferCommand> {
    transfers
        .iter()
        .enumerate()
        .map(|(at, transfer)| {
            let linked = transfer.chain.is_some()
                && transfers
                    .get(at + 1)
                    .is_some_and(|next| next.chain == transfer.chain);
            command(transfer, linked)
        })
        .collect()
}

/// The protocol command of `transfer`; `linked` to the next of its call.
pub fn command(transfer: &Transfer, linked: bool) -> api::TransferCommand {
    use api::transfer_command::Kind as Command;
    let moving = || api::Move {
        debit: transfer.debit.clone(),
        credit: transfer.credit.clone(),
        amount: transfer.amount.clone(),
        currency: CURRENCY.into(),
        reference: String::new(),
        metadata: Default::default(),
    };
    let kind = match &transfer.kind {
        Kind::Move => Command::Transfer(moving()),
        Kind::Hold { timeout_ms } => Command::Pending(api::Hold {
            transfer: Some(moving()),
            timeout_ms: *timeout_ms,
        }),
        Kind::Post { pending } => Command::Post(api::Post {
            pending_id: pending.clone(),
            amount: String::new(),
        }),
        Kind::Void { pending } => Command::Void(api::Void {
            pending_id: pending.clone(),
        }),
        Kind::Withdrawal { destination } => Command::Withdrawal(api::Withdrawal {
            account: transfer.debit.clone(),
            external: transfer.credit.clone(),
            amount: transfer.amount.clone(),
            currency: CURRENCY.into(),
            destination: destination.clone(),
            timeout_ms: WITHDRAWAL_TIMEOUT_MS,
        }),
    };
    api::TransferCommand {
        id: transfer.id.clone(),
        linked,
        kind: Some(kind),
    }
}

/// How long the rail has to pay a withdrawal before the ledger voids it.
const WITHDRAWAL_TIMEOUT_MS: u64 = 10_000;

/// An operator's rebalance: some of a user's reservation in the client's
/// region moved to another region. Sent to the client's node, then once to
/// where a NOT_LEADER answer points.
pub async fn rebalance(
    client: &mut RegionClient,
    draw: &mut Draw<'_>,
    regions: &[u32],
    recorder: &Recorder,
) {
    let others: Vec<u32> = regions
        .iter()
        .copied()
        .filter(|region| *region != client.region)
        .collect();
    if others.is_empty() {
        return;
    }
    let request = api::RebalanceRequest {
        account: draw.user(),
        amount: draw.amount(),
        to_region: others[draw.rng.below(others.len() as u64) as usize],
    };
    let call = format!(
        "rebalance {} {} from region {} to region {}",
        request.account, request.amount, client.region, request.to_region
    );
    let outcome = match client.get().await {
        Ok(connected) => rebalanced(&connected, request).await,
        Err(error) => error.to_string(),
    };
    recorder.record(
        &recorder.next_op(),
        client.region,
        Event::Admin(Admin { call, outcome }),
    );
}

async fn rebalanced(client: &Client, request: api::RebalanceRequest) -> String {
    let mut answer = client.rebalance(request.clone()).await;
    if let Ok(api::RebalanceResponse {
        result: Some(api::rebalance_response::Result::Error(error)),
    }) = &answer
        && error.code == "NOT_LEADER"
        && !error.redirect.is_empty()
    {
        answer = match client.to(&error.redirect).await {
            Ok(leader) => leader.rebalance(request).await,
            Err(error) => Err(error),
        };
    }
    match answer {
        Ok(response) => match response.result {
            Some(api::rebalance_response::Result::Applied(_)) => "ok".into(),
            Some(api::rebalance_response::Result::Error(error)) => error.code,
            None => "an empty answer".into(),
        },
        Err(error) => error.to_string(),
    }
}

/// An operator's pool policy: a floor of up to 20.00 for a user in every
/// region, or none ("0"), through the control log.
pub async fn policy(client: &mut RegionClient, draw: &mut Draw<'_>, recorder: &Recorder) {
    let floor = match draw.rng.below(3) {
        0 => "0".to_owned(),
        _ => rust_decimal::Decimal::new(100 + draw.rng.below(1_901) as i64, 2).to_string(),
    };
    let request = api::SetPoolPolicyRequest {
        account: draw.user(),
        floor,
    };
    let call = format!("pool floor {} for {}", request.floor, request.account);
    let outcome = match client.get().await {
        Ok(connected) => match connected.set_pool_policy(request).await {
            Ok(response) => match response.result {
                Some(api::change_account_status_response::Result::Changed(_)) => "ok".into(),
                Some(api::change_account_status_response::Result::Error(error)) => error.code,
                None => "an empty answer".into(),
            },
            Err(error) => error.to_string(),
        },
        Err(error) => error.to_string(),
    };
    recorder.record(
        &recorder.next_op(),
        client.region,
        Event::Admin(Admin { call, outcome }),
    );
}

/// A read of `ids` through the client's node, recorded; false when it did
/// not answer or lacked an account (the control log has not reached the
/// node yet).
pub async fn read(
    client: &mut RegionClient,
    ids: Vec<String>,
    strong: bool,
    partial: bool,
    recorder: &Recorder,
) -> bool {
    let Ok(connected) = client.get().await else {
        return false;
    };
    let Ok(response) = connected.lookup_accounts_with(ids, strong).await else {
        client.reset();
        return false;
    };
    if !response.missing.is_empty() {
        return false;
    }
    let read = Read {
        node: client.node(),
        accounts: response.accounts.iter().map(AccountRead::of).collect(),
        partial,
        strong,
    };
    recorder.record(&recorder.next_op(), client.region, Event::Read(read));
    true
}

/// Two to five distinct users.
pub fn some_users(draw: &mut Draw<'_>) -> Vec<String> {
    let mut users: Vec<String> = (0..2 + draw.rng.below(4)).map(|_| draw.user()).collect();
    users.sort();
    users.dedup();
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_is_drawn_in_its_share() {
        let mut rng = Rng::new(7);
        let mut drawn = std::collections::BTreeMap::new();
        for _ in 0..10_000 {
            *drawn.entry(format!("{:?}", draw(&mut rng))).or_insert(0u64) += 1;
        }
        for (op, weight) in MIX {
            let share = drawn.get(&format!("{op:?}")).copied().unwrap_or(0);
            let expected = weight * 100;
            assert!(
                share.abs_diff(expected) < expected / 5 + 50,
                "{op:?}: {share} of 10,000, expected about {expected}"
            );
        }
    }

    #[test]
    fn commands_say_what_the_history_says() {
        let hold = Transfer {
            kind: Kind::Hold { timeout_ms: 3_000 },
            ..Transfer::moving("h".into(), "a".into(), "b".into(), "1.50".into())
        };
        let post = resolution(&hold, Fate::Post, "p".into()).expect("a post");
        assert_eq!((post.debit.as_str(), post.amount.as_str()), ("a", "1.50"));
        assert!(resolution(&hold, Fate::Expire, "e".into()).is_none());
        let Some(api::transfer_command::Kind::Pending(sent)) = command(&hold, true).kind else {
            panic!("a hold is sent as a pending transfer");
        };
        assert_eq!(sent.timeout_ms, 3_000);
        let Some(api::transfer_command::Kind::Post(sent)) = command(&post, false).kind else {
            panic!("a post");
        };
        assert_eq!(sent.pending_id, "h");
        assert!(sent.amount.is_empty(), "whole");
    }
}
