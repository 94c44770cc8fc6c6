//! Applying a durable batch to sled key by key, so that a crash in the middle can be
//! undone at the next start.
//!
//! sled's own atomic `apply_batch` takes a lock that stops every reader of the tree,
//! the writer deciding the next batch included, until the whole batch is in: the two
//! stages of the writer then run one after the other instead of side by side, and a
//! backlog went half as fast (BENCHMARKS.md). So the committer inserts the keys one by
//! one, and keeps atomicity across a crash itself:
//!
//! 1. the undo record: what every key of the batch held before it (or that it did not
//!    exist), in parts of about [`UNDO_CHUNK_BYTES`], then its header naming the
//!    journal offset the batch brings the state to;
//! 2. the batch's keys, in [`keys::apply_rank`] order;
//! 3. `JOURNAL_END`, the batch's journal offset, last.
//!
//! sled recovers a prefix of its log (it cuts its log at the first tear, like the
//! journal). If a crash leaves any of a batch's keys, the whole undo record, written
//! before them, is there too, and `JOURNAL_END` is still the previous batch's. At
//! start, [`undo_unfinished`] sees the header ahead of `JOURNAL_END`, puts every key
//! back as it was, and the replay then applies the batch again from the journal (where
//! it is durable: sled is written only after the batch's fdatasync). Without this, the
//! replay would add a half-applied batch's receipts to balances that already hold them.

use serde::{Deserialize, Serialize};

use super::keys;
use super::state::{decode, encode, InFlight};

/// The size an undo part is cut at: well below what sled stores outside its log (a
/// node of 16 such parts stays an ordinary page).
pub const UNDO_CHUNK_BYTES: usize = 4096;

/// The undo record's header: the batch it belongs to and how many parts it has.
#[derive(Debug, Serialize, Deserialize)]
struct UndoHeader {
    /// The journal offset the state reaches once the batch is applied.
    end: u64,
    parts: u32,
}

/// Applies a durable batch: its undo record, its keys, then `JOURNAL_END`.
pub(crate) fn apply(tree: &sled::Tree, batch: &InFlight) -> sled::Result<()> {
    let writes = batch.writes_in_order();
    let parts = write_undo(tree, batch, &writes)?;
    for (key, value) in writes {
        tree.insert(key, value)?;
    }
    tree.insert(keys::JOURNAL_END, encode(&batch.end()))?;
    // Parts of an earlier, larger undo record (a replay chunk's) are never read again.
    let stale = keys::undo_chunk(parts)..=keys::undo_chunk(u32::MAX);
    for item in tree.range(stale) {
        tree.remove(item?.0)?;
    }
    Ok(())
}

/// Writes the undo record of `batch`, whose writes in order are `writes`. Returns how
/// many parts it has.
fn write_undo(tree: &sled::Tree, batch: &InFlight, writes: &[(&[u8], &[u8])]) -> sled::Result<u32> {
    let mut priors = Vec::with_capacity(writes.len());
    for (key, _) in writes {
        // A receipt's facts line is its own, its request record and bank reference are
        // new: nothing to read for them. Two of the three sled reads a receipt's undo
        // record took, and the tests check that they would have found nothing.
        let new = keys::written_once(key)
            || keys::written_only_by(key).is_some_and(|sequence| batch.holds(sequence));
        if new {
            debug_assert!(
                matches!(tree.get(key), Ok(None)),
                "a key written once is already in the state: {key:?}"
            );
            priors.push(None);
        } else {
            priors.push(tree.get(key)?);
        }
    }
    let mut parts = 0u32;
    let mut part: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
    let mut bytes = 0;
    for ((key, _), prior) in writes.iter().zip(&priors) {
        let prior = prior.as_deref();
        bytes += key.len() + prior.map_or(0, <[u8]>::len);
        part.push((key, prior));
        if bytes >= UNDO_CHUNK_BYTES {
            tree.insert(keys::undo_chunk(parts), encode(&part))?;
            parts += 1;
            part.clear();
            bytes = 0;
        }
    }
    if !part.is_empty() {
        tree.insert(keys::undo_chunk(parts), encode(&part))?;
        parts += 1;
    }
    let end = batch.end();
    tree.insert(keys::UNDO, encode(&UndoHeader { end, parts }))?;
    Ok(parts)
}

fn damaged(what: String) -> String {
    format!("{what}; run `case-escrow rebuild` to rebuild the state from the journal")
}

/// The undo record's header and how far the state reaches, if the header names a
/// batch past it: one whose apply a crash cut short. Reads only.
fn pending(tree: &sled::Tree) -> Result<Option<(UndoHeader, u64)>, String> {
    let Some(header) = tree.get(keys::UNDO).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let header: UndoHeader =
        decode(&header).map_err(|e| damaged(format!("the state's undo record: {e}")))?;
    let reached: u64 = match tree.get(keys::JOURNAL_END).map_err(|e| e.to_string())? {
        Some(bytes) => decode(&bytes).map_err(|e| damaged(format!("JOURNAL_END: {e}")))?,
        None => 0,
    };
    Ok((header.end > reached).then_some((header, reached)))
}

/// The journal offset a batch whose apply a crash cut short would have brought the
/// state to, if there is one. Changes nothing.
pub(crate) fn unfinished_end(tree: &sled::Tree) -> Result<Option<u64>, String> {
    Ok(pending(tree)?.map(|(header, _)| header.end))
}

/// Puts back every key of a batch whose apply a crash interrupted, and makes that
/// durable before anything else is written. Returns the journal offset that batch
/// would have reached, if there was one.
pub(crate) fn undo_unfinished(tree: &sled::Tree) -> Result<Option<u64>, String> {
    let Some((header, reached)) = pending(tree)? else {
        return Ok(None);
    };
    for index in 0..header.parts {
        let part = tree
            .get(keys::undo_chunk(index))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                damaged(format!(
                    "part {index} of the state's undo record is missing"
                ))
            })?;
        let part: Vec<(Vec<u8>, Option<Vec<u8>>)> = decode(&part)
            .map_err(|e| damaged(format!("part {index} of the state's undo record: {e}")))?;
        for (key, prior) in part {
            match prior {
                Some(value) => tree.insert(key, value),
                None => tree.remove(key),
            }
            .map_err(|e| e.to_string())?;
        }
    }
    // Done: a later start must not undo again once the replay has moved past.
    tree.insert(
        keys::UNDO,
        encode(&UndoHeader {
            end: reached,
            parts: 0,
        }),
    )
    .map_err(|e| e.to_string())?;
    tree.flush().map_err(|e| e.to_string())?;
    Ok(Some(header.end))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;
    use crate::domain::{
        Amount, BankDetails, BankRef, CaseNumber, CourtCode, Date, Fen, Micros, Party, RequestId,
        Text,
    };
    use crate::ledger::{self, CaseKey, Command, Context, Request};
    use crate::store::journal;
    use crate::store::state::{Overlay, SledState};
    use crate::store::{release_sled, Store, Written, CLOSE_WAIT};

    fn text(s: &str) -> Text {
        Text::optional(s, 1000).unwrap_or_else(|e| panic!("{e}"))
    }

    fn request(id: &str, command: Command) -> Request {
        Request {
            id: RequestId::parse(id).unwrap_or_else(|e| panic!("{e}")),
            command,
            principal: None,
        }
    }

    pub(crate) fn case_number(n: u32) -> CaseNumber {
        CaseNumber::parse(&format!("（2024）云0102执{n}号")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn open_special() -> Request {
        request(
            "special",
            Command::OpenSpecialAccount {
                court: CourtCode::parse("云0102").unwrap_or_else(|e| panic!("{e}")),
                bank: BankDetails {
                    bank_name: text("中国工商银行"),
                    bank_branch: text("昆明五华支行"),
                    account_number: text("2502010009200012345"),
                    account_name: text("五华区人民法院执行款专户"),
                },
                document_ref: text("云高法〔2018〕35号"),
            },
        )
    }

    pub(crate) fn open_case(special_id: Uuid, n: u32) -> Request {
        let party = |name: &str| Party {
            name: text(name),
            payee_account: text(""),
            payee_bank: text(""),
        };
        request(
            &format!("case-{n}"),
            Command::OpenCaseAccount {
                special_id,
                case_number: case_number(n),
                target: Fen(10_000_000),
                applicants: vec![party("张三")],
                respondents: vec![party("某某贸易有限公司")],
            },
        )
    }

    pub(crate) fn receipt(n: u32, i: u32) -> Request {
        request(
            &format!("receipt-{i}"),
            Command::RecordReceipt(crate::ledger::Receipt {
                case: CaseKey::Number(case_number(n)),
                amount: Amount::parse("1234.50").unwrap_or_else(|e| panic!("{e}")),
                payer_name: text("某某贸易有限公司"),
                payer_account: text("6217000000000000001"),
                bank_ref: BankRef::parse(&format!("ICBC{i:012}")).unwrap_or_else(|e| panic!("{e}")),
                value_date: Date::parse("2024-03-01").unwrap_or_else(|e| panic!("{e}")),
            }),
        )
    }

    /// A ledger of one special account, two cases and a few receipts, written the usual
    /// way. Returns the special account.
    pub(crate) async fn ledger(dir: &Path) -> Uuid {
        let store = Store::open(dir).unwrap_or_else(|e| panic!("{e}"));
        let handle = store.handle();
        let written = handle.write(open_special()).await;
        let special_id = match written {
            Ok(Written { fresh: Some(f), .. }) => f.entry.special_id(),
            other => panic!("{other:?}"),
        };
        for n in 1..=2 {
            assert!(handle.write(open_case(special_id, n)).await.is_ok());
        }
        // Entries 4-59: the crash's batch below then crosses a block of entry
        // locations and fills a group of special lines in its middle.
        for i in 0..56 {
            assert!(handle.write(receipt(1 + i % 2, i)).await.is_ok());
        }
        drop(handle);
        store.close().await;
        special_id
    }

    /// One more batch as the writer makes it (decided over the state, framed, appended
    /// and synced), of which sled gets the undo record and then only the first `keep`
    /// keys: what a crash during the apply leaves.
    fn crash_during_apply(dir: &Path, special_id: Uuid, keep: usize) -> usize {
        let db = sled::open(dir.join("state")).unwrap_or_else(|e| panic!("{e}"));
        let tree = db.open_tree("ledger").unwrap_or_else(|e| panic!("{e}"));
        let (mut journal, reader) =
            journal::open(&dir.join("journal.log")).unwrap_or_else(|e| panic!("{e}"));
        let state = SledState {
            tree: crate::store::kv::Tree::Sled(tree.clone()),
            journal: Arc::new(reader),
        };
        let last = state.last_sequence().unwrap_or_else(|e| panic!("{e}"));
        let head = match state.entry_location(last) {
            Ok(Some(location)) => location.chain,
            other => panic!("{other:?}"),
        };
        let mut overlay = Overlay::new(&state, journal.end(), head);
        // Both cases move, many times, and a third case is opened: records change,
        // lines and indexes are new, the entry block and the line group in use are
        // filled and new ones begun, and the undo record takes several parts.
        let mut requests: Vec<Request> = (100..130).map(|i| receipt(1 + i % 2, i)).collect();
        requests.push(open_case(special_id, 3));
        for (i, r) in requests.iter().enumerate() {
            let ctx = Context {
                now: Micros(1_710_000_000_000_000 + i as i64),
                new_id: Uuid::now_v7(),
                tiers: Default::default(),
            };
            assert!(ledger::execute(&mut overlay, r, &ctx).is_ok());
        }
        let (frames, batch) = overlay.into_batch().unwrap_or_else(|e| panic!("{e}"));
        journal.append(&frames).unwrap_or_else(|e| panic!("{e}"));
        journal.sync().unwrap_or_else(|e| panic!("{e}"));
        let writes = batch.writes_in_order();
        write_undo(&tree, &batch, &writes).unwrap_or_else(|e| panic!("{e}"));
        for (key, value) in writes.iter().take(keep) {
            tree.insert(key, *value).unwrap_or_else(|e| panic!("{e}"));
        }
        db.flush().unwrap_or_else(|e| panic!("{e}"));
        let total = writes.len();
        drop(writes);
        drop((batch, tree, state));
        release_sled(db, &dir.join("state"), CLOSE_WAIT).unwrap_or_else(|e| panic!("{e}"));
        total
    }

    /// The content digest of `dir`'s state, opened as it is or rebuilt.
    pub(crate) async fn digest(dir: &Path, rebuild: bool) -> journal::Hash {
        let store = if rebuild {
            Store::rebuild(dir)
        } else {
            Store::open(dir)
        }
        .unwrap_or_else(|e| panic!("{e}"));
        let digest = store.handle().reads.content_digest();
        store.close().await;
        digest.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Wherever a crash cuts a batch's apply, the next start leaves exactly the state
    /// that the journal alone rebuilds: the batch counted once, nothing of it missing.
    #[tokio::test]
    async fn a_batch_cut_short_by_a_crash_is_undone_and_applied_again() {
        // After every number of keys, from none to all (without JOURNAL_END).
        let mut keep = 0;
        let mut total = usize::MAX;
        while keep <= total {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let special_id = ledger(dir.path()).await;
            total = crash_during_apply(dir.path(), special_id, keep);
            if keep == 0 {
                let parts = keys::undo_chunk(0)..=keys::undo_chunk(u32::MAX);
                let db = sled::open(dir.path().join("state")).unwrap_or_else(|e| panic!("{e}"));
                let tree = db.open_tree("ledger").unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    tree.range(parts).count() > 1,
                    "the undo record has several parts"
                );
                drop(tree);
                release_sled(db, &dir.path().join("state"), CLOSE_WAIT)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let reopened = digest(dir.path(), false).await;
            let rebuilt = digest(dir.path(), true).await;
            assert_eq!(
                reopened, rebuilt,
                "{keep} of {total} keys applied before the crash: the state differs from the journal's"
            );
            keep += 1;
        }
    }

    /// A ledger whose last batch a crash cut short in its apply, after 5 of its keys;
    /// and the journal's length before that batch.
    async fn crashed_during_apply() -> (tempfile::TempDir, u64) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let special_id = ledger(dir.path()).await;
        let path = dir.path().join("journal.log");
        let before = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .len();
        crash_during_apply(dir.path(), special_id, 5);
        (dir, before)
    }

    /// The batch a crash cut short was synced: its bytes read back damaged (a disk that
    /// lost synced writes but kept the file's length) are refused, not cut off as the
    /// torn tail of a batch nobody was told of.
    #[tokio::test]
    async fn a_damaged_batch_being_applied_is_refused_not_cut() {
        let (dir, before) = crashed_during_apply().await;
        let path = dir.path().join("journal.log");
        let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        let after = bytes.len();
        bytes[before as usize..].fill(0);
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        for start in 0..2 {
            match Store::open(dir.path()) {
                Ok(_) => panic!("start {start} cut off a batch that was synced"),
                Err(e) => {
                    let message = e.to_string();
                    assert!(message.contains("lost synced writes"), "{message}");
                }
            }
            let len = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(len.len() as usize, after, "the journal is left as it was");
        }
    }

    /// A journal that lost the batch a crash cut short (synced, so maybe acknowledged)
    /// is refused at every start, not served as if those entries never were.
    #[tokio::test]
    async fn a_journal_without_the_batch_being_applied_is_refused() {
        let (dir, before) = crashed_during_apply().await;
        let path = dir.path().join("journal.log");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        file.set_len(before).unwrap_or_else(|e| panic!("{e}"));
        drop(file);
        // Every start refuses, not only the first: nothing is changed by refusing.
        for start in 0..2 {
            match Store::open(dir.path()) {
                Ok(_) => panic!("start {start} opened a state past the end of its journal"),
                Err(e) => {
                    let message = e.to_string();
                    assert!(message.contains("missing from the journal"), "{message}");
                }
            }
        }
    }
}

#[cfg(test)]
mod locations {
    use super::tests::{ledger, receipt};
    use crate::store::Store;

    /// Entry locations are kept 64 to a key, filled across batches: every entry's is
    /// found, alone or in a range crossing blocks, live and after a rebuild (whose
    /// batches are cut elsewhere).
    #[tokio::test]
    async fn every_entry_is_located_across_blocks_and_batches() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        ledger(dir.path()).await;
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let handle = store.handle();
        // One at a time, then many at once: batches of one and of dozens.
        for i in 0..70 {
            assert!(handle.write(receipt(1, 1000 + i)).await.is_ok());
        }
        let many: Vec<_> = (0..150).map(|i| receipt(2, 2000 + i)).collect();
        assert!(handle.write_many(many).await.is_ok());
        drop(handle);
        store.close().await;
        for rebuild in [false, true] {
            let store = if rebuild {
                Store::rebuild(dir.path())
            } else {
                Store::open(dir.path())
            }
            .unwrap_or_else(|e| panic!("{e}"));
            let reads = store.handle().reads;
            let last = reads.last_sequence().unwrap_or_else(|e| panic!("{e}"));
            assert!(last > 3 * 64, "{last} entries");
            let mut each = Vec::new();
            for sequence in 1..=last {
                let (frame, _) = match reads.journal_entry(sequence) {
                    Ok(Some(found)) => found,
                    other => panic!("entry {sequence}: {other:?}"),
                };
                assert_eq!(frame.entry.sequence, sequence);
                let location = reads
                    .entry_location(sequence)
                    .unwrap_or_else(|e| panic!("{e}"));
                each.push((sequence, location.unwrap_or_else(|| panic!("{sequence}"))));
            }
            assert_eq!(reads.entry_location(last + 1).ok(), Some(None));
            assert_eq!(reads.entry_location(0).ok(), Some(None));
            for (from, to) in [
                (1, last),
                (0, 64),
                (64, 65),
                (63, 130),
                (129, last + 5),
                (5, 4),
            ] {
                let range: Vec<_> = (reads.entry_locations(from, to))
                    .unwrap_or_else(|e| panic!("{e}"))
                    .into_iter()
                    .map(|(s, l)| (s, l.offset, l.entry_hash))
                    .collect();
                let expected: Vec<_> = (each.iter())
                    .filter(|(s, _)| (from..=to).contains(s))
                    .map(|(s, l)| (*s, l.offset, l.entry_hash))
                    .collect();
                assert_eq!(range, expected, "entries {from}..={to}");
            }
            drop(reads);
            store.close().await;
        }
    }
}
