//! A node compares its clock with its peers' and refuses to lead while it
//! is off by more than the drift limit (issue 9, audit finding 10): a
//! leader stamps its region's log, its expiries and its decisions with its
//! own clock, so a fast clock would put the log in the future and expire
//! holds early.

use crate::client::Client;
use crate::runtime::NodeHandle;
use ledger_hlc::Clock;
use ledger_proto::v1 as api;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often a node compares its clock with its peers'.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long one peer may take to say what its clock reads.
const ASK_DEADLINE: Duration = Duration::from_secs(1);

/// One peer's clock against ours, measured over one call: the peer's
/// reading less the middle of the call by ours (ms), and the call's round
/// trip (ms), the bound on the measure's error being half of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offset {
    pub peer_minus_own_ms: f64,
    pub round_trip_ms: f64,
}

/// Asks `client`'s node what its clock reads, timing the call by `now_ns`.
pub async fn measure(client: &Client, now_ns: impl Fn() -> u64) -> Option<Offset> {
    let before = now_ns();
    let status = tokio::time::timeout(ASK_DEADLINE, client.status())
        .await
        .ok()?
        .ok()?;
    let after = now_ns();
    let middle = (before as f64 + after as f64) / 2.0;
    Some(Offset {
        peer_minus_own_ms: (status.clock_ns as f64 - middle) / 1e6,
        round_trip_ms: after.saturating_sub(before) as f64 / 1e6,
    })
}

/// How far our clock is off the cluster's (ms; positive: ours is ahead):
/// the median of every clock that answered, ours (at 0) included, so that
/// one node with a wrong clock moves no one else's. `None` with fewer than
/// three clocks: with two, neither can tell which one is wrong.
pub fn own_offset_ms(offsets: &[Offset]) -> Option<f64> {
    let mut readings: Vec<f64> = offsets.iter().map(|o| -o.peer_minus_own_ms).collect();
    readings.push(0.0);
    if readings.len() < 3 {
        return None;
    }
    readings.sort_by(f64::total_cmp);
    let middle = readings.len() / 2;
    Some(if readings.len() % 2 == 1 {
        readings[middle]
    } else {
        (readings[middle - 1] + readings[middle]) / 2.0
    })
}

/// Whether an offset, measured with the given round trips, is past the
/// drift limit beyond any doubt the round trips leave.
pub fn is_off(offset_ms: f64, offsets: &[Offset], limit: Duration) -> bool {
    let doubt_ms = offsets
        .iter()
        .map(|o| o.round_trip_ms / 2.0)
        .fold(0.0, f64::max);
    offset_ms.abs() - doubt_ms > limit.as_secs_f64() * 1_000.0
}

/// Compares this node's clock with every peer's, every second, until the
/// node stops; keeps what it found in the node ([`NodeHandle::clock_offset_ms`])
/// and lets the node lead only while its clock is within the drift limit.
pub async fn watch(node: Arc<NodeHandle>) {
    let mut clients: BTreeMap<u64, Client> = BTreeMap::new();
    let mut was_off = false;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let peers: Vec<api::NodeInfo> = node
            .replica
            .layout()
            .nodes
            .iter()
            .filter(|peer| peer.id != node.replica.id() && !peer.api.is_empty())
            .map(|peer| api::NodeInfo {
                id: peer.id,
                region: u32::from(peer.region.0),
                api: peer.api.clone(),
                http: peer.http.clone(),
            })
            .collect();
        let mut offsets = Vec::with_capacity(peers.len());
        for peer in &peers {
            let client = match clients.get(&peer.id) {
                Some(client) => client.clone(),
                None => match tokio::time::timeout(ASK_DEADLINE, node.client_of(&peer.api)).await {
                    Ok(Ok(client)) => {
                        clients.insert(peer.id, client.clone());
                        client
                    }
                    _ => continue,
                },
            };
            match measure(&client, || node.clock().clock().now_ns()).await {
                Some(offset) => offsets.push(offset),
                None => {
                    clients.remove(&peer.id);
                }
            }
        }
        let Some(offset_ms) = own_offset_ms(&offsets) else {
            continue;
        };
        let off = is_off(offset_ms, &offsets, node.clock().drift_limit());
        node.set_clock_offset(offset_ms, off);
        if off != was_off {
            if off {
                tracing::warn!(
                    offset_ms,
                    "this node's clock is off its peers' past the drift limit: it refuses to lead"
                );
            } else {
                tracing::info!(offset_ms, "this node's clock agrees with its peers' again");
            }
        }
        // Said again every round: an election may have made it leader.
        node.replica.set_may_lead(!off).await;
        was_off = off;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(peer_minus_own_ms: f64, round_trip_ms: f64) -> Offset {
        Offset {
            peer_minus_own_ms,
            round_trip_ms,
        }
    }

    #[test]
    fn the_median_peer_decides_and_doubt_counts_against_an_alarm() {
        let limit = Duration::from_millis(500);
        // Every peer reads 60 s behind us: we are 60 s fast.
        let fast = [offset(-60_000.0, 2.0), offset(-60_001.0, 3.0)];
        let own = own_offset_ms(&fast).expect("answers");
        assert!((own - 60_000.0).abs() < 1e-9, "{own}");
        assert!(is_off(own, &fast, limit));
        // One node with a wrong clock does not make us wrong, with two
        // peers or with three.
        for one_wrong in [
            vec![offset(1.0, 2.0), offset(-90_000.0, 2.0)],
            vec![offset(1.0, 2.0), offset(-90_000.0, 2.0), offset(-2.0, 2.0)],
        ] {
            let own = own_offset_ms(&one_wrong).expect("answers");
            assert!(!is_off(own, &one_wrong, limit), "{own}");
        }
        // With one peer, no one can tell which clock is wrong.
        assert_eq!(own_offset_ms(&[offset(-60_000.0, 1.0)]), None);
        // 600 ms off, measured over calls of 400 ms: not beyond doubt.
        let slow_calls = [offset(-600.0, 400.0)];
        assert!(!is_off(600.0, &slow_calls, limit));
        assert_eq!(own_offset_ms(&[]), None);
    }
}
