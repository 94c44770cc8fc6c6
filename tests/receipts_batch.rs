//! RecordReceipts over gRPC: per-item outcomes, idempotent retries, field names in
//! per-item errors, the count limit, and a call that outgrows one writer batch.

mod common;

use std::sync::atomic::Ordering;

use case_escrow::api::pb::{self, receipt_result::Result as R};
use common::*;
use tonic::Code;

const CASE_A: &str = "（2024）云0102执1号";
const CASE_B: &str = "（2024）云0102执2号";

async fn ledger_with_two_cases(
    server: &TestServer,
) -> pb::case_ledger_client::CaseLedgerClient<common::Ch> {
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE_A).await;
    open_case(&mut cases, &special.special_account_id, CASE_B).await;
    cases
}

fn batch(receipts: Vec<pb::RecordReceiptRequest>) -> pb::RecordReceiptsRequest {
    pb::RecordReceiptsRequest {
        request_id: rid(),
        receipts,
    }
}

fn sequence(result: &pb::ReceiptResult) -> u64 {
    match &result.result {
        Some(R::Sequence(s)) => *s,
        other => panic!("expected a recorded receipt, got {other:?}"),
    }
}

fn refusal(result: &pb::ReceiptResult) -> (Code, &str) {
    match &result.result {
        Some(R::Error(e)) => (Code::from(e.code), e.message.as_str()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn each_item_succeeds_or_fails_on_its_own_and_a_retry_answers_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut cases = ledger_with_two_cases(&server).await;

    let mut missing_case = receipt_request(CASE_A, "5.00", "B-4");
    missing_case.account = None;
    let items = vec![
        receipt_request(CASE_A, "100.00", "B-0"),
        receipt_request(CASE_A, "1.001", "B-1"),
        receipt_request("（2024）云0102执99号", "7.00", "B-2"),
        receipt_request(CASE_B, "20.50", "B-3"),
        missing_case,
        // The same bank transaction as item 0 with another amount: refused.
        receipt_request(CASE_A, "999.00", "B-0"),
        receipt_request(CASE_B, "0.50", "B-6"),
    ];
    let request = batch(items);
    let first = cases
        .record_receipts(request.clone())
        .await
        .expect("the call succeeds even when items fail")
        .into_inner()
        .results;
    assert_eq!(first.len(), 7);
    let s0 = sequence(&first[0]);
    assert_eq!(sequence(&first[3]), s0 + 1, "one entry per accepted item");
    assert_eq!(sequence(&first[6]), s0 + 2);

    let (code, message) = refusal(&first[1]);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("receipts[1].amount: "), "{message}");
    let (code, message) = refusal(&first[2]);
    assert_eq!(code, Code::NotFound);
    assert!(message.starts_with("receipts[2]: "), "{message}");
    let (code, message) = refusal(&first[4]);
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.starts_with("receipts[4].case_number: "),
        "{message}"
    );
    let (code, message) = refusal(&first[5]);
    assert_eq!(code, Code::AlreadyExists);
    assert!(message.contains("bank_ref B-0"), "{message}");

    assert_eq!(balances(&mut cases, CASE_A).await.received, "100.00");
    assert_eq!(balances(&mut cases, CASE_B).await.received, "21.00");

    // The whole call again, as a client that lost the answer would send it.
    let again = cases
        .record_receipts(request)
        .await
        .expect("the retry succeeds")
        .into_inner()
        .results;
    assert_eq!(again, first);
    assert_eq!(balances(&mut cases, CASE_A).await.received, "100.00");
    assert_eq!(balances(&mut cases, CASE_B).await.received, "21.00");

    // Items of the batch are the same requests RecordReceipt sees.
    let unary = cases
        .record_receipt(receipt_request(CASE_B, "20.50", "B-3"))
        .await
        .expect("same bank transaction, new request id: the original entry")
        .into_inner();
    assert_eq!(unary.sequence, s0 + 1);
    server.stop().await;
}

#[tokio::test]
async fn a_request_id_reused_for_other_content_is_refused_for_that_item_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut cases = ledger_with_two_cases(&server).await;
    let a = receipt_request(CASE_A, "1.00", "R-1");
    let mut b = receipt_request(CASE_A, "2.00", "R-2");
    b.request_id = a.request_id.clone();
    let c = receipt_request(CASE_A, "3.00", "R-3");
    let results = cases
        .record_receipts(batch(vec![a.clone(), b, c, a]))
        .await
        .expect("call succeeds")
        .into_inner()
        .results;
    let first = sequence(&results[0]);
    let (code, message) = refusal(&results[1]);
    assert_eq!(code, Code::Aborted);
    assert!(message.starts_with("receipts[1]: request_id"), "{message}");
    assert_eq!(sequence(&results[2]), first + 1);
    // The same item twice in one call is recorded once.
    assert_eq!(sequence(&results[3]), first);
    assert_eq!(balances(&mut cases, CASE_A).await.received, "4.00");
    server.stop().await;
}

#[tokio::test]
async fn the_count_per_call_is_bounded_and_an_empty_call_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut cases = server.cases().await;
    let too_many: Vec<_> = (0..=case_escrow::api::receipts::RECEIPTS_PER_CALL_MAX)
        .map(|i| receipt_request(CASE_A, "1.00", &format!("N-{i}")))
        .collect();
    let err = cases
        .record_receipts(batch(too_many))
        .await
        .expect_err("10,001 receipts are refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("receipts: at most 10000"),
        "{err}"
    );

    let err = cases
        .record_receipts(batch(Vec::new()))
        .await
        .expect_err("no receipts is refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("receipts: "), "{err}");

    let mut bad_id = batch(vec![receipt_request(CASE_A, "1.00", "N-0")]);
    bad_id.request_id = "bad id with spaces\u{7}".into();
    let err = cases
        .record_receipts(bad_id)
        .await
        .expect_err("a malformed call request_id is refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("request_id: "), "{err}");
    server.stop().await;
}

/// 10,000 receipts with the longest payer names make more journal bytes than one batch
/// may hold: the call spills over several batches and still answers every item, in
/// order, with gap-free sequences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_larger_than_one_batch_spills_into_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut cases = ledger_with_two_cases(&server).await;
    let n = case_escrow::api::receipts::RECEIPTS_PER_CALL_MAX;
    // Four UTF-8 bytes a character (CJK extension B), the most a name can weigh.
    let long_name: String = "𠀀".repeat(case_escrow::domain::text::len::NAME);
    let items: Vec<_> = (0..n)
        .map(|i| {
            let mut r = receipt_request(CASE_A, "0.01", &format!("S-{i}"));
            r.payer_name = long_name.clone();
            r
        })
        .collect();
    let before = server.stats.batches.load(Ordering::Relaxed);
    let results = cases
        .record_receipts(batch(items))
        .await
        .expect("call succeeds")
        .into_inner()
        .results;
    let first = sequence(&results[0]);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(sequence(r), first + i as u64);
    }
    // The answer comes once the batches are durable; a read waits until the state
    // has them, and they are counted by then.
    assert_eq!(balances(&mut cases, CASE_A).await.received, "100.00");
    let batches = server.stats.batches.load(Ordering::Relaxed) - before;
    assert!(batches >= 2, "{batches} batch(es): the call did not spill");
    server.stop().await;

    // What was acknowledged is what the journal says, and it replays to the same state.
    let entries = case_escrow::store::journal::read_all(&dir.path().join("journal.log"))
        .expect("journal reads");
    let state = case_escrow::ledger::MemState::replay(&entries).expect("replays");
    case_escrow::ledger::invariants::check(&state).expect("invariants hold");
    assert_eq!(entries.len() as u64, first + n as u64 - 1);
}

/// RecordReceipts takes messages far above the 1 MiB every other call is held to,
/// and RecordReceipt still refuses them.
#[tokio::test]
async fn only_the_batch_call_takes_large_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut cases = ledger_with_two_cases(&server).await;
    let padded = |i: usize| {
        let mut r = receipt_request(CASE_A, "0.01", &format!("L-{i}"));
        r.payer_name = "某".repeat(case_escrow::domain::text::len::NAME);
        r
    };
    // About 3 MB.
    let items: Vec<_> = (0..4000).map(padded).collect();
    let results = cases
        .record_receipts(batch(items))
        .await
        .expect("a 3 MB RecordReceipts is decoded")
        .into_inner()
        .results;
    assert!(results
        .iter()
        .all(|r| matches!(r.result, Some(R::Sequence(_)))));
    let mut huge = receipt_request(CASE_A, "0.01", "L-huge");
    huge.payer_name = "x".repeat(2_000_000);
    let err = cases
        .record_receipt(huge)
        .await
        .expect_err("a 2 MB RecordReceipt is refused");
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    server.stop().await;
}

/// Batch calls and single receipts on one case at once: each batch is decided while
/// the one before is still being synced and applied, so it must read that batch's
/// balances from its in-flight copy, or money would be lost between batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_on_one_case_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut cases = ledger_with_two_cases(&server).await;
    let channel = server.channel().await;
    let mut tasks = Vec::new();
    for c in 0..8 {
        let mut client = pb::case_ledger_client::CaseLedgerClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..4 {
                let items = (0..250)
                    .map(|i| receipt_request(CASE_A, "0.01", &format!("C{c}-{round}-{i}")))
                    .collect();
                let results = client
                    .record_receipts(batch(items))
                    .await
                    .expect("call succeeds")
                    .into_inner()
                    .results;
                assert!(results
                    .iter()
                    .all(|r| matches!(r.result, Some(R::Sequence(_)))));
                client
                    .record_receipt(receipt_request(CASE_A, "1.00", &format!("U{c}-{round}")))
                    .await
                    .expect("single receipt");
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    // 8 clients × 4 rounds × (250 × 0.01 + 1.00).
    assert_eq!(balances(&mut cases, CASE_A).await.received, "112.00");
    server.stop().await;
    let entries = case_escrow::store::journal::read_all(&dir.path().join("journal.log"))
        .expect("journal reads");
    let state = case_escrow::ledger::MemState::replay(&entries).expect("replays");
    case_escrow::ledger::invariants::check(&state).expect("invariants hold");

    // sled keeps a special account's money and its bank lines under one key an entry,
    // written from batches that overlap in flight: every one of them is what the
    // posting rules say, as of every entry.
    let _guard = SPAWN_OR_OPEN.lock().await;
    let store = case_escrow::store::Store::open(dir.path()).expect("reopens");
    let reads = store.handle().reads;
    let last = entries.len() as u64;
    for special in state.specials.keys() {
        let bank: Vec<_> = reads
            .bank_lines(*special, last)
            .collect::<Result<_, _>>()
            .expect("bank lines read");
        let expected: Vec<_> = state
            .bank_lines
            .iter()
            .filter(|((s, _), _)| s == special)
            .map(|((_, seq), line)| (*seq, line.clone()))
            .collect();
        assert!(expected.len() > 1000, "{} bank lines", expected.len());
        assert_eq!(bank, expected);
        // As of every sequence, the account's lines among them or not (sled keeps
        // them 64 to a key, filled across batches).
        for seq in 0..=last {
            let expected = (state.special_lines.range((*special, 0)..=(*special, seq)))
                .next_back()
                .map(|(_, line)| line);
            let read = reads.special_line_at(*special, seq).expect("reads");
            assert_eq!(read.as_ref(), expected, "special line as of {seq}");
            let bank = reads.bank_line(*special, seq).expect("reads");
            assert_eq!(
                bank.as_ref(),
                state.bank_lines.get(&(*special, seq)),
                "bank line of {seq}"
            );
        }
    }
    drop(reads);
    store.close().await;
}

/// Suspense routing is RecordReceipt's alone: a batch item asking for it is refused by
/// name rather than quietly treated as a plain receipt.
#[tokio::test]
async fn a_batch_item_asking_for_suspense_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut cases = ledger_with_two_cases(&server).await;
    let mut to_suspense = receipt_request(CASE_A, "5.00", "S-1");
    to_suspense.to_suspense_if_unmatched = true;
    let results = cases
        .record_receipts(batch(vec![
            receipt_request(CASE_A, "1.00", "S-0"),
            to_suspense,
        ]))
        .await
        .expect("the call is answered")
        .into_inner()
        .results;
    assert!(sequence(&results[0]) > 0);
    let (code, message) = refusal(&results[1]);
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.starts_with("receipts[1].to_suspense_if_unmatched"),
        "{message}"
    );
    assert_eq!(balances(&mut cases, CASE_A).await.received, "1.00");
    server.stop().await;
}

/// A clerk of one court sends a batch with some items for another court's case (by
/// case number or virtual account number) and one for a virtual account number that
/// names nothing: those items alone are refused, PERMISSION_DENIED, the last two in the
/// same words; the rest are recorded, and a retry answers the same.
#[tokio::test]
async fn items_outside_the_callers_courts_are_refused_one_by_one() {
    use case_escrow::domain::{Role, VirtualAccountNumber};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut crew = ledger_with_two_cases(&server).await;
    let mut specials = server.specials().await;
    let other_special = open_special(&mut specials, "云0103").await;
    const OTHER: &str = "（2024）云0103执1号";
    let other_van = open_case(&mut crew, &other_special.special_account_id, OTHER)
        .await
        .virtual_account_number;
    let own_van = crew
        .get_case_account(pb::GetCaseAccountRequest {
            account: Some(pb::get_case_account_request::Account::CaseNumber(
                CASE_B.into(),
            )),
            as_of: None,
        })
        .await
        .expect("read")
        .into_inner()
        .virtual_account_number;
    let unknown_van = VirtualAccountNumber::issue(99_999, 123_456_789).to_string();
    let by_van = |van: &str, amount: &str, bank_ref: &str| pb::RecordReceiptRequest {
        account: Some(pb::record_receipt_request::Account::VirtualAccountNumber(
            van.into(),
        )),
        ..receipt_request(CASE_A, amount, bank_ref)
    };
    let clerk = principal(&server, &[Role::Clerk], &["云0102"]).await;
    let mut cases = pb::case_ledger_client::CaseLedgerClient::new(server.channel_as(&clerk).await);
    let call = batch(vec![
        receipt_request(CASE_A, "10.00", "S-0"),
        receipt_request(OTHER, "1.00", "S-1"),
        by_van(&other_van, "2.00", "S-2"),
        by_van(&unknown_van, "3.00", "S-3"),
        by_van(&own_van, "20.00", "S-4"),
    ]);
    let results = cases
        .record_receipts(call.clone())
        .await
        .expect("the call is answered item by item")
        .into_inner()
        .results;
    assert_eq!(results.len(), 5);
    sequence(&results[0]);
    sequence(&results[4]);
    for (i, result) in results.iter().enumerate().take(4).skip(1) {
        let (code, message) = refusal(result);
        assert_eq!(code, Code::PermissionDenied, "item {i}: {message}");
        assert!(
            message.starts_with(&format!("receipts[{i}]: ")),
            "{message}"
        );
    }
    // Another court's account and no account at all read alike.
    let words = |i: usize, van: &str| {
        refusal(&results[i])
            .1
            .replace(&format!("receipts[{i}]"), "receipts[_]")
            .replace(van, "<van>")
    };
    assert_eq!(words(2, &other_van), words(3, &unknown_van));
    assert!(
        !words(2, &other_van).contains("云0103"),
        "{}",
        words(2, &other_van)
    );
    // The others were recorded; the other court's case got nothing.
    assert_eq!(balances(&mut crew, CASE_A).await.received, "10.00");
    assert_eq!(balances(&mut crew, CASE_B).await.received, "20.00");
    assert_eq!(balances(&mut crew, OTHER).await.received, "0.00");
    // A retry of the whole call answers the same, and writes nothing more.
    let again = cases
        .record_receipts(call)
        .await
        .expect("retry")
        .into_inner()
        .results;
    assert_eq!(again, results);
    assert_eq!(balances(&mut crew, CASE_A).await.received, "10.00");
    // A principal who may read every court is told the unknown number names nothing.
    let national = crew
        .record_receipts(batch(vec![by_van(&unknown_van, "3.00", "S-5")]))
        .await
        .expect("answered")
        .into_inner()
        .results;
    assert_eq!(refusal(&national[0]).0, Code::NotFound);
    server.stop().await;
}
