//! One node's ledger: the control state, the state of its home region, and a
//! replica of every other region; the global view merges them.

use crate::Decision;
use crate::book::{ApplyError, Book, Changes, Overlay, apply_event, replay_event, signed};
use crate::command::{ControlCommand, Item};
use crate::control::Control;
use crate::decide::decide;
use crate::event::{ControlEvent, Event};
use crate::ids::{AccountId, Position, RegionId, TransferId};
use crate::money::{Currency, CurrencyCode, Money, REGIONS_MAX};
use crate::region::RegionState;
use crate::reject::Reject;
use crate::{AccountKind, Command};
use ledger_hlc::Stamp;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    home: RegionId,
    control: Control,
    /// Every region's state, sorted by id; the home region's among them.
    regions: Vec<RegionState>,
    home_index: usize,
}

/// A cluster layout that cannot be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the home region {0} is not among the regions")]
    HomeMissing(RegionId),
    #[error("region {0} is listed twice")]
    Duplicate(RegionId),
    #[error("{0} regions; at most {REGIONS_MAX}")]
    TooMany(usize),
}

/// What became of one command of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its event is `events[n]` of the batch.
    Appended(usize),
    /// The same command was applied before; nothing new to append.
    AlreadyApplied,
}

/// The decisions of a batch: the events to append to the region's log, in
/// order, and for each command what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    pub outcomes: Vec<Result<Outcome, Reject>>,
}

/// The grants of one source region decided for an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub source: RegionId,
    /// `Granted` events, in sequence order.
    pub events: Vec<Event>,
    /// Why the grant after the last of `events` could not be decided.
    pub refused: Option<Reject>,
}

/// Memory a decider reuses from batch to batch, so that deciding a batch
/// allocates nothing once the first few batches have sized it.
#[derive(Debug, Default)]
pub struct Scratch {
    batch: Changes,
    chain: Changes,
    chain_events: Vec<Event>,
    chain_outcomes: Vec<Outcome>,
}

/// An account's balance as this node sees it, per region and in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub account: AccountId,
    pub currency: Currency,
    pub regions: Vec<RegionBalance>,
    /// Released by one region and not yet granted by another, as far as the
    /// replicas here have seen.
    pub in_flight: Money,
    /// Spendable somewhere: the regions' available plus what is in flight.
    pub available: Money,
    /// Available plus held, everywhere.
    pub total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionBalance {
    pub region: RegionId,
    pub available: Money,
    pub held: Money,
    /// The position of that region's log this figure is as of.
    pub as_of: Option<Position>,
}

impl Ledger {
    /// A node's ledger in `home`, for a cluster of `regions`.
    pub fn new(home: RegionId, regions: &[RegionId]) -> Result<Self, LayoutError> {
        if regions.len() > REGIONS_MAX {
            return Err(LayoutError::TooMany(regions.len()));
        }
        let mut ids = regions.to_vec();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(LayoutError::Duplicate(pair[0]));
        }
        let home_index = ids
            .binary_search(&home)
            .map_err(|_| LayoutError::HomeMissing(home))?;
        Ok(Self {
            home,
            control: Control::new(),
            regions: ids.into_iter().map(RegionState::new).collect(),
            home_index,
        })
    }

    pub fn home(&self) -> RegionId {
        self.home
    }

    pub fn control(&self) -> &Control {
        &self.control
    }

    pub fn home_state(&self) -> &RegionState {
        &self.regions[self.home_index]
    }

    pub fn region(&self, id: RegionId) -> Option<&RegionState> {
        self.regions
            .binary_search_by_key(&id, RegionState::id)
            .ok()
            .map(|index| &self.regions[index])
    }

    /// The region that decides transfer `id` (decision 0009).
    pub fn origin_of(&self, id: TransferId) -> RegionId {
        self.regions
            .get(id.origin_index(self.regions.len()))
            .map_or(self.home, RegionState::id)
    }

    /// The id nearest `id` that this node's region decides.
    pub fn mint(&self, id: TransferId) -> TransferId {
        id.minted_for(self.home_index, self.regions.len())
    }

    pub fn regions(&self) -> &[RegionState] {
        &self.regions
    }

    /// Decides a command for the home region against its committed state.
    /// Pure: nothing changes until the event is applied.
    pub fn decide(&self, command: &Command, stamp: Stamp) -> Result<Decision<Event>, Reject> {
        decide(self, self.home_state(), command, stamp)
    }

    /// Decides a batch in order, each command seeing the events of the ones
    /// before it. A linked chain succeeds or fails as one: when a member
    /// fails, it keeps its own rejection and every other member is rejected
    /// with [`Reject::LinkedChainFailed`] naming it. Pure, like [`Self::decide`].
    pub fn decide_batch(&self, items: &[Item], stamp: Stamp) -> Batch {
        let mut batch = Batch::default();
        self.decide_batch_into(items, stamp, &mut Scratch::default(), &mut batch);
        batch
    }

    /// [`Self::decide_batch`] into a `batch` (cleared first) with memory from
    /// `scratch`: the form for a decider that runs batch after batch.
    pub fn decide_batch_into(
        &self,
        items: &[Item],
        stamp: Stamp,
        scratch: &mut Scratch,
        batch: &mut Batch,
    ) {
        // Nothing in flight: nothing to replay, so nothing can fail.
        let _ = self.decide_batch_over(&[], items, stamp, scratch, batch);
    }

    /// [`Self::decide_batch_into`] against the committed home state plus
    /// `in_flight`: events this decider produced earlier that may not be
    /// committed yet. An in-flight event the committed state already holds
    /// is skipped ([`RegionState::holds`]), so a decider can keep its events
    /// until it sees them committed, and reading the state at any moment
    /// never counts one twice. In-flight events are replayed in order; their
    /// stamps are not checked against the state's (the log's writer stamps
    /// them again when it appends them).
    ///
    /// Fails, deciding nothing, when an in-flight event does not apply: the
    /// decider's view is wrong and it must drop what it holds in flight.
    pub fn decide_batch_over(
        &self,
        in_flight: &[Event],
        items: &[Item],
        stamp: Stamp,
        scratch: &mut Scratch,
        batch: &mut Batch,
    ) -> Result<(), ApplyError> {
        batch.events.clear();
        batch.outcomes.clear();
        batch.events.reserve(items.len());
        batch.outcomes.reserve(items.len());
        let Scratch {
            batch: changes,
            chain,
            chain_events,
            chain_outcomes,
        } = scratch;
        let home = self.home_state();
        let mut outer = Overlay::new(home, changes, items.len() + in_flight.len());
        for event in in_flight.iter().filter(|event| !home.holds(event)) {
            replay_event(&mut outer, event)?;
        }
        let mut start = 0;
        while start < items.len() {
            let Some(end) = items[start..]
                .iter()
                .position(|item| !item.linked)
                .map(|offset| start + offset)
            else {
                batch.outcomes.extend(
                    std::iter::repeat_with(|| Err(Reject::LinkedChainOpen))
                        .take(items.len() - start),
                );
                break;
            };
            if start == end {
                let command = &items[start].command;
                let outcome = decide_into(self, &mut outer, command, stamp, &mut batch.events);
                batch.outcomes.push(outcome);
            } else {
                let members = &items[start..=end];
                let mut inner = Overlay::new(&outer, chain, members.len());
                chain_events.clear();
                chain_outcomes.clear();
                let failed =
                    members.iter().enumerate().find_map(|(offset, item)| {
                        match decide_into(self, &mut inner, &item.command, stamp, chain_events) {
                            Ok(outcome) => {
                                chain_outcomes.push(outcome);
                                None
                            }
                            Err(reject) => Some((offset, reject)),
                        }
                    });
                match failed {
                    Some((offset, reject)) => {
                        let failed = start + offset;
                        batch.outcomes.extend((0..members.len()).map(|member| {
                            if member == offset {
                                Err(reject.clone())
                            } else {
                                Err(Reject::LinkedChainFailed { failed })
                            }
                        }));
                    }
                    None => {
                        outer.absorb(chain);
                        let base = batch.events.len();
                        batch.events.append(chain_events);
                        batch.outcomes.extend(chain_outcomes.iter().map(|outcome| {
                            Ok(match outcome {
                                Outcome::Appended(index) => Outcome::Appended(base + index),
                                Outcome::AlreadyApplied => Outcome::AlreadyApplied,
                            })
                        }));
                    }
                }
            }
            start = end + 1;
        }
        Ok(())
    }

    /// The account whose pool `command` would take from in this region, as
    /// the committed state tells: the debit account of a transfer or hold,
    /// the debit account of the pending transfer a post, void or expiry
    /// resolves, the payee of a refund, the account of a release. `None`
    /// when it names a transfer this region does not hold, and for a grant.
    /// Deciders that each own some accounts route commands by it.
    pub fn debit_of(&self, command: &Command) -> Option<AccountId> {
        let home = self.home_state();
        let record = |id| home.transfer(id).map(|record| &record.transfer);
        match command {
            Command::Transfer(request)
            | Command::CreatePending {
                transfer: request, ..
            } => Some(request.debit),
            Command::PostPending { pending_id, .. }
            | Command::VoidPending { pending_id, .. }
            | Command::ExpirePending { pending_id } => record(*pending_id).map(|t| t.debit),
            Command::Refund { payment_id, .. } => record(*payment_id).map(|t| t.credit),
            Command::Release { account, .. } => Some(*account),
            Command::AnswerPull { asker, pull } => self
                .region(*asker)
                .and_then(|region| region.pull(*pull))
                .map(|pull| pull.account),
            Command::Grant { .. } | Command::RequestPull { .. } => None,
        }
    }

    /// Decides the grants the home region owes, per source region: for
    /// every release to it that its replica of the source shows past what
    /// it has granted, a `Granted` event, in sequence order, up to the first
    /// that cannot be decided (a grant that would take its account out of
    /// range), and `max` in all. One source's grants never wait on
    /// another's. Pure, like [`Self::decide`].
    pub fn decide_grants(&self, stamp: Stamp, max: usize) -> Vec<Grants> {
        let home = self.home_state();
        let mut left = max;
        let mut decided = Vec::new();
        for source in self
            .regions
            .iter()
            .filter(|source| source.id() != home.id())
        {
            let granted = home.granted_from(source.id());
            let items: Vec<Item> = source
                .releases_to(home.id())
                .filter(|(seq, _)| *seq > granted)
                .take(left)
                .map(|(seq, _)| {
                    Item::single(Command::Grant {
                        from: source.id(),
                        seq,
                    })
                })
                .collect();
            if items.is_empty() {
                continue;
            }
            left -= items.len();
            let batch = self.decide_batch(&items, stamp);
            let refused = batch
                .outcomes
                .iter()
                .find_map(|outcome| outcome.as_ref().err())
                .cloned();
            // Every item is past the high-water mark, so each decided one
            // appended its event, in order; a refused one ends the run.
            let mut events = batch.events;
            events.truncate(batch.outcomes.iter().take_while(|o| o.is_ok()).count());
            decided.push(Grants {
                source: source.id(),
                events,
                refused,
            });
        }
        decided
    }

    /// Decides a control command (for the global control log). Pure.
    pub fn decide_control(
        &self,
        command: &ControlCommand,
        stamp: Stamp,
    ) -> Result<Decision<ControlEvent>, Reject> {
        self.control.decide(command, stamp)
    }

    /// Applies the event at `position` of `region`'s log; `Ok(false)` when it
    /// was applied before. An error is fatal: the log does not fit the state.
    pub fn apply(
        &mut self,
        region: RegionId,
        position: Position,
        event: &Event,
    ) -> Result<bool, ApplyError> {
        let index = self
            .regions
            .binary_search_by_key(&region, RegionState::id)
            .map_err(|_| ApplyError::UnknownRegion(region))?;
        self.regions[index].apply(position, event)
    }

    /// Applies the event at `position` of the control log.
    pub fn apply_control(
        &mut self,
        position: Position,
        event: &ControlEvent,
    ) -> Result<bool, ApplyError> {
        self.control.apply(position, event)
    }

    /// Replaces a region's state with one restored from a snapshot.
    pub fn install_region(&mut self, state: RegionState) -> Result<(), ApplyError> {
        let index = self
            .regions
            .binary_search_by_key(&state.id(), RegionState::id)
            .map_err(|_| ApplyError::UnknownRegion(state.id()))?;
        self.regions[index] = state;
        Ok(())
    }

    /// Replaces the control state with one restored from a snapshot.
    pub fn install_control(&mut self, control: Control) {
        self.control = control;
    }

    /// The region other than home whose replica holds transfer `id`, if any.
    pub(crate) fn decided_elsewhere(&self, id: TransferId) -> Option<RegionId> {
        self.regions
            .iter()
            .enumerate()
            .find(|(index, region)| *index != self.home_index && region.transfer(id).is_some())
            .map(|(_, region)| region.id())
    }

    /// Available everywhere as seen from here, with the home region read
    /// through `home` (which may hold speculative events).
    pub(crate) fn available_global<B: Book>(&self, account: AccountId, home: &B) -> i128 {
        let mut total = home.available(account);
        for (index, region) in self.regions.iter().enumerate() {
            if index != self.home_index {
                total += region.pool(account).map_or(0, |pool| pool.available);
            }
            let flow = region.flow(account);
            total += signed(flow.released) - signed(flow.granted);
        }
        total
    }

    /// The regions whose replica here is behind what another region's
    /// replica here already reflects: that region has granted a release of
    /// theirs that this node has not applied yet. Figures read across them
    /// may combine a grant, and what was spent of it, with a source that
    /// has neither the release nor the credits that funded it: a total that
    /// never was, even below zero. With none, every grant counted has its
    /// release counted, so the regions' positions here are a consistent cut
    /// (a state the cluster could have been in): no bounded account's total
    /// is below zero, and each account's total is the sum of its movements.
    pub fn behind(&self) -> Vec<RegionId> {
        let mut behind = Vec::new();
        for source in &self.regions {
            let ahead = self.regions.iter().any(|target| {
                target.id() != source.id()
                    && target.granted_from(source.id()) > source.last_release_to(target.id())
            });
            if ahead {
                behind.push(source.id());
            }
        }
        behind
    }

    /// The balance of an account as this node sees it, or `None` when the
    /// control log has not told this node of the account yet.
    pub fn balance(&self, account: AccountId) -> Option<Balance> {
        let currency = self.control.account(account)?.currency;
        let mut regions = Vec::with_capacity(self.regions.len());
        let (mut available, mut held, mut in_flight) = (0i128, 0i128, 0i128);
        for region in &self.regions {
            let pool = region.pool(account);
            let (region_available, region_held) =
                pool.map_or((0, 0), |pool| (pool.available, pool.held));
            available += region_available;
            held += region_held;
            let flow = region.flow(account);
            in_flight += signed(flow.released) - signed(flow.granted);
            regions.push(RegionBalance {
                region: region.id(),
                available: currency.money(region_available),
                held: currency.money(region_held),
                as_of: region.applied(),
            });
        }
        Some(Balance {
            account,
            currency,
            regions,
            in_flight: currency.money(in_flight),
            available: currency.money(available + in_flight),
            total: currency.money(available + held + in_flight),
        })
    }

    /// Checks every invariant this node can see, from scratch (O(state)):
    /// each region's own, and those that tie the regions together.
    pub fn validate(&self) -> Result<(), String> {
        for region in &self.regions {
            region.validate()?;
        }
        // Every grant matches the release it names, where the source's
        // replica has reached it; where it has not, the replica is behind,
        // and so may be the credits that funded the release: what the
        // account spent of the grant has no visible source yet.
        let mut ahead_of_their_source = std::collections::BTreeSet::new();
        for target in &self.regions {
            for source in &self.regions {
                if source.id() == target.id() {
                    continue;
                }
                for seq in 1..=target.granted_from(source.id()) {
                    let granted = target.grant(source.id(), seq);
                    match source.release(target.id(), seq) {
                        Some(release) if Some(release) != granted => {
                            return Err(format!(
                                "grant {seq} from {} in {} does not match its release",
                                source.id(),
                                target.id()
                            ));
                        }
                        Some(_) => {}
                        None => {
                            if source.releases_to(target.id()).count() as u64 >= seq {
                                return Err(format!("release {seq} missing in {}", source.id()));
                            }
                            if let Some(release) = granted {
                                ahead_of_their_source.insert(release.account);
                            }
                        }
                    }
                }
            }
        }
        // Double entry over the whole cluster, at any mix of replica
        // positions: balances plus reservation in flight net to zero. An
        // account is never below zero in all, except at a mix where a grant
        // is seen before its release (the grant's money may be spent while
        // the credits that funded it are not seen yet).
        let mut per_account: BTreeMap<AccountId, (CurrencyCode, AccountKind, i128)> =
            BTreeMap::new();
        for region in &self.regions {
            for (account, pool) in region.pools() {
                let entry = per_account
                    .entry(*account)
                    .or_insert((pool.currency, pool.kind, 0));
                if entry.0 != pool.currency {
                    return Err(format!("{account}: currency differs between regions"));
                }
                let flow = region.flow(*account);
                entry.2 +=
                    pool.available + pool.held + signed(flow.released) - signed(flow.granted);
            }
        }
        let mut sums: BTreeMap<CurrencyCode, i128> = BTreeMap::new();
        for (account, (currency, kind, total)) in &per_account {
            if kind.is_bounded() && *total < 0 && !ahead_of_their_source.contains(account) {
                return Err(format!("{account}: global balance {total} below zero"));
            }
            *sums.entry(*currency).or_default() += total;
        }
        if let Some((currency, sum)) = sums.iter().find(|(_, sum)| **sum != 0) {
            return Err(format!("{currency}: balances sum to {sum}, not zero"));
        }
        for account in self.control.accounts() {
            if self.control.currency(account.currency.code) != Some(account.currency) {
                return Err(format!("{}: currency not registered", account.id));
            }
        }
        Ok(())
    }
}

/// Decides one command against `book` and, when it appends an event, applies
/// that event to `book` so the next command sees it.
fn decide_into(
    ledger: &Ledger,
    book: &mut Overlay<'_, impl Book>,
    command: &Command,
    stamp: Stamp,
    events: &mut Vec<Event>,
) -> Result<Outcome, Reject> {
    match decide(ledger, &*book, command, stamp)? {
        Decision::AlreadyApplied => Ok(Outcome::AlreadyApplied),
        Decision::Append(event) => {
            if let Err(error) = apply_event(book, &event) {
                // `decide` checked everything `apply_event` checks; this is a
                // bug in one of them, not a client's error.
                panic!("a decided event does not apply: {error}");
            }
            events.push(event);
            Ok(Outcome::Appended(events.len() - 1))
        }
    }
}
