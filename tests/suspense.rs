//! Unidentified receipts (不明款) and deferrals (暂缓发放) over real gRPC: the suspense
//! account, RecordReceipt's switch to it, assignment, return, deferrals; bad input
//! named and nothing written; everything read back after a restart.

mod common;

use case_escrow::api::pb::{self, record_receipt_request::Account};
use case_escrow::domain::VirtualAccountNumber;
use common::*;
use tonic::Code;

const CASE: &str = "（2024）云0102执100号";

fn unmatched(special: &str, van: &str, bank_ref: &str) -> pb::RecordReceiptRequest {
    pb::RecordReceiptRequest {
        account: Some(Account::VirtualAccountNumber(van.into())),
        to_suspense_if_unmatched: true,
        special_account_id: special.into(),
        ..receipt_request(CASE, "80.00", bank_ref)
    }
}

fn refused_naming(status: &tonic::Status, code: Code, field: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    if code == Code::InvalidArgument {
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "{status:?}"
        );
    }
}

#[tokio::test]
async fn unmatched_money_goes_to_suspense_and_out_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102")
        .await
        .special_account_id;
    let case = open_case(&mut cases, &special, CASE).await;

    // An unknown number with valid check digits, and a mistyped one.
    let unknown = VirtualAccountNumber::issue(1, 999).to_string();
    let mut typo = case.virtual_account_number.clone().into_bytes();
    typo[3] = if typo[3] == b'9' { b'0' } else { typo[3] + 1 };
    let typo = String::from_utf8(typo).expect("digits");
    for (van, r) in [(&unknown, "U-1"), (&typo, "U-2")] {
        // Without the switch: refused, nothing written.
        let mut plain = unmatched(&special, van, r);
        plain.to_suspense_if_unmatched = false;
        let refused = cases.record_receipt(plain).await.expect_err("unmatched");
        assert!(
            matches!(refused.code(), Code::NotFound | Code::InvalidArgument),
            "{refused:?}"
        );
        let entry = cases
            .record_receipt(unmatched(&special, van, r))
            .await
            .expect("to suspense")
            .into_inner();
        assert_eq!(entry.kind(), pb::EntryKind::UnidentifiedReceipt);
        assert!(!entry.unidentified_receipt_id.is_empty());
        assert_eq!(entry.case_number, "");
    }
    // The switch needs the special account the money arrived at.
    let mut no_special = unmatched(&special, &unknown, "U-3");
    no_special.special_account_id.clear();
    let refused = cases
        .record_receipt(no_special)
        .await
        .expect_err("no special");
    refused_naming(&refused, Code::InvalidArgument, "special_account_id");
    // A number that matches goes to its case as usual.
    let matched = cases
        .record_receipt(unmatched(&special, &case.virtual_account_number, "M-1"))
        .await
        .expect("matched")
        .into_inner();
    assert_eq!(matched.kind(), pb::EntryKind::Receipt);
    assert_eq!(matched.running_balance, "80.00");
    // The same bank transaction sent again is the same entry.
    let again = cases
        .record_receipt(unmatched(&special, &unknown, "U-1"))
        .await
        .expect("same bank_ref")
        .into_inner();
    let listed = cases
        .list_unidentified_receipts(pb::ListUnidentifiedReceiptsRequest {
            special_account_id: special.clone(),
            only_in_suspense: true,
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.unidentified_receipts.len(), 1);
    assert_eq!(
        listed.unidentified_receipts[0].unidentified_receipt_id,
        again.unidentified_receipt_id
    );
    assert_eq!(listed.unidentified_receipts[0].account_given, unknown);
    let page2 = cases
        .list_unidentified_receipts(pb::ListUnidentifiedReceiptsRequest {
            special_account_id: special.clone(),
            only_in_suspense: true,
            page_size: 10,
            page_token: listed.next_page_token.clone(),
        })
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(page2.unidentified_receipts.len(), 1);
    assert_eq!(page2.next_page_token, "");
    let first = listed.unidentified_receipts[0]
        .unidentified_receipt_id
        .clone();
    let second = page2.unidentified_receipts[0]
        .unidentified_receipt_id
        .clone();

    let account = |s: &str| pb::GetSpecialAccountRequest {
        special_account_id: s.into(),
        as_of: None,
    };
    let held = specials
        .get_special_account(account(&special))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(
        (held.bank_balance.as_str(), held.suspense_balance.as_str()),
        ("240.00", "160.00")
    );
    let closing = specials
        .close_special_account(pb::CloseSpecialAccountRequest {
            request_id: rid(),
            special_account_id: special.clone(),
            reason: "撤销".into(),
            document_ref: "x".into(),
        })
        .await
        .expect_err("suspense is not empty");
    assert_eq!(closing.code(), Code::FailedPrecondition);

    // Claimed to its case, and paid back.
    let assigned = cases
        .assign_unidentified_receipt(pb::AssignUnidentifiedReceiptRequest {
            request_id: rid(),
            unidentified_receipt_id: first.clone(),
            case_number: "(2024)云0102执100号".into(),
        })
        .await
        .expect("assign")
        .into_inner();
    assert_eq!(assigned.state(), pb::UnidentifiedReceiptState::Assigned);
    assert_eq!(assigned.case_number, CASE);
    assert_eq!(balances(&mut cases, CASE).await.balance, "160.00");
    let twice = cases
        .assign_unidentified_receipt(pb::AssignUnidentifiedReceiptRequest {
            request_id: rid(),
            unidentified_receipt_id: first.clone(),
            case_number: CASE.into(),
        })
        .await
        .expect_err("assigned once");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    let returned = cases
        .return_unidentified_receipt(pb::ReturnUnidentifiedReceiptRequest {
            request_id: rid(),
            unidentified_receipt_id: second.clone(),
            reason: "无法查明，原路退回".into(),
            bank_ref: "BACK-2".into(),
        })
        .await
        .expect("return")
        .into_inner();
    assert_eq!(returned.state(), pb::UnidentifiedReceiptState::Returned);
    let statement = cases
        .list_entries(pb::ListEntriesRequest {
            case_number: CASE.into(),
            ..Default::default()
        })
        .await
        .expect("statement")
        .into_inner()
        .entries;
    assert_eq!(
        statement
            .last()
            .map(|e| (e.kind(), e.running_balance.clone())),
        Some((pb::EntryKind::UnidentifiedReceiptAssigned, "160.00".into()))
    );
    let after = specials
        .get_special_account(account(&special))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(
        (after.bank_balance.as_str(), after.suspense_balance.as_str()),
        ("160.00", "0.00")
    );

    // A closed case's money goes to suspense too.
    cases
        .open_case_account(open_case_request(&special, "（2024）云0102执101号", ""))
        .await
        .expect("second case");
    cases
        .close_case_account(pb::CloseCaseAccountRequest {
            request_id: rid(),
            case_number: "（2024）云0102执101号".into(),
            closure_method: pb::ClosureMethod::Withdrawn as i32,
            reason: "销案".into(),
        })
        .await
        .expect("closed");
    let mut to_closed = unmatched(&special, "", "C-1");
    to_closed.account = Some(Account::CaseNumber("（2024）云0102执101号".into()));
    let entry = cases
        .record_receipt(to_closed)
        .await
        .expect("closed case")
        .into_inner();
    assert_eq!(entry.kind(), pb::EntryKind::UnidentifiedReceipt);
    let u = cases
        .get_unidentified_receipt(pb::GetUnidentifiedReceiptRequest {
            unidentified_receipt_id: entry.unidentified_receipt_id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(u.memo.contains("closed"), "{}", u.memo);

    // Everything reads back the same after a restart (replayed or not).
    drop((specials, cases));
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let restarted = specials
        .get_special_account(account(&special))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(restarted.suspense_balance, "80.00");
    let u2 = cases
        .get_unidentified_receipt(pb::GetUnidentifiedReceiptRequest {
            unidentified_receipt_id: second,
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(u2, returned);
    drop((specials, cases));
    server.stop().await;
}

/// The principal id of a token.
async fn whoami(server: &TestServer, token: &str) -> String {
    pb::principals_client::PrincipalsClient::new(server.channel_as(token).await)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("who am i")
        .into_inner()
        .principal_id
}

#[tokio::test]
async fn a_deferral_waits_for_an_approver_then_ends_once() {
    use case_escrow::domain::Role;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let special = open_special(&mut specials, "云0102")
        .await
        .special_account_id;
    // A case officer who is also an approver: four eyes still keeps it from approving
    // its own deferral.
    let both = principal(&server, &[Role::Clerk, Role::Approver], &["云0102"]).await;
    let approver = principal(&server, &[Role::Approver], &["云0102"]).await;
    let mut clerk = pb::case_ledger_client::CaseLedgerClient::new(server.channel_as(&both).await);
    let mut other =
        pb::case_ledger_client::CaseLedgerClient::new(server.channel_as(&approver).await);
    open_case(&mut server.cases().await, &special, CASE).await;
    let request = pb::RecordDeferralRequest {
        request_id: rid(),
        case_number: CASE.into(),
        reason: pb::DeferralReason::Frozen as i32,
        approval_ref: "暂缓审批2024-1".into(),
        note: "另案冻结".into(),
    };
    let d = clerk
        .record_deferral(request.clone())
        .await
        .expect("deferral")
        .into_inner();
    assert!(!d.active, "{d:?}");
    assert_eq!(d.state(), pb::DeferralState::PendingApproval);
    assert_eq!(d.started_on, "");
    assert_eq!(d.recorded_by, whoami(&server, &both).await);
    assert_eq!(d.approved_by, "");
    // A retry is the same deferral.
    let retried = clerk
        .record_deferral(request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retried, d);
    // Not yet approved: it cannot end, and its recorder may not approve it.
    let end = pb::EndDeferralRequest {
        request_id: rid(),
        deferral_id: d.deferral_id.clone(),
    };
    let early = clerk.end_deferral(end.clone()).await.expect_err("pending");
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    assert!(early.message().contains("awaits"), "{early:?}");
    let own = clerk
        .approve_deferral(pb::ApproveDeferralRequest {
            request_id: rid(),
            deferral_id: d.deferral_id.clone(),
        })
        .await
        .expect_err("four eyes");
    assert_eq!(own.code(), Code::PermissionDenied, "{own:?}");
    assert!(own.message().contains("four eyes"), "{own:?}");
    let approve = pb::ApproveDeferralRequest {
        request_id: rid(),
        deferral_id: d.deferral_id.clone(),
    };
    let approved = other
        .approve_deferral(approve.clone())
        .await
        .expect("another approver approves")
        .into_inner();
    assert!(approved.active);
    assert_eq!(approved.state(), pb::DeferralState::Active);
    assert_eq!(approved.approved_by, whoami(&server, &approver).await);
    assert!(approved.approved_at.is_some());
    assert_eq!(approved.started_on, day(0));
    assert!(approved.sequence > d.sequence);
    // Retries answer as the first time, even after the deferral moved on.
    assert_eq!(
        other
            .approve_deferral(approve.clone())
            .await
            .expect("retry")
            .into_inner(),
        approved
    );
    assert_eq!(
        clerk
            .record_deferral(request)
            .await
            .expect("retry")
            .into_inner(),
        d
    );
    let twice = other
        .approve_deferral(pb::ApproveDeferralRequest {
            request_id: rid(),
            ..approve
        })
        .await
        .expect_err("approved once");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    let ended = clerk
        .end_deferral(end.clone())
        .await
        .expect("ends")
        .into_inner();
    assert!(!ended.active);
    assert_eq!(ended.state(), pb::DeferralState::Ended);
    assert_eq!(ended.approved_by, approved.approved_by);
    let again = clerk
        .end_deferral(pb::EndDeferralRequest {
            request_id: rid(),
            ..end
        })
        .await
        .expect_err("ends once");
    assert_eq!(again.code(), Code::FailedPrecondition);
    let got = clerk
        .get_deferral(pb::GetDeferralRequest {
            deferral_id: d.deferral_id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, ended);
    // A rejected deferral: it needs a reason, and then it is over.
    let second = clerk
        .record_deferral(pb::RecordDeferralRequest {
            request_id: rid(),
            case_number: CASE.into(),
            reason: pb::DeferralReason::Other as i32,
            approval_ref: "暂缓审批2024-2".into(),
            note: String::new(),
        })
        .await
        .expect("second deferral")
        .into_inner();
    let no_reason = other
        .reject_deferral(pb::RejectDeferralRequest {
            request_id: rid(),
            deferral_id: second.deferral_id.clone(),
            reason: String::new(),
        })
        .await
        .expect_err("a rejection names its reason");
    refused_naming(&no_reason, Code::InvalidArgument, "reason");
    let rejected = other
        .reject_deferral(pb::RejectDeferralRequest {
            request_id: rid(),
            deferral_id: second.deferral_id.clone(),
            reason: "无冻结文书".into(),
        })
        .await
        .expect("rejected")
        .into_inner();
    assert!(!rejected.active);
    assert_eq!(rejected.state(), pb::DeferralState::Rejected);
    assert_eq!(rejected.rejected_by, whoami(&server, &approver).await);
    assert_eq!(rejected.rejection_reason, "无冻结文书");
    assert_eq!(rejected.started_on, "");
    for refused in [
        other
            .approve_deferral(pb::ApproveDeferralRequest {
                request_id: rid(),
                deferral_id: second.deferral_id.clone(),
            })
            .await
            .expect_err("rejected"),
        clerk
            .end_deferral(pb::EndDeferralRequest {
                request_id: rid(),
                deferral_id: second.deferral_id.clone(),
            })
            .await
            .expect_err("rejected"),
    ] {
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("rejected"), "{refused:?}");
    }
    // The statement lists each step.
    let kinds: Vec<pb::EntryKind> = clerk
        .list_entries(pb::ListEntriesRequest {
            case_number: CASE.into(),
            ..Default::default()
        })
        .await
        .expect("statement")
        .into_inner()
        .entries
        .iter()
        .map(|e| e.kind())
        .filter(|k| k.as_str_name().contains("DEFERRAL"))
        .collect();
    use pb::EntryKind as K;
    assert_eq!(
        kinds,
        vec![
            K::DeferralRequested,
            K::DeferralApproved,
            K::DeferralEnded,
            K::DeferralRequested,
            K::DeferralRejected
        ]
    );
    drop((specials, clerk, other));
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102")
        .await
        .special_account_id;
    open_case(&mut cases, &special, CASE).await;
    let before = balances(&mut cases, CASE).await;
    let seq_before = cases
        .get_case_account(pb::GetCaseAccountRequest {
            account: Some(pb::get_case_account_request::Account::CaseNumber(
                CASE.into(),
            )),
            as_of: None,
        })
        .await
        .expect("read")
        .into_inner()
        .as_of_sequence;
    let unidentified = |f: &dyn Fn(&mut pb::RecordUnidentifiedReceiptRequest)| {
        let mut r = pb::RecordUnidentifiedReceiptRequest {
            request_id: rid(),
            special_account_id: special.clone(),
            amount: "1.00".into(),
            payer_name: "某人".into(),
            payer_account: String::new(),
            bank_ref: rid(),
            value_date: "2024-03-01".into(),
            memo: String::new(),
        };
        f(&mut r);
        r
    };
    let table: Vec<(pb::RecordUnidentifiedReceiptRequest, Code, &str)> = vec![
        (
            unidentified(&|r| r.amount = "1.001".into()),
            Code::InvalidArgument,
            "amount",
        ),
        (
            unidentified(&|r| r.amount = "0".into()),
            Code::InvalidArgument,
            "amount",
        ),
        (
            unidentified(&|r| r.special_account_id = "x".into()),
            Code::InvalidArgument,
            "special_account_id",
        ),
        (
            unidentified(&|r| r.payer_name.clear()),
            Code::InvalidArgument,
            "payer_name",
        ),
        (
            unidentified(&|r| r.bank_ref = "有空格 x".into()),
            Code::InvalidArgument,
            "bank_ref",
        ),
        (
            unidentified(&|r| r.value_date = "2024-02-30".into()),
            Code::InvalidArgument,
            "value_date",
        ),
        (
            // A typo for 2024: money is recorded once it has arrived.
            unidentified(&|r| r.value_date = "2042-03-01".into()),
            Code::InvalidArgument,
            "value_date",
        ),
        (
            unidentified(&|r| r.request_id.clear()),
            Code::InvalidArgument,
            "request_id",
        ),
        (
            unidentified(&|r| r.special_account_id = "0192f0c4-7b7e-7c1a-9c5e-2f7c1b0c9a11".into()),
            Code::NotFound,
            "special_account_id",
        ),
    ];
    for (request, code, field) in table {
        let refused = cases
            .record_unidentified_receipt(request)
            .await
            .expect_err(field);
        refused_naming(&refused, code, field);
    }
    let refused = cases
        .assign_unidentified_receipt(pb::AssignUnidentifiedReceiptRequest {
            request_id: rid(),
            unidentified_receipt_id: "nope".into(),
            case_number: CASE.into(),
        })
        .await
        .expect_err("bad id");
    refused_naming(&refused, Code::InvalidArgument, "unidentified_receipt_id");
    let refused = cases
        .return_unidentified_receipt(pb::ReturnUnidentifiedReceiptRequest {
            request_id: rid(),
            unidentified_receipt_id: "0192f0c4-7b7e-7c1a-9c5e-2f7c1b0c9a11".into(),
            reason: String::new(),
            bank_ref: String::new(),
        })
        .await
        .expect_err("no reason");
    refused_naming(&refused, Code::InvalidArgument, "reason");
    let refused = cases
        .record_deferral(pb::RecordDeferralRequest {
            request_id: rid(),
            case_number: CASE.into(),
            reason: 0,
            approval_ref: "批".into(),
            note: String::new(),
        })
        .await
        .expect_err("no reason");
    refused_naming(&refused, Code::InvalidArgument, "reason");
    let refused = cases
        .record_deferral(pb::RecordDeferralRequest {
            request_id: rid(),
            case_number: CASE.into(),
            reason: pb::DeferralReason::Other as i32,
            approval_ref: String::new(),
            note: String::new(),
        })
        .await
        .expect_err("no approval");
    refused_naming(&refused, Code::InvalidArgument, "approval_ref");
    let refused = cases
        .end_deferral(pb::EndDeferralRequest {
            request_id: rid(),
            deferral_id: "0192f0c4-7b7e-7c1a-9c5e-2f7c1b0c9a11".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(refused.code(), Code::NotFound);
    let refused = cases
        .approve_deferral(pb::ApproveDeferralRequest {
            request_id: rid(),
            deferral_id: "nope".into(),
        })
        .await
        .expect_err("bad id");
    refused_naming(&refused, Code::InvalidArgument, "deferral_id");
    let refused = cases
        .reject_deferral(pb::RejectDeferralRequest {
            request_id: rid(),
            deferral_id: "0192f0c4-7b7e-7c1a-9c5e-2f7c1b0c9a11".into(),
            reason: "无".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(refused.code(), Code::NotFound);
    // Nothing was written.
    assert_eq!(balances(&mut cases, CASE).await, before);
    let seq_after = cases
        .get_case_account(pb::GetCaseAccountRequest {
            account: Some(pb::get_case_account_request::Account::CaseNumber(
                CASE.into(),
            )),
            as_of: None,
        })
        .await
        .expect("read")
        .into_inner()
        .as_of_sequence;
    assert_eq!(seq_after, seq_before);
    drop((specials, cases));
    server.stop().await;
}

/// A receipt that names the special account the money arrived at is credited only to a
/// case under that account: the bank reference is that account's, and crediting a
/// case elsewhere would let one transfer be recorded in two special accounts.
#[tokio::test]
async fn a_receipt_naming_another_special_account_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let here = open_special(&mut specials, "云0102")
        .await
        .special_account_id;
    let elsewhere = open_special(&mut specials, "云0103")
        .await
        .special_account_id;
    open_case(&mut cases, &here, CASE).await;

    let wrong = pb::RecordReceiptRequest {
        special_account_id: elsewhere.clone(),
        ..receipt_request(CASE, "80.00", "B-1")
    };
    let refused = cases
        .record_receipt(wrong.clone())
        .await
        .expect_err("the case is under another special account");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().starts_with("special_account_id:"),
        "{refused:?}"
    );
    let batch = cases
        .record_receipts(pb::RecordReceiptsRequest {
            request_id: String::new(),
            receipts: vec![wrong],
        })
        .await
        .expect("answered item by item")
        .into_inner();
    match &batch.results[0].result {
        Some(pb::receipt_result::Result::Error(e)) => {
            assert_eq!(e.code, Code::FailedPrecondition as i32, "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(balances(&mut cases, CASE).await.received, "0.00");

    // Naming its own special account, it is recorded, and a retry is the same entry.
    let right = pb::RecordReceiptRequest {
        special_account_id: here.clone(),
        ..receipt_request(CASE, "80.00", "B-1")
    };
    let entry = cases
        .record_receipt(right.clone())
        .await
        .expect("recorded")
        .into_inner();
    let again = cases
        .record_receipt(right)
        .await
        .expect("retried")
        .into_inner();
    assert_eq!(again.sequence, entry.sequence);
    assert_eq!(balances(&mut cases, CASE).await.received, "80.00");
    server.stop().await;
}
