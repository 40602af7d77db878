//! Helpers shared by the replication tests.

use ledger_hlc::{NodeId, Stamp};
use ledger_reservations::*;

/// A top-up of `cents` from account 1 (external) to account 2 (a user),
/// stamped `stamp_ns`: a valid region event without a control log.
pub fn top_up(id: u128, cents: u128, stamp_ns: u64) -> Event {
    Event {
        stamp: Stamp::new(stamp_ns, 0, NodeId(1)),
        body: EventBody::Transfer(Transfer {
            id: TransferId(id),
            debit: AccountId(1),
            credit: AccountId(2),
            units: cents,
            currency: CurrencyCode::new("USD").expect("code"),
            debit_kind: AccountKind::External,
            credit_kind: AccountKind::User,
            kind: TransferKind::Posted,
            reference: None,
            metadata: None,
        }),
    }
}
