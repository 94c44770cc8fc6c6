//! Bad input: malformed case numbers and court codes, bad amounts, empty or oversized
//! strings, missing fields and unknown ids are each refused with the right status code,
//! the offending field named, and nothing written.
//!
//! One test per class. Each test runs a table of (description, request, expected code,
//! expected field) against a real server holding one special account for 云0102, a case
//! funded with a receipt of 500.00 and a second, empty case; it then checks that the
//! journal position, both cases, their statements and the special account are exactly
//! as they were before the bad calls.

mod common;

use case_escrow::api::pb::{
    self, case_ledger_client::CaseLedgerClient, special_accounts_client::SpecialAccountsClient,
};
use case_escrow::domain::VirtualAccountNumber;
use common::{rid, TestServer};
use tempfile::TempDir;
use tonic::{Code, Status};

/// The funded case of every test.
const CASE: &str = "（2024）云0102执100号";
/// The second case of every test, the other side of transfers.
const OTHER: &str = "（2024）云0102执101号";
/// A well-formed case number of the same court that is never opened, used where a
/// request that wrongly passed validation would create it.
const FRESH: &str = "（2024）云0102执102号";
/// A well-formed case number that is never opened, for unknown-id lookups.
const UNKNOWN_CASE: &str = "（2024）云0102执999号";
/// A well-formed UUID that names nothing.
const UNKNOWN_ID: &str = "0192f0c4-7b7e-7c1a-9c5e-2f7c1b0c9a11";

// ----------------------------------------------------------------------------------
// Checking one refusal
// ----------------------------------------------------------------------------------

/// What is wrong with `status` as a refusal with `code` naming `field`, if anything.
///
/// An INVALID_ARGUMENT must name the field first, as `DomainError::Invalid` renders it
/// (`"amount: …"`), so that `from_case_number` and `to_case_number` are told apart; any
/// other code must mention `field` somewhere (for NOT_FOUND: the id that was asked for).
/// INTERNAL and UNKNOWN are never acceptable answers to bad input.
fn refusal_problem(status: &Status, code: Code, field: &str) -> Option<String> {
    let message = status.message();
    if matches!(status.code(), Code::Internal | Code::Unknown) {
        return Some(format!(
            "answered {:?} (a server fault) instead of {code:?}: {message:?}",
            status.code()
        ));
    }
    if status.code() != code {
        return Some(format!(
            "expected {code:?}, got {:?}: {message:?}",
            status.code()
        ));
    }
    let named = if code == Code::InvalidArgument {
        message.starts_with(&format!("{field}:"))
    } else {
        message.contains(field)
    };
    if !named {
        return Some(format!("{code:?} does not name {field:?}: {message:?}"));
    }
    // A status's message is an HTTP/2 header; clients drop the connection past 8–16 KiB
    // of headers instead of reading the refusal. What it repeats of the input is cut.
    if message.len() > REFUSAL_BYTES_MAX {
        return Some(format!(
            "a message of {} bytes repeats too much of the input: {:?}…",
            message.len(),
            message.chars().take(80).collect::<String>()
        ));
    }
    None
}

/// The longest refusal a bad field may get.
const REFUSAL_BYTES_MAX: usize = 1024;

/// Asserts that `status` is a refusal with `code` naming `field`; prints the message if
/// it is not.
fn assert_invalid(status: &Status, code: Code, field: &str) {
    if let Some(problem) = refusal_problem(status, code, field) {
        panic!("{problem}");
    }
}

// ----------------------------------------------------------------------------------
// The calls a table can make
// ----------------------------------------------------------------------------------

enum Call {
    OpenSpecial(pb::OpenSpecialAccountRequest),
    ChangeSpecial(pb::RegisterAccountChangeRequest),
    GetSpecial(pb::GetSpecialAccountRequest),
    ListSpecials(pb::ListSpecialAccountsRequest),
    OpenCase(pb::OpenCaseAccountRequest),
    GetCase(pb::GetCaseAccountRequest),
    Receipt(pb::RecordReceiptRequest),
    Disburse(pb::RequestDisbursementRequest),
    Approve(pb::ApproveDisbursementRequest),
    ConfirmPaid(pb::ConfirmDisbursementPaidRequest),
    GetDisbursement(pb::GetDisbursementRequest),
    Transfer(pb::TransferBetweenCasesRequest),
    Reverse(pb::ReverseEntryRequest),
    CloseCase(pb::CloseCaseAccountRequest),
    ListEntries(pb::ListEntriesRequest),
}

/// One bad request and the refusal it must get.
struct Row {
    what: String,
    call: Call,
    code: Code,
    field: String,
}

fn row(what: impl Into<String>, call: Call, code: Code, field: impl Into<String>) -> Row {
    Row {
        what: what.into(),
        call,
        code,
        field: field.into(),
    }
}

fn invalid(what: impl Into<String>, call: Call, field: &str) -> Row {
    row(what, call, Code::InvalidArgument, field)
}

/// `base` changed by `change`: one bad field in an otherwise valid request.
fn with<T>(mut base: T, change: impl FnOnce(&mut T)) -> T {
    change(&mut base);
    base
}

// ----------------------------------------------------------------------------------
// Valid requests, each of which would write if sent as is
// ----------------------------------------------------------------------------------

fn receipt() -> pb::RecordReceiptRequest {
    // A fresh bank reference, so that a request wrongly accepted is a new entry.
    common::receipt_request(CASE, "1.00", &rid())
}

fn disbursement() -> pb::RequestDisbursementRequest {
    common::disbursement_request(CASE, "1.00")
}

fn transfer() -> pb::TransferBetweenCasesRequest {
    pb::TransferBetweenCasesRequest {
        request_id: rid(),
        from_case_number: CASE.into(),
        to_case_number: OTHER.into(),
        amount: "1.00".into(),
        reason: "两案合并执行".into(),
        document_ref: "（2024）云0102执100号决定书".into(),
    }
}

fn close_case() -> pb::CloseCaseAccountRequest {
    pb::CloseCaseAccountRequest {
        request_id: rid(),
        case_number: OTHER.into(),
        closure_method: pb::ClosureMethod::Completed as i32,
        reason: "执行完毕".into(),
    }
}

fn reverse(sequence: u64) -> pb::ReverseEntryRequest {
    pb::ReverseEntryRequest {
        request_id: rid(),
        sequence,
        reason: "误记冲正".into(),
    }
}

fn change_special(special_id: &str) -> pb::RegisterAccountChangeRequest {
    pb::RegisterAccountChangeRequest {
        request_id: rid(),
        special_account_id: special_id.into(),
        bank_name: None,
        bank_branch: Some("昆明盘龙支行".into()),
        account_number: None,
        account_name: None,
        reason: "开户网点迁址".into(),
        document_ref: "云高法〔2024〕12号".into(),
        effective_at: None,
    }
}

fn approve(disbursement_id: &str) -> pb::ApproveDisbursementRequest {
    pb::ApproveDisbursementRequest {
        request_id: rid(),
        disbursement_id: disbursement_id.into(),
        approval_ref: "审批〔2024〕1号".into(),
    }
}

fn confirm_paid(disbursement_id: &str) -> pb::ConfirmDisbursementPaidRequest {
    pb::ConfirmDisbursementPaidRequest {
        request_id: rid(),
        disbursement_id: disbursement_id.into(),
        bank_ref: rid(),
        paid_at: None,
    }
}

fn get_case(case_number: &str) -> pb::GetCaseAccountRequest {
    pb::GetCaseAccountRequest {
        account: Some(pb::get_case_account_request::Account::CaseNumber(
            case_number.into(),
        )),
        as_of: None,
    }
}

fn list_entries(case_number: &str) -> pb::ListEntriesRequest {
    pb::ListEntriesRequest {
        case_number: case_number.into(),
        ..Default::default()
    }
}

fn get_special(special_id: &str) -> pb::GetSpecialAccountRequest {
    pb::GetSpecialAccountRequest {
        special_account_id: special_id.into(),
        as_of: None,
    }
}

// ----------------------------------------------------------------------------------
// The ledger every test starts from, and what "nothing written" compares
// ----------------------------------------------------------------------------------

/// Everything a bad request could have changed, as the API shows it.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// The journal sequence the read answered at: the last entry.
    sequence: u64,
    case: pb::CaseAccount,
    other: pb::CaseAccount,
    special: pb::SpecialAccount,
    case_entries: Vec<pb::Entry>,
    other_entries: Vec<pb::Entry>,
    specials_listed: usize,
}

struct Ledger {
    _dir: TempDir,
    server: TestServer,
    specials: SpecialAccountsClient<common::Ch>,
    cases: CaseLedgerClient<common::Ch>,
    special_id: String,
    /// The virtual account number of [`CASE`].
    van: String,
    /// The journal sequence of the setup receipt.
    receipt_sequence: u64,
}

impl Ledger {
    async fn start() -> Ledger {
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = TestServer::start(dir.path()).await;
        let mut specials = server.specials().await;
        let mut cases = server.cases().await;
        let special_id = common::open_special(&mut specials, "云0102")
            .await
            .special_account_id;
        let van = common::open_case(&mut cases, &special_id, CASE)
            .await
            .virtual_account_number;
        let receipt_sequence = cases
            .record_receipt(common::receipt_request(CASE, "500.00", "SETUP0000000001"))
            .await
            .expect("setup receipt is recorded")
            .into_inner()
            .sequence;
        common::open_case(&mut cases, &special_id, OTHER).await;
        let balances = common::balances(&mut cases, CASE).await;
        assert_eq!(
            (balances.received.as_str(), balances.balance.as_str()),
            ("500.00", "500.00"),
            "setup: the case is funded"
        );
        Ledger {
            _dir: dir,
            server,
            specials,
            cases,
            special_id,
            van,
            receipt_sequence,
        }
    }

    async fn snapshot(&mut self) -> Snapshot {
        let case = self.read_case(CASE).await;
        let other = self.read_case(OTHER).await;
        let special = self
            .specials
            .get_special_account(get_special(&self.special_id))
            .await
            .expect("special account reads")
            .into_inner();
        let specials_listed = self
            .specials
            .list_special_accounts(pb::ListSpecialAccountsRequest::default())
            .await
            .expect("special accounts list")
            .into_inner()
            .special_accounts
            .len();
        let case_entries = self.read_entries(CASE).await;
        let other_entries = self.read_entries(OTHER).await;
        Snapshot {
            sequence: case.as_of_sequence,
            case,
            other,
            special,
            case_entries,
            other_entries,
            specials_listed,
        }
    }

    async fn read_case(&mut self, case_number: &str) -> pb::CaseAccount {
        self.cases
            .get_case_account(get_case(case_number))
            .await
            .expect("case account reads")
            .into_inner()
    }

    async fn read_entries(&mut self, case_number: &str) -> Vec<pb::Entry> {
        self.cases
            .list_entries(list_entries(case_number))
            .await
            .expect("entries list")
            .into_inner()
            .entries
    }

    async fn send(&mut self, call: Call) -> Result<(), Status> {
        let (s, c) = (&mut self.specials, &mut self.cases);
        match call {
            Call::OpenSpecial(r) => s.open_special_account(r).await.map(|_| ()),
            Call::ChangeSpecial(r) => s.register_account_change(r).await.map(|_| ()),
            Call::GetSpecial(r) => s.get_special_account(r).await.map(|_| ()),
            Call::ListSpecials(r) => s.list_special_accounts(r).await.map(|_| ()),
            Call::OpenCase(r) => c.open_case_account(r).await.map(|_| ()),
            Call::GetCase(r) => c.get_case_account(r).await.map(|_| ()),
            Call::Receipt(r) => c.record_receipt(r).await.map(|_| ()),
            Call::Disburse(r) => c.request_disbursement(r).await.map(|_| ()),
            Call::Approve(r) => c.approve_disbursement(r).await.map(|_| ()),
            Call::ConfirmPaid(r) => c.confirm_disbursement_paid(r).await.map(|_| ()),
            Call::GetDisbursement(r) => c.get_disbursement(r).await.map(|_| ()),
            Call::Transfer(r) => c.transfer_between_cases(r).await.map(|_| ()),
            Call::Reverse(r) => c.reverse_entry(r).await.map(|_| ()),
            Call::CloseCase(r) => c.close_case_account(r).await.map(|_| ()),
            Call::ListEntries(r) => c.list_entries(r).await.map(|_| ()),
        }
    }

    /// Sends every row, then asserts that each was refused as expected and that the
    /// ledger is exactly as it was before. Every row is tried before anything fails, so
    /// a failure lists all the rows that went wrong.
    async fn refuse_all(&mut self, rows: Vec<Row>) {
        let before = self.snapshot().await;
        let count = rows.len();
        let mut problems = Vec::new();
        for Row {
            what,
            call,
            code,
            field,
        } in rows
        {
            match self.send(call).await {
                Ok(()) => problems.push(format!(
                    "{what}: accepted; expected {code:?} naming {field:?}"
                )),
                Err(status) => {
                    if let Some(problem) = refusal_problem(&status, code, &field) {
                        problems.push(format!("{what}: {problem}"));
                    }
                }
            }
        }
        let after = self.snapshot().await;
        assert!(
            problems.is_empty(),
            "{} of {count} bad requests were not refused as expected:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
        assert_unchanged(&before, &after);
    }

    /// Stops the server cleanly once the clients are gone.
    async fn finish(self) {
        let Ledger {
            _dir: dir,
            server,
            specials,
            cases,
            ..
        } = self;
        drop((specials, cases));
        server.stop().await;
        drop(dir);
    }
}

fn assert_unchanged(before: &Snapshot, after: &Snapshot) {
    assert_eq!(
        before.sequence, after.sequence,
        "the journal moved on: bad requests wrote entries"
    );
    assert_eq!(
        before.case.balances, after.case.balances,
        "the balances of {CASE} changed"
    );
    assert_eq!(
        before.other.balances, after.other.balances,
        "the balances of {OTHER} changed"
    );
    assert_eq!(before, after, "the ledger changed");
}

/// `n` copies of `unit`.
fn long(unit: &str, n: usize) -> String {
    unit.repeat(n)
}

// ----------------------------------------------------------------------------------
// 1. Amounts
// ----------------------------------------------------------------------------------

const BAD_AMOUNTS: &[&str] = &[
    "0",
    "0.00",
    "-1",
    "1.001",
    "1e3",
    "abc",
    "99999999999999999",
    "10000000000.01",
    "",
    " 1",
    "1 ",
    "1,000",
    "+1",
    "1.",
    ".5",
    "１",
];

#[tokio::test]
async fn bad_amounts_are_refused_naming_the_amount() {
    let mut ledger = Ledger::start().await;
    let mut rows = Vec::new();
    for &amount in BAD_AMOUNTS {
        rows.push(invalid(
            format!("RecordReceipt amount {amount:?}"),
            Call::Receipt(with(receipt(), |r| r.amount = amount.into())),
            "amount",
        ));
        rows.push(invalid(
            format!("RequestDisbursement amount {amount:?}"),
            Call::Disburse(with(disbursement(), |r| r.amount = amount.into())),
            "amount",
        ));
        rows.push(invalid(
            format!("TransferBetweenCases amount {amount:?}"),
            Call::Transfer(with(transfer(), |r| r.amount = amount.into())),
            "amount",
        ));
    }
    for target in ["-1", "-0", "1.001", "1e3", "abc", "99999999999999999"] {
        rows.push(invalid(
            format!("OpenCaseAccount target_amount {target:?}"),
            Call::OpenCase(common::open_case_request(&ledger.special_id, FRESH, target)),
            "target_amount",
        ));
    }
    ledger.refuse_all(rows).await;

    // A refusal records nothing under its request id either: the id of a refused
    // receipt is free for the corrected request, which is then the next entry.
    let refused = with(receipt(), |r| r.amount = "1.001".into());
    let status = ledger
        .cases
        .record_receipt(refused.clone())
        .await
        .expect_err("1.001 is refused");
    assert_invalid(&status, Code::InvalidArgument, "amount");
    let before = ledger.snapshot().await;
    let corrected = with(refused, |r| r.amount = "1.00".into());
    let entry = ledger
        .cases
        .record_receipt(corrected)
        .await
        .expect("the corrected request with the refused request id is accepted")
        .into_inner();
    assert_eq!(entry.sequence, before.sequence + 1);
    assert_eq!(entry.running_balance, "501.00");
    ledger.finish().await;
}

// ----------------------------------------------------------------------------------
// 2. Case numbers
// ----------------------------------------------------------------------------------

fn bad_case_numbers() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("blank", "   ".into()),
        ("no parentheses", "2018云0102执123号".into()),
        ("not an enforcement case", "（2018）云0102民初123号".into()),
        ("leading zero", "（2018）云0102执0123号".into()),
        ("unknown court", "（2018）XX执1号".into()),
        ("two-digit year", "（18）云0102执1号".into()),
        ("year out of range", "（1989）云0102执1号".into()),
        ("no 号", "（2018）云0102执1".into()),
        ("whitespace inside", "（2018）云0102 执1号".into()),
        ("eight-digit sequence", "（2018）云0102执12345678号".into()),
        ("bad suffix", "（2018）云0102执1号之零".into()),
        ("500 characters", long("执", 500)),
        (
            "500 characters, well-formed start",
            format!("（2018）云0102执{}号", long("1", 490)),
        ),
    ]
}

#[tokio::test]
async fn malformed_case_numbers_are_refused_naming_the_field() {
    let mut ledger = Ledger::start().await;
    let special_id = ledger.special_id.clone();
    let mut rows = Vec::new();
    for (what, number) in bad_case_numbers() {
        let n = || number.clone();
        rows.push(invalid(
            format!("OpenCaseAccount, {what}: {number:?}"),
            Call::OpenCase(common::open_case_request(&special_id, &n(), "1000.00")),
            "case_number",
        ));
        rows.push(invalid(
            format!("TransferBetweenCases from, {what}"),
            Call::Transfer(with(transfer(), |r| r.from_case_number = n())),
            "from_case_number",
        ));
        rows.push(invalid(
            format!("TransferBetweenCases to, {what}"),
            Call::Transfer(with(transfer(), |r| r.to_case_number = n())),
            "to_case_number",
        ));
        rows.push(invalid(
            format!("RecordReceipt, {what}"),
            Call::Receipt(with(receipt(), |r| {
                r.account = Some(pb::record_receipt_request::Account::CaseNumber(n()))
            })),
            "case_number",
        ));
        rows.push(invalid(
            format!("RequestDisbursement, {what}"),
            Call::Disburse(with(disbursement(), |r| r.case_number = n())),
            "case_number",
        ));
        rows.push(invalid(
            format!("CloseCaseAccount, {what}"),
            Call::CloseCase(with(close_case(), |r| r.case_number = n())),
            "case_number",
        ));
        rows.push(invalid(
            format!("GetCaseAccount, {what}"),
            Call::GetCase(get_case(&n())),
            "case_number",
        ));
        rows.push(invalid(
            format!("ListEntries, {what}"),
            Call::ListEntries(list_entries(&n())),
            "case_number",
        ));
    }
    // Well-formed, but of a court this special account (云0102) does not cover.
    rows.push(invalid(
        "OpenCaseAccount, case of another court",
        Call::OpenCase(common::open_case_request(
            &special_id,
            "（2024）云0103执1号",
            "1000.00",
        )),
        "case_number",
    ));
    ledger.refuse_all(rows).await;
    ledger.finish().await;
}

// ----------------------------------------------------------------------------------
// 3. Court codes
// ----------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_court_codes_are_refused_naming_the_field() {
    let mut ledger = Ledger::start().await;
    let codes: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("blank", "   ".into()),
        ("intermediate digits 00", "云00".into()),
        ("basic digits 00", "云0100".into()),
        ("one digit", "云0".into()),
        ("six digits", "云010203".into()),
        ("full-width digits", "云０１".into()),
        ("not a province", "XY".into()),
        ("Hong Kong", "港01".into()),
        ("Supreme Court misspelt", "最高".into()),
        ("Supreme Court with digits", "最高法01".into()),
        ("100 characters", format!("云{}", long("1", 99))),
    ];
    let mut rows = Vec::new();
    for (what, code) in codes {
        rows.push(invalid(
            format!("OpenSpecialAccount court_code, {what}: {code:?}"),
            Call::OpenSpecial(common::open_special_request(&code, "2502010009200099999")),
            "court_code",
        ));
        // "" lists every court, so it is no bad input for a listing.
        if !code.is_empty() {
            rows.push(invalid(
                format!("ListSpecialAccounts court_code, {what}"),
                Call::ListSpecials(pb::ListSpecialAccountsRequest {
                    court_code: code.clone(),
                    ..Default::default()
                }),
                "court_code",
            ));
        }
    }
    ledger.refuse_all(rows).await;
    ledger.finish().await;
}

// ----------------------------------------------------------------------------------
// 4. Missing or empty required fields
// ----------------------------------------------------------------------------------

#[tokio::test]
async fn missing_fields_are_refused_naming_the_field() {
    let mut ledger = Ledger::start().await;
    let special_id = ledger.special_id.clone();
    let open_case = || common::open_case_request(&special_id, FRESH, "1000.00");
    let open_special = || common::open_special_request("云0102", "2502010009200099999");
    let mut rows = Vec::new();

    for (what, request_id) in [
        ("empty", String::new()),
        ("with a space", "has space".to_owned()),
        ("65 characters", long("x", 65)),
        ("non-ASCII", "请求一".to_owned()),
    ] {
        rows.push(invalid(
            format!("RecordReceipt request_id {what}"),
            Call::Receipt(with(receipt(), |r| r.request_id = request_id.clone())),
            "request_id",
        ));
        rows.push(invalid(
            format!("OpenCaseAccount request_id {what}"),
            Call::OpenCase(with(open_case(), |r| r.request_id = request_id.clone())),
            "request_id",
        ));
        rows.push(invalid(
            format!("OpenSpecialAccount request_id {what}"),
            Call::OpenSpecial(with(open_special(), |r| r.request_id = request_id.clone())),
            "request_id",
        ));
        rows.push(invalid(
            format!("TransferBetweenCases request_id {what}"),
            Call::Transfer(with(transfer(), |r| r.request_id = request_id.clone())),
            "request_id",
        ));
    }

    // OpenSpecialAccount: every required text, empty and blank.
    for blank in ["", "  "] {
        let special = |change: fn(&mut pb::OpenSpecialAccountRequest, &str)| {
            Call::OpenSpecial(with(open_special(), |r| change(r, blank)))
        };
        rows.push(invalid(
            format!("OpenSpecialAccount bank_name {blank:?}"),
            special(|r, v| r.bank_name = v.into()),
            "bank_name",
        ));
        rows.push(invalid(
            format!("OpenSpecialAccount account_number {blank:?}"),
            special(|r, v| r.account_number = v.into()),
            "account_number",
        ));
        rows.push(invalid(
            format!("OpenSpecialAccount account_name {blank:?}"),
            special(|r, v| r.account_name = v.into()),
            "account_name",
        ));
        rows.push(invalid(
            format!("OpenSpecialAccount document_ref {blank:?}"),
            special(|r, v| r.document_ref = v.into()),
            "document_ref",
        ));
    }

    // OpenCaseAccount: parties.
    rows.push(invalid(
        "OpenCaseAccount without applicants",
        Call::OpenCase(with(open_case(), |r| r.applicants.clear())),
        "applicants",
    ));
    rows.push(invalid(
        "OpenCaseAccount without respondents",
        Call::OpenCase(with(open_case(), |r| r.respondents.clear())),
        "respondents",
    ));
    rows.push(invalid(
        "OpenCaseAccount applicant without payee_account",
        Call::OpenCase(with(open_case(), |r| r.applicants[0].payee_account.clear())),
        "applicants[0].payee_account",
    ));
    rows.push(invalid(
        "OpenCaseAccount second applicant without payee_account",
        Call::OpenCase(with(open_case(), |r| {
            let mut second = r.applicants[0].clone();
            second.name = "李四".into();
            second.payee_account.clear();
            r.applicants.push(second);
        })),
        "applicants[1].payee_account",
    ));
    rows.push(invalid(
        "OpenCaseAccount applicant without name",
        Call::OpenCase(with(open_case(), |r| r.applicants[0].name.clear())),
        "applicants[0].name",
    ));
    rows.push(invalid(
        "OpenCaseAccount respondent without name",
        Call::OpenCase(with(open_case(), |r| r.respondents[0].name = " ".into())),
        "respondents[0].name",
    ));
    rows.push(invalid(
        "OpenCaseAccount without special_account_id",
        Call::OpenCase(with(open_case(), |r| r.special_account_id.clear())),
        "special_account_id",
    ));

    // RecordReceipt.
    rows.push(invalid(
        "RecordReceipt without account",
        Call::Receipt(with(receipt(), |r| r.account = None)),
        "case_number",
    ));
    rows.push(invalid(
        "RecordReceipt without bank_ref",
        Call::Receipt(with(receipt(), |r| r.bank_ref.clear())),
        "bank_ref",
    ));
    rows.push(invalid(
        "RecordReceipt without payer_name",
        Call::Receipt(with(receipt(), |r| r.payer_name.clear())),
        "payer_name",
    ));
    for date in [
        "",
        "2024-02-30",
        "2023-02-29",
        "2024-13-01",
        "2024/03/01",
        "20240301",
    ] {
        rows.push(invalid(
            format!("RecordReceipt value_date {date:?}"),
            Call::Receipt(with(receipt(), |r| r.value_date = date.into())),
            "value_date",
        ));
    }

    // RequestDisbursement.
    for purpose in [pb::DisbursementPurpose::Unspecified as i32, 99] {
        rows.push(invalid(
            format!("RequestDisbursement purpose {purpose}"),
            Call::Disburse(with(disbursement(), |r| r.purpose = purpose)),
            "purpose",
        ));
    }
    rows.push(invalid(
        "RequestDisbursement without payee_name",
        Call::Disburse(with(disbursement(), |r| r.payee_name.clear())),
        "payee_name",
    ));
    rows.push(invalid(
        "RequestDisbursement without payee_account",
        Call::Disburse(with(disbursement(), |r| r.payee_account.clear())),
        "payee_account",
    ));

    // Transfers, closing, reversing, disbursement steps.
    rows.push(invalid(
        "TransferBetweenCases without reason",
        Call::Transfer(with(transfer(), |r| r.reason.clear())),
        "reason",
    ));
    for method in [pb::ClosureMethod::Unspecified as i32, 99] {
        rows.push(invalid(
            format!("CloseCaseAccount closure_method {method}"),
            Call::CloseCase(with(close_case(), |r| r.closure_method = method)),
            "closure_method",
        ));
    }
    rows.push(invalid(
        "CloseCaseAccount without reason",
        Call::CloseCase(with(close_case(), |r| r.reason.clear())),
        "reason",
    ));
    rows.push(invalid(
        "RecordReceipt value_date years ahead",
        Call::Receipt(with(receipt(), |r| r.value_date = "2042-03-01".into())),
        "value_date",
    ));
    rows.push(invalid(
        "ReverseEntry sequence 0",
        Call::Reverse(reverse(0)),
        "sequence",
    ));
    rows.push(invalid(
        "ReverseEntry without reason",
        Call::Reverse(with(reverse(ledger.receipt_sequence), |r| r.reason.clear())),
        "reason",
    ));
    rows.push(invalid(
        "ApproveDisbursement without disbursement_id",
        Call::Approve(approve("")),
        "disbursement_id",
    ));
    rows.push(invalid(
        "ApproveDisbursement without approval_ref",
        Call::Approve(with(approve(UNKNOWN_ID), |r| r.approval_ref.clear())),
        "approval_ref",
    ));
    rows.push(invalid(
        "ConfirmDisbursementPaid without bank_ref",
        Call::ConfirmPaid(with(confirm_paid(UNKNOWN_ID), |r| r.bank_ref.clear())),
        "bank_ref",
    ));
    rows.push(invalid(
        "GetDisbursement without disbursement_id",
        Call::GetDisbursement(pb::GetDisbursementRequest::default()),
        "disbursement_id",
    ));

    // Special account change and reads.
    rows.push(invalid(
        "RegisterAccountChange without any bank field",
        Call::ChangeSpecial(with(change_special(&special_id), |r| r.bank_branch = None)),
        "bank_name",
    ));
    rows.push(invalid(
        "RegisterAccountChange with an empty bank_name",
        Call::ChangeSpecial(with(change_special(&special_id), |r| {
            r.bank_name = Some(String::new())
        })),
        "bank_name",
    ));
    rows.push(invalid(
        "RegisterAccountChange without reason",
        Call::ChangeSpecial(with(change_special(&special_id), |r| r.reason.clear())),
        "reason",
    ));
    rows.push(invalid(
        "RegisterAccountChange without document_ref",
        Call::ChangeSpecial(with(change_special(&special_id), |r| {
            r.document_ref.clear()
        })),
        "document_ref",
    ));
    rows.push(invalid(
        "GetSpecialAccount without special_account_id",
        Call::GetSpecial(get_special("")),
        "special_account_id",
    ));
    rows.push(invalid(
        "GetSpecialAccount as_of in the year 11,000",
        Call::GetSpecial(with(get_special(&special_id), |r| {
            r.as_of = Some(prost_types::Timestamp {
                seconds: 285_000_000_000,
                nanos: 0,
            })
        })),
        "as_of",
    ));
    rows.push(invalid(
        "GetCaseAccount without account",
        Call::GetCase(with(get_case(CASE), |r| r.account = None)),
        "case_number",
    ));

    ledger.refuse_all(rows).await;
    ledger.finish().await;
}

// ----------------------------------------------------------------------------------
// 5. Oversized strings and messages
// ----------------------------------------------------------------------------------

#[tokio::test]
async fn oversized_strings_are_refused_naming_the_field() {
    let mut ledger = Ledger::start().await;
    let open_special = || common::open_special_request("云0102", "2502010009200099999");
    // Limits count characters, so CJK text (3 bytes each in UTF-8) one over the limit
    // is refused just as ASCII is.
    let rows = vec![
        invalid(
            "RecordReceipt payer_name of 201 characters",
            Call::Receipt(with(receipt(), |r| r.payer_name = long("张", 201))),
            "payer_name",
        ),
        invalid(
            "RecordReceipt payer_account of 65 characters",
            Call::Receipt(with(receipt(), |r| r.payer_account = long("6", 65))),
            "payer_account",
        ),
        invalid(
            "RecordReceipt bank_ref of 65 characters",
            Call::Receipt(with(receipt(), |r| r.bank_ref = long("A", 65))),
            "bank_ref",
        ),
        invalid(
            "TransferBetweenCases reason of 1001 characters",
            Call::Transfer(with(transfer(), |r| r.reason = long("因", 1001))),
            "reason",
        ),
        invalid(
            "TransferBetweenCases document_ref of 101 characters",
            Call::Transfer(with(transfer(), |r| r.document_ref = long("文", 101))),
            "document_ref",
        ),
        invalid(
            "OpenSpecialAccount document_ref of 101 characters",
            Call::OpenSpecial(with(open_special(), |r| r.document_ref = long("d", 101))),
            "document_ref",
        ),
        invalid(
            "OpenSpecialAccount bank_name of 201 characters",
            Call::OpenSpecial(with(open_special(), |r| r.bank_name = long("银", 201))),
            "bank_name",
        ),
        invalid(
            "OpenSpecialAccount account_number of 65 characters",
            Call::OpenSpecial(with(open_special(), |r| r.account_number = long("1", 65))),
            "account_number",
        ),
        invalid(
            "RequestDisbursement payee_name of a zero-width space alone",
            Call::Disburse(with(disbursement(), |r| r.payee_name = "\u{200B}".into())),
            "payee_name",
        ),
        invalid(
            "RequestDisbursement payee_name of 201 characters",
            Call::Disburse(with(disbursement(), |r| r.payee_name = long("张", 201))),
            "payee_name",
        ),
        invalid(
            "RequestDisbursement memo of 1001 characters",
            Call::Disburse(with(disbursement(), |r| r.memo = long("m", 1001))),
            "memo",
        ),
        invalid(
            "ReverseEntry reason of 1001 characters",
            Call::Reverse(with(reverse(ledger.receipt_sequence), |r| {
                r.reason = long("误", 1001)
            })),
            "reason",
        ),
        invalid(
            "CloseCaseAccount reason of 1001 characters",
            Call::CloseCase(with(close_case(), |r| r.reason = long("结", 1001))),
            "reason",
        ),
        invalid(
            "GetDisbursement disbursement_id of 100,000 characters",
            Call::GetDisbursement(pb::GetDisbursementRequest {
                disbursement_id: long("x", 100_000),
            }),
            "disbursement_id",
        ),
        invalid(
            "RecordReceipt value_date of 100,000 control characters",
            Call::Receipt(with(receipt(), |r| r.value_date = long("\u{1}", 100_000))),
            "value_date",
        ),
        invalid(
            "RecordReceipt amount of 100,000 characters",
            Call::Receipt(with(receipt(), |r| r.amount = long("1x", 50_000))),
            "amount",
        ),
        invalid(
            "ApproveDisbursement approval_ref of 101 characters",
            Call::Approve(with(approve(UNKNOWN_ID), |r| {
                r.approval_ref = long("a", 101)
            })),
            "approval_ref",
        ),
    ];
    ledger.refuse_all(rows).await;

    // A message over the server's 1 MiB limit is refused by the transport before it is
    // decoded; the server goes on answering. 2 MB is under tonic's default limit of
    // 4 MiB, so this also shows the server's own limit is in force: without it the
    // message would be decoded and refused as an INVALID_ARGUMENT payer_name.
    let before = ledger.snapshot().await;
    let huge = with(receipt(), |r| r.payer_name = long("x", 2_000_000));
    let status = ledger
        .cases
        .record_receipt(huge)
        .await
        .expect_err("a 2 MB request is refused");
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "a too-large message gets OUT_OF_RANGE or RESOURCE_EXHAUSTED, got {:?}: {:?}",
        status.code(),
        status.message()
    );
    let after = ledger.snapshot().await;
    assert_unchanged(&before, &after);
    // And a fresh connection is served too.
    let mut fresh = ledger.server.cases().await;
    let balances = common::balances(&mut fresh, CASE).await;
    assert_eq!(balances, before.case.balances.clone().expect("balances"));
    drop(fresh);
    ledger.finish().await;
}

// ----------------------------------------------------------------------------------
// 6. Unknown and malformed ids
// ----------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_ids_are_not_found_and_malformed_ids_invalid() {
    let mut ledger = Ledger::start().await;
    let special_id = ledger.special_id.clone();
    let open_case = |id: &str| common::open_case_request(id, FRESH, "1000.00");
    let not_found = |what: &str, call: Call, named: &str| row(what, call, Code::NotFound, named);

    // The setup case's number with its last check digit changed.
    let mut mistyped_van = ledger.van.clone();
    let last = mistyped_van.pop().expect("a virtual account number");
    mistyped_van.push(if last == '0' { '1' } else { '0' });
    // Check digits that hold, under a special account serial never issued.
    let stranger_van = VirtualAccountNumber::issue(99_999, 123_456_789).to_string();
    let by_van = |van: &str| {
        with(receipt(), |r| {
            r.account = Some(pb::record_receipt_request::Account::VirtualAccountNumber(
                van.into(),
            ))
        })
    };

    let mut rows = vec![
        not_found(
            "GetSpecialAccount, unknown id",
            Call::GetSpecial(get_special(UNKNOWN_ID)),
            UNKNOWN_ID,
        ),
        not_found(
            "RegisterAccountChange, unknown id",
            Call::ChangeSpecial(change_special(UNKNOWN_ID)),
            UNKNOWN_ID,
        ),
        not_found(
            "OpenCaseAccount, unknown special account",
            Call::OpenCase(open_case(UNKNOWN_ID)),
            UNKNOWN_ID,
        ),
        not_found(
            "ApproveDisbursement, unknown id",
            Call::Approve(approve(UNKNOWN_ID)),
            UNKNOWN_ID,
        ),
        not_found(
            "ConfirmDisbursementPaid, unknown id",
            Call::ConfirmPaid(confirm_paid(UNKNOWN_ID)),
            UNKNOWN_ID,
        ),
        not_found(
            "GetDisbursement, unknown id",
            Call::GetDisbursement(pb::GetDisbursementRequest {
                disbursement_id: UNKNOWN_ID.into(),
            }),
            UNKNOWN_ID,
        ),
        not_found(
            "GetCaseAccount, unknown case number",
            Call::GetCase(get_case(UNKNOWN_CASE)),
            UNKNOWN_CASE,
        ),
        not_found(
            "RecordReceipt, unknown case number",
            Call::Receipt(with(receipt(), |r| {
                r.account = Some(pb::record_receipt_request::Account::CaseNumber(
                    UNKNOWN_CASE.into(),
                ))
            })),
            UNKNOWN_CASE,
        ),
        not_found(
            "ListEntries, unknown case number",
            Call::ListEntries(list_entries(UNKNOWN_CASE)),
            UNKNOWN_CASE,
        ),
        not_found(
            "RequestDisbursement, unknown case number",
            Call::Disburse(with(disbursement(), |r| {
                r.case_number = UNKNOWN_CASE.into()
            })),
            UNKNOWN_CASE,
        ),
        not_found(
            "TransferBetweenCases, unknown destination",
            Call::Transfer(with(transfer(), |r| r.to_case_number = UNKNOWN_CASE.into())),
            UNKNOWN_CASE,
        ),
        not_found(
            "ReverseEntry, sequence 999999",
            Call::Reverse(reverse(999_999)),
            "999999",
        ),
        not_found(
            "RecordReceipt, unknown virtual account number",
            Call::Receipt(by_van(&stranger_van)),
            &stranger_van,
        ),
        invalid(
            format!("RecordReceipt, mistyped virtual account number {mistyped_van}"),
            Call::Receipt(by_van(&mistyped_van)),
            "virtual_account_number",
        ),
        invalid(
            "RecordReceipt, 15-digit virtual account number",
            Call::Receipt(by_van(&ledger.van[..15])),
            "virtual_account_number",
        ),
        invalid(
            "GetCaseAccount, mistyped virtual account number",
            Call::GetCase(pb::GetCaseAccountRequest {
                account: Some(pb::get_case_account_request::Account::VirtualAccountNumber(
                    mistyped_van.clone(),
                )),
                as_of: None,
            }),
            "virtual_account_number",
        ),
    ];
    for bad in ["not-a-uuid", "0192f0c4-7b7e-7c1a-9c5e-2f7c1b0c9a1", "１"] {
        rows.push(invalid(
            format!("GetSpecialAccount special_account_id {bad:?}"),
            Call::GetSpecial(get_special(bad)),
            "special_account_id",
        ));
        rows.push(invalid(
            format!("RegisterAccountChange special_account_id {bad:?}"),
            Call::ChangeSpecial(change_special(bad)),
            "special_account_id",
        ));
        rows.push(invalid(
            format!("OpenCaseAccount special_account_id {bad:?}"),
            Call::OpenCase(open_case(bad)),
            "special_account_id",
        ));
        rows.push(invalid(
            format!("ApproveDisbursement disbursement_id {bad:?}"),
            Call::Approve(approve(bad)),
            "disbursement_id",
        ));
        rows.push(invalid(
            format!("GetDisbursement disbursement_id {bad:?}"),
            Call::GetDisbursement(pb::GetDisbursementRequest {
                disbursement_id: bad.into(),
            }),
            "disbursement_id",
        ));
    }
    // The real special account is found, so the ids above were refused for being
    // unknown, not because reads of special accounts fail.
    assert_eq!(
        ledger
            .specials
            .get_special_account(get_special(&special_id))
            .await
            .expect("the setup special account reads")
            .into_inner()
            .special_account_id,
        special_id
    );
    ledger.refuse_all(rows).await;
    ledger.finish().await;
}

/// The helper itself: it accepts the refusal it is told about and nothing else.
#[test]
fn assert_invalid_checks_code_and_field() {
    let refusal = Status::invalid_argument("amount: amount must be greater than zero");
    assert_invalid(&refusal, Code::InvalidArgument, "amount");
    assert!(refusal_problem(&refusal, Code::NotFound, "amount").is_some());
    assert!(refusal_problem(&refusal, Code::InvalidArgument, "to_case_number").is_some());
    let inner = Status::invalid_argument("from_case_number: case number is empty");
    assert!(refusal_problem(&inner, Code::InvalidArgument, "case_number").is_some());
    let fault = Status::internal("amount: oops");
    assert!(refusal_problem(&fault, Code::Internal, "amount").is_some());
}
