use super::*;
use proptest::prelude::*;

const SECOND: u64 = 1_000_000_000;
const START: u64 = 1_700_000_000 * SECOND;

fn hlc_at(now_ns: u64) -> (Hlc<ManualClock>, ManualClock) {
    let clock = ManualClock::new(now_ns);
    (Hlc::new(NodeId(1), clock.clone()), clock)
}

#[test]
fn stamp_follows_the_wall_clock_when_it_moves_forward() {
    let (hlc, clock) = hlc_at(START);
    assert_eq!(hlc.stamp(), Stamp::new(START, 0, NodeId(1)));
    clock.advance(5);
    assert_eq!(hlc.stamp(), Stamp::new(START + 5, 0, NodeId(1)));
}

#[test]
fn stamp_counts_up_while_the_wall_clock_stands_still() {
    let (hlc, _clock) = hlc_at(START);
    let stamps: Vec<Stamp> = (0..3).map(|_| hlc.stamp()).collect();
    assert_eq!(
        stamps,
        vec![
            Stamp::new(START, 0, NodeId(1)),
            Stamp::new(START, 1, NodeId(1)),
            Stamp::new(START, 2, NodeId(1)),
        ]
    );
}

#[test]
fn stamp_keeps_increasing_when_the_wall_clock_jumps_back() {
    let (hlc, clock) = hlc_at(START);
    let before = hlc.stamp();
    clock.jump_back(10 * SECOND);
    let after = hlc.stamp();
    assert!(after > before);
    assert_eq!(after, Stamp::new(START, 1, NodeId(1)));
    // Once the wall clock passes the old time again, stamps follow it.
    clock.advance(11 * SECOND);
    assert_eq!(hlc.stamp(), Stamp::new(START + SECOND, 0, NodeId(1)));
}

#[test]
fn a_full_logical_counter_moves_the_physical_part_on() {
    let (hlc, _clock) = hlc_at(START);
    hlc.observe(Stamp::new(START, u32::MAX, NodeId(2)))
        .expect("within the drift limit");
    assert_eq!(hlc.stamp(), Stamp::new(START + 1, 0, NodeId(1)));
}

#[test]
fn observe_makes_later_stamps_greater_than_the_remote_one() {
    let (hlc, _clock) = hlc_at(START);
    let remote = Stamp::new(START + 400_000_000, 7, NodeId(2));
    hlc.observe(remote).expect("400 ms ahead is within 500 ms");
    let next = hlc.stamp();
    assert!(next > remote);
    assert_eq!(next, Stamp::new(START + 400_000_000, 8, NodeId(1)));
}

#[test]
fn observe_of_an_older_stamp_changes_nothing() {
    let (hlc, _clock) = hlc_at(START);
    let first = hlc.stamp();
    hlc.observe(Stamp::new(START - SECOND, 3, NodeId(2)))
        .expect("the past is never refused");
    assert_eq!(hlc.last(), first);
}

#[test]
fn observe_refuses_a_stamp_beyond_the_drift_limit_and_leaves_the_clock_alone() {
    let (hlc, _clock) = hlc_at(START);
    let before = hlc.stamp();
    let remote = Stamp::new(START + 501_000_000, 0, NodeId(2));
    let refused = hlc
        .observe(remote)
        .expect_err("501 ms ahead is over 500 ms");
    assert_eq!(
        refused,
        DriftError {
            remote,
            local_ns: START,
            ahead_ns: 501_000_000,
            limit_ns: 500_000_000,
        }
    );
    assert_eq!(hlc.last(), before);
    assert_eq!(hlc.refused_count(), 1);
    assert_eq!(hlc.stamp(), Stamp::new(START, 1, NodeId(1)));
}

#[test]
fn stamp_after_extends_a_log_stamped_by_a_fast_clock_at_once() {
    let (hlc, _clock) = hlc_at(START);
    // A previous leader 60 s fast stamped the log: observing it is refused,
    // but this node can still extend the log right after it.
    let floor = Stamp::new(START + 60 * SECOND, 4, NodeId(2));
    assert!(hlc.observe(floor).is_err());
    let next = hlc.stamp_after(floor);
    assert!(next > floor);
    assert_eq!(next, Stamp::new(START + 60 * SECOND, 5, NodeId(1)));
    // The clock itself was not dragged ahead.
    assert!(
        hlc.stamp() < floor,
        "this node's own stamps stay at its time"
    );
    // A floor in the past gives the clock's own next stamp.
    let (hlc, _clock) = hlc_at(START);
    assert_eq!(
        hlc.stamp_after(Stamp::new(START - SECOND, 9, NodeId(2))),
        Stamp::new(START, 0, NodeId(1))
    );
}

#[test]
fn a_log_is_extended_after_what_it_received_within_the_drift_limit() {
    let (hlc, _clock) = hlc_at(START);
    let own = Stamp::new(START - SECOND, 0, NodeId(1));
    // Another region's log, 300 ms ahead (within the limit): the entry that
    // takes in its release comes after it.
    let near = Stamp::new(START + 300_000_000, 7, NodeId(2));
    let next = hlc.stamp_after_received(own, [near]);
    assert!(next > near, "{next} after {near}");
    // 60 s ahead: left out; the entry follows the log and the clock.
    let far = Stamp::new(START + 60 * SECOND, 0, NodeId(3));
    let next = hlc.stamp_after_received(own, [far]);
    assert!(next < far);
    assert!(next > own);
}

#[test]
fn the_drift_limit_is_configurable() {
    let clock = ManualClock::new(START);
    let hlc = Hlc::with_drift_limit(NodeId(1), clock, Duration::from_millis(50));
    assert!(
        hlc.observe(Stamp::new(START + 50_000_000, 0, NodeId(2)))
            .is_ok()
    );
    assert!(
        hlc.observe(Stamp::new(START + 50_000_001, 0, NodeId(2)))
            .is_err()
    );
    assert_eq!(hlc.drift_limit(), Duration::from_millis(50));
}

#[test]
fn a_drifting_manual_clock_runs_fast_or_slow() {
    let clock = ManualClock::new(0);
    clock.set_drift_ppm(1_000); // 0.1 % fast
    clock.advance(SECOND);
    assert_eq!(clock.now_ns(), SECOND + 1_000_000);
    clock.set_drift_ppm(-500_000); // half speed
    clock.advance(SECOND);
    assert_eq!(clock.now_ns(), SECOND + 1_000_000 + SECOND / 2);
    clock.set(42);
    assert_eq!(clock.now_ns(), 42);
}

#[test]
fn the_system_clock_reads_the_real_time() {
    let now = SystemClock.now_ns();
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    let real = u64::try_from(real).expect("fits until 2554");
    assert!(real.abs_diff(now) < 60 * SECOND, "{now} vs {real}");
}

#[test]
fn stamps_display_as_rfc3339_with_counter_and_node() {
    let stamp = Stamp::new(START, 3, NodeId(9));
    assert_eq!(stamp.to_string(), "2023-11-14T22:13:20.000000000Z+3@n9");
}

#[test]
fn node_ids_convert_to_uhlc_ids_except_zero() {
    assert!(NodeId(0).to_uhlc().is_none());
    assert_eq!(NodeId(5).to_uhlc().map(|id| id.to_le_bytes()[0]), Some(5u8));
}

#[test]
fn decoding_rejects_the_wrong_length() {
    assert_eq!(Stamp::from_bytes(&[0u8; 19]), Err(StampDecodeError(19)));
}

#[test]
fn clocks_are_shared_between_threads() {
    let hlc = std::sync::Arc::new(Hlc::new(NodeId(1), SystemClock));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let hlc = hlc.clone();
            std::thread::spawn(move || (0..1_000).map(|_| hlc.stamp()).collect::<Vec<_>>())
        })
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        let stamps = handle.join().expect("no panic");
        assert!(stamps.windows(2).all(|pair| pair[0] < pair[1]));
        all.extend(stamps);
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4_000, "every stamp is unique");
}

fn any_stamp() -> impl Strategy<Value = Stamp> {
    (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(p, l, n)| Stamp::from_parts(p, l, n))
}

proptest! {
    #[test]
    fn wire_forms_round_trip_and_keep_the_order(a in any_stamp(), b in any_stamp()) {
        prop_assert_eq!(Stamp::from_bytes(&a.to_bytes()), Ok(a));
        let (p, l, n) = a.to_parts();
        prop_assert_eq!(Stamp::from_parts(p, l, n), a);
        prop_assert_eq!(a.to_bytes().cmp(&b.to_bytes()), a.cmp(&b));
        let json = serde_json::to_string(&a).expect("serializes");
        prop_assert_eq!(serde_json::from_str::<Stamp>(&json).expect("parses"), a);
    }

    /// Whatever the wall clock does and whatever is observed, stamps strictly
    /// increase and each is greater than everything observed before it.
    #[test]
    fn stamps_strictly_increase_under_any_clock(
        steps in proptest::collection::vec((0u8..4, 0u64..2 * SECOND), 1..200)
    ) {
        let (hlc, clock) = hlc_at(START);
        let mut previous = Stamp::ZERO;
        let mut observed = Stamp::ZERO;
        for (action, amount) in steps {
            match action {
                0 => clock.advance(amount),
                1 => clock.jump_back(amount),
                2 => {
                    let remote = Stamp::new(clock.now_ns() + amount / 2, 0, NodeId(2));
                    if hlc.observe(remote).is_ok() {
                        observed = observed.max(remote);
                    }
                }
                _ => {}
            }
            let stamp = hlc.stamp();
            prop_assert!(stamp > previous);
            prop_assert!((stamp.physical_ns(), stamp.logical()) > (observed.physical_ns(), observed.logical()));
            previous = stamp;
        }
    }
}
