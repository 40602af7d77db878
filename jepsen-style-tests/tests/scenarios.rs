//! The short scenario set CI runs: real `ledger` processes in network
//! namespaces (as root), about 20 s of faults each, and every checker.
//! `jepsen-style-tests/README.md` lists the full set and the soak.

mod common;

/// Runs `scenario` with `seed`; fails unless it passed and left its
/// evidence.
fn passes(scenario: &str, seed: u64) {
    let run = common::run(scenario, seed, &["--time", "20s"]);
    assert!(
        run.code == Some(0) && run.printed.contains("verdict: passed"),
        "{scenario} seed {seed}:\n{}",
        run.printed
    );
    for file in ["history.jsonl", "checks.txt", "reproduce.txt"] {
        assert!(!run.file(file).is_empty(), "{file} is empty");
    }
    assert!(run.results.join("nodes/node-1.log").exists());
    assert!(run.file("faults.jsonl").lines().count() >= 2);
    assert!(
        run.file("reproduce.txt")
            .starts_with(&format!("jepsen run --scenario {scenario} --seed {seed}"))
    );
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

#[test]
fn latency_between_regions_breaks_no_invariant() {
    passes("latency", 5);
}

/// Seed 2 once found a region whose leaders were all killed come back with
/// its old leader resumed in its old term, decide a grant twice, and stop
/// on an entry no node could apply.
#[test]
fn a_killed_region_comes_back_and_every_entry_applies() {
    passes("kill-region", 2);
}
