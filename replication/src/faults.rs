//! Partitions injected on purpose, for chaos tests of real processes: a
//! node told to block a peer neither sends it RPCs nor answers its RPCs.
//! Nothing blocks unless a test (or an operator rehearsing a failure) says so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the blocked-peers file is read.
const RELOAD_EVERY: Duration = Duration::from_millis(100);

/// The peers this node is cut off from. Clones share the set.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    blocked: Arc<RwLock<BTreeSet<u64>>>,
}

impl Faults {
    pub fn is_blocked(&self, peer: u64) -> bool {
        self.blocked
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&peer)
    }

    pub fn set(&self, peers: BTreeSet<u64>) {
        *self
            .blocked
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = peers;
    }

    /// The file a node reads its blocked peers from: node ids separated by
    /// white space; a missing file blocks nobody.
    pub fn file(data_dir: &Path) -> PathBuf {
        data_dir.join("blocked-peers")
    }

    /// Keeps the set equal to what `file` says, until the task is dropped.
    /// A file that does not parse is reported and leaves the set alone.
    pub async fn follow(self, file: PathBuf) {
        let mut every = tokio::time::interval(RELOAD_EVERY);
        loop {
            every.tick().await;
            let text = match tokio::fs::read_to_string(&file).await {
                Ok(text) => text,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "cannot read blocked peers");
                    continue;
                }
            };
            match text
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<BTreeSet<u64>, _>>()
            {
                Ok(peers) => self.set(peers),
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "blocked peers do not parse")
                }
            }
        }
    }
}
