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

/// Where a pull saga stands, as this node's replicas show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullProgress {
    /// The account's available units in this region.
    pub here: i128,
    /// Its available units in all regions, releases in flight included.
    pub everywhere: i128,
    /// Nothing asked for is on its way any more: every region asked has
    /// answered or has nothing to give, and every release to this region
    /// has been granted here.
    pub settled: bool,
}

/// What a pull saga does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullNext {
    /// Decide the command again: this region has enough, or the account
    /// no longer has enough anywhere (the core then refuses it for want of
    /// funds, with the figures of now).
    Decide,
    /// Ask again for what is still missing: the answers are all in and fell
    /// short (a region asked had spent some of it, or had released it to
    /// another region's pull), while the other regions still hold enough.
    AskAgain,
    /// Wait for the answers and grants on their way.
    Wait,
}

impl PullProgress {
    /// What to do next for a debit of `requested` units.
    pub fn next(&self, requested: i128) -> PullNext {
        if self.here >= requested || self.everywhere < requested {
            PullNext::Decide
        } else if self.settled {
            PullNext::AskAgain
        } else {
            PullNext::Wait
        }
    }
}

/// How a pull saga of this region for `account` stands, having asked the
/// pulls `asked` (each the region asked and the pull's id).
pub fn pull_progress(
    ledger: &Ledger,
    account: AccountId,
    asked: &[(RegionId, TransferId)],
) -> PullProgress {
    let home = ledger.home_state();
    let available = |region: &RegionState| region.pool(account).map_or(0, |pool| pool.available);
    // A region with nothing to give leaves a pull unanswered until it has
    // something (`pulls_to_answer`): waiting for it would wait for nothing.
    let answered = asked.iter().all(|(from, id)| {
        ledger
            .region(*from)
            .is_none_or(|source| source.answered(home.id(), *id) || available(source) <= 0)
    });
    let granted = ledger
        .regions()
        .iter()
        .filter(|source| source.id() != home.id())
        .all(|source| home.granted_from(source.id()) >= source.last_release_to(home.id()));
    PullProgress {
        here: available(home),
        everywhere: ledger
            .balance(account)
            .map_or(0, |balance| balance.available.units),
        settled: answered && granted,
    }
}

/// A withdrawal's post, once its payout was made.
const POST_STEP: u8 = 1;
/// A withdrawal's void, once its payout was refused.
const VOID_STEP: u8 = 2;
/// The step numbers of a pull's asks start here (one per region asked).
const PULL_STEP_BASE: u8 = 16;
/// A pull's later rounds of asks (when the first fell short) are asked
/// under ids of rounds derived from the saga's: round `n`'s is its step
/// `PULL_ROUND_STEP_BASE + n`.
const PULL_ROUND_STEP_BASE: u8 = 64;
/// Rounds of asks of one pull, at most, the first included.
pub const PULL_ROUNDS_MAX: u8 = 8;
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

/// A pull saga's asks, in its round `round` (0 first), for the
/// `shortfall` of the command `saga` names: the regions with the most
/// first, each for what it seems to have, until the shortfall is covered.
/// Each round asks under ids of its own: a pull is answered once.
pub fn pull_asks(ledger: &Ledger, saga: TransferId, round: u8, shortfall: &Shortfall) -> Vec<Item> {
    let account = shortfall.account;
    let scale = shortfall.requested.scale;
    let need = shortfall.requested.units - shortfall.available_local.units;
    let round_id = match round {
        0 => saga,
        _ => step_id(saga, PULL_ROUND_STEP_BASE.saturating_add(round)),
    };
    let mut asks = Vec::new();
    for (from, units) in plan_pulls(ledger, account, need, 0) {
        let Some(amount) = (Money { units, scale }).to_decimal() else {
            continue;
        };
        let step = PULL_STEP_BASE.saturating_add(u8::try_from(from.0).unwrap_or(u8::MAX));
        asks.push(Item::single(Command::RequestPull {
            id: step_id(round_id, step),
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
    use crate::pulls_to_answer;
    use ledger_hlc::Stamp;
    use ledger_reservations::{
        AccountKind, ControlCommand, CurrencyCode, Decimal, Decision, Metadata, NewAccount,
        Position, TransferRequest,
    };

    const BANK: AccountId = AccountId(1);
    const ALICE: AccountId = AccountId(2);
    const REGIONS: [RegionId; 3] = [RegionId(0), RegionId(1), RegionId(2)];

    /// One node per region, each applying every region's entries as soon as
    /// they are written (replication without delay).
    struct Cluster {
        nodes: Vec<Ledger>,
        /// The next index of each region's log.
        next: Vec<u64>,
        /// The next stamp's nanoseconds: every entry's stamp is later.
        now_ns: u64,
    }

    impl Cluster {
        /// The bank, and Alice with 5.00 in each region's pool.
        fn new() -> Self {
            let mut nodes: Vec<Ledger> = REGIONS
                .iter()
                .map(|home| Ledger::new(*home, &REGIONS).expect("a valid layout"))
                .collect();
            let usd = CurrencyCode::new("USD").expect("a valid code");
            for (index, (id, kind)) in [(BANK, AccountKind::External), (ALICE, AccountKind::User)]
                .into_iter()
                .enumerate()
            {
                let command = ControlCommand::CreateAccount(NewAccount {
                    id,
                    currency: usd,
                    kind,
                    owner: format!("owner {id}"),
                    metadata: Metadata::new(),
                });
                let stamp = Stamp::from_parts(1_700_000_000_000_000_000, 0, 1);
                let Ok(Decision::Append(event)) = nodes[0].decide_control(&command, stamp) else {
                    panic!("account {id} not created");
                };
                for node in &mut nodes {
                    let position = Position::new(index as u64 + 1, 0);
                    node.apply_control(position, &event).expect("applies");
                }
            }
            let mut cluster = Self {
                nodes,
                next: vec![1; REGIONS.len()],
                now_ns: 1_700_000_000_000_000_000,
            };
            for region in 0..REGIONS.len() {
                cluster.pay(region, BANK, ALICE, 500);
            }
            cluster
        }

        /// Decides `items` in `region` and applies the entry everywhere.
        fn commit(&mut self, region: usize, items: &[Item]) {
            self.now_ns += 1_000;
            let stamp = Stamp::from_parts(self.now_ns, 0, 1);
            let batch = self.nodes[region].decide_batch(items, stamp);
            assert!(batch.outcomes.iter().all(Result::is_ok), "{batch:?}");
            self.write(region, &batch.events);
        }

        fn write(&mut self, region: usize, events: &[ledger_reservations::Event]) {
            let index = self.next[region];
            self.next[region] += 1;
            for node in &mut self.nodes {
                for (offset, event) in events.iter().enumerate() {
                    let position = Position::new(index, offset as u32);
                    node.apply(REGIONS[region], position, event)
                        .expect("applies");
                }
            }
        }

        /// A transfer of `cents` decided in `region`.
        fn pay(&mut self, region: usize, debit: AccountId, credit: AccountId, cents: i64) {
            let id = TransferId(u128::from(self.now_ns)).minted_for(region, REGIONS.len());
            let transfer = Command::Transfer(TransferRequest {
                id,
                debit,
                credit,
                amount: Decimal::new(cents, 2),
                currency: CurrencyCode::new("USD").expect("a valid code"),
                reference: None,
                metadata: Metadata::new(),
            });
            self.commit(region, &[Item::single(transfer)]);
        }

        /// `region` answers the pulls addressed to it.
        fn answer(&mut self, region: usize) {
            let answers = pulls_to_answer(&self.nodes[region], usize::MAX);
            self.commit(region, &answers);
        }

        /// `region` grants the releases to it.
        fn grant(&mut self, region: usize) {
            self.now_ns += 1_000;
            let stamp = Stamp::from_parts(self.now_ns, 0, 1);
            let events: Vec<_> = self.nodes[region]
                .decide_grants(stamp, usize::MAX)
                .into_iter()
                .flat_map(|grants| grants.events)
                .collect();
            self.write(region, &events);
        }
    }

    /// Region 0's shortfall of `requested` cents of Alice's, `here` of
    /// them in its pool.
    fn shortfall(requested: i128, here: i128) -> Shortfall {
        let money = |units| Money { units, scale: 2 };
        Shortfall {
            account: ALICE,
            requested: money(requested),
            available_local: money(here),
            available_global: money(1_500),
        }
    }

    /// The asks' (region asked, pull id, cents).
    fn pulls(asks: &[Item]) -> Vec<(RegionId, TransferId, Decimal)> {
        asks.iter()
            .filter_map(|ask| match ask.command {
                Command::RequestPull {
                    id, from, amount, ..
                } => Some((from, id, amount)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_pull_answered_short_asks_again_and_decides_once_it_cannot_be_covered() {
        let mut cluster = Cluster::new();
        let saga = TransferId(77).minted_for(0, REGIONS.len());
        let asks = pull_asks(&cluster.nodes[0], saga, 0, &shortfall(800, 500));
        let first = pulls(&asks);
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].0, first[0].2),
            (RegionId(1), Decimal::new(300, 2))
        );
        cluster.commit(0, &asks);
        let asked = [(first[0].0, first[0].1)];
        let progress = |cluster: &Cluster| pull_progress(&cluster.nodes[0], ALICE, &asked);
        assert_eq!(progress(&cluster).next(800), PullNext::Wait);

        // Region 1 spends 4.00 before it answers: it releases 1.00.
        cluster.pay(1, ALICE, BANK, 400);
        cluster.answer(1);
        let released = progress(&cluster);
        assert_eq!((released.here, released.everywhere), (500, 1_100));
        assert_eq!(released.next(800), PullNext::Wait, "not granted yet");
        cluster.grant(0);
        let granted = progress(&cluster);
        assert_eq!((granted.here, granted.settled), (600, true));
        assert_eq!(granted.next(800), PullNext::AskAgain);

        // The next round asks region 2 for the rest, under an id of its own.
        let asks = pull_asks(&cluster.nodes[0], saga, 1, &shortfall(800, 600));
        let second = pulls(&asks);
        assert_eq!(second.len(), 1);
        assert_eq!(
            (second[0].0, second[0].2),
            (RegionId(2), Decimal::new(200, 2))
        );
        let round_zero = pull_asks(&cluster.nodes[0], saga, 0, &shortfall(800, 600));
        assert_ne!(second[0].1, pulls(&round_zero)[0].1);
        assert_eq!(granted.next(600), PullNext::Decide, "enough here");

        // Region 2 spends 4.00 too: 7.00 left in all, the debit is decided.
        cluster.pay(2, ALICE, BANK, 400);
        assert_eq!(progress(&cluster).everywhere, 700);
        assert_eq!(progress(&cluster).next(800), PullNext::Decide);
    }

    #[test]
    fn a_region_with_nothing_left_to_give_is_not_waited_for() {
        let mut cluster = Cluster::new();
        let saga = TransferId(78).minted_for(0, REGIONS.len());
        let asks = pull_asks(&cluster.nodes[0], saga, 0, &shortfall(700, 500));
        cluster.commit(0, &asks);
        let asked: Vec<_> = pulls(&asks)
            .iter()
            .map(|(from, id, _)| (*from, *id))
            .collect();
        assert_eq!(asked.len(), 1);
        // Region 1 spends all it had: it never answers (nothing to give).
        cluster.pay(1, ALICE, BANK, 500);
        assert!(pulls_to_answer(&cluster.nodes[1], usize::MAX).is_empty());
        let progress = pull_progress(&cluster.nodes[0], ALICE, &asked);
        assert!(progress.settled);
        assert_eq!(progress.next(700), PullNext::AskAgain);
    }

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
