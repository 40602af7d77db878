//! The whole-cluster simulation in the suite: a fixed set of seeds (1 to
//! 3), each a run of 3 regions × 3 nodes under 10 s of faults, seed 1 run
//! twice to write the same trace byte for byte, and audit findings 2, 4,
//! 5 and 9 put back to be caught. More seeds: `jepsen sim --count N` (README, Test).

use ledger_jepsen::sim::{self, Options, Report};
use std::time::Duration;

fn run(seed: u64) -> Report {
    let mut options = Options::new(seed);
    options.faults_for = Duration::from_secs(10);
    sim::run(&options)
}

fn passes(seed: u64) -> Report {
    let report = run(seed);
    assert!(
        report.passed(),
        "seed {seed} failed: {:?}\nreplay: cargo run --release -p ledger-jepsen --bin jepsen -- sim --seed {seed} --trace sim-{seed}.log",
        report.findings
    );
    assert!(
        report.acknowledged > 100,
        "seed {seed}: {} acknowledged",
        report.acknowledged
    );
    report
}

#[test]
fn seed_2_passes() {
    passes(2);
}

#[test]
fn seed_3_passes() {
    passes(3);
}

#[test]
fn seed_1_passes_and_replays_byte_for_byte() {
    let (first, again) = (passes(1), run(1));
    if let Some(at) = first
        .trace
        .lines()
        .zip(again.trace.lines())
        .position(|(a, b)| a != b)
    {
        panic!(
            "seed 1 replayed differently from line {at}:\n{:?}\n{:?}",
            first.trace.lines().nth(at),
            again.trace.lines().nth(at)
        );
    }
    assert_eq!(first.trace, again.trace);
    assert!(first.faults > 0, "no fault struck");
}

/// Runs seeds from 1 with `bite` put back until one fails; the seed that
/// did, if any within `seeds`.
#[cfg(feature = "chaos-bite")]
fn caught_within(bite: ledger_reservations::bite::Bite, seeds: u64) -> Option<(u64, Report)> {
    (1..=seeds).find_map(|seed| {
        let mut options = Options::new(seed);
        options.faults_for = Duration::from_secs(10);
        options.bite = Some(bite);
        let report = sim::run(&options);
        (!report.passed()).then_some((seed, report))
    })
}

/// Fails unless `bite` put back is caught within the first `seeds` seeds
/// by the checker `checker`.
#[cfg(feature = "chaos-bite")]
fn put_back_is_caught(bite: ledger_reservations::bite::Bite, checker: &str, seeds: u64) {
    let Some((seed, report)) = caught_within(bite, seeds) else {
        panic!("{} was not caught within {seeds} seeds", bite.name());
    };
    let names: Vec<&str> = report
        .findings
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        names.contains(&checker),
        "seed {seed}: {:?}",
        report.findings
    );
}

/// Audit finding 4 put back: after an entry of unknown fate the writer
/// decides again at once. An entry that cannot apply reaches the log and
/// its region stops: caught as a group stopped and a region that never
/// commits again. It needs a proposal of unknown fate at the right moment:
/// about one seed in ten catches it (README), the first at seed 9.
#[cfg(feature = "chaos-bite")]
#[test]
fn finding_4_put_back_is_caught() {
    put_back_is_caught(
        ledger_reservations::bite::Bite::UnsettledBarrier,
        "applies",
        10,
    );
}

/// Audit finding 2 put back as it was: a pull saga per copy of a transfer
/// sent twice in one call, and a writer that checks transfers only.
#[cfg(feature = "chaos-bite")]
#[test]
fn finding_2_put_back_is_caught() {
    put_back_is_caught(ledger_reservations::bite::Bite::PullPerCopy, "applies", 5);
}

/// Audit finding 5 put back: a submission counting on a dropped one is
/// admitted unchecked (the probers' race of a transfer and a void of one
/// id, and a spend the void funds).
#[cfg(feature = "chaos-bite")]
#[test]
fn finding_5_put_back_is_caught() {
    put_back_is_caught(
        ledger_reservations::bite::Bite::AdmitDependent,
        "applies",
        5,
    );
}

/// Audit finding 9 put back: entries bounded in events only, an append of
/// any size, one fixed deadline. A call of transfers with full metadata
/// fills an entry that takes longer than the deadline to cross the slow
/// link between regions; it is sent again for ever and the other regions
/// never apply it: caught as views that never converge.
#[cfg(feature = "chaos-bite")]
#[test]
fn finding_9_put_back_is_caught() {
    put_back_is_caught(
        ledger_reservations::bite::Bite::BytesUnbounded,
        "converged",
        5,
    );
}
