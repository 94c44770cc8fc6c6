//! The whole life of a case's money over gRPC: open, receive, request, approve, pay,
//! return, transfer, reverse, close; then restart the server and read it all again.

mod common;

use case_escrow::api::pb::{self, get_case_account_request::Account as Key};
use common::*;
use tonic::Code;

const CASE_A: &str = "（2024）云0102执100号";
const CASE_B: &str = "(2024)云0102执101号";
const CASE_B_CANONICAL: &str = "（2024）云0102执101号";

fn by_number(n: &str) -> Option<Key> {
    Some(Key::CaseNumber(n.into()))
}

#[tokio::test]
async fn full_lifecycle_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;

    let special = open_special(&mut specials, "云0102").await;
    assert_eq!(special.status, pb::SpecialAccountStatus::Open as i32);
    assert_eq!(special.registrations.len(), 1);

    let a = open_case(&mut cases, &special.special_account_id, CASE_A).await;
    let b = open_case(&mut cases, &special.special_account_id, CASE_B).await;
    assert_eq!(
        b.case_number, CASE_B_CANONICAL,
        "one canonical form is stored"
    );
    assert_eq!(a.virtual_account_number.len(), 16);
    assert_ne!(a.virtual_account_number, b.virtual_account_number);

    // Money arrives, by case number and by virtual account number.
    let r1 = cases
        .record_receipt(receipt_request(CASE_A, "1000.00", "BANK-0001"))
        .await
        .expect("receipt")
        .into_inner();
    assert_eq!(r1.kind, pb::EntryKind::Receipt as i32);
    assert_eq!(r1.running_balance, "1000.00");
    let mut by_van = receipt_request(CASE_A, "250.5", "BANK-0002");
    by_van.account = Some(pb::record_receipt_request::Account::VirtualAccountNumber(
        a.virtual_account_number.clone(),
    ));
    let r2 = cases
        .record_receipt(by_van)
        .await
        .expect("receipt by van")
        .into_inner();
    assert_eq!(r2.amount, "250.50");
    assert_eq!(r2.running_balance, "1250.50");

    // Request → approve → pay.
    let d = cases
        .request_disbursement(disbursement_request(CASE_A, "1000.00"))
        .await
        .expect("request")
        .into_inner();
    assert_eq!(d.state, pb::DisbursementState::Requested as i32);
    let bal = balances(&mut cases, CASE_A).await;
    assert_eq!(
        (bal.reserved.as_str(), bal.available.as_str()),
        ("1000.00", "250.50")
    );

    // The reservation holds: more than is available is refused.
    let over = cases
        .request_disbursement(disbursement_request(CASE_A, "250.51"))
        .await
        .expect_err("insufficient funds");
    assert_eq!(over.code(), Code::FailedPrecondition, "{over:?}");

    let approved = cases
        .approve_disbursement(pb::ApproveDisbursementRequest {
            request_id: rid(),
            disbursement_id: d.disbursement_id.clone(),
            approval_ref: "审批2024-001".into(),
        })
        .await
        .expect("approve")
        .into_inner();
    assert_eq!(approved.state, pb::DisbursementState::Approved as i32);
    let bal = balances(&mut cases, CASE_A).await;
    assert_eq!(bal.reserved, "1000.00", "approval moves no money");

    // A payment time ahead of the clock (here: a year) is a client's mistake, named.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let ahead = |seconds: i64| pb::ConfirmDisbursementPaidRequest {
        request_id: rid(),
        disbursement_id: d.disbursement_id.clone(),
        bank_ref: "BANK-PAY-1".into(),
        paid_at: Some(prost_types::Timestamp {
            seconds: now + seconds,
            nanos: 0,
        }),
    };
    let future = cases
        .confirm_disbursement_paid(ahead(366 * 86_400))
        .await
        .expect_err("paid a year from now");
    assert_eq!(future.code(), Code::InvalidArgument, "{future:?}");
    assert!(future.message().starts_with("paid_at:"), "{future:?}");
    // Nor before it was requested: 1970, or a day before.
    for seconds in [-now, -86_400] {
        let past = cases
            .confirm_disbursement_paid(ahead(seconds))
            .await
            .expect_err("paid before it was requested");
        assert_eq!(past.code(), Code::InvalidArgument, "{past:?}");
        assert!(past.message().starts_with("paid_at:"), "{past:?}");
    }
    assert_eq!(balances(&mut cases, CASE_A).await.disbursed, "0.00");

    let paid = cases
        .confirm_disbursement_paid(pb::ConfirmDisbursementPaidRequest {
            request_id: rid(),
            disbursement_id: d.disbursement_id.clone(),
            bank_ref: "BANK-PAY-1".into(),
            paid_at: None,
        })
        .await
        .expect("paid")
        .into_inner();
    assert_eq!(paid.state, pb::DisbursementState::Paid as i32);
    let bal = balances(&mut cases, CASE_A).await;
    assert_eq!(
        (
            bal.received.as_str(),
            bal.disbursed.as_str(),
            bal.reserved.as_str(),
            bal.balance.as_str()
        ),
        ("1250.50", "1000.00", "0.00", "250.50")
    );

    // The bank sends the payment back: credited to the same case.
    let returned = cases
        .record_returned_payment(pb::RecordReturnedPaymentRequest {
            request_id: rid(),
            disbursement_id: d.disbursement_id.clone(),
            bank_ref: "BANK-RET-1".into(),
            reason: "收款账户已销户".into(),
        })
        .await
        .expect("returned")
        .into_inner();
    assert_eq!(returned.state, pb::DisbursementState::Returned as i32);
    let account = cases
        .get_case_account(get_case_request(CASE_A))
        .await
        .expect("case account reads")
        .into_inner();
    let bal = account.balances.clone().expect("balances present");
    // Counted in both received and disbursed; the answer says how much, so that a
    // reader can tell money from outside (1250.50) from the payment that came back.
    assert_eq!(
        (
            bal.received.as_str(),
            bal.disbursed.as_str(),
            bal.balance.as_str(),
            account.returned_payments.as_str()
        ),
        ("2250.50", "1000.00", "1250.50", "1000.00")
    );
    // As of the entry before the return, there was none.
    let mut before = get_case_request(CASE_A);
    before.as_of = Some(pb::AsOf {
        point: Some(pb::as_of::Point::Sequence(returned.sequence - 1)),
    });
    let before = cases
        .get_case_account(before)
        .await
        .expect("case account as of reads")
        .into_inner();
    assert_eq!(before.returned_payments, "0.00");

    // A rejected and a failed disbursement release their reservations.
    let d2 = cases
        .request_disbursement(disbursement_request(CASE_A, "100.00"))
        .await
        .expect("request 2")
        .into_inner();
    cases
        .reject_disbursement(pb::RejectDisbursementRequest {
            request_id: rid(),
            disbursement_id: d2.disbursement_id.clone(),
            reason: "金额有误".into(),
        })
        .await
        .expect("reject");
    let d3 = cases
        .request_disbursement(disbursement_request(CASE_A, "100.00"))
        .await
        .expect("request 3")
        .into_inner();
    cases
        .approve_disbursement(pb::ApproveDisbursementRequest {
            request_id: rid(),
            disbursement_id: d3.disbursement_id.clone(),
            approval_ref: "审批2024-002".into(),
        })
        .await
        .expect("approve 3");
    // Approved, it is finance's to pay or fail: a clerk's cancellation could release
    // money already sent to the bank.
    let cancel = cases
        .cancel_disbursement(pb::CancelDisbursementRequest {
            request_id: rid(),
            disbursement_id: d3.disbursement_id.clone(),
            reason: "申请人撤回".into(),
        })
        .await
        .expect_err("an approved disbursement is not cancelled");
    assert_eq!(cancel.code(), Code::FailedPrecondition);
    assert!(
        cancel.message().contains("FailDisbursement"),
        "{}",
        cancel.message()
    );
    assert_eq!(balances(&mut cases, CASE_A).await.reserved, "100.00");
    cases
        .fail_disbursement(pb::FailDisbursementRequest {
            request_id: rid(),
            disbursement_id: d3.disbursement_id.clone(),
            reason: "账户名不符".into(),
        })
        .await
        .expect("fail");
    // A failed payment cannot be confirmed afterwards.
    let late = cases
        .confirm_disbursement_paid(pb::ConfirmDisbursementPaidRequest {
            request_id: rid(),
            disbursement_id: d3.disbursement_id.clone(),
            bank_ref: "BANK-PAY-3".into(),
            paid_at: None,
        })
        .await
        .expect_err("failed disbursement cannot be paid");
    assert_eq!(late.code(), Code::FailedPrecondition);
    let d4 = cases
        .request_disbursement(disbursement_request(CASE_A, "50.00"))
        .await
        .expect("request 4")
        .into_inner();
    cases
        .cancel_disbursement(pb::CancelDisbursementRequest {
            request_id: rid(),
            disbursement_id: d4.disbursement_id.clone(),
            reason: "申请人撤回".into(),
        })
        .await
        .expect("cancel");
    let bal = balances(&mut cases, CASE_A).await;
    assert_eq!(
        (bal.reserved.as_str(), bal.available.as_str()),
        ("0.00", "1250.50")
    );

    // Transfer within the special account, then reverse it.
    let t = cases
        .transfer_between_cases(pb::TransferBetweenCasesRequest {
            request_id: rid(),
            from_case_number: CASE_A.into(),
            to_case_number: CASE_B.into(),
            amount: "250.50".into(),
            reason: "错案到账调整".into(),
            document_ref: "调账审批1号".into(),
        })
        .await
        .expect("transfer")
        .into_inner();
    assert_eq!(t.kind, pb::EntryKind::Transfer as i32);
    assert_eq!(balances(&mut cases, CASE_B).await.balance, "250.50");
    let rev = cases
        .reverse_entry(pb::ReverseEntryRequest {
            request_id: rid(),
            sequence: t.sequence,
            reason: "调账错误".into(),
        })
        .await
        .expect("reverse")
        .into_inner();
    assert_eq!(rev.reversed_sequence, t.sequence);
    assert_eq!(balances(&mut cases, CASE_B).await.balance, "0.00");
    let twice = cases
        .reverse_entry(pb::ReverseEntryRequest {
            request_id: rid(),
            sequence: t.sequence,
            reason: "again".into(),
        })
        .await
        .expect_err("reversed once only");
    assert_eq!(twice.code(), Code::FailedPrecondition);

    // Closing with money held is refused ("close first, pay later" cannot happen).
    let close = pb::CloseCaseAccountRequest {
        request_id: rid(),
        case_number: CASE_A.into(),
        closure_method: pb::ClosureMethod::Completed as i32,
        reason: "执行完毕".into(),
    };
    let refused = cases
        .close_case_account(close.clone())
        .await
        .expect_err("has balance");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let closed_b = cases
        .close_case_account(pb::CloseCaseAccountRequest {
            case_number: CASE_B.into(),
            request_id: rid(),
            ..close.clone()
        })
        .await
        .expect("empty case closes")
        .into_inner();
    assert_eq!(closed_b.status, pb::CaseAccountStatus::Closed as i32);
    let to_closed = cases
        .record_receipt(receipt_request(CASE_B, "1.00", "BANK-0009"))
        .await
        .expect_err("closed case takes no money");
    assert_eq!(to_closed.code(), Code::FailedPrecondition);

    let statement_before = list_all(&mut cases, CASE_A, 3).await;
    let account_before = cases
        .get_case_account(pb::GetCaseAccountRequest {
            account: by_number(CASE_A),
            as_of: None,
        })
        .await
        .expect("read")
        .into_inner();
    let special_before = specials
        .get_special_account(pb::GetSpecialAccountRequest {
            special_account_id: special.special_account_id.clone(),
            as_of: None,
        })
        .await
        .expect("special")
        .into_inner();
    assert_eq!(special_before.bank_balance, "1250.50");
    assert_eq!(special_before.reserved, "0.00");

    // Restart on the same directory: everything reads back the same.
    drop((specials, cases));
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let mut cases = server.cases().await;
    let mut specials = server.specials().await;
    assert_eq!(list_all(&mut cases, CASE_A, 3).await, statement_before);
    let account_after = cases
        .get_case_account(pb::GetCaseAccountRequest {
            account: by_number(CASE_A),
            as_of: None,
        })
        .await
        .expect("read")
        .into_inner();
    assert_eq!(account_after, account_before);
    let special_after = specials
        .get_special_account(pb::GetSpecialAccountRequest {
            special_account_id: special.special_account_id.clone(),
            as_of: None,
        })
        .await
        .expect("special")
        .into_inner();
    assert_eq!(special_after, special_before);

    // And the ledger goes on where it stopped: sequences continue without a gap.
    let next = cases
        .record_receipt(receipt_request(CASE_A, "1.00", "BANK-0010"))
        .await
        .expect("receipt after restart")
        .into_inner();
    assert_eq!(next.sequence, account_before.as_of_sequence + 1);
    server.stop().await;
}

/// Reads a whole statement in pages of `page_size`.
async fn list_all(
    cases: &mut pb::case_ledger_client::CaseLedgerClient<common::Ch>,
    case_number: &str,
    page_size: u32,
) -> Vec<pb::Entry> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = cases
            .list_entries(pb::ListEntriesRequest {
                case_number: case_number.into(),
                page_size,
                page_token: token.clone(),
                as_of: None,
            })
            .await
            .expect("list")
            .into_inner();
        all.extend(page.entries);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn statement_is_in_journal_order_with_running_balances_and_stable_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE_A).await;
    for i in 1..=5 {
        cases
            .record_receipt(receipt_request(
                CASE_A,
                &format!("{i}.00"),
                &format!("REF-{i}"),
            ))
            .await
            .expect("receipt");
    }
    let first = cases
        .list_entries(pb::ListEntriesRequest {
            case_number: CASE_A.into(),
            page_size: 3,
            page_token: String::new(),
            as_of: None,
        })
        .await
        .expect("page 1")
        .into_inner();
    // New money arrives between pages: the second page continues without skipping
    // or repeating, and the new entry appears at the end.
    cases
        .record_receipt(receipt_request(CASE_A, "100.00", "REF-LATE"))
        .await
        .expect("late receipt");
    let rest = list_all_from(&mut cases, CASE_A, first.next_page_token.clone()).await;
    let all: Vec<_> = first.entries.iter().chain(rest.iter()).collect();
    let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
    assert_eq!(kinds[0], pb::EntryKind::CaseAccountOpened as i32);
    let running: Vec<_> = all.iter().map(|e| e.running_balance.as_str()).collect();
    assert_eq!(
        running,
        ["0.00", "1.00", "3.00", "6.00", "10.00", "15.00", "115.00"]
    );
    let seqs: Vec<_> = all.iter().map(|e| e.sequence).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "journal order: {seqs:?}"
    );
    server.stop().await;
}

async fn list_all_from(
    cases: &mut pb::case_ledger_client::CaseLedgerClient<common::Ch>,
    case_number: &str,
    mut token: String,
) -> Vec<pb::Entry> {
    let mut all = Vec::new();
    while !token.is_empty() {
        let page = cases
            .list_entries(pb::ListEntriesRequest {
                case_number: case_number.into(),
                page_size: 3,
                page_token: token.clone(),
                as_of: None,
            })
            .await
            .expect("list")
            .into_inner();
        all.extend(page.entries);
        token = page.next_page_token;
    }
    all
}

#[tokio::test]
async fn as_of_answers_for_the_past() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE_A).await;
    let r1 = cases
        .record_receipt(receipt_request(CASE_A, "10.00", "REF-1"))
        .await
        .expect("receipt")
        .into_inner();
    let month_end = r1.recorded_at.expect("recorded_at");
    cases
        .record_receipt(receipt_request(CASE_A, "5.00", "REF-2"))
        .await
        .expect("receipt 2");

    let at_seq = cases
        .get_case_account(pb::GetCaseAccountRequest {
            account: by_number(CASE_A),
            as_of: Some(pb::AsOf {
                point: Some(pb::as_of::Point::Sequence(r1.sequence)),
            }),
        })
        .await
        .expect("as of sequence")
        .into_inner();
    assert_eq!(at_seq.balances.expect("balances").balance, "10.00");
    assert_eq!(at_seq.as_of_sequence, r1.sequence);

    let at_time = cases
        .get_case_account(pb::GetCaseAccountRequest {
            account: by_number(CASE_A),
            as_of: Some(pb::AsOf {
                point: Some(pb::as_of::Point::Time(month_end)),
            }),
        })
        .await
        .expect("as of time")
        .into_inner();
    // Entries recorded in the same microsecond share a time; the answer includes
    // every entry up to that moment, so it is at least the first receipt.
    assert!(at_time.as_of_sequence >= r1.sequence);

    let statement = cases
        .list_entries(pb::ListEntriesRequest {
            case_number: CASE_A.into(),
            page_size: 0,
            page_token: String::new(),
            as_of: Some(pb::AsOf {
                point: Some(pb::as_of::Point::Sequence(r1.sequence)),
            }),
        })
        .await
        .expect("statement as of")
        .into_inner();
    assert_eq!(
        statement.entries.last().map(|e| e.sequence),
        Some(r1.sequence)
    );

    let special_then = server
        .specials()
        .await
        .get_special_account(pb::GetSpecialAccountRequest {
            special_account_id: special.special_account_id.clone(),
            as_of: Some(month_end),
        })
        .await
        .expect("special account as of")
        .into_inner();
    assert_eq!(special_then.bank_balance, "10.00");
    assert_eq!(special_then.case_account_count, 1);

    // Before the case existed it is not found.
    let before = cases
        .get_case_account(pb::GetCaseAccountRequest {
            account: by_number(CASE_A),
            as_of: Some(pb::AsOf {
                point: Some(pb::as_of::Point::Sequence(1)),
            }),
        })
        .await
        .expect_err("no case at entry 1");
    assert_eq!(before.code(), Code::NotFound);
    server.stop().await;
}

fn refused_on_effective_at(status: &tonic::Status) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("effective_at:"), "{status:?}");
}

#[tokio::test]
async fn special_account_changes_are_registered_in_order_and_readable_as_of() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let special = open_special(&mut specials, "云0102").await;
    let id = special.special_account_id.clone();
    let opened_at = special.registrations[0].recorded_at.expect("recorded_at");

    let changed = specials
        .register_account_change(pb::RegisterAccountChangeRequest {
            request_id: rid(),
            special_account_id: id.clone(),
            bank_name: Some("中国农业银行".into()),
            account_number: Some("2400000000000000001".into()),
            reason: "开户行变更".into(),
            document_ref: "云0102财〔2024〕3号".into(),
            ..Default::default()
        })
        .await
        .expect("change")
        .into_inner();
    assert_eq!(changed.bank_name, "中国农业银行");
    assert_eq!(changed.account_number, "2400000000000000001");
    assert_eq!(
        changed.bank_branch, special.bank_branch,
        "unchanged fields stay"
    );
    assert_eq!(changed.registrations.len(), 2);

    let then = specials
        .get_special_account(pb::GetSpecialAccountRequest {
            special_account_id: id.clone(),
            as_of: Some(opened_at),
        })
        .await
        .expect("as of opening")
        .into_inner();
    assert_eq!(then.bank_name, special.bank_name);
    assert_eq!(then.registrations.len(), 1);

    // A change with nothing new is refused.
    let same = specials
        .register_account_change(pb::RegisterAccountChangeRequest {
            request_id: rid(),
            special_account_id: id.clone(),
            bank_name: Some("中国农业银行".into()),
            reason: "重复".into(),
            document_ref: "x".into(),
            ..Default::default()
        })
        .await
        .expect_err("no change");
    // It depends on what is registered now, so it is a precondition, not a bad field.
    assert_eq!(same.code(), Code::FailedPrecondition);

    // A change dated before a registration already made would never be in force (the
    // later-registered one wins until the earlier date comes) or would carry one not yet
    // in force into force: refused, naming effective_at, whether sent or left as now.
    let back = |effective_at: Option<prost_types::Timestamp>| pb::RegisterAccountChangeRequest {
        request_id: rid(),
        special_account_id: id.clone(),
        account_number: Some("2400000000000000002".into()),
        reason: "更正账号".into(),
        document_ref: "云0102财〔2024〕4号".into(),
        effective_at,
        ..Default::default()
    };
    let before_opening = prost_types::Timestamp {
        seconds: opened_at.seconds - 86_400,
        nanos: 0,
    };
    let refused = specials
        .register_account_change(back(Some(before_opening)))
        .await
        .expect_err("a change dated before the opening");
    refused_on_effective_at(&refused);
    let ahead = prost_types::Timestamp {
        seconds: opened_at.seconds + 30 * 86_400,
        nanos: 0,
    };
    let scheduled = specials
        .register_account_change(back(Some(ahead)))
        .await
        .expect("a change scheduled a month ahead")
        .into_inner();
    assert_eq!(
        scheduled.account_number, "2400000000000000001",
        "not yet in force"
    );
    let mut now = back(None);
    now.account_number = None;
    now.bank_branch = Some("昆明分行营业部".into());
    let refused = specials
        .register_account_change(now)
        .await
        .expect_err("a change effective now, after one scheduled later");
    refused_on_effective_at(&refused);
    assert!(refused.message().contains("unset (now)"), "{refused:?}");

    // Listing by court prefix: the province lists its courts, another does not.
    let mut other = open_special_request("云01", "9999");
    other.account_name = "昆明中院执行款专户".into();
    specials
        .open_special_account(other)
        .await
        .expect("second court");
    specials
        .open_special_account(open_special_request("鲁1426", "8888"))
        .await
        .expect("other province");
    let yunnan = specials
        .list_special_accounts(pb::ListSpecialAccountsRequest {
            court_code: "云".into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(yunnan.special_accounts.len(), 1);
    let page2 = specials
        .list_special_accounts(pb::ListSpecialAccountsRequest {
            court_code: "云".into(),
            page_size: 10,
            page_token: yunnan.next_page_token.clone(),
        })
        .await
        .expect("list page 2")
        .into_inner();
    let courts: Vec<_> = yunnan
        .special_accounts
        .iter()
        .chain(page2.special_accounts.iter())
        .map(|s| s.court_code.clone())
        .collect();
    assert_eq!(courts, ["云01", "云0102"]);

    let closed = specials
        .close_special_account(pb::CloseSpecialAccountRequest {
            request_id: rid(),
            special_account_id: id.clone(),
            reason: "撤销专户".into(),
            document_ref: "云0102财〔2024〕9号".into(),
        })
        .await
        .expect("empty account closes")
        .into_inner();
    assert_eq!(closed.status, pb::SpecialAccountStatus::Closed as i32);
    server.stop().await;
}

/// A special account is closed at zero and nothing pays out of it afterwards, so no
/// money may come back into it either: neither a payment the bank returns nor a
/// reversal of a reversal. Either would leave money there for good.
#[tokio::test]
async fn a_closed_special_account_takes_no_money_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE_A).await;
    open_case(&mut cases, &special.special_account_id, CASE_B).await;
    cases
        .record_receipt(receipt_request(CASE_A, "80.00", "REF-1"))
        .await
        .expect("receipt");
    let paid = pay(&mut cases, CASE_A, "80.00", "PAY-1").await;
    // Case B: a receipt reversed, so its case is back at zero.
    let wrong = cases
        .record_receipt(receipt_request(CASE_B, "5.00", "REF-2"))
        .await
        .expect("receipt")
        .into_inner();
    let correction = cases
        .reverse_entry(pb::ReverseEntryRequest {
            request_id: rid(),
            sequence: wrong.sequence,
            reason: "误入账".into(),
        })
        .await
        .expect("reversed")
        .into_inner();
    specials
        .close_special_account(pb::CloseSpecialAccountRequest {
            request_id: rid(),
            special_account_id: special.special_account_id.clone(),
            reason: "撤销专户".into(),
            document_ref: "云0102财〔2024〕9号".into(),
        })
        .await
        .expect("closes at zero");

    let returned = cases
        .record_returned_payment(pb::RecordReturnedPaymentRequest {
            request_id: rid(),
            disbursement_id: paid,
            bank_ref: "RET-1".into(),
            reason: "账户冻结".into(),
        })
        .await
        .expect_err("the special account is closed");
    assert_eq!(returned.code(), Code::FailedPrecondition, "{returned:?}");
    let closed = format!("special account {} is closed", special.special_account_id);
    assert!(returned.message().contains(&closed), "{returned:?}");
    let undone = cases
        .reverse_entry(pb::ReverseEntryRequest {
            request_id: rid(),
            sequence: correction.sequence,
            reason: "撤销冲正".into(),
        })
        .await
        .expect_err("the special account is closed");
    assert_eq!(undone.code(), Code::FailedPrecondition, "{undone:?}");
    assert!(undone.message().contains(&closed), "{undone:?}");
    assert_eq!(balances(&mut cases, CASE_A).await.balance, "0.00");
    assert_eq!(balances(&mut cases, CASE_B).await.balance, "0.00");
    server.stop().await;
}

/// A reversal may itself be reversed, but whoever decides whether an entry is in
/// force follows a bounded chain: past it, a reversal is refused, not miscounted.
#[tokio::test]
async fn a_chain_of_reversals_has_a_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE_A).await;
    let mut last = cases
        .record_receipt(receipt_request(CASE_A, "10.00", "REF-1"))
        .await
        .expect("receipt")
        .into_inner()
        .sequence;
    let reverse = |sequence| pb::ReverseEntryRequest {
        request_id: rid(),
        sequence,
        reason: "冲正".into(),
    };
    for n in 1..=63 {
        last = cases
            .reverse_entry(reverse(last))
            .await
            .unwrap_or_else(|e| panic!("reversal {n}: {e:?}"))
            .into_inner()
            .sequence;
    }
    // 63 reversals: an odd number, so the receipt is undone.
    assert_eq!(balances(&mut cases, CASE_A).await.balance, "0.00");
    let refused = cases
        .reverse_entry(reverse(last))
        .await
        .expect_err("a 64th reversal");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("chain of 63 reversals"),
        "{refused:?}"
    );
    assert_eq!(balances(&mut cases, CASE_A).await.balance, "0.00");
    server.stop().await;
}

#[tokio::test]
async fn special_account_with_money_cannot_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE_A).await;
    cases
        .record_receipt(receipt_request(CASE_A, "1.00", "REF-1"))
        .await
        .expect("receipt");
    let refused = specials
        .close_special_account(pb::CloseSpecialAccountRequest {
            request_id: rid(),
            special_account_id: special.special_account_id.clone(),
            reason: "撤销".into(),
            document_ref: "x".into(),
        })
        .await
        .expect_err("holds money");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test]
async fn payee_other_than_confirmed_applicant_needs_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE_A).await;
    cases
        .record_receipt(receipt_request(CASE_A, "10.00", "REF-1"))
        .await
        .expect("receipt");
    let mut other = disbursement_request(CASE_A, "5.00");
    other.payee_account = "6200000000000000999".into();
    let refused = cases
        .request_disbursement(other.clone())
        .await
        .expect_err("needs exception reason");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("exception_reason"),
        "{}",
        refused.message()
    );
    other.request_id = rid();
    other.exception_reason = "申请人书面申请变更收款账户".into();
    let d = cases
        .request_disbursement(other)
        .await
        .expect("with reason")
        .into_inner();
    assert_eq!(d.exception_reason, "申请人书面申请变更收款账户");
    server.stop().await;
}

#[tokio::test]
async fn case_must_belong_to_the_court_of_its_special_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    let wrong = cases
        .open_case_account(open_case_request(
            &special.special_account_id,
            "（2022）鲁1426执547号",
            "1.00",
        ))
        .await
        .expect_err("other court");
    assert_eq!(wrong.code(), Code::InvalidArgument);
    assert!(wrong.message().contains("case_number"));
    server.stop().await;
}

#[tokio::test]
async fn money_returned_after_closure_can_be_paid_out_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE_A).await;
    cases
        .record_receipt(receipt_request(CASE_A, "80.00", "REF-1"))
        .await
        .expect("receipt");
    let d = cases
        .request_disbursement(disbursement_request(CASE_A, "80.00"))
        .await
        .expect("request")
        .into_inner();
    let step = |request_id: String| pb::ApproveDisbursementRequest {
        request_id,
        disbursement_id: d.disbursement_id.clone(),
        approval_ref: "批".into(),
    };
    cases
        .approve_disbursement(step(rid()))
        .await
        .expect("approve");
    cases
        .confirm_disbursement_paid(pb::ConfirmDisbursementPaidRequest {
            request_id: rid(),
            disbursement_id: d.disbursement_id.clone(),
            bank_ref: "PAY-1".into(),
            paid_at: None,
        })
        .await
        .expect("paid");
    cases
        .close_case_account(pb::CloseCaseAccountRequest {
            request_id: rid(),
            case_number: CASE_A.into(),
            closure_method: pb::ClosureMethod::Completed as i32,
            reason: "执行完毕".into(),
        })
        .await
        .expect("closes at zero");
    cases
        .record_returned_payment(pb::RecordReturnedPaymentRequest {
            request_id: rid(),
            disbursement_id: d.disbursement_id.clone(),
            bank_ref: "RET-1".into(),
            reason: "账户冻结".into(),
        })
        .await
        .expect("the return is recorded on the closed case");
    assert_eq!(balances(&mut cases, CASE_A).await.balance, "80.00");
    // The money is not stuck: it can be paid out again; new money cannot come in.
    cases
        .request_disbursement(disbursement_request(CASE_A, "80.00"))
        .await
        .expect("paid out again from the closed case");
    let refused = cases
        .record_receipt(receipt_request(CASE_A, "1.00", "REF-2"))
        .await
        .expect_err("a closed case takes no new money");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test]
async fn a_reversed_receipt_is_not_reported_as_credited_and_a_reversal_can_be_undone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE_A).await;
    let receipt = cases
        .record_receipt(receipt_request(CASE_A, "30.00", "BANK-X"))
        .await
        .expect("receipt")
        .into_inner();
    let reversal = cases
        .reverse_entry(pb::ReverseEntryRequest {
            request_id: rid(),
            sequence: receipt.sequence,
            reason: "误记".into(),
        })
        .await
        .expect("reversed")
        .into_inner();
    assert_eq!(balances(&mut cases, CASE_A).await.balance, "0.00");
    // The bank sends the same transaction again: it is not silently "already done".
    let resent = cases
        .record_receipt(receipt_request(CASE_A, "30.00", "BANK-X"))
        .await
        .expect_err("a reversed receipt is not reported as credited");
    assert_eq!(resent.code(), Code::FailedPrecondition);
    assert!(
        resent.message().contains(&reversal.sequence.to_string()),
        "{}",
        resent.message()
    );
    // The reversal was the mistake: reversing it credits the money again.
    cases
        .reverse_entry(pb::ReverseEntryRequest {
            request_id: rid(),
            sequence: reversal.sequence,
            reason: "冲正有误".into(),
        })
        .await
        .expect("a reversal can be reversed");
    assert_eq!(balances(&mut cases, CASE_A).await.balance, "30.00");
    let again = cases
        .record_receipt(receipt_request(CASE_A, "30.00", "BANK-X"))
        .await
        .expect("in force again: the original entry is the answer")
        .into_inner();
    assert_eq!(again.sequence, receipt.sequence);
    server.stop().await;
}
