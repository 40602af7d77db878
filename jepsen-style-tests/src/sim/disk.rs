//! A simulated disk: what a node's database writes is kept in memory, as
//! written (what reads see) and as synced (what survives a crash). A crash
//! keeps what was synced; each write since the last sync then survives
//! whole, is lost, or is torn (a prefix of it reached the platter), as
//! the seed decides: a real disk promises nothing of unsynced writes, nor
//! their order.

use crate::rng::Rng;
use redb::StorageBackend;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a crash does to the writes not yet synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// They all reached the disk (the OS wrote its cache back in time).
    None,
    /// Each survives, is lost or is torn, as the seed decides.
    Unsynced,
}

#[derive(Debug, Default)]
struct Platter {
    /// What reads see: every write applied.
    written: Vec<u8>,
    /// What a crash keeps for sure: the writes up to the last sync.
    synced: Vec<u8>,
    /// Writes since the last sync, in order: an offset and its bytes, or a
    /// new length.
    pending: Vec<Pending>,
    /// The incarnation whose database may use the disk: a crash ends one,
    /// so a database of a crashed node that is still referenced (by a
    /// call in flight) can no longer touch it.
    incarnation: u64,
    /// Syncs made, for the trace.
    syncs: u64,
    /// The power is cut at the write this many writes from now: that one
    /// is half done and every later one fails, until the crash.
    cut_in: Option<u64>,
    cut: bool,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    Len(u64),
}

/// One node's disk. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    platter: Arc<Mutex<Platter>>,
}

fn set_len(bytes: &mut Vec<u8>, len: u64) -> io::Result<()> {
    let len = usize::try_from(len).map_err(|_| io::Error::other("length past memory"))?;
    bytes.resize(len, 0);
    Ok(())
}

fn write_at(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) -> io::Result<()> {
    let start = usize::try_from(offset).map_err(|_| io::Error::other("offset past memory"))?;
    let end = start
        .checked_add(data.len())
        .ok_or_else(|| io::Error::other("write past memory"))?;
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
    Ok(())
}

impl Disk {
    fn platter(&self) -> MutexGuard<'_, Platter> {
        self.platter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The backend of the node's next incarnation (its database's disk).
    pub fn attach(&self) -> Arc<dyn StorageBackend> {
        Arc::new(self.incarnation())
    }

    /// The disk as the current incarnation's database sees it.
    fn incarnation(&self) -> Attached {
        let incarnation = self.platter().incarnation;
        Attached {
            disk: self.clone(),
            incarnation,
        }
    }

    /// The node crashed: its database can no longer touch the disk, and
    /// the writes it had not synced are dealt with as `loss` says. Returns
    /// what happened to them: (kept, lost, torn).
    pub fn crash(&self, loss: Loss, rng: &mut Rng) -> (usize, usize, usize) {
        let mut platter = self.platter();
        platter.incarnation += 1;
        platter.cut_in = None;
        platter.cut = false;
        let pending = std::mem::take(&mut platter.pending);
        let mut disk = platter.synced.clone();
        let (mut kept, mut lost, mut torn) = (0, 0, 0);
        for write in pending {
            // A failure to apply is memory running out: the write is lost.
            let _ = match (&write, loss, rng.below(4)) {
                (Pending::Len(len), _, _) => set_len(&mut disk, *len),
                (Pending::Write { offset, bytes }, Loss::None, _)
                | (Pending::Write { offset, bytes }, Loss::Unsynced, 0 | 1) => {
                    kept += 1;
                    write_at(&mut disk, *offset, bytes)
                }
                (Pending::Write { .. }, Loss::Unsynced, 2) => {
                    lost += 1;
                    Ok(())
                }
                (Pending::Write { offset, bytes }, Loss::Unsynced, _) => {
                    torn += 1;
                    let cut = rng.below(bytes.len() as u64) as usize;
                    write_at(&mut disk, *offset, &bytes[..cut])
                }
            };
        }
        platter.written = disk.clone();
        platter.synced = disk;
        (kept, lost, torn)
    }

    /// Cuts the power in the middle of the write `writes` writes from now
    /// (a commit caught half way): from then on every write fails, and
    /// [`Self::is_cut`] says the node is to crash.
    pub fn cut_power_after(&self, writes: u64) {
        self.platter().cut_in = Some(writes);
    }

    pub fn is_cut(&self) -> bool {
        self.platter().cut
    }

    /// Bytes on the disk, as written.
    pub fn len(&self) -> u64 {
        self.platter().written.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn syncs(&self) -> u64 {
        self.platter().syncs
    }
}

/// The disk as one incarnation's database sees it.
#[derive(Debug)]
struct Attached {
    disk: Disk,
    incarnation: u64,
}

impl Attached {
    fn platter(&self) -> io::Result<MutexGuard<'_, Platter>> {
        let platter = self.disk.platter();
        if platter.incarnation != self.incarnation || platter.cut {
            return Err(io::Error::other("the node crashed: its disk is gone"));
        }
        Ok(platter)
    }

    /// Counts a write or a sync towards a power cut; false when the power
    /// goes at this one.
    fn powered(platter: &mut Platter) -> bool {
        match platter.cut_in {
            Some(0) => {
                platter.cut = true;
                false
            }
            Some(left) => {
                platter.cut_in = Some(left - 1);
                true
            }
            None => true,
        }
    }
}

impl StorageBackend for Attached {
    fn len(&self) -> io::Result<u64> {
        Ok(self.platter()?.written.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let platter = self.platter()?;
        let start = usize::try_from(offset).map_err(|_| io::Error::other("offset past memory"))?;
        let bytes = start
            .checked_add(out.len())
            .and_then(|end| platter.written.get(start..end))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut platter = self.platter()?;
        set_len(&mut platter.written, len)?;
        platter.pending.push(Pending::Len(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut platter = self.platter()?;
        if !Self::powered(&mut platter) {
            return Err(io::Error::other("the power went during a sync"));
        }
        for write in std::mem::take(&mut platter.pending) {
            match write {
                Pending::Len(len) => set_len(&mut platter.synced, len)?,
                Pending::Write { offset, bytes } => write_at(&mut platter.synced, offset, &bytes)?,
            }
        }
        platter.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut platter = self.platter()?;
        let powered = Self::powered(&mut platter);
        write_at(&mut platter.written, offset, data)?;
        platter.pending.push(Pending::Write {
            offset,
            bytes: data.to_vec(),
        });
        if !powered {
            // Begun, perhaps not finished: the crash decides how much.
            return Err(io::Error::other("the power went during a write"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, TableDefinition};

    const TABLE: TableDefinition<u64, u64> = TableDefinition::new("t");

    fn open(disk: &Disk) -> redb::Database {
        redb::Builder::new()
            .create_with_backend(disk.incarnation())
            .expect("the database opens")
    }

    fn put(db: &redb::Database, key: u64, durability: redb::Durability) {
        let mut txn = db.begin_write().expect("write");
        txn.set_durability(durability).expect("durability");
        txn.open_table(TABLE)
            .expect("table")
            .insert(key, key)
            .expect("insert");
        txn.commit().expect("commit");
    }

    fn keys(db: &redb::Database) -> Vec<u64> {
        let txn = db.begin_read().expect("read");
        let Ok(table) = txn.open_table(TABLE) else {
            return Vec::new();
        };
        use redb::ReadableTable;
        table
            .iter()
            .expect("iter")
            .map(|row| row.expect("row").0.value())
            .collect()
    }

    #[test]
    fn a_crash_keeps_every_synced_commit_whatever_it_does_to_the_rest() {
        for seed in 0..40 {
            let disk = Disk::default();
            let db = open(&disk);
            put(&db, 1, redb::Durability::Immediate);
            put(&db, 2, redb::Durability::Immediate);
            put(&db, 3, redb::Durability::None);
            let (_, lost, torn) = disk.crash(Loss::Unsynced, &mut Rng::new(seed));
            // The crashed incarnation's database can no longer write.
            let mut txn = db.begin_write().expect("write");
            txn.set_durability(redb::Durability::Immediate)
                .expect("durability");
            txn.open_table(TABLE).expect("table").insert(9, 9).ok();
            assert!(txn.commit().is_err(), "seed {seed}: a crashed node wrote");
            drop(db);
            let reopened = open(&disk);
            let found = keys(&reopened);
            assert!(
                found.starts_with(&[1, 2]),
                "seed {seed}: synced commits lost ({lost} lost, {torn} torn): {found:?}"
            );
            assert!(!found.contains(&9), "seed {seed}: {found:?}");
        }
    }

    #[test]
    fn unsynced_writes_survive_only_as_the_crash_says() {
        let written = |loss: Loss, seed: u64| {
            let disk = Disk::default();
            let backend = disk.attach();
            backend.write(0, &[1; 8]).expect("write");
            backend.sync_data().expect("sync");
            backend.write(8, &[2; 8]).expect("write");
            disk.crash(loss, &mut Rng::new(seed));
            let after = disk.attach();
            let mut out = vec![0; after.len().expect("len") as usize];
            after.read(0, &mut out).expect("read");
            assert!(
                backend.write(0, &[3]).is_err(),
                "a crashed incarnation wrote"
            );
            out
        };
        let whole: Vec<u8> = [[1; 8], [2; 8]].concat();
        assert_eq!(written(Loss::None, 1), whole);
        let outcomes: std::collections::BTreeSet<Vec<u8>> =
            (0..32).map(|seed| written(Loss::Unsynced, seed)).collect();
        assert!(outcomes.iter().all(|out| out.starts_with(&[1; 8])));
        assert!(outcomes.contains(&whole), "never kept");
        assert!(outcomes.contains(&vec![1; 8]), "never lost");
        assert!(
            outcomes.iter().any(|out| out.len() > 8 && out.len() < 16),
            "never torn"
        );
    }

    #[test]
    fn a_power_cut_mid_commit_keeps_every_commit_that_returned() {
        for after in 0..60 {
            let disk = Disk::default();
            let db = open(&disk);
            put(&db, 1, redb::Durability::Immediate);
            disk.cut_power_after(after);
            let mut committed = vec![1];
            for key in 2..20 {
                let mut txn = db.begin_write().expect("write");
                txn.set_durability(redb::Durability::Immediate)
                    .expect("durability");
                let inserted = txn
                    .open_table(TABLE)
                    .and_then(|mut table| table.insert(key, key).map(|_| ()).map_err(Into::into));
                if inserted.is_ok() && txn.commit().is_ok() {
                    committed.push(key);
                } else {
                    break;
                }
            }
            assert!(disk.is_cut(), "after {after}: the power never went");
            disk.crash(Loss::Unsynced, &mut Rng::new(after));
            drop(db);
            let found = keys(&open(&disk));
            assert!(
                found.starts_with(&committed),
                "after {after} writes: committed {committed:?}, found {found:?}"
            );
        }
    }
}
