//! Applying a durable batch to the derived state, atomically across a crash, as the
//! state's engine allows: sled through the undo record ([`super::undo`]), fjall as one
//! write batch of its own (its keys in [`keys::apply_rank`] order, then `JOURNAL_END`),
//! which after a crash holds all of it or none. A reader may see a batch half inserted
//! (point reads see each key as it lands); the order makes whatever it reaches through
//! an index or a record already there.

use super::keys;
use super::kv;
use super::state::{encode, InFlight};
use super::undo;

/// Applies a durable batch: its keys, then `JOURNAL_END`.
pub(crate) fn apply(tree: &kv::Tree, batch: &InFlight) -> kv::Result<()> {
    match tree {
        kv::Tree::Sled(tree) => Ok(undo::apply(tree, batch)?),
        kv::Tree::Fjall(tree) => {
            let end = encode(&batch.end());
            let mut writes = batch.writes_in_order();
            writes.push((keys::JOURNAL_END, &end));
            tree.apply(&writes)
        }
    }
}

#[cfg(test)]
mod torn {
    use std::path::{Path, PathBuf};

    use crate::store::undo::tests::{digest, ledger, receipt};
    use crate::store::{keys, kv, Engine, Store, StoreOptions};

    /// The engine's newest journal file and where its written bytes end (its files
    /// are preallocated: zeros follow).
    fn newest_engine_journal(dir: &Path) -> (PathBuf, usize) {
        let journals = dir.join(Engine::Fjall.dir_name()).join("journals");
        let newest = std::fs::read_dir(&journals)
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let n: u64 = p.file_name()?.to_str()?.parse().ok()?;
                Some((n, p))
            })
            .max()
            .unwrap_or_else(|| panic!("no journal file in {}", journals.display()))
            .1;
        let bytes = std::fs::read(&newest).unwrap_or_else(|e| panic!("{e}"));
        let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
        (newest, end)
    }

    /// A power loss that leaves fjall's last write batch torn (its end cut off,
    /// wherever): fjall comes back without that batch, `JOURNAL_END` with it, and the
    /// replay restores it from the service's journal, so the state equals a rebuild.
    /// What the undo record does for sled, fjall's batches do by themselves; this
    /// checks it.
    #[tokio::test]
    async fn a_torn_last_fjall_batch_is_dropped_whole_and_replayed() {
        let fjall = StoreOptions {
            engine: Some(Engine::Fjall),
            ..Default::default()
        };
        for cut in [1usize, 9, 300, 4000] {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            // A fjall state first: the fixture then opens the directory's own.
            let store = Store::open_with(dir.path(), fjall).unwrap_or_else(|e| panic!("{e}"));
            store.close().await;
            ledger(dir.path()).await;
            {
                let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
                let handle = store.handle();
                assert_eq!(handle.reads.engine(), Engine::Fjall);
                let many: Vec<_> = (0..40).map(|i| receipt(1 + i % 2, 5000 + i)).collect();
                assert!(handle.write_many(many).await.is_ok());
                drop(handle);
                store.close().await;
            }
            let journal_len = std::fs::metadata(dir.path().join("journal.log"))
                .unwrap_or_else(|e| panic!("{e}"))
                .len();
            let (file, end) = newest_engine_journal(dir.path());
            assert!(end > cut, "{end} bytes written to {}", file.display());
            let mut bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
            bytes[end - cut..end].fill(0);
            std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{e}"));
            {
                let tree = kv::Tree::open_fjall(&dir.path().join(Engine::Fjall.dir_name()), None)
                    .unwrap_or_else(|e| panic!("{e}"));
                let reached: u64 = match tree.get(keys::JOURNAL_END) {
                    Ok(Some(v)) => postcard::from_bytes(&v).unwrap_or_else(|e| panic!("{e}")),
                    other => panic!("{other:?}"),
                };
                assert!(
                    reached < journal_len,
                    "cutting {cut} bytes dropped the last batch: the state reaches {reached} of {journal_len}"
                );
            }
            let reopened = digest(dir.path(), false).await;
            let rebuilt = digest(dir.path(), true).await;
            assert_eq!(reopened, rebuilt, "cut {cut} bytes");
        }
    }
}
