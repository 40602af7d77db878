//! The HTTP API's JSON: requests and answers in the shape the billing
//! engine's users know (camelCase fields, amounts as decimal strings), each
//! with its schema in the OpenAPI document. Requests refuse unknown fields,
//! so a misspelt one is never ignored.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// The kinds of account of double-entry bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum AccountType {
    /// A customer's money: never below zero.
    User,
    /// Money outside the ledger (a bank, a payout rail): may go below zero.
    External,
    /// The business's own accounts (fees, revenue).
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Active,
    Frozen,
    Closed,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewAccount {
    /// A UUID (or up to 32 hex digits). Left out, a fresh one is made, and
    /// a retry then opens another account: give one to retry safely.
    #[serde(default)]
    pub id: Option<String>,
    pub owner_id: String,
    /// What the owner is (`user`, `merchant`, ...); kept with the account.
    #[serde(default)]
    pub owner_type: String,
    /// ISO 4217 code or a registered non-fiat one (`USD`, `BTC`, `POINTS`).
    pub currency: String,
    #[serde(rename = "type")]
    pub kind: AccountType,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedAccount {
    pub id: String,
    pub owner_id: String,
    pub owner_type: String,
    pub currency: String,
    #[serde(rename = "type")]
    pub kind: AccountType,
    pub metadata: BTreeMap<String, String>,
    /// False when it existed already with the same content.
    pub created: bool,
}

/// One region's share of an account.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionBalance {
    pub region: u32,
    pub available: String,
    pub held: String,
    /// The position of that region's log these figures are as of.
    pub as_of_index: u64,
}

/// How far this node has applied a region's log.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Watermark {
    pub region: u32,
    pub applied_index: u64,
    /// How old the newest entry of that region applied here is (ms).
    pub age_ms: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    pub owner_id: String,
    pub owner_type: String,
    pub currency: String,
    #[serde(rename = "type")]
    pub kind: AccountType,
    pub status: AccountStatus,
    pub metadata: BTreeMap<String, String>,
    /// Available plus held plus in flight between regions, in all regions.
    pub balance: String,
    pub available: String,
    pub held: String,
    pub in_flight: String,
    /// The floor of its pool policy, when it has one.
    pub pool_floor: Option<String>,
    pub regions: Vec<RegionBalance>,
    pub watermarks: Vec<Watermark>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub account_id: String,
    pub currency: String,
    pub status: AccountStatus,
    /// Available plus held plus in flight, in all regions.
    pub balance: String,
    pub available: String,
    pub held: String,
    pub in_flight: String,
    /// Per region, with the position of its log each figure is as of.
    pub regions: Vec<RegionBalance>,
    pub watermarks: Vec<Watermark>,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// Holds everything committed before the call, in every region (each
    /// region's leader confirms it); 503 REGION_UNAVAILABLE when one cannot.
    #[serde(default)]
    pub strong: bool,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only movements stamped at or after this (ns since the epoch).
    #[serde(default)]
    pub from_ns: u64,
    /// Only movements stamped at or before this (ns since the epoch).
    #[serde(default)]
    pub to_ns: u64,
    /// Up to and including this hybrid-clock stamp: `ns`, `ns.logical` or
    /// `ns.logical.node`; the balance answered is as of it.
    #[serde(default)]
    pub as_of: Option<String>,
    /// The latest this many movements (default 1,000; at most 10,000).
    #[serde(default)]
    pub limit: u32,
}

/// A hybrid-logical-clock stamp.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stamp {
    /// Nanoseconds since the epoch, as a string: past 2^53, a JSON number
    /// loses digits in many clients.
    pub ns: String,
    pub logical: u32,
    pub node: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub stamp: Stamp,
    pub region: u32,
    pub transaction_id: String,
    /// transfer, refund, hold, hold_posted, hold_voided or hold_expired.
    pub movement: String,
    pub counterparty_id: String,
    pub balance_change: String,
    pub held_change: String,
    /// Available plus held, in all regions, after this movement.
    pub balance: String,
    pub held: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub account_id: String,
    pub entries: Vec<HistoryEntry>,
    pub balance: String,
    pub held: String,
    /// More movements matched than `limit`; the earliest were left out.
    pub truncated: bool,
    pub watermarks: Vec<Watermark>,
}

/// A top-up, transfer or payment: money from one account to another.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Movement {
    /// The same key gives the same transaction: a retry, to this node or
    /// any other, is answered with the first outcome. A UUID is used as the
    /// transaction's id; any other text (1 to 128 bytes) names one.
    pub idempotency_key: String,
    #[schema(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{1,32})$"
    )]
    pub source_account_id: String,
    #[schema(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{1,32})$"
    )]
    pub destination_account_id: String,
    /// A plain decimal string ("12.50"), taken exactly.
    #[schema(pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "12.50")]
    pub amount: String,
    pub currency: String,
    #[serde(default)]
    pub reference: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Payments only: hold the amount for this long (ms) until it is
    /// captured or voided; it expires (is voided) then.
    #[serde(default)]
    pub hold_timeout_ms: Option<u64>,
    /// In a batch: chained with the next transaction, all or nothing.
    #[serde(default)]
    pub linked: bool,
}

/// Money leaving the ledger through a payout rail.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Withdrawal {
    pub idempotency_key: String,
    /// The USER account paying out.
    #[schema(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{1,32})$"
    )]
    pub source_account_id: String,
    /// The EXTERNAL account that stands for the payout rail.
    #[schema(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{1,32})$"
    )]
    pub destination_account_id: String,
    #[schema(pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "12.50")]
    pub amount: String,
    pub currency: String,
    /// Where the rail pays (an IBAN, a card token, ...).
    pub payout_destination: String,
    /// How long the rail has to pay (ms); past it the hold is voided.
    pub timeout_ms: u64,
    #[serde(default)]
    pub linked: bool,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Refund {
    pub idempotency_key: String,
    /// The payment (a completed transaction) to give money back from.
    #[schema(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{1,32})$"
    )]
    pub payment_id: String,
    #[schema(pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "12.50")]
    pub amount: String,
    #[serde(default)]
    pub reference: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub linked: bool,
}

/// Captures a held payment, all of it or part (the rest goes back).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capture {
    /// Left out: the capture of this hold, so a retry is answered with the
    /// first outcome.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Left out: the whole held amount.
    #[serde(default)]
    pub amount: Option<String>,
    #[serde(default)]
    pub linked: bool,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Void {
    /// Left out: the void of this hold, so a retry is answered with the
    /// first outcome.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub linked: bool,
}

/// A capture or void in a batch, naming its hold.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HoldAction {
    /// The held payment's transaction id.
    #[schema(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{1,32})$"
    )]
    pub transaction_id: String,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Captures only: left out, the whole held amount.
    #[serde(default)]
    pub amount: Option<String>,
    #[serde(default)]
    pub linked: bool,
}

/// One transaction of a batch, by its `type`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BatchTransaction {
    Topup(Movement),
    Transfer(Movement),
    Payment(Movement),
    Withdrawal(Withdrawal),
    Refund(Refund),
    Capture(HoldAction),
    Void(HoldAction),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Batch {
    /// At most 8,190, decided in order; linked ones all or nothing.
    pub transactions: Vec<BatchTransaction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransactionStatus {
    /// Moved: a top-up, transfer, payment or refund.
    Completed,
    /// Held: a held payment or a withdrawal under way.
    Pending,
    Captured,
    Voided,
}

/// A transaction the ledger accepted (committed in its region's log).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub transaction_id: String,
    pub status: TransactionStatus,
    /// False when the same transaction was accepted before (a retry).
    pub new: bool,
    /// The region that decided it.
    pub region: u32,
    /// The position of its entry in that region's log (0 for a retry).
    pub index: u64,
}

/// Each transaction of a batch in its place: accepted or refused.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    pub transaction_id: String,
    pub accepted: Option<Accepted>,
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchAnswer {
    pub results: Vec<BatchResult>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    pub transaction_id: String,
    /// The region whose log holds it.
    pub region: u32,
    pub source_account_id: String,
    pub destination_account_id: String,
    pub amount: String,
    pub currency: String,
    /// posted, pending, post, void or refund.
    pub kind: String,
    /// For a hold: open, posted, voided or expired; empty otherwise.
    pub state: String,
    pub refunded: String,
    pub reference: String,
    pub stamp: Stamp,
}

/// One event of `GET /api/v1/events`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionEvent {
    pub region: u32,
    /// Its offset among the region's transactions.
    pub offset: u64,
    pub transaction: Transaction,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only transactions that move this account's money.
    #[serde(default)]
    pub account: Option<String>,
    /// Only this region's transactions (every region's by default).
    #[serde(default)]
    pub region: Option<u32>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pools {
    pub account_id: String,
    pub currency: String,
    pub regions: Vec<RegionBalance>,
    /// Released by one region and not yet granted to another.
    pub in_flight: String,
    pub pool_floor: Option<String>,
    pub watermarks: Vec<Watermark>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rebalance {
    /// Moved from the region of the node asked (its leader) to `toRegion`.
    #[schema(pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "12.50")]
    pub amount: String,
    pub to_region: u32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rebalanced {
    /// The region that released it.
    pub region: u32,
    pub index: u64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolPolicy {
    /// Every region keeps at least this much available, pulling from
    /// regions above it; "0" removes the policy.
    #[schema(pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "12.50")]
    pub floor: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Changed {
    /// False when it was so already.
    pub changed: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// "control" or "region-N".
    pub group: String,
    pub leader: u64,
    pub voters: Vec<u64>,
    pub committed_index: u64,
    pub applied_index: u64,
    pub lag_entries: u64,
    pub last_event_age_ms: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNode {
    pub id: u64,
    pub region: u32,
    /// Its gRPC API.
    pub api: String,
    /// Its HTTP API (empty when it serves none).
    pub http: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub node: u64,
    pub region: u32,
    pub groups: Vec<GroupStatus>,
    pub nodes: Vec<ClusterNode>,
    /// This node's clock when it answered (ns since the epoch, a string).
    pub clock_ns: String,
    pub clock_offset_ms: i64,
    pub drift_refused: u64,
    pub refuses_to_lead: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// "live", "ready" or "not ready".
    pub status: String,
    /// Why it is not ready (empty when it is).
    pub reasons: Vec<String>,
}

/// Why a call or a transaction was refused. `code` is the gRPC API's stable
/// code (INSUFFICIENT_FUNDS, NOT_LEADER, ...).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    /// Whether the same call may succeed later unchanged.
    pub retryable: bool,
    pub details: ErrorDetails,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetails {
    /// NOT_LEADER: the leader's address; NOT_ORIGIN: the deciding region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
    /// INSUFFICIENT_FUNDS, PULL_TIMED_OUT: what is available in this region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_local: Option<String>,
    /// INSUFFICIENT_FUNDS, PULL_TIMED_OUT: what is available in all regions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_global: Option<String>,
}
