//! Deciding money commands: pure functions of the ledger and a region book
//! (committed, or committed plus the speculative events of a batch).

use crate::Decision;
use crate::account::{Account, AccountKind, AccountStatus, Metadata, REFERENCE_BYTES_MAX};
use crate::book::{Book, PendingState, TransferRecord, refundable_units, signed};
use crate::command::{Command, PENDING_TIMEOUT_MS_MAX, TransferRequest};
use crate::control::{validate_metadata, validate_text};
use crate::event::{Event, EventBody, Release, Transfer, TransferKind};
use crate::ids::{AccountId, RegionId, TransferId};
use crate::ledger::Ledger;
use crate::money::{BALANCE_UNITS_MAX, Currency, CurrencyCode, REGION_CREDIT_UNITS_MAX};
use crate::reject::{Reject, Shortfall};
use ledger_hlc::Stamp;
use rust_decimal::Decimal;

type Decided = Result<Option<EventBody>, Reject>;

pub(crate) fn decide<B: Book>(
    ledger: &Ledger,
    book: &B,
    command: &Command,
    stamp: Stamp,
) -> Result<Decision<Event>, Reject> {
    let last = book.last_stamp();
    if stamp < last {
        return Err(Reject::StaleStamp { stamp, last });
    }
    let decider = Decider {
        ledger,
        book,
        stamp,
    };
    let body = match command {
        Command::Transfer(request) => decider.transfer(request, TransferKind::Posted)?,
        Command::CreatePending {
            transfer,
            timeout_ms,
        } => {
            if *timeout_ms == 0 || *timeout_ms > PENDING_TIMEOUT_MS_MAX {
                return Err(Reject::InvalidTimeout {
                    timeout_ms: *timeout_ms,
                    max_ms: PENDING_TIMEOUT_MS_MAX,
                });
            }
            decider.transfer(
                transfer,
                TransferKind::Pending {
                    timeout_ms: *timeout_ms,
                },
            )?
        }
        Command::PostPending {
            id,
            pending_id,
            amount,
        } => decider.resolve(*id, *pending_id, Resolution::Post(*amount))?,
        Command::VoidPending { id, pending_id } => {
            decider.resolve(*id, *pending_id, Resolution::Void)?
        }
        Command::ExpirePending { pending_id } => decider.expire(*pending_id)?,
        Command::Refund {
            id,
            payment_id,
            amount,
            reference,
            metadata,
        } => decider.refund(
            *id,
            *payment_id,
            *amount,
            Details {
                reference: reference.as_deref(),
                metadata,
            },
        )?,
        Command::Release {
            account,
            amount,
            to,
        } => decider.release(*account, *amount, *to)?,
        Command::Grant { from, seq } => decider.grant(*from, *seq)?,
        Command::RequestPull {
            id,
            account,
            amount,
            from,
        } => decider.request_pull(*id, *account, *amount, *from)?,
        Command::AnswerPull { asker, pull } => decider.answer_pull(*asker, *pull)?,
    };
    Ok(match body {
        Some(body) => Decision::Append(Event { stamp, body }),
        None => Decision::AlreadyApplied,
    })
}

struct Decider<'a, B: Book> {
    ledger: &'a Ledger,
    book: &'a B,
    stamp: Stamp,
}

impl<'a, B: Book> Decider<'a, B> {
    fn transfer(&self, request: &TransferRequest, kind: TransferKind) -> Decided {
        self.check_origin(request.id)?;
        let currency = self.currency(request.currency)?;
        let units = currency
            .units(request.amount)
            .map_err(Reject::InvalidAmount)?;
        let details = Details {
            reference: request.reference.as_deref(),
            metadata: &request.metadata,
        };
        details.validate()?;
        if let Some(record) = self.existing(request.id)? {
            let same = record.transfer.debit == request.debit
                && record.transfer.credit == request.credit
                && record.transfer.kind == kind
                && record.transfer.units == units
                && record.transfer.currency == request.currency
                && details.same(record);
            return if same {
                Ok(None)
            } else {
                Err(Reject::IdempotencyConflict(request.id))
            };
        }
        if request.debit == request.credit {
            return Err(Reject::SameAccount(request.debit));
        }
        let debit = self.active_account(request.debit)?;
        let credit = self.active_account(request.credit)?;
        for account in [debit, credit] {
            if account.currency.code != request.currency {
                return Err(Reject::CurrencyMismatch {
                    account: account.id,
                    expected: account.currency.code,
                    got: request.currency,
                });
            }
        }
        self.check_funds(debit, currency, units)?;
        self.check_range(debit.id, -signed(units))?;
        if let TransferKind::Pending { .. } = kind {
            let held = self.book.pool(debit.id).map_or(0, |pool| pool.held);
            if held + signed(units) > BALANCE_UNITS_MAX {
                return Err(Reject::BalanceOverflow(debit.id));
            }
        } else {
            self.check_credit(credit.id, credit.kind, signed(units))?;
        }
        Ok(Some(EventBody::Transfer(
            details.transfer(request.id, debit, credit, units, kind),
        )))
    }

    /// Posts or voids an open pending transfer of this region.
    fn resolve(&self, id: TransferId, pending_id: TransferId, resolution: Resolution) -> Decided {
        self.check_target(id, pending_id)?;
        self.check_origin(id)?;
        let pending = self.pending(pending_id)?;
        let held = pending.transfer.units;
        let currency = self.currency(pending.transfer.currency)?;
        let (units, kind) = match resolution {
            Resolution::Post(None) => (held, TransferKind::PostPending { pending_id }),
            Resolution::Post(Some(amount)) => (
                currency.units(amount).map_err(Reject::InvalidAmount)?,
                TransferKind::PostPending { pending_id },
            ),
            Resolution::Void => (held, TransferKind::VoidPending { pending_id }),
        };
        if let Some(record) = self.existing(id)? {
            return if record.transfer.kind == kind && record.transfer.units == units {
                Ok(None)
            } else {
                Err(Reject::IdempotencyConflict(id))
            };
        }
        match pending.pending {
            Some(PendingState::Open { deadline_ns }) if self.stamp.physical_ns() < deadline_ns => {}
            // The rail's answer, however late it comes.
            Some(PendingState::Open { .. }) if pending.transfer.is_withdrawal_hold() => {}
            Some(PendingState::Open { .. } | PendingState::Expired) => {
                return Err(Reject::PendingExpired(pending_id));
            }
            Some(state) => {
                return Err(Reject::PendingAlreadyResolved {
                    id: pending_id,
                    state: state.name(),
                });
            }
            None => return Err(Reject::NotPending(pending_id)),
        }
        if units > held {
            return Err(Reject::PostExceedsPending {
                requested: currency.money(signed(units)),
                pending: currency.money(signed(held)),
            });
        }
        let posted = match kind {
            TransferKind::PostPending { .. } => units,
            _ => 0,
        };
        let transfer = &pending.transfer;
        self.check_range(transfer.debit, signed(held - posted))?;
        self.check_credit(transfer.credit, transfer.credit_kind, signed(posted))?;
        Ok(Some(EventBody::Transfer(Transfer {
            id,
            debit: transfer.debit,
            credit: transfer.credit,
            units,
            currency: transfer.currency,
            debit_kind: transfer.debit_kind,
            credit_kind: transfer.credit_kind,
            kind,
            reference: None,
            metadata: None,
        })))
    }

    fn expire(&self, pending_id: TransferId) -> Decided {
        let pending = self.pending(pending_id)?;
        match pending.pending {
            // The rail's answer resolves it, never the ledger's clock: it
            // has no deadline to pass.
            Some(PendingState::Open { .. }) if pending.transfer.is_withdrawal_hold() => {
                Err(Reject::PendingNotExpired {
                    id: pending_id,
                    deadline_ns: u64::MAX,
                })
            }
            Some(PendingState::Open { deadline_ns }) => {
                if self.stamp.physical_ns() < deadline_ns {
                    return Err(Reject::PendingNotExpired {
                        id: pending_id,
                        deadline_ns,
                    });
                }
                Ok(Some(EventBody::PendingExpired { pending_id }))
            }
            Some(PendingState::Expired) => Ok(None),
            Some(state) => Err(Reject::PendingAlreadyResolved {
                id: pending_id,
                state: state.name(),
            }),
            None => Err(Reject::NotPending(pending_id)),
        }
    }

    fn refund(
        &self,
        id: TransferId,
        payment_id: TransferId,
        amount: Decimal,
        details: Details<'_>,
    ) -> Decided {
        self.check_target(id, payment_id)?;
        self.check_origin(id)?;
        details.validate()?;
        let payment = self.lookup(payment_id)?;
        let currency = self.currency(payment.transfer.currency)?;
        let units = currency.units(amount).map_err(Reject::InvalidAmount)?;
        let kind = TransferKind::Refund { payment_id };
        if let Some(record) = self.existing(id)? {
            let same = record.transfer.kind == kind
                && record.transfer.units == units
                && details.same(record);
            return if same {
                Ok(None)
            } else {
                Err(Reject::IdempotencyConflict(id))
            };
        }
        let refundable = refundable_units(payment).ok_or(Reject::NotRefundable {
            id: payment_id,
            reason: match payment.transfer.kind {
                TransferKind::Pending { .. } => "the pending transfer was not posted",
                _ => "only payments (posted transfers) are refunded",
            },
        })?;
        let left = refundable - payment.refunded;
        if units > left {
            return Err(Reject::RefundExceedsPayment {
                payment: payment_id,
                requested: currency.money(signed(units)),
                refundable: currency.money(signed(left)),
            });
        }
        let debit = self.active_account(payment.transfer.credit)?;
        let credit = self.active_account(payment.transfer.debit)?;
        self.check_funds(debit, currency, units)?;
        self.check_range(debit.id, -signed(units))?;
        self.check_credit(credit.id, credit.kind, signed(units))?;
        Ok(Some(EventBody::Transfer(
            details.transfer(id, debit, credit, units, kind),
        )))
    }

    fn release(&self, account: AccountId, amount: Decimal, to: RegionId) -> Decided {
        self.other_region(to)?;
        let account = self.account(account)?;
        let units = account.pool_units(amount)?;
        self.check_funds(account, account.currency, units)?;
        Ok(Some(self.released(account, units, to, None)))
    }

    /// The next release of this region to `to`.
    fn released(
        &self,
        account: &Account,
        units: u128,
        to: RegionId,
        pull: Option<TransferId>,
    ) -> EventBody {
        EventBody::Released {
            release: Release {
                account: account.id,
                currency: account.currency.code,
                kind: account.kind,
                units,
            },
            to,
            seq: self.book.released_to(to) + 1,
            pull,
        }
    }

    fn request_pull(
        &self,
        id: TransferId,
        account: AccountId,
        amount: Decimal,
        from: RegionId,
    ) -> Decided {
        self.other_region(from)?;
        let account = self.active_account(account)?;
        let units = account.pool_units(amount)?;
        if let Some(pull) = self.book.pull(id) {
            let same = pull.account == account.id && pull.units == units && pull.from == from;
            return if same {
                Ok(None)
            } else {
                Err(Reject::IdempotencyConflict(id))
            };
        }
        Ok(Some(EventBody::PullRequested {
            id,
            account: account.id,
            currency: account.currency.code,
            kind: account.kind,
            units,
            from,
        }))
    }

    /// Releases to `asker` as much as this region has of what it asked, at
    /// most once per pull; refused while this region has nothing to give.
    fn answer_pull(&self, asker: RegionId, pull_id: TransferId) -> Decided {
        self.other_region(asker)?;
        if self.book.answered(asker, pull_id) {
            return Ok(None);
        }
        let pull = self
            .ledger
            .region(asker)
            .and_then(|region| region.pull(pull_id))
            .ok_or(Reject::TransferNotFound(pull_id))?;
        if pull.from != self.book.region() {
            return Err(Reject::NotOrigin { origin: pull.from });
        }
        let account = self.account(pull.account)?;
        let available = u128::try_from(self.book.available(account.id)).unwrap_or(0);
        let units = pull.units.min(available);
        if units == 0 {
            self.check_funds(account, account.currency, pull.units)?;
        }
        Ok(Some(self.released(account, units, asker, Some(pull_id))))
    }

    fn grant(&self, from: RegionId, seq: u64) -> Decided {
        self.other_region(from)?;
        let granted = self.book.granted_from(from);
        if seq <= granted {
            return Ok(None);
        }
        if seq > granted + 1 {
            return Err(Reject::GrantOutOfOrder {
                from,
                seq,
                expected: granted + 1,
            });
        }
        let release = self
            .ledger
            .region(from)
            .and_then(|source| source.release(self.book.region(), seq))
            .ok_or(Reject::ReleaseNotFound { from, seq })?;
        self.check_range(release.account, signed(release.units))?;
        Ok(Some(EventBody::Granted {
            release: *release,
            from,
            seq,
        }))
    }

    /// Only the region an id belongs to decides it (decision 0009).
    fn check_origin(&self, id: TransferId) -> Result<(), Reject> {
        // Chaos bite `decide-retry-elsewhere`: any region decides any id
        // (decision 0009 broken on purpose; see `crate::bite`).
        #[cfg(feature = "chaos-bite")]
        if crate::bite::is(crate::bite::Bite::DecideRetryElsewhere) {
            return Ok(());
        }
        match self.ledger.origin_of(id) {
            origin if origin != self.book.region() => Err(Reject::NotOrigin { origin }),
            _ => Ok(()),
        }
    }

    /// A post, void or refund is decided where its target was, so its own
    /// id must be one of that region's: the same answer in every region.
    fn check_target(&self, id: TransferId, target: TransferId) -> Result<(), Reject> {
        let region = self.ledger.origin_of(target);
        if self.ledger.origin_of(id) == region {
            Ok(())
        } else {
            Err(Reject::TargetInOtherRegion { target, region })
        }
    }

    fn other_region(&self, region: RegionId) -> Result<(), Reject> {
        if region == self.book.region() {
            Err(Reject::SameRegion(region))
        } else if self.ledger.region(region).is_none() {
            Err(Reject::UnknownRegion(region))
        } else {
            Ok(())
        }
    }

    /// The record of `id` if this region decided it. One that another region
    /// decided is that region's to answer for.
    fn existing(&self, id: TransferId) -> Result<Option<&'a TransferRecord>, Reject> {
        if let Some(record) = self.book.transfer(id) {
            return Ok(Some(record));
        }
        // Chaos bite `decide-retry-elsewhere`: what another region decided
        // is decided again here.
        #[cfg(feature = "chaos-bite")]
        if crate::bite::is(crate::bite::Bite::DecideRetryElsewhere) {
            return Ok(None);
        }
        match self.ledger.decided_elsewhere(id) {
            Some(origin) => Err(Reject::NotOrigin { origin }),
            None => Ok(None),
        }
    }

    fn lookup(&self, id: TransferId) -> Result<&'a TransferRecord, Reject> {
        self.existing(id)?.ok_or(Reject::TransferNotFound(id))
    }

    fn pending(&self, id: TransferId) -> Result<&'a TransferRecord, Reject> {
        let record = self.lookup(id)?;
        match record.transfer.kind {
            TransferKind::Pending { .. } => Ok(record),
            _ => Err(Reject::NotPending(id)),
        }
    }

    fn currency(&self, code: CurrencyCode) -> Result<Currency, Reject> {
        self.ledger
            .control()
            .currency(code)
            .ok_or(Reject::UnknownCurrency(code))
    }

    fn account(&self, id: AccountId) -> Result<&'a Account, Reject> {
        self.ledger
            .control()
            .account(id)
            .ok_or(Reject::UnknownAccount(id))
    }

    fn active_account(&self, id: AccountId) -> Result<&'a Account, Reject> {
        let account = self.account(id)?;
        match account.status {
            AccountStatus::Active => Ok(account),
            AccountStatus::Frozen => Err(Reject::AccountFrozen(id)),
            AccountStatus::Closed => Err(Reject::AccountClosed(id)),
        }
    }

    /// A debit of a bounded account needs that much available in this region.
    fn check_funds(
        &self,
        account: &Account,
        currency: Currency,
        units: u128,
    ) -> Result<(), Reject> {
        if !account.kind.is_bounded() {
            return Ok(());
        }
        // Chaos bite `skip-pool-check`: no debit looks at the pool
        // (invariant 1 broken on purpose; see `crate::bite`).
        #[cfg(feature = "chaos-bite")]
        if crate::bite::is(crate::bite::Bite::SkipPoolCheck) {
            return Ok(());
        }
        let available = self.book.available(account.id);
        if available >= signed(units) {
            return Ok(());
        }
        Err(Reject::InsufficientFunds(Box::new(Shortfall {
            account: account.id,
            requested: currency.money(signed(units)),
            available_local: currency.money(available),
            available_global: currency.money(self.ledger.available_global(account.id, self.book)),
        })))
    }

    /// A credit of `delta`, money new to this region, keeps the account in
    /// range and, for a bounded account, within what one region may add to
    /// it ([`REGION_CREDIT_UNITS_MAX`]).
    fn check_credit(
        &self,
        account: AccountId,
        kind: AccountKind,
        delta: i128,
    ) -> Result<(), Reject> {
        self.check_range(account, delta)?;
        if kind.is_bounded() && self.book.contributed(account) + delta > REGION_CREDIT_UNITS_MAX {
            return Err(Reject::BalanceOverflow(account));
        }
        Ok(())
    }

    /// The account's available amount here stays representable after `delta`.
    fn check_range(&self, account: AccountId, delta: i128) -> Result<(), Reject> {
        let after = self.book.available(account) + delta;
        if after.abs() > BALANCE_UNITS_MAX {
            return Err(Reject::BalanceOverflow(account));
        }
        Ok(())
    }
}

/// How a pending transfer is resolved.
#[derive(Clone, Copy)]
enum Resolution {
    /// Post this much, or all of it.
    Post(Option<Decimal>),
    Void,
}

/// The client's free-form part of a transfer.
#[derive(Clone, Copy)]
struct Details<'r> {
    reference: Option<&'r str>,
    metadata: &'r Metadata,
}

impl Details<'_> {
    fn validate(&self) -> Result<(), Reject> {
        if let Some(reference) = self.reference {
            validate_text(reference, "reference", REFERENCE_BYTES_MAX)?;
        }
        validate_metadata(self.metadata)
    }

    fn same(&self, record: &TransferRecord) -> bool {
        record.transfer.reference.as_deref() == self.reference
            && match &record.transfer.metadata {
                Some(metadata) => **metadata == *self.metadata,
                None => self.metadata.is_empty(),
            }
    }

    fn transfer(
        &self,
        id: TransferId,
        debit: &Account,
        credit: &Account,
        units: u128,
        kind: TransferKind,
    ) -> Transfer {
        Transfer {
            id,
            debit: debit.id,
            credit: credit.id,
            units,
            currency: debit.currency.code,
            debit_kind: debit.kind,
            credit_kind: credit.kind,
            kind,
            reference: self.reference.map(Box::from),
            metadata: (!self.metadata.is_empty()).then(|| Box::new(self.metadata.clone())),
        }
    }
}
