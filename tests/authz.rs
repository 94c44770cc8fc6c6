//! Who may do what, over gRPC: every RPC of the compiled descriptor × every role × in
//! and out of the caller's court, and for supervisors, national and mixed principals,
//! → allowed or PERMISSION_DENIED; and UNAUTHENTICATED without a token, with a wrong
//! one, and with a disabled principal's.
//!
//! The expected answers come from [`TABLE`], written by hand from issue 5's words, not
//! from `authz::RULES` (the table under test): a wrong row there fails this test.

mod common;

use case_escrow::api::pb;
use case_escrow::domain::Role;
use common::*;
use prost::Message;
use tonic::{Code, Status};

const IN: &str = "云0102";
const OUT: &str = "云0103";
/// A court of another intermediate court (云02), for the mixed principal.
const FAR: &str = "云0201";

/// What an RPC reaches, for the scope part of the expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// One court's things (named by court code, case number, or an id): a write needs
    /// a court the caller acts in, a read also takes a court it supervises.
    Court,
    /// The whole journal: only a principal with a scope of 最高法 reads it.
    Ledger,
    /// Only the caller itself, or a listing filtered to what the caller may see, or the
    /// API's description: never refused for scope.
    Anywhere,
}

use Reach::{Anywhere, Court as InCourt, Ledger};

const CLERK: &[Role] = &[Role::Clerk];
const APPROVER: &[Role] = &[Role::Approver];
const FINANCE: &[Role] = &[Role::Finance];
const ADMIN: &[Role] = &[Role::Admin];
const EVERY: &[Role] = &[
    Role::Clerk,
    Role::Approver,
    Role::Finance,
    Role::Admin,
    Role::Auditor,
];

/// One RPC: who may call it, whether it writes, what it reaches.
struct Row(&'static str, &'static [Role], bool, Reach);

const R: bool = false;
const W: bool = true;

/// Issue 5: "clerk (open case accounts, record receipts, request and cancel
/// disbursements, record deferrals), approver (approve or reject disbursements and
/// deferrals), finance (confirm, fail and return payments, unidentified receipts,
/// reconciliation), admin (special accounts, change registrations, principals),
/// auditor (read only)"; "supervisors of a higher court may read below them, not
/// write". Reads of the ledger are every role's, in scope. Where the issue names no
/// role, the decision is written next to the row.
const TABLE: &[Row] = &[
    Row("SpecialAccounts/OpenSpecialAccount", ADMIN, W, InCourt),
    Row("SpecialAccounts/RegisterAccountChange", ADMIN, W, InCourt),
    // Closing is part of "special accounts".
    Row("SpecialAccounts/CloseSpecialAccount", ADMIN, W, InCourt),
    Row("SpecialAccounts/GetSpecialAccount", EVERY, R, InCourt),
    // A listing that names a court is a read of that court.
    Row("SpecialAccounts/ListSpecialAccounts", EVERY, R, InCourt),
    Row("CaseLedger/OpenCaseAccount", CLERK, W, InCourt),
    Row("CaseLedger/GetCaseAccount", EVERY, R, InCourt),
    Row("CaseLedger/RecordReceipt", CLERK, W, InCourt),
    // Out of scope, its item is refused PERMISSION_DENIED on its own.
    Row("CaseLedger/RecordReceipts", CLERK, W, InCourt),
    Row("CaseLedger/RequestDisbursement", CLERK, W, InCourt),
    Row("CaseLedger/ApproveDisbursement", APPROVER, W, InCourt),
    Row("CaseLedger/RejectDisbursement", APPROVER, W, InCourt),
    Row("CaseLedger/CancelDisbursement", CLERK, W, InCourt),
    Row("CaseLedger/ConfirmDisbursementPaid", FINANCE, W, InCourt),
    Row("CaseLedger/FailDisbursement", FINANCE, W, InCourt),
    Row("CaseLedger/RecordReturnedPayment", FINANCE, W, InCourt),
    Row("CaseLedger/GetDisbursement", EVERY, R, InCourt),
    // Not named by the issue: corrections that move money between cases or undo an
    // entry, without a payment, go with finance's other bookkeeping.
    Row("CaseLedger/TransferBetweenCases", FINANCE, W, InCourt),
    Row("CaseLedger/ReverseEntry", FINANCE, W, InCourt),
    // Not named: the case officer who opened the case account closes it.
    Row("CaseLedger/CloseCaseAccount", CLERK, W, InCourt),
    Row("CaseLedger/ListEntries", EVERY, R, InCourt),
    Row("CaseLedger/RecordUnidentifiedReceipt", FINANCE, W, InCourt),
    Row("CaseLedger/AssignUnidentifiedReceipt", FINANCE, W, InCourt),
    Row("CaseLedger/ReturnUnidentifiedReceipt", FINANCE, W, InCourt),
    Row("CaseLedger/GetUnidentifiedReceipt", EVERY, R, InCourt),
    Row("CaseLedger/ListUnidentifiedReceipts", EVERY, R, InCourt),
    Row("CaseLedger/RecordDeferral", CLERK, W, InCourt),
    // Not named: ending a deferral only shortens the hold; the case officer who
    // recorded it says when its reason ended.
    Row("CaseLedger/EndDeferral", CLERK, W, InCourt),
    Row("CaseLedger/GetDeferral", EVERY, R, InCourt),
    Row("CaseLedger/ApproveDeferral", APPROVER, W, InCourt),
    Row("CaseLedger/RejectDeferral", APPROVER, W, InCourt),
    // The journal spans every court: a read for every role, but only nationally.
    Row("Journal/GetDigest", EVERY, R, Ledger),
    Row("Journal/GetEntry", EVERY, R, Ledger),
    Row("Journal/VerifyJournal", EVERY, R, Ledger),
    Row("Journal/WatchJournal", EVERY, R, Ledger),
    // Not named: a copy of the whole journal is an operator's, i.e. the administrator's.
    Row("Journal/Backup", ADMIN, R, Ledger),
    // Reconciliation writes nothing: a read, so a supervising finance officer may run
    // it below its court.
    Row("Reconciliation/ReconcileCaseFlow", FINANCE, R, InCourt),
    Row("Reconciliation/ReconcileBankStatement", FINANCE, R, InCourt),
    Row("Principals/AddPrincipal", ADMIN, W, InCourt),
    Row("Principals/DisablePrincipal", ADMIN, W, InCourt),
    // Another principal's token (the matrix names another): the administrator's. Every
    // principal rotates its own (tests/principals.rs).
    Row("Principals/RotateToken", ADMIN, W, InCourt),
    // Principals are administration, not the ledger: not every role's to read.
    Row("Principals/GetPrincipal", ADMIN, R, InCourt),
    // Filtered to the principals the administrator manages.
    Row("Principals/ListPrincipals", ADMIN, R, Anywhere),
    Row("Principals/WhoAmI", EVERY, R, Anywhere),
    Row(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        EVERY,
        R,
        Anywhere,
    ),
];

fn row(method: &str) -> Option<&'static Row> {
    TABLE.iter().find(|r| full(r.0) == method)
}

/// `Service/Method` of this package, or a full path as written.
fn full(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/case_escrow.v1.{name}")
    }
}

/// Whether a court code (a scope) covers a court: itself and every court below it;
/// 最高法 covers every court. Written here, not taken from the domain.
fn covers(scope: &str, court: &str) -> bool {
    scope == "最高法" || court.starts_with(scope)
}

/// A principal of the matrix: one role (so that four eyes never explains a refusal),
/// courts it acts in and courts it supervises.
struct Who {
    label: String,
    role: Role,
    courts: &'static [&'static str],
    supervises: &'static [&'static str],
    ch: Ch,
}

impl Who {
    fn expects(&self, row: &Row, court: &str) -> bool {
        if !row.1.contains(&self.role) {
            return false;
        }
        let acts = self.courts.iter().any(|c| covers(c, court));
        let reads = acts || self.supervises.iter().any(|c| covers(c, court));
        match row.3 {
            InCourt if row.2 => acts,
            InCourt => reads,
            Ledger => self
                .courts
                .iter()
                .chain(self.supervises)
                .any(|c| *c == "最高法"),
            Anywhere => true,
        }
    }
}

/// Every RPC the server's own descriptor set names, as gRPC paths.
fn every_rpc() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut out = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                out.push(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    out.push("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".into());
    out
}

/// Things that exist in one court, for requests that name them.
#[derive(Clone, Default)]
struct Court {
    code: String,
    special: String,
    case: String,
    van: String,
    disbursement: String,
    unidentified: String,
    deferral: String,
    receipt_sequence: u64,
    principal: String,
}

async fn court(server: &TestServer, code: &str) -> Court {
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, code).await.special_account_id;
    let case = format!("（2024）{code}执1号");
    let van = open_case(&mut cases, &special, &case)
        .await
        .virtual_account_number;
    let receipt = cases
        .record_receipt(receipt_request(&case, "1000.00", &rid()))
        .await
        .expect("receipt")
        .into_inner();
    let disbursement = cases
        .request_disbursement(disbursement_request(&case, "10.00"))
        .await
        .expect("disbursement")
        .into_inner()
        .disbursement_id;
    let unidentified = cases
        .record_unidentified_receipt(pb::RecordUnidentifiedReceiptRequest {
            request_id: rid(),
            special_account_id: special.clone(),
            amount: "5.00".into(),
            payer_name: "某人".into(),
            bank_ref: rid().replace('-', ""),
            value_date: day(0),
            ..Default::default()
        })
        .await
        .expect("unidentified receipt")
        .into_inner()
        .unidentified_receipt_id;
    let deferral = cases
        .record_deferral(pb::RecordDeferralRequest {
            request_id: rid(),
            case_number: case.clone(),
            reason: pb::DeferralReason::Frozen as i32,
            approval_ref: "批2024-1".into(),
            note: String::new(),
        })
        .await
        .expect("deferral")
        .into_inner()
        .deferral_id;
    let principal = principal_id(server, &[Role::Auditor], &[code]).await;
    Court {
        code: code.into(),
        special,
        case,
        van,
        disbursement,
        unidentified,
        deferral,
        receipt_sequence: receipt.sequence,
        principal,
    }
}

async fn principal_id(server: &TestServer, roles: &[Role], courts: &[&str]) -> String {
    let token = principal(server, roles, courts).await;
    let mut client = pb::principals_client::PrincipalsClient::new(server.channel_as(&token).await);
    client
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("who am i")
        .into_inner()
        .principal_id
}

/// A call of any kind with one message; its status (OK or the error's).
async fn call<M: Message + Default + Send + Sync + 'static>(
    channel: Ch,
    path: &str,
    message: M,
    streaming_in: bool,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path: tonic::codegen::http::uri::PathAndQuery = path.parse().expect("a path");
    let codec = tonic_prost::ProstCodec::<M, ()>::default();
    if streaming_in {
        let request = tonic::Request::new(tokio_stream::iter(vec![message]));
        let mut answers = grpc.streaming(request, path, codec).await?.into_inner();
        answers.message().await?;
        return Ok(());
    }
    // Unary and server-streaming calls share the request shape; a server stream
    // is read until its first message or status.
    let request = tonic::Request::new(tokio_stream::iter(vec![message]));
    let mut answers = grpc.streaming(request, path, codec).await?.into_inner();
    answers.message().await?;
    Ok(())
}

/// One request for `method`, aimed at court `c`; `None` for a method this test has
/// no request for (which fails the test).
async fn request(method: &str, c: &Court, ch: Ch) -> Option<Result<(), Status>> {
    let name = method.rsplit('/').next().unwrap_or_default();
    let r = rid();
    macro_rules! go {
        ($m:expr) => {
            call(ch, method, $m, false).await
        };
    }
    Some(match name {
        "OpenSpecialAccount" => go!(open_special_request(&c.code, "2502010009200099999")),
        "RegisterAccountChange" => go!(pb::RegisterAccountChangeRequest {
            request_id: r,
            special_account_id: c.special.clone(),
            bank_branch: Some(format!("支行{}", rid())),
            reason: "迁址".into(),
            document_ref: "文1".into(),
            ..Default::default()
        }),
        "CloseSpecialAccount" => go!(pb::CloseSpecialAccountRequest {
            request_id: r,
            special_account_id: c.special.clone(),
            reason: "撤销".into(),
            document_ref: "文2".into(),
        }),
        "GetSpecialAccount" => go!(pb::GetSpecialAccountRequest {
            special_account_id: c.special.clone(),
            ..Default::default()
        }),
        "ListSpecialAccounts" => go!(pb::ListSpecialAccountsRequest {
            court_code: c.code.clone(),
            ..Default::default()
        }),
        "OpenCaseAccount" => go!(open_case_request(
            &c.special,
            &format!("（2024）{}执101号", c.code),
            "100.00"
        )),
        "GetCaseAccount" => go!(pb::GetCaseAccountRequest {
            account: Some(pb::get_case_account_request::Account::VirtualAccountNumber(
                c.van.clone()
            )),
            as_of: None,
        }),
        "RecordReceipt" => go!(receipt_request(&c.case, "1.00", &rid())),
        // Refused item by item: an item out of scope is PERMISSION_DENIED on its own.
        "RecordReceipts" => {
            let answer = pb::case_ledger_client::CaseLedgerClient::new(ch)
                .record_receipts(pb::RecordReceiptsRequest {
                    request_id: String::new(),
                    receipts: vec![receipt_request(&c.case, "1.00", &rid())],
                })
                .await;
            answer.and_then(|a| {
                match a
                    .into_inner()
                    .results
                    .first()
                    .and_then(|r| r.result.clone())
                {
                    Some(pb::receipt_result::Result::Error(e)) => {
                        Err(Status::new(Code::from(e.code), e.message))
                    }
                    _ => Ok(()),
                }
            })
        }
        "RequestDisbursement" => go!(disbursement_request(&c.case, "1.00")),
        "ApproveDisbursement" => go!(pb::ApproveDisbursementRequest {
            request_id: r,
            disbursement_id: c.disbursement.clone(),
            approval_ref: "批1".into(),
        }),
        "RejectDisbursement" => go!(pb::RejectDisbursementRequest {
            request_id: r,
            disbursement_id: c.disbursement.clone(),
            reason: "不符".into(),
        }),
        "CancelDisbursement" => go!(pb::CancelDisbursementRequest {
            request_id: r,
            disbursement_id: c.disbursement.clone(),
            reason: "撤回".into(),
        }),
        "ConfirmDisbursementPaid" => go!(pb::ConfirmDisbursementPaidRequest {
            request_id: r,
            disbursement_id: c.disbursement.clone(),
            bank_ref: rid().replace('-', ""),
            paid_at: None,
        }),
        "FailDisbursement" => go!(pb::FailDisbursementRequest {
            request_id: r,
            disbursement_id: c.disbursement.clone(),
            reason: "退票".into(),
        }),
        "RecordReturnedPayment" => go!(pb::RecordReturnedPaymentRequest {
            request_id: r,
            disbursement_id: c.disbursement.clone(),
            bank_ref: rid().replace('-', ""),
            reason: "退回".into(),
        }),
        "GetDisbursement" => go!(pb::GetDisbursementRequest {
            disbursement_id: c.disbursement.clone(),
        }),
        "TransferBetweenCases" => go!(pb::TransferBetweenCasesRequest {
            request_id: r,
            from_case_number: c.case.clone(),
            to_case_number: c.case.clone(),
            amount: "1.00".into(),
            reason: "调整".into(),
            document_ref: "文3".into(),
        }),
        "ReverseEntry" => go!(pb::ReverseEntryRequest {
            request_id: r,
            sequence: c.receipt_sequence,
            reason: "冲正".into(),
        }),
        "CloseCaseAccount" => go!(pb::CloseCaseAccountRequest {
            request_id: r,
            case_number: c.case.clone(),
            closure_method: pb::ClosureMethod::Completed as i32,
            reason: "结案".into(),
        }),
        "ListEntries" => go!(pb::ListEntriesRequest {
            case_number: c.case.clone(),
            ..Default::default()
        }),
        "RecordUnidentifiedReceipt" => go!(pb::RecordUnidentifiedReceiptRequest {
            request_id: r,
            special_account_id: c.special.clone(),
            amount: "1.00".into(),
            payer_name: "某人".into(),
            bank_ref: rid().replace('-', ""),
            value_date: day(0),
            ..Default::default()
        }),
        "AssignUnidentifiedReceipt" => go!(pb::AssignUnidentifiedReceiptRequest {
            request_id: r,
            unidentified_receipt_id: c.unidentified.clone(),
            case_number: c.case.clone(),
        }),
        "ReturnUnidentifiedReceipt" => go!(pb::ReturnUnidentifiedReceiptRequest {
            request_id: r,
            unidentified_receipt_id: c.unidentified.clone(),
            reason: "退回".into(),
            bank_ref: String::new(),
        }),
        "GetUnidentifiedReceipt" => go!(pb::GetUnidentifiedReceiptRequest {
            unidentified_receipt_id: c.unidentified.clone(),
        }),
        "ListUnidentifiedReceipts" => go!(pb::ListUnidentifiedReceiptsRequest {
            special_account_id: c.special.clone(),
            ..Default::default()
        }),
        "RecordDeferral" => go!(pb::RecordDeferralRequest {
            request_id: r,
            case_number: c.case.clone(),
            reason: pb::DeferralReason::Other as i32,
            approval_ref: "批2".into(),
            note: String::new(),
        }),
        "EndDeferral" => go!(pb::EndDeferralRequest {
            request_id: r,
            deferral_id: c.deferral.clone(),
        }),
        "GetDeferral" => go!(pb::GetDeferralRequest {
            deferral_id: c.deferral.clone(),
        }),
        "ApproveDeferral" => go!(pb::ApproveDeferralRequest {
            request_id: r,
            deferral_id: c.deferral.clone(),
        }),
        "RejectDeferral" => go!(pb::RejectDeferralRequest {
            request_id: r,
            deferral_id: c.deferral.clone(),
            reason: "不符".into(),
        }),
        "GetDigest" => go!(pb::GetDigestRequest {}),
        "GetEntry" => go!(pb::GetEntryRequest {
            sequence: 1,
            digest_sequence: 0,
        }),
        "VerifyJournal" => go!(pb::VerifyJournalRequest::default()),
        "WatchJournal" => go!(pb::WatchJournalRequest { from_sequence: 1 }),
        "Backup" => go!(pb::BackupRequest {}),
        "ReconcileCaseFlow" => {
            call(
                ch,
                method,
                pb::ReconcileCaseFlowRequest {
                    message: Some(pb::reconcile_case_flow_request::Message::Header(
                        pb::CaseFlowHeader {
                            as_of: day(0),
                            court_scope: c.code.clone(),
                            ..Default::default()
                        },
                    )),
                },
                true,
            )
            .await
        }
        "ReconcileBankStatement" => {
            call(
                ch,
                method,
                pb::ReconcileBankStatementRequest {
                    message: Some(pb::reconcile_bank_statement_request::Message::Header(
                        pb::BankStatementHeader {
                            special_account_id: c.special.clone(),
                            period_from: day(-1),
                            period_to: day(0),
                            opening_balance: "0.00".into(),
                            closing_balance: "0.00".into(),
                            ..Default::default()
                        },
                    )),
                },
                true,
            )
            .await
        }
        // An auditor, so that an allowed call needs no token_sha256 and succeeds.
        "AddPrincipal" => go!(pb::AddPrincipalRequest {
            request_id: r.clone(),
            name: format!("new-{r}"),
            roles: vec![pb::Role::Auditor as i32],
            court_scopes: vec![c.code.clone()],
            ..Default::default()
        }),
        "DisablePrincipal" => go!(pb::DisablePrincipalRequest {
            request_id: r,
            principal_id: c.principal.clone(),
            reason: "离职".into(),
        }),
        "RotateToken" => go!(pb::RotateTokenRequest {
            request_id: r,
            principal_id: c.principal.clone(),
            token_sha256: String::new(),
        }),
        "GetPrincipal" => go!(pb::GetPrincipalRequest {
            principal_id: c.principal.clone(),
        }),
        "ListPrincipals" => go!(pb::ListPrincipalsRequest::default()),
        "WhoAmI" => go!(pb::WhoAmIRequest {}),
        "ServerReflectionInfo" => {
            use tonic_reflection::pb::v1::{
                server_reflection_request::MessageRequest, ServerReflectionRequest,
            };
            call(
                ch,
                method,
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                },
                true,
            )
            .await
        }
        _ => return None,
    })
}

/// A principal of one role with these courts, as `Who`. Money roles bring their own
/// token (the administrator is given its hash).
async fn who(
    server: &TestServer,
    label: &str,
    role: Role,
    courts: &'static [&'static str],
    supervises: &'static [&'static str],
) -> Who {
    let (token, sha256) = case_escrow::cli::auth::new_token().expect("a token");
    let to_pb = |r: Role| match r {
        Role::Clerk => pb::Role::Clerk,
        Role::Approver => pb::Role::Approver,
        Role::Finance => pb::Role::Finance,
        Role::Admin => pb::Role::Admin,
        Role::Auditor => pb::Role::Auditor,
    } as i32;
    pb::principals_client::PrincipalsClient::new(server.channel_as(&server.admin_token).await)
        .add_principal(pb::AddPrincipalRequest {
            request_id: rid(),
            name: format!("{label}-{}", role.name()),
            roles: vec![to_pb(role)],
            court_scopes: courts.iter().map(|c| (*c).to_owned()).collect(),
            supervised_scopes: supervises.iter().map(|c| (*c).to_owned()).collect(),
            approval_level: 9,
            token_sha256: sha256,
            ..Default::default()
        })
        .await
        .expect("the principal is added");
    Who {
        label: format!("{label} {}", role.name()),
        role,
        courts,
        supervises,
        ch: server.channel_as(&token).await,
    }
}

/// One principal of each role with these courts.
async fn group(
    server: &TestServer,
    label: &str,
    courts: &'static [&'static str],
    supervises: &'static [&'static str],
) -> Vec<Who> {
    let mut out = Vec::new();
    for role in EVERY {
        out.push(who(server, label, *role, courts, supervises).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_by_every_role_in_and_out_of_scope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let rpcs = every_rpc();
    assert!(rpcs.len() > 40, "only {} RPCs found", rpcs.len());
    // Every RPC the server offers has a row written here, and every row an RPC.
    let missing: Vec<_> = rpcs.iter().filter(|m| row(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "RPCs with no row in this test's TABLE (write one from issue 5): {missing:?}"
    );
    let stale: Vec<_> = TABLE
        .iter()
        .map(|r| full(r.0))
        .filter(|m| !rpcs.contains(m))
        .collect();
    assert!(
        stale.is_empty(),
        "rows for RPCs the server lacks: {stale:?}"
    );

    let courts = [
        court(&server, IN).await,
        court(&server, OUT).await,
        court(&server, FAR).await,
    ];
    let place = |code: &str| {
        courts
            .iter()
            .find(|c| c.code == code)
            .expect("a court of the test")
    };
    // (principals, the courts each is tried on)
    let mut runs: Vec<(Vec<Who>, &[&str])> = Vec::new();
    // Each role in one court, tried there and in its sibling court.
    runs.push((group(&server, "court", &[IN], &[]).await, &[IN, OUT]));
    // A supervisor of the higher court reads 云0102 and writes nothing there.
    runs.push((group(&server, "supervisor", &[], &["云"]).await, &[IN]));
    // A national principal is in scope everywhere, the journal included.
    runs.push((
        group(&server, "national", &["最高法"], &[]).await,
        &[IN, FAR],
    ));
    // Acting in 云01 and supervising 云: writes in 云0102, only reads in 云02xx.
    runs.push((
        group(&server, "mixed", &["云01"], &["云"]).await,
        &[IN, FAR],
    ));

    let mut wrong = Vec::new();
    let mut calls = 0;
    for (principals, targets) in &runs {
        for method in &rpcs {
            let Some(expected_row) = row(method) else {
                continue;
            };
            for p in principals {
                for target in targets.iter() {
                    let c = place(target);
                    let Some(result) = request(method, c, p.ch.clone()).await else {
                        panic!("{method}: the matrix test has no request for it");
                    };
                    calls += 1;
                    let want = p.expects(expected_row, target);
                    let got = match &result {
                        Ok(()) => true,
                        Err(s) => {
                            !matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated)
                        }
                    };
                    let refused_right = match &result {
                        Err(s) => s.code() == Code::PermissionDenied,
                        Ok(()) => false,
                    };
                    if want != got || (!want && !refused_right) {
                        wrong.push(format!(
                            "{method} as {} on {target}: expected {}, got {:?}",
                            p.label,
                            if want { "allowed" } else { "PERMISSION_DENIED" },
                            result.err().map(|s| (s.code(), s.message().to_owned()))
                        ));
                    }
                }
            }
        }
    }
    assert!(calls > 1000, "only {calls} calls made");
    // Every principal may rotate its own token, whatever its role, even one that acts
    // in no court (a supervisor). Last: the old tokens stop working.
    for (principals, _) in &runs {
        for p in principals {
            let mut me = pb::principals_client::PrincipalsClient::new(p.ch.clone());
            let id = me
                .who_am_i(pb::WhoAmIRequest {})
                .await
                .expect("who am i")
                .into_inner()
                .principal_id;
            let (_, sha256) = case_escrow::cli::auth::new_token().expect("a token");
            if let Err(s) = me
                .rotate_token(pb::RotateTokenRequest {
                    request_id: rid(),
                    principal_id: id,
                    token_sha256: sha256,
                })
                .await
            {
                wrong.push(format!("{} rotating its own token: {s:?}", p.label));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_a_wrong_token_or_a_disabled_principal_is_unauthenticated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let place = court(&server, IN).await;
    let clerk = principal(&server, &[Role::Clerk], &[IN]).await;
    let wrong_token = "0".repeat(64);
    for method in every_rpc() {
        let cases: [(&str, Option<&str>); 3] = [
            ("no token", None),
            ("a wrong token", Some(&wrong_token)),
            ("a token with a space in it", Some("not a token")),
        ];
        for (what, token) in cases {
            let ch = match token {
                None => as_no_one(server.plain_channel().await),
                Some(t) => {
                    match case_escrow::cli::auth::ByRole::new(server.plain_channel().await, &[], t)
                    {
                        Ok(ch) => ch,
                        // A value a header cannot carry cannot be sent: nothing to test.
                        Err(_) => continue,
                    }
                }
            };
            let result = request(&method, &place, ch).await.expect("a request");
            let status = result.expect_err("refused");
            assert_eq!(status.code(), Code::Unauthenticated, "{method} with {what}");
            assert!(
                !status.message().contains(&wrong_token),
                "the token is echoed"
            );
        }
    }
    // A disabled principal's token stops working at once.
    let id = {
        let mut me = pb::principals_client::PrincipalsClient::new(server.channel_as(&clerk).await);
        me.who_am_i(pb::WhoAmIRequest {})
            .await
            .expect("the clerk is known")
            .into_inner()
            .principal_id
    };
    let mut admin =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&server.admin_token).await);
    let disabled = admin
        .disable_principal(pb::DisablePrincipalRequest {
            request_id: rid(),
            principal_id: id,
            reason: "调离".into(),
        })
        .await
        .expect("disabled")
        .into_inner();
    assert!(!disabled.enabled);
    let mut me = pb::principals_client::PrincipalsClient::new(server.channel_as(&clerk).await);
    let refused = me
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("a disabled principal is refused");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("disabled"), "{refused:?}");
    // Health checking needs no token.
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(server.plain_channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers without a token");
    server.stop().await;
}

fn as_no_one(channel: tonic::transport::Channel) -> Ch {
    case_escrow::cli::auth::ByRole::without_token(channel)
}

/// To a principal of one court, an id of another court's object and an id that names
/// nothing get the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_and_another_courts_id_are_indistinguishable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let outside = court(&server, OUT).await;
    let auditor = principal(&server, &[Role::Auditor], &[IN]).await;
    let mut cases =
        pb::case_ledger_client::CaseLedgerClient::new(server.channel_as(&auditor).await);
    let unknown = uuid::Uuid::now_v7().to_string();
    for (real, name) in [
        (outside.disbursement.clone(), "disbursement"),
        (outside.deferral.clone(), "deferral"),
        (outside.unidentified.clone(), "unidentified receipt"),
    ] {
        let mut answers = Vec::new();
        for id in [&real, &unknown] {
            let status = match name {
                "disbursement" => cases
                    .get_disbursement(pb::GetDisbursementRequest {
                        disbursement_id: id.clone(),
                    })
                    .await
                    .map(|_| ()),
                "deferral" => cases
                    .get_deferral(pb::GetDeferralRequest {
                        deferral_id: id.clone(),
                    })
                    .await
                    .map(|_| ()),
                _ => cases
                    .get_unidentified_receipt(pb::GetUnidentifiedReceiptRequest {
                        unidentified_receipt_id: id.clone(),
                    })
                    .await
                    .map(|_| ()),
            }
            .expect_err("refused");
            answers.push((status.code(), status.message().replace(id.as_str(), "<id>")));
        }
        assert_eq!(answers[0], answers[1], "{name}");
        assert_eq!(answers[0].0, Code::PermissionDenied, "{name}");
    }
    server.stop().await;
}

/// A principal that may read every court but write only its own is not let through
/// the scope check of a write whose target does not exist yet: it may exist by the time
/// the writer decides (sequences and virtual account numbers can be predicted), and the
/// writer checks no scope. What it may read, missing, is NOT_FOUND to it as before.
#[tokio::test]
async fn a_write_to_something_missing_needs_write_access_everywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let reverse = |sequence: u64| pb::ReverseEntryRequest {
        request_id: rid(),
        sequence,
        reason: "冲正".into(),
    };
    let reader = who(
        &server,
        "national-reader",
        Role::Finance,
        &[IN],
        &["最高法"],
    )
    .await;
    let mut cases = pb::case_ledger_client::CaseLedgerClient::new(reader.ch.clone());
    let refused = cases
        .reverse_entry(reverse(1_000_000))
        .await
        .expect_err("an entry that may come to be in any court");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // Entry 0 cannot exist anywhere: a missing field, whoever asks.
    let zero = cases
        .reverse_entry(reverse(0))
        .await
        .expect_err("no entry 0");
    assert_eq!(zero.code(), Code::InvalidArgument, "{zero:?}");
    assert!(zero.message().starts_with("sequence:"), "{zero:?}");
    let missing = cases
        .get_disbursement(pb::GetDisbursementRequest {
            disbursement_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .expect_err("no such disbursement");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // Near miss: one that may write everywhere learns that the entry does not exist.
    let national = who(&server, "national", Role::Finance, &["最高法"], &[]).await;
    let mut cases = pb::case_ledger_client::CaseLedgerClient::new(national.ch.clone());
    let missing = cases
        .reverse_entry(reverse(1_000_000))
        .await
        .expect_err("no such entry");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    server.stop().await;
}
