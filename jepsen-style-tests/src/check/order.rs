//! The checkers of order: stamps along each region's log, and credits
//! before the spends of them.

use super::{Evidence, decimal};
use crate::history::Outcome;
use crate::observe::Movement;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

type Stamp = (u64, u32, u64);
/// A region's log as the history shows it: per index, the stamps of the
/// transfers acknowledged as new there.
type Log<'a> = BTreeMap<u64, Vec<(Stamp, &'a str)>>;

pub(super) fn stamps_ordered(evidence: &Evidence) -> Vec<String> {
    let mut wrong = Vec::new();
    let Some(first) = evidence.finals.nodes.first() else {
        return wrong;
    };
    for node in &evidence.finals.nodes[1..] {
        for (id, found) in &node.found {
            if let Some(theirs) = first.found.get(id)
                && theirs.stamp != found.stamp
            {
                wrong.push(format!(
                    "{id}: stamped {:?} at node {}, {:?} at node {}",
                    theirs.stamp, first.node, found.stamp, node.node
                ));
            }
        }
    }
    // Per region, the stamps of the transfers acknowledged as new at each
    // index of its log (an entry holds several).
    let mut logs: BTreeMap<u32, Log> = BTreeMap::new();
    // An id's first acknowledgement as new says where it is (one-decision
    // says it if there is another).
    let mut placed = std::collections::BTreeSet::new();
    for call in &evidence.history.calls {
        if let Outcome::Ok {
            decided_by,
            index,
            new: true,
        } = call.outcome
            && let Some(found) = first.found.get(&call.id)
            && placed.insert(call.id.as_str())
        {
            logs.entry(decided_by)
                .or_default()
                .entry(index)
                .or_default()
                .push((found.stamp, call.id.as_str()));
        }
    }
    for (region, log) in &logs {
        wrong.extend(out_of_order(*region, log));
    }
    wrong
}

/// Where a later entry of `region`'s log holds a stamp not above every
/// stamp of an earlier entry.
fn out_of_order(region: u32, log: &Log) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut latest: Option<(u64, Stamp, &str)> = None;
    for (index, stamps) in log {
        if let Some((before, stamp, id)) = latest
            && let Some((lower, lower_id)) = stamps.iter().min()
            && *lower <= stamp
        {
            wrong.push(format!(
                "region {region}: {lower_id} at index {index} is stamped {lower:?}, not after {id} at index {before} stamped {stamp:?}"
            ));
        }
        if let Some((highest, id)) = stamps.iter().max() {
            latest = Some((*index, *highest, id));
        }
    }
    wrong
}

pub(super) fn credit_before_spend(evidence: &Evidence) -> Vec<String> {
    let movements = match &evidence.finals.movements {
        Ok(movements) => movements,
        Err(why) => return vec![format!("the movements could not be read: {why}")],
    };
    movements
        .iter()
        .filter_map(|(account, movements)| spent_before_credited(account, movements))
        .collect()
}

/// The first movement, in stamp order, after which `account`'s available
/// balance (all it holds less what is held) is below zero.
fn spent_before_credited(account: &str, movements: &[Movement]) -> Option<String> {
    let (mut balance, mut held) = (Decimal::ZERO, Decimal::ZERO);
    for movement in movements {
        let (Some(change), Some(held_change)) = (
            decimal(&movement.balance_change),
            decimal(&movement.held_change),
        ) else {
            return Some(format!("{account}: a movement unreadable: {movement:?}"));
        };
        balance += change;
        held += held_change;
        if balance - held < Decimal::ZERO {
            return Some(format!(
                "{account}: available {} after {} {} stamped {:?}: spent before the credit it spends was stamped",
                balance - held,
                movement.movement,
                movement.transfer,
                movement.stamp
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(ns: u64, change: &str, held: &str) -> Movement {
        Movement {
            stamp: (ns, 0, 1),
            transfer: format!("t{ns}"),
            movement: "transfer".into(),
            balance_change: change.into(),
            held_change: held.into(),
        }
    }

    #[test]
    fn a_spend_stamped_before_its_credit_is_found() {
        let fine = [moved(1, "5", "0"), moved(2, "0", "3"), moved(3, "-2", "0")];
        assert_eq!(spent_before_credited("a", &fine), None);
        // The hold of 3 leaves 2 available; a spend of 3 goes below zero.
        let early = [moved(1, "5", "0"), moved(2, "0", "3"), moved(3, "-3", "0")];
        let found = spent_before_credited("a", &early).expect("found");
        assert!(found.contains("t3"), "{found}");
        let unreadable = [moved(1, "five", "0")];
        assert!(spent_before_credited("a", &unreadable).is_some());
    }

    #[test]
    fn a_later_entry_stamped_earlier_is_found() {
        let mut log: Log = BTreeMap::new();
        log.insert(3, vec![((10, 0, 1), "a"), ((12, 0, 1), "b")]);
        log.insert(5, vec![((13, 0, 1), "c")]);
        assert!(out_of_order(0, &log).is_empty());
        log.insert(7, vec![((12, 0, 1), "d")]);
        let wrong = out_of_order(0, &log);
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert!(wrong[0].contains("d at index 7"), "{wrong:?}");
    }
}
