//! Routing: which decider decides each unit of a request.
//!
//! Safety rests on one rule: only an account's decider (or a coordinator
//! that parked it) takes from that account's pool. So a request is cut into
//! units, each a command or a closed linked chain, and each unit goes to the
//! one account decider it takes from, or to a coordinator when it takes from
//! several accounts, from one the committed state does not know, or moves a
//! release (numbered in its destination's sequence, which no account's
//! decider owns).

use ledger_reservations::{AccountId, Command, Item, Ledger};
use std::collections::BTreeSet;

/// Which decider a unit goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The decider of this account.
    Account(AccountId),
    /// A coordinator that parks these accounts' deciders (none for a unit
    /// that takes from no account the committed state knows).
    Coordinated(BTreeSet<AccountId>),
    /// Refused whole: one of its commands is not the caller's to send.
    Refused,
}

/// A unit of a request: `items[start..=end]`, a command or a linked chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub start: usize,
    pub end: usize,
    pub route: Route,
}

/// Cuts `items` into units and routes each against `ledger`'s committed
/// state. A chain runs to its first item not linked to the next (or to the
/// end: the caller cut off an open tail). A unit with a command for which
/// `refused` holds is [`Route::Refused`].
pub fn route(ledger: &Ledger, items: &[Item], refused: impl Fn(&Command) -> bool) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let end = items[start..]
            .iter()
            .position(|item| !item.linked)
            .map_or(items.len() - 1, |offset| start + offset);
        let unit = &items[start..=end];
        let keys: Vec<Option<AccountId>> = unit
            .iter()
            .map(|item| ledger.debit_of(&item.command))
            .collect();
        let known: BTreeSet<AccountId> = keys.iter().flatten().copied().collect();
        let releases = unit.iter().any(|item| {
            matches!(
                item.command,
                Command::Release { .. } | Command::AnswerPull { .. }
            )
        });
        let single = keys.iter().all(Option::is_some) && !releases;
        let route = match known.first() {
            _ if unit.iter().any(|item| refused(&item.command)) => Route::Refused,
            Some(account) if single && known.len() == 1 => Route::Account(*account),
            _ => Route::Coordinated(known),
        };
        units.push(Unit { start, end, route });
        start = end + 1;
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_reservations::{
        CurrencyCode, Decimal, Metadata, RegionId, TransferId, TransferRequest,
    };

    fn pay(id: u128, debit: u128, linked: bool) -> Item {
        Item {
            command: Command::Transfer(TransferRequest {
                id: TransferId(id),
                debit: AccountId(debit),
                credit: AccountId(99),
                amount: Decimal::ONE,
                currency: CurrencyCode::new("USD").expect("a valid code"),
                reference: None,
                metadata: Metadata::new(),
            }),
            linked,
        }
    }

    fn routes(items: &[Item], refused: impl Fn(&Command) -> bool) -> Vec<(usize, usize, Route)> {
        let ledger = Ledger::new(RegionId(0), &[RegionId(0), RegionId(1)]).expect("a layout");
        route(&ledger, items, refused)
            .into_iter()
            .map(|unit| (unit.start, unit.end, unit.route))
            .collect()
    }

    fn accounts(ids: &[u128]) -> BTreeSet<AccountId> {
        ids.iter().copied().map(AccountId).collect()
    }

    #[test]
    fn a_unit_goes_to_its_one_account_or_to_a_coordinator() {
        let release = Item::single(Command::Release {
            account: AccountId(5),
            amount: Decimal::ONE,
            to: RegionId(1),
        });
        let unknown_hold = Item::single(Command::PostPending {
            id: TransferId(9),
            pending_id: TransferId(8),
            amount: None,
        });
        let items = [
            pay(1, 5, false),
            pay(2, 5, true),
            pay(3, 6, false),
            pay(4, 7, true),
            pay(5, 7, false),
            release,
            unknown_hold,
        ];
        assert_eq!(
            routes(&items, |_| false),
            vec![
                (0, 0, Route::Account(AccountId(5))),
                (1, 2, Route::Coordinated(accounts(&[5, 6]))),
                (3, 4, Route::Account(AccountId(7))),
                (5, 5, Route::Coordinated(accounts(&[5]))),
                (6, 6, Route::Coordinated(accounts(&[]))),
            ]
        );
    }

    #[test]
    fn an_open_tail_closes_at_the_end_and_a_refused_command_refuses_its_chain() {
        let items = [pay(1, 5, false), pay(2, 6, true), pay(3, 7, true)];
        let refused = |command: &Command| command.transfer_id() == Some(TransferId(3));
        assert_eq!(
            routes(&items, refused),
            vec![(0, 0, Route::Account(AccountId(5))), (1, 2, Route::Refused)]
        );
    }
}
