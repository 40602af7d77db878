//! The checkers: one invariant each, each reading only the history and the
//! final reads of every node. A checker returns what it found wrong.

use crate::history::{AccountRead, History, Outcome, Verdict};
use crate::observe::Finals;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;

mod available;
mod commands;
mod order;
mod pools;

pub use available::{Served, availability};

/// What the checkers read.
pub struct Evidence<'a> {
    pub history: &'a History,
    pub finals: &'a Finals,
    /// The times a region was cut off whole from every other (none when
    /// the run's faults are not known, as in `jepsen bank check`).
    pub cut_off: &'a [CutOff],
}

/// A region cut off whole from every other, from `from_ns` to `to_ns`
/// (wall time, as the history's).
#[derive(Debug, Clone, Copy)]
pub struct CutOff {
    pub region: u32,
    pub from_ns: u128,
    pub to_ns: u128,
}

/// The share of its transfers a cut-off region must acknowledge (refusals
/// for want of funds left out): it spends its own pools without asking.
pub const AVAILABILITY_MIN: f64 = 0.9;

pub struct Checker {
    pub name: &'static str,
    /// The invariant, in words.
    pub invariant: &'static str,
    pub check: fn(&Evidence) -> Vec<String>,
}

pub const CHECKERS: &[Checker] = &[
    Checker {
        name: "totals",
        invariant: "the balances of the run's accounts sum to zero in every read and at the end (money is neither made nor lost)",
        check: totals,
    },
    Checker {
        name: "not-negative",
        invariant: "no USER account is below zero in any read, in total, available, or any region's available or held",
        check: not_negative,
    },
    Checker {
        name: "one-decision",
        invariant: "an id is applied once: never refused once acknowledged, never acknowledged by two regions, never answered as new twice",
        check: one_decision,
    },
    Checker {
        name: "acknowledged-kept",
        invariant: "every acknowledged transfer is held by every node, as it was sent",
        check: acknowledged_kept,
    },
    Checker {
        name: "refused-absent",
        invariant: "no transfer that was refused, or never sent, is held by any node",
        check: refused_absent,
    },
    Checker {
        name: "balances-explained",
        invariant: "every account's total at every node is what the transfers it holds add up to (nothing applied twice, nothing from nowhere)",
        check: balances_explained,
    },
    Checker {
        name: "available",
        invariant: "a region cut off from the others acknowledges, before the heal, at least 90% of the plain transfers its clients send while cut off (refusals for want of funds left out), and its clients go on sending at at least a quarter of their rate while no region is cut off",
        check: available::available,
    },
    Checker {
        name: "chains-whole",
        invariant: "a linked chain is all or nothing: every node holds all of its transfers or none",
        check: commands::chains_whole,
    },
    Checker {
        name: "holds-resolved",
        invariant: "a hold ends as its acknowledged post or void says (never both), else expires; a withdrawal's hold is posted by the rail, or voided when the rail refuses",
        check: commands::holds_resolved,
    },
    Checker {
        name: "stamps-ordered",
        invariant: "stamps increase along each region's log, and every node holds a transfer with the same stamp",
        check: order::stamps_ordered,
    },
    Checker {
        name: "credit-before-spend",
        invariant: "replayed in stamp order, no USER account's available balance is ever below zero: a spend is stamped after the credit it spends",
        check: order::credit_before_spend,
    },
    Checker {
        name: "pools-balanced",
        invariant: "per account, in every read, released equals granted plus in flight: in flight (released less granted) never below zero, nothing in flight at the end, and the node's own sums hold (available = the regions' + in flight, total = available + held)",
        check: pools::pools_balanced,
    },
    Checker {
        name: "converged",
        invariant: "once the faults stop, every node holds the same transfers and figures as of the same position of every region's log",
        check: converged,
    },
];

pub(crate) fn decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str(text).ok()
}

/// One read of the run, named for findings.
pub(crate) struct Seen<'a> {
    pub what: String,
    pub accounts: &'a [AccountRead],
    /// Of every account of the run.
    pub whole: bool,
    /// A node's final view.
    pub last: bool,
}

/// Every read of the run: those in the history and each node's final one.
pub(crate) fn reads<'a>(evidence: &'a Evidence) -> impl Iterator<Item = Seen<'a>> {
    let history = evidence.history.reads.iter().map(|(region, read)| Seen {
        what: format!(
            "a {} read of node {} (region {region})",
            if read.strong { "strong" } else { "plain" },
            read.node
        ),
        accounts: read.accounts.as_slice(),
        whole: !read.partial,
        last: false,
    });
    let finals = evidence.finals.nodes.iter().map(|node| Seen {
        what: format!("node {} at the end", node.node),
        accounts: node.accounts.as_slice(),
        whole: true,
        last: true,
    });
    history.chain(finals)
}

fn totals(evidence: &Evidence) -> Vec<String> {
    let mut wrong = Vec::new();
    for Seen { what, accounts, .. } in reads(evidence).filter(|seen| seen.whole) {
        let mut sum = Decimal::ZERO;
        for account in accounts {
            match decimal(&account.total) {
                Some(total) => sum += total,
                None => wrong.push(format!(
                    "{what}: {} has total {:?}",
                    account.id, account.total
                )),
            }
        }
        if !sum.is_zero() {
            wrong.push(format!("{what}: the balances sum to {sum}"));
        }
    }
    wrong
}

fn not_negative(evidence: &Evidence) -> Vec<String> {
    let mut wrong = Vec::new();
    for Seen { what, accounts, .. } in reads(evidence) {
        for account in accounts.iter().filter(|account| account.kind == "USER") {
            let mut figures = vec![
                ("total".to_owned(), &account.total),
                ("available".to_owned(), &account.available),
            ];
            for (region, available, held) in &account.regions {
                figures.push((format!("available in region {region}"), available));
                figures.push((format!("held in region {region}"), held));
            }
            for (figure, value) in figures {
                if decimal(value).is_none_or(|value| value.is_sign_negative() && !value.is_zero()) {
                    wrong.push(format!("{what}: {} has {figure} {value}", account.id));
                }
            }
        }
    }
    wrong
}

fn one_decision(evidence: &Evidence) -> Vec<String> {
    let mut wrong = Vec::new();
    for attempts in evidence.history.transfers.values() {
        let id = &attempts.transfer.id;
        // The first acknowledgement: the region that decided it, and where
        // its entry is when the answer says it was new.
        let mut applied: Option<(u32, Option<u64>)> = None;
        for outcome in attempts.outcomes.iter().flatten() {
            match (outcome, applied) {
                (
                    Outcome::Ok {
                        decided_by,
                        index,
                        new,
                    },
                    None,
                ) => {
                    applied = Some((*decided_by, new.then_some(*index)));
                }
                (
                    Outcome::Ok {
                        decided_by,
                        index,
                        new,
                    },
                    Some((region, first)),
                ) => {
                    if *decided_by != region {
                        wrong.push(format!(
                            "{id}: acknowledged by region {region}, then by region {decided_by}"
                        ));
                    }
                    // A repeat is answered as not new; new after any
                    // acknowledgement means it was applied again.
                    if *new {
                        let first = first.map_or("a repeat".to_owned(), |at| format!("{at}"));
                        wrong.push(format!("{id}: applied as new after {first}, at {index}"));
                    }
                }
                // Refused before it was applied is a decision of its time
                // (an account not known there yet): a retry may apply it.
                // After it was applied, a retry is answered as applied.
                (Outcome::Refused { code }, Some((region, _))) => wrong.push(format!(
                    "{id}: acknowledged by region {region}, then refused {code}"
                )),
                _ => {}
            }
        }
    }
    wrong
}

/// Every node of the layout that gave no final view: what a checker of the
/// final views cannot vouch for.
pub(crate) fn unseen(evidence: &Evidence) -> Vec<String> {
    evidence
        .finals
        .absent
        .iter()
        .map(|(node, why)| format!("node {node} gave no final view: {why}"))
        .collect()
}

fn acknowledged_kept(evidence: &Evidence) -> Vec<String> {
    let mut wrong = unseen(evidence);
    for attempts in evidence.history.with_verdict(Verdict::Acknowledged) {
        let sent = &attempts.transfer;
        for node in &evidence.finals.nodes {
            match node.found.get(&sent.id) {
                None => wrong.push(format!("node {} lost acknowledged {}", node.node, sent.id)),
                Some(found)
                    if found.debit != sent.debit
                        || found.credit != sent.credit
                        || decimal(&found.amount) != decimal(&sent.amount) =>
                {
                    wrong.push(format!(
                        "node {} holds {} as {found:?}, sent as {sent:?}",
                        node.node, sent.id
                    ));
                }
                Some(_) => {}
            }
        }
    }
    wrong
}

fn refused_absent(evidence: &Evidence) -> Vec<String> {
    let mut wrong = unseen(evidence);
    for verdict in [Verdict::Refused, Verdict::NotSent] {
        for attempts in evidence.history.with_verdict(verdict) {
            for node in &evidence.finals.nodes {
                if node.found.contains_key(&attempts.transfer.id) {
                    wrong.push(format!(
                        "node {} holds {}, which was {verdict:?}: {:?}",
                        node.node, attempts.transfer.id, attempts.outcomes
                    ));
                }
            }
        }
    }
    wrong
}

fn balances_explained(evidence: &Evidence) -> Vec<String> {
    let mut wrong = unseen(evidence);
    for node in &evidence.finals.nodes {
        let mut expected: BTreeMap<&str, Decimal> = BTreeMap::new();
        for (id, found) in &node.found {
            let Some(moved) = found.moved() else {
                wrong.push(format!(
                    "node {}: {id} has amount {:?}",
                    node.node, found.amount
                ));
                continue;
            };
            *expected.entry(found.debit.as_str()).or_default() -= moved;
            *expected.entry(found.credit.as_str()).or_default() += moved;
        }
        for account in &node.accounts {
            let expected = expected
                .get(account.id.as_str())
                .copied()
                .unwrap_or_default();
            if decimal(&account.total) != Some(expected) {
                wrong.push(format!(
                    "node {}: {} has {}, its transfers add up to {expected}",
                    node.node, account.id, account.total
                ));
            }
        }
    }
    wrong
}

fn converged(evidence: &Evidence) -> Vec<String> {
    let finals = evidence.finals;
    let mut wrong = Vec::new();
    if !finals.converged {
        wrong.push(format!("the views did not converge: {}", finals.difference));
    }
    if let Some(pair) = finals
        .nodes
        .windows(2)
        .find(|pair| pair[0].found.keys().ne(pair[1].found.keys()))
    {
        wrong.push(format!(
            "nodes {} and {} hold different transfers of the history",
            pair[0].node, pair[1].node
        ));
    }
    wrong
}

/// Every checker's verdict, in order.
/// Each checker's verdict, its invariant, and at most `most` of its
/// findings, a line each.
pub fn findings(verdicts: &[(&'static Checker, Vec<String>)], most: usize) -> String {
    let mut text = String::new();
    for (checker, wrong) in verdicts {
        let verdict = if wrong.is_empty() { "ok" } else { "FAIL" };
        text.push_str(&format!(
            "{:<20} {verdict:<5} {}\n",
            checker.name, checker.invariant
        ));
        for line in wrong.iter().take(most) {
            text.push_str(&format!("    {line}\n"));
        }
        if wrong.len() > most {
            text.push_str(&format!("    ... and {} more\n", wrong.len() - most));
        }
    }
    text
}

pub fn check_all(evidence: &Evidence) -> Vec<(&'static Checker, Vec<String>)> {
    CHECKERS
        .iter()
        .map(|checker| (checker, (checker.check)(evidence)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::entry;
    use crate::history::{Entry, Event, Outcome, Transfer};
    use crate::observe::{Found, NodeFinal};
    use ledger_proto::v1 as api;

    /// An account as a node answers it, read the way the workload reads it.
    fn account(id: &str, kind: &str, total: &str) -> AccountRead {
        let kind = match kind {
            "USER" => api::AccountKind::User,
            "EXTERNAL" => api::AccountKind::External,
            _ => api::AccountKind::System,
        };
        AccountRead::of(&api::AccountView {
            id: id.into(),
            kind: kind as i32,
            total: total.into(),
            available: total.into(),
            regions: vec![api::RegionBalance {
                region: 0,
                available: total.into(),
                held: "0.00".into(),
                as_of_index: 1,
            }],
            ..Default::default()
        })
    }

    fn transfer(id: &str, amount: &str) -> Transfer {
        Transfer::moving(id.into(), "bank".into(), "user".into(), amount.into())
    }

    /// A plain move from the bank to the user, as a node holds it.
    fn found(amount: &str, ns: u64) -> Found {
        Found {
            debit: "bank".into(),
            credit: "user".into(),
            amount: amount.into(),
            kind: "posted".into(),
            state: String::new(),
            stamp: (ns, 0, 1),
        }
    }

    /// One transfer of 10.00 acknowledged and one refused, and two nodes
    /// that hold what they should.
    fn world() -> (Vec<Entry>, Finals) {
        let entries = vec![
            entry("1", Event::Invoke(transfer("kept", "10.00"))),
            entry(
                "1",
                Event::Complete(Outcome::Ok {
                    decided_by: 0,
                    index: 1,
                    new: true,
                }),
            ),
            entry("2", Event::Invoke(transfer("refused", "5000.00"))),
            entry(
                "2",
                Event::Complete(Outcome::Refused {
                    code: "INSUFFICIENT_FUNDS".into(),
                }),
            ),
        ];
        let node = |node: u64| NodeFinal {
            node,
            accounts: vec![
                account("bank", "EXTERNAL", "-10.00"),
                account("user", "USER", "10.00"),
            ],
            applied: vec![(0, 1)],
            found: [("kept".to_owned(), found("10.00", 5))].into(),
        };
        let credited = crate::observe::Movement {
            stamp: (5, 0, 1),
            transfer: "kept".into(),
            movement: "transfer".into(),
            balance_change: "10.00".into(),
            held_change: "0".into(),
        };
        let finals = Finals {
            nodes: vec![node(1), node(2)],
            absent: Vec::new(),
            converged: true,
            difference: String::new(),
            movements: Ok([("user".to_owned(), vec![credited])].into()),
            read_ns: 0,
        };
        (entries, finals)
    }

    /// The checkers that find something wrong.
    fn failing(entries: Vec<Entry>, finals: &Finals) -> Vec<&'static str> {
        failing_cut(entries, finals, &[])
    }

    /// The same, with region cuts.
    fn failing_cut(entries: Vec<Entry>, finals: &Finals, cut_off: &[CutOff]) -> Vec<&'static str> {
        let history = History::of(entries);
        check_all(&Evidence {
            history: &history,
            finals,
            cut_off,
        })
        .into_iter()
        .filter(|(_, wrong)| !wrong.is_empty())
        .map(|(checker, _)| checker.name)
        .collect()
    }

    #[test]
    fn a_run_that_kept_every_invariant_passes() {
        let (entries, finals) = world();
        assert_eq!(failing(entries, &finals), Vec::<&str>::new());
    }

    #[test]
    fn each_checker_finds_its_own_breach() {
        // Money made: a read whose balances do not sum to zero.
        let (mut entries, finals) = world();
        entries.push(entry(
            "3",
            Event::Read(crate::history::Read {
                node: 2,
                accounts: vec![
                    account("bank", "EXTERNAL", "-10.00"),
                    account("user", "USER", "10.01"),
                ],
                partial: false,
                strong: false,
            }),
        ));
        assert_eq!(failing(entries, &finals), ["totals"]);

        // A user below zero (the bank may be).
        let (entries, mut finals) = world();
        for node in &mut finals.nodes {
            node.accounts[1].regions[0].2 = "-1.00".into();
        }
        let failed = failing(entries, &finals);
        assert!(failed.contains(&"not-negative"), "{failed:?}");

        // An acknowledged transfer lost by one node, which also moved no money.
        let (entries, mut finals) = world();
        finals.nodes[1].found.clear();
        finals.nodes[1].accounts = vec![
            account("bank", "EXTERNAL", "0.00"),
            account("user", "USER", "0.00"),
        ];
        let failed = failing(entries, &finals);
        assert!(failed.contains(&"acknowledged-kept"), "{failed:?}");

        // A transfer held with another amount than it was sent with.
        let (entries, mut finals) = world();
        for node in &mut finals.nodes {
            node.found.get_mut("kept").expect("kept").amount = "100.00".into();
        }
        let failed = failing(entries, &finals);
        assert!(failed.contains(&"acknowledged-kept"), "{failed:?}");

        // A refused transfer applied after all.
        let (entries, mut finals) = world();
        for node in &mut finals.nodes {
            node.found.insert("refused".into(), found("5000.00", 6));
        }
        let failed = failing(entries, &finals);
        assert!(failed.contains(&"refused-absent"), "{failed:?}");

        // Applied twice: the balances say more than the transfers held.
        let (entries, mut finals) = world();
        for node in &mut finals.nodes {
            node.accounts = vec![
                account("bank", "EXTERNAL", "-20.00"),
                account("user", "USER", "20.00"),
            ];
        }
        assert_eq!(failing(entries, &finals), ["balances-explained"]);

        // A node that gave no final view is not vouched for.
        let (entries, mut finals) = world();
        finals.nodes.pop();
        finals.absent.push((2, "cannot reach it".into()));
        let failed = failing(entries, &finals);
        assert_eq!(
            failed,
            ["acknowledged-kept", "refused-absent", "balances-explained"]
        );

        // One id acknowledged, and refused on a retry.
        let (mut entries, finals) = world();
        for (op, event) in [
            ("4", Event::Invoke(transfer("kept", "10.00"))),
            (
                "4",
                Event::Complete(Outcome::Refused {
                    code: "INSUFFICIENT_FUNDS".into(),
                }),
            ),
        ] {
            entries.push(entry(op, event));
        }
        assert_eq!(failing(entries, &finals), ["one-decision"]);

        // Refused while its account was not known there yet, then applied
        // by a retry: one decision each time, nothing wrong.
        let (mut entries, finals) = world();
        entries.splice(
            0..0,
            [
                entry("0", Event::Invoke(transfer("kept", "10.00"))),
                entry(
                    "0",
                    Event::Complete(Outcome::Refused {
                        code: "UNKNOWN_ACCOUNT".into(),
                    }),
                ),
            ],
        );
        assert_eq!(failing(entries, &finals), Vec::<&str>::new());

        // Applied as new twice: the ledger applied it twice.
        let (mut entries, finals) = world();
        for (op, event) in [
            ("5", Event::Invoke(transfer("kept", "10.00"))),
            (
                "5",
                Event::Complete(Outcome::Ok {
                    decided_by: 0,
                    index: 9,
                    new: true,
                }),
            ),
        ] {
            entries.push(entry(op, event));
        }
        assert_eq!(failing(entries, &finals), ["one-decision"]);

        // A region cut off that could not spend: one transfer of two sent
        // while cut off was acknowledged (the refusal for want of funds is
        // left out).
        let cut = |region, from_ns, to_ns| CutOff {
            region,
            from_ns,
            to_ns,
        };
        let (entries, finals) = world();
        assert_eq!(
            failing_cut(entries, &finals, &[cut(0, 0, 10)]),
            Vec::<&str>::new()
        );
        let (mut entries, finals) = world();
        entries.push(entry("6", Event::Invoke(transfer("lost", "1.00"))));
        entries.push(entry(
            "6",
            Event::Complete(Outcome::NotSent {
                code: "NOT_LEADER".into(),
            }),
        ));
        assert_eq!(
            failing_cut(entries, &finals, &[cut(0, 0, 10)]),
            ["available"]
        );
        // A cut during which its region's clients sent nothing, or one of
        // another region: nothing was served there.
        let (entries, finals) = world();
        assert_eq!(
            failing_cut(entries, &finals, &[cut(0, 5, 10)]),
            ["available"]
        );
        let (entries, finals) = world();
        assert_eq!(
            failing_cut(entries, &finals, &[cut(1, 0, 10)]),
            ["available"]
        );
        // Held through the cut and acknowledged only after the heal: not
        // served while cut off.
        let (mut entries, finals) = world();
        entries[1].time_ns = 10 + 5_000_000_000;
        assert_eq!(
            failing_cut(entries, &finals, &[cut(0, 0, 10)]),
            ["available"]
        );

        // Views that never agreed.
        let (entries, mut finals) = world();
        finals.converged = false;
        finals.difference = "node 2 behind".into();
        assert_eq!(failing(entries, &finals), ["converged"]);
    }

    /// A hold of `amount` and, when `post`, an acknowledged post of it.
    fn held(id: &str, post: Option<&str>) -> Vec<Entry> {
        let ok = |index| {
            Event::Complete(Outcome::Ok {
                decided_by: 0,
                index,
                new: true,
            })
        };
        let hold = Transfer {
            kind: crate::history::Kind::Hold { timeout_ms: 1_000 },
            ..transfer(id, "1.00")
        };
        let mut entries = vec![entry(id, Event::Invoke(hold)), entry(id, ok(7))];
        if let Some(post) = post {
            let posting = Transfer {
                kind: crate::history::Kind::Post { pending: id.into() },
                ..transfer(post, "1.00")
            };
            entries.extend([entry(post, Event::Invoke(posting)), entry(post, ok(8))]);
        }
        entries
    }

    #[test]
    fn the_checkers_of_chains_holds_stamps_and_pools_find_their_breaches() {
        // A hold posted, the post acknowledged: fine; left open long after
        // its deadline, or posted with no post sent: wrong.
        let (mut entries, mut finals) = world();
        entries.extend(held("h", Some("p")));
        for node in &mut finals.nodes {
            let hold = Found {
                kind: "pending".into(),
                state: "posted".into(),
                ..found("1.00", 7)
            };
            node.found.insert("h".into(), hold);
            node.found.insert(
                "p".into(),
                Found {
                    kind: "post".into(),
                    ..found("1.00", 8)
                },
            );
            node.accounts = vec![
                account("bank", "EXTERNAL", "-11.00"),
                account("user", "USER", "11.00"),
            ];
        }
        assert_eq!(failing(entries.clone(), &finals), Vec::<&str>::new());
        let mut open = finals.clone();
        open.read_ns = 60_000_000_000;
        for node in &mut open.nodes {
            node.found.get_mut("h").expect("h").state = "open".into();
        }
        assert!(failing(entries, &open).contains(&"holds-resolved"));
        let (mut entries, finals_posted) = (world().0, finals);
        entries.extend(held("h", None));
        assert!(failing(entries, &finals_posted).contains(&"holds-resolved"));

        // A chain half applied.
        let (mut entries, mut finals) = world();
        for (op, id) in [("c1", "chained"), ("c2", "lost")] {
            let chained = Transfer {
                chain: Some("chained".into()),
                ..transfer(id, "0.00")
            };
            entries.push(entry(op, Event::Invoke(chained)));
        }
        for node in &mut finals.nodes {
            node.found.insert("chained".into(), found("0.00", 6));
        }
        assert_eq!(failing(entries, &finals), ["chains-whole"]);

        // A later entry of the log stamped before an earlier one.
        let (mut entries, mut finals) = world();
        entries.push(entry("7", Event::Invoke(transfer("later", "0.00"))));
        entries.push(entry(
            "7",
            Event::Complete(Outcome::Ok {
                decided_by: 0,
                index: 2,
                new: true,
            }),
        ));
        for node in &mut finals.nodes {
            node.found.insert("later".into(), found("0.00", 4));
        }
        assert_eq!(failing(entries, &finals), ["stamps-ordered"]);

        // A spend stamped before the credit it spent.
        let (entries, mut finals) = world();
        if let Ok(movements) = &mut finals.movements {
            let user = movements.get_mut("user").expect("user");
            let spend = crate::observe::Movement {
                stamp: (4, 0, 1),
                transfer: "spend".into(),
                balance_change: "-1.00".into(),
                ..user[0].clone()
            };
            user.insert(0, spend);
        }
        assert_eq!(failing(entries, &finals), ["credit-before-spend"]);

        // A release granted twice: less than nothing in flight.
        let (entries, mut finals) = world();
        finals.nodes[0].accounts[1].in_flight = "-1.00".into();
        assert_eq!(failing(entries, &finals), ["pools-balanced"]);
    }
}
