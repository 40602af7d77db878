//! Helpers shared by the core's tests: a node's ledger with a log per region
//! and a control log, driven through the public API only.
#![allow(dead_code)]

use ledger_hlc::NodeId;
use ledger_reservations::*;
use std::str::FromStr;

pub const MS: u64 = 1_000_000;
pub const START_NS: u64 = 1_700_000_000_000 * MS;

pub fn usd() -> CurrencyCode {
    CurrencyCode::new("USD").expect("valid code")
}

pub fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("valid decimal")
}

pub fn region(n: u16) -> RegionId {
    RegionId(n)
}

pub fn account(n: u128) -> AccountId {
    AccountId(n)
}

pub fn tid(n: u128) -> TransferId {
    TransferId(n)
}

/// A stamp `ms` milliseconds after the start.
pub fn at(ms: u64) -> Stamp {
    Stamp::new(START_NS + ms * MS, 0, NodeId(1))
}

/// One node's ledger with the logs it applied, so a test can decide, apply
/// and check in one line.
pub struct Node {
    pub ledger: Ledger,
    pub log: Vec<Event>,
    pub control_log: Vec<ControlEvent>,
    pub now_ms: u64,
}

impl Node {
    pub fn new(home: u16, regions: &[u16]) -> Self {
        let regions: Vec<RegionId> = regions.iter().copied().map(RegionId).collect();
        Self {
            ledger: Ledger::new(RegionId(home), &regions).expect("valid layout"),
            log: Vec::new(),
            control_log: Vec::new(),
            now_ms: 1,
        }
    }

    pub fn stamp(&mut self) -> Stamp {
        self.now_ms += 1;
        at(self.now_ms)
    }

    pub fn control(&mut self, command: ControlCommand) -> Result<Decision<ControlEvent>, Reject> {
        let stamp = self.stamp();
        let decision = self.ledger.decide_control(&command, stamp)?;
        if let Decision::Append(event) = &decision {
            let position = Position::new(self.control_log.len() as u64 + 1, 0);
            assert!(self.ledger.apply_control(position, event).expect("applies"));
            self.control_log.push(event.clone());
        }
        Ok(decision)
    }

    pub fn open(&mut self, id: u128, kind: AccountKind) {
        self.open_in(id, kind, usd());
    }

    pub fn open_in(&mut self, id: u128, kind: AccountKind, currency: CurrencyCode) {
        let created = self.control(ControlCommand::CreateAccount(NewAccount {
            id: account(id),
            currency,
            kind,
            owner: format!("owner-{id}"),
            metadata: Metadata::new(),
        }));
        assert!(matches!(created, Ok(Decision::Append(_))), "{created:?}");
    }

    /// Decides and, on success, applies to the home region.
    pub fn run(&mut self, command: Command) -> Result<Decision<Event>, Reject> {
        let stamp = self.stamp();
        self.run_at(command, stamp)
    }

    pub fn run_at(&mut self, command: Command, stamp: Stamp) -> Result<Decision<Event>, Reject> {
        let decision = self.ledger.decide(&command, stamp)?;
        if let Decision::Append(event) = &decision {
            self.append(event.clone());
        }
        Ok(decision)
    }

    pub fn append(&mut self, event: Event) {
        let position = Position::new(self.log.len() as u64 + 1, 0);
        let home = self.ledger.home();
        assert!(self.ledger.apply(home, position, &event).expect("applies"));
        self.log.push(event);
        self.ledger.validate().expect("valid after every apply");
    }

    pub fn available(&self, id: u128) -> i128 {
        self.ledger
            .home_state()
            .pool(account(id))
            .map_or(0, |pool| pool.available)
    }

    pub fn held(&self, id: u128) -> i128 {
        self.ledger
            .home_state()
            .pool(account(id))
            .map_or(0, |pool| pool.held)
    }
}

pub fn transfer(id: u128, debit: u128, credit: u128, amount: &str) -> TransferRequest {
    TransferRequest {
        id: tid(id),
        debit: account(debit),
        credit: account(credit),
        amount: dec(amount),
        currency: usd(),
        reference: None,
        metadata: Metadata::new(),
    }
}

pub fn event_of(decision: Result<Decision<Event>, Reject>) -> Event {
    match decision {
        Ok(Decision::Append(event)) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

pub fn reject_of<E: std::fmt::Debug>(decision: Result<Decision<E>, Reject>) -> Reject {
    match decision {
        Err(reject) => reject,
        other => panic!("expected a rejection, got {other:?}"),
    }
}
