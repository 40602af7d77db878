//! The short scenario set CI runs: real `ledger` processes in network
//! namespaces (as root), about 20 s of faults each, and every checker.
//! `jepsen-style-tests/README.md` lists the full set and the soak.

use std::path::PathBuf;
use std::process::Command;

/// The `ledger` binary beside this test's own (`target/<profile>/ledger`),
/// which the workspace's test run builds.
fn ledger() -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    let ledger = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("ledger"))
        .expect("target/<profile>/");
    assert!(
        ledger.exists(),
        "{} is missing: cargo build -p ledger-node --bin ledger",
        ledger.display()
    );
    ledger
}

/// Runs `scenario` with `seed` and answers what it printed; fails unless
/// it passed and left its evidence.
fn passes(scenario: &str, seed: u64) -> String {
    let out = tempfile::tempdir().expect("dir");
    let results = out.path().join("results");
    let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["run", "--scenario", scenario, "--seed", &seed.to_string()])
        .args(["--time", "20s", "--out"])
        .arg(&results)
        .arg("--ledger")
        .arg(ledger())
        .output()
        .expect("jepsen runs");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && printed.contains("verdict: passed"),
        "{scenario} seed {seed}:\n{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in [
        "history.jsonl",
        "checks.txt",
        "faults.jsonl",
        "reproduce.txt",
        "nodes/node-1.log",
    ] {
        assert!(results.join(file).exists(), "{file} missing");
    }
    let faults = std::fs::read_to_string(results.join("faults.jsonl")).expect("faults");
    assert!(faults.lines().count() >= 2, "{faults}");
    let again = std::fs::read_to_string(results.join("reproduce.txt")).expect("command");
    assert!(again.starts_with(&format!("jepsen run --scenario {scenario} --seed {seed}")));
    printed
}

#[test]
fn a_region_cut_off_keeps_spending_and_nothing_is_lost() {
    passes("cut-region", 1);
}

#[test]
fn a_killed_leader_loses_nothing_acknowledged() {
    passes("kill-leader", 2);
}

#[test]
fn a_paused_leader_loses_nothing_acknowledged() {
    passes("pause", 3);
}

#[test]
fn a_clock_that_jumps_breaks_no_invariant() {
    passes("clock-jump", 4);
}
