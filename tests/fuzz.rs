//! Hostile input, fuzzed with proptest (cargo-fuzz needs a nightly compiler this
//! project does not use): case numbers, court codes, amounts and CSV rows from random
//! and near-valid text never panic, are accepted or refused with a reason, and what is
//! accepted round-trips. A bounded number of cases each, so CI stays fast; raise
//! PROPTEST_CASES to fuzz longer.

mod common;

use case_escrow::api::pb;
use case_escrow::cli::reconcile as rc;
use case_escrow::domain::{Amount, CaseNumber, CourtCode};
use case_escrow::reconcile::case_flow::{parse_row, RawRow};
use common::*;
use proptest::prelude::*;
use tonic::Code;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text near a case number: the right pieces in random order and amounts.
fn near_case_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[（(]{0,2}[0-9]{0,6}[）)]{0,2}(云|京|最高法|兵|新)?[0-9]{0,8}[知金海铁]?(执恢|执保|执异|执复|执监|执协|执他|司救执|财保|执)?[0-9]{0,12}号?(之[一二三十百])?[ \\t]*",
        "[\\PC]{0,40}",
    ]
}

fn near_court_code() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "(云|京|最高法|兵|新|[a-z])?[0-9０-９]{0,8}[ ]?",
    ]
}

fn near_amount() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[-+ ]?[0-9_,]{0,16}(\\.[0-9]{0,4})?(e[0-9]{1,3})?",
        "[0-9]{1,30}\\.[0-9]{1,3}",
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn case_numbers_parse_or_are_refused_and_round_trip(text in near_case_number()) {
        if let Ok(n) = CaseNumber::parse(&text) {
            let again = CaseNumber::parse(n.as_str());
            prop_assert_eq!(again.as_ref().ok(), Some(&n), "{} did not round-trip", n);
            prop_assert!(n.court().as_str().len() <= text.len() * 4);
        }
    }

    #[test]
    fn court_codes_parse_or_are_refused_and_round_trip(text in near_court_code()) {
        if let Ok(c) = CourtCode::parse(&text) {
            prop_assert_eq!(CourtCode::parse(c.as_str()).ok(), Some(c.clone()));
            prop_assert!(c.covers(&c));
        }
    }

    #[test]
    fn amounts_parse_exactly_or_are_refused(text in near_amount()) {
        if let Ok(a) = Amount::parse(&text) {
            prop_assert!(a.fen().0 > 0);
            prop_assert_eq!(Amount::parse(&a.to_string()).ok(), Some(a));
        }
    }

    #[test]
    fn case_flow_rows_are_parsed_or_refused(
        fields in proptest::collection::vec(prop_oneof![near_case_number(), near_amount(), near_court_code()], 10),
    ) {
        let raw = RawRow {
            line: 1,
            case_number: fields[0].clone(),
            court_code: fields[1].clone(),
            filed_on: fields[2].clone(),
            status: fields[3].clone(),
            closure_method: fields[4].clone(),
            closed_on: fields[5].clone(),
            target_amount: fields[6].clone(),
            received_amount: fields[7].clone(),
            disbursed_amount: fields[8].clone(),
            paid_outside_court: fields[9].clone(),
            unreadable: String::new(),
        };
        if let Err(reason) = parse_row(&raw) {
            prop_assert!(!reason.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Whole CSV files of random bytes and random fields, read as the command line
    /// reads them and parsed as the server parses their rows.
    #[test]
    fn csv_files_of_any_bytes_are_read_line_by_line(
        rows in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![near_case_number(), near_amount(), "[,\"\\n\\r]{0,3}[a-z]{0,3}"],
                0..12,
            ),
            0..20,
        ),
        junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("case-flow.csv");
        let mut bytes = rc::CASE_FLOW_COLUMNS.join(",").into_bytes();
        bytes.push(b'\n');
        for row in &rows {
            bytes.extend_from_slice(row.join(",").as_bytes());
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(&junk);
        std::fs::write(&path, &bytes).expect("written");
        let mut lines = rc::CsvLines::open(&path, &rc::CASE_FLOW_COLUMNS, &[]).expect("opens");
        let breaks = bytes.iter().filter(|b| **b == b'\n' || **b == b'\r').count();
        let mut read = 0;
        while let Ok(Some(line)) = lines.next_line() {
            read += 1;
            prop_assert!(read <= breaks + 1, "more lines than the file holds");
            let row = rc::case_flow_row(line);
            let raw = RawRow {
                line: row.line,
                case_number: row.case_number,
                court_code: row.court_code,
                filed_on: row.filed_on,
                status: row.status,
                closure_method: row.closure_method,
                closed_on: row.closed_on,
                target_amount: row.target_amount,
                received_amount: row.received_amount,
                disbursed_amount: row.disbursed_amount,
                paid_outside_court: row.paid_outside_court,
                unreadable: row.unreadable,
            };
            let _ = parse_row(&raw);
        }
    }
}

/// Random fields sent to a real server: every refusal is the client's (never
/// INTERNAL or UNKNOWN), and the server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_fields_over_grpc_are_refused_cleanly() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102")
        .await
        .special_account_id;
    let mut runner = TestRunner::deterministic();
    let fields = (
        near_case_number(),
        near_amount(),
        near_court_code(),
        any::<String>(),
    );
    for _ in 0..64 {
        let (number, amount, court, text) =
            fields.new_tree(&mut runner).expect("a value").current();
        let mut receipt = receipt_request(&number, &amount, &rid());
        receipt.payer_name = text.clone();
        let outcomes = [
            cases.record_receipt(receipt).await.err(),
            specials
                .open_special_account(open_special_request(&court, &text))
                .await
                .err(),
            cases
                .open_case_account(open_case_request(&special, &number, &amount))
                .await
                .err(),
            cases
                .request_disbursement(disbursement_request(&number, &amount))
                .await
                .err(),
            specials
                .list_special_accounts(pb::ListSpecialAccountsRequest {
                    court_code: court.clone(),
                    page_size: text.len() as u32,
                    page_token: text.clone(),
                })
                .await
                .err(),
        ];
        // Only the answers a client's mistake may get: a panic in a handler, or the
        // connection dropped by a crash, would show as INTERNAL, UNKNOWN, UNAVAILABLE
        // or CANCELLED.
        for status in outcomes.into_iter().flatten() {
            assert!(
                matches!(
                    status.code(),
                    Code::InvalidArgument
                        | Code::NotFound
                        | Code::FailedPrecondition
                        | Code::AlreadyExists
                        | Code::PermissionDenied
                        | Code::OutOfRange
                ),
                "{number:?} {amount:?} {court:?} {text:?}: {status:?}"
            );
        }
    }
    let status_after = cases
        .get_case_account(pb::GetCaseAccountRequest {
            account: Some(pb::get_case_account_request::Account::CaseNumber(
                "（2024）云0102执1号".into(),
            )),
            as_of: None,
        })
        .await
        .expect_err("no such case, but an answer");
    assert_eq!(
        status_after.code(),
        Code::NotFound,
        "the server still answers, and correctly: {status_after:?}"
    );
    server.stop().await;
}
