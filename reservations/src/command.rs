use crate::account::{Metadata, NewAccount};
use crate::event::{Event, EventBody};
use crate::ids::{AccountId, RegionId, TransferId};
use crate::money::{Currency, CurrencyCode};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The longest a pending transfer may wait to be posted or voided.
pub const PENDING_TIMEOUT_MS_MAX: u64 = 30 * 24 * 60 * 60 * 1000;

/// A movement of money from one account to another, as a client asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// The idempotency key.
    pub id: TransferId,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Decimal,
    /// Must equal both accounts' currency.
    pub currency: CurrencyCode,
    pub reference: Option<String>,
    pub metadata: Metadata,
}

/// A money command, decided by one region against its own pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Moves the amount at once.
    Transfer(TransferRequest),
    /// Takes the amount out of what the debit account can spend, until it is
    /// posted, voided, or voided by the ledger when the timeout is reached.
    CreatePending {
        transfer: TransferRequest,
        timeout_ms: u64,
    },
    /// Posts a pending transfer, whole (`amount: None`) or in part; what is not
    /// posted returns to the debit account. `id` is the posting's own key.
    PostPending {
        id: TransferId,
        pending_id: TransferId,
        amount: Option<Decimal>,
    },
    /// Cancels a pending transfer; the held amount returns to the debit account.
    VoidPending {
        id: TransferId,
        pending_id: TransferId,
    },
    /// Voids a pending transfer whose timeout has passed (by the stamp it is
    /// decided with). Sent by the ledger itself.
    ExpirePending { pending_id: TransferId },
    /// Returns money of a payment to its payer: debits the payment's credit
    /// account and credits its debit account, never more than what is left.
    Refund {
        id: TransferId,
        payment_id: TransferId,
        amount: Decimal,
        reference: Option<String>,
        metadata: Metadata,
    },
    /// Moves spending power of an account from this region's pool to another
    /// region's. Money does not move; reservation does.
    Release {
        account: AccountId,
        amount: Decimal,
        to: RegionId,
    },
    /// Takes in a release seen in another region's log: the `seq`-th release
    /// from `from` to this region.
    Grant { from: RegionId, seq: u64 },
    /// Ask region `from` to release `amount` of the account's reservation
    /// to this region (the first step of a cross-region pull).
    RequestPull {
        id: TransferId,
        account: AccountId,
        amount: Decimal,
        from: RegionId,
    },
    /// Answer region `asker`'s pull with a release of as much as this
    /// region has available, up to what it asked.
    AnswerPull { asker: RegionId, pull: TransferId },
}

impl Command {
    /// The transfer id the command creates, if it creates one.
    /// Whether `event` is what deciding this command appends: the event
    /// with its id (a transfer, an ask for a pull), the expiry of its
    /// pending transfer, or the answer to its pull. A decider that finds a
    /// command already applied uses it to tell a repeat of a command it
    /// has just decided from one committed long ago.
    pub fn is_decided_by(&self, event: &Event) -> bool {
        match (self, &event.body) {
            (_, EventBody::Transfer(transfer)) => self.transfer_id() == Some(transfer.id),
            (
                Command::ExpirePending { pending_id },
                EventBody::PendingExpired {
                    pending_id: expired,
                },
            ) => pending_id == expired,
            (Command::RequestPull { id, .. }, EventBody::PullRequested { id: asked, .. }) => {
                id == asked
            }
            (
                Command::AnswerPull { asker, pull },
                EventBody::Released {
                    to,
                    pull: Some(answered),
                    ..
                },
            ) => asker == to && pull == answered,
            _ => false,
        }
    }

    pub fn transfer_id(&self) -> Option<TransferId> {
        match self {
            Command::Transfer(transfer) | Command::CreatePending { transfer, .. } => {
                Some(transfer.id)
            }
            Command::PostPending { id, .. }
            | Command::VoidPending { id, .. }
            | Command::Refund { id, .. } => Some(*id),
            Command::ExpirePending { .. }
            | Command::Release { .. }
            | Command::Grant { .. }
            | Command::RequestPull { .. }
            | Command::AnswerPull { .. } => None,
        }
    }
}

/// One command of a batch. A member with `linked` set is chained to the next
/// one: the chain succeeds or fails as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub command: Command,
    pub linked: bool,
}

impl Item {
    pub fn single(command: Command) -> Self {
        Self {
            command,
            linked: false,
        }
    }

    pub fn linked(command: Command) -> Self {
        Self {
            command,
            linked: true,
        }
    }
}

/// A command for the global control log: the rare operations that must be
/// unique cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlCommand {
    RegisterCurrency(Currency),
    CreateAccount(NewAccount),
    Freeze {
        account: AccountId,
    },
    Unfreeze {
        account: AccountId,
    },
    Close {
        account: AccountId,
    },
    /// Keep at least `floor` of the account's reservation available in
    /// every region, pulling from regions above it (zero: no policy).
    SetPoolPolicy {
        account: AccountId,
        floor: Decimal,
    },
}
