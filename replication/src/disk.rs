//! Where a node keeps its database, and how its disk work runs: on a
//! thread for blocking I/O over a real disk, or on the calling task over a
//! simulated one (a simulation's disk is memory, and a thread would take
//! its work out of the simulation's order).

use redb::StorageBackend;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a node keeps its database.
#[derive(Debug, Clone)]
pub enum Storage {
    /// `node.redb` in this directory, created if missing.
    Dir(PathBuf),
    /// A disk a simulation provides; its I/O runs inline.
    Simulated(Arc<dyn StorageBackend>),
}

impl Storage {
    pub(crate) fn open(&self) -> Result<redb::Database, String> {
        let opened = match self {
            Storage::Dir(dir) => {
                std::fs::create_dir_all(dir).map_err(|error| error.to_string())?;
                redb::Database::create(dir.join("node.redb"))
            }
            Storage::Simulated(disk) => {
                redb::Builder::new().create_with_backend(Shared(disk.clone()))
            }
        };
        opened.map_err(|error| error.to_string())
    }

    pub(crate) fn blocking(&self) -> Blocking {
        match self {
            Storage::Dir(_) => Blocking::Thread,
            Storage::Simulated(_) => Blocking::Inline,
        }
    }
}

/// A simulated disk that the simulation keeps a handle on, as redb's backend.
#[derive(Debug)]
struct Shared(Arc<dyn StorageBackend>);

impl StorageBackend for Shared {
    fn len(&self) -> Result<u64, io::Error> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.0.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.0.close()
    }
}

/// How disk work runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Blocking {
    /// On a thread for blocking I/O: a slow disk (redb's write lock, an
    /// fsync) then holds that thread, never one of the runtime's workers,
    /// so other groups' heartbeats and the API keep going.
    #[default]
    Thread,
    /// On the calling task.
    Inline,
}

impl Blocking {
    /// Runs `work`, `what` naming it in the error of a thread that failed.
    pub(crate) async fn run<T: Send + 'static>(
        self,
        what: &'static str,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        match self {
            Blocking::Thread => tokio::task::spawn_blocking(work)
                .await
                .map_err(|error| io::Error::other(format!("{what} task failed: {error}")))?,
            Blocking::Inline => work(),
        }
    }

    /// A disk stall a test injects: on a thread it is slept inside the
    /// work, holding the database's write lock as a slow fsync would (the
    /// stall to sleep there is returned); inline it is waited out first.
    pub(crate) async fn stall(self, stall: Duration) -> Duration {
        match self {
            Blocking::Thread => stall,
            Blocking::Inline => {
                tokio::time::sleep(stall).await;
                Duration::ZERO
            }
        }
    }
}
