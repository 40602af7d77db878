//! What the leader asks of its own deciders between clients' calls: holds
//! past their deadline to expire, and pulls other regions addressed to this
//! one to answer. Also the rule that keeps withdrawal holds out of every
//! hand but their saga's: only the payout rail's definite answer resolves
//! one (the rail may have paid), so it is never expired, and a client may
//! neither post nor void it.

use ledger_reservations::{
    Command, Item, Ledger, PENDING_TIMEOUT_MS_MAX, PendingState, SAGA_KEY, TransferRecord,
    TransferRequest, WITHDRAWAL,
};

/// A withdrawal's hold: `transfer` (to an EXTERNAL account) tagged as a
/// withdrawal, with the longest timeout there is. Once the payout may have
/// started, only the rail's answer resolves it: the ledger never expires it
/// (it would give back money the rail may have paid). The client's timeout
/// is the rail's deadline, not the hold's.
pub fn withdrawal_hold(mut transfer: TransferRequest) -> Command {
    transfer
        .metadata
        .insert(SAGA_KEY.to_owned(), WITHDRAWAL.to_owned());
    Command::CreatePending {
        transfer,
        timeout_ms: PENDING_TIMEOUT_MS_MAX,
    }
}

/// Whether a transfer is an open withdrawal hold.
pub fn is_withdrawal(record: &TransferRecord) -> bool {
    record.transfer.is_withdrawal_hold()
        && matches!(record.pending, Some(PendingState::Open { .. }))
}

/// Whether `command` posts or voids an open withdrawal hold, as the
/// committed state shows it. A hold not committed yet is not routed to an
/// account's decider either (its payer is unknown here), so its post or
/// void is refused as not found.
pub fn steps_a_withdrawal(ledger: &Ledger, command: &Command) -> bool {
    let pending = match command {
        Command::PostPending { pending_id, .. } | Command::VoidPending { pending_id, .. } => {
            pending_id
        }
        _ => return false,
    };
    ledger
        .home_state()
        .transfer(*pending)
        .is_some_and(is_withdrawal)
}

/// The expiries due by `now_ns` (the time the entry will be stamped with:
/// the log's time, never behind its last stamp), at most `max`. Withdrawal
/// holds are never among them.
pub fn due_expiries(ledger: &Ledger, now_ns: u64, max: usize) -> Vec<Item> {
    let home = ledger.home_state();
    home.due(now_ns)
        .filter(|id| {
            home.transfer(*id)
                .is_none_or(|record| !is_withdrawal(record))
        })
        .take(max)
        .map(|pending_id| Item::single(Command::ExpirePending { pending_id }))
        .collect()
}

/// The pulls other regions addressed to this one and it has not answered,
/// as its replicas of their logs show them, where it has something of the
/// account to release; at most `max`. A pull it has nothing for waits.
pub fn pulls_to_answer(ledger: &Ledger, max: usize) -> Vec<Item> {
    let home = ledger.home_state();
    ledger
        .regions()
        .iter()
        .filter(|asker| asker.id() != home.id())
        .flat_map(|asker| {
            asker
                .pulls()
                .filter(|(id, pull)| {
                    pull.from == home.id()
                        && !home.answered(asker.id(), **id)
                        && home
                            .pool(pull.account)
                            .is_some_and(|pool| pool.available > 0)
                })
                .map(|(id, _)| {
                    Item::single(Command::AnswerPull {
                        asker: asker.id(),
                        pull: *id,
                    })
                })
        })
        .take(max)
        .collect()
}
