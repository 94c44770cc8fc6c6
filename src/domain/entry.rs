//! The records of the journal and of the state derived from it.
//!
//! An [`Entry`] is one accepted change, numbered without gaps. It carries everything
//! needed to apply it again (generated ids, the time, the postings), so that replaying
//! the journal reproduces the state exactly without consulting a clock or a generator.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    Amount, BankRef, CaseNumber, CourtCode, Date, Fen, Micros, RequestId, Role, Text,
    VirtualAccountNumber,
};

/// A ledger account. Bank is an asset (debit-normal); suspense and cases are
/// liabilities (credit-normal), so bank = Σ cases + suspense when every entry balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Account {
    Bank(Uuid),
    Suspense(Uuid),
    Case(Uuid),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    Debit,
    Credit,
}

/// One line of double entry. `amount` is negative only in a reversal (红字冲正), which
/// carries the exact negation of the lines it reverses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Posting {
    pub account: Account,
    pub side: Side,
    pub amount: Fen,
}

impl Posting {
    pub fn debit(account: Account, amount: Fen) -> Posting {
        Posting {
            account,
            side: Side::Debit,
            amount,
        }
    }

    pub fn credit(account: Account, amount: Fen) -> Posting {
        Posting {
            account,
            side: Side::Credit,
            amount,
        }
    }
}

/// The bank fields of a special account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BankDetails {
    pub bank_name: Text,
    pub bank_branch: Text,
    pub account_number: Text,
    pub account_name: Text,
}

/// A change registration: the fields that change; `None` keeps the current value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct BankChange {
    pub bank_name: Option<Text>,
    pub bank_branch: Option<Text>,
    pub account_number: Option<Text>,
    pub account_name: Option<Text>,
}

impl BankChange {
    pub fn applied_to(&self, base: &BankDetails) -> BankDetails {
        let pick = |new: &Option<Text>, old: &Text| new.clone().unwrap_or_else(|| old.clone());
        BankDetails {
            bank_name: pick(&self.bank_name, &base.bank_name),
            bank_branch: pick(&self.bank_branch, &base.bank_branch),
            account_number: pick(&self.account_number, &base.account_number),
            account_name: pick(&self.account_name, &base.account_name),
        }
    }
}

/// A party of a case. For applicants, the payee account confirmed at filing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Party {
    pub name: Text,
    pub payee_account: Text,
    pub payee_bank: Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Purpose {
    ToApplicant,
    RefundToRespondent,
    CourtFee,
    Lodgement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DisbursementStatus {
    Requested,
    Approved,
    Rejected,
    Cancelled,
    Paid,
    Failed,
    Returned,
}

impl DisbursementStatus {
    /// Whether the amount is still reserved on the case in this state.
    pub fn holds_reservation(self) -> bool {
        matches!(self, Self::Requested | Self::Approved)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
            Self::Paid => "PAID",
            Self::Failed => "FAILED",
            Self::Returned => "RETURNED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClosureMethod {
    Completed,
    TerminatedThisStage,
    Terminated,
    Withdrawn,
    NotEnforced,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccountStatus {
    Open,
    Closed,
}

/// The payee of a disbursement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Payee {
    pub name: Text,
    pub account: Text,
    pub bank: Text,
}

/// What one journal entry did. Each variant holds what `apply` needs, and what a
/// statement shows, without looking anything up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    SpecialAccountOpened {
        special_id: Uuid,
        serial: u32,
        court: CourtCode,
        bank: BankDetails,
        document_ref: Text,
    },
    SpecialAccountChanged {
        special_id: Uuid,
        change: BankChange,
        reason: Text,
        document_ref: Text,
        effective_at: Micros,
    },
    SpecialAccountClosed {
        special_id: Uuid,
        reason: Text,
        document_ref: Text,
    },
    CaseAccountOpened {
        case_id: Uuid,
        special_id: Uuid,
        case_number: CaseNumber,
        van: VirtualAccountNumber,
        target: Fen,
        applicants: Vec<Party>,
        respondents: Vec<Party>,
    },
    Receipt {
        case_id: Uuid,
        special_id: Uuid,
        case_number: CaseNumber,
        amount: Amount,
        payer_name: Text,
        payer_account: Text,
        bank_ref: BankRef,
        value_date: Date,
    },
    DisbursementRequested {
        disbursement_id: Uuid,
        case_id: Uuid,
        special_id: Uuid,
        case_number: CaseNumber,
        amount: Amount,
        payee: Payee,
        purpose: Purpose,
        memo: Text,
        exception_reason: Text,
    },
    /// Every later step of a disbursement: approval, rejection, cancellation, payment,
    /// failure, return. `to` names the step; the other fields hold what it brings.
    DisbursementMoved {
        disbursement_id: Uuid,
        case_id: Uuid,
        special_id: Uuid,
        case_number: CaseNumber,
        amount: Amount,
        to: DisbursementStatus,
        note: Text,
        bank_ref: Option<BankRef>,
        at: Option<Micros>,
    },
    Transfer {
        special_id: Uuid,
        from_case: Uuid,
        from_number: CaseNumber,
        to_case: Uuid,
        to_number: CaseNumber,
        amount: Amount,
        reason: Text,
        document_ref: Text,
    },
    Reversal {
        reversed_sequence: u64,
        special_id: Uuid,
        /// The cases the reversed entry touched, for their statements.
        cases: Vec<(Uuid, CaseNumber)>,
        reason: Text,
    },
    CaseAccountClosed {
        case_id: Uuid,
        special_id: Uuid,
        case_number: CaseNumber,
        method: ClosureMethod,
        reason: Text,
    },
    /// Money that matches no case (不明款), held in the special account's suspense.
    UnidentifiedReceiptRecorded {
        receipt_id: Uuid,
        special_id: Uuid,
        amount: Amount,
        payer_name: Text,
        payer_account: Text,
        bank_ref: BankRef,
        value_date: Date,
        memo: Text,
        /// The virtual account number or case number the payer gave, as given, when
        /// the receipt came through RecordReceipt and matched no open case.
        account_given: Text,
    },
    UnidentifiedReceiptAssigned {
        receipt_id: Uuid,
        special_id: Uuid,
        case_id: Uuid,
        case_number: CaseNumber,
        amount: Amount,
    },
    UnidentifiedReceiptReturned {
        receipt_id: Uuid,
        special_id: Uuid,
        amount: Amount,
        reason: Text,
        bank_ref: Option<BankRef>,
    },
    DeferralRecorded {
        deferral_id: Uuid,
        case_id: Uuid,
        special_id: Uuid,
        case_number: CaseNumber,
        reason: DeferralReason,
        approval_ref: Text,
        note: Text,
    },
    DeferralEnded {
        deferral_id: Uuid,
        case_id: Uuid,
        special_id: Uuid,
        case_number: CaseNumber,
    },
    /// A request under a new request id that the ledger had already recorded, found by
    /// its bank reference (a bank notification sent twice). It moves nothing; it is
    /// journaled so that the new request id is bound to the original entry for good,
    /// like any other, and cannot later name a different request.
    AlreadyRecorded {
        special_id: Uuid,
        original: u64,
    },
    /// A principal is registered. Only its token's hash is journaled.
    PrincipalAdded {
        principal_id: Uuid,
        name: Text,
        roles: Vec<Role>,
        courts: Vec<CourtCode>,
        supervises: Vec<CourtCode>,
        approval_level: u8,
        token_hash: [u8; 32],
        cert_sha256: Option<[u8; 32]>,
    },
    PrincipalDisabled {
        principal_id: Uuid,
        reason: Text,
    },
    PrincipalTokenRotated {
        principal_id: Uuid,
        token_hash: [u8; 32],
    },
    /// A deferral recorded by a case officer, awaiting an approver's decision: it holds
    /// back no limit until approved. (`DeferralRecorded`, journaled before approval
    /// moved into the service, is a deferral approved outside it when recorded.)
    DeferralRequested {
        deferral_id: Uuid,
        case_id: Uuid,
        special_id: Uuid,
        case_number: CaseNumber,
        reason: DeferralReason,
        approval_ref: Text,
        note: Text,
    },
    DeferralApproved {
        deferral_id: Uuid,
        case_id: Uuid,
        special_id: Uuid,
        case_number: CaseNumber,
    },
    DeferralRejected {
        deferral_id: Uuid,
        case_id: Uuid,
        special_id: Uuid,
        case_number: CaseNumber,
        reason: Text,
    },
}

/// Why money may be held past the limit (暂缓发放).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeferralReason {
    /// 参与分配: distribution among several creditors.
    Distribution,
    /// 冻结: frozen in another matter.
    Frozen,
    /// 申请人经通知未领取: the applicant was notified but does not collect.
    ApplicantNotCollecting,
    /// 中止执行: the case is suspended.
    Suspended,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnidentifiedStatus {
    InSuspense,
    Assigned,
    Returned,
}

/// One accepted change: the unit of the journal, of durability and of idempotency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub sequence: u64,
    pub request_id: RequestId,
    /// SHA-256 of the request's content, so a reused request id can be told apart.
    pub request_hash: [u8; 32],
    pub recorded_at: Micros,
    pub op: Op,
    pub postings: Vec<Posting>,
    /// The principal whose request made it; `None` in entries journaled before
    /// principals existed (format 1) and in the bootstrap administrator's own entry.
    pub principal: Option<Uuid>,
}

impl Entry {
    /// The cases whose statements list this entry, the first being the primary one.
    pub fn cases(&self) -> Vec<(Uuid, &CaseNumber)> {
        match &self.op {
            Op::SpecialAccountOpened { .. }
            | Op::SpecialAccountChanged { .. }
            | Op::SpecialAccountClosed { .. } => Vec::new(),
            Op::CaseAccountOpened {
                case_id,
                case_number,
                ..
            }
            | Op::Receipt {
                case_id,
                case_number,
                ..
            }
            | Op::DisbursementRequested {
                case_id,
                case_number,
                ..
            }
            | Op::DisbursementMoved {
                case_id,
                case_number,
                ..
            }
            | Op::CaseAccountClosed {
                case_id,
                case_number,
                ..
            }
            | Op::UnidentifiedReceiptAssigned {
                case_id,
                case_number,
                ..
            }
            | Op::DeferralRecorded {
                case_id,
                case_number,
                ..
            }
            | Op::DeferralEnded {
                case_id,
                case_number,
                ..
            }
            | Op::DeferralRequested {
                case_id,
                case_number,
                ..
            }
            | Op::DeferralApproved {
                case_id,
                case_number,
                ..
            }
            | Op::DeferralRejected {
                case_id,
                case_number,
                ..
            } => vec![(*case_id, case_number)],
            Op::UnidentifiedReceiptRecorded { .. }
            | Op::UnidentifiedReceiptReturned { .. }
            | Op::AlreadyRecorded { .. }
            | Op::PrincipalAdded { .. }
            | Op::PrincipalDisabled { .. }
            | Op::PrincipalTokenRotated { .. } => Vec::new(),
            Op::Transfer {
                from_case,
                from_number,
                to_case,
                to_number,
                ..
            } => vec![(*from_case, from_number), (*to_case, to_number)],
            Op::Reversal { cases, .. } => cases.iter().map(|(id, n)| (*id, n)).collect(),
        }
    }

    /// The entry a retry of this entry's request is answered with: its own, or for an
    /// [`Op::AlreadyRecorded`] the original.
    pub fn answer(&self) -> u64 {
        match self.op {
            Op::AlreadyRecorded { original, .. } => original,
            _ => self.sequence,
        }
    }

    /// The special account the entry belongs to.
    pub fn special_id(&self) -> Uuid {
        match &self.op {
            Op::SpecialAccountOpened { special_id, .. }
            | Op::SpecialAccountChanged { special_id, .. }
            | Op::SpecialAccountClosed { special_id, .. }
            | Op::CaseAccountOpened { special_id, .. }
            | Op::Receipt { special_id, .. }
            | Op::DisbursementRequested { special_id, .. }
            | Op::DisbursementMoved { special_id, .. }
            | Op::Transfer { special_id, .. }
            | Op::Reversal { special_id, .. }
            | Op::CaseAccountClosed { special_id, .. }
            | Op::UnidentifiedReceiptRecorded { special_id, .. }
            | Op::UnidentifiedReceiptAssigned { special_id, .. }
            | Op::UnidentifiedReceiptReturned { special_id, .. }
            | Op::DeferralRecorded { special_id, .. }
            | Op::DeferralEnded { special_id, .. }
            | Op::DeferralRequested { special_id, .. }
            | Op::DeferralApproved { special_id, .. }
            | Op::DeferralRejected { special_id, .. }
            | Op::AlreadyRecorded { special_id, .. } => *special_id,
            // Principals belong to no special account; the nil id matches no account.
            Op::PrincipalAdded { .. }
            | Op::PrincipalDisabled { .. }
            | Op::PrincipalTokenRotated { .. } => Uuid::nil(),
        }
    }
}

/// A special account as the journal has made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialAccountState {
    pub id: Uuid,
    /// Order of opening; the first digits of every virtual account number under it.
    pub serial: u32,
    pub court: CourtCode,
    pub status: AccountStatus,
    pub registrations: Vec<Registration>,
    pub bank_balance: Fen,
    pub suspense_balance: Fen,
    pub reserved: Fen,
    pub case_count: u64,
    /// The next case serial for virtual account numbers under this account.
    pub next_case_serial: u64,
}

/// The money of a special account after one entry: what an as-of read reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SpecialLine {
    pub bank_balance: Fen,
    pub suspense_balance: Fen,
    pub reserved: Fen,
    pub case_count: u64,
}

impl SpecialAccountState {
    pub fn line(&self) -> SpecialLine {
        SpecialLine {
            bank_balance: self.bank_balance,
            suspense_balance: self.suspense_balance,
            reserved: self.reserved,
            case_count: self.case_count,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistrationKind {
    Opened,
    Changed,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub sequence: u64,
    pub kind: RegistrationKind,
    /// The full bank fields in force once this registration takes effect.
    pub bank: BankDetails,
    pub reason: Text,
    pub document_ref: Text,
    pub effective_at: Micros,
    pub recorded_at: Micros,
    pub request_id: RequestId,
}

impl SpecialAccountState {
    /// The bank fields in force at `at`, counting registrations recorded up to
    /// `sequence` whose effective time has come: a registration takes effect at its
    /// effective time, and later registrations win over earlier ones.
    pub fn bank_at(&self, sequence: u64, at: Micros) -> Option<&BankDetails> {
        let mut current = None;
        let mut current_effective = Micros(i64::MIN);
        for r in self.registrations.iter().filter(|r| r.sequence <= sequence) {
            if r.effective_at <= at && r.effective_at >= current_effective {
                current = Some(&r.bank);
                current_effective = r.effective_at;
            }
        }
        current.or_else(|| self.registrations.first().map(|r| &r.bank))
    }

    /// The latest registered bank fields, whether or not in force yet.
    pub fn bank_latest(&self) -> Option<&BankDetails> {
        self.registrations.last().map(|r| &r.bank)
    }
}

/// A case account as the journal has made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseState {
    pub id: Uuid,
    pub special_id: Uuid,
    pub case_number: CaseNumber,
    pub van: VirtualAccountNumber,
    pub target: Fen,
    pub applicants: Vec<Party>,
    pub respondents: Vec<Party>,
    pub status: AccountStatus,
    pub closure: Option<ClosureMethod>,
    pub balances: Balances,
    pub opened_at: Micros,
    pub closed_at: Option<Micros>,
    /// The entry that closed it, so a view of the past knows whether it was closed yet.
    pub closed_sequence: Option<u64>,
    /// How long its money has waited, and why it may wait longer.
    pub clock: CaseClock,
}

/// What the limits on holding money are measured from (ARCHITECTURE.md, "Overdue").
/// Derived in `apply`, so replay reproduces it; kept per entry in the case's facts
/// lines so that reconciliation reads it as of any journal sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CaseClock {
    /// The day the balance last went from zero to positive; `None` while it is zero.
    pub held_since: Option<Date>,
    /// The last entry that moved money into or out of the case, and its day.
    pub last_movement: Option<(u64, Date)>,
    /// Payments the bank sent back: they are credited again, so `received` and
    /// `disbursed` both count them once more than a case-flow system does.
    pub returned: Fen,
    pub active_deferrals: u32,
    /// The day the most recent deferral ended.
    pub deferral_ended_on: Option<Date>,
}

/// What reconciliation needs of a case after one of its entries, kept under the case
/// number so that one range read answers for a case-flow row as of any entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseFacts {
    pub balances: Balances,
    pub clock: CaseClock,
    pub target: Fen,
    /// The closure, once the case account is closed, and the entry that closed it.
    pub closed: Option<(ClosureMethod, u64)>,
    /// The serials of its virtual account number (special account, case).
    pub van_serials: (u32, u64),
}

/// An unidentified receipt (不明款) and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnidentifiedReceiptState {
    pub id: Uuid,
    pub special_id: Uuid,
    pub amount: Amount,
    pub payer_name: Text,
    pub payer_account: Text,
    pub bank_ref: BankRef,
    pub value_date: Date,
    pub memo: Text,
    pub account_given: Text,
    pub status: UnidentifiedStatus,
    pub case_id: Option<Uuid>,
    pub case_number: Option<CaseNumber>,
    pub return_reason: Text,
    pub return_bank_ref: Option<BankRef>,
    pub recorded_at: Micros,
    pub recorded_sequence: u64,
    /// The entry that assigned or returned it.
    pub settled_sequence: Option<u64>,
    pub settled_at: Option<Micros>,
}

impl UnidentifiedReceiptState {
    /// Whether it was still in suspense after entry `sequence`.
    pub fn in_suspense_at(&self, sequence: u64) -> bool {
        self.recorded_sequence <= sequence && self.settled_sequence.is_none_or(|s| s > sequence)
    }
}

/// A deferral (暂缓发放) of a case's money. Recorded by a case officer, it holds the
/// limit back only once an approver has approved it and until it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferralState {
    pub id: Uuid,
    pub case_id: Uuid,
    pub special_id: Uuid,
    pub case_number: CaseNumber,
    pub reason: DeferralReason,
    pub approval_ref: Text,
    pub note: Text,
    pub recorded_on: Date,
    pub recorded_at: Micros,
    pub recorded_sequence: u64,
    /// Who recorded it; `None` in entries from before principals existed.
    pub recorded_by: Option<Uuid>,
    /// The approver's decision; `None` while it awaits one.
    pub decision: Option<DeferralDecision>,
    pub ended_on: Option<Date>,
    pub ended_at: Option<Micros>,
    pub ended_sequence: Option<u64>,
}

/// An approval or rejection of a deferral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferralDecision {
    pub approved: bool,
    /// The approver; `None` for a deferral journaled as approved when recorded
    /// (`Op::DeferralRecorded`), whose approval was given outside the service.
    pub by: Option<Uuid>,
    pub on: Date,
    pub at: Micros,
    pub sequence: u64,
    /// Why it was rejected; empty for an approval.
    pub reason: Text,
}

/// Where a deferral stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferralStatus {
    PendingApproval,
    /// Approved and not ended: the only status that holds the limit back.
    Active,
    Rejected,
    Ended,
}

impl DeferralState {
    /// Where it stood after entry `sequence` (`u64::MAX`: now).
    pub fn status_at(&self, sequence: u64) -> DeferralStatus {
        if self.ended_sequence.is_some_and(|s| s <= sequence) {
            return DeferralStatus::Ended;
        }
        match &self.decision {
            Some(d) if d.sequence <= sequence && d.approved => DeferralStatus::Active,
            Some(d) if d.sequence <= sequence => DeferralStatus::Rejected,
            _ => DeferralStatus::PendingApproval,
        }
    }

    pub fn status(&self) -> DeferralStatus {
        self.status_at(u64::MAX)
    }
}

/// Which kind of bank transaction a bank line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankLineKind {
    Receipt,
    UnidentifiedReceipt,
    Payment,
    ReturnedPayment,
    UnidentifiedReturned,
    /// Cancels the bank line of the entry it reverses, on that entry's day.
    Reversal {
        reversed: u64,
    },
}

/// One movement of a special account's bank balance as the ledger recorded it: what a
/// bank statement should show. `amount` is signed: positive is money in (credit on
/// the bank's statement), negative money out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankLine {
    pub kind: BankLineKind,
    pub bank_ref: Option<BankRef>,
    pub amount: Fen,
    pub date: Date,
    pub case_number: Option<CaseNumber>,
}

/// The money of one case. `balance` and `available` are derived so they cannot drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Balances {
    pub received: Fen,
    pub disbursed: Fen,
    pub reserved: Fen,
}

impl Balances {
    pub fn balance(&self) -> Fen {
        Fen(self.received.0 - self.disbursed.0)
    }

    pub fn available(&self) -> Fen {
        Fen(self.received.0 - self.disbursed.0 - self.reserved.0)
    }
}

/// A disbursement and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisbursementState {
    pub id: Uuid,
    pub case_id: Uuid,
    pub special_id: Uuid,
    pub case_number: CaseNumber,
    pub amount: Amount,
    pub payee: Payee,
    pub purpose: Purpose,
    pub memo: Text,
    pub exception_reason: Text,
    pub status: DisbursementStatus,
    pub approval_ref: Text,
    pub reason: Text,
    pub bank_ref: Option<BankRef>,
    pub paid_at: Option<Micros>,
    pub returned_bank_ref: Option<BankRef>,
    pub requested_at: Micros,
    /// The entry that brought it to its current status.
    pub sequence: u64,
    /// Who requested and who approved it, for the four-eyes rule.
    pub requested_by: Option<Uuid>,
    pub approved_by: Option<Uuid>,
}

/// What a request id was used for: its content hash and the entry it produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub hash: [u8; 32],
    pub sequence: u64,
}

/// Counters of the whole ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Meta {
    /// The sequence the next entry gets; entries are 1, 2, 3, … without gaps.
    pub next_sequence: u64,
    pub next_special_serial: u32,
    /// The journal clock never runs backwards, so time ↔ sequence is monotonic.
    pub last_recorded_at: Micros,
}
