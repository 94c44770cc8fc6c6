//! One outcome per request id, forever; one entry per bank transaction.

mod common;

use case_escrow::api::pb;
use common::*;
use tonic::Code;

const CASE: &str = "（2024）云0102执200号";

async fn setup() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE).await;
    (dir, server)
}

/// A single request's answer comes from what the writer had at hand when it decided
/// the request; a retry's is read from the store as of the entry. Requests sent at
/// once share the writer's batches, so each answer must show its case as its own entry
/// left it, not as the batch did.
#[tokio::test]
async fn answers_of_receipts_sent_at_once_match_their_retries() {
    let (_dir, server) = setup().await;
    let cases = server.cases().await;
    let mut sent = tokio::task::JoinSet::new();
    for i in 1..=32 {
        let mut cases = cases.clone();
        let request = receipt_request(CASE, &format!("{i}.00"), &format!("REF-AT-ONCE-{i}"));
        sent.spawn(async move {
            let first = cases.record_receipt(request.clone()).await;
            (request, first.expect("receipt").into_inner())
        });
    }
    let mut answered = Vec::new();
    while let Some(done) = sent.join_next().await {
        answered.push(done.expect("task"));
    }
    let mut cases = cases;
    let mut running = Vec::new();
    for (request, first) in answered {
        let again = cases
            .record_receipt(request)
            .await
            .expect("retry")
            .into_inner();
        assert_eq!(first, again);
        running.push((first.sequence, first.running_balance));
    }
    // In journal order the running balance rises by each receipt in turn: 1+2+...+32.
    running.sort();
    let last = running.last().map(|(_, b)| b.as_str());
    assert_eq!(last, Some("528.00"));
    let distinct: std::collections::BTreeSet<_> = running.iter().map(|(_, b)| b).collect();
    assert_eq!(distinct.len(), 32, "{running:?}");
}

#[tokio::test]
async fn retried_request_returns_the_original_result() {
    let (_dir, server) = setup().await;
    let mut cases = server.cases().await;
    let request = receipt_request(CASE, "100.00", "REF-1");
    let first = cases
        .record_receipt(request.clone())
        .await
        .expect("first")
        .into_inner();
    let again = cases
        .record_receipt(request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(first, again);
    // The same content written differently is the same request.
    let mut respelled = request.clone();
    respelled.amount = "100.0".into();
    respelled.account = Some(pb::record_receipt_request::Account::CaseNumber(
        "(2024)云0102执200号".into(),
    ));
    let third = cases
        .record_receipt(respelled)
        .await
        .expect("respelled")
        .into_inner();
    assert_eq!(first, third);
    assert_eq!(balances(&mut cases, CASE).await.received, "100.00");

    // A disbursement step retried after it moved on still answers as it did.
    let d = cases
        .request_disbursement(disbursement_request(CASE, "10.00"))
        .await
        .expect("request")
        .into_inner();
    let approve = pb::ApproveDisbursementRequest {
        request_id: rid(),
        disbursement_id: d.disbursement_id.clone(),
        approval_ref: "批1".into(),
    };
    let approved = cases
        .approve_disbursement(approve.clone())
        .await
        .expect("approve")
        .into_inner();
    cases
        .fail_disbursement(pb::FailDisbursementRequest {
            request_id: rid(),
            disbursement_id: d.disbursement_id.clone(),
            reason: "户名不符".into(),
        })
        .await
        .expect("fail");
    let approved_again = cases
        .approve_disbursement(approve)
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(approved_again.state, pb::DisbursementState::Approved as i32);
    assert_eq!(approved_again.sequence, approved.sequence);
    server.stop().await;
}

#[tokio::test]
async fn reused_request_id_with_different_content_is_aborted() {
    let (_dir, server) = setup().await;
    let mut cases = server.cases().await;
    let request = receipt_request(CASE, "100.00", "REF-1");
    cases.record_receipt(request.clone()).await.expect("first");
    let mut changed = request.clone();
    changed.amount = "100.01".into();
    let err = cases
        .record_receipt(changed)
        .await
        .expect_err("different content");
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("request_id"));
    // Even for a different kind of request.
    let mut other = disbursement_request(CASE, "1.00");
    other.request_id = request.request_id.clone();
    let err = cases
        .request_disbursement(other)
        .await
        .expect_err("different kind");
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(balances(&mut cases, CASE).await.received, "100.00");
    server.stop().await;
}

#[tokio::test]
async fn a_bank_reference_is_recorded_once() {
    let (_dir, server) = setup().await;
    let mut cases = server.cases().await;
    let first = cases
        .record_receipt(receipt_request(CASE, "100.00", "ICBC-20240301-0001"))
        .await
        .expect("first")
        .into_inner();
    // The bank (or a second client) sends the same transaction under a new request id.
    let resent = cases
        .record_receipt(receipt_request(CASE, "100.00", "ICBC-20240301-0001"))
        .await
        .expect("resent")
        .into_inner();
    assert_eq!(
        resent.sequence, first.sequence,
        "the original entry is returned"
    );
    assert_eq!(balances(&mut cases, CASE).await.received, "100.00");
    // A different transaction claiming the same reference is refused.
    let clash = cases
        .record_receipt(receipt_request(CASE, "99.00", "ICBC-20240301-0001"))
        .await
        .expect_err("same ref, other amount");
    assert_eq!(clash.code(), Code::AlreadyExists);
    assert!(clash.message().contains("bank_ref"));
    server.stop().await;
}

#[tokio::test]
async fn a_request_id_answered_by_its_bank_reference_is_bound_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, resent_request, resent) = {
        let server = TestServer::start(dir.path()).await;
        let mut specials = server.specials().await;
        let mut cases = server.cases().await;
        let special = open_special(&mut specials, "云0102").await;
        open_case(&mut cases, &special.special_account_id, CASE).await;
        let first = cases
            .record_receipt(receipt_request(CASE, "100.00", "ICBC-20240301-0002"))
            .await
            .expect("first")
            .into_inner();
        let resent_request = receipt_request(CASE, "100.00", "ICBC-20240301-0002");
        let resent = cases
            .record_receipt(resent_request.clone())
            .await
            .expect("resent")
            .into_inner();
        drop((specials, cases));
        server.stop().await;
        (first, resent_request, resent)
    };
    assert_eq!(
        resent.sequence, first.sequence,
        "answered with the original"
    );

    // After a restart, the id that was answered by its bank reference still names that
    // request: the same content gets the same answer, other content is refused as a
    // reuse, not recorded as a new receipt.
    let server = TestServer::start(dir.path()).await;
    let mut cases = server.cases().await;
    let again = cases
        .record_receipt(resent_request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again.sequence, first.sequence);
    let mut other = receipt_request(CASE, "5.00", "ICBC-20240301-0003");
    other.request_id = resent_request.request_id.clone();
    let reused = cases
        .record_receipt(other)
        .await
        .expect_err("the id is taken");
    assert_eq!(reused.code(), Code::Aborted, "{reused:?}");
    assert_eq!(balances(&mut cases, CASE).await.received, "100.00");

    // The binding is in the journal, moving nothing, and in no case's statement.
    let mut journal = pb::journal_client::JournalClient::new(server.channel().await);
    let digest = journal
        .get_digest(pb::GetDigestRequest {})
        .await
        .expect("digest")
        .into_inner();
    let bound = journal
        .get_entry(pb::GetEntryRequest {
            sequence: digest.sequence,
            ..Default::default()
        })
        .await
        .expect("entry")
        .into_inner()
        .entry
        .and_then(|e| e.entry)
        .expect("an entry");
    assert_eq!(bound.kind, pb::EntryKind::AlreadyRecorded as i32);
    assert_eq!(bound.original_sequence, first.sequence);
    assert_eq!(bound.request_id, resent_request.request_id);
    assert!(bound.postings.is_empty());
    let listed = cases
        .list_entries(pb::ListEntriesRequest {
            case_number: CASE.into(),
            ..Default::default()
        })
        .await
        .expect("statement")
        .into_inner();
    assert!(listed
        .entries
        .iter()
        .all(|e| e.kind != pb::EntryKind::AlreadyRecorded as i32));
    drop((cases, journal));
    server.stop().await;
}

#[tokio::test]
async fn concurrent_retries_of_one_request_record_it_once() {
    let (_dir, server) = setup().await;
    let request = receipt_request(CASE, "7.00", "REF-CONC");
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let mut cases = server.cases().await;
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            cases
                .record_receipt(request)
                .await
                .map(|r| r.into_inner().sequence)
        }));
    }
    let mut sequences = Vec::new();
    for t in tasks {
        sequences.push(t.await.expect("task").expect("every retry succeeds"));
    }
    sequences.dedup();
    assert_eq!(sequences.len(), 1, "{sequences:?}");
    let mut cases = server.cases().await;
    assert_eq!(balances(&mut cases, CASE).await.received, "7.00");
    server.stop().await;
}

#[tokio::test]
async fn one_case_number_has_one_account_ever() {
    let (_dir, server) = setup().await;
    let mut cases = server.cases().await;
    let special_id = cases
        .get_case_account(pb::GetCaseAccountRequest {
            account: Some(pb::get_case_account_request::Account::CaseNumber(
                CASE.into(),
            )),
            as_of: None,
        })
        .await
        .expect("read")
        .into_inner()
        .special_account_id;
    let err = cases
        .open_case_account(open_case_request(&special_id, "(2024)云0102执200号", "1"))
        .await
        .expect_err("second account for the case");
    assert_eq!(err.code(), Code::AlreadyExists);
    server.stop().await;
}
