//! The whole-cluster simulation: a fixed set of seeds, and a replay.

use ledger_jepsen::sim::{self, Options};
use std::time::Duration;

fn short(seed: u64) -> Options {
    let mut options = Options::new(seed);
    options.faults_for = Duration::from_secs(10);
    options
}

#[test]
fn one_seed() {
    let seed: u64 = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let started = std::time::Instant::now();
    let report = sim::run(&short(seed));
    eprintln!(
        "seed {seed}: simulated {:?} in {:?}, {} calls, {} acknowledged, {} faults, {:?}",
        report.simulated,
        started.elapsed(),
        report.calls,
        report.acknowledged,
        report.faults,
        report.network
    );
    assert!(report.passed(), "{:?}", report.findings);
    let again = sim::run(&short(seed));
    if again.trace != report.trace {
        let first = report
            .trace
            .lines()
            .zip(again.trace.lines())
            .position(|(a, b)| a != b);
        let at = first.unwrap_or(0);
        panic!(
            "seed {seed} replayed differently from line {at}:\n{:?}\n{:?}",
            report.trace.lines().nth(at),
            again.trace.lines().nth(at)
        );
    }
}
