//! The sagas' decisions: the ids of their steps, the answer a withdrawal's
//! payout calls for, and which regions a pull asks (a pull saga's, or a pool
//! policy's to keep an account's floor).
//!
//! Every step is an event under an id derived from the saga's, so a step
//! asked for again (after a crash, or by the next leader) is an idempotent
//! retry.

use ledger_reservations::{
    AccountId, Command, Item, Ledger, Money, RegionId, RegionState, Shortfall, TransferId,
};

/// A withdrawal's post, once its payout was made.
const POST_STEP: u8 = 1;
/// A withdrawal's void, once its payout was refused.
const VOID_STEP: u8 = 2;
/// The step numbers of a pull's asks start here (one per region asked).
const PULL_STEP_BASE: u8 = 16;
/// A pool policy's pull ids: the account's id, then the ask.
const POLICY_ACCOUNT_STEP: u8 = 200;
const POLICY_PULL_STEP: u8 = 201;

/// The id of a saga's own step: derived from the saga's id, so the same step
/// asked for again is an idempotent retry. Its high half is the saga's, so
/// the region that decided the saga decides its steps (decision 0009).
pub fn step_id(saga: TransferId, step: u8) -> TransferId {
    // splitmix64 on each half, keyed by the step: spread, and deterministic.
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let high = (saga.0 >> 64) as u64;
    let low = saga.0 as u64;
    let key = u64::from(step).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let low = mix(low ^ mix(high ^ key) ^ key);
    TransferId((u128::from(high) << 64) | u128::from(low))
}

/// What a withdrawal's payout answer calls for: its hold posted when the
/// rail `paid`, voided when it refused.
pub fn withdrawal_answer(withdrawal: TransferId, paid: bool) -> Command {
    if paid {
        Command::PostPending {
            id: step_id(withdrawal, POST_STEP),
            pending_id: withdrawal,
            amount: None,
        }
    } else {
        Command::VoidPending {
            id: step_id(withdrawal, VOID_STEP),
            pending_id: withdrawal,
        }
    }
}

/// Which regions to ask for `need` of an account's reservation, and for how
/// much: the other regions with more than `keep` available (as this node's
/// replicas show them), the most first, each for at most what it has above
/// `keep`.
fn plan_pulls(
    ledger: &Ledger,
    account: AccountId,
    need: i128,
    keep: i128,
) -> Vec<(RegionId, i128)> {
    let home = ledger.home();
    let mut sources: Vec<(RegionId, i128)> = ledger
        .regions()
        .iter()
        .filter(|region| region.id() != home)
        .map(|region| {
            let available = region.pool(account).map_or(0, |pool| pool.available);
            (region.id(), available - keep)
        })
        .filter(|(_, spare)| *spare > 0)
        .collect();
    sources.sort_by_key(|(_, spare)| std::cmp::Reverse(*spare));
    let mut left = need;
    let mut plan = Vec::new();
    for (from, spare) in sources {
        if left <= 0 {
            break;
        }
        let units = left.min(spare);
        left -= units;
        plan.push((from, units));
    }
    plan
}

/// A pull saga's asks for the `shortfall` of the command `saga` names:
/// the regions with the most first, each for what it seems to have, until
/// the shortfall is covered.
pub fn pull_asks(ledger: &Ledger, saga: TransferId, shortfall: &Shortfall) -> Vec<Item> {
    let account = shortfall.account;
    let scale = shortfall.requested.scale;
    let need = shortfall.requested.units - shortfall.available_local.units;
    let mut asks = Vec::new();
    for (from, units) in plan_pulls(ledger, account, need, 0) {
        let Some(amount) = (Money { units, scale }).to_decimal() else {
            continue;
        };
        let step = PULL_STEP_BASE.saturating_add(u8::try_from(from.0).unwrap_or(u8::MAX));
        asks.push(Item::single(Command::RequestPull {
            id: step_id(saga, step),
            account,
            amount,
            from,
        }));
    }
    asks
}

/// The pool policies, as pulls: where an account with a policy has less
/// than its floor available in this region, and no pull of it from here is
/// still unanswered, ask the regions above their floor for the difference
/// (never taking them below it); at most about `max` asks. The answers and
/// grants are the pull's own steps.
pub fn floor_pulls(ledger: &Ledger, max: usize) -> Vec<Item> {
    let home = ledger.home_state();
    let me = home.id();
    let mut items = Vec::new();
    for (account, floor) in ledger.control().policies() {
        let Some(scale) = ledger.control().account(account).map(|a| a.currency.scale) else {
            continue;
        };
        let floor = i128::try_from(floor).unwrap_or(i128::MAX);
        let available =
            |region: &RegionState| region.pool(account).map_or(0, |pool| pool.available);
        let here = available(home);
        if here >= floor {
            continue;
        }
        let mine: Vec<_> = home
            .pulls()
            .filter(|(_, pull)| pull.account == account)
            .collect();
        let unanswered = mine.iter().any(|(id, pull)| {
            ledger
                .region(pull.from)
                .is_some_and(|from| !from.answered(me, **id))
        });
        if unanswered {
            continue;
        }
        let mut asked = mine.len();
        for (from, units) in plan_pulls(ledger, account, floor - here, floor) {
            let Some(amount) = (Money { units, scale }).to_decimal() else {
                continue;
            };
            asked += 1;
            items.push(Item::single(Command::RequestPull {
                id: policy_pull_id(account, me, asked),
                account,
                amount,
                from,
            }));
        }
        if items.len() >= max {
            break;
        }
    }
    items
}

/// The id of the `n`th pull a region asks for an account: the account's
/// whole id is mixed first, so that no two accounts share a pull id.
fn policy_pull_id(account: AccountId, region: RegionId, n: usize) -> TransferId {
    let per_account = step_id(TransferId(account.0), POLICY_ACCOUNT_STEP);
    let n = u128::try_from(n).unwrap_or(u128::MAX);
    let which = (u128::from(region.0) << 64) | (n & u128::from(u64::MAX));
    step_id(TransferId(per_account.0 ^ which), POLICY_PULL_STEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_are_stable_and_distinct() {
        let withdrawal = TransferId(42);
        assert_eq!(step_id(withdrawal, 1), step_id(withdrawal, 1));
        assert_ne!(step_id(withdrawal, 1), step_id(withdrawal, 2));
        assert_ne!(step_id(withdrawal, 1), step_id(TransferId(43), 1));
        assert_ne!(step_id(withdrawal, 1), withdrawal);
        // Decided where the withdrawal was: the same region for any count.
        let elsewhere = TransferId((5u128 << 64) | 42);
        for regions in 1..=7 {
            assert_eq!(
                step_id(elsewhere, 2).origin_index(regions),
                elsewhere.origin_index(regions)
            );
        }
    }

    #[test]
    fn policy_pull_ids_of_accounts_that_differ_only_in_high_bits_differ() {
        // Finding 2 of the 2026-12-01 audit: the old id XORed `n << 32` into
        // the account id, so these two collided.
        let region = RegionId(1);
        let low = AccountId(5);
        let high = AccountId(5 ^ (1 << 32));
        assert_ne!(
            policy_pull_id(low, region, 1),
            policy_pull_id(high, region, 0)
        );
        let mut seen = std::collections::BTreeSet::new();
        for account in [low, high, AccountId(u128::MAX)] {
            for region in [RegionId(0), RegionId(1)] {
                for n in 0..64 {
                    assert!(seen.insert(policy_pull_id(account, region, n)));
                }
            }
        }
    }
}
