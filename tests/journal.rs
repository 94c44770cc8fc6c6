//! The journal on disk: a torn tail (a batch that never finished) is cut off at start,
//! its bytes kept aside; a state that does not match the journal stops start-up.

mod common;

use std::fs::OpenOptions;
use std::io::Write;

use common::*;

const CASE: &str = "（2024）云0102执400号";

async fn ledger_with_entries(dir: &std::path::Path) -> u64 {
    let server = TestServer::start(dir).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE).await;
    let mut last = 0;
    for i in 0..5 {
        last = cases
            .record_receipt(receipt_request(CASE, "10.00", &format!("T{i}")))
            .await
            .expect("receipt")
            .into_inner()
            .sequence;
    }
    drop((specials, cases));
    server.stop().await;
    last
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_kept_aside() {
    // Each case: bytes a crash could leave after the last whole frame.
    let tails: [(&str, Vec<u8>); 3] = [
        ("half a header", vec![0x20, 0x00]),
        (
            "a header promising more than exists",
            vec![0xff, 0x00, 0x00, 0x00, 1, 2, 3, 4, 1, 9],
        ),
        ("a whole frame with a bad checksum", {
            let mut f = vec![3, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
            f.extend_from_slice(&[1, 2, 3]);
            f
        }),
    ];
    for (what, tail) in tails {
        let dir = tempfile::tempdir().expect("tempdir");
        let last = ledger_with_entries(dir.path()).await;
        let journal = dir.path().join("journal.log");
        let len = std::fs::metadata(&journal).expect("journal exists").len();
        OpenOptions::new()
            .append(true)
            .open(&journal)
            .and_then(|mut f| f.write_all(&tail))
            .expect("append garbage");

        let server = TestServer::start(dir.path()).await;
        let mut cases = server.cases().await;
        assert_eq!(balances(&mut cases, CASE).await.received, "50.00", "{what}");
        let next = cases
            .record_receipt(receipt_request(CASE, "1.00", "AFTER"))
            .await
            .expect("writes go on")
            .into_inner();
        assert_eq!(next.sequence, last + 1, "{what}: no gap, no duplicate");
        drop(cases);
        server.stop().await;
        let kept = dir.path().join(format!("journal.log.torn-{len}"));
        assert_eq!(std::fs::read(&kept).expect("tail kept"), tail, "{what}");
        let entries = case_escrow::store::journal::read_all(&journal).expect("journal whole");
        assert_eq!(entries.len() as u64, last + 1, "{what}");
    }
}

#[tokio::test]
async fn a_journal_shorter_than_the_state_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    ledger_with_entries(dir.path()).await;
    let journal = dir.path().join("journal.log");
    let len = std::fs::metadata(&journal).expect("journal").len();
    OpenOptions::new()
        .write(true)
        .open(&journal)
        .and_then(|f| f.set_len(len - 10))
        .expect("truncate");
    let _guard = SPAWN_OR_OPEN.lock().await;
    let opened = case_escrow::store::Store::open(dir.path());
    let Err(err) = opened else {
        panic!("a store whose journal lost acknowledged entries must not start");
    };
    let message = err.to_string();
    assert!(message.contains("journal"), "{message}");
}

#[tokio::test]
async fn a_journal_altered_where_the_state_meets_it_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    ledger_with_entries(dir.path()).await;
    let journal = dir.path().join("journal.log");
    let last = *frame_offsets(&journal).last().expect("frames");
    forge_entry_at(&journal, last as usize);
    let _guard = SPAWN_OR_OPEN.lock().await;
    let Err(err) = case_escrow::store::Store::open(dir.path()) else {
        panic!("a store whose journal was altered must not start");
    };
    let message = err.to_string();
    assert!(message.contains("altered or replaced"), "{message}");
}

/// Where each frame of a journal file starts.
fn frame_offsets(journal: &std::path::Path) -> Vec<u64> {
    let mut offsets = Vec::new();
    case_escrow::store::journal::visit(journal, |_, offset| {
        offsets.push(offset);
        Ok(())
    })
    .expect("a whole journal");
    offsets
}

/// Changes a byte of the entry whose frame starts at `at` and forges the frame's
/// checksum to match: only the hashes can tell.
fn forge_entry_at(journal: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(journal).expect("journal");
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
    bytes[at + 8 + 33 + 5] ^= 0x01;
    let crc = crc32fast::hash(&bytes[at + 8..at + 8 + len]);
    bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(journal, &bytes).expect("write");
}

/// What a crash while appending leaves: a header promising more than follows.
fn append_torn_batch(journal: &std::path::Path) {
    OpenOptions::new()
        .append(true)
        .open(journal)
        .and_then(|mut f| f.write_all(&[0xff, 0, 0, 0, 1, 2, 3, 4, 1, 9]))
        .expect("append a torn batch");
}

#[tokio::test]
async fn a_rebuild_refuses_a_journal_that_lost_what_the_state_holds() {
    // Each case: what happened to journal.log of a stopped ledger before the operator,
    // as the README suggests for a move to fjall, runs `rebuild`.
    type Damage = fn(&std::path::Path);
    let damages: [(&str, Damage, &str); 4] = [
        (
            "cut at a frame boundary, three entries short",
            |journal| {
                let offsets = frame_offsets(journal);
                let cut = offsets[offsets.len() - 3];
                OpenOptions::new()
                    .write(true)
                    .open(journal)
                    .and_then(|f| f.set_len(cut))
                    .expect("truncate");
            },
            "which has only",
        ),
        (
            "a byte flipped in the third entry from the end, near enough the end to pass for a torn batch",
            |journal| {
                let offsets = frame_offsets(journal);
                let mut bytes = std::fs::read(journal).expect("journal");
                bytes[offsets[offsets.len() - 3] as usize + 20] ^= 0x40;
                std::fs::write(journal, &bytes).expect("write");
            },
            "below byte",
        ),
        (
            "deleted",
            |journal| std::fs::remove_file(journal).expect("remove"),
            "no journal.log",
        ),
        (
            "an entry of its own made up where the state's last one was",
            |journal| {
                let last = *frame_offsets(journal).last().expect("frames");
                forge_entry_at(journal, last as usize);
            },
            "replaced or altered",
        ),
    ];
    for (what, damage, said) in damages {
        let dir = tempfile::tempdir().expect("tempdir");
        ledger_with_entries(dir.path()).await;
        let journal = dir.path().join("journal.log");
        damage(&journal);
        let before = std::fs::read(&journal).ok();
        let _guard = SPAWN_OR_OPEN.lock().await;
        let Err(err) = case_escrow::store::Store::rebuild(dir.path()) else {
            panic!("{what}: a rebuild must not drop acknowledged entries");
        };
        let message = err.to_string();
        assert!(message.contains(said), "{what}: {message}");
        assert!(message.contains("Nothing was changed"), "{what}: {message}");
        assert_eq!(
            std::fs::read(&journal).ok(),
            before,
            "{what}: journal untouched"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n == "state" || n == "state-fjall"),
            "{what}: {names:?}"
        );
        assert!(
            !names.iter().any(|n| n.contains("before-rebuild")),
            "{what}: the state stays where it is: {names:?}"
        );
        if what == "deleted" {
            let Err(err) = case_escrow::store::Store::open(dir.path()) else {
                panic!("a state whose journal is gone must not start on an empty one");
            };
            assert!(err.to_string().contains("not there"), "{err}");
            assert!(
                !journal.exists(),
                "no empty journal stands in for the lost one"
            );
        }
    }
}

/// A batch torn past what the state holds was never acknowledged: a rebuild cuts it as a
/// start would. So it does when the state is too damaged to open (what a rebuild is
/// for): there is no state to hold the journal to then.
#[tokio::test]
async fn a_rebuild_cuts_a_batch_torn_past_the_state_even_if_the_state_cannot_be_read() {
    for unreadable in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let last = ledger_with_entries(dir.path()).await;
        let journal = dir.path().join("journal.log");
        let len = std::fs::metadata(&journal).expect("journal").len();
        append_torn_batch(&journal);
        if unreadable {
            // Whichever engine the suite runs on (CASE_ESCROW_TEST_STATE_ENGINE).
            let state = ["state", "state-fjall"]
                .map(|name| dir.path().join(name))
                .into_iter()
                .find(|p| p.exists())
                .expect("a state");
            for file in std::fs::read_dir(state).expect("state") {
                let path = file.expect("entry").path();
                if path.is_file() {
                    std::fs::write(&path, b"not sled").expect("overwrite");
                }
            }
        }
        let _guard = SPAWN_OR_OPEN.lock().await;
        let store = case_escrow::store::Store::rebuild(dir.path()).expect("rebuilds");
        let rebuilt = store.handle().reads.last_sequence().expect("reads");
        store.close().await;
        assert_eq!(rebuilt, last, "unreadable: {unreadable}");
        let now = std::fs::metadata(&journal).expect("journal").len();
        assert_eq!(now, len, "unreadable: {unreadable}");
    }
}

#[tokio::test]
async fn a_state_of_another_format_is_refused_and_rebuilt_on_request() {
    use case_escrow::store::{release_sled, Engine, Store, StoreOptions, CLOSE_WAIT};
    let dir = tempfile::tempdir().expect("tempdir");
    // sled's state, whatever engine the suite runs on: the test edits it directly.
    let sled = StoreOptions {
        engine: Some(Engine::Sled),
        ..Default::default()
    };
    {
        let _guard = SPAWN_OR_OPEN.lock().await;
        Store::open_with(dir.path(), sled)
            .expect("opens")
            .close()
            .await;
    }
    ledger_with_entries(dir.path()).await;
    let _guard = SPAWN_OR_OPEN.lock().await;
    {
        let db = sled::open(dir.path().join("state")).expect("sled opens");
        let tree = db.open_tree("ledger").expect("tree");
        let stamp = tree
            .get(b"V")
            .expect("reads")
            .expect("a new state is stamped");
        assert_eq!(
            stamp.as_ref(),
            &case_escrow::store::keys::STATE_FORMAT.to_be_bytes()
        );
        tree.insert(b"V", &99u32.to_be_bytes()).expect("writes");
        db.flush().expect("flushes");
        drop(tree);
        // sled lets go of the directory a moment after its last handle goes.
        release_sled(db, &dir.path().join("state"), CLOSE_WAIT).expect("sled lets go");
    }
    let Err(err) = case_escrow::store::Store::open(dir.path()) else {
        panic!("a state of another format must not be read");
    };
    let message = err.to_string();
    assert!(message.contains("format 99"), "{message}");
    assert!(message.contains("case-escrow rebuild"), "{message}");
    // The previous build's format: its deferral records lack the approval fields.
    {
        let db = sled::open(dir.path().join("state")).expect("sled opens");
        let tree = db.open_tree("ledger").expect("tree");
        tree.insert(b"V", &2u32.to_be_bytes()).expect("writes");
        db.flush().expect("flushes");
        drop(tree);
        // sled lets go of the directory a moment after its last handle goes.
        release_sled(db, &dir.path().join("state"), CLOSE_WAIT).expect("sled lets go");
    }
    let Err(err) = case_escrow::store::Store::open(dir.path()) else {
        panic!("a state of the previous format must not be read");
    };
    assert!(err.to_string().contains("format 2"), "{err}");
    // A state from before stamps existed is format 1, not this build's.
    {
        let db = sled::open(dir.path().join("state")).expect("sled opens");
        let tree = db.open_tree("ledger").expect("tree");
        tree.remove(b"V").expect("removes");
        db.flush().expect("flushes");
        drop(tree);
        // sled lets go of the directory a moment after its last handle goes.
        release_sled(db, &dir.path().join("state"), CLOSE_WAIT).expect("sled lets go");
    }
    let Err(err) = case_escrow::store::Store::open(dir.path()) else {
        panic!("an unstamped state of an older build must not be read");
    };
    assert!(err.to_string().contains("format 1"), "{err}");
    let store = case_escrow::store::Store::rebuild(dir.path()).expect("rebuilds");
    store.close().await;
}

use case_escrow::api::pb::{self, journal_client::JournalClient};
use sha2::{Digest as _, Sha256};

/// Runs the case-escrow binary. Off the async thread: the server under test runs on
/// this runtime and must keep answering while the command waits for it.
async fn run_cli(args: Vec<std::ffi::OsString>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        run_child(std::process::Command::new(env!("CARGO_BIN_EXE_case-escrow")).args(args))
    })
    .await
    .expect("the command's thread")
}

fn link(previous: &[u8], entry_hash: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"case-escrow/chain/v1\0");
    h.update(previous);
    h.update(entry_hash);
    h.finalize().to_vec()
}

fn hash_of(canonical: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"case-escrow/entry/v1\0");
    h.update(canonical);
    h.finalize().to_vec()
}

/// A client that saved a digest checks a later-read entry against it, computing the
/// hashes itself as journal.proto documents.
#[tokio::test]
async fn an_entry_is_proven_against_a_digest_saved_earlier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last = ledger_with_entries(dir.path()).await;
    let server = TestServer::start(dir.path()).await;
    let mut journal = JournalClient::new(server.channel().await);
    let saved = journal
        .get_digest(pb::GetDigestRequest {})
        .await
        .expect("digest")
        .into_inner();
    assert_eq!(saved.sequence, last);
    // More entries after the digest was saved do not disturb the proof.
    let mut cases = server.cases().await;
    cases
        .record_receipt(receipt_request(CASE, "1.00", "LATER"))
        .await
        .expect("later receipt");

    for sequence in 1..=last {
        let proof = journal
            .get_entry(pb::GetEntryRequest {
                sequence,
                digest_sequence: saved.sequence,
            })
            .await
            .expect("proof")
            .into_inner();
        let entry = proof.entry.expect("entry");
        assert_eq!(entry.entry.as_ref().map(|e| e.sequence), Some(sequence));
        assert_eq!(
            hash_of(&entry.canonical_bytes),
            entry.entry_hash,
            "entry hash"
        );
        let mut h = link(&proof.previous_chain_hash, &entry.entry_hash);
        assert_eq!(h, entry.chain_hash);
        for next in &proof.following_entry_hashes {
            h = link(&h, next);
        }
        assert_eq!(
            h, saved.digest,
            "entry {sequence} proven against the saved digest"
        );
    }
    let bad = journal
        .get_entry(pb::GetEntryRequest {
            sequence: 3,
            digest_sequence: 2,
        })
        .await
        .expect_err("digest before the entry");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let verified = journal
        .verify_journal(pb::VerifyJournalRequest {
            from_sequence: 2,
            to_sequence: 0,
        })
        .await
        .expect("verify")
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.checked, last);
    drop((journal, cases));
    server.stop().await;
}

/// One changed byte in a copy of a data directory is caught and named, whether it
/// breaks the frame's checksum or is forged with a fixed-up checksum.
#[tokio::test]
async fn a_changed_byte_is_caught_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    ledger_with_entries(dir.path()).await;
    let journal = dir.path().join("journal.log");
    let bytes = std::fs::read(&journal).expect("journal");
    // The frame of entry 4: walk the frames by their length headers.
    let mut offset = 0usize;
    for _ in 1..4 {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"));
        offset += 8 + len as usize;
    }
    let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes")) as usize;
    let body = offset + 8 + 33; // header, format byte, chain hash

    for forged in [false, true] {
        let copy = tempfile::tempdir().expect("tempdir");
        let mut altered = bytes.clone();
        altered[body + 5] ^= 0x01;
        if forged {
            let crc = crc32fast::hash(&altered[offset + 8..offset + 8 + len]);
            altered[offset + 4..offset + 8].copy_from_slice(&crc.to_le_bytes());
        }
        std::fs::write(copy.path().join("journal.log"), &altered).expect("write copy");
        let out = run_cli(vec![
            "verify".into(),
            "--data-dir".into(),
            copy.path().into(),
        ])
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "forged={forged}: verify passed an altered journal"
        );
        assert!(stderr.contains("entry 4"), "forged={forged}: {stderr}");
        let expected = if forged { "chain hash" } else { "checksum" };
        assert!(stderr.contains(expected), "forged={forged}: {stderr}");
    }
    let out = run_cli(vec![
        "verify".into(),
        "--data-dir".into(),
        dir.path().into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The administrator, the harness's three principals, and the ledger's seven.
    assert!(String::from_utf8_lossy(&out.stdout).contains("11 entries"));
}

#[tokio::test]
async fn the_change_feed_has_no_gap_or_duplicate_across_reconnects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last = ledger_with_entries(dir.path()).await;
    let server = TestServer::start(dir.path()).await;
    let mut journal = JournalClient::new(server.channel().await);
    let mut cases = server.cases().await;

    // First connection: read the history and a little of the live feed, then drop.
    let mut feed = journal
        .watch_journal(pb::WatchJournalRequest { from_sequence: 1 })
        .await
        .expect("watch")
        .into_inner();
    let mut seen = Vec::new();
    while seen.len() < last as usize {
        let e = feed.message().await.expect("stream").expect("entry");
        seen.push(e.entry.expect("entry").sequence);
    }
    cases
        .record_receipt(receipt_request(CASE, "2.00", "LIVE-1"))
        .await
        .expect("live receipt");
    let live = feed.message().await.expect("stream").expect("live entry");
    seen.push(live.entry.expect("entry").sequence);
    drop(feed);

    // While nobody reads, writes go on (a stalled consumer never blocks writers).
    let stalled = journal
        .watch_journal(pb::WatchJournalRequest { from_sequence: 1 })
        .await
        .expect("watch")
        .into_inner();
    for i in 0..600 {
        cases
            .record_receipt(receipt_request(CASE, "1.00", &format!("BURST-{i}")))
            .await
            .expect("writes are not held up by a stalled feed");
    }
    drop(stalled);

    // Reconnect from the next sequence: the rest arrives in order, once.
    let next = *seen.last().expect("seen something") + 1;
    let mut feed = journal
        .watch_journal(pb::WatchJournalRequest {
            from_sequence: next,
        })
        .await
        .expect("watch again")
        .into_inner();
    let end = last + 1 + 600;
    while *seen.last().expect("seen") < end {
        let e = feed.message().await.expect("stream").expect("entry");
        seen.push(e.entry.expect("entry").sequence);
    }
    let expected: Vec<u64> = (1..=end).collect();
    assert_eq!(seen, expected);
    drop((feed, journal, cases));
    server.stop().await;
}

async fn all_balances(server: &TestServer) -> Vec<(String, pb::Balances, String)> {
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let list = specials
        .list_special_accounts(pb::ListSpecialAccountsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .special_accounts;
    let mut out = Vec::new();
    for s in list {
        out.push((
            s.special_account_id.clone(),
            pb::Balances::default(),
            s.bank_balance.clone(),
        ));
    }
    for n in [CASE] {
        let b = balances(&mut cases, n).await;
        out.push((n.to_owned(), b, String::new()));
    }
    out
}

#[tokio::test]
async fn backup_restore_round_trip_keeps_every_balance() {
    let dir = tempfile::tempdir().expect("tempdir");
    ledger_with_entries(dir.path()).await;
    let server = TestServer::start(dir.path()).await;
    let before = all_balances(&server).await;
    let file = dir.path().join("backup.cebk");
    let mut args: Vec<std::ffi::OsString> = vec![
        "backup".into(),
        "--to".into(),
        std::ffi::OsString::from(&file),
    ];
    args.extend(server.cli_args().into_iter().map(Into::into));
    let out = run_cli(args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Writes after the backup are not in it.
    server
        .cases()
        .await
        .record_receipt(receipt_request(CASE, "3.00", "AFTER-BACKUP"))
        .await
        .expect("receipt after backup");
    server.stop().await;

    let restored = tempfile::tempdir().expect("tempdir");
    let target = restored.path().join("data");
    let out = run_cli(vec![
        "restore".into(),
        "--from".into(),
        std::ffi::OsString::from(&file),
        "--data-dir".into(),
        std::ffi::OsString::from(&target),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_cli(vec![
        "verify".into(),
        "--data-dir".into(),
        std::ffi::OsString::from(&target),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    copy_credentials(dir.path(), &target);
    let server = TestServer::start(&target).await;
    assert_eq!(all_balances(&server).await, before);
    server.stop().await;

    // Restoring over existing data is refused.
    let out = run_cli(vec![
        "restore".into(),
        "--from".into(),
        std::ffi::OsString::from(&file),
        "--data-dir".into(),
        std::ffi::OsString::from(&target),
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

/// Offline, `verify` tells bytes that are no whole entry at the end (what a crash
/// leaves, or damage there: it cannot know which without the state) from entries that
/// read whole but do not follow on (damage, whatever the state).
#[tokio::test]
async fn offline_verify_tells_a_torn_end_from_a_broken_link() {
    type Change = fn(&std::path::Path);
    let cases: [(&str, Change, &str); 2] = [
        (
            "a torn batch after the last one applied",
            append_torn_batch,
            "from entry 12 on, its last 10 bytes are no whole entry",
        ),
        (
            "an entry near the end altered, its checksum forged",
            |journal| {
                let offsets = frame_offsets(journal);
                forge_entry_at(journal, offsets[offsets.len() - 3] as usize);
            },
            "BROKEN at entry 9",
        ),
    ];
    for (what, change, said) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        ledger_with_entries(dir.path()).await;
        change(&dir.path().join("journal.log"));
        let out = run_cli(vec![
            "verify".into(),
            "--data-dir".into(),
            dir.path().into(),
        ])
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: {stderr}");
        assert!(stderr.contains(said), "{what}: {stderr}");
    }
}

/// Files in `dir` whose name contains `part` (none if there is no `dir`).
fn named_like(dir: &std::path::Path, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect()
}

#[tokio::test]
async fn a_damaged_journal_is_not_backed_up_nor_a_damaged_backup_restored() {
    // An old entry damaged on the server's disk: a start reads only the last one, so
    // the server serves; the backup must not carry the damage as a good copy.
    let dir = tempfile::tempdir().expect("tempdir");
    ledger_with_entries(dir.path()).await;
    let journal = dir.path().join("journal.log");
    let pristine = std::fs::read(&journal).expect("journal");
    let offsets = frame_offsets(&journal);
    let mut damaged = pristine.clone();
    damaged[offsets[1] as usize + 20] ^= 0x40;
    std::fs::write(&journal, &damaged).expect("write");
    let server = TestServer::start(dir.path()).await;
    let backups = tempfile::tempdir().expect("tempdir");
    let file = backups.path().join("backup.cebk");
    let backup_args = |server: &TestServer| {
        let mut args: Vec<std::ffi::OsString> =
            vec!["backup".into(), "--to".into(), file.clone().into()];
        args.extend(server.cli_args().into_iter().map(Into::into));
        args
    };
    let out = run_cli(backup_args(&server)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a damaged backup was kept: {stderr}");
    assert!(stderr.contains("breaks at entry 2"), "{stderr}");
    assert!(!file.exists(), "no backup file");
    assert_eq!(named_like(backups.path(), "partial"), Vec::<String>::new());
    server.stop().await;

    // Mended, the same server's backup is kept; then one byte of the copy rots.
    std::fs::write(&journal, &pristine).expect("write");
    let server = TestServer::start(dir.path()).await;
    let out = run_cli(backup_args(&server)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file).expect("backup").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the whole ledger, for its owner alone");
    let good = std::fs::read(&file).expect("backup");
    let mut rotten = good.clone();
    let last = rotten.len() - 1;
    rotten[last] ^= 0x01;
    std::fs::write(&file, &rotten).expect("write");
    let target = backups.path().join("data");
    let restore = || {
        run_cli(vec![
            "restore".into(),
            "--from".into(),
            file.clone().into(),
            "--data-dir".into(),
            target.clone().into(),
        ])
    };
    let out = restore().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a damaged backup was restored");
    assert!(stderr.contains("breaks at entry"), "{stderr}");
    assert!(
        !target.exists(),
        "the backup is checked before the directory is made"
    );
    std::fs::write(&file, &good).expect("write");
    let out = restore().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(target.join("journal.log")).expect("journal"),
        pristine
    );

    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&target).expect("restored").permissions(),
    );
    assert_eq!(mode & 0o777, 0o700, "a data directory made by the service");

    // A restore killed before it finished leaves its file: no server starts there.
    let cut_short = backups.path().join("cut-short");
    std::fs::create_dir(&cut_short).expect("mkdir");
    std::fs::write(cut_short.join("journal.log.restoring"), &pristine[..10]).expect("write");
    let _guard = SPAWN_OR_OPEN.lock().await;
    let Err(err) = case_escrow::store::Store::open(&cut_short) else {
        panic!("a directory whose restore did not finish must not start");
    };
    assert!(err.to_string().contains("did not finish"), "{err}");
}

#[tokio::test]
async fn rebuild_from_the_journal_alone_equals_the_live_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    ledger_with_entries(dir.path()).await;
    let live = {
        let _guard = SPAWN_OR_OPEN.lock().await;
        let store = case_escrow::store::Store::open(dir.path()).expect("opens");
        let digest = store.handle().reads.content_digest().expect("digest");
        store.close().await;
        digest
    };
    let out = run_cli(vec![
        "rebuild".into(),
        "--data-dir".into(),
        dir.path().into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let guard = SPAWN_OR_OPEN.lock().await;
    let store = case_escrow::store::Store::open(dir.path()).expect("opens");
    drop(guard);
    let rebuilt = store.handle().reads.content_digest().expect("digest");
    store.close().await;
    assert_eq!(
        rebuilt, live,
        "every key and value of the rebuilt state equals the live one"
    );
    let aside = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("state") && name.contains(".before-rebuild-")
        });
    assert!(aside, "the old state is kept aside");
}

/// A backup reads the journal on a thread of the blocking pool for as long as its client
/// takes to read it; backups and verifications at once are bounded, so that clients
/// that stop reading cannot take the pool the server's stop needs.
#[tokio::test]
async fn backups_at_once_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE).await;
    // Megabytes of journal: more than a stream's buffers hold, so that a backup nobody
    // reads waits for its reader.
    for round in 0..3 {
        let receipts = (0..10_000)
            .map(|i| receipt_request(CASE, "1.00", &format!("BULK-{round}-{i}")))
            .collect();
        cases
            .record_receipts(pb::RecordReceiptsRequest {
                request_id: rid(),
                receipts,
            })
            .await
            .expect("a batch");
    }
    let mut unread = Vec::new();
    for _ in 0..case_escrow::api::JOURNAL_SCANS_MAX {
        let mut journal = JournalClient::new(server.channel_as(&server.admin_token).await);
        let mut stream = journal
            .backup(pb::BackupRequest {})
            .await
            .expect("a backup starts")
            .into_inner();
        stream
            .message()
            .await
            .expect("its header")
            .expect("a header");
        unread.push((journal, stream));
    }
    let mut journal = JournalClient::new(server.channel_as(&server.admin_token).await);
    let refused = journal
        .backup(pb::BackupRequest {})
        .await
        .expect_err("one backup too many");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    // One is read to its end: its place comes back.
    let (_, mut stream) = unread.pop().expect("a backup");
    while stream.message().await.expect("a chunk").is_some() {}
    let mut stream = journal
        .backup(pb::BackupRequest {})
        .await
        .expect("a place came back")
        .into_inner();
    while stream.message().await.expect("a chunk").is_some() {}
    drop((unread, specials, cases));
    server.stop().await;
}

/// A stop ends a live change feed at once with UNAVAILABLE, saying where to resume,
/// rather than holding the stop for its grace period and then dropping the connection.
#[tokio::test]
async fn a_stop_ends_the_change_feed_saying_where_to_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last = ledger_with_entries(dir.path()).await;
    let server = TestServer::start(dir.path()).await;
    let mut journal = JournalClient::new(server.channel().await);
    let mut feed = journal
        .watch_journal(pb::WatchJournalRequest { from_sequence: 1 })
        .await
        .expect("watch")
        .into_inner();
    for _ in 0..last {
        feed.message().await.expect("stream").expect("entry");
    }
    // Caught up, the feed waits for the next entry; the stop comes instead.
    let reader = tokio::spawn(async move { feed.message().await });
    drop(journal);
    server.stop().await;
    let ended = reader.await.expect("the reader");
    let status = ended.expect_err("a stop is no end of the journal");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("resume from sequence {}", last + 1)),
        "{status:?}"
    );
}
