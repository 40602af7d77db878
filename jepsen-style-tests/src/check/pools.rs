//! The checker of pools: what one region's pool released, another's
//! granted or is still in flight.

use super::{Evidence, Seen, decimal, reads};
use crate::history::AccountRead;
use rust_decimal::Decimal;

pub(super) fn pools_balanced(evidence: &Evidence) -> Vec<String> {
    let mut wrong = Vec::new();
    for Seen {
        what,
        accounts,
        last,
        ..
    } in reads(evidence)
    {
        for account in accounts {
            if let Some(why) = unbalanced(account, last && evidence.finals.converged) {
                wrong.push(format!("{what}: {}: {why}", account.id));
            }
        }
    }
    wrong
}

/// Why `account`'s figures do not add up: in flight (released less
/// granted) below zero, or not zero `at_rest`; available other than the
/// regions' available plus in flight; total other than available plus
/// held.
fn unbalanced(account: &AccountRead, at_rest: bool) -> Option<String> {
    if account.in_flight.is_empty() {
        // A history from before reads held it: nothing to check.
        return None;
    }
    let figure = |text: &str| decimal(text).ok_or_else(|| format!("a figure {text:?}"));
    let figures = || -> Result<(Decimal, Decimal, Decimal, Decimal, Decimal), String> {
        let mut regions_available = Decimal::ZERO;
        let mut held = Decimal::ZERO;
        for (_, available, region_held) in &account.regions {
            regions_available += figure(available)?;
            held += figure(region_held)?;
        }
        let in_flight = figure(&account.in_flight)?;
        Ok((
            regions_available,
            held,
            in_flight,
            figure(&account.available)?,
            figure(&account.total)?,
        ))
    };
    let (regions_available, held, in_flight, available, total) = match figures() {
        Ok(figures) => figures,
        Err(why) => return Some(why),
    };
    if in_flight < Decimal::ZERO {
        Some(format!("{in_flight} in flight: more granted than released"))
    } else if at_rest && !in_flight.is_zero() {
        Some(format!("{in_flight} still in flight at the end"))
    } else if available != regions_available + in_flight {
        Some(format!(
            "available {available}, the regions' {regions_available} plus {in_flight} in flight"
        ))
    } else if total != available + held {
        Some(format!(
            "total {total}, available {available} plus held {held}"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(
        regions: &[(&str, &str)],
        in_flight: &str,
        available: &str,
        total: &str,
    ) -> AccountRead {
        AccountRead {
            id: "a".into(),
            kind: "USER".into(),
            total: total.into(),
            available: available.into(),
            regions: regions
                .iter()
                .enumerate()
                .map(|(at, (available, held))| (at as u32, (*available).into(), (*held).into()))
                .collect(),
            in_flight: in_flight.into(),
        }
    }

    #[test]
    fn figures_that_do_not_add_up_are_found() {
        let fine = account(&[("5", "1"), ("2", "0")], "3", "10", "11");
        assert_eq!(unbalanced(&fine, false), None);
        assert!(unbalanced(&fine, true).is_some(), "in flight at rest");
        let granted_twice = account(&[("5", "1"), ("8", "0")], "-3", "10", "11");
        assert!(unbalanced(&granted_twice, false).is_some());
        let lost = account(&[("5", "1"), ("2", "0")], "0", "10", "11");
        assert!(unbalanced(&lost, false).is_some());
        let wrong_total = account(&[("5", "1"), ("2", "0")], "3", "10", "10");
        assert!(unbalanced(&wrong_total, false).is_some());
        let old_read = account(&[("5", "1"), ("2", "0")], "", "7", "8");
        assert_eq!(unbalanced(&old_read, true), None);
    }
}
