//! Faults injected on purpose, for chaos tests of real processes: a node
//! told to block a peer neither sends it RPCs nor answers its RPCs, and a
//! node told to stall its disk takes that much longer over every append to
//! its logs, holding its database's write lock as a slow fsync would. Nothing is injected unless a test (or an operator rehearsing a
//! failure) says so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the blocked-peers file is read.
const RELOAD_EVERY: Duration = Duration::from_millis(100);

/// The peers this node is cut off from, and how long its disk stalls.
/// Clones share them.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    blocked: Arc<RwLock<BTreeSet<u64>>>,
    append_delay_ms: Arc<AtomicU64>,
    clock_offset_ms: Arc<AtomicI64>,
}

impl Faults {
    /// How long every append to a log waits before it is written.
    pub fn append_delay(&self) -> Duration {
        Duration::from_millis(self.append_delay_ms.load(Ordering::Relaxed))
    }

    pub fn set_append_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.append_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// The file a node reads its disk stall from: milliseconds; a missing
    /// file stalls nothing.
    pub fn append_delay_file(data_dir: &Path) -> PathBuf {
        data_dir.join("append-delay-ms")
    }

    /// How far this node's clock is set off the machine's, in ms (a clock
    /// that runs fast or slow, or was stepped).
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms.load(Ordering::Relaxed)
    }

    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.clock_offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    /// The file a node reads its clock offset from: signed milliseconds; a
    /// missing file sets none.
    pub fn clock_offset_file(data_dir: &Path) -> PathBuf {
        data_dir.join("clock-offset-ms")
    }

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

    /// Keeps the faults equal to what the files in `data_dir` say
    /// ([`Self::file`], [`Self::append_delay_file`]), until the task is
    /// dropped. A file that does not parse is reported and changes nothing.
    pub async fn follow(self, data_dir: PathBuf) {
        let (peers_file, delay_file) = (Self::file(&data_dir), Self::append_delay_file(&data_dir));
        let mut every = tokio::time::interval(RELOAD_EVERY);
        loop {
            every.tick().await;
            if let Some(text) = read(&peers_file).await {
                match text
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<BTreeSet<u64>, _>>()
                {
                    Ok(peers) => self.set(peers),
                    Err(error) => {
                        tracing::warn!(file = %peers_file.display(), %error, "blocked peers do not parse")
                    }
                }
            }
            if let Some(text) = read(&Self::clock_offset_file(&data_dir)).await {
                let text = text.trim();
                match if text.is_empty() {
                    Ok(0)
                } else {
                    text.parse::<i64>()
                } {
                    Ok(ms) => self.set_clock_offset_ms(ms),
                    Err(error) => {
                        tracing::warn!(%error, "clock offset does not parse")
                    }
                }
            }
            if let Some(text) = read(&delay_file).await {
                let text = text.trim();
                match if text.is_empty() {
                    Ok(0)
                } else {
                    text.parse::<u64>()
                } {
                    Ok(ms) => self.set_append_delay(Duration::from_millis(ms)),
                    Err(error) => {
                        tracing::warn!(file = %delay_file.display(), %error, "append delay does not parse")
                    }
                }
            }
        }
    }
}

/// A fault file's text; empty when it is missing, `None` when it cannot be
/// read.
async fn read(file: &Path) -> Option<String> {
    match tokio::fs::read_to_string(file).await {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some(String::new()),
        Err(error) => {
            tracing::warn!(file = %file.display(), %error, "cannot read a fault file");
            None
        }
    }
}
