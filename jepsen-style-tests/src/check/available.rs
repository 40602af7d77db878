//! The availability checker: a region cut off from the others spends its
//! own pools without asking, so it must go on serving its clients.

use super::{AVAILABILITY_MIN, CutOff, Evidence};
use crate::history::Outcome;
use std::collections::BTreeMap;

/// How long after a cut ends an acknowledgement still counts as the cut
/// region's own (a call sent just before the heal).
const AFTER_CUT_NS: u128 = 1_000_000_000;

/// The share of its rate outside cuts at which a cut-off region's clients
/// must go on sending: below it, something held them up.
pub const SENDING_MIN: f64 = 0.25;

/// Refusals that say the region's pool did not suffice.
const POOR: &[&str] = &["INSUFFICIENT_FUNDS", "PULL_TIMED_OUT"];

/// One transfer as the availability checker sees it: the region and time of
/// its first call; when its region first acknowledged it; whether its
/// region refused it for want of funds.
struct FirstSent {
    region: u32,
    invoked_ns: u128,
    acknowledged_ns: Option<u128>,
    poor: bool,
}

/// What a cut-off region served while cut off.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub cut: CutOff,
    /// Plain transfers its clients first sent while cut (refusals for want
    /// of funds left out), and how many of them it acknowledged in time.
    pub counted: u64,
    pub acknowledged: u64,
    /// Plain transfers its clients first sent per second while cut, and
    /// while no region was cut off.
    pub rate: f64,
    pub calm_rate: f64,
}

/// Every plain transfer (chains, holds and withdrawals left out: they fail
/// on others' fates and on timeouts) by id, where and when it was first
/// sent. A transfer sent again through another region counts where it was
/// first sent.
fn first_sent<'a>(evidence: &Evidence<'a>) -> BTreeMap<&'a str, FirstSent> {
    let mut first: BTreeMap<&str, FirstSent> = BTreeMap::new();
    let history = evidence.history;
    let plain = |id: &str| {
        history
            .transfers
            .get(id)
            .is_some_and(|attempts| attempts.transfer.is_plain())
    };
    for call in history.calls.iter().filter(|call| plain(&call.id)) {
        let seen = first.entry(call.id.as_str()).or_insert(FirstSent {
            region: call.region,
            invoked_ns: call.invoked_ns,
            acknowledged_ns: None,
            poor: false,
        });
        if call.region == seen.region {
            match &call.outcome {
                Outcome::Ok { .. } if seen.acknowledged_ns.is_none() => {
                    seen.acknowledged_ns = Some(call.completed_ns);
                }
                // The pool did not suffice (a pull cannot reach the other
                // regions while cut): a right answer, not a failure to serve.
                Outcome::Refused { code } if POOR.contains(&code.as_str()) => seen.poor = true,
                _ => {}
            }
        }
    }
    first
}

/// Per region, the plain transfers first sent per second while no region
/// was cut off, over the span of the history's first calls.
fn calm_rates(first: &BTreeMap<&str, FirstSent>, cuts: &[CutOff]) -> BTreeMap<u32, f64> {
    let times = || first.values().map(|sent| sent.invoked_ns);
    let (Some(start), Some(end)) = (times().min(), times().max()) else {
        return BTreeMap::new();
    };
    let cut_ns: u128 = cuts
        .iter()
        .map(|cut| cut.to_ns.min(end).saturating_sub(cut.from_ns.max(start)))
        .sum();
    let calm_s = (end - start).saturating_sub(cut_ns) as f64 / 1e9;
    let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
    for sent in first.values() {
        let in_cut = cuts
            .iter()
            .any(|cut| (cut.from_ns..=cut.to_ns).contains(&sent.invoked_ns));
        if !in_cut {
            *counts.entry(sent.region).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(region, count)| (region, count as f64 / calm_s.max(1e-9)))
        .collect()
}

/// Per cut: what its region served while it lasted. A transfer held until
/// the heal and acknowledged then (a second after, for calls sent just
/// before) does not count as served.
pub fn availability(evidence: &Evidence) -> Vec<Served> {
    let first = first_sent(evidence);
    let calm = calm_rates(&first, evidence.cut_off);
    evidence
        .cut_off
        .iter()
        .map(|cut| {
            let (mut acknowledged, mut counted, mut sent_in_cut) = (0, 0, 0);
            let during = first.values().filter(|sent| {
                sent.region == cut.region && (cut.from_ns..=cut.to_ns).contains(&sent.invoked_ns)
            });
            for sent in during {
                sent_in_cut += 1;
                if sent.poor {
                    continue;
                }
                counted += 1;
                if sent
                    .acknowledged_ns
                    .is_some_and(|at| at <= cut.to_ns + AFTER_CUT_NS)
                {
                    acknowledged += 1;
                }
            }
            let seconds = cut.to_ns.saturating_sub(cut.from_ns) as f64 / 1e9;
            Served {
                cut: *cut,
                counted,
                acknowledged,
                rate: f64::from(sent_in_cut) / seconds.max(1e-9),
                calm_rate: calm.get(&cut.region).copied().unwrap_or(0.0),
            }
        })
        .collect()
}

pub(super) fn available(evidence: &Evidence) -> Vec<String> {
    let mut wrong = Vec::new();
    for served in availability(evidence) {
        let region = served.cut.region;
        if served.counted == 0 {
            wrong.push(format!(
                "region {region}'s clients sent no transfer while it was cut off"
            ));
        } else if (served.acknowledged as f64) < AVAILABILITY_MIN * served.counted as f64 {
            wrong.push(format!(
                "region {region} acknowledged {} of {} transfers while cut off",
                served.acknowledged, served.counted
            ));
        }
        if served.rate < SENDING_MIN * served.calm_rate {
            wrong.push(format!(
                "region {region}'s clients sent {:.1} transfers/s while it was cut off, against {:.1}/s while no region was: something held them up",
                served.rate, served.calm_rate
            ));
        }
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::entry;
    use crate::history::{Event, History, Transfer};
    use crate::observe::Finals;

    /// A plain transfer of region 0 sent at `at_s` and acknowledged 10 ms
    /// later.
    fn served_at(n: u32, at_s: f64) -> [crate::history::Entry; 2] {
        let op = format!("op{n}");
        let sent = Transfer::moving(format!("t{n}"), "a".into(), "b".into(), "1.00".into());
        let mut invoke = entry(&op, Event::Invoke(sent));
        invoke.time_ns = (at_s * 1e9) as u128;
        let mut complete = entry(
            &op,
            Event::Complete(Outcome::Ok {
                decided_by: 0,
                index: u64::from(n),
                new: true,
            }),
        );
        complete.time_ns = invoke.time_ns + 10_000_000;
        [invoke, complete]
    }

    fn found(history: &History, cut: CutOff) -> Vec<String> {
        let finals = Finals {
            nodes: Vec::new(),
            absent: Vec::new(),
            converged: true,
            difference: String::new(),
            movements: Ok(BTreeMap::new()),
            read_ns: 0,
        };
        available(&Evidence {
            history,
            finals: &finals,
            cut_off: &[cut],
        })
    }

    #[test]
    fn clients_held_up_while_cut_off_are_found() {
        let cut = CutOff {
            region: 0,
            from_ns: 10_000_000_000,
            to_ns: 20_000_000_000,
        };
        // Ten a second before and after the cut; while cut, ten a second
        // too, or one in ten seconds.
        let steady = |in_cut_every: f64| {
            let mut entries = Vec::new();
            let mut n = 0;
            let mut at = 0.0;
            while at < 30.0 {
                let in_cut = (10.0..=20.0).contains(&at);
                entries.extend(served_at(n, at));
                n += 1;
                at += if in_cut { in_cut_every } else { 0.1 };
            }
            History::of(entries)
        };
        assert_eq!(found(&steady(0.1), cut), Vec::<String>::new());
        let held_up = found(&steady(9.0), cut);
        assert_eq!(held_up.len(), 1, "{held_up:?}");
        assert!(held_up[0].contains("held them up"), "{held_up:?}");
    }
}
