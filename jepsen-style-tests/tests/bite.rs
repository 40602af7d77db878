//! Checkers that bite: each node runs a chaos bite that breaks one
//! invariant on purpose (`ledger-node`'s `chaos-bite` feature, which the
//! workspace's `--all-features` test run builds in), and the checker of
//! that invariant must fail the run.

mod common;

/// Runs `scenario` with every node bitten by `bite`; fails unless the run
/// failed (exit 1) with `checker` among the checkers that found something.
fn caught(scenario: &str, bite: &str, args: &[&str], checker: &str) {
    let mut all = vec!["--bite", bite];
    all.extend_from_slice(args);
    let run = common::run(scenario, 1, &all);
    assert_eq!(
        run.code,
        Some(1),
        "{bite} did not fail the run (a node without the chaos-bite feature refuses the setting):\n{}",
        run.printed
    );
    let checks = run.file("checks.txt");
    let failed: Vec<&str> = checks
        .lines()
        .filter(|line| line.split_whitespace().nth(1) == Some("FAIL"))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(failed.contains(&checker), "{bite}: {failed:?}\n{checks}");
    // Every node gave its final view: the finding is the bite's, not a
    // node lost to it.
    assert!(!checks.contains("gave no final view"), "{checks}");
}

#[test]
fn a_pool_check_skipped_is_caught_by_not_negative() {
    caught(
        "calm",
        "skip-pool-check",
        &["--time", "8s", "--funds", "5.00"],
        "not-negative",
    );
}

#[test]
fn a_release_granted_twice_is_caught_by_totals() {
    caught(
        "calm",
        "grant-twice",
        &["--time", "8s", "--funds", "5.00"],
        "totals",
    );
}

#[test]
fn a_retry_decided_in_a_second_region_is_caught_by_one_decision() {
    caught(
        "calm",
        "decide-retry-elsewhere",
        &["--time", "8s"],
        "one-decision",
    );
}

#[test]
fn an_answer_before_commit_is_caught_by_acknowledged_kept() {
    caught(
        "leader-isolated",
        "answer-before-commit",
        &["--time", "12s"],
        "acknowledged-kept",
    );
}
