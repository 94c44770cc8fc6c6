//! Applies one journal entry to the state. The same function serves live requests and
//! replay, so replaying the journal reproduces every balance by construction.
//!
//! It works in two phases: first every touched record is read and changed in local
//! copies, with checked arithmetic and the invariants asserted; only if all of that
//! succeeds is anything written. A failure therefore leaves the state untouched.

use std::collections::{btree_map, BTreeMap};

use uuid::Uuid;

use crate::domain::{
    Account, AccountStatus, Balances, BankLine, BankLineKind, CaseClock, CaseFacts, CaseNumber,
    CaseState, Date, DeferralDecision, DeferralState, DeferralStatus, DisbursementState,
    DisbursementStatus, Entry, Fen, Meta, Op, PrincipalState, Registration, RegistrationKind,
    RequestRecord, Side, SpecialAccountState, Text, UnidentifiedReceiptState, UnidentifiedStatus,
};

use super::state::{Fault, StateMut};

/// The records one entry changes, read once and written back together.
#[derive(Default)]
struct Touched {
    specials: BTreeMap<Uuid, SpecialAccountState>,
    cases: BTreeMap<Uuid, CaseState>,
    disbursement: Option<DisbursementState>,
    unidentified: Option<UnidentifiedReceiptState>,
    deferral: Option<DeferralState>,
    principal: Option<PrincipalState>,
    /// Each touched case's balance before this entry, for its clock.
    balances_before: BTreeMap<Uuid, Fen>,
}

impl Touched {
    fn special(
        &mut self,
        state: &impl StateMut,
        id: Uuid,
    ) -> Result<&mut SpecialAccountState, Fault> {
        match self.specials.entry(id) {
            btree_map::Entry::Occupied(e) => Ok(e.into_mut()),
            btree_map::Entry::Vacant(e) => {
                let s = state
                    .special(id)?
                    .ok_or_else(|| Fault(format!("entry names missing special account {id}")))?;
                Ok(e.insert(s))
            }
        }
    }

    fn case(&mut self, state: &impl StateMut, id: Uuid) -> Result<&mut CaseState, Fault> {
        match self.cases.entry(id) {
            btree_map::Entry::Occupied(e) => Ok(e.into_mut()),
            btree_map::Entry::Vacant(e) => {
                let c = state
                    .case(id)?
                    .ok_or_else(|| Fault(format!("entry names missing case account {id}")))?;
                self.balances_before.insert(id, c.balances.balance());
                Ok(e.insert(c))
            }
        }
    }
}

fn add(a: Fen, b: Fen) -> Result<Fen, Fault> {
    a.checked_add(b)
        .ok_or_else(|| Fault(format!("amount overflow adding {b} to {a}")))
}

fn sub(a: Fen, b: Fen) -> Result<Fen, Fault> {
    a.checked_sub(b)
        .ok_or_else(|| Fault(format!("amount overflow taking {b} from {a}")))
}

pub fn apply(state: &mut impl StateMut, entry: &Entry) -> Result<(), Fault> {
    let meta = state.meta()?;
    let expected = meta.next_sequence.max(1);
    if entry.sequence != expected {
        return Err(Fault(format!(
            "entry {} applied where entry {expected} was due",
            entry.sequence
        )));
    }
    check_balanced(entry)?;
    let mut t = Touched::default();
    let mut meta = Meta {
        next_sequence: entry.sequence + 1,
        last_recorded_at: meta.last_recorded_at.max(entry.recorded_at),
        ..meta
    };
    let mut created_case = None;
    apply_op(state, entry, &mut t, &mut meta, &mut created_case)?;
    apply_postings(state, entry, &mut t)?;
    update_clocks(entry, &mut t)?;
    let bank_line = bank_line(state, entry)?;
    // A bank line is stored with its special account's line for the entry (sled keeps
    // both under one key), so the entry must have touched that account: it did, if it
    // moved its bank balance. Checked here, before anything is written.
    if bank_line.is_some() && !t.specials.contains_key(&entry.special_id()) {
        return Err(Fault(format!(
            "entry {} makes a bank line for special account {} without moving its money",
            entry.sequence,
            entry.special_id()
        )));
    }
    for case in t.cases.values() {
        let b = case.balances;
        if b.available().is_negative() || b.reserved.is_negative() {
            return Err(Fault(format!(
                "entry {} would leave case {} with available {} and reserved {}",
                entry.sequence,
                case.case_number,
                b.available(),
                b.reserved
            )));
        }
    }
    // Every check passed: write.
    let lines: Vec<(Uuid, CaseFacts)> = entry
        .cases()
        .iter()
        .filter_map(|(id, _)| {
            t.cases.get(id).map(|c| {
                let facts = CaseFacts {
                    balances: c.balances,
                    clock: c.clock,
                    target: c.target,
                    closed: c.closure.zip(c.closed_sequence),
                    van_serials: c.van.serials(),
                };
                (*id, facts)
            })
        })
        .collect();
    if let Some((case_id, number, van)) = created_case {
        state.put_case_number(number, case_id);
        state.put_van(van, case_id);
    }
    for s in t.specials.into_values() {
        state.put_special_line(s.id, entry.sequence, s.line());
        state.put_special(s);
    }
    for c in t.cases.into_values() {
        state.put_case(c);
    }
    if let Some(d) = t.disbursement {
        state.put_disbursement(d);
    }
    if let Some(u) = t.unidentified {
        state.put_unidentified(u);
    }
    if let Some(d) = t.deferral {
        state.put_deferral(d);
    }
    if let Some(p) = t.principal {
        state.put_principal(p);
    }
    // The facts line is also the case's statement line: its balances after the entry.
    for (case_id, facts) in lines {
        if let Some((_, number)) = entry.cases().into_iter().find(|(id, _)| *id == case_id) {
            state.put_case_facts(number, entry.sequence, facts);
        }
    }
    if let Some(line) = bank_line {
        state.put_bank_line(entry.special_id(), entry.sequence, line);
    }
    write_references(state, entry);
    state.put_request(
        entry.request_id.clone(),
        RequestRecord {
            hash: entry.request_hash,
            sequence: entry.answer(),
        },
    );
    state.put_entry(entry);
    state.put_meta(meta);
    Ok(())
}

/// Debits equal credits, per entry, always.
fn check_balanced(entry: &Entry) -> Result<(), Fault> {
    let mut debit: i128 = 0;
    let mut credit: i128 = 0;
    for p in &entry.postings {
        match p.side {
            Side::Debit => debit += i128::from(p.amount.0),
            Side::Credit => credit += i128::from(p.amount.0),
        }
    }
    if debit != credit {
        return Err(Fault(format!(
            "entry {} does not balance: debits {debit}, credits {credit} fen",
            entry.sequence
        )));
    }
    Ok(())
}

fn apply_postings(state: &impl StateMut, entry: &Entry, t: &mut Touched) -> Result<(), Fault> {
    for p in &entry.postings {
        match (p.account, p.side) {
            (Account::Bank(id), Side::Debit) => {
                let s = t.special(state, id)?;
                s.bank_balance = add(s.bank_balance, p.amount)?;
            }
            (Account::Bank(id), Side::Credit) => {
                let s = t.special(state, id)?;
                s.bank_balance = sub(s.bank_balance, p.amount)?;
            }
            (Account::Suspense(id), Side::Credit) => {
                let s = t.special(state, id)?;
                s.suspense_balance = add(s.suspense_balance, p.amount)?;
            }
            (Account::Suspense(id), Side::Debit) => {
                let s = t.special(state, id)?;
                s.suspense_balance = sub(s.suspense_balance, p.amount)?;
            }
            (Account::Case(id), Side::Credit) => {
                let c = t.case(state, id)?;
                c.balances.received = add(c.balances.received, p.amount)?;
            }
            (Account::Case(id), Side::Debit) => {
                let c = t.case(state, id)?;
                c.balances.disbursed = add(c.balances.disbursed, p.amount)?;
            }
        }
    }
    Ok(())
}

type CreatedCase = Option<(
    Uuid,
    crate::domain::CaseNumber,
    crate::domain::VirtualAccountNumber,
)>;

fn apply_op(
    state: &impl StateMut,
    entry: &Entry,
    t: &mut Touched,
    meta: &mut Meta,
    created_case: &mut CreatedCase,
) -> Result<(), Fault> {
    let registration = |kind, bank, reason, document_ref, effective_at| Registration {
        sequence: entry.sequence,
        kind,
        bank,
        reason,
        document_ref,
        effective_at,
        recorded_at: entry.recorded_at,
        request_id: entry.request_id.clone(),
    };
    match &entry.op {
        Op::SpecialAccountOpened {
            special_id,
            serial,
            court,
            bank,
            document_ref,
        } => {
            if state.special(*special_id)?.is_some() {
                return Err(Fault(format!("special account {special_id} opened twice")));
            }
            meta.next_special_serial = serial + 1;
            t.specials.insert(
                *special_id,
                SpecialAccountState {
                    id: *special_id,
                    serial: *serial,
                    court: court.clone(),
                    status: AccountStatus::Open,
                    registrations: vec![registration(
                        RegistrationKind::Opened,
                        bank.clone(),
                        Default::default(),
                        document_ref.clone(),
                        entry.recorded_at,
                    )],
                    bank_balance: Fen::ZERO,
                    suspense_balance: Fen::ZERO,
                    reserved: Fen::ZERO,
                    case_count: 0,
                    next_case_serial: 1,
                },
            );
        }
        Op::SpecialAccountChanged {
            special_id,
            change,
            reason,
            document_ref,
            effective_at,
        } => {
            let s = t.special(state, *special_id)?;
            let latest = s.bank_latest().ok_or_else(|| {
                Fault(format!("special account {special_id} has no registration"))
            })?;
            let bank = change.applied_to(latest);
            s.registrations.push(registration(
                RegistrationKind::Changed,
                bank,
                reason.clone(),
                document_ref.clone(),
                *effective_at,
            ));
        }
        Op::SpecialAccountClosed {
            special_id,
            reason,
            document_ref,
        } => {
            let s = t.special(state, *special_id)?;
            let bank = s.bank_latest().cloned().ok_or_else(|| {
                Fault(format!("special account {special_id} has no registration"))
            })?;
            s.status = AccountStatus::Closed;
            s.registrations.push(registration(
                RegistrationKind::Closed,
                bank,
                reason.clone(),
                document_ref.clone(),
                entry.recorded_at,
            ));
        }
        Op::CaseAccountOpened {
            case_id,
            special_id,
            case_number,
            van,
            target,
            applicants,
            respondents,
        } => {
            if state.case_by_number(case_number)?.is_some() || state.case(*case_id)?.is_some() {
                return Err(Fault(format!("case account {case_number} opened twice")));
            }
            let s = t.special(state, *special_id)?;
            s.case_count += 1;
            s.next_case_serial += 1;
            t.cases.insert(
                *case_id,
                CaseState {
                    id: *case_id,
                    special_id: *special_id,
                    case_number: case_number.clone(),
                    van: van.clone(),
                    target: *target,
                    applicants: applicants.clone(),
                    respondents: respondents.clone(),
                    status: AccountStatus::Open,
                    closure: None,
                    balances: Balances::default(),
                    opened_at: entry.recorded_at,
                    closed_at: None,
                    closed_sequence: None,
                    clock: CaseClock::default(),
                },
            );
            t.balances_before.insert(*case_id, Fen::ZERO);
            *created_case = Some((*case_id, case_number.clone(), van.clone()));
        }
        Op::Receipt { .. } | Op::Transfer { .. } | Op::Reversal { .. } => {}
        Op::DisbursementRequested {
            disbursement_id,
            case_id,
            special_id,
            case_number,
            amount,
            payee,
            purpose,
            memo,
            exception_reason,
        } => {
            if state.disbursement(*disbursement_id)?.is_some() {
                return Err(Fault(format!(
                    "disbursement {disbursement_id} requested twice"
                )));
            }
            reserve(state, t, *special_id, *case_id, amount.fen())?;
            t.disbursement = Some(DisbursementState {
                id: *disbursement_id,
                case_id: *case_id,
                special_id: *special_id,
                case_number: case_number.clone(),
                amount: *amount,
                payee: payee.clone(),
                purpose: *purpose,
                memo: memo.clone(),
                exception_reason: exception_reason.clone(),
                status: DisbursementStatus::Requested,
                approval_ref: Default::default(),
                reason: Default::default(),
                bank_ref: None,
                paid_at: None,
                returned_bank_ref: None,
                requested_at: entry.recorded_at,
                sequence: entry.sequence,
                requested_by: entry.principal,
                approved_by: None,
            });
        }
        Op::DisbursementMoved {
            disbursement_id,
            to,
            note,
            bank_ref,
            at,
            ..
        } => {
            let mut d = state.disbursement(*disbursement_id)?.ok_or_else(|| {
                Fault(format!(
                    "entry names missing disbursement {disbursement_id}"
                ))
            })?;
            if d.status.holds_reservation() && !to.holds_reservation() {
                reserve(state, t, d.special_id, d.case_id, Fen(-d.amount.fen().0))?;
            }
            match to {
                DisbursementStatus::Approved => {
                    d.approval_ref = note.clone();
                    d.approved_by = entry.principal;
                }
                DisbursementStatus::Paid => {
                    d.bank_ref = bank_ref.clone();
                    d.paid_at = *at;
                }
                DisbursementStatus::Returned => {
                    d.returned_bank_ref = bank_ref.clone();
                    d.reason = note.clone();
                }
                _ => d.reason = note.clone(),
            }
            d.status = *to;
            d.sequence = entry.sequence;
            t.disbursement = Some(d);
        }
        Op::CaseAccountClosed {
            case_id, method, ..
        } => {
            let c = t.case(state, *case_id)?;
            c.status = AccountStatus::Closed;
            c.closure = Some(*method);
            c.closed_at = Some(entry.recorded_at);
            c.closed_sequence = Some(entry.sequence);
        }
        Op::UnidentifiedReceiptRecorded {
            receipt_id,
            special_id,
            amount,
            payer_name,
            payer_account,
            bank_ref,
            value_date,
            memo,
            account_given,
        } => {
            if state.unidentified(*receipt_id)?.is_some() {
                return Err(Fault(format!(
                    "unidentified receipt {receipt_id} recorded twice"
                )));
            }
            t.unidentified = Some(UnidentifiedReceiptState {
                id: *receipt_id,
                special_id: *special_id,
                amount: *amount,
                payer_name: payer_name.clone(),
                payer_account: payer_account.clone(),
                bank_ref: bank_ref.clone(),
                value_date: *value_date,
                memo: memo.clone(),
                account_given: account_given.clone(),
                status: UnidentifiedStatus::InSuspense,
                case_id: None,
                case_number: None,
                return_reason: Default::default(),
                return_bank_ref: None,
                recorded_at: entry.recorded_at,
                recorded_sequence: entry.sequence,
                settled_sequence: None,
                settled_at: None,
            });
        }
        Op::UnidentifiedReceiptAssigned {
            receipt_id,
            case_id,
            case_number,
            ..
        } => {
            let mut u = settle(state, *receipt_id, entry)?;
            u.status = UnidentifiedStatus::Assigned;
            u.case_id = Some(*case_id);
            u.case_number = Some(case_number.clone());
            t.unidentified = Some(u);
        }
        Op::UnidentifiedReceiptReturned {
            receipt_id,
            reason,
            bank_ref,
            ..
        } => {
            let mut u = settle(state, *receipt_id, entry)?;
            u.status = UnidentifiedStatus::Returned;
            u.return_reason = reason.clone();
            u.return_bank_ref = bank_ref.clone();
            t.unidentified = Some(u);
        }
        Op::DeferralRecorded {
            deferral_id,
            case_id,
            special_id,
            case_number,
            reason,
            approval_ref,
            note,
        }
        | Op::DeferralRequested {
            deferral_id,
            case_id,
            special_id,
            case_number,
            reason,
            approval_ref,
            note,
        } => {
            if state.deferral(*deferral_id)?.is_some() {
                return Err(Fault(format!("deferral {deferral_id} recorded twice")));
            }
            let mut d = DeferralState {
                id: *deferral_id,
                case_id: *case_id,
                special_id: *special_id,
                case_number: case_number.clone(),
                reason: *reason,
                approval_ref: approval_ref.clone(),
                note: note.clone(),
                recorded_on: Date::in_china(entry.recorded_at),
                recorded_at: entry.recorded_at,
                recorded_sequence: entry.sequence,
                recorded_by: entry.principal,
                decision: None,
                ended_on: None,
                ended_at: None,
                ended_sequence: None,
            };
            // Journaled before approvals moved into the service: approved when recorded,
            // by whoever signed its approval_ref.
            if matches!(entry.op, Op::DeferralRecorded { .. }) {
                d.decision = Some(deferral_decision(entry, true, None, Text::default()));
                start_deferral(t.case(state, *case_id)?, case_number)?;
            }
            t.deferral = Some(d);
        }
        Op::DeferralApproved { deferral_id, .. } | Op::DeferralRejected { deferral_id, .. } => {
            let mut d = state
                .deferral(*deferral_id)?
                .ok_or_else(|| Fault(format!("entry names missing deferral {deferral_id}")))?;
            if d.decision.is_some() {
                return Err(Fault(format!("deferral {deferral_id} decided twice")));
            }
            d.decision = Some(match &entry.op {
                Op::DeferralRejected { reason, .. } => {
                    deferral_decision(entry, false, entry.principal, reason.clone())
                }
                _ => {
                    start_deferral(t.case(state, d.case_id)?, &d.case_number)?;
                    deferral_decision(entry, true, entry.principal, Text::default())
                }
            });
            t.deferral = Some(d);
        }
        Op::DeferralEnded {
            deferral_id,
            case_id,
            case_number,
            ..
        } => {
            let mut d = state
                .deferral(*deferral_id)?
                .ok_or_else(|| Fault(format!("entry names missing deferral {deferral_id}")))?;
            if d.status() != DeferralStatus::Active {
                return Err(Fault(format!(
                    "deferral {deferral_id} ends while {:?}",
                    d.status()
                )));
            }
            let today = Date::in_china(entry.recorded_at);
            d.ended_on = Some(today);
            d.ended_at = Some(entry.recorded_at);
            d.ended_sequence = Some(entry.sequence);
            let c = t.case(state, *case_id)?;
            c.clock.active_deferrals =
                c.clock.active_deferrals.checked_sub(1).ok_or_else(|| {
                    Fault(format!(
                        "case {case_number} ends a deferral it does not have"
                    ))
                })?;
            c.clock.deferral_ended_on = Some(today);
            t.deferral = Some(d);
        }
        Op::PrincipalAdded { .. }
        | Op::PrincipalDisabled { .. }
        | Op::PrincipalTokenRotated { .. } => t.principal = Some(principal(state, entry)?),
        Op::AlreadyRecorded { original, .. } => {
            if *original == 0 || *original >= entry.sequence {
                return Err(Fault(format!(
                    "entry {} names entry {original} as already recorded, which is not before it",
                    entry.sequence
                )));
            }
        }
    }
    // A statement lists every entry of its case, even one that moves no money.
    for (case_id, _) in entry.cases() {
        t.case(state, case_id)?;
    }
    Ok(())
}

/// A deferral starts holding the case's limit back.
fn start_deferral(c: &mut CaseState, case_number: &CaseNumber) -> Result<(), Fault> {
    c.clock.active_deferrals = c
        .clock
        .active_deferrals
        .checked_add(1)
        .ok_or_else(|| Fault(format!("too many deferrals on case {case_number}")))?;
    Ok(())
}

fn deferral_decision(
    entry: &Entry,
    approved: bool,
    by: Option<Uuid>,
    reason: Text,
) -> DeferralDecision {
    DeferralDecision {
        approved,
        by,
        on: Date::in_china(entry.recorded_at),
        at: entry.recorded_at,
        sequence: entry.sequence,
        reason,
    }
}

/// A principal after a principal entry.
fn principal(state: &impl StateMut, entry: &Entry) -> Result<PrincipalState, Fault> {
    let existing = |id: Uuid| {
        state
            .principal(id)?
            .ok_or_else(|| Fault(format!("entry names missing principal {id}")))
    };
    let mut p = match &entry.op {
        Op::PrincipalAdded {
            principal_id,
            name,
            roles,
            courts,
            supervises,
            approval_level,
            token_hash,
            cert_sha256,
        } => {
            if state.principal(*principal_id)?.is_some() {
                return Err(Fault(format!("principal {principal_id} added twice")));
            }
            PrincipalState {
                id: *principal_id,
                name: name.clone(),
                roles: roles.clone(),
                courts: courts.clone(),
                supervises: supervises.clone(),
                approval_level: *approval_level,
                enabled: true,
                token_hash: *token_hash,
                cert_sha256: *cert_sha256,
                created_sequence: entry.sequence,
                changed_sequence: entry.sequence,
            }
        }
        Op::PrincipalDisabled { principal_id, .. } => {
            let mut p = existing(*principal_id)?;
            p.enabled = false;
            p
        }
        Op::PrincipalTokenRotated {
            principal_id,
            token_hash,
        } => {
            let mut p = existing(*principal_id)?;
            p.token_hash = *token_hash;
            p
        }
        _ => {
            return Err(Fault(format!(
                "entry {} is no principal entry",
                entry.sequence
            )))
        }
    };
    p.changed_sequence = entry.sequence;
    Ok(p)
}

/// The unidentified receipt an assignment or return settles, still in suspense.
fn settle(
    state: &impl StateMut,
    id: Uuid,
    entry: &Entry,
) -> Result<UnidentifiedReceiptState, Fault> {
    let mut u = state
        .unidentified(id)?
        .ok_or_else(|| Fault(format!("entry names missing unidentified receipt {id}")))?;
    if u.status != UnidentifiedStatus::InSuspense {
        return Err(Fault(format!("unidentified receipt {id} settled twice")));
    }
    u.settled_sequence = Some(entry.sequence);
    u.settled_at = Some(entry.recorded_at);
    Ok(u)
}

/// The clock of every case whose money this entry moved: when its balance went from
/// zero to positive (the day the limit starts), the last movement, returned payments.
fn update_clocks(entry: &Entry, t: &mut Touched) -> Result<(), Fault> {
    let today = Date::in_china(entry.recorded_at);
    // A receipt's money arrived on its value date, which a late recording must not
    // move forward; money that reaches a case any other way arrives when recorded.
    let arrived = match &entry.op {
        Op::Receipt { value_date, .. } => (*value_date).min(today),
        _ => today,
    };
    for (id, case) in t.cases.iter_mut() {
        let moved = entry
            .postings
            .iter()
            .any(|p| p.account == Account::Case(*id));
        if !moved {
            continue;
        }
        let before = t.balances_before.get(id).copied().unwrap_or(Fen::ZERO);
        let after = case.balances.balance();
        let clock = &mut case.clock;
        clock.last_movement = Some((entry.sequence, today));
        if after.0 <= 0 {
            clock.held_since = None;
        } else if before.0 <= 0 || clock.held_since.is_none() {
            clock.held_since = Some(arrived);
        }
        if let Op::DisbursementMoved {
            to: DisbursementStatus::Returned,
            amount,
            ..
        } = &entry.op
        {
            clock.returned = add(clock.returned, amount.fen())?;
        }
    }
    Ok(())
}

/// The bank line an entry makes, if it moves the bank balance. A reversal's line is
/// dated like the line it cancels, so a corrected receipt nets out in its own period.
fn bank_line(state: &impl StateMut, entry: &Entry) -> Result<Option<BankLine>, Fault> {
    let special = entry.special_id();
    let amount: i64 = entry
        .postings
        .iter()
        .filter(|p| p.account == Account::Bank(special))
        .map(|p| match p.side {
            Side::Debit => p.amount.0,
            Side::Credit => -p.amount.0,
        })
        .sum();
    let today = Date::in_china(entry.recorded_at);
    let line = |kind, bank_ref, date, case_number| {
        Some(BankLine {
            kind,
            bank_ref,
            amount: Fen(amount),
            date,
            case_number,
        })
    };
    Ok(match &entry.op {
        Op::Receipt {
            bank_ref,
            value_date,
            case_number,
            ..
        } => line(
            BankLineKind::Receipt,
            Some(bank_ref.clone()),
            *value_date,
            Some(case_number.clone()),
        ),
        Op::UnidentifiedReceiptRecorded {
            bank_ref,
            value_date,
            ..
        } => line(
            BankLineKind::UnidentifiedReceipt,
            Some(bank_ref.clone()),
            *value_date,
            None,
        ),
        Op::UnidentifiedReceiptReturned { bank_ref, .. } => line(
            BankLineKind::UnidentifiedReturned,
            bank_ref.clone(),
            today,
            None,
        ),
        Op::DisbursementMoved {
            to: DisbursementStatus::Paid,
            bank_ref,
            at,
            case_number,
            ..
        } => line(
            BankLineKind::Payment,
            bank_ref.clone(),
            Date::in_china(at.unwrap_or(entry.recorded_at)),
            Some(case_number.clone()),
        ),
        Op::DisbursementMoved {
            to: DisbursementStatus::Returned,
            bank_ref,
            case_number,
            ..
        } => line(
            BankLineKind::ReturnedPayment,
            bank_ref.clone(),
            today,
            Some(case_number.clone()),
        ),
        Op::Reversal {
            reversed_sequence, ..
        } if amount != 0 => {
            let original = state.entry(*reversed_sequence)?.ok_or_else(|| {
                Fault(format!("reversal names missing entry {reversed_sequence}"))
            })?;
            let date = match &original.op {
                Op::Receipt { value_date, .. } => *value_date,
                _ => Date::in_china(original.recorded_at),
            };
            line(
                BankLineKind::Reversal {
                    reversed: *reversed_sequence,
                },
                None,
                date,
                original.cases().first().map(|(_, n)| (*n).clone()),
            )
        }
        _ => None,
    })
}

/// Adds `amount` (negative to release) to the reservations of a case and its account.
fn reserve(
    state: &impl StateMut,
    t: &mut Touched,
    special_id: Uuid,
    case_id: Uuid,
    amount: Fen,
) -> Result<(), Fault> {
    let c = t.case(state, case_id)?;
    c.balances.reserved = add(c.balances.reserved, amount)?;
    let s = t.special(state, special_id)?;
    s.reserved = add(s.reserved, amount)?;
    Ok(())
}

/// Indexes that let a later request find this entry: bank references and reversals.
fn write_references(state: &mut impl StateMut, entry: &Entry) {
    match &entry.op {
        Op::Receipt {
            special_id,
            bank_ref,
            ..
        } => state.put_bank_ref(*special_id, bank_ref.clone(), entry.sequence),
        Op::DisbursementMoved {
            special_id,
            bank_ref: Some(bank_ref),
            ..
        }
        | Op::UnidentifiedReceiptRecorded {
            special_id,
            bank_ref,
            ..
        }
        | Op::UnidentifiedReceiptReturned {
            special_id,
            bank_ref: Some(bank_ref),
            ..
        } => state.put_bank_ref(*special_id, bank_ref.clone(), entry.sequence),
        Op::Reversal {
            reversed_sequence, ..
        } => state.put_reversed_by(*reversed_sequence, entry.sequence),
        _ => {}
    }
}
