//! The state the posting rules read and write, as a narrow trait. The writer's
//! implementation reads sled through a per-batch overlay; [`super::MemState`] keeps it
//! in maps for tests and for replay checks. Both run the same `execute` and `apply`.

use uuid::Uuid;

use crate::domain::{
    BankLine, BankRef, CaseFacts, CaseNumber, CaseState, DeferralState, DisbursementState, Entry,
    Meta, PrincipalState, RequestId, RequestRecord, SpecialAccountState, SpecialLine, Text,
    UnidentifiedReceiptState, VirtualAccountNumber,
};

/// A failure of the storage underneath, not of the request: reported as UNAVAILABLE or
/// INTERNAL, never as the client's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage fault: {0}")]
pub struct Fault(pub String);

pub type Read<T> = Result<Option<T>, Fault>;

pub trait State {
    fn meta(&self) -> Result<Meta, Fault>;
    fn special(&self, id: Uuid) -> Read<SpecialAccountState>;
    fn case(&self, id: Uuid) -> Read<CaseState>;
    fn case_by_number(&self, number: &CaseNumber) -> Read<Uuid>;
    fn case_by_van(&self, van: &VirtualAccountNumber) -> Read<Uuid>;
    fn disbursement(&self, id: Uuid) -> Read<DisbursementState>;
    fn request(&self, id: &RequestId) -> Read<RequestRecord>;
    fn bank_ref(&self, special_id: Uuid, bank_ref: &BankRef) -> Read<u64>;
    fn entry(&self, sequence: u64) -> Read<Entry>;
    fn reversed_by(&self, sequence: u64) -> Read<u64>;
    fn unidentified(&self, id: Uuid) -> Read<UnidentifiedReceiptState>;
    fn deferral(&self, id: Uuid) -> Read<DeferralState>;
    fn principal(&self, id: Uuid) -> Read<PrincipalState>;
    fn principal_by_name(&self, name: &Text) -> Read<Uuid>;
    /// Every principal, in id order. Principals are few (an administrator adds each),
    /// so the rules that must look at all of them (the last national administrator, a
    /// certificate already registered) scan rather than keep another index.
    fn all_principals(&self) -> Result<Vec<PrincipalState>, Fault>;
}

/// Writes are infallible here: an implementation buffers them and reports a fault when
/// it commits the batch.
pub trait StateMut: State {
    fn put_meta(&mut self, meta: Meta);
    fn put_special(&mut self, special: SpecialAccountState);
    fn put_case(&mut self, case: CaseState);
    fn put_case_number(&mut self, number: CaseNumber, case_id: Uuid);
    fn put_van(&mut self, van: VirtualAccountNumber, case_id: Uuid);
    fn put_disbursement(&mut self, disbursement: DisbursementState);
    fn put_request(&mut self, id: RequestId, record: RequestRecord);
    fn put_bank_ref(&mut self, special_id: Uuid, bank_ref: BankRef, sequence: u64);
    fn put_entry(&mut self, entry: &Entry);
    fn put_reversed_by(&mut self, sequence: u64, by: u64);
    /// A special account's money after entry `sequence`, for reads of the past.
    fn put_special_line(&mut self, special_id: Uuid, sequence: u64, line: SpecialLine);
    fn put_unidentified(&mut self, receipt: UnidentifiedReceiptState);
    fn put_deferral(&mut self, deferral: DeferralState);
    /// What a case was after entry `sequence`, under its case number: a line of its
    /// statement (its balances) and what reconciliation needs of it.
    fn put_case_facts(&mut self, case_number: &CaseNumber, sequence: u64, facts: CaseFacts);
    /// A movement of a special account's bank balance, made by entry `sequence`.
    fn put_bank_line(&mut self, special_id: Uuid, sequence: u64, line: BankLine);
    /// A principal, with its name in the name index.
    fn put_principal(&mut self, principal: PrincipalState);
}
