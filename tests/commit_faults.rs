//! What the writer does when the disk fails it after a batch's frames are in the
//! journal: an `fdatasync` that reports an error, or a state engine that refuses the
//! batch after a successful sync. Every write after it is refused until a restart (a
//! failed fsync cannot be retried: the kernel may have dropped the pages it failed to
//! write), and after the restart a retry with the same request id learns the one
//! outcome.
//!
//! What the failing request itself is told depends on when its batch failed. Before
//! the sync returned, nothing of it is acknowledged. After it, a request answered from
//! what the writer had at hand (a new receipt) was already acknowledged, truthfully:
//! it is in the journal; reads are then refused, since the state lacks an
//! acknowledged entry, until a restart replays it. A request answered from the state
//! (opening a case account) is refused.
//!
//! No disk fails on demand, so the failures are injected (`store::Faults`) at the two
//! points where the real ones surface. The injected sync failure leaves the frames in
//! the file, as a failed fsync whose pages the kernel kept would: the restart replays
//! them, and the retry is answered with the entry they hold.

mod common;

use case_escrow::store::Faults;
use common::*;

const CASE: &str = "（2024）云0102执701号";

#[derive(Clone, Copy, Debug)]
enum Fault {
    Sync,
    Apply,
}

/// A server whose commits fail where the test says; a server holds its options for
/// its whole life, so the few bytes of the switch are leaked.
async fn failing_server(dir: &std::path::Path) -> (TestServer, &'static Faults) {
    let faults: &'static Faults = Box::leak(Box::default());
    let server = TestServer::start_with(dir, |c| c.store.faults = Some(faults)).await;
    (server, faults)
}

async fn a_receipt_whose_commit_fails(fault: Fault) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, faults) = failing_server(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE).await;
    let first = cases
        .record_receipt(receipt_request(CASE, "1.00", "FAULT-1"))
        .await
        .expect("written")
        .into_inner();

    // The receipt was answered once durable, maybe before its batch's apply: a read
    // waits for that apply, so the fault armed next is the next batch's.
    assert_eq!(balances(&mut cases, CASE).await.received, "1.00");
    match fault {
        Fault::Sync => faults.fail_next_sync(),
        Fault::Apply => faults.fail_next_apply(),
    }
    let failed = receipt_request(CASE, "10.00", "FAULT-2");
    let answer = cases.record_receipt(failed.clone()).await;
    match fault {
        Fault::Sync => {
            let status = answer.expect_err("a batch whose sync failed is not acknowledged");
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            assert!(status.message().contains("restart"), "{status:?}");
            assert!(
                status.message().contains("same request_id"),
                "the caller learns how to find the outcome: {status:?}"
            );
        }
        Fault::Apply => {
            let entry = answer.expect("durable, so acknowledged").into_inner();
            assert_eq!(entry.sequence, first.sequence + 1);
        }
    }
    let later = receipt_request(CASE, "100.00", "FAULT-3");
    let status = cases
        .record_receipt(later.clone())
        .await
        .expect_err("nothing is written after a failed commit until a restart");
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{fault:?}: {status:?}"
    );
    assert!(
        status.message().contains("restart"),
        "{fault:?}: {status:?}"
    );
    let read = cases.get_case_account(get_case_request(CASE)).await;
    match fault {
        // Reads go on, and show what was acknowledged.
        Fault::Sync => {
            let account = read.expect("reads go on").into_inner();
            let received = account.balances.map(|b| b.received);
            assert_eq!(received.as_deref(), Some("1.00"));
        }
        // The state lacks an acknowledged entry: a read would deny it.
        Fault::Apply => {
            let status = read.expect_err("the state is behind what was acknowledged");
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            assert!(status.message().contains("restart"), "{status:?}");
        }
    }
    drop((specials, cases));
    server.stop().await;
    // A batch whose sync failed is cut off the journal: the disk may not hold it though
    // the page cache does, and nobody was told it was recorded. One whose apply failed
    // was durable and acknowledged, and stays. The write refused after either is not
    // there.
    let v = case_escrow::store::journal::verify(&dir.path().join("journal.log"))
        .expect("the journal reads");
    let kept = match fault {
        Fault::Sync => first.sequence,
        Fault::Apply => first.sequence + 1,
    };
    assert_eq!(v.last_sequence, kept, "{fault:?}");
    assert!(v.broken.is_none(), "{fault:?}: {:?}", v.broken);

    let server = TestServer::start(dir.path()).await;
    let mut cases = server.cases().await;
    // After the restart the retry is recorded once: replayed (apply), or decided again
    // (sync).
    let retried = cases
        .record_receipt(failed.clone())
        .await
        .expect("the retry learns the outcome")
        .into_inner();
    assert_eq!(retried.sequence, first.sequence + 1, "{fault:?}");
    let again = cases
        .record_receipt(failed)
        .await
        .expect("a second retry")
        .into_inner();
    assert_eq!(again.sequence, retried.sequence, "{fault:?}");
    let recorded = cases
        .record_receipt(later)
        .await
        .expect("writes go on after the restart")
        .into_inner();
    assert_eq!(recorded.sequence, retried.sequence + 1, "{fault:?}");
    let received = balances(&mut cases, CASE).await.received;
    assert_eq!(received, "111.00", "{fault:?}");
    drop(cases);
    server.stop().await;

    let v = case_escrow::store::journal::verify(&dir.path().join("journal.log"))
        .expect("the journal reads");
    assert_eq!(v.broken, None, "{fault:?}: the chain is whole");
    assert_eq!(v.last_sequence, recorded.sequence, "{fault:?}");
}

#[tokio::test]
async fn a_failed_fdatasync_is_never_acknowledged_and_stops_writes_until_a_restart() {
    a_receipt_whose_commit_fails(Fault::Sync).await;
}

#[tokio::test]
async fn a_failed_apply_after_the_sync_keeps_the_receipt_and_refuses_reads_until_a_restart() {
    a_receipt_whose_commit_fails(Fault::Apply).await;
}

/// Opening a case account is answered from the state: when the state refuses its
/// batch the request is refused, and after a restart its retry finds it recorded.
#[tokio::test]
async fn a_request_answered_from_the_state_is_refused_when_the_apply_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, faults) = failing_server(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    faults.fail_next_apply();
    let open = open_case_request(&special.special_account_id, CASE, "100000.00");
    let status = cases
        .open_case_account(open.clone())
        .await
        .expect_err("refused: its answer would be read from a state that lacks it");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("same request_id"), "{status:?}");
    drop((specials, cases));
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let mut cases = server.cases().await;
    let account = cases
        .open_case_account(open.clone())
        .await
        .expect("the retry learns the outcome")
        .into_inner();
    let again = cases
        .open_case_account(open)
        .await
        .expect("a second retry")
        .into_inner();
    assert_eq!(account.case_account_id, again.case_account_id);
    assert_eq!(account.as_of_sequence, again.as_of_sequence);
    drop(cases);
    server.stop().await;
}
