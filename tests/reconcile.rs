//! Reconciliation over real gRPC: every kind of discrepancy is triggered by a
//! hand-made case and not by its near miss; a bad row never stops a run; a run reads
//! one snapshot while writes go on.

mod common;

use case_escrow::api::pb::{
    self, case_ledger_client::CaseLedgerClient, reconcile_bank_statement_request as bank_req,
    reconcile_bank_statement_response as bank_resp, reconcile_case_flow_request as flow_req,
    reconcile_case_flow_response as flow_resp, reconciliation_client::ReconciliationClient,
    DiscrepancyKind as K,
};
use common::*;
use tonic::Code;

const COURT: &str = "云0102";
const ACCOUNT: &str = "2502010009200012345";

fn case(n: u32) -> String {
    format!("（2024）云0102执{n}号")
}

struct Ledger {
    _dir: tempfile::TempDir,
    server: TestServer,
    cases: CaseLedgerClient<common::Ch>,
    recon: ReconciliationClient<common::Ch>,
    special: String,
}

impl Ledger {
    async fn start() -> Ledger {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = TestServer::start(dir.path()).await;
        let mut specials = server.specials().await;
        let special = open_special(&mut specials, COURT).await.special_account_id;
        Ledger {
            cases: server.cases().await,
            recon: reconciliation(&server).await,
            server,
            _dir: dir,
            special,
        }
    }

    async fn open(&mut self, n: u32) {
        open_case(&mut self.cases, &self.special, &case(n)).await;
    }

    async fn receive(&mut self, n: u32, amount: &str, bank_ref: &str, value_date: &str) -> u64 {
        let mut r = receipt_request(&case(n), amount, bank_ref);
        r.value_date = value_date.into();
        self.cases
            .record_receipt(r)
            .await
            .expect("receipt")
            .into_inner()
            .sequence
    }

    async fn close(&mut self, n: u32, method: pb::ClosureMethod) {
        self.cases
            .close_case_account(pb::CloseCaseAccountRequest {
                request_id: rid(),
                case_number: case(n),
                closure_method: method as i32,
                reason: "结案".into(),
            })
            .await
            .expect("closes");
    }

    async fn unidentified(&mut self, amount: &str, bank_ref: &str, value_date: &str) -> String {
        self.cases
            .record_unidentified_receipt(pb::RecordUnidentifiedReceiptRequest {
                request_id: rid(),
                special_account_id: self.special.clone(),
                amount: amount.into(),
                payer_name: "不明付款人".into(),
                payer_account: "6217000000000000999".into(),
                bank_ref: bank_ref.into(),
                value_date: value_date.into(),
                memo: String::new(),
            })
            .await
            .expect("unidentified receipt")
            .into_inner()
            .unidentified_receipt_id
    }

    async fn case_flow(&mut self, header: pb::CaseFlowHeader, rows: Vec<pb::CaseFlowRow>) -> Run {
        // Small batches, so that more than one message of rows is exercised.
        self.case_flow_by(header, rows, 3).await
    }

    async fn case_flow_by(
        &mut self,
        header: pb::CaseFlowHeader,
        rows: Vec<pb::CaseFlowRow>,
        per_message: usize,
    ) -> Run {
        let mut messages = vec![pb::ReconcileCaseFlowRequest {
            message: Some(flow_req::Message::Header(header)),
        }];
        for chunk in rows.chunks(per_message) {
            messages.push(pb::ReconcileCaseFlowRequest {
                message: Some(flow_req::Message::Rows(pb::CaseFlowRows {
                    rows: chunk.to_vec(),
                })),
            });
        }
        let mut answers = self
            .recon
            .reconcile_case_flow(tokio_stream::iter(messages))
            .await
            .expect("run starts")
            .into_inner();
        let mut run = Run::default();
        while let Some(a) = answers.message().await.expect("answer") {
            match a.message.expect("message") {
                flow_resp::Message::Started(s) => run.sequence = s.as_of_sequence,
                flow_resp::Message::Discrepancy(d) => {
                    assert!(run.summary.is_none(), "discrepancy after the summary");
                    run.found.push(d)
                }
                flow_resp::Message::Summary(s) => run.summary = Some(s),
            }
        }
        assert!(run.summary.is_some(), "the summary comes last");
        run
    }

    async fn bank(
        &mut self,
        header: pb::BankStatementHeader,
        rows: Vec<pb::BankStatementRow>,
    ) -> BankRun {
        let mut messages = vec![pb::ReconcileBankStatementRequest {
            message: Some(bank_req::Message::Header(header)),
        }];
        messages.push(pb::ReconcileBankStatementRequest {
            message: Some(bank_req::Message::Rows(pb::BankStatementRows { rows })),
        });
        let mut answers = self
            .recon
            .reconcile_bank_statement(tokio_stream::iter(messages))
            .await
            .expect("run starts")
            .into_inner();
        let mut run = BankRun::default();
        while let Some(a) = answers.message().await.expect("answer") {
            match a.message.expect("message") {
                bank_resp::Message::Started(_) => {}
                bank_resp::Message::Discrepancy(d) => run.found.push(d),
                bank_resp::Message::Summary(s) => run.summary = Some(s),
            }
        }
        assert!(run.summary.is_some(), "the summary comes last");
        run
    }

    async fn stop(self) {
        drop((self.cases, self.recon));
        self.server.stop().await;
    }
}

#[derive(Default)]
struct Run {
    sequence: u64,
    found: Vec<pb::Discrepancy>,
    summary: Option<pb::CaseFlowSummary>,
}

impl Run {
    /// The kinds found for one case, in order.
    fn kinds(&self, case_number: &str) -> Vec<K> {
        self.found
            .iter()
            .filter(|d| d.case_number == case_number)
            .map(|d| d.kind())
            .collect()
    }

    fn has(&self, case_number: &str, kind: K) -> bool {
        self.kinds(case_number).contains(&kind)
    }
}

#[derive(Default)]
struct BankRun {
    found: Vec<pb::Discrepancy>,
    summary: Option<pb::BankSummary>,
}

impl BankRun {
    fn kinds(&self) -> Vec<K> {
        self.found.iter().map(|d| d.kind()).collect()
    }

    fn of_ref(&self, bank_ref: &str) -> Vec<K> {
        self.found
            .iter()
            .filter(|d| d.bank_ref == bank_ref)
            .map(|d| d.kind())
            .collect()
    }
}

fn header() -> pb::CaseFlowHeader {
    pb::CaseFlowHeader {
        as_of: day(0),
        ..Default::default()
    }
}

fn row(n: u32, received: &str, disbursed: &str) -> pb::CaseFlowRow {
    pb::CaseFlowRow {
        case_number: case(n),
        court_code: COURT.into(),
        filed_on: "2024-01-02".into(),
        status: "open".into(),
        received_amount: received.into(),
        disbursed_amount: disbursed.into(),
        ..Default::default()
    }
}

fn closed(mut r: pb::CaseFlowRow, method: &str, on: &str) -> pb::CaseFlowRow {
    r.status = "closed".into();
    r.closure_method = method.into();
    r.closed_on = on.into();
    r
}

// ----------------------------------------------------------------------------------
// Case-flow data
// ----------------------------------------------------------------------------------

#[tokio::test]
async fn case_missing_in_ledger() {
    let mut l = Ledger::start().await;
    l.open(1).await;
    let mut ascii = row(1, "0", "0");
    ascii.case_number = "(2024)云0102执1号".into();
    let run = l
        .case_flow(header(), vec![row(2, "10.00", "0"), ascii])
        .await;
    assert_eq!(run.kinds(&case(2)), vec![K::CaseMissingInLedger]);
    assert_eq!(
        run.found[0].severity(),
        pb::Severity::Error,
        "money is involved"
    );
    // Near miss: the same case typed with ASCII parentheses is the ledger's case.
    assert_eq!(run.kinds(&case(1)), Vec::<K>::new());

    // A case the ledger lacks, listed twice (once with ASCII parentheses): its second
    // row is refused, as for a case the ledger has, and counted once.
    let mut again = row(2, "10.00", "0");
    again.case_number = "(2024)云0102执2号".into();
    again.line = 9;
    let run = l
        .case_flow(header(), vec![row(2, "10.00", "0"), again])
        .await;
    assert_eq!(run.kinds(&case(2)), vec![K::CaseMissingInLedger]);
    let invalid: Vec<_> = run
        .found
        .iter()
        .filter(|d| d.kind() == K::InvalidRow)
        .map(|d| (d.line, d.found.contains("more than once")))
        .collect();
    assert_eq!(invalid, vec![(9, true)], "{:?}", run.found);
    assert_eq!(run.summary.expect("summary").rows, 2);
    l.stop().await;
}

#[tokio::test]
async fn account_missing_in_case_flow() {
    let mut l = Ledger::start().await;
    for n in 1..=3 {
        l.open(n).await;
    }
    l.receive(2, "10.00", "R2", &day(0)).await;
    l.close(3, pb::ClosureMethod::Withdrawn).await;
    let run = l.case_flow(header(), vec![row(1, "0", "0")]).await;
    let missing: Vec<_> = run
        .found
        .iter()
        .filter(|d| d.kind() == K::AccountMissingInCaseFlow)
        .map(|d| d.case_number.clone())
        .collect();
    // Case 2 holds money and is not listed; near miss: case 3 is closed and empty,
    // which an export may leave out, and case 1 is listed.
    assert_eq!(missing, vec![case(2)]);
    // A court scope makes every account under it expected, even with no rows.
    let scoped = l
        .case_flow(
            pb::CaseFlowHeader {
                court_scope: "云01".into(),
                ..header()
            },
            vec![],
        )
        .await;
    assert!(scoped.has(&case(1), K::AccountMissingInCaseFlow));
    assert!(scoped.has(&case(2), K::AccountMissingInCaseFlow));
    l.stop().await;
}

#[tokio::test]
async fn received_mismatch() {
    let mut l = Ledger::start().await;
    l.open(1).await;
    l.open(2).await;
    l.receive(1, "100.00", "R1", &day(0)).await;
    l.receive(2, "100.00", "R2", &day(0)).await;
    let run = l
        .case_flow(header(), vec![row(1, "90.00", "0"), row(2, "100", "0")])
        .await;
    assert_eq!(run.kinds(&case(1)), vec![K::ReceivedMismatch]);
    let d = &run.found[0];
    assert_eq!((d.expected.as_str(), d.found.as_str()), ("100.00", "90.00"));
    assert!(d.message.contains("difference 10.00"), "{}", d.message);
    // Near miss: "100" is 100.00.
    assert_eq!(run.kinds(&case(2)), Vec::<K>::new());
    l.stop().await;
}

#[tokio::test]
async fn disbursed_mismatch() {
    let mut l = Ledger::start().await;
    l.open(1).await;
    l.open(2).await;
    l.receive(1, "100.00", "R1", &day(0)).await;
    l.receive(2, "100.00", "R2", &day(0)).await;
    pay(&mut l.cases, &case(1), "40.00", "P1").await;
    // Case 2: paid, returned by the bank, paid again: the case-flow system counts
    // one payment of 40 and one receipt of 100.
    let d = pay(&mut l.cases, &case(2), "40.00", "P2").await;
    l.cases
        .record_returned_payment(pb::RecordReturnedPaymentRequest {
            request_id: rid(),
            disbursement_id: d,
            bank_ref: "RET2".into(),
            reason: "账户已销户".into(),
        })
        .await
        .expect("returned");
    pay(&mut l.cases, &case(2), "40.00", "P2B").await;
    let run = l
        .case_flow(header(), vec![row(1, "100", "0"), row(2, "100.00", "40.0")])
        .await;
    assert_eq!(run.kinds(&case(1)), vec![K::DisbursedMismatch]);
    assert_eq!(run.kinds(&case(2)), Vec::<K>::new());
    l.stop().await;
}

#[tokio::test]
async fn closed_with_balance() {
    let mut l = Ledger::start().await;
    l.open(1).await;
    l.open(2).await;
    l.receive(1, "100.00", "R1", &day(0)).await;
    l.close(2, pb::ClosureMethod::Withdrawn).await;
    let run = l
        .case_flow(
            header(),
            vec![
                closed(row(1, "100.00", "0"), "withdrawn", &day(0)),
                closed(row(2, "0", "0"), "销案", &day(0)),
            ],
        )
        .await;
    assert_eq!(run.kinds(&case(1)), vec![K::ClosedWithBalance]);
    // Near miss: closed in both, by the same method, with nothing held.
    assert_eq!(run.kinds(&case(2)), Vec::<K>::new());
    l.stop().await;
}

#[tokio::test]
async fn activity_after_closure() {
    let mut l = Ledger::start().await;
    for n in 1..=3 {
        l.open(n).await;
        l.receive(n, "100.00", &format!("R{n}"), &day(0)).await;
        pay(&mut l.cases, &case(n), "100.00", &format!("P{n}")).await;
    }
    // Case 3: closed in the ledger, then the bank returns the payment.
    l.close(3, pb::ClosureMethod::Completed).await;
    let paid = pay_id_of(&mut l, 3).await;
    l.cases
        .record_returned_payment(pb::RecordReturnedPaymentRequest {
            request_id: rid(),
            disbursement_id: paid,
            bank_ref: "RET3".into(),
            reason: "退回".into(),
        })
        .await
        .expect("returned after closure");
    let mut third = closed(row(3, "100.00", "100.00"), "completed", &day(0));
    third.target_amount = "100.00".into();
    let run = l
        .case_flow(
            header(),
            vec![
                closed(row(1, "100.00", "100.00"), "terminated", &day(-1)),
                closed(row(2, "100.00", "100.00"), "terminated", &day(0)),
                third,
            ],
        )
        .await;
    // Money moved today, after the case-flow closure yesterday.
    assert!(
        run.has(&case(1), K::ActivityAfterClosure),
        "{:?}",
        run.kinds(&case(1))
    );
    // Near miss: closed the day the money moved.
    assert!(
        !run.has(&case(2), K::ActivityAfterClosure),
        "{:?}",
        run.kinds(&case(2))
    );
    // Money moved after the ledger's own closing entry.
    assert!(
        run.has(&case(3), K::ActivityAfterClosure),
        "{:?}",
        run.kinds(&case(3))
    );
    l.stop().await;
}

/// The disbursement of a case found through its statement.
async fn pay_id_of(l: &mut Ledger, n: u32) -> String {
    let entries = l
        .cases
        .list_entries(pb::ListEntriesRequest {
            case_number: case(n),
            ..Default::default()
        })
        .await
        .expect("statement")
        .into_inner()
        .entries;
    entries
        .iter()
        .rev()
        .find(|e| e.kind() == pb::EntryKind::DisbursementPaid)
        .map(|e| e.disbursement_id.clone())
        .expect("a paid disbursement")
}

#[tokio::test]
async fn overdue_disbursement() {
    let mut l = Ledger::start().await;
    for n in 1..=7 {
        l.open(n).await;
    }
    l.receive(1, "10.00", "R1", &day(-31)).await; // due yesterday
    l.receive(2, "10.00", "R2", &day(-30)).await; // near miss: due today
    l.receive(3, "10.00", "R3", &day(-60)).await; // long held, but deferred (approved)
    l.receive(4, "10.00", "R4", &day(-60)).await; // approved deferral ended today
    l.receive(5, "10.00", "R5", &day(-60)).await; // paid out: nothing held
    l.receive(6, "10.00", "R6", &day(-60)).await; // deferral recorded, never approved
    l.receive(7, "10.00", "R7", &day(-60)).await; // deferral rejected
    pay(&mut l.cases, &case(5), "10.00", "P5").await;
    let defer = |n: u32| pb::RecordDeferralRequest {
        request_id: rid(),
        case_number: case(n),
        reason: pb::DeferralReason::Distribution as i32,
        approval_ref: format!("暂缓审批{n}"),
        note: "参与分配".into(),
    };
    // The crew's clerk records, its approver (another principal) decides.
    let mut deferrals = Vec::new();
    for n in [3, 4, 6, 7] {
        let d = l
            .cases
            .record_deferral(defer(n))
            .await
            .expect("deferral")
            .into_inner();
        assert!(!d.active, "a recorded deferral waits for approval");
        deferrals.push(d.deferral_id);
    }
    let approve = |id: &str| pb::ApproveDeferralRequest {
        request_id: rid(),
        deferral_id: id.to_owned(),
    };
    for id in &deferrals[..2] {
        let d = l
            .cases
            .approve_deferral(approve(id))
            .await
            .expect("approves");
        assert!(d.into_inner().active);
    }
    l.cases
        .reject_deferral(pb::RejectDeferralRequest {
            request_id: rid(),
            deferral_id: deferrals[3].clone(),
            reason: "无分配方案".into(),
        })
        .await
        .expect("rejects");
    let ended = l
        .cases
        .end_deferral(pb::EndDeferralRequest {
            request_id: rid(),
            deferral_id: deferrals[1].clone(),
        })
        .await
        .expect("ends")
        .into_inner();
    assert!(!ended.active);
    assert_eq!(ended.ended_on, day(0));
    let rows: Vec<_> = (1..=7)
        .map(|n| row(n, "10.00", if n == 5 { "10.00" } else { "0" }))
        .collect();
    let run = l.case_flow(header(), rows.clone()).await;
    assert_eq!(run.kinds(&case(1)), vec![K::OverdueDisbursement]);
    for n in 2..=5 {
        assert_eq!(run.kinds(&case(n)), Vec::<K>::new(), "case {n}");
    }
    // Near misses of the deferral: one that waits for approval, or was rejected,
    // holds nothing back.
    assert_eq!(run.kinds(&case(6)), vec![K::OverdueDisbursement]);
    assert_eq!(run.kinds(&case(7)), vec![K::OverdueDisbursement]);
    // Approved late, case 6's deferral holds its money back from then on.
    l.cases
        .approve_deferral(approve(&deferrals[2]))
        .await
        .expect("approves");
    let run = l.case_flow(header(), rows.clone()).await;
    assert_eq!(run.kinds(&case(6)), Vec::<K>::new());
    // Ten days after the deferral ended, case 4 is due; on the eleventh it is late.
    let later = |d: i64| pb::CaseFlowHeader {
        as_of: day(d),
        ..header()
    };
    assert!(!l
        .case_flow(later(10), rows.clone())
        .await
        .has(&case(4), K::OverdueDisbursement));
    assert!(l
        .case_flow(later(11), rows.clone())
        .await
        .has(&case(4), K::OverdueDisbursement));
    // Limits are configuration: a stricter local limit of 20 days makes case 2 late.
    let strict = l
        .case_flow(
            pb::CaseFlowHeader {
                limits: Some(pb::Limits {
                    disburse_within_days: 20,
                    ..Default::default()
                }),
                ..header()
            },
            rows,
        )
        .await;
    assert!(strict.has(&case(2), K::OverdueDisbursement));
    l.stop().await;
}

#[tokio::test]
async fn completed_but_under_recovered() {
    let mut l = Ledger::start().await;
    for n in 1..=2 {
        l.open(n).await; // target 100000.00
        l.receive(n, "100.00", &format!("R{n}"), &day(0)).await;
        pay(&mut l.cases, &case(n), "100.00", &format!("P{n}")).await;
        l.close(n, pb::ClosureMethod::Completed).await;
    }
    let short = closed(row(1, "100.00", "100.00"), "执行完毕", &day(0));
    let mut settled = closed(row(2, "100.00", "100.00"), "completed", &day(0));
    settled.paid_outside_court = "99900.00".into();
    let run = l.case_flow(header(), vec![short, settled]).await;
    assert_eq!(run.kinds(&case(1)), vec![K::CompletedButUnderRecovered]);
    // Near miss: what the parties settled directly makes up the rest.
    assert_eq!(run.kinds(&case(2)), Vec::<K>::new());
    let summary = run.summary.expect("summary");
    let court = summary
        .courts
        .iter()
        .find(|c| c.court_code == COURT)
        .expect("court summary");
    // (100 + 100 + 99900) / 200000.
    assert_eq!(court.recovery_rate, "0.5005");
    assert_eq!(court.target_total, "200000.00");
    l.stop().await;
}

#[tokio::test]
async fn status_mismatch() {
    let mut l = Ledger::start().await;
    l.open(1).await;
    l.open(2).await;
    l.close(1, pb::ClosureMethod::Withdrawn).await;
    let run = l
        .case_flow(header(), vec![row(1, "0", "0"), row(2, "0", "0")])
        .await;
    assert_eq!(run.kinds(&case(1)), vec![K::StatusMismatch]);
    assert_eq!(run.kinds(&case(2)), Vec::<K>::new());
    l.stop().await;
}

#[tokio::test]
async fn a_bad_row_never_stops_the_run_or_hides_the_others() {
    let mut l = Ledger::start().await;
    for n in 1..=3 {
        l.open(n).await;
        l.receive(n, "10.00", &format!("R{n}"), &day(0)).await;
    }
    let mut bad_amount = row(2, "12.345", "0");
    bad_amount.line = 3;
    let mut unreadable = pb::CaseFlowRow {
        line: 4,
        unreadable: "found 3 fields where the header has 10".into(),
        ..Default::default()
    };
    unreadable.case_number.clear();
    let mut good_after = row(3, "11.00", "0");
    good_after.line = 5;
    let mut first = row(1, "10.00", "0");
    first.line = 2;
    let mut duplicate = row(1, "10.00", "0");
    duplicate.line = 6;
    let mut wrong_court = row(4, "0", "0");
    wrong_court.court_code = "云0103".into();
    wrong_court.line = 7;
    let run = l
        .case_flow(
            header(),
            vec![
                first,
                bad_amount,
                unreadable,
                good_after,
                duplicate,
                wrong_court,
            ],
        )
        .await;
    let invalid: Vec<(u64, String)> = run
        .found
        .iter()
        .filter(|d| d.kind() == K::InvalidRow)
        .map(|d| (d.line, d.found.clone()))
        .collect();
    let lines: Vec<u64> = invalid.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![3, 4, 6, 7], "{invalid:?}");
    assert!(invalid[0].1.contains("received_amount"), "{invalid:?}");
    assert!(invalid[1].1.contains("3 fields"), "{invalid:?}");
    assert!(invalid[2].1.contains("more than once"), "{invalid:?}");
    assert!(invalid[3].1.contains("not the court"), "{invalid:?}");
    // The row after the bad ones was reconciled: its mismatch is there.
    assert!(run.has(&case(3), K::ReceivedMismatch));
    // Near miss: the valid first row of case 1 has nothing to report.
    assert!(!run.has(&case(1), K::ReceivedMismatch));
    // Case 2's row was bad, so its account is also reported as not listed.
    assert!(run.has(&case(2), K::AccountMissingInCaseFlow));
    let summary = run.summary.expect("summary");
    assert_eq!((summary.rows, summary.invalid_rows), (6, 4));
    l.stop().await;
}

/// A row's fields are unbounded within a message, and a reason quotes them escaped
/// (a control character as six characters): what an answer repeats of them is cut,
/// so rows of junk never make the answer larger than the input.
#[tokio::test]
async fn a_huge_bad_field_is_repeated_only_in_part() {
    let mut l = Ledger::start().await;
    l.open(1).await;
    let junk = "\u{1}".repeat(200_000);
    let mut bad_date = row(1, "0", "0");
    bad_date.filed_on = junk.clone();
    bad_date.line = 2;
    let mut bad_number = row(1, "0", "0");
    bad_number.case_number = format!("{}{junk}", case(1));
    bad_number.court_code = junk.clone();
    bad_number.line = 3;
    let run = l.case_flow(header(), vec![bad_date, bad_number]).await;
    let bad: Vec<_> = run
        .found
        .iter()
        .filter(|d| d.kind() == K::InvalidRow)
        .collect();
    assert_eq!(bad.len(), 2, "{:?}", run.found);
    for d in &bad {
        for (field, text) in [
            ("message", &d.message),
            ("found", &d.found),
            ("case_number", &d.case_number),
            ("court_code", &d.court_code),
        ] {
            assert!(
                text.len() < 1_000,
                "line {}, {field}: {} bytes",
                d.line,
                text.len()
            );
        }
    }
    assert!(
        bad[0]
            .found
            .starts_with("filed_on is longer than 256 characters"),
        "{:?}",
        bad[0].found
    );

    let special = l.special.clone();
    let mut bad_line = line("credit", "1.00", &junk);
    bad_line.value_date = junk.clone();
    let mut unknown = line("credit", "2.00", "UNKNOWN");
    unknown.counterparty_name = junk;
    let run = l
        .bank(bank_header(&special, "3.00"), vec![bad_line, unknown])
        .await;
    for d in &run.found {
        for text in [&d.message, &d.found, &d.bank_ref] {
            assert!(text.len() < 1_000, "{:?}: {} bytes", d.kind(), text.len());
        }
    }
    assert!(
        run.of_ref("UNKNOWN") == vec![K::BankLineNotInLedger],
        "{:?}",
        run.kinds()
    );
    l.stop().await;
}

#[tokio::test]
async fn a_bad_header_is_refused_naming_the_field() {
    let mut l = Ledger::start().await;
    let cases = [
        (
            pb::CaseFlowHeader {
                as_of: "2024-13-01".into(),
                ..header()
            },
            "header.as_of",
        ),
        (
            pb::CaseFlowHeader {
                court_scope: "XX".into(),
                ..header()
            },
            "header.court_scope",
        ),
        (
            pb::CaseFlowHeader {
                as_of_sequence: 999,
                ..header()
            },
            "header.as_of_sequence",
        ),
        (
            pb::CaseFlowHeader {
                limits: Some(pb::Limits {
                    disburse_within_days: 99_999,
                    ..Default::default()
                }),
                ..header()
            },
            "header.limits.disburse_within_days",
        ),
    ];
    for (h, field) in cases {
        let refused = l
            .recon
            .reconcile_case_flow(tokio_stream::iter(vec![pb::ReconcileCaseFlowRequest {
                message: Some(flow_req::Message::Header(h)),
            }]))
            .await
            .expect_err(field);
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().starts_with(&format!("{field}:")),
            "{refused:?}"
        );
    }
    let rows_first = l
        .recon
        .reconcile_case_flow(tokio_stream::iter(vec![pb::ReconcileCaseFlowRequest {
            message: Some(flow_req::Message::Rows(pb::CaseFlowRows::default())),
        }]))
        .await
        .expect_err("rows before the header");
    assert_eq!(rows_first.code(), Code::InvalidArgument);
    // One message may not carry more rows than a run holds at once.
    let too_many = vec![
        pb::ReconcileCaseFlowRequest {
            message: Some(flow_req::Message::Header(header())),
        },
        pb::ReconcileCaseFlowRequest {
            message: Some(flow_req::Message::Rows(pb::CaseFlowRows {
                rows: vec![pb::CaseFlowRow::default(); case_escrow::api::ROWS_PER_MESSAGE_MAX + 1],
            })),
        },
    ];
    let mut answers = l
        .recon
        .reconcile_case_flow(tokio_stream::iter(too_many))
        .await
        .expect("the header is fine")
        .into_inner();
    let refused = loop {
        match answers.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a message over the limit was taken"),
            Err(status) => break status,
        }
    };
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().starts_with("rows:"), "{refused:?}");
    l.stop().await;
}

/// A large message's rows are checked on two threads and the ledger's facts read by a
/// cursor that exploits their order; neither may change an answer: rows in filing
/// order, reversed or scrambled, in one message or many, find the same, and a case
/// that appears again is the later row's INVALID_ROW even across the two halves.
#[tokio::test]
async fn any_order_and_message_size_give_the_same_answer() {
    let mut l = Ledger::start().await;
    let cases = 150;
    for n in 1..=cases {
        l.open(n).await;
    }
    for n in (1..=cases).step_by(7) {
        l.receive(n, "10.00", &format!("R{n}"), &day(-60)).await;
    }
    let rows: Vec<pb::CaseFlowRow> = (1..=cases + 5)
        .filter(|n| n % 50 != 9)
        .map(|n| {
            let mut r = row(n, if n % 7 == 1 { "10.00" } else { "0" }, "0");
            r.line = u64::from(n) + 1;
            if n % 11 == 0 {
                r.received_amount = "3.00".into();
            }
            r
        })
        .collect();
    let answer = |run: &Run| {
        let mut found: Vec<(i32, String, u64, String)> = run
            .found
            .iter()
            .map(|d| (d.kind, d.case_number.clone(), d.line, d.message.clone()))
            .collect();
        found.sort();
        let summary = run.summary.clone().expect("summary");
        (found, summary.rows, summary.invalid_rows, summary.total)
    };
    let filing = answer(&l.case_flow_by(header(), rows.clone(), 1000).await);
    assert!(filing.0.len() > 40, "{filing:?}");
    let reversed: Vec<_> = rows.iter().rev().cloned().collect();
    let scrambled: Vec<_> = (0..rows.len())
        .map(|i| rows[(i * 37 + 5) % rows.len()].clone())
        .collect();
    for (order, per_message) in [(&rows, 3), (&reversed, 1000), (&scrambled, 70)] {
        let run = l.case_flow_by(header(), order.clone(), per_message).await;
        assert_eq!(answer(&run), filing, "{per_message} rows a message");
    }
    let mut again = row(4, "0", "0");
    again.line = 999;
    let mut with_again = rows.clone();
    with_again.insert(120, again);
    let run = l.case_flow_by(header(), with_again, 1000).await;
    let invalid: Vec<u64> = run
        .found
        .iter()
        .filter(|d| d.kind() == K::InvalidRow)
        .map(|d| d.line)
        .collect();
    assert_eq!(invalid, vec![999]);
    l.stop().await;
}

/// The snapshot is fixed when the run starts: receipts, closures and new cases
/// recorded while rows are still streaming do not change the answer.
#[tokio::test]
async fn a_run_reads_one_snapshot_while_writes_go_on() {
    let mut l = Ledger::start().await;
    for n in 1..=3 {
        l.open(n).await;
        l.receive(n, "10.00", &format!("R{n}"), &day(0)).await;
    }
    let rows = vec![
        row(1, "10.00", "0"),
        row(2, "10.00", "0"),
        row(3, "10.00", "0"),
    ];
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::ReconcileCaseFlowRequest {
        message: Some(flow_req::Message::Header(header())),
    })
    .await
    .expect("send header");
    let mut answers = l
        .recon
        .reconcile_case_flow(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("run starts")
        .into_inner();
    let started = match answers
        .message()
        .await
        .expect("answer")
        .and_then(|a| a.message)
    {
        Some(flow_resp::Message::Started(s)) => s,
        other => panic!("expected Started, got {other:?}"),
    };
    // The run has fixed its snapshot. Now the ledger moves on.
    tx.send(pb::ReconcileCaseFlowRequest {
        message: Some(flow_req::Message::Rows(pb::CaseFlowRows {
            rows: rows[..1].to_vec(),
        })),
    })
    .await
    .expect("send rows");
    l.receive(1, "5.00", "LATE1", &day(0)).await;
    l.receive(2, "5.00", "LATE2", &day(0)).await;
    pay(&mut l.cases, &case(3), "10.00", "LATEP3").await;
    l.close(3, pb::ClosureMethod::Completed).await;
    l.open(4).await;
    l.receive(4, "1.00", "LATE4", &day(0)).await;
    tx.send(pb::ReconcileCaseFlowRequest {
        message: Some(flow_req::Message::Rows(pb::CaseFlowRows {
            rows: rows[1..].to_vec(),
        })),
    })
    .await
    .expect("send rows");
    drop(tx);
    let mut during = Vec::new();
    let mut summary = None;
    while let Some(a) = answers.message().await.expect("answer") {
        match a.message.expect("message") {
            flow_resp::Message::Discrepancy(d) => during.push(d),
            flow_resp::Message::Summary(s) => summary = Some(s),
            flow_resp::Message::Started(_) => panic!("started twice"),
        }
    }
    assert_eq!(during, Vec::new(), "the ledger agreed at the snapshot");
    assert_eq!(
        summary.expect("summary").as_of_sequence,
        started.as_of_sequence
    );
    // The same rows now, at the latest entry, disagree in every way the writes made.
    let now = l.case_flow(header(), rows.clone()).await;
    assert!(now.sequence > started.as_of_sequence);
    assert!(now.has(&case(1), K::ReceivedMismatch));
    assert!(now.has(&case(2), K::ReceivedMismatch));
    assert!(now.has(&case(3), K::DisbursedMismatch));
    assert!(now.has(&case(4), K::AccountMissingInCaseFlow));
    // And asking for the old snapshot explicitly gives the old answer.
    let again = l
        .case_flow(
            pb::CaseFlowHeader {
                as_of_sequence: started.as_of_sequence,
                ..header()
            },
            rows,
        )
        .await;
    assert_eq!(again.found, Vec::new());
    l.stop().await;
}

// ----------------------------------------------------------------------------------
// Bank statements
// ----------------------------------------------------------------------------------

fn bank_header(special: &str, closing: &str) -> pb::BankStatementHeader {
    pb::BankStatementHeader {
        special_account_id: special.into(),
        period_from: day(-7),
        period_to: day(0),
        opening_balance: "0.00".into(),
        closing_balance: closing.into(),
        ..Default::default()
    }
}

fn line(direction: &str, amount: &str, bank_ref: &str) -> pb::BankStatementRow {
    pb::BankStatementRow {
        account_number: ACCOUNT.into(),
        value_date: day(0),
        direction: direction.into(),
        amount: amount.into(),
        bank_ref: bank_ref.into(),
        ..Default::default()
    }
}

/// A special account with: a receipt R1 of 100 for case 1, a payment P1 of 40 from
/// it, a receipt R2 of 7 that was reversed, and an unidentified receipt U1 of 50
/// that was returned with reference U1-BACK. Bank balance: 60.
async fn bank_ledger() -> Ledger {
    let mut l = Ledger::start().await;
    l.open(1).await;
    l.receive(1, "100.00", "R1", &day(0)).await;
    pay(&mut l.cases, &case(1), "40.00", "P1").await;
    let r2 = l.receive(1, "7.00", "R2", &day(0)).await;
    l.cases
        .reverse_entry(pb::ReverseEntryRequest {
            request_id: rid(),
            sequence: r2,
            reason: "重复入账".into(),
        })
        .await
        .expect("reversed");
    let u = l.unidentified("50.00", "U1", &day(0)).await;
    l.cases
        .return_unidentified_receipt(pb::ReturnUnidentifiedReceiptRequest {
            request_id: rid(),
            unidentified_receipt_id: u,
            reason: "无法查明，原路退回".into(),
            bank_ref: "U1-BACK".into(),
        })
        .await
        .expect("returned");
    l
}

fn full_statement() -> Vec<pb::BankStatementRow> {
    vec![
        line("credit", "100.00", "R1"),
        line("debit", "40.00", "P1"),
        line("credit", "50.00", "U1"),
        line("debit", "50", "U1-BACK"),
    ]
}

#[tokio::test]
async fn a_statement_that_agrees_has_no_discrepancy() {
    let mut l = bank_ledger().await;
    let special = l.special.clone();
    let run = l
        .bank(bank_header(&special, "60.00"), full_statement())
        .await;
    assert_eq!(run.kinds(), Vec::<K>::new(), "{:?}", run.found);
    let s = run.summary.expect("summary");
    assert_eq!(s.matched, 4);
    assert_eq!(
        (s.ledger_closing.as_str(), s.ledger_bank_balance.as_str()),
        ("60.00", "60.00")
    );
    assert_eq!(
        (
            s.ledger_cases_balance.as_str(),
            s.ledger_suspense_balance.as_str()
        ),
        ("60.00", "0.00")
    );
    l.stop().await;
}

#[tokio::test]
async fn bank_line_not_in_ledger() {
    let mut l = bank_ledger().await;
    let special = l.special.clone();
    let mut rows = full_statement();
    rows.push(line("credit", "9.00", "UNKNOWN-1"));
    // R2 was recorded and reversed: the bank showing it is a disagreement too.
    rows.push(line("credit", "7.00", "R2"));
    let run = l.bank(bank_header(&special, "76.00"), rows).await;
    assert_eq!(run.of_ref("UNKNOWN-1"), vec![K::BankLineNotInLedger]);
    assert_eq!(run.of_ref("R2"), vec![K::BankLineNotInLedger]);
    // Near miss: the lines the ledger has.
    assert_eq!(run.of_ref("R1"), Vec::<K>::new());
    l.stop().await;
}

#[tokio::test]
async fn ledger_entry_not_in_bank() {
    let mut l = bank_ledger().await;
    let special = l.special.clone();
    let rows: Vec<_> = full_statement()
        .into_iter()
        .filter(|r| r.bank_ref != "P1")
        .collect();
    let run = l.bank(bank_header(&special, "100.00"), rows).await;
    assert_eq!(run.of_ref("P1"), vec![K::LedgerEntryNotInBank]);
    // Near miss: R2 is missing from the statement too, but it was reversed.
    assert_eq!(run.of_ref("R2"), Vec::<K>::new());
    l.stop().await;
}

/// The ledger allows undoing a mistaken correction by reversing the reversal; the
/// receipt is then in force again, and the bank run must say so: its line matches the
/// statement, it is missing if the statement lacks it, and all three bank lines count
/// on the receipt's value date.
#[tokio::test]
async fn a_receipt_whose_reversal_was_reversed_is_in_force() {
    let mut l = Ledger::start().await;
    l.open(1).await;
    let receipt = l.receive(1, "30.00", "RR", &day(-10)).await;
    let reverse = |sequence| {
        let mut cases = l.cases.clone();
        async move {
            cases
                .reverse_entry(pb::ReverseEntryRequest {
                    request_id: rid(),
                    sequence,
                    reason: "冲正有误，撤销冲正".into(),
                })
                .await
                .expect("reversed")
                .into_inner()
                .sequence
        }
    };
    let correction = reverse(receipt).await;
    reverse(correction).await;
    let special = l.special.clone();

    // The money arrived before the period (day -7 to today): in the opening balance.
    let mut before = bank_header(&special, "30.00");
    before.opening_balance = "30.00".into();
    let run = l.bank(before, vec![]).await;
    assert_eq!(run.kinds(), Vec::<K>::new(), "{:?}", run.found);

    let mut within = bank_header(&special, "30.00");
    within.period_from = day(-10);
    let mut shown = line("credit", "30.00", "RR");
    shown.value_date = day(-10);
    let run = l.bank(within.clone(), vec![shown]).await;
    assert_eq!(run.kinds(), Vec::<K>::new(), "{:?}", run.found);
    assert_eq!(run.summary.expect("summary").matched, 1);
    let run = l.bank(within, vec![]).await;
    assert_eq!(
        run.of_ref("RR"),
        vec![K::LedgerEntryNotInBank],
        "{:?}",
        run.found
    );
    l.stop().await;
}

#[tokio::test]
async fn amount_mismatch_with_bank() {
    let mut l = bank_ledger().await;
    let special = l.special.clone();
    let mut rows = full_statement();
    rows[0].amount = "99.99".into(); // R1
    rows[1].direction = "credit".into(); // P1 the wrong way round
    rows[3].amount = "50.0".into(); // near miss: U1-BACK, the same amount
    let run = l.bank(bank_header(&special, "60.00"), rows).await;
    assert_eq!(run.of_ref("R1"), vec![K::AmountMismatchWithBank]);
    assert_eq!(run.of_ref("P1"), vec![K::AmountMismatchWithBank]);
    assert_eq!(run.of_ref("U1-BACK"), Vec::<K>::new());
    let r1 = run.found.iter().find(|d| d.bank_ref == "R1").expect("R1");
    assert_eq!(r1.case_number, case(1));
    assert_eq!(
        (r1.expected.as_str(), r1.found.as_str()),
        ("credit 100.00", "credit 99.99")
    );
    l.stop().await;
}

#[tokio::test]
async fn bank_balance_mismatch() {
    let mut l = bank_ledger().await;
    let special = l.special.clone();
    let off = l
        .bank(bank_header(&special, "60.01"), full_statement())
        .await;
    assert_eq!(off.kinds(), vec![K::BankBalanceMismatch]);
    let mut opening = bank_header(&special, "60.00");
    opening.opening_balance = "1.00".into();
    let run = l.bank(opening, full_statement()).await;
    assert_eq!(run.kinds(), vec![K::BankBalanceMismatch]);
    assert!(run.found[0].message.contains("opening"), "{:?}", run.found);
    // Near miss: a period that starts after the money: the opening is the balance.
    let mut later = bank_header(&special, "60.00");
    later.period_from = day(1);
    later.period_to = day(2);
    later.opening_balance = "60.00".into();
    assert_eq!(l.bank(later, vec![]).await.kinds(), Vec::<K>::new());
    l.stop().await;
}

#[tokio::test]
async fn suspense_aged() {
    let mut l = Ledger::start().await;
    l.open(1).await;
    let old = l.unidentified("1.00", "OLD", &day(-4)).await;
    l.unidentified("2.00", "DUE", &day(-3)).await;
    let claimed = l.unidentified("3.00", "CLAIMED", &day(-6)).await;
    l.cases
        .assign_unidentified_receipt(pb::AssignUnidentifiedReceiptRequest {
            request_id: rid(),
            unidentified_receipt_id: claimed,
            case_number: case(1),
        })
        .await
        .expect("assigned");
    let special = l.special.clone();
    let rows = vec![
        pb::BankStatementRow {
            value_date: day(-4),
            ..line("credit", "1.00", "OLD")
        },
        pb::BankStatementRow {
            value_date: day(-3),
            ..line("credit", "2.00", "DUE")
        },
        pb::BankStatementRow {
            value_date: day(-6),
            ..line("credit", "3.00", "CLAIMED")
        },
    ];
    let run = l.bank(bank_header(&special, "6.00"), rows).await;
    assert_eq!(run.kinds(), vec![K::SuspenseAged], "{:?}", run.found);
    assert_eq!(run.found[0].bank_ref, "OLD");
    assert!(run.found[0].message.contains(&old));
    let s = run.summary.expect("summary");
    assert_eq!(s.ledger_suspense_balance, "3.00");
    assert_eq!(s.ledger_cases_balance, "3.00");
    l.stop().await;
}

#[tokio::test]
async fn bad_statement_lines_are_invalid_rows_and_the_rest_goes_on() {
    let mut l = bank_ledger().await;
    let special = l.special.clone();
    let mut rows = full_statement();
    rows.insert(
        0,
        pb::BankStatementRow {
            account_number: "999".into(),
            ..line("credit", "1.00", "X1")
        },
    );
    rows.insert(
        1,
        pb::BankStatementRow {
            value_date: day(1),
            ..line("credit", "1.00", "X2")
        },
    );
    rows.push(line("credit", "100.00", "R1")); // the same reference twice
    rows.push(line("sideways", "1.00", "X3"));
    for (i, r) in rows.iter_mut().enumerate() {
        r.line = i as u64 + 2;
    }
    let run = l.bank(bank_header(&special, "60.00"), rows).await;
    let invalid: Vec<u64> = run
        .found
        .iter()
        .filter(|d| d.kind() == K::InvalidRow)
        .map(|d| d.line)
        .collect();
    assert_eq!(invalid, vec![2, 3, 8, 9], "{:?}", run.found);
    assert_eq!(
        run.kinds().len(),
        4,
        "the valid lines all matched: {:?}",
        run.found
    );
    let s = run.summary.expect("summary");
    assert_eq!((s.rows, s.invalid_rows, s.matched), (8, 4, 4));
    l.stop().await;
}

/// Each run holds a thread of the blocking pool while its caller keeps the stream open,
/// sending or not: silent callers could take them all, and with them backups and the
/// server's stop. Runs at once are bounded; a place comes back when one ends.
#[tokio::test]
async fn runs_at_once_are_bounded_and_a_place_comes_back_when_one_ends() {
    let mut l = Ledger::start().await;
    let header = || pb::ReconcileBankStatementRequest {
        message: Some(bank_req::Message::Header(bank_header(&l.special, "0.00"))),
    };
    let mut silent = Vec::new();
    for _ in 0..case_escrow::api::RECONCILE_RUNS_MAX {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(header()).await.expect("queued");
        let answers = l
            .recon
            .clone()
            .reconcile_bank_statement(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("a run starts")
            .into_inner();
        silent.push((tx, answers));
    }
    let refused = l
        .recon
        .clone()
        .reconcile_bank_statement(tokio_stream::iter(vec![header()]))
        .await
        .expect_err("one run too many");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    // One caller ends its statement and reads the run's last answer: its place is free.
    let (tx, mut answers) = silent.pop().expect("a run");
    drop(tx);
    let mut last = None;
    while let Some(a) = answers.message().await.expect("answer") {
        last = a.message;
    }
    assert!(
        matches!(last, Some(bank_resp::Message::Summary(_))),
        "{last:?}"
    );
    let special = l.special.clone();
    let run = l.bank(bank_header(&special, "0.00"), vec![]).await;
    assert!(run.summary.is_some());
    drop(silent);
    l.stop().await;
}
