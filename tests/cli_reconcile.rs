//! The command line's side of reconciliation: CSV files with unreadable lines and
//! missing columns, streamed to a real server; both report files written.

mod common;

use std::io::Write;

use case_escrow::api::pb;
use case_escrow::cli::reconcile as rc;
use common::*;

const CASE: &str = "（2024）云0102执100号";

#[tokio::test]
async fn a_case_flow_file_is_reconciled_line_by_line_into_both_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102")
        .await
        .special_account_id;
    open_case(&mut cases, &special, CASE).await;
    let mut r = receipt_request(CASE, "100.00", "R1");
    r.value_date = day(0);
    cases.record_receipt(r).await.expect("receipt");

    let file = dir.path().join("case-flow.csv");
    let mut f = std::fs::File::create(&file).expect("file");
    // Extra column, reordered columns, a quoted field with a comma, a short line, a
    // line that is not UTF-8, a mismatch, and a valid line after all of them.
    f.write_all(
        "\u{feff}court_code,case_number,filed_on,status,closure_method,closed_on,target_amount,received_amount,disbursed_amount,paid_outside_court,note\n\
         云0102,(2024)云0102执100号,2024-01-02,open,,,100000.00,100.00,0,,\"ok, fine\"\n\
         云0102,（2024）云0102执101号,2024-01-02\n"
            .as_bytes(),
    )
    .expect("write");
    f.write_all(b"\xff\xfe,x,2024-01-02,open,,,,0,0,,\n")
        .expect("write");
    f.write_all("云0102,（2024）云0102执102号,2024-01-02,open,,,,5.00,0,,\n".as_bytes())
        .expect("write");
    drop(f);
    let mut client = rc::connect(&finance_target(&server).await)
        .await
        .expect("connects");
    let report = dir.path().join("out");
    let (summary, rows) = rc::case_flow(
        &mut client,
        &file,
        pb::CaseFlowHeader {
            as_of: day(0),
            ..Default::default()
        },
        &report,
        true,
    )
    .await
    .expect("reconciles");
    assert_eq!(rows, 4);
    assert_eq!((summary.rows, summary.invalid_rows), (4, 2));
    let csv = std::fs::read_to_string(dir.path().join("out.csv")).expect("csv report");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("kind,severity,court_code,case_number"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("INVALID_ROW") && l.contains(",3,") && l.contains("fields")),
        "{csv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("INVALID_ROW") && l.contains(",4,") && l.contains("UTF-8")),
        "{csv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("CASE_MISSING_IN_LEDGER") && l.contains("执102号")),
        "{csv}"
    );
    assert!(
        !csv.contains("执100号,"),
        "the agreeing case is not reported: {csv}"
    );
    let jsonl = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("jsonl report");
    let values: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        values.len(),
        lines.len(),
        "one JSON line per discrepancy plus the summary"
    );
    let last = values.last().expect("summary");
    assert_eq!(last["type"], "summary");
    assert_eq!(last["rows"], 4);
    assert!(rc::case_flow_table(&summary).contains("云0102"));

    // A file without a required column: reported at line 1, every row still read.
    let bad = dir.path().join("no-status.csv");
    std::fs::write(
        &bad,
        "case_number,court_code,filed_on,received_amount,disbursed_amount\n（2024）云0102执100号,云0102,2024-01-02,100.00,0\n",
    )
    .expect("write");
    let (summary, _) = rc::case_flow(
        &mut client,
        &bad,
        pb::CaseFlowHeader {
            as_of: day(0),
            ..Default::default()
        },
        &dir.path().join("out2"),
        true,
    )
    .await
    .expect("reconciles");
    assert_eq!((summary.rows, summary.invalid_rows), (2, 2));
    let csv = std::fs::read_to_string(dir.path().join("out2.csv")).expect("csv report");
    assert!(csv.contains("lacks required columns: status"), "{csv}");
    drop((specials, cases, client));
    server.stop().await;
}

#[tokio::test]
async fn a_bank_statement_file_takes_its_period_from_its_dates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102")
        .await
        .special_account_id;
    open_case(&mut cases, &special, CASE).await;
    let mut r = receipt_request(CASE, "100.00", "R1");
    r.value_date = day(-1);
    cases.record_receipt(r).await.expect("receipt");
    let file = dir.path().join("statement.csv");
    std::fs::write(
        &file,
        format!(
            "account_number,value_date,direction,amount,bank_ref,counterparty_name\n\
             2502010009200012345,{},credit,100.00,R1,某某贸易有限公司\n\
             2502010009200012345,{},credit,3.00,R-NEW,不明\n",
            day(-1),
            day(0)
        ),
    )
    .expect("write");
    let (from, to) = rc::statement_period(&file).expect("period");
    assert_eq!((from.clone(), to.clone()), (day(-1), day(0)));
    let mut client = rc::connect(&finance_target(&server).await)
        .await
        .expect("connects");
    let summary = rc::bank(
        &mut client,
        &file,
        pb::BankStatementHeader {
            special_account_id: special.clone(),
            period_from: from,
            period_to: to,
            opening_balance: "0".into(),
            closing_balance: "103.00".into(),
            ..Default::default()
        },
        &dir.path().join("bank"),
        true,
    )
    .await
    .expect("reconciles");
    assert_eq!((summary.rows, summary.matched), (2, 1));
    let kinds: Vec<_> = summary.counts_by_kind.iter().map(|c| c.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            pb::DiscrepancyKind::BankLineNotInLedger,
            pb::DiscrepancyKind::BankBalanceMismatch
        ]
    );
    assert!(rc::bank_table(&summary).contains("cases 100.00"));
    drop((specials, cases, client));
    server.stop().await;
}
