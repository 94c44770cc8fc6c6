//! Wire ↔ domain. Every request field is validated here, and a refusal names the field.

use tonic::Status;
use uuid::Uuid;

use crate::domain::{
    text::len, AccountStatus, Amount, Balances, BankRef, CaseNumber, CaseState, ClosureMethod,
    CourtCode, Date, DisbursementState, DisbursementStatus, DomainError, Entry, Fen, Micros, Op,
    Party, Purpose, RegistrationKind, RequestId, Side, SpecialAccountState, SpecialLine, Text,
    VirtualAccountNumber,
};
use crate::domain::{
    Account, DeferralReason, DeferralState, DeferralStatus, Posting, UnidentifiedReceiptState,
    UnidentifiedStatus,
};

use super::pb;

/// The most parties a case account lists on each side.
pub const PARTIES_MAX: usize = 100;

pub type Field<T> = Result<T, Status>;

fn invalid(field: &str, reason: impl Into<String>) -> Status {
    DomainError::invalid(field, reason).into()
}

pub fn request_id(text: &str) -> Field<RequestId> {
    RequestId::parse(text).map_err(|e| e.on("request_id").into())
}

pub fn id(field: &str, text: &str) -> Field<Uuid> {
    if text.is_empty() {
        return Err(invalid(field, "is required"));
    }
    Uuid::try_parse(text).map_err(|_| {
        invalid(
            field,
            format!("{:?} is not a UUID", crate::domain::text::clip(text)),
        )
    })
}

pub fn amount(field: &str, text: &str) -> Field<Amount> {
    Amount::parse(text).map_err(|e| e.on(field).into())
}

/// A non-negative amount that may be empty (zero), such as a target amount.
pub fn amount_or_zero(field: &str, text: &str) -> Field<Fen> {
    if text.is_empty() {
        return Ok(Fen::ZERO);
    }
    // Zero is allowed here, so "must be greater than zero" would mislead.
    if text.starts_with('-') {
        return Err(invalid(field, "must not be negative, nor carry a sign"));
    }
    crate::domain::money::parse_fen(text)
        .map(Fen)
        .map_err(|e| e.on(field).into())
}

pub fn case_number(field: &str, text: &str) -> Field<CaseNumber> {
    if text.is_empty() {
        return Err(invalid(field, "is required"));
    }
    CaseNumber::parse(text).map_err(|e| e.on(field).into())
}

pub fn court_code(field: &str, text: &str) -> Field<CourtCode> {
    if text.is_empty() {
        return Err(invalid(field, "is required"));
    }
    CourtCode::parse(text).map_err(|e| e.on(field).into())
}

pub fn van(field: &str, text: &str) -> Field<VirtualAccountNumber> {
    VirtualAccountNumber::parse(text).map_err(|e| e.on(field).into())
}

pub fn bank_ref(field: &str, text: &str) -> Field<BankRef> {
    BankRef::parse(text).map_err(|e| e.on(field).into())
}

pub fn date(field: &str, text: &str) -> Field<Date> {
    if text.is_empty() {
        return Err(invalid(field, "is required (YYYY-MM-DD)"));
    }
    Date::parse(text).map_err(|e| e.on(field).into())
}

pub fn required(field: &str, text: &str, len_max: usize) -> Field<Text> {
    Text::required(text, len_max).map_err(|e| e.on(field).into())
}

pub fn optional(field: &str, text: &str, len_max: usize) -> Field<Text> {
    Text::optional(text, len_max).map_err(|e| e.on(field).into())
}

/// Timestamps from 1970 to 9999, as protobuf defines them.
pub fn time(field: &str, ts: &prost_types::Timestamp) -> Field<Micros> {
    const SECONDS_MAX: i64 = 253_402_300_799;
    if !(0..=SECONDS_MAX).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(invalid(field, "is not a valid timestamp"));
    }
    Ok(Micros(ts.seconds * 1_000_000 + i64::from(ts.nanos / 1000)))
}

pub fn optional_time(field: &str, ts: Option<&prost_types::Timestamp>) -> Field<Option<Micros>> {
    ts.map(|t| time(field, t)).transpose()
}

pub fn timestamp(m: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: m.0.div_euclid(1_000_000),
        nanos: (m.0.rem_euclid(1_000_000) * 1000) as i32,
    }
}

pub fn parties(field: &str, parties: &[pb::Party], applicants: bool) -> Field<Vec<Party>> {
    if parties.is_empty() {
        return Err(invalid(field, "at least one is required"));
    }
    if parties.len() > PARTIES_MAX {
        return Err(invalid(field, format!("at most {PARTIES_MAX} are allowed")));
    }
    parties
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let f = |name: &str| format!("{field}[{i}].{name}");
            let party = Party {
                name: required(&f("name"), &p.name, len::NAME)?,
                payee_account: optional(&f("payee_account"), &p.payee_account, len::ACCOUNT)?,
                payee_bank: optional(&f("payee_bank"), &p.payee_bank, len::NAME)?,
            };
            if applicants && party.payee_account.is_empty() {
                return Err(invalid(
                    &f("payee_account"),
                    "an applicant's payee bank account confirmed at filing is required",
                ));
            }
            Ok(party)
        })
        .collect()
}

pub fn purpose(value: i32) -> Field<Purpose> {
    match pb::DisbursementPurpose::try_from(value) {
        Ok(pb::DisbursementPurpose::ToApplicant) => Ok(Purpose::ToApplicant),
        Ok(pb::DisbursementPurpose::RefundToRespondent) => Ok(Purpose::RefundToRespondent),
        Ok(pb::DisbursementPurpose::CourtFee) => Ok(Purpose::CourtFee),
        Ok(pb::DisbursementPurpose::Lodgement) => Ok(Purpose::Lodgement),
        _ => Err(invalid(
            "purpose",
            "must be TO_APPLICANT, REFUND_TO_RESPONDENT, COURT_FEE or LODGEMENT",
        )),
    }
}

pub fn closure_method(value: i32) -> Field<ClosureMethod> {
    use pb::ClosureMethod as P;
    match P::try_from(value) {
        Ok(P::Completed) => Ok(ClosureMethod::Completed),
        Ok(P::TerminatedThisStage) => Ok(ClosureMethod::TerminatedThisStage),
        Ok(P::Terminated) => Ok(ClosureMethod::Terminated),
        Ok(P::Withdrawn) => Ok(ClosureMethod::Withdrawn),
        Ok(P::NotEnforced) => Ok(ClosureMethod::NotEnforced),
        Ok(P::Rejected) => Ok(ClosureMethod::Rejected),
        _ => Err(invalid(
            "closure_method",
            "is required: one of the closure methods",
        )),
    }
}

fn closure_to_pb(m: ClosureMethod) -> pb::ClosureMethod {
    use pb::ClosureMethod as P;
    match m {
        ClosureMethod::Completed => P::Completed,
        ClosureMethod::TerminatedThisStage => P::TerminatedThisStage,
        ClosureMethod::Terminated => P::Terminated,
        ClosureMethod::Withdrawn => P::Withdrawn,
        ClosureMethod::NotEnforced => P::NotEnforced,
        ClosureMethod::Rejected => P::Rejected,
    }
}

fn purpose_to_pb(p: Purpose) -> pb::DisbursementPurpose {
    match p {
        Purpose::ToApplicant => pb::DisbursementPurpose::ToApplicant,
        Purpose::RefundToRespondent => pb::DisbursementPurpose::RefundToRespondent,
        Purpose::CourtFee => pb::DisbursementPurpose::CourtFee,
        Purpose::Lodgement => pb::DisbursementPurpose::Lodgement,
    }
}

fn status_to_pb(s: DisbursementStatus) -> pb::DisbursementState {
    use pb::DisbursementState as P;
    match s {
        DisbursementStatus::Requested => P::Requested,
        DisbursementStatus::Approved => P::Approved,
        DisbursementStatus::Rejected => P::Rejected,
        DisbursementStatus::Cancelled => P::Cancelled,
        DisbursementStatus::Paid => P::Paid,
        DisbursementStatus::Failed => P::Failed,
        DisbursementStatus::Returned => P::Returned,
    }
}

/// A special account as registered up to `sequence`, with the bank fields in force at
/// `at`.
pub fn special_account(
    s: &SpecialAccountState,
    line: &SpecialLine,
    sequence: u64,
    at: Micros,
) -> pb::SpecialAccount {
    let bank = s.bank_at(sequence, at);
    let text = |f: fn(&crate::domain::BankDetails) -> &Text| {
        bank.map(|b| f(b).to_string()).unwrap_or_default()
    };
    let registrations: Vec<_> = s
        .registrations
        .iter()
        .filter(|r| r.sequence <= sequence)
        .map(|r| pb::Registration {
            sequence: r.sequence,
            kind: match r.kind {
                RegistrationKind::Opened => pb::RegistrationKind::Opened,
                RegistrationKind::Changed => pb::RegistrationKind::Changed,
                RegistrationKind::Closed => pb::RegistrationKind::Closed,
            } as i32,
            bank_name: r.bank.bank_name.to_string(),
            bank_branch: r.bank.bank_branch.to_string(),
            account_number: r.bank.account_number.to_string(),
            account_name: r.bank.account_name.to_string(),
            reason: r.reason.to_string(),
            document_ref: r.document_ref.to_string(),
            effective_at: Some(timestamp(r.effective_at)),
            recorded_at: Some(timestamp(r.recorded_at)),
            request_id: r.request_id.to_string(),
        })
        .collect();
    let closed = registrations
        .iter()
        .any(|r| r.kind == pb::RegistrationKind::Closed as i32);
    pb::SpecialAccount {
        special_account_id: s.id.to_string(),
        court_code: s.court.to_string(),
        bank_name: text(|b| &b.bank_name),
        bank_branch: text(|b| &b.bank_branch),
        account_number: text(|b| &b.account_number),
        account_name: text(|b| &b.account_name),
        status: if closed {
            pb::SpecialAccountStatus::Closed
        } else {
            pb::SpecialAccountStatus::Open
        } as i32,
        registrations,
        bank_balance: line.bank_balance.to_string(),
        suspense_balance: line.suspense_balance.to_string(),
        reserved: line.reserved.to_string(),
        case_account_count: line.case_count,
        as_of_sequence: sequence,
    }
}

pub fn balances(b: &Balances) -> pb::Balances {
    pb::Balances {
        received: b.received.to_string(),
        disbursed: b.disbursed.to_string(),
        reserved: b.reserved.to_string(),
        balance: b.balance().to_string(),
        available: b.available().to_string(),
    }
}

fn party(p: &Party) -> pb::Party {
    pb::Party {
        name: p.name.to_string(),
        payee_account: p.payee_account.to_string(),
        payee_bank: p.payee_bank.to_string(),
    }
}

/// A case account with the balances and status it had at `sequence`.
pub fn case_account(
    c: &CaseState,
    b: &Balances,
    returned: crate::domain::Fen,
    sequence: u64,
) -> pb::CaseAccount {
    let closed =
        c.status == AccountStatus::Closed && c.closed_sequence.is_some_and(|s| s <= sequence);
    pb::CaseAccount {
        case_account_id: c.id.to_string(),
        special_account_id: c.special_id.to_string(),
        case_number: c.case_number.to_string(),
        court_code: c.case_number.court().to_string(),
        virtual_account_number: c.van.to_string(),
        target_amount: c.target.to_string(),
        applicants: c.applicants.iter().map(party).collect(),
        respondents: c.respondents.iter().map(party).collect(),
        status: if closed {
            pb::CaseAccountStatus::Closed
        } else {
            pb::CaseAccountStatus::Open
        } as i32,
        balances: Some(balances(b)),
        closure_method: match (closed, c.closure) {
            (true, Some(m)) => closure_to_pb(m) as i32,
            _ => pb::ClosureMethod::Unspecified as i32,
        },
        opened_at: Some(timestamp(c.opened_at)),
        closed_at: if closed {
            c.closed_at.map(timestamp)
        } else {
            None
        },
        as_of_sequence: sequence,
        returned_payments: returned.to_string(),
    }
}

pub fn disbursement(d: &DisbursementState) -> pb::Disbursement {
    pb::Disbursement {
        disbursement_id: d.id.to_string(),
        case_number: d.case_number.to_string(),
        amount: d.amount.to_string(),
        payee_name: d.payee.name.to_string(),
        payee_account: d.payee.account.to_string(),
        payee_bank: d.payee.bank.to_string(),
        purpose: purpose_to_pb(d.purpose) as i32,
        memo: d.memo.to_string(),
        exception_reason: d.exception_reason.to_string(),
        state: status_to_pb(d.status) as i32,
        approval_ref: d.approval_ref.to_string(),
        reason: d.reason.to_string(),
        bank_ref: d
            .bank_ref
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default(),
        paid_at: d.paid_at.map(timestamp),
        requested_at: Some(timestamp(d.requested_at)),
        sequence: d.sequence,
        returned_bank_ref: d
            .returned_bank_ref
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default(),
    }
}

fn account_name(a: &Account) -> String {
    match a {
        Account::Bank(id) => format!("bank:{id}"),
        Account::Suspense(id) => format!("suspense:{id}"),
        Account::Case(id) => format!("case:{id}"),
    }
}

fn posting(p: &Posting) -> pb::Posting {
    let (debit, credit) = match p.side {
        Side::Debit => (p.amount, Fen::ZERO),
        Side::Credit => (Fen::ZERO, p.amount),
    };
    pb::Posting {
        account: account_name(&p.account),
        debit: debit.to_string(),
        credit: credit.to_string(),
    }
}

/// An entry as a line of `case`'s statement (or of the ledger when `case` is None),
/// with that case's balances after it.
pub fn entry(e: &Entry, case: Option<(&CaseNumber, Balances)>) -> pb::Entry {
    use pb::EntryKind as K;
    let mut out = pb::Entry {
        sequence: e.sequence,
        special_account_id: e.special_id().to_string(),
        request_id: e.request_id.to_string(),
        recorded_at: Some(timestamp(e.recorded_at)),
        postings: e.postings.iter().map(posting).collect(),
        amount: Fen::ZERO.to_string(),
        ..Default::default()
    };
    if let Some((number, b)) = &case {
        out.case_number = number.to_string();
        out.running_balance = b.balance().to_string();
        out.running_available = b.available().to_string();
    }
    let kind = match &e.op {
        Op::SpecialAccountOpened { document_ref, .. } => {
            out.memo = document_ref.to_string();
            K::SpecialAccountOpened
        }
        Op::SpecialAccountChanged { reason, .. } => {
            out.memo = reason.to_string();
            K::SpecialAccountChanged
        }
        Op::SpecialAccountClosed { reason, .. } => {
            out.memo = reason.to_string();
            K::SpecialAccountClosed
        }
        Op::CaseAccountOpened { case_number, .. } => {
            out.case_number = case_number.to_string();
            K::CaseAccountOpened
        }
        Op::Receipt {
            case_number,
            amount,
            payer_name,
            payer_account,
            bank_ref,
            value_date,
            ..
        } => {
            out.case_number = case_number.to_string();
            out.amount = amount.to_string();
            out.counterparty_name = payer_name.to_string();
            out.counterparty_account = payer_account.to_string();
            out.bank_ref = bank_ref.to_string();
            out.value_date = value_date.to_string();
            K::Receipt
        }
        Op::DisbursementRequested {
            disbursement_id,
            case_number,
            amount,
            payee,
            memo,
            ..
        } => {
            out.case_number = case_number.to_string();
            out.disbursement_id = disbursement_id.to_string();
            out.amount = amount.to_string();
            out.counterparty_name = payee.name.to_string();
            out.counterparty_account = payee.account.to_string();
            out.memo = memo.to_string();
            K::DisbursementRequested
        }
        Op::DisbursementMoved {
            disbursement_id,
            case_number,
            amount,
            to,
            note,
            bank_ref,
            ..
        } => {
            out.case_number = case_number.to_string();
            out.disbursement_id = disbursement_id.to_string();
            out.amount = amount.to_string();
            out.memo = note.to_string();
            out.bank_ref = bank_ref.as_ref().map(|r| r.to_string()).unwrap_or_default();
            match to {
                DisbursementStatus::Requested => K::DisbursementRequested,
                DisbursementStatus::Approved => K::DisbursementApproved,
                DisbursementStatus::Rejected => K::DisbursementRejected,
                DisbursementStatus::Cancelled => K::DisbursementCancelled,
                DisbursementStatus::Paid => K::DisbursementPaid,
                DisbursementStatus::Failed => K::DisbursementFailed,
                DisbursementStatus::Returned => K::PaymentReturned,
            }
        }
        Op::Transfer {
            from_number,
            to_number,
            amount,
            reason,
            ..
        } => {
            let this = case.map(|(n, _)| n).unwrap_or(from_number);
            out.case_number = this.to_string();
            out.counterparty_case_number = if this == from_number {
                to_number
            } else {
                from_number
            }
            .to_string();
            out.amount = amount.to_string();
            out.memo = reason.to_string();
            K::Transfer
        }
        Op::Reversal {
            reversed_sequence,
            reason,
            cases,
            ..
        } => {
            out.reversed_sequence = *reversed_sequence;
            out.memo = reason.to_string();
            if out.case_number.is_empty() {
                out.case_number = cases
                    .first()
                    .map(|(_, n)| n.to_string())
                    .unwrap_or_default();
            }
            let moved: i64 = e
                .postings
                .iter()
                .filter(|p| p.side == Side::Debit)
                .map(|p| p.amount.0)
                .sum();
            out.amount = Fen(moved).to_string();
            K::Reversal
        }
        Op::CaseAccountClosed {
            case_number,
            reason,
            ..
        } => {
            out.case_number = case_number.to_string();
            out.memo = reason.to_string();
            K::CaseAccountClosed
        }
        Op::UnidentifiedReceiptRecorded {
            receipt_id,
            amount,
            payer_name,
            payer_account,
            bank_ref,
            value_date,
            memo,
            ..
        } => {
            out.unidentified_receipt_id = receipt_id.to_string();
            out.amount = amount.to_string();
            out.counterparty_name = payer_name.to_string();
            out.counterparty_account = payer_account.to_string();
            out.bank_ref = bank_ref.to_string();
            out.value_date = value_date.to_string();
            out.memo = memo.to_string();
            K::UnidentifiedReceipt
        }
        Op::UnidentifiedReceiptAssigned {
            receipt_id,
            case_number,
            amount,
            ..
        } => {
            out.unidentified_receipt_id = receipt_id.to_string();
            out.case_number = case_number.to_string();
            out.amount = amount.to_string();
            K::UnidentifiedReceiptAssigned
        }
        Op::UnidentifiedReceiptReturned {
            receipt_id,
            amount,
            reason,
            bank_ref,
            ..
        } => {
            out.unidentified_receipt_id = receipt_id.to_string();
            out.amount = amount.to_string();
            out.memo = reason.to_string();
            out.bank_ref = bank_ref.as_ref().map(|r| r.to_string()).unwrap_or_default();
            K::UnidentifiedReceiptReturned
        }
        Op::DeferralRecorded {
            deferral_id,
            case_number,
            note,
            ..
        }
        | Op::DeferralRequested {
            deferral_id,
            case_number,
            note,
            ..
        } => {
            out.deferral_id = deferral_id.to_string();
            out.case_number = case_number.to_string();
            out.memo = note.to_string();
            if matches!(e.op, Op::DeferralRecorded { .. }) {
                K::DeferralRecorded
            } else {
                K::DeferralRequested
            }
        }
        Op::DeferralEnded {
            deferral_id,
            case_number,
            ..
        }
        | Op::DeferralApproved {
            deferral_id,
            case_number,
            ..
        } => {
            out.deferral_id = deferral_id.to_string();
            out.case_number = case_number.to_string();
            if matches!(e.op, Op::DeferralEnded { .. }) {
                K::DeferralEnded
            } else {
                K::DeferralApproved
            }
        }
        Op::DeferralRejected {
            deferral_id,
            case_number,
            reason,
            ..
        } => {
            out.deferral_id = deferral_id.to_string();
            out.case_number = case_number.to_string();
            out.memo = reason.to_string();
            K::DeferralRejected
        }
        // The principal's id goes in memo; its token hash is never shown.
        Op::PrincipalAdded {
            principal_id, name, ..
        } => {
            out.memo = format!("{name} ({principal_id})");
            K::PrincipalAdded
        }
        Op::PrincipalDisabled {
            principal_id,
            reason,
        } => {
            out.memo = format!("{principal_id}: {reason}");
            K::PrincipalDisabled
        }
        Op::PrincipalTokenRotated { principal_id, .. } => {
            out.memo = principal_id.to_string();
            K::PrincipalTokenRotated
        }
        Op::AlreadyRecorded { original, .. } => {
            out.original_sequence = *original;
            K::AlreadyRecorded
        }
    };
    if matches!(
        kind,
        K::PrincipalAdded | K::PrincipalDisabled | K::PrincipalTokenRotated
    ) {
        out.special_account_id.clear();
    }
    out.principal_id = e.principal.map(|p| p.to_string()).unwrap_or_default();
    out.kind = kind as i32;
    out
}

pub fn deferral_reason(value: i32) -> Field<DeferralReason> {
    use pb::DeferralReason as P;
    match P::try_from(value) {
        Ok(P::Distribution) => Ok(DeferralReason::Distribution),
        Ok(P::Frozen) => Ok(DeferralReason::Frozen),
        Ok(P::ApplicantNotCollecting) => Ok(DeferralReason::ApplicantNotCollecting),
        Ok(P::Suspended) => Ok(DeferralReason::Suspended),
        Ok(P::Other) => Ok(DeferralReason::Other),
        _ => Err(invalid(
            "reason",
            "is required: DISTRIBUTION, FROZEN, APPLICANT_NOT_COLLECTING, SUSPENDED or OTHER",
        )),
    }
}

fn deferral_reason_to_pb(r: DeferralReason) -> pb::DeferralReason {
    use pb::DeferralReason as P;
    match r {
        DeferralReason::Distribution => P::Distribution,
        DeferralReason::Frozen => P::Frozen,
        DeferralReason::ApplicantNotCollecting => P::ApplicantNotCollecting,
        DeferralReason::Suspended => P::Suspended,
        DeferralReason::Other => P::Other,
    }
}

pub fn unidentified(u: &UnidentifiedReceiptState) -> pb::UnidentifiedReceipt {
    use pb::UnidentifiedReceiptState as P;
    pb::UnidentifiedReceipt {
        unidentified_receipt_id: u.id.to_string(),
        special_account_id: u.special_id.to_string(),
        amount: u.amount.to_string(),
        payer_name: u.payer_name.to_string(),
        payer_account: u.payer_account.to_string(),
        bank_ref: u.bank_ref.to_string(),
        value_date: u.value_date.to_string(),
        memo: u.memo.to_string(),
        state: match u.status {
            UnidentifiedStatus::InSuspense => P::InSuspense,
            UnidentifiedStatus::Assigned => P::Assigned,
            UnidentifiedStatus::Returned => P::Returned,
        } as i32,
        case_number: u
            .case_number
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default(),
        return_reason: u.return_reason.to_string(),
        return_bank_ref: u
            .return_bank_ref
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default(),
        recorded_at: Some(timestamp(u.recorded_at)),
        settled_at: u.settled_at.map(timestamp),
        sequence: u.settled_sequence.unwrap_or(u.recorded_sequence),
        account_given: u.account_given.to_string(),
    }
}

/// An unidentified receipt as the entry `sequence` left it, even if it moved on since
/// (a retried request gets its original answer).
pub fn unidentified_at(u: &UnidentifiedReceiptState, sequence: u64) -> pb::UnidentifiedReceipt {
    let mut out = unidentified(u);
    if u.settled_sequence.is_some_and(|s| s > sequence) {
        out.state = pb::UnidentifiedReceiptState::InSuspense as i32;
        out.case_number.clear();
        out.return_reason.clear();
        out.return_bank_ref.clear();
        out.settled_at = None;
        out.sequence = u.recorded_sequence;
    }
    out
}

/// A deferral as it stood after entry `sequence` (`u64::MAX`: now), so a retried
/// request gets the answer it got the first time.
pub fn deferral_at(d: &DeferralState, sequence: u64) -> pb::Deferral {
    use pb::DeferralState as P;
    let status = d.status_at(sequence);
    let decision = d.decision.as_ref().filter(|x| x.sequence <= sequence);
    let approval = decision.filter(|x| x.approved);
    let rejection = decision.filter(|x| !x.approved);
    let ended = status == DeferralStatus::Ended;
    let id = |p: Option<Uuid>| p.map(|p| p.to_string()).unwrap_or_default();
    pb::Deferral {
        deferral_id: d.id.to_string(),
        case_number: d.case_number.to_string(),
        reason: deferral_reason_to_pb(d.reason) as i32,
        approval_ref: d.approval_ref.to_string(),
        note: d.note.to_string(),
        active: status == DeferralStatus::Active,
        started_on: approval.map(|a| a.on.to_string()).unwrap_or_default(),
        ended_on: if ended {
            d.ended_on.map(|e| e.to_string()).unwrap_or_default()
        } else {
            String::new()
        },
        recorded_at: Some(timestamp(d.recorded_at)),
        ended_at: if ended {
            d.ended_at.map(timestamp)
        } else {
            None
        },
        sequence: match status {
            DeferralStatus::Ended => d.ended_sequence.unwrap_or(d.recorded_sequence),
            _ => decision.map_or(d.recorded_sequence, |x| x.sequence),
        },
        state: match status {
            DeferralStatus::PendingApproval => P::PendingApproval,
            DeferralStatus::Active => P::Active,
            DeferralStatus::Rejected => P::Rejected,
            DeferralStatus::Ended => P::Ended,
        } as i32,
        recorded_by: id(d.recorded_by),
        approved_by: id(approval.and_then(|a| a.by)),
        approved_at: approval.map(|a| timestamp(a.at)),
        rejected_by: id(rejection.and_then(|r| r.by)),
        rejected_at: rejection.map(|r| timestamp(r.at)),
        rejection_reason: rejection.map(|r| r.reason.to_string()).unwrap_or_default(),
    }
}
