//! The derived state's key-value engine, behind the few operations the store uses:
//! sled (the default) or fjall (an LSM), chosen when the directory's state is made.
//!
//! Both hold the same keys and values. They differ in how a batch is made atomic
//! across a crash (sled: the undo record of `undo.rs`; fjall: its own write batches,
//! `commit.rs`) and in what they cost: on the service's own write pattern fjall applies
//! a receipt's keys about 11× cheaper, holds a third of the memory, a fifth of the disk,
//! and opens in a fraction of a second however much was written since the last open,
//! where sled reads all the log written since it last opened (BENCHMARKS.md).
//!
//! Nothing here is fsynced on the write path: the journal is the durable record, and
//! the state is rebuilt from it wherever it lags.

use std::fmt;
use std::ops::{Deref, RangeBounds};
use std::path::Path;
use std::sync::Arc;

/// Which engine keeps the derived state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// sled 0.34.7: the default.
    #[default]
    Sled,
    /// fjall 2 (an LSM): faster, smaller, and quick to open after a long run.
    Fjall,
}

impl Engine {
    pub const ALL: [Engine; 2] = [Engine::Sled, Engine::Fjall];

    /// The directory, inside the data directory, that holds this engine's state. Each
    /// engine has its own, so that a state is never opened by the other.
    pub fn dir_name(self) -> &'static str {
        match self {
            Engine::Sled => "state",
            Engine::Fjall => "state-fjall",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Sled => "sled",
            Engine::Fjall => "fjall",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// sled's page cache.
pub const SLED_CACHE_BYTES: u64 = 256 << 20;
/// How often sled writes its own state back in the background. Explicit, not sled's
/// default: this only bounds how much journal a restart replays, never durability.
pub const SLED_FLUSH_EVERY_MS: u64 = 1000;

/// fjall's block cache: the hot part of the state (cases, indexes) stays in memory.
pub const FJALL_CACHE_BYTES: u64 = 256 << 20;
/// A memtable is written out as a table when it reaches this. A quarter of fjall's
/// default: each flush (and the compaction after it) then takes the CPU for a quarter
/// as long, and on two cores shared with the writer and the server that burst is the
/// p99 at 5,000 receipts/s (8.6-9.3 ms against 10.4-21.9 with 16 MiB; BENCHMARKS.md),
/// for about a tenth less throughput in a backlog.
const FJALL_MEMTABLE_BYTES: u32 = 4 << 20;
/// Level 0 is merged when it holds this many tables, cut at [`FJALL_TABLE_BYTES`]:
/// fjall's own defaults, named so that a state made otherwise is noticed at open and
/// an upgrade of fjall cannot change them unseen. They cost CPU: with 4 MiB memtables
/// level 0 reaches 4 tables at about 12 MiB on disk, below one table's size, so fjall
/// merges level 0 into itself several times before it reaches level 1. Merging at 12
/// tables of 16 MiB avoided that and made unary receipts 10-19% faster, but lsm-tree
/// 2.10.4 picks no merge into a level that holds more than 50 tables' worth, nor any
/// merge above it (`compaction/leveled.rs`, `pick_minimal_compaction`): with 16 MiB
/// tables level 2 passed that within 10 M entries, and level 1 then grew without
/// bound (BENCHMARKS.md, seventh session). With these the bound is 3.2 GiB.
const FJALL_L0_TABLES: u8 = 4;
/// See [`FJALL_L0_TABLES`].
const FJALL_TABLE_BYTES: u32 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Fjall(#[from] fjall::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A key or a value as the engine hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bytes {
    Sled(sled::IVec),
    Fjall(fjall::Slice),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Sled(b) => b,
            Bytes::Fjall(b) => b,
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// An open state: clones share it.
#[derive(Clone)]
pub enum Tree {
    Sled(sled::Tree),
    Fjall(FjallTree),
}

#[derive(Clone)]
pub struct FjallTree {
    keyspace: fjall::Keyspace,
    part: fjall::PartitionHandle,
    /// The data directory's lock, held until the last handle on the engine is gone
    /// (declared last: dropped after the keyspace, whose drop waits for its flushes
    /// and compactions). fjall does not lock its directory, and a second keyspace on
    /// the same files while the first one's workers still run would corrupt them.
    _lock: Option<Arc<std::fs::File>>,
}

/// An iterator over keys and values, in key order.
pub type Iter = Box<dyn DoubleEndedIterator<Item = Result<(Bytes, Bytes)>>>;

impl Tree {
    /// Opens a sled database; [`Tree::sled`] then opens the state in it. Apart, so
    /// that whoever opens can wait for sled to let go of its files however the rest
    /// of opening ends.
    ///
    /// Only whoever holds the data directory's `LOCK` opens it: unfinished snapshots
    /// are removed first ([`remove_unfinished_sled_snapshots`]).
    pub fn open_sled_db(path: &Path) -> Result<sled::Db> {
        remove_unfinished_sled_snapshots(path).map_err(sled::Error::Io)?;
        Ok(sled::Config::new()
            .path(path)
            .flush_every_ms(Some(SLED_FLUSH_EVERY_MS))
            .cache_capacity(SLED_CACHE_BYTES)
            .open()?)
    }

    /// The state in a sled database.
    pub fn sled(db: &sled::Db) -> Result<Tree> {
        Ok(Tree::Sled(db.open_tree("ledger")?))
    }

    /// Opens a fjall state under `path`; `lock`, the data directory's, is held as long
    /// as any clone of the tree lives.
    pub fn open_fjall(path: &Path, lock: Option<Arc<std::fs::File>>) -> Result<Tree> {
        let keyspace = fjall::Config::new(path)
            .cache_size(FJALL_CACHE_BYTES)
            .fsync_ms(None)
            .open()?;
        let compaction = fjall::compaction::Leveled {
            l0_threshold: FJALL_L0_TABLES,
            target_size: FJALL_TABLE_BYTES,
            ..Default::default()
        };
        let options = fjall::PartitionCreateOptions::default()
            .max_memtable_size(FJALL_MEMTABLE_BYTES)
            .compaction_strategy(fjall::compaction::Strategy::Leveled(compaction));
        let part = keyspace.open_partition("ledger", options)?;
        let tree = FjallTree {
            keyspace,
            part,
            _lock: lock,
        };
        // fjall records these settings when it makes the partition and uses the
        // recorded ones at every later open: a state made with others keeps them, and
        // what they cost, silently (one made by 28f5151 grows level 1 without bound).
        if !tree.has_current_compaction() {
            let data_dir = path.parent().unwrap_or(path);
            tracing::warn!(
                "the fjall state {} keeps the compaction settings it was made with, not this build's; `case-escrow rebuild --data-dir {} --state-engine fjall` remakes it with this build's (BENCHMARKS.md, seventh session)",
                path.display(),
                data_dir.display()
            );
        }
        Ok(Tree::Fjall(tree))
    }

    pub fn engine(&self) -> Engine {
        match self {
            Tree::Sled(_) => Engine::Sled,
            Tree::Fjall(_) => Engine::Fjall,
        }
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(match self {
            Tree::Sled(t) => t.get(key)?.map(Bytes::Sled),
            Tree::Fjall(t) => t.part.get(key)?.map(Bytes::Fjall),
        })
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        match self {
            Tree::Sled(t) => {
                t.insert(key.as_ref(), value.as_ref())?;
            }
            Tree::Fjall(t) => t.part.insert(key.as_ref(), value.as_ref())?,
        }
        Ok(())
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(match self {
            Tree::Sled(t) => t.is_empty(),
            Tree::Fjall(t) => t.part.is_empty()?,
        })
    }

    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        match self {
            Tree::Sled(t) => Box::new(t.range(range).map(sled_item)),
            Tree::Fjall(t) => Box::new(t.part.range(range).map(fjall_item)),
        }
    }

    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        match self {
            Tree::Sled(t) => Box::new(t.scan_prefix(prefix).map(sled_item)),
            Tree::Fjall(t) => Box::new(t.part.prefix(prefix).map(fjall_item)),
        }
    }

    pub fn iter(&self) -> Iter {
        match self {
            Tree::Sled(t) => Box::new(t.iter().map(sled_item)),
            Tree::Fjall(t) => Box::new(t.part.iter().map(fjall_item)),
        }
    }

    /// Makes everything applied so far durable (at shutdown, after a replay).
    pub fn flush(&self) -> Result<()> {
        match self {
            Tree::Sled(t) => {
                t.flush()?;
            }
            Tree::Fjall(t) => t.keyspace.persist(fjall::PersistMode::SyncAll)?,
        }
        Ok(())
    }
}

impl FjallTree {
    /// Whether the partition compacts as this build would make it ([`FJALL_L0_TABLES`],
    /// [`FJALL_TABLE_BYTES`]).
    fn has_current_compaction(&self) -> bool {
        matches!(
            &self.part.config.compaction_strategy,
            fjall::compaction::Strategy::Leveled(l)
                if l.l0_threshold == FJALL_L0_TABLES && l.target_size == FJALL_TABLE_BYTES
        )
    }

    /// Writes `writes` as one batch, in their order: after a crash the state holds all
    /// of them or none. Written to the OS, not fsynced.
    pub fn apply(&self, writes: &[(&[u8], &[u8])]) -> Result<()> {
        let mut batch = (self.keyspace.batch()).durability(Some(fjall::PersistMode::Buffer));
        for (key, value) in writes {
            batch.insert(&self.part, *key, *value);
        }
        Ok(batch.commit()?)
    }
}

/// Removes the snapshots sled began and did not finish (`snap.<lsn>.generating`).
///
/// sled 0.34.7 writes a snapshot to such a file, syncs it and renames it; but when it
/// opens, it takes the newest `snap.*` file, unfinished ones included, and refuses to
/// open on one cut short (spacejam/sled#1527). Killing the process while sled writes
/// one (which a stop does: `Store::close`) would so keep the state from opening. An
/// unfinished snapshot is never needed: the one before it is removed only after the
/// rename, and the log it was made from is left as it was.
fn remove_unfinished_sled_snapshots(path: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %entry.path().display(), "removing a snapshot sled did not finish writing");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn sled_item(item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<(Bytes, Bytes)> {
    let (k, v) = item?;
    Ok((Bytes::Sled(k), Bytes::Sled(v)))
}

fn fjall_item(item: fjall::Result<(fjall::Slice, fjall::Slice)>) -> Result<(Bytes, Bytes)> {
    let (k, v) = item?;
    Ok((Bytes::Fjall(k), Bytes::Fjall(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fjall(tree: &Tree) -> &FjallTree {
        match tree {
            Tree::Fjall(t) => t,
            Tree::Sled(_) => panic!("a sled tree"),
        }
    }

    #[test]
    fn a_fjall_state_keeps_the_compaction_it_was_made_with() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let made_now = dir.path().join("now");
        let tree = Tree::open_fjall(&made_now, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(fjall(&tree).has_current_compaction());
        drop(tree);
        let reopened = Tree::open_fjall(&made_now, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(fjall(&reopened).has_current_compaction());

        // A state made with other settings, as 28f5151 made them.
        let made_otherwise = dir.path().join("otherwise");
        {
            let keyspace = fjall::Config::new(&made_otherwise)
                .open()
                .unwrap_or_else(|e| panic!("{e}"));
            let compaction = fjall::compaction::Leveled {
                l0_threshold: 12,
                target_size: 16 << 20,
                ..Default::default()
            };
            let options = fjall::PartitionCreateOptions::default()
                .compaction_strategy(fjall::compaction::Strategy::Leveled(compaction));
            keyspace
                .open_partition("ledger", options)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let other = Tree::open_fjall(&made_otherwise, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(!fjall(&other).has_current_compaction());

        // Before 28f5151 a state was made with fjall's defaults, which are these.
        let made_before = dir.path().join("before");
        {
            let keyspace = fjall::Config::new(&made_before)
                .open()
                .unwrap_or_else(|e| panic!("{e}"));
            keyspace
                .open_partition("ledger", fjall::PartitionCreateOptions::default())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let before = Tree::open_fjall(&made_before, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(fjall(&before).has_current_compaction());
    }
}
