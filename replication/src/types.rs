use crate::traces::EntryTrace;
use ledger_reservations::{ControlEvent, Event, RegionId};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// A Raft group: one per region, and the global control group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Group {
    Region(RegionId),
    Control,
}

impl Group {
    /// A name usable as a table or file name.
    pub fn name(&self) -> String {
        match self {
            Group::Region(region) => format!("region-{}", region.0),
            Group::Control => "control".to_owned(),
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What a leader proposes: one log entry holding a batch of events.
///
/// Encoded with postcard (compact, fast), inside the JSON that carries
/// openraft's own types as one base64 string; in a binary format, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposal {
    /// Events of a region's own log, and the trace they continue (only
    /// when something in them was traced).
    Region {
        events: Vec<Event>,
        trace: Option<Box<EntryTrace>>,
    },
    /// Events of the global control log.
    Control(Vec<ControlEvent>),
}

impl Proposal {
    /// A region's entry that carries no trace.
    pub fn region(events: Vec<Event>) -> Self {
        Proposal::Region {
            events,
            trace: None,
        }
    }
}

/// The shape postcard encodes. An entry without a trace is encoded as it
/// was before traces existed; variants are only ever added at the end.
#[derive(Serialize, Deserialize)]
enum ProposalBody<'a> {
    Region(Cow<'a, [Event]>),
    Control(Cow<'a, [ControlEvent]>),
    RegionTraced(Cow<'a, [Event]>, Cow<'a, EntryTrace>),
}

impl Proposal {
    /// Its size in postcard, as the log holds it (JSON carries it in base64,
    /// a third more). Counted without encoding it.
    pub fn encoded_bytes(&self) -> usize {
        encoded_bytes(&self.body())
    }

    fn body(&self) -> ProposalBody<'_> {
        match self {
            Proposal::Region {
                events,
                trace: None,
            } => ProposalBody::Region(events.as_slice().into()),
            Proposal::Region {
                events,
                trace: Some(trace),
            } => ProposalBody::RegionTraced(events.as_slice().into(), Cow::Borrowed(&**trace)),
            Proposal::Control(events) => ProposalBody::Control(events.as_slice().into()),
        }
    }
}

/// An event's size in postcard, as an entry holds it: what bounds an entry
/// in bytes.
pub fn event_bytes(event: &Event) -> usize {
    encoded_bytes(event)
}

fn encoded_bytes<T: Serialize>(value: &T) -> usize {
    // Counting cannot fail for our types (no map of unknown length); were it
    // to, the value counts as too large for anything but an entry of its own.
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

impl Serialize for Proposal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        let bytes = postcard::to_stdvec(&self.body()).map_err(serde::ser::Error::custom)?;
        if serializer.is_human_readable() {
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            serializer.serialize_bytes(&bytes)
        }
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let bytes: Vec<u8> = if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(serde::de::Error::custom)?
        } else {
            serde::de::Deserialize::deserialize(deserializer)?
        };
        let body: ProposalBody<'static> =
            postcard::from_bytes(&bytes).map_err(serde::de::Error::custom)?;
        Ok(match body {
            ProposalBody::Region(events) => Proposal::region(events.into_owned()),
            ProposalBody::RegionTraced(events, trace) => Proposal::Region {
                events: events.into_owned(),
                trace: Some(Box::new(trace.into_owned())),
            },
            ProposalBody::Control(events) => Proposal::Control(events.into_owned()),
        })
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proposal::Region { events, .. } => write!(f, "{} region events", events.len()),
            Proposal::Control(events) => write!(f, "{} control events", events.len()),
        }
    }
}

/// What applying a committed entry answers its proposer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The log index of the entry.
    pub index: u64,
    /// How many of its events were applied (0 when all were applied before).
    pub events: u32,
}

openraft::declare_raft_types!(
    /// The openraft type configuration of every ledger group.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        AsyncRuntime = crate::rt::Runtime,
);

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_hlc::{NodeId, Stamp};
    use ledger_reservations::{
        AccountId, AccountKind, CurrencyCode, EventBody, Transfer, TransferId, TransferKind,
    };

    #[test]
    fn proposals_round_trip_in_json_and_postcard_and_stay_small() {
        let event = Event {
            stamp: Stamp::new(1, 2, NodeId(3)),
            body: EventBody::Transfer(Transfer {
                id: TransferId(u128::MAX),
                debit: AccountId(1),
                credit: AccountId(2),
                units: 12_345,
                currency: CurrencyCode::new("USD").expect("code"),
                debit_kind: AccountKind::External,
                credit_kind: AccountKind::User,
                kind: TransferKind::Pending { timeout_ms: 9 },
                reference: Some("r".into()),
                metadata: Some(Box::new([("k".to_owned(), "v".to_owned())].into())),
            }),
        };
        let proposal = Proposal::region(vec![event.clone(); 100]);
        let json = serde_json::to_string(&proposal).expect("json");
        assert_eq!(
            serde_json::from_str::<Proposal>(&json).expect("back"),
            proposal
        );
        let bytes = postcard::to_stdvec(&proposal).expect("postcard");
        assert_eq!(
            postcard::from_bytes::<Proposal>(&bytes).expect("back"),
            proposal
        );
        let events_as_json = serde_json::to_string(&vec![event; 100]).expect("json");
        assert!(
            json.len() * 2 < events_as_json.len(),
            "{} vs {}",
            json.len(),
            events_as_json.len()
        );
        assert!(serde_json::from_str::<Proposal>("\"not base64!\"").is_err());
    }

    #[test]
    fn an_entry_s_bytes_are_counted_without_encoding_it() {
        let metadata: ledger_reservations::Metadata = (0..32)
            .map(|at| (format!("line-{at:02}"), "m".repeat(1_000)))
            .collect();
        let event = |id: u128| Event {
            stamp: Stamp::new(1, 2, NodeId(3)),
            body: EventBody::Transfer(Transfer {
                id: TransferId(id),
                debit: AccountId(1),
                credit: AccountId(2),
                units: 12_345,
                currency: CurrencyCode::new("USD").expect("code"),
                debit_kind: AccountKind::User,
                credit_kind: AccountKind::User,
                kind: TransferKind::Posted,
                reference: Some("r".repeat(200).into()),
                metadata: id.is_multiple_of(2).then(|| Box::new(metadata.clone())),
            }),
        };
        let events: Vec<Event> = (0..20).map(event).collect();
        let proposal = Proposal::region(events.clone());
        // Postcard holds a proposal as bytes: a length, then its body.
        let held: Vec<u8> =
            postcard::from_bytes(&postcard::to_stdvec(&proposal).expect("postcard")).expect("body");
        assert_eq!(proposal.encoded_bytes(), held.len());
        let of_events: usize = events.iter().map(event_bytes).sum();
        assert!(of_events > 10 * 32 * 1_000, "{of_events}");
        // The body is its variant, the events' count, then the events.
        assert!(of_events < held.len() && held.len() <= of_events + 8);
    }

    #[test]
    fn an_untraced_entry_is_encoded_as_before_and_a_traced_one_round_trips() {
        use crate::traces::{EntryTrace, TraceContext};
        let event = Event {
            stamp: Stamp::new(1, 2, NodeId(3)),
            body: EventBody::PendingExpired {
                pending_id: TransferId(7),
            },
        };
        // The shape entries had before traces: variant 0, the events; a
        // binary format holds it as bytes (postcard: length, then bytes).
        #[derive(Serialize)]
        enum Before<'a> {
            Region(&'a [Event]),
        }
        let before =
            postcard::to_stdvec(&Before::Region(std::slice::from_ref(&event))).expect("postcard");
        let untraced =
            postcard::to_stdvec(&Proposal::region(vec![event.clone()])).expect("postcard");
        let held: Vec<u8> = postcard::from_bytes(&untraced).expect("bytes");
        assert_eq!(held, before);
        let context = TraceContext {
            trace_id: [1; 16],
            span_id: [2; 8],
            flags: 1,
        };
        let traced = Proposal::Region {
            events: vec![event],
            trace: Some(Box::new(EntryTrace {
                entry: context,
                events: vec![(0, context)],
            })),
        };
        let bytes = postcard::to_stdvec(&traced).expect("postcard");
        assert_eq!(
            postcard::from_bytes::<Proposal>(&bytes).expect("back"),
            traced
        );
        let json = serde_json::to_string(&traced).expect("json");
        assert_eq!(
            serde_json::from_str::<Proposal>(&json).expect("back"),
            traced
        );
    }
}
