//! Runs `jepsen run` as a chaos tester would, against the `ledger` binary
//! the workspace's test run builds.

use std::path::PathBuf;
use std::process::Command;

/// The `ledger` binary beside this test's own (`target/<profile>/ledger`).
/// The workspace's test run (`--all-features`) builds it with the
/// `chaos-bite` feature, which the bite tests need.
pub fn ledger() -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    let ledger = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("ledger"))
        .expect("target/<profile>/");
    assert!(
        ledger.exists(),
        "{} is missing: cargo build -p ledger-node --bin ledger --all-features",
        ledger.display()
    );
    ledger
}

/// What one run left.
pub struct Run {
    pub code: Option<i32>,
    pub printed: String,
    pub results: PathBuf,
    _dir: tempfile::TempDir,
}

impl Run {
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.results.join(name))
            .unwrap_or_else(|error| panic!("{name}: {error}\n{}", self.printed))
    }
}

/// `jepsen run --scenario <scenario> --seed <seed> <args>` into a fresh
/// results folder.
pub fn run(scenario: &str, seed: u64, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("dir");
    let results = dir.path().join("results");
    let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["run", "--scenario", scenario, "--seed", &seed.to_string()])
        .args(args)
        .arg("--out")
        .arg(&results)
        .arg("--ledger")
        .arg(ledger())
        .output()
        .expect("jepsen runs");
    Run {
        code: output.status.code(),
        printed: format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        results,
        _dir: dir,
    }
}
