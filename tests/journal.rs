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
    let opened = case_escrow::store::Store::open(dir.path());
    let Err(err) = opened else {
        panic!("a store whose journal lost acknowledged entries must not start");
    };
    let message = err.to_string();
    assert!(message.contains("journal"), "{message}");
}
