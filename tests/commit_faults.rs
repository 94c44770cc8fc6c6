//! What the writer does when the disk fails it after a batch's frames are in the
//! journal: an `fdatasync` that reports an error, or a state engine that refuses the
//! batch after a successful sync. Neither is acknowledged; every write after it is
//! refused until a restart (a failed fsync cannot be retried: the kernel may have
//! dropped the pages it failed to write); reads go on and show what was acknowledged;
//! and after the restart a retry with the same request id learns the one outcome.
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

async fn a_failure_after_the_append_is_never_acknowledged(fault: Fault) {
    // A server holds its options for its whole life; a test's few bytes may outlive it.
    let faults: &'static Faults = Box::leak(Box::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(dir.path(), |c| c.store.faults = Some(faults)).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE).await;
    let first = cases
        .record_receipt(receipt_request(CASE, "1.00", "FAULT-1"))
        .await
        .expect("written")
        .into_inner();

    match fault {
        Fault::Sync => faults.fail_next_sync(),
        Fault::Apply => faults.fail_next_apply(),
    }
    let failed = receipt_request(CASE, "10.00", "FAULT-2");
    let status = cases
        .record_receipt(failed.clone())
        .await
        .expect_err("a batch whose commit failed is not acknowledged");
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{fault:?}: {status:?}"
    );
    assert!(
        status.message().contains("restart"),
        "{fault:?}: {status:?}"
    );
    assert!(
        status.message().contains("same request_id"),
        "the caller learns how to find the outcome: {status:?}"
    );
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
    // Reads go on, and show only what was acknowledged.
    assert_eq!(
        balances(&mut cases, CASE).await.received,
        "1.00",
        "{fault:?}"
    );
    drop((specials, cases));
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let mut cases = server.cases().await;
    // The failed batch's frames are in the journal: the restart replayed them, and the
    // retry is answered with that entry, recorded once.
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
    // The write refused afterwards never reached the journal; now it is recorded.
    let recorded = cases
        .record_receipt(later)
        .await
        .expect("writes go on after the restart")
        .into_inner();
    assert_eq!(recorded.sequence, retried.sequence + 1, "{fault:?}");
    assert_eq!(
        balances(&mut cases, CASE).await.received,
        "111.00",
        "{fault:?}"
    );
    drop(cases);
    server.stop().await;

    let v = case_escrow::store::journal::verify(&dir.path().join("journal.log"))
        .expect("the journal reads");
    assert_eq!(v.broken, None, "{fault:?}: the chain is whole");
    assert_eq!(v.last_sequence, recorded.sequence, "{fault:?}");
}

#[tokio::test]
async fn a_failed_fdatasync_is_never_acknowledged_and_stops_writes_until_a_restart() {
    a_failure_after_the_append_is_never_acknowledged(Fault::Sync).await;
}

#[tokio::test]
async fn a_failed_apply_to_the_state_is_never_acknowledged_and_stops_writes_until_a_restart() {
    a_failure_after_the_append_is_never_acknowledged(Fault::Apply).await;
}
