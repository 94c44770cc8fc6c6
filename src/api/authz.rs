//! Who may call what, in one place: [`RULES`] maps every RPC to the roles that may call
//! it, whether it reads or writes, and how its court is found; [`Scoped`] finds the
//! courts a request touches. The authentication layer (`auth.rs`) checks the role
//! before the request is decoded; each handler calls [`check`] first thing.
//!
//! Court scope: a principal acts (reads and writes) in the courts its `courts` cover
//! and only reads in the courts its `supervises` cover — "supervisors of a higher
//! court may read below them, not write". Whole-ledger reads (the journal) need a
//! scope of 最高法. An id that names nothing and an id outside the caller's courts get
//! the same PERMISSION_DENIED, so a scoped caller learns nothing about other courts;
//! only a caller who may read every court is told NOT_FOUND.

use std::sync::Arc;

use tonic::Status;
use uuid::Uuid;

use crate::domain::{Access, CourtCode, PrincipalState, Role};
use crate::ledger::State;
use crate::store::SledState;

use super::convert as cv;
use super::pb;

/// The authenticated principal of a call and what its RPC does, put into the
/// request's extensions by the authentication layer.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<PrincipalState>,
    pub rule: &'static Rule,
}

/// How an RPC's court is found (documentation of [`Scoped`]'s implementations; the
/// matrix test, tests/authz.rs, keeps its own expectations and does not read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CourtFrom {
    /// A court code field of the request.
    CourtCode,
    /// The court in a case number (or, for a virtual account number, the case's).
    CaseNumber,
    /// The court of the special account the request names.
    SpecialAccount,
    Disbursement,
    UnidentifiedReceipt,
    Deferral,
    /// The cases (or special account) of the journal entry named.
    JournalEntry,
    /// The courts of the principal named, or given.
    Principal,
    /// The whole ledger: needs a scope of 最高法.
    Everything,
    /// A listing: filtered to the caller's courts.
    Listing,
    /// Nothing beyond being authenticated.
    None,
    /// Checked once the stream's header arrives.
    StreamHeader,
}

#[derive(Debug)]
pub struct Rule {
    pub method: &'static str,
    pub roles: &'static [Role],
    pub access: Access,
    pub court: CourtFrom,
}

const ANY: &[Role] = &Role::ALL;
const CLERK: &[Role] = &[Role::Clerk];
const APPROVER: &[Role] = &[Role::Approver];
const FINANCE: &[Role] = &[Role::Finance];
const ADMIN: &[Role] = &[Role::Admin];

const fn rule(
    method: &'static str,
    roles: &'static [Role],
    access: Access,
    court: CourtFrom,
) -> Rule {
    Rule {
        method,
        roles,
        access,
        court,
    }
}

use Access::{Read, Write};
use CourtFrom as C;

/// Every RPC the server offers except health checking. A method missing here is
/// refused (PERMISSION_DENIED), and the matrix test fails for it.
pub static RULES: &[Rule] = &[
    rule(
        "/case_escrow.v1.SpecialAccounts/OpenSpecialAccount",
        ADMIN,
        Write,
        C::CourtCode,
    ),
    rule(
        "/case_escrow.v1.SpecialAccounts/RegisterAccountChange",
        ADMIN,
        Write,
        C::SpecialAccount,
    ),
    rule(
        "/case_escrow.v1.SpecialAccounts/CloseSpecialAccount",
        ADMIN,
        Write,
        C::SpecialAccount,
    ),
    rule(
        "/case_escrow.v1.SpecialAccounts/GetSpecialAccount",
        ANY,
        Read,
        C::SpecialAccount,
    ),
    rule(
        "/case_escrow.v1.SpecialAccounts/ListSpecialAccounts",
        ANY,
        Read,
        C::Listing,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/OpenCaseAccount",
        CLERK,
        Write,
        C::CaseNumber,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/GetCaseAccount",
        ANY,
        Read,
        C::CaseNumber,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/RecordReceipt",
        CLERK,
        Write,
        C::CaseNumber,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/RecordReceipts",
        CLERK,
        Write,
        C::CaseNumber,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/RequestDisbursement",
        CLERK,
        Write,
        C::CaseNumber,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/ApproveDisbursement",
        APPROVER,
        Write,
        C::Disbursement,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/RejectDisbursement",
        APPROVER,
        Write,
        C::Disbursement,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/CancelDisbursement",
        CLERK,
        Write,
        C::Disbursement,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/ConfirmDisbursementPaid",
        FINANCE,
        Write,
        C::Disbursement,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/FailDisbursement",
        FINANCE,
        Write,
        C::Disbursement,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/RecordReturnedPayment",
        FINANCE,
        Write,
        C::Disbursement,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/GetDisbursement",
        ANY,
        Read,
        C::Disbursement,
    ),
    // Corrections between cases and of past entries are finance's (issue 5 names no
    // role for them; they move money without a payment, like finance's other work).
    rule(
        "/case_escrow.v1.CaseLedger/TransferBetweenCases",
        FINANCE,
        Write,
        C::CaseNumber,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/ReverseEntry",
        FINANCE,
        Write,
        C::JournalEntry,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/CloseCaseAccount",
        CLERK,
        Write,
        C::CaseNumber,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/ListEntries",
        ANY,
        Read,
        C::CaseNumber,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/RecordUnidentifiedReceipt",
        FINANCE,
        Write,
        C::SpecialAccount,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/AssignUnidentifiedReceipt",
        FINANCE,
        Write,
        C::UnidentifiedReceipt,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/ReturnUnidentifiedReceipt",
        FINANCE,
        Write,
        C::UnidentifiedReceipt,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/GetUnidentifiedReceipt",
        ANY,
        Read,
        C::UnidentifiedReceipt,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/ListUnidentifiedReceipts",
        ANY,
        Read,
        C::SpecialAccount,
    ),
    // A clerk records a deferral; it holds nothing back until an approver approves it.
    rule(
        "/case_escrow.v1.CaseLedger/RecordDeferral",
        CLERK,
        Write,
        C::CaseNumber,
    ),
    // Ending a deferral is the case officer's, as recording it is (issue 5 names no
    // role for it): it only shortens the hold, it releases no money.
    rule(
        "/case_escrow.v1.CaseLedger/EndDeferral",
        CLERK,
        Write,
        C::Deferral,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/ApproveDeferral",
        APPROVER,
        Write,
        C::Deferral,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/RejectDeferral",
        APPROVER,
        Write,
        C::Deferral,
    ),
    rule(
        "/case_escrow.v1.CaseLedger/GetDeferral",
        ANY,
        Read,
        C::Deferral,
    ),
    rule(
        "/case_escrow.v1.Journal/GetDigest",
        ANY,
        Read,
        C::Everything,
    ),
    rule("/case_escrow.v1.Journal/GetEntry", ANY, Read, C::Everything),
    rule(
        "/case_escrow.v1.Journal/VerifyJournal",
        ANY,
        Read,
        C::Everything,
    ),
    rule(
        "/case_escrow.v1.Journal/WatchJournal",
        ANY,
        Read,
        C::Everything,
    ),
    rule("/case_escrow.v1.Journal/Backup", ADMIN, Read, C::Everything),
    rule(
        "/case_escrow.v1.Reconciliation/ReconcileCaseFlow",
        FINANCE,
        Read,
        C::StreamHeader,
    ),
    rule(
        "/case_escrow.v1.Reconciliation/ReconcileBankStatement",
        FINANCE,
        Read,
        C::StreamHeader,
    ),
    rule(
        "/case_escrow.v1.Principals/AddPrincipal",
        ADMIN,
        Write,
        C::Principal,
    ),
    rule(
        "/case_escrow.v1.Principals/DisablePrincipal",
        ADMIN,
        Write,
        C::Principal,
    ),
    // Any principal may rotate its own token; another's needs the role admin and
    // scope over it ([`check_rotate`]).
    rule(
        "/case_escrow.v1.Principals/RotateToken",
        ANY,
        Write,
        C::Principal,
    ),
    rule(
        "/case_escrow.v1.Principals/GetPrincipal",
        ADMIN,
        Read,
        C::Principal,
    ),
    rule(
        "/case_escrow.v1.Principals/ListPrincipals",
        ADMIN,
        Read,
        C::Listing,
    ),
    rule("/case_escrow.v1.Principals/WhoAmI", ANY, Read, C::None),
    // Reflection describes the API, not the ledger: any principal may use it.
    rule(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ANY,
        Read,
        C::None,
    ),
];

/// The rule of an RPC path such as `/case_escrow.v1.CaseLedger/RecordReceipt`.
pub fn rule_for(path: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.method == path)
}

/// What a request touches, as far as scope goes.
pub enum Scope {
    /// A court the request names itself (a court code, a case number's court).
    Court(CourtCode),
    /// The court of an object the request names by id: out of scope, the answer names
    /// the object as the request did, never its court, exactly as for a missing one.
    Found { court: CourtCode, what: String },
    /// The whole ledger.
    Everything,
    /// An id that names nothing: told apart from "out of scope" (by the handler's own
    /// NOT_FOUND) only to a caller who may read everything.
    Missing(String),
}

/// The courts a request touches. Parsing errors here are the client's mistake and
/// name the field, as the handler would.
pub trait Scoped {
    fn scopes(&self, reads: &SledState) -> Result<Vec<Scope>, Status>;
}

/// The caller of a request, after checking its scope; the first line of a handler.
pub fn check<T: Scoped>(
    request: &tonic::Request<T>,
    reads: &SledState,
) -> Result<Arc<PrincipalState>, Status> {
    let caller = caller(request)?;
    let scopes = request.get_ref().scopes(reads)?;
    within(&caller, &scopes)?;
    Ok(caller.principal)
}

/// [`check`], then the message.
pub fn authorize<T: Scoped>(
    request: tonic::Request<T>,
    reads: &SledState,
) -> Result<(Arc<PrincipalState>, T), Status> {
    let who = check(&request, reads)?;
    Ok((who, request.into_inner()))
}

/// RotateToken's check, the first line of its handler: a principal rotating its own
/// token needs nothing more (whatever its roles and scopes, its token is its own);
/// another principal's token is an administrator's to rotate, within its courts as
/// for DisablePrincipal. Answers the caller and the principal named.
pub fn check_rotate(
    request: &tonic::Request<pb::RotateTokenRequest>,
    reads: &SledState,
) -> Result<(Arc<PrincipalState>, Uuid), Status> {
    let caller = caller(request)?;
    let target: Uuid = cv::id("principal_id", &request.get_ref().principal_id)?;
    if target == caller.principal.id {
        return Ok((caller.principal, target));
    }
    if !caller.principal.has_role(Role::Admin) {
        return Err(Status::permission_denied(format!(
            "principal {} may rotate only its own token: another principal's needs the role admin",
            caller.principal.name
        )));
    }
    within(&caller, &request.get_ref().scopes(reads)?)?;
    Ok((caller.principal, target))
}

/// The authenticated caller, put there by the authentication layer.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("the call is not authenticated"))
}

/// Whether the caller may do its RPC's kind of access in every scope given.
pub fn within(caller: &Caller, scopes: &[Scope]) -> Result<(), Status> {
    let p = &caller.principal;
    let access = caller.rule.access;
    for scope in scopes {
        match scope {
            Scope::Court(court) if p.may(access, court) => {}
            Scope::Court(court) => return Err(out_of_scope(p, access, court.as_str())),
            Scope::Found { court, .. } if p.may(access, court) => {}
            Scope::Found { what, .. } => return Err(out_of_scope(p, access, what)),
            Scope::Everything if p.reads_everything() && access == Access::Read => {}
            Scope::Everything => {
                return Err(Status::permission_denied(format!(
                "principal {} may not read the whole ledger: that needs a court scope of 最高法",
                p.name
            )))
            }
            // The handler answers NOT_FOUND (or first INVALID_ARGUMENT for a bad
            // field) to a caller who may know what exists. Only to one who may do this
            // access everywhere, though: a write's target missing now may exist by the
            // time the writer decides (a virtual account number or a sequence can be
            // predicted), and the writer does not check scopes again.
            Scope::Missing(_) if p.may_everywhere(access) => {}
            Scope::Missing(what) => return Err(out_of_scope(p, access, what)),
        }
    }
    Ok(())
}

/// The same words whether the thing is outside the caller's courts or does not exist.
fn out_of_scope(p: &PrincipalState, access: Access, what: &str) -> Status {
    let verb = match access {
        Access::Read => "read",
        Access::Write => "write",
    };
    Status::permission_denied(format!(
        "principal {} may not {verb} {what}: it is outside the courts this principal may {verb}, or does not exist",
        p.name
    ))
}

/// Whether a listed court may be shown to the caller.
pub fn may_read(caller: &Caller, court: &CourtCode) -> bool {
    caller.principal.may(Access::Read, court)
}

fn court(c: &CourtCode) -> Scope {
    Scope::Court(c.clone())
}

fn case_number(field: &str, text: &str) -> Result<Scope, Status> {
    Ok(court(cv::case_number(field, text)?.court()))
}

/// The scope of an object found (or not) by id.
fn found(what: String, court: Option<&CourtCode>) -> Scope {
    match court {
        Some(c) => Scope::Found {
            court: c.clone(),
            what,
        },
        None => Scope::Missing(what),
    }
}

fn special(reads: &SledState, field: &str, text: &str) -> Result<Scope, Status> {
    let id = cv::id(field, text)?;
    let s = reads.special(id)?;
    Ok(found(
        format!("special account {id}"),
        s.as_ref().map(|s| &s.court),
    ))
}

fn disbursement(reads: &SledState, text: &str) -> Result<Vec<Scope>, Status> {
    let id = cv::id("disbursement_id", text)?;
    let d = reads.disbursement(id)?;
    Ok(vec![found(
        format!("disbursement {id}"),
        d.as_ref().map(|d| d.case_number.court()),
    )])
}

fn unidentified(reads: &SledState, text: &str) -> Result<Scope, Status> {
    let id = cv::id("unidentified_receipt_id", text)?;
    let special = match reads.unidentified(id)? {
        Some(u) => reads.special(u.special_id)?,
        None => None,
    };
    Ok(found(
        format!("unidentified receipt {id}"),
        special.as_ref().map(|s| &s.court),
    ))
}

fn deferral(reads: &SledState, text: &str) -> Result<Vec<Scope>, Status> {
    let id = cv::id("deferral_id", text)?;
    let d = reads.deferral(id)?;
    Ok(vec![found(
        format!("deferral {id}"),
        d.as_ref().map(|d| d.case_number.court()),
    )])
}

fn case_key(
    reads: &SledState,
    account: Option<(&str, bool)>,
    required: bool,
) -> Result<Vec<Scope>, Status> {
    match account {
        Some((text, false)) => Ok(vec![case_number("case_number", text)?]),
        Some((text, true)) => {
            let van = cv::van("virtual_account_number", text)?;
            let case = match reads.case_by_van(&van)? {
                Some(id) => reads.case(id)?,
                None => None,
            };
            Ok(vec![found(
                format!("case account with virtual account number {van}"),
                case.as_ref().map(|c| c.case_number.court()),
            )])
        }
        None if required => Err(Status::invalid_argument(
            "case_number: case_number or virtual_account_number is required",
        )),
        None => Ok(Vec::new()),
    }
}

/// The courts of a principal to be managed: an administrator manages only principals
/// whose every court it may itself act in.
fn principal(reads: &SledState, text: &str) -> Result<Vec<Scope>, Status> {
    let id: Uuid = cv::id("principal_id", text)?;
    let what = format!("principal {id}");
    Ok(match reads.principal(id)? {
        Some(p) => p
            .courts
            .iter()
            .chain(&p.supervises)
            .map(|c| found(what.clone(), Some(c)))
            .collect(),
        None => vec![Scope::Missing(what)],
    })
}

/// For listings of principals: whether the caller may see this one.
pub fn may_manage(caller: &Caller, p: &PrincipalState) -> bool {
    p.courts
        .iter()
        .chain(&p.supervises)
        .all(|c| caller.principal.may(Access::Write, c))
}

macro_rules! scoped {
    ($ty:ty, |$r:ident, $reads:ident| $body:expr) => {
        impl Scoped for $ty {
            #[allow(unused_variables)]
            fn scopes(&self, $reads: &SledState) -> Result<Vec<Scope>, Status> {
                let $r = self;
                $body
            }
        }
    };
}

scoped!(pb::OpenSpecialAccountRequest, |r, reads| Ok(vec![court(
    &cv::court_code("court_code", &r.court_code)?
)]));
scoped!(pb::RegisterAccountChangeRequest, |r, reads| Ok(vec![
    special(reads, "special_account_id", &r.special_account_id)?
]));
scoped!(pb::CloseSpecialAccountRequest, |r, reads| Ok(vec![
    special(reads, "special_account_id", &r.special_account_id)?
]));
scoped!(pb::GetSpecialAccountRequest, |r, reads| Ok(vec![special(
    reads,
    "special_account_id",
    &r.special_account_id
)?]));
scoped!(pb::ListSpecialAccountsRequest, |r, reads| Ok(
    match r.court_code.as_str() {
        "" => Vec::new(),
        c => vec![court(&cv::court_code("court_code", c)?)],
    }
));
// The case's court, and the special account it is opened under: a clerk opens case
// accounts only under its own courts' special accounts.
scoped!(pb::OpenCaseAccountRequest, |r, reads| Ok(vec![
    case_number("case_number", &r.case_number)?,
    special(reads, "special_account_id", &r.special_account_id)?,
]));
scoped!(pb::GetCaseAccountRequest, |r, reads| {
    use pb::get_case_account_request::Account as A;
    let account = r.account.as_ref().map(|a| match a {
        A::CaseNumber(n) => (n.as_str(), false),
        A::VirtualAccountNumber(v) => (v.as_str(), true),
    });
    case_key(reads, account, true)
});
scoped!(pb::RecordReceiptRequest, |r, reads| {
    use pb::record_receipt_request::Account as A;
    // Routed to suspense when unmatched: the special account it arrived at decides,
    // and a readable case number must be in scope too. An unreadable account number is
    // the client's to give and names nothing, so only the special account counts.
    if r.to_suspense_if_unmatched {
        let mut scopes = vec![special(reads, "special_account_id", &r.special_account_id)?];
        if let Some(A::CaseNumber(n)) = &r.account {
            if let Ok(n) = cv::case_number("case_number", n) {
                scopes.push(court(n.court()));
            }
        }
        return Ok(scopes);
    }
    let account = r.account.as_ref().map(|a| match a {
        A::CaseNumber(n) => (n.as_str(), false),
        A::VirtualAccountNumber(v) => (v.as_str(), true),
    });
    case_key(reads, account, true)
});
scoped!(pb::RequestDisbursementRequest, |r, reads| Ok(vec![
    case_number("case_number", &r.case_number)?
]));
scoped!(pb::ApproveDisbursementRequest, |r, reads| disbursement(
    reads,
    &r.disbursement_id
));
scoped!(pb::RejectDisbursementRequest, |r, reads| disbursement(
    reads,
    &r.disbursement_id
));
scoped!(pb::CancelDisbursementRequest, |r, reads| disbursement(
    reads,
    &r.disbursement_id
));
scoped!(pb::ConfirmDisbursementPaidRequest, |r, reads| disbursement(
    reads,
    &r.disbursement_id
));
scoped!(pb::FailDisbursementRequest, |r, reads| disbursement(
    reads,
    &r.disbursement_id
));
scoped!(pb::RecordReturnedPaymentRequest, |r, reads| disbursement(
    reads,
    &r.disbursement_id
));
scoped!(pb::GetDisbursementRequest, |r, reads| disbursement(
    reads,
    &r.disbursement_id
));
scoped!(pb::TransferBetweenCasesRequest, |r, reads| Ok(vec![
    case_number("from_case_number", &r.from_case_number)?,
    case_number("to_case_number", &r.to_case_number)?,
]));
scoped!(pb::ReverseEntryRequest, |r, reads| {
    // No entry 0: named as a missing field, not as an entry outside the caller's courts.
    if r.sequence == 0 {
        return Err(crate::domain::DomainError::invalid(
            "sequence",
            "is required: the entry to reverse",
        )
        .into());
    }
    let what = format!("entry {}", r.sequence);
    let Some(entry) = reads.entry(r.sequence)? else {
        return Ok(vec![Scope::Missing(what)]);
    };
    let cases = entry.cases();
    if !cases.is_empty() {
        return Ok(cases
            .iter()
            .map(|(_, n)| found(what.clone(), Some(n.court())))
            .collect());
    }
    Ok(match reads.special(entry.special_id())? {
        Some(s) => vec![found(what, Some(&s.court))],
        None => vec![Scope::Everything],
    })
});
scoped!(pb::CloseCaseAccountRequest, |r, reads| Ok(vec![
    case_number("case_number", &r.case_number)?
]));
scoped!(pb::ListEntriesRequest, |r, reads| Ok(vec![case_number(
    "case_number",
    &r.case_number
)?]));
scoped!(pb::RecordUnidentifiedReceiptRequest, |r, reads| Ok(vec![
    special(reads, "special_account_id", &r.special_account_id)?
]));
scoped!(pb::AssignUnidentifiedReceiptRequest, |r, reads| Ok(vec![
    unidentified(reads, &r.unidentified_receipt_id)?,
    case_number("case_number", &r.case_number)?,
]));
scoped!(pb::ReturnUnidentifiedReceiptRequest, |r, reads| Ok(vec![
    unidentified(reads, &r.unidentified_receipt_id)?
]));
scoped!(pb::GetUnidentifiedReceiptRequest, |r, reads| Ok(vec![
    unidentified(reads, &r.unidentified_receipt_id)?
]));
scoped!(pb::ListUnidentifiedReceiptsRequest, |r, reads| Ok(vec![
    special(reads, "special_account_id", &r.special_account_id)?
]));
scoped!(pb::RecordDeferralRequest, |r, reads| Ok(vec![case_number(
    "case_number",
    &r.case_number
)?]));
scoped!(pb::EndDeferralRequest, |r, reads| deferral(
    reads,
    &r.deferral_id
));
scoped!(pb::GetDeferralRequest, |r, reads| deferral(
    reads,
    &r.deferral_id
));
scoped!(pb::ApproveDeferralRequest, |r, reads| deferral(
    reads,
    &r.deferral_id
));
scoped!(pb::RejectDeferralRequest, |r, reads| deferral(
    reads,
    &r.deferral_id
));
scoped!(pb::GetDigestRequest, |r, reads| Ok(vec![Scope::Everything]));
scoped!(pb::GetEntryRequest, |r, reads| Ok(vec![Scope::Everything]));
scoped!(pb::VerifyJournalRequest, |r, reads| Ok(vec![
    Scope::Everything
]));
scoped!(pb::WatchJournalRequest, |r, reads| Ok(vec![
    Scope::Everything
]));
scoped!(pb::BackupRequest, |r, reads| Ok(vec![Scope::Everything]));
scoped!(pb::AddPrincipalRequest, |r, reads| {
    let mut scopes = Vec::new();
    for (field, codes) in [
        ("court_scopes", &r.court_scopes),
        ("supervised_scopes", &r.supervised_scopes),
    ] {
        for (i, c) in codes.iter().enumerate() {
            scopes.push(court(&cv::court_code(&format!("{field}[{i}]"), c)?));
        }
    }
    Ok(scopes)
});
scoped!(pb::DisablePrincipalRequest, |r, reads| principal(
    reads,
    &r.principal_id
));
scoped!(pb::RotateTokenRequest, |r, reads| principal(
    reads,
    &r.principal_id
));
scoped!(pb::GetPrincipalRequest, |r, reads| principal(
    reads,
    &r.principal_id
));
scoped!(pb::ListPrincipalsRequest, |r, reads| Ok(Vec::new()));
scoped!(pb::WhoAmIRequest, |r, reads| Ok(Vec::new()));
