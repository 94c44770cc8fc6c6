//! The posting rules: a validated request and the current state decide one journal
//! entry, or a refusal. Nothing here writes; [`super::apply`] does, for live requests
//! and replay alike.

use uuid::Uuid;

use crate::domain::{
    Account, AccountStatus, Amount, ApprovalTiers, BankRef, CaseState, Date, DeferralState,
    DeferralStatus, DisbursementState, DisbursementStatus, DomainError, Entry, Fen, Micros, Op,
    Payee, Posting, PrincipalState, Purpose, Role, SpecialAccountState, Text,
    UnidentifiedReceiptState, UnidentifiedStatus, VirtualAccountNumber,
};

use super::command::{CaseKey, Command, Request, UnmatchedKey};
use super::state::{Fault, State};

/// The most special accounts one ledger issues virtual account numbers for (5 digits).
pub const SPECIAL_SERIAL_MAX: u32 = 99_999;
/// The most case accounts under one special account (9 digits).
pub const CASE_SERIAL_MAX: u64 = 999_999_999;

/// Why a request produced no entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Fault(#[from] Fault),
}

/// What the writer supplies that the rules may not invent: the time and a fresh id.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: Micros,
    pub new_id: Uuid,
    /// Which approver level an amount needs (server configuration).
    pub tiers: ApprovalTiers,
}

/// The decision for one request. Built once per request and consumed at once, so the
/// size difference between its variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Already done: the request id was recorded as this entry. (Inside the rules, also
    /// "the bank reference was"; `decide` turns that into an [`Op::AlreadyRecorded`].)
    Existing(u64),
    New {
        op: Op,
        postings: Vec<Posting>,
    },
}

type Decided = Result<Decision, LedgerError>;

pub fn decide(state: &impl State, request: &Request, ctx: &Context) -> Decided {
    let hash = request.content_hash();
    if let Some(record) = state.request(&request.id)? {
        if record.hash != hash && request.earlier_hash() != Some(record.hash) {
            return Err(DomainError::RequestIdReused {
                request_id: request.id.to_string(),
            }
            .into());
        }
        return Ok(Decision::Existing(record.sequence));
    }
    match rule(state, &request.command, ctx, request.principal)? {
        // Found by its bank reference under a request id never seen: journal that, so the
        // new id is bound to the original as durably as any other request id.
        Decision::Existing(original) => {
            let special_id = recorded(state, original)?.special_id();
            Ok(Decision::New {
                op: Op::AlreadyRecorded {
                    special_id,
                    original,
                },
                postings: Vec::new(),
            })
        }
        new => Ok(new),
    }
}

fn rule(state: &impl State, command: &Command, ctx: &Context, who: Option<Uuid>) -> Decided {
    acting(state, command, who)?;
    match command {
        Command::OpenSpecialAccount {
            court,
            bank,
            document_ref,
        } => {
            let serial = state.meta()?.next_special_serial.max(1);
            if serial > SPECIAL_SERIAL_MAX {
                return Err(DomainError::rule("no more special accounts can be opened").into());
            }
            new(Op::SpecialAccountOpened {
                special_id: ctx.new_id,
                serial,
                court: court.clone(),
                bank: bank.clone(),
                document_ref: document_ref.clone(),
            })
        }
        Command::RegisterAccountChange {
            special_id,
            change,
            reason,
            document_ref,
            effective_at,
        } => {
            let special = open_special(state, *special_id)?;
            let latest = special.bank_latest().ok_or_else(|| {
                Fault(format!("special account {special_id} has no registration"))
            })?;
            // A change is the latest registration on top of which it is made, so it
            // must take effect no earlier: dated before, it would never be in force
            // (an earlier registration wins until the later one's time comes), or it
            // would carry a registration not yet in force into force.
            // Unset, it is the entry's own time, which never steps back with the clock.
            let effective = effective_at.unwrap_or(ctx.now.max(state.meta()?.last_recorded_at));
            if let Some(prior) = (special.registrations.iter())
                .filter(|r| r.effective_at > effective)
                .max_by_key(|r| r.effective_at)
            {
                return Err(DomainError::invalid(
                    "effective_at",
                    format!(
                        "{} earlier than the registration of entry {} takes effect (Unix time {} s, {} in China): changes take effect in the order they are registered; register this one effective then or later",
                        if effective_at.is_some() { "is" } else { "unset (now) is" },
                        prior.sequence,
                        prior.effective_at.0.div_euclid(1_000_000),
                        crate::domain::Date::in_china(prior.effective_at),
                    ),
                )
                .into());
            }
            if change.applied_to(latest) == *latest {
                // Whether it changes anything depends on what is registered now: a rule
                // of the state, not a malformed field.
                return Err(DomainError::Rule(
                    "the change registration changes nothing: bank_name, bank_branch, account_number and account_name already hold these values".into(),
                )
                .into());
            }
            new(Op::SpecialAccountChanged {
                special_id: *special_id,
                change: change.clone(),
                reason: reason.clone(),
                document_ref: document_ref.clone(),
                effective_at: effective,
            })
        }
        Command::CloseSpecialAccount {
            special_id,
            reason,
            document_ref,
        } => {
            let special = open_special(state, *special_id)?;
            if !special.bank_balance.is_zero()
                || !special.suspense_balance.is_zero()
                || !special.reserved.is_zero()
            {
                return Err(DomainError::rule(format!(
                    "special account {special_id} still holds {} (suspense {}, reserved {}): it can be closed only when every case account and the suspense are zero",
                    special.bank_balance, special.suspense_balance, special.reserved
                ))
                .into());
            }
            new(Op::SpecialAccountClosed {
                special_id: *special_id,
                reason: reason.clone(),
                document_ref: document_ref.clone(),
            })
        }
        Command::OpenCaseAccount {
            special_id,
            case_number,
            target,
            applicants,
            respondents,
        } => {
            let special = open_special(state, *special_id)?;
            if state.case_by_number(case_number)?.is_some() {
                return Err(DomainError::AlreadyExists {
                    what: format!("case account for case number {case_number}"),
                }
                .into());
            }
            if !special.court.covers(case_number.court()) {
                return Err(DomainError::invalid(
                    "case_number",
                    format!(
                        "case {case_number} belongs to court {}, not to court {} of this special account",
                        case_number.court(),
                        special.court
                    ),
                )
                .into());
            }
            let case_serial = special.next_case_serial.max(1);
            if case_serial > CASE_SERIAL_MAX {
                return Err(
                    DomainError::rule("this special account has no case serials left").into(),
                );
            }
            new(Op::CaseAccountOpened {
                case_id: ctx.new_id,
                special_id: *special_id,
                case_number: case_number.clone(),
                van: VirtualAccountNumber::issue(special.serial, case_serial),
                target: *target,
                applicants: applicants.clone(),
                respondents: respondents.clone(),
            })
        }
        Command::RecordReceipt(receipt) => {
            let case = case_by_key(state, &receipt.case)?;
            record_receipt(state, ctx, &case, receipt)
        }
        Command::RecordReceiptAt {
            special_id,
            receipt,
        } => {
            let case = case_by_key(state, &receipt.case)?;
            // Otherwise the bank reference would be looked up in the other special
            // account's records, and one transfer could be recorded in both.
            if case.special_id != *special_id {
                return Err(DomainError::rule(format!(
                    "special_account_id: case account {} is under special account {}, not {special_id}; the money arrived at the one named, so it is not this case's (record it there, to suspense if it names no case of that account)",
                    case.case_number, case.special_id
                ))
                .into());
            }
            record_receipt(state, ctx, &case, receipt)
        }
        Command::RequestDisbursement {
            case_number,
            amount,
            payee,
            purpose,
            memo,
            exception_reason,
        } => {
            let case = case_by_key(state, &CaseKey::Number(case_number.clone()))?;
            can_pay_out(state, &case)?;
            ensure_available(&case, amount.fen())?;
            check_payee(&case, payee, *purpose, exception_reason.is_empty())?;
            new(Op::DisbursementRequested {
                disbursement_id: ctx.new_id,
                case_id: case.id,
                special_id: case.special_id,
                case_number: case.case_number.clone(),
                amount: *amount,
                payee: payee.clone(),
                purpose: *purpose,
                memo: memo.clone(),
                exception_reason: exception_reason.clone(),
            })
        }
        Command::ApproveDisbursement {
            disbursement_id,
            approval_ref,
        } => {
            let d = disbursement_in(state, *disbursement_id, &[DisbursementStatus::Requested])?;
            may_approve(state, &d, who, &ctx.tiers)?;
            new(moved(
                &d,
                DisbursementStatus::Approved,
                approval_ref.clone(),
                None,
                None,
            ))
        }
        Command::RejectDisbursement {
            disbursement_id,
            reason,
        } => {
            let d = disbursement_in(state, *disbursement_id, &[DisbursementStatus::Requested])?;
            new(moved(
                &d,
                DisbursementStatus::Rejected,
                reason.clone(),
                None,
                None,
            ))
        }
        Command::CancelDisbursement {
            disbursement_id,
            reason,
        } => {
            let d = disbursement(state, *disbursement_id)?;
            // Approval hands the payment to finance, who may have sent it already: a
            // cancellation then would release money that has left the bank, and the
            // payment could no longer be confirmed. From here only finance ends it,
            // paid or failed. (Journals from before this rule may hold such a
            // cancellation; replay applies it as it was recorded.)
            if d.status == DisbursementStatus::Approved {
                return Err(DomainError::rule(format!(
                    "disbursement {} is APPROVED: finance may already be paying it, so only finance ends it now (FailDisbursement if the bank did not pay it); CancelDisbursement needs it to be REQUESTED",
                    d.id
                ))
                .into());
            }
            let d = in_status(d, &[DisbursementStatus::Requested])?;
            new(moved(
                &d,
                DisbursementStatus::Cancelled,
                reason.clone(),
                None,
                None,
            ))
        }
        Command::FailDisbursement {
            disbursement_id,
            reason,
        } => {
            let d = disbursement_in(state, *disbursement_id, &[DisbursementStatus::Approved])?;
            new(moved(
                &d,
                DisbursementStatus::Failed,
                reason.clone(),
                None,
                None,
            ))
        }
        Command::ConfirmDisbursementPaid {
            disbursement_id,
            bank_ref,
            paid_at,
        } => {
            let d = disbursement(state, *disbursement_id)?;
            if let Some(seq) = state.bank_ref(d.special_id, bank_ref)? {
                return same_disbursement_step(
                    state,
                    seq,
                    bank_ref,
                    d.id,
                    DisbursementStatus::Paid,
                );
            }
            let d = in_status(d, &[DisbursementStatus::Approved])?;
            may_confirm(&d, who)?;
            if let Some(at) = paid_at {
                // A payment is confirmed after it was made. A time far ahead is a typo
                // or a local time sent as UTC, and would date the bank line on a day
                // the bank never paid, where no statement can find it. Decided here,
                // after the request id, so that a retry keeps its first outcome.
                if at.0 > ctx.now.0.saturating_add(PAID_AT_AHEAD_MAX_MICROS) {
                    return Err(DomainError::invalid(
                        "paid_at",
                        format!(
                            "is later than now (by {} s): a payment is confirmed after it is made; a Timestamp is UTC",
                            (at.0 - ctx.now.0) / 1_000_000
                        ),
                    )
                    .into());
                }
                // Nor before it was asked for: a time such as 0 would date the bank line
                // on a day (clamped to 1990) that no statement holds.
                // The same slack as ahead: the bank's clock is not ours.
                if at.0 < d.requested_at.0.saturating_sub(PAID_AT_AHEAD_MAX_MICROS) {
                    return Err(DomainError::invalid(
                        "paid_at",
                        format!(
                            "is before the disbursement was requested (by {} s): a payment is made after it is requested and approved",
                            (d.requested_at.0 - at.0) / 1_000_000
                        ),
                    )
                    .into());
                }
            }
            let op = moved(
                &d,
                DisbursementStatus::Paid,
                Default::default(),
                Some(bank_ref.clone()),
                Some(paid_at.unwrap_or(ctx.now)),
            );
            new_posted(
                op,
                vec![
                    Posting::debit(Account::Case(d.case_id), d.amount.fen()),
                    Posting::credit(Account::Bank(d.special_id), d.amount.fen()),
                ],
            )
        }
        Command::RecordReturnedPayment {
            disbursement_id,
            bank_ref,
            reason,
        } => {
            let d = disbursement(state, *disbursement_id)?;
            if let Some(seq) = state.bank_ref(d.special_id, bank_ref)? {
                return same_disbursement_step(
                    state,
                    seq,
                    bank_ref,
                    d.id,
                    DisbursementStatus::Returned,
                );
            }
            let d = in_status(d, &[DisbursementStatus::Paid])?;
            // The money is back in the bank and belongs to the case even if the case
            // was closed meanwhile: refusing it would leave the bank unexplained. Not
            // into a closed special account, though: nothing can pay it out of one
            // again, and it was closed at zero.
            open_special(state, d.special_id)?;
            let op = moved(
                &d,
                DisbursementStatus::Returned,
                reason.clone(),
                Some(bank_ref.clone()),
                Some(ctx.now),
            );
            new_posted(
                op,
                vec![
                    Posting::debit(Account::Bank(d.special_id), d.amount.fen()),
                    Posting::credit(Account::Case(d.case_id), d.amount.fen()),
                ],
            )
        }
        Command::TransferBetweenCases {
            from,
            to,
            amount,
            reason,
            document_ref,
        } => {
            if from == to {
                return Err(DomainError::invalid(
                    "to_case_number",
                    "must differ from from_case_number",
                )
                .into());
            }
            let source = case_by_key(state, &CaseKey::Number(from.clone()))?;
            let target = case_by_key(state, &CaseKey::Number(to.clone()))?;
            if source.special_id != target.special_id {
                return Err(DomainError::rule(format!(
                    "cases {from} and {to} are under different special accounts; a transfer stays within one"
                ))
                .into());
            }
            can_pay_out(state, &source)?;
            open_case_for_money(state, &target)?;
            ensure_available(&source, amount.fen())?;
            new_posted(
                Op::Transfer {
                    special_id: source.special_id,
                    from_case: source.id,
                    from_number: source.case_number.clone(),
                    to_case: target.id,
                    to_number: target.case_number.clone(),
                    amount: *amount,
                    reason: reason.clone(),
                    document_ref: document_ref.clone(),
                },
                vec![
                    Posting::debit(Account::Case(source.id), amount.fen()),
                    Posting::credit(Account::Case(target.id), amount.fen()),
                ],
            )
        }
        Command::ReverseEntry { sequence, reason } => reverse(state, *sequence, reason.clone()),
        Command::CloseCaseAccount {
            case_number,
            method,
            reason,
        } => {
            let case = case_by_key(state, &CaseKey::Number(case_number.clone()))?;
            if case.status == AccountStatus::Closed {
                return Err(DomainError::rule(format!(
                    "case account {case_number} is already closed"
                ))
                .into());
            }
            let b = case.balances;
            if !b.balance().is_zero() || !b.reserved.is_zero() {
                return Err(DomainError::rule(format!(
                    "case account {case_number} still holds {} with {} reserved: it can be closed only when both are zero",
                    b.balance(),
                    b.reserved
                ))
                .into());
            }
            new(Op::CaseAccountClosed {
                case_id: case.id,
                special_id: case.special_id,
                case_number: case.case_number.clone(),
                method: *method,
                reason: reason.clone(),
            })
        }
        Command::RecordUnidentifiedReceipt {
            special_id,
            amount,
            payer_name,
            payer_account,
            bank_ref,
            value_date,
            memo,
        } => {
            open_special(state, *special_id)?;
            if let Some(seq) = state.bank_ref(*special_id, bank_ref)? {
                return same_unidentified(state, seq, bank_ref, amount.fen());
            }
            to_suspense(
                ctx,
                *special_id,
                *amount,
                SuspenseFacts {
                    payer_name,
                    payer_account,
                    bank_ref,
                    value_date: *value_date,
                    memo: memo.clone(),
                    account_given: Text::default(),
                },
            )
        }
        Command::RecordReceiptOrSuspense {
            special_id,
            account,
            amount,
            payer_name,
            payer_account,
            bank_ref,
            value_date,
        } => {
            open_special(state, *special_id)?;
            let (case, why) = match_unmatched(state, *special_id, account)?;
            if let Some(seq) = state.bank_ref(*special_id, bank_ref)? {
                return match &case {
                    Some(c) => same_receipt(state, seq, bank_ref, c.id, amount.fen()),
                    None => same_unidentified(state, seq, bank_ref, amount.fen()),
                };
            }
            match case {
                Some(case) => receipt(
                    ctx,
                    &case,
                    *amount,
                    payer_name,
                    payer_account,
                    bank_ref,
                    *value_date,
                ),
                None => to_suspense(
                    ctx,
                    *special_id,
                    *amount,
                    SuspenseFacts {
                        payer_name,
                        payer_account,
                        bank_ref,
                        value_date: *value_date,
                        memo: Text::optional(&why, crate::domain::text::len::REASON)
                            .unwrap_or_default(),
                        account_given: unmatched_text(account),
                    },
                ),
            }
        }
        Command::AssignUnidentifiedReceipt {
            receipt_id,
            case_number,
        } => {
            let receipt = unidentified_in_suspense(state, *receipt_id)?;
            let case = case_by_key(state, &CaseKey::Number(case_number.clone()))?;
            if case.special_id != receipt.special_id {
                return Err(DomainError::rule(format!(
                    "case {case_number} is under another special account than the one receipt {receipt_id} arrived at; assign it to a case of that account or return it"
                ))
                .into());
            }
            open_case_for_money(state, &case)?;
            new_posted(
                Op::UnidentifiedReceiptAssigned {
                    receipt_id: receipt.id,
                    special_id: receipt.special_id,
                    case_id: case.id,
                    case_number: case.case_number.clone(),
                    amount: receipt.amount,
                },
                vec![
                    Posting::debit(Account::Suspense(receipt.special_id), receipt.amount.fen()),
                    Posting::credit(Account::Case(case.id), receipt.amount.fen()),
                ],
            )
        }
        Command::ReturnUnidentifiedReceipt {
            receipt_id,
            reason,
            bank_ref,
        } => {
            let receipt = unidentified(state, *receipt_id)?;
            if let Some(r) = bank_ref {
                if let Some(seq) = state.bank_ref(receipt.special_id, r)? {
                    let entry = recorded(state, seq)?;
                    return match entry.op {
                        Op::UnidentifiedReceiptReturned { receipt_id: id, .. }
                            if id == *receipt_id =>
                        {
                            Ok(Decision::Existing(seq))
                        }
                        _ => Err(bank_ref_taken(r, seq)),
                    };
                }
            }
            let receipt = in_suspense(receipt)?;
            new_posted(
                Op::UnidentifiedReceiptReturned {
                    receipt_id: receipt.id,
                    special_id: receipt.special_id,
                    amount: receipt.amount,
                    reason: reason.clone(),
                    bank_ref: bank_ref.clone(),
                },
                vec![
                    Posting::debit(Account::Suspense(receipt.special_id), receipt.amount.fen()),
                    Posting::credit(Account::Bank(receipt.special_id), receipt.amount.fen()),
                ],
            )
        }
        Command::RecordDeferral {
            case_number,
            reason,
            approval_ref,
            note,
        } => {
            let case = case_by_key(state, &CaseKey::Number(case_number.clone()))?;
            open_case_for_money(state, &case)?;
            new(Op::DeferralRequested {
                deferral_id: ctx.new_id,
                case_id: case.id,
                special_id: case.special_id,
                case_number: case.case_number.clone(),
                reason: *reason,
                approval_ref: approval_ref.clone(),
                note: note.clone(),
            })
        }
        Command::AddPrincipal { .. }
        | Command::DisablePrincipal { .. }
        | Command::RotateToken { .. } => principal_rule(state, command, ctx, who),
        Command::EndDeferral { deferral_id } => {
            let d = deferral_in(state, *deferral_id, DeferralStatus::Active)?;
            new(Op::DeferralEnded {
                deferral_id: d.id,
                case_id: d.case_id,
                special_id: d.special_id,
                case_number: d.case_number.clone(),
            })
        }
        Command::ApproveDeferral { deferral_id } => {
            let d = deferral_in(state, *deferral_id, DeferralStatus::PendingApproval)?;
            may_approve_deferral(&d, who)?;
            // A closed case holds no money to defer; its deferral cannot start.
            let case = state.case(d.case_id)?.ok_or_else(|| {
                Fault(format!(
                    "deferral {deferral_id} names missing case {}",
                    d.case_id
                ))
            })?;
            open_case_for_money(state, &case)?;
            new(Op::DeferralApproved {
                deferral_id: d.id,
                case_id: d.case_id,
                special_id: d.special_id,
                case_number: d.case_number.clone(),
            })
        }
        Command::RejectDeferral {
            deferral_id,
            reason,
        } => {
            let d = deferral_in(state, *deferral_id, DeferralStatus::PendingApproval)?;
            new(Op::DeferralRejected {
                deferral_id: d.id,
                case_id: d.case_id,
                special_id: d.special_id,
                case_number: d.case_number.clone(),
                reason: reason.clone(),
            })
        }
    }
}

/// What an unidentified receipt records besides its amount.
struct SuspenseFacts<'a> {
    payer_name: &'a Text,
    payer_account: &'a Text,
    bank_ref: &'a BankRef,
    value_date: Date,
    memo: Text,
    account_given: Text,
}

fn to_suspense(ctx: &Context, special_id: Uuid, amount: Amount, f: SuspenseFacts<'_>) -> Decided {
    value_date_come(ctx, f.value_date)?;
    new_posted(
        Op::UnidentifiedReceiptRecorded {
            receipt_id: ctx.new_id,
            special_id,
            amount,
            payer_name: f.payer_name.clone(),
            payer_account: f.payer_account.clone(),
            bank_ref: f.bank_ref.clone(),
            value_date: f.value_date,
            memo: f.memo,
            account_given: f.account_given,
        },
        vec![
            Posting::debit(Account::Bank(special_id), amount.fen()),
            Posting::credit(Account::Suspense(special_id), amount.fen()),
        ],
    )
}

/// The open case of this special account that the payer's key names, or why there is
/// none. Money for a closed case or for a case of another special account cannot be
/// credited to it either, so it is unmatched too.
fn match_unmatched(
    state: &impl State,
    special_id: Uuid,
    key: &UnmatchedKey,
) -> Result<(Option<CaseState>, String), LedgerError> {
    let id = match key {
        UnmatchedKey::Number(n) => state.case_by_number(n)?,
        UnmatchedKey::Van(v) => state.case_by_van(v)?,
        UnmatchedKey::Unreadable(_) => {
            return Ok((
                None,
                "virtual account number is malformed or fails its check digits".into(),
            ))
        }
    };
    // A number of another special account's case reads exactly like one that names
    // nothing: the memo is written by whoever records the receipt, who may belong to
    // another court, and must not learn from it which numbers exist elsewhere.
    const NOT_HERE: &str = "no case account of this special account has this number";
    let Some(id) = id else {
        return Ok((None, NOT_HERE.into()));
    };
    let case = state
        .case(id)?
        .ok_or_else(|| Fault(format!("case index points at missing case {id}")))?;
    if case.special_id != special_id {
        return Ok((None, NOT_HERE.into()));
    }
    if case.status == AccountStatus::Closed {
        return Ok((None, format!("case {} is closed", case.case_number)));
    }
    Ok((Some(case), String::new()))
}

fn unmatched_text(key: &UnmatchedKey) -> Text {
    let text = match key {
        UnmatchedKey::Number(n) => n.to_string(),
        UnmatchedKey::Van(v) => v.to_string(),
        UnmatchedKey::Unreadable(t) => t.to_string(),
    };
    Text::optional(&text, crate::domain::text::len::REF).unwrap_or_default()
}

fn unidentified(state: &impl State, id: Uuid) -> Result<UnidentifiedReceiptState, LedgerError> {
    Ok(state
        .unidentified(id)?
        .ok_or_else(|| DomainError::not_found(format!("unidentified receipt {id}")))?)
}

fn in_suspense(r: UnidentifiedReceiptState) -> Result<UnidentifiedReceiptState, LedgerError> {
    match r.status {
        UnidentifiedStatus::InSuspense => Ok(r),
        UnidentifiedStatus::Assigned => Err(DomainError::rule(format!(
            "unidentified receipt {} was already assigned to case {}",
            r.id,
            r.case_number.map(|n| n.to_string()).unwrap_or_default()
        ))
        .into()),
        UnidentifiedStatus::Returned => Err(DomainError::rule(format!(
            "unidentified receipt {} was already returned to the payer",
            r.id
        ))
        .into()),
    }
}

fn unidentified_in_suspense(
    state: &impl State,
    id: Uuid,
) -> Result<UnidentifiedReceiptState, LedgerError> {
    in_suspense(unidentified(state, id)?)
}

fn deferral(state: &impl State, id: Uuid) -> Result<DeferralState, LedgerError> {
    Ok(state
        .deferral(id)?
        .ok_or_else(|| DomainError::not_found(format!("deferral {id}")))?)
}

/// The deferral, if it stands where the step needs it; else why it does not.
fn deferral_in(
    state: &impl State,
    id: Uuid,
    needed: DeferralStatus,
) -> Result<DeferralState, LedgerError> {
    let d = deferral(state, id)?;
    let status = d.status();
    if status == needed {
        return Ok(d);
    }
    let why = match status {
        DeferralStatus::PendingApproval => {
            "awaits an approver's decision (ApproveDeferral or RejectDeferral)".to_owned()
        }
        DeferralStatus::Active => "was already approved".to_owned(),
        DeferralStatus::Rejected => "was rejected".to_owned(),
        DeferralStatus::Ended => format!(
            "already ended (entry {})",
            d.ended_sequence.unwrap_or_default()
        ),
    };
    Err(DomainError::rule(format!("deferral {id} {why}")).into())
}

/// Four eyes, as for disbursements: whoever approves a deferral did not record it.
fn may_approve_deferral(d: &DeferralState, who: Option<Uuid>) -> Result<(), LedgerError> {
    let Some(who) = who else { return Ok(()) };
    if d.recorded_by == Some(who) {
        return Err(DomainError::forbidden(format!(
            "deferral {} was recorded by this principal; another approver must approve it (four eyes)",
            d.id
        ))
        .into());
    }
    Ok(())
}

/// A bank reference seen again on an unidentified receipt: the same receipt is the
/// original entry; anything else claiming the bank transaction is refused.
fn same_unidentified(state: &impl State, seq: u64, bank_ref: &BankRef, amount: Fen) -> Decided {
    let entry = recorded(state, seq)?;
    match entry.op {
        Op::UnidentifiedReceiptRecorded { amount: a, .. } if a.fen() == amount => {
            Ok(Decision::Existing(seq))
        }
        _ => Err(bank_ref_taken(bank_ref, seq)),
    }
}

/// Money for a case: debit the bank, credit the case. One place for both the plain
/// receipt and the receipt that matched a case on its way to suspense.
fn receipt(
    ctx: &Context,
    case: &CaseState,
    amount: crate::domain::Amount,
    payer_name: &crate::domain::Text,
    payer_account: &crate::domain::Text,
    bank_ref: &BankRef,
    value_date: crate::domain::Date,
) -> Decided {
    value_date_come(ctx, value_date)?;
    new_posted(
        Op::Receipt {
            case_id: case.id,
            special_id: case.special_id,
            case_number: case.case_number.clone(),
            amount,
            payer_name: payer_name.clone(),
            payer_account: payer_account.clone(),
            bank_ref: bank_ref.clone(),
            value_date,
        },
        vec![
            Posting::debit(Account::Bank(case.special_id), amount.fen()),
            Posting::credit(Account::Case(case.id), amount.fen()),
        ],
    )
}

/// Four eyes: whoever approves a disbursement did not request it, and holds an
/// approval level at least the tier its amount needs. A request without a principal
/// comes only from in-process tools and tests (the API always names one), so the
/// rule has nobody to compare and does not apply.
fn may_approve(
    state: &impl State,
    d: &DisbursementState,
    who: Option<Uuid>,
    tiers: &ApprovalTiers,
) -> Result<(), LedgerError> {
    let Some(who) = who else { return Ok(()) };
    if d.requested_by == Some(who) {
        return Err(DomainError::forbidden(format!(
            "disbursement {} was requested by this principal; another approver must approve it (four eyes)",
            d.id
        ))
        .into());
    }
    let needed = tiers.level_for(d.amount.fen());
    let level = state
        .principal(who)?
        .filter(|p| p.has_role(Role::Approver))
        .map_or(0, |p| p.approval_level);
    if level < needed {
        return Err(DomainError::forbidden(format!(
            "disbursement {} of {} needs an approver of level {needed}; this principal's level is {level}",
            d.id, d.amount
        ))
        .into());
    }
    Ok(())
}

/// Four eyes: the principal confirming the payment neither requested nor approved it.
fn may_confirm(d: &DisbursementState, who: Option<Uuid>) -> Result<(), LedgerError> {
    let Some(who) = who else { return Ok(()) };
    if d.requested_by == Some(who) || d.approved_by == Some(who) {
        return Err(DomainError::forbidden(format!(
            "disbursement {} was requested or approved by this principal; someone else must confirm its payment (four eyes)",
            d.id
        ))
        .into());
    }
    Ok(())
}

/// The decisions on principals.
fn principal_rule(
    state: &impl State,
    command: &Command,
    ctx: &Context,
    who: Option<Uuid>,
) -> Decided {
    match command {
        Command::AddPrincipal {
            name,
            roles,
            courts,
            supervises,
            approval_level,
            token_hash,
            cert_sha256,
        } => add_principal(
            state,
            PrincipalState {
                id: ctx.new_id,
                name: name.clone(),
                roles: roles.clone(),
                courts: courts.clone(),
                supervises: supervises.clone(),
                approval_level: *approval_level,
                enabled: true,
                token_hash: *token_hash,
                cert_sha256: *cert_sha256,
                created_sequence: 0,
                changed_sequence: 0,
            },
        ),
        Command::DisablePrincipal {
            principal_id,
            reason,
        } => enabled_principal(state, *principal_id).and_then(|p| {
            may_disable(state, &p, who)?;
            new(Op::PrincipalDisabled {
                principal_id: p.id,
                reason: reason.clone(),
            })
        }),
        Command::RotateToken {
            principal_id,
            token_hash,
        } => enabled_principal(state, *principal_id).and_then(|p| {
            token_unused(state, token_hash)?;
            new(Op::PrincipalTokenRotated {
                principal_id: p.id,
                token_hash: *token_hash,
            })
        }),
        _ => Err(Fault("a ledger command reached the principal rules".into()).into()),
    }
}

/// Nobody disables itself, nor the last enabled national administrator: bootstrap
/// runs only on an empty directory, so either would lock administration out for good.
fn may_disable(
    state: &impl State,
    p: &PrincipalState,
    who: Option<Uuid>,
) -> Result<(), LedgerError> {
    if who == Some(p.id) {
        return Err(DomainError::rule(format!(
            "principal {} may not disable itself; another administrator must",
            p.name
        ))
        .into());
    }
    if p.is_national_admin() {
        let others = state.all_principals()?;
        if !others.iter().any(|o| o.id != p.id && o.is_national_admin()) {
            return Err(DomainError::rule(format!(
                "principal {} is the last enabled administrator with court scope 最高法; add another before disabling it",
                p.name
            ))
            .into());
        }
    }
    Ok(())
}

fn add_principal(state: &impl State, p: PrincipalState) -> Decided {
    if state.principal_by_name(&p.name)?.is_some() {
        return Err(DomainError::AlreadyExists {
            what: format!("principal named {}", p.name),
        }
        .into());
    }
    // A fingerprint is public: were it registered twice, the directory could map it
    // to one principal only, and whoever registered it second could take over the
    // first one's mutual-TLS logins. Disabled principals keep theirs, too.
    if let Some(cert) = p.cert_sha256 {
        if state
            .all_principals()?
            .iter()
            .any(|o| o.cert_sha256 == Some(cert))
        {
            return Err(DomainError::AlreadyExists {
                what: "a principal with this client certificate (client_cert_sha256)".into(),
            }
            .into());
        }
    }
    token_unused(state, &p.token_hash)?;
    new(Op::PrincipalAdded {
        principal_id: p.id,
        name: p.name,
        roles: p.roles,
        courts: p.courts,
        supervises: p.supervises,
        approval_level: p.approval_level,
        token_hash: p.token_hash,
        cert_sha256: p.cert_sha256,
    })
}

/// A token is one principal's: were a hash registered twice, the directory could
/// map it to one of them only, and whoever registered it second would sign in as the
/// first. A hash held by anyone (a disabled principal, or the one rotating to it,
/// whose rotation would then change nothing) is refused: its holder generates another.
fn token_unused(state: &impl State, hash: &[u8; 32]) -> Result<(), LedgerError> {
    if state
        .all_principals()?
        .iter()
        .any(|o| o.token_hash == *hash)
    {
        return Err(DomainError::AlreadyExists {
            what: "a principal with this token (token_sha256)".into(),
        }
        .into());
    }
    Ok(())
}

/// Refuses a request of a principal disabled since its call was authenticated: a call
/// may wait in the writer's queue, or for the state to catch up, while its principal
/// is disabled, and what it may do (approve, manage principals) must not outlive that.
/// Receipts are let through unread: they are the hot path, money only comes in, and
/// each is reconciled against the bank.
fn acting(state: &impl State, command: &Command, who: Option<Uuid>) -> Result<(), LedgerError> {
    let Some(who) = who else { return Ok(()) };
    if matches!(
        command,
        Command::RecordReceipt(_) | Command::RecordReceiptAt { .. }
    ) {
        return Ok(());
    }
    match state.principal(who)? {
        Some(p) if !p.enabled => Err(DomainError::forbidden(format!(
            "principal {} was disabled after this call was authenticated",
            p.name
        ))
        .into()),
        _ => Ok(()),
    }
}

fn enabled_principal(state: &impl State, id: Uuid) -> Result<PrincipalState, LedgerError> {
    let p = state
        .principal(id)?
        .ok_or_else(|| DomainError::not_found(format!("principal {id}")))?;
    if !p.enabled {
        return Err(DomainError::rule(format!("principal {id} is disabled")).into());
    }
    Ok(p)
}

fn new(op: Op) -> Decided {
    Ok(Decision::New {
        op,
        postings: Vec::new(),
    })
}

fn new_posted(op: Op, postings: Vec<Posting>) -> Decided {
    Ok(Decision::New { op, postings })
}

fn moved(
    d: &DisbursementState,
    to: DisbursementStatus,
    note: crate::domain::Text,
    bank_ref: Option<BankRef>,
    at: Option<Micros>,
) -> Op {
    Op::DisbursementMoved {
        disbursement_id: d.id,
        case_id: d.case_id,
        special_id: d.special_id,
        case_number: d.case_number.clone(),
        amount: d.amount,
        to,
        note,
        bank_ref,
        at,
    }
}

fn open_special(state: &impl State, id: Uuid) -> Result<SpecialAccountState, LedgerError> {
    let special = state
        .special(id)?
        .ok_or_else(|| DomainError::not_found(format!("special account {id}")))?;
    if special.status == AccountStatus::Closed {
        return Err(DomainError::rule(format!("special account {id} is closed")).into());
    }
    Ok(special)
}

fn case_by_key(state: &impl State, key: &CaseKey) -> Result<CaseState, LedgerError> {
    let id = match key {
        CaseKey::Number(n) => state.case_by_number(n)?,
        CaseKey::Van(v) => state.case_by_van(v)?,
    };
    // Named only when missing: this is on every receipt's path.
    let id = id.ok_or_else(|| {
        DomainError::not_found(match key {
            CaseKey::Number(n) => format!("case account for case number {n}"),
            CaseKey::Van(v) => format!("case account with virtual account number {v}"),
        })
    })?;
    state
        .case(id)?
        .ok_or_else(|| Fault(format!("case index points at missing case {id}")).into())
}

/// Money may move into or out of a case only while it and its special account are open.
fn open_case_for_money(state: &impl State, case: &CaseState) -> Result<(), LedgerError> {
    if case.status == AccountStatus::Closed {
        return Err(
            DomainError::rule(format!("case account {} is closed", case.case_number)).into(),
        );
    }
    open_special(state, case.special_id).map(|_| ())
}

/// Money may leave a case while its special account is open, even if the case was
/// closed: a payment the bank returned after closure must be paid out again, not stuck.
/// (A closed case holds money only that way; closing itself requires zero.)
fn can_pay_out(state: &impl State, case: &CaseState) -> Result<(), LedgerError> {
    open_special(state, case.special_id).map(|_| ())
}

fn ensure_available(case: &CaseState, amount: Fen) -> Result<(), LedgerError> {
    let available = case.balances.available();
    if available < amount {
        return Err(DomainError::rule(format!(
            "insufficient funds in case {}: available {available}, needed {amount}",
            case.case_number
        ))
        .into());
    }
    Ok(())
}

/// Money goes to an applicant's account confirmed at filing; any other payee is an
/// exception that must say why.
fn check_payee(
    case: &CaseState,
    payee: &Payee,
    purpose: Purpose,
    no_exception_reason: bool,
) -> Result<(), LedgerError> {
    let confirmed = case
        .applicants
        .iter()
        .any(|a| !a.payee_account.is_empty() && a.payee_account == payee.account);
    if purpose == Purpose::ToApplicant && confirmed {
        return Ok(());
    }
    if no_exception_reason {
        return Err(DomainError::invalid(
            "exception_reason",
            "required: the payee is not an applicant's bank account confirmed when the case account was opened",
        )
        .into());
    }
    Ok(())
}

fn disbursement(state: &impl State, id: Uuid) -> Result<DisbursementState, LedgerError> {
    Ok(state
        .disbursement(id)?
        .ok_or_else(|| DomainError::not_found(format!("disbursement {id}")))?)
}

fn in_status(
    d: DisbursementState,
    allowed: &[DisbursementStatus],
) -> Result<DisbursementState, LedgerError> {
    if allowed.contains(&d.status) {
        return Ok(d);
    }
    let names: Vec<_> = allowed.iter().map(|s| s.name()).collect();
    Err(DomainError::rule(format!(
        "disbursement {} is {}; this step needs it to be {}",
        d.id,
        d.status.name(),
        names.join(" or ")
    ))
    .into())
}

fn disbursement_in(
    state: &impl State,
    id: Uuid,
    allowed: &[DisbursementStatus],
) -> Result<DisbursementState, LedgerError> {
    in_status(disbursement(state, id)?, allowed)
}

fn recorded(state: &impl State, seq: u64) -> Result<Entry, LedgerError> {
    Ok(state.entry(seq)?.ok_or_else(|| {
        Fault(format!(
            "bank reference index points at missing entry {seq}"
        ))
    })?)
}

/// A bank reference seen again: the same receipt is the original entry; anything else
/// claiming the same bank transaction is refused.
fn same_receipt(
    state: &impl State,
    seq: u64,
    bank_ref: &BankRef,
    case_id: Uuid,
    amount: Fen,
) -> Decided {
    let entry = recorded(state, seq)?;
    match entry.op {
        Op::Receipt {
            case_id: c,
            amount: a,
            ..
        } if c == case_id && a.fen() == amount => {
            // Answering "done" for a receipt that was reversed would tell the bank's
            // client the money is credited when it is not.
            match in_force(state, seq)? {
                Ok(()) => Ok(Decision::Existing(seq)),
                Err(by) => Err(DomainError::rule(format!(
                    "bank_ref {bank_ref} was recorded as entry {seq} and reversed by entry {by}; to credit it again, reverse entry {by}"
                ))
                .into()),
            }
        }
        _ => Err(bank_ref_taken(bank_ref, seq)),
    }
}

/// Whether entry `seq` is in force: not reversed, or its reversal was itself reversed
/// (and so on). `Err` names the reversal that undoes it.
fn in_force(state: &impl State, seq: u64) -> Result<Result<(), u64>, LedgerError> {
    let mut current = seq;
    let mut undone_by = None;
    // Each entry is reversed at most once, so the chain is finite; bound it anyway.
    for _ in 0..REVERSAL_CHAIN_MAX {
        match state.reversed_by(current)? {
            None => break,
            Some(by) => {
                undone_by = match undone_by {
                    None => Some(by),
                    Some(_) => None,
                };
                current = by;
            }
        }
    }
    Ok(undone_by.map_or(Ok(()), Err))
}

/// How far past the server's clock a payment's `paid_at` may be: clocks differ a little.
const PAID_AT_AHEAD_MAX_MICROS: i64 = 3_600_000_000;

/// Money is notified once it has arrived: a value date after tomorrow in China is a
/// typo (2042 for 2024), and would date the bank line where no statement finds it and
/// keep unidentified money from ever counting as aged. A day of slack for a bank's
/// clock or its time zone.
fn value_date_come(ctx: &Context, value_date: Date) -> Result<(), LedgerError> {
    let latest = Date::in_china(ctx.now).plus_days(1);
    if value_date > latest {
        return Err(DomainError::invalid(
            "value_date",
            format!(
                "{value_date} is after {latest}: money is recorded once the bank has received it"
            ),
        )
        .into());
    }
    Ok(())
}

/// Reversals of reversals are allowed (to undo a mistaken correction); no chain of them
/// is longer than this.
pub const REVERSAL_CHAIN_MAX: usize = 64;

fn same_disbursement_step(
    state: &impl State,
    seq: u64,
    bank_ref: &BankRef,
    disbursement_id: Uuid,
    to: DisbursementStatus,
) -> Decided {
    let entry = recorded(state, seq)?;
    match entry.op {
        Op::DisbursementMoved {
            disbursement_id: d,
            to: t,
            ..
        } if d == disbursement_id && t == to => Ok(Decision::Existing(seq)),
        _ => Err(bank_ref_taken(bank_ref, seq)),
    }
}

fn bank_ref_taken(bank_ref: &BankRef, seq: u64) -> LedgerError {
    DomainError::AlreadyExists {
        what: format!(
            "bank_ref {bank_ref} (recorded on this special account as entry {seq} for a different transaction)"
        ),
    }
    .into()
}

/// A receipt for `case`, or the answer of the one its bank reference already recorded.
fn record_receipt(
    state: &impl State,
    ctx: &Context,
    case: &CaseState,
    r: &super::Receipt,
) -> Decided {
    if let Some(seq) = state.bank_ref(case.special_id, &r.bank_ref)? {
        return same_receipt(state, seq, &r.bank_ref, case.id, r.amount.fen());
    }
    open_case_for_money(state, case)?;
    receipt(
        ctx,
        case,
        r.amount,
        &r.payer_name,
        &r.payer_account,
        &r.bank_ref,
        r.value_date,
    )
}

/// The exact negation of a posted entry, once, and only if no balance goes negative.
fn reverse(state: &impl State, sequence: u64, reason: crate::domain::Text) -> Decided {
    let entry = state
        .entry(sequence)?
        .ok_or_else(|| DomainError::not_found(format!("entry {sequence}")))?;
    match entry.op {
        Op::Receipt { .. } | Op::Transfer { .. } | Op::Reversal { .. } => {}
        Op::DisbursementMoved { .. } => {
            return Err(DomainError::rule(format!(
                "entry {sequence} is a disbursement step; a payment that failed is recorded with FailDisbursement and money the bank sent back with RecordReturnedPayment"
            ))
            .into())
        }
        _ => {
            return Err(DomainError::rule(format!(
                "entry {sequence} moves no money and cannot be reversed"
            ))
            .into())
        }
    }
    if let Some(by) = state.reversed_by(sequence)? {
        return Err(DomainError::rule(format!(
            "entry {sequence} was already reversed by entry {by}"
        ))
        .into());
    }
    // A closed special account was closed at zero and pays nothing out: reversing a
    // reversal there would bring back money that could never leave.
    open_special(state, entry.special_id())?;
    // Whoever follows a chain (`in_force`, the bank run) follows at most this many.
    let mut depth = 1;
    let mut below = &entry;
    let mut reversed;
    while let Op::Reversal {
        reversed_sequence, ..
    } = below.op
    {
        depth += 1;
        if depth >= REVERSAL_CHAIN_MAX {
            return Err(DomainError::rule(format!(
                "entry {sequence} ends a chain of {} reversals, the most one entry may have; record a correction as a new entry instead",
                depth - 1
            ))
            .into());
        }
        reversed = state
            .entry(reversed_sequence)?
            .ok_or_else(|| Fault(format!("reversal names missing entry {reversed_sequence}")))?;
        below = &reversed;
    }
    let postings: Vec<Posting> = entry
        .postings
        .iter()
        .map(|p| Posting {
            amount: Fen(-p.amount.0),
            ..*p
        })
        .collect();
    let mut cases = Vec::new();
    for (case_id, number) in entry.cases() {
        let case = state
            .case(case_id)?
            .ok_or_else(|| Fault(format!("entry {sequence} names missing case {case_id}")))?;
        if case.status == AccountStatus::Closed {
            return Err(DomainError::rule(format!("case account {number} is closed")).into());
        }
        let delta = available_delta(&postings, case_id);
        if case.balances.available().0 + delta.0 < 0 {
            return Err(DomainError::rule(format!(
                "reversing entry {sequence} would leave case {number} with a negative available balance (available {}, reversal takes {})",
                case.balances.available(),
                Fen(-delta.0)
            ))
            .into());
        }
        cases.push((case_id, number.clone()));
    }
    new_posted(
        Op::Reversal {
            reversed_sequence: sequence,
            special_id: entry.special_id(),
            cases,
            reason,
        },
        postings,
    )
}

/// How the postings change a case's available balance: credits add, debits take.
pub(crate) fn available_delta(postings: &[Posting], case_id: Uuid) -> Fen {
    postings
        .iter()
        .filter(|p| p.account == Account::Case(case_id))
        .fold(Fen::ZERO, |acc, p| match p.side {
            crate::domain::Side::Credit => Fen(acc.0 + p.amount.0),
            crate::domain::Side::Debit => Fen(acc.0 - p.amount.0),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CourtCode, RequestId};
    use crate::ledger::{execute, MemState};

    fn run(state: &mut MemState, n: u64, command: Command, who: Option<Uuid>) -> Decided {
        let request = Request {
            id: RequestId::parse(&format!("req-{n}")).unwrap_or_else(|e| panic!("{e}")),
            command,
            principal: who,
        };
        let ctx = Context {
            now: Micros(1_710_000_000_000_000 + 1_000 * n as i64),
            new_id: Uuid::now_v7(),
            tiers: ApprovalTiers::default(),
        };
        let decided = decide(state, &request, &ctx);
        if decided.is_ok() {
            execute(state, &request, &ctx).unwrap_or_else(|e| panic!("{e:?}"));
        }
        decided
    }

    fn add_admin(state: &mut MemState, n: u64) -> Uuid {
        let add = Command::AddPrincipal {
            name: Text::required(&format!("admin{n}"), 10).unwrap_or_else(|e| panic!("{e}")),
            roles: vec![Role::Admin],
            courts: vec![CourtCode::parse("最高法").unwrap_or_else(|e| panic!("{e}"))],
            supervises: Vec::new(),
            approval_level: 1,
            token_hash: [n as u8; 32],
            cert_sha256: None,
        };
        match run(state, n, add, None) {
            Ok(Decision::New {
                op: Op::PrincipalAdded { principal_id, .. },
                ..
            }) => principal_id,
            other => panic!("{other:?}"),
        }
    }

    fn disable(id: Uuid) -> Command {
        Command::DisablePrincipal {
            principal_id: id,
            reason: Text::required("left", 10).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn refused_as_rule(decided: Decided) -> bool {
        matches!(decided, Err(LedgerError::Domain(DomainError::Rule(_))))
    }

    /// A call authenticated before its principal was disabled may be decided after:
    /// it is refused then, whatever it asks.
    #[test]
    fn a_principal_disabled_meanwhile_acts_no_more() {
        let mut state = MemState::default();
        let a = add_admin(&mut state, 1);
        let b = add_admin(&mut state, 2);
        assert!(run(&mut state, 3, disable(b), Some(a)).is_ok());
        let c = add_admin(&mut state, 4);
        let refused = run(&mut state, 5, disable(c), Some(b));
        assert!(
            matches!(refused, Err(LedgerError::Domain(DomainError::Forbidden(_)))),
            "{refused:?}"
        );
        // Near miss: an enabled one may.
        assert!(run(&mut state, 6, disable(c), Some(a)).is_ok());
    }

    /// Without another enabled administrator of 最高法 nobody could manage principals
    /// again, so neither the principal itself nor a tool (no principal) may disable it.
    #[test]
    fn the_last_national_administrator_is_not_disabled() {
        let mut state = MemState::default();
        let a = add_admin(&mut state, 1);
        assert!(refused_as_rule(run(&mut state, 2, disable(a), None)));
        assert!(refused_as_rule(run(&mut state, 3, disable(a), Some(a))));
        let b = add_admin(&mut state, 4);
        assert!(refused_as_rule(run(&mut state, 5, disable(a), Some(a))));
        assert!(run(&mut state, 6, disable(b), Some(a)).is_ok());
        assert!(refused_as_rule(run(&mut state, 7, disable(a), None)));
    }
}
