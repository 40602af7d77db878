//! The history of a run: every operation's invocation and completion, as
//! JSON lines, appended by every process of the run to one file. An
//! invocation without a completion (the process was killed) is an
//! operation of unknown outcome, like one that timed out.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The operation: unique in the run (the process's nonce and a count).
    pub op: String,
    /// Wall time, ns since the epoch.
    pub time_ns: u128,
    /// The region whose client made the call.
    pub region: u32,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A transfer sent: its id and what it moves.
    Invoke(Transfer),
    /// How the transfer's call ended.
    Complete(Outcome),
    /// A read of accounts, as one node answered it.
    Read(Read),
    /// An operator's call (a rebalance, a pool policy) and how it ended.
    Admin(Admin),
}

/// A command of a transfer call, as sent. A post or void names the hold's
/// accounts and amount (the node records them so); a withdrawal is its
/// hold, user to EXTERNAL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: String,
    pub debit: String,
    pub credit: String,
    pub amount: String,
    #[serde(default, skip_serializing_if = "Kind::is_move")]
    pub kind: Kind,
    /// The first id of the linked chain this command is part of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
}

impl Transfer {
    /// A plain move of `amount` from `debit` to `credit`.
    pub fn moving(id: String, debit: String, credit: String, amount: String) -> Self {
        Self {
            id,
            debit,
            credit,
            amount,
            kind: Kind::Move,
            chain: None,
        }
    }

    /// A plain move, alone in its call: what availability is measured on.
    pub fn is_plain(&self) -> bool {
        self.kind == Kind::Move && self.chain.is_none()
    }
}

/// What a command does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Move,
    /// Holds the amount for at most `timeout_ms`.
    Hold { timeout_ms: u64 },
    /// Posts the whole of hold `pending`.
    Post { pending: String },
    /// Voids hold `pending`.
    Void { pending: String },
    /// A withdrawal through the simulated rail to `destination` (`fail:…`
    /// is refused by the rail, so the ledger voids the hold).
    Withdrawal { destination: String },
}

impl Kind {
    fn is_move(&self) -> bool {
        *self == Kind::Move
    }

    /// A short name, for counts.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Move => "move",
            Kind::Hold { .. } => "hold",
            Kind::Post { .. } => "post",
            Kind::Void { .. } => "void",
            Kind::Withdrawal { .. } => "withdrawal",
        }
    }
}

/// An operator's call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Admin {
    /// What was asked, in words (`rebalance <account> 1.00 to region 2`).
    pub call: String,
    /// `ok`, a refusal's code, or why the call failed.
    pub outcome: String,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Applied (now or before: an idempotent retry), by region
    /// `decided_by` at `index` of its log.
    Ok {
        decided_by: u32,
        index: u64,
        new: bool,
    },
    /// Decided and refused: it never applies.
    Refused { code: String },
    /// Never reached a region that decides it (no leader, region cut off,
    /// node not reachable): nothing was appended.
    NotSent { code: String },
    /// It may or may not have applied (timed out, connection broken,
    /// outcome unknown at the node).
    Unknown { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Read {
    pub node: u64,
    pub accounts: Vec<AccountRead>,
    /// Some of the run's accounts, not all: their balances need not sum
    /// to zero.
    #[serde(default)]
    pub partial: bool,
    /// Asked as a strong read (everything committed before it).
    #[serde(default)]
    pub strong: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRead {
    pub id: String,
    /// USER, EXTERNAL or SYSTEM.
    pub kind: String,
    pub total: String,
    pub available: String,
    /// Per region: (region, available, held).
    pub regions: Vec<(u32, String, String)>,
    /// Released by one region's pool, not yet granted to another's.
    #[serde(default)]
    pub in_flight: String,
}

impl AccountRead {
    pub fn of(view: &ledger_proto::v1::AccountView) -> Self {
        Self {
            id: view.id.clone(),
            kind: kind_name(view.kind()).to_owned(),
            total: view.total.clone(),
            available: view.available.clone(),
            regions: view
                .regions
                .iter()
                .map(|region| (region.region, region.available.clone(), region.held.clone()))
                .collect(),
            in_flight: view.in_flight.clone(),
        }
    }
}

/// An account kind as the API's clients name it (`USER`), not as protobuf
/// names the enum's value (`ACCOUNT_KIND_USER`).
pub fn kind_name(kind: ledger_proto::v1::AccountKind) -> &'static str {
    let name = kind.as_str_name();
    name.strip_prefix("ACCOUNT_KIND_").unwrap_or(name)
}

pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0)
}

/// Appends entries to a history file, a line each, flushed as written so
/// that a process killed mid-run leaves every line it wrote.
pub struct Recorder {
    file: Mutex<std::fs::File>,
    nonce: u64,
    count: std::sync::atomic::AtomicU64,
    lost: std::sync::atomic::AtomicU64,
}

impl Recorder {
    pub fn append_to(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self {
            file: Mutex::new(file),
            nonce: crate::rng::Rng::new(now_ns() as u64 ^ u64::from(std::process::id())).next_u64(),
            count: std::sync::atomic::AtomicU64::new(0),
            lost: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// This recorder's own random number: it names its operations.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// A new operation's name.
    pub fn next_op(&self) -> String {
        let n = self
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{:016x}-{n}", self.nonce)
    }

    /// Lines that could not be written: a run with any cannot be checked.
    pub fn lost(&self) -> u64 {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fails when a line was lost: the checks of such a history would vouch
    /// for calls they cannot see.
    pub fn whole(&self) -> anyhow::Result<()> {
        match self.lost() {
            0 => Ok(()),
            lost => {
                anyhow::bail!("{lost} history lines were not written: this run cannot be checked")
            }
        }
    }

    /// Writes one line. A line that cannot be written is said loudly and
    /// counted ([`Self::lost`]); the run goes on, and cannot be checked.
    pub fn record(&self, op: &str, region: u32, event: Event) {
        if let Err(error) = self.write(op, region, event) {
            self.lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            eprintln!("history: a line was not written: {error:#}");
        }
    }

    fn write(&self, op: &str, region: u32, event: Event) -> anyhow::Result<()> {
        let entry = Entry {
            op: op.to_owned(),
            time_ns: now_ns(),
            region,
            event,
        };
        let mut line = serde_json::to_string(&entry)?;
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(line.as_bytes())?;
        Ok(())
    }
}

/// A history read back: every transfer by id, with all its attempts, and
/// every read.
#[derive(Debug, Default)]
pub struct History {
    pub transfers: BTreeMap<String, Attempts>,
    pub reads: Vec<(u32, Read)>,
    /// Every operator's call, with its region.
    pub admin: Vec<(u32, Admin)>,
    /// Every call that completed, in the order the completions were written.
    pub calls: Vec<Call>,
    pub lines: usize,
}

/// One call of one transfer, from invocation to completion.
#[derive(Debug, Clone)]
pub struct Call {
    /// The transfer's id.
    pub id: String,
    /// The region whose client made it.
    pub region: u32,
    pub invoked_ns: u128,
    pub completed_ns: u128,
    pub outcome: Outcome,
}

/// Every call made with one transfer id (a retry uses the same id).
#[derive(Debug, Clone)]
pub struct Attempts {
    pub transfer: Transfer,
    /// One per invocation; `None` when it never completed.
    pub outcomes: Vec<Option<Outcome>>,
}

/// What the history says of one transfer id, all attempts together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An attempt was acknowledged: it must be applied, once.
    Acknowledged,
    /// An attempt was decided and refused, none acknowledged: never applied.
    Refused,
    /// No attempt reached a decider: never applied.
    NotSent,
    /// At least one attempt's outcome is unknown, none decided.
    Unknown,
}

impl Attempts {
    pub fn verdict(&self) -> Verdict {
        let outcomes = || self.outcomes.iter();
        if outcomes().any(|o| matches!(o, Some(Outcome::Ok { .. }))) {
            Verdict::Acknowledged
        } else if outcomes().any(|o| matches!(o, None | Some(Outcome::Unknown { .. }))) {
            // A refusal is a decision of its time and may be retried: an
            // attempt of unknown fate beside it may have applied.
            Verdict::Unknown
        } else if outcomes().any(|o| matches!(o, Some(Outcome::Refused { .. }))) {
            Verdict::Refused
        } else {
            Verdict::NotSent
        }
    }
}

impl History {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut history = Self::default();
        // The open invocation of each op, by op name: its transfer id and
        // when it was sent.
        let mut open = BTreeMap::new();
        for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let entry: Entry = serde_json::from_str(&line)
                .with_context(|| format!("{} line {}", path.display(), number + 1))?;
            history.lines += 1;
            history.add(entry, &mut open);
        }
        Ok(history)
    }

    /// A history of `entries`, in the order they were written.
    pub fn of(entries: impl IntoIterator<Item = Entry>) -> Self {
        let mut history = Self::default();
        let mut open = BTreeMap::new();
        for entry in entries {
            history.lines += 1;
            history.add(entry, &mut open);
        }
        history
    }

    /// `open` holds each invocation not completed yet, by op: its id, when
    /// it was sent and its attempt's place among the id's attempts (one call
    /// may hold an id twice: each completion goes to its own invocation).
    fn add(&mut self, entry: Entry, open: &mut BTreeMap<String, (String, u128, usize)>) {
        match entry.event {
            Event::Invoke(transfer) => {
                let id = transfer.id.clone();
                let attempts = self
                    .transfers
                    .entry(transfer.id.clone())
                    .or_insert_with(|| Attempts {
                        transfer,
                        outcomes: Vec::new(),
                    });
                open.insert(entry.op, (id, entry.time_ns, attempts.outcomes.len()));
                attempts.outcomes.push(None);
            }
            Event::Complete(outcome) => {
                let Some((id, invoked_ns, attempt)) = open.remove(&entry.op) else {
                    return;
                };
                self.calls.push(Call {
                    id: id.clone(),
                    region: entry.region,
                    invoked_ns,
                    completed_ns: entry.time_ns,
                    outcome: outcome.clone(),
                });
                let slot = self
                    .transfers
                    .get_mut(&id)
                    .and_then(|attempts| attempts.outcomes.get_mut(attempt));
                if let Some(slot) = slot {
                    *slot = Some(outcome);
                }
            }
            Event::Read(read) => self.reads.push((entry.region, read)),
            Event::Admin(admin) => self.admin.push((entry.region, admin)),
        }
    }

    /// The ids the history says with `verdict`.
    pub fn with_verdict(&self, verdict: Verdict) -> impl Iterator<Item = &Attempts> {
        self.transfers
            .values()
            .filter(move |attempts| attempts.verdict() == verdict)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A line of the history, of region 0 at time 0.
    pub(crate) fn entry(op: &str, event: Event) -> Entry {
        Entry {
            op: op.into(),
            time_ns: 0,
            region: 0,
            event,
        }
    }

    fn invoke(op: &str, id: &str) -> Entry {
        entry(
            op,
            Event::Invoke(Transfer::moving(
                id.into(),
                "a".into(),
                "b".into(),
                "1.00".into(),
            )),
        )
    }

    fn complete(op: &str, outcome: Outcome) -> Entry {
        entry(op, Event::Complete(outcome))
    }

    fn unknown() -> Outcome {
        Outcome::Unknown {
            reason: "timed out".into(),
        }
    }

    #[test]
    fn each_completion_goes_to_its_own_invocation() {
        let answer = |new| Outcome::Ok {
            decided_by: 0,
            index: 3,
            new,
        };
        // One call holding an id twice: the first copy applied, the second
        // its repeat; then a call that never completed.
        let history = History::of([
            invoke("1", "twice"),
            invoke("2", "twice"),
            complete("1", answer(true)),
            complete("2", answer(false)),
            invoke("3", "twice"),
        ]);
        assert_eq!(
            history.transfers["twice"].outcomes,
            vec![Some(answer(true)), Some(answer(false)), None]
        );
    }

    #[test]
    fn attempts_of_one_id_give_one_verdict() {
        let ok = Outcome::Ok {
            decided_by: 0,
            index: 3,
            new: false,
        };
        let not_sent = Outcome::NotSent {
            code: "NOT_LEADER".into(),
        };
        let history = History::of([
            // Unknown, then acknowledged by a retry.
            invoke("1", "retried"),
            complete("1", unknown()),
            invoke("2", "retried"),
            complete("2", ok),
            // Invoked, never completed (the process was killed).
            invoke("3", "cut short"),
            // Never reached a decider.
            invoke("4", "not sent"),
            complete("4", not_sent.clone()),
            // Not sent once, then unknown: it may have applied.
            invoke("5", "maybe"),
            complete("5", not_sent),
            invoke("6", "maybe"),
            complete("6", unknown()),
            invoke("7", "refused"),
            complete(
                "7",
                Outcome::Refused {
                    code: "INSUFFICIENT_FUNDS".into(),
                },
            ),
            // Refused, then retried with no answer: it may have applied.
            invoke("8", "refused then unknown"),
            complete(
                "8",
                Outcome::Refused {
                    code: "UNKNOWN_ACCOUNT".into(),
                },
            ),
            invoke("9", "refused then unknown"),
            complete("9", unknown()),
        ]);
        let verdict = |id: &str| history.transfers[id].verdict();
        assert_eq!(verdict("retried"), Verdict::Acknowledged);
        assert_eq!(verdict("cut short"), Verdict::Unknown);
        assert_eq!(verdict("not sent"), Verdict::NotSent);
        assert_eq!(verdict("maybe"), Verdict::Unknown);
        assert_eq!(verdict("refused"), Verdict::Refused);
        assert_eq!(verdict("refused then unknown"), Verdict::Unknown);
        assert_eq!(history.transfers["retried"].outcomes.len(), 2);
    }

    #[test]
    fn a_history_written_is_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("history.jsonl");
        let recorder = Recorder::append_to(&path).expect("opened");
        let op = recorder.next_op();
        let Event::Invoke(transfer) = invoke(&op, "t").event else {
            unreachable!("an invocation")
        };
        recorder.record(&op, 2, Event::Invoke(transfer));
        recorder.record(&op, 2, Event::Complete(unknown()));
        assert_eq!(recorder.lost(), 0);
        let history = History::read(&path).expect("read");
        assert_eq!(history.lines, 2);
        assert_eq!(history.transfers["t"].outcomes, vec![Some(unknown())]);
        std::fs::write(&path, "not json\n").expect("written");
        assert!(History::read(&path).is_err(), "a broken line is an error");
    }
}
