//! The checkers of linked chains and holds: what a chain or a hold ended
//! as, at every node, against what the history says was asked.

use super::Evidence;
use crate::history::{Attempts, Kind, Verdict};
use std::collections::BTreeMap;

pub(super) fn chains_whole(evidence: &Evidence) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut chains: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for attempts in evidence.history.transfers.values() {
        if let Some(chain) = &attempts.transfer.chain {
            chains
                .entry(chain.as_str())
                .or_default()
                .push(attempts.transfer.id.as_str());
        }
    }
    for (chain, ids) in &chains {
        for node in &evidence.finals.nodes {
            let held = ids
                .iter()
                .filter(|id| node.found.contains_key(**id))
                .count();
            if held != 0 && held != ids.len() {
                wrong.push(format!(
                    "node {} holds {held} of the {} transfers of chain {chain}",
                    node.node,
                    ids.len()
                ));
            }
        }
    }
    wrong
}

/// How long past a hold's deadline (or a withdrawal's stamp) it may still
/// be open at the end: the leader's sweep, or the rail's saga, may not
/// have reached it yet.
const OPEN_GRACE_NS: u128 = 10_000_000_000;

/// The post and void commands sent for each hold, by the hold's id.
fn resolutions<'a>(evidence: &Evidence<'a>) -> BTreeMap<&'a str, Vec<&'a Attempts>> {
    let mut by_hold: BTreeMap<&str, Vec<&Attempts>> = BTreeMap::new();
    for attempts in evidence.history.transfers.values() {
        if let Kind::Post { pending } | Kind::Void { pending } = &attempts.transfer.kind {
            by_hold.entry(pending.as_str()).or_default().push(attempts);
        }
    }
    by_hold
}

/// The states a hold may be in at the end, given the post and void
/// commands sent for it; `Err` when the history itself is wrong.
fn states_allowed(resolving: &[&Attempts]) -> Result<Vec<&'static str>, String> {
    let verdict_of = |post: bool| {
        resolving
            .iter()
            .filter(|attempts| matches!(attempts.transfer.kind, Kind::Post { .. }) == post)
            .map(|attempts| attempts.verdict())
            .collect::<Vec<_>>()
    };
    let (posts, voids) = (verdict_of(true), verdict_of(false));
    let acknowledged = |verdicts: &[Verdict]| verdicts.contains(&Verdict::Acknowledged);
    let maybe = |verdicts: &[Verdict]| verdicts.contains(&Verdict::Unknown);
    match (acknowledged(&posts), acknowledged(&voids)) {
        (true, true) => Err("both a post and a void of it were acknowledged".into()),
        (true, false) => Ok(vec!["posted"]),
        (false, true) => Ok(vec!["voided"]),
        (false, false) => {
            let mut states = vec!["expired", "open"];
            if maybe(&posts) {
                states.push("posted");
            }
            if maybe(&voids) {
                states.push("voided");
            }
            Ok(states)
        }
    }
}

pub(super) fn holds_resolved(evidence: &Evidence) -> Vec<String> {
    let mut wrong = Vec::new();
    let by_hold = resolutions(evidence);
    let now = evidence.finals.read_ns;
    for attempts in evidence.history.with_verdict(Verdict::Acknowledged) {
        let hold = &attempts.transfer;
        let (allowed, open_for_ms) = match &hold.kind {
            Kind::Hold { timeout_ms } => {
                match states_allowed(by_hold.get(hold.id.as_str()).map_or(&[][..], Vec::as_slice)) {
                    Ok(allowed) => (allowed, *timeout_ms),
                    Err(why) => {
                        wrong.push(format!("hold {}: {why}", hold.id));
                        continue;
                    }
                }
            }
            Kind::Withdrawal { destination } if destination.starts_with("fail:") => {
                (vec!["voided", "open"], 0)
            }
            Kind::Withdrawal { .. } => (vec!["posted", "open"], 0),
            _ => continue,
        };
        for node in &evidence.finals.nodes {
            let Some(found) = node.found.get(&hold.id) else {
                continue; // acknowledged-kept says it
            };
            let deadline_ns = u128::from(found.stamp.0) + u128::from(open_for_ms) * 1_000_000;
            let overdue = found.state == "open" && now > deadline_ns + OPEN_GRACE_NS;
            if !allowed.contains(&found.state.as_str()) || overdue {
                wrong.push(format!(
                    "node {}: {} {} is {:?}{}; it may be {allowed:?}",
                    node.node,
                    hold.kind.name(),
                    hold.id,
                    found.state,
                    if overdue {
                        " long after its deadline"
                    } else {
                        ""
                    },
                ));
            }
        }
    }
    wrong
}
