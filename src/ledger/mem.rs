//! The state in plain maps: the reference model for property tests and replay checks.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::domain::{
    BankLine, BankRef, CaseFacts, CaseNumber, CaseState, DeferralState, DisbursementState, Entry,
    Meta, PrincipalState, RequestId, RequestRecord, SpecialAccountState, SpecialLine, Text,
    UnidentifiedReceiptState, VirtualAccountNumber,
};

use super::state::{Fault, Read, State, StateMut};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemState {
    pub meta: Meta,
    pub specials: BTreeMap<Uuid, SpecialAccountState>,
    pub cases: BTreeMap<Uuid, CaseState>,
    pub case_numbers: HashMap<CaseNumber, Uuid>,
    pub vans: HashMap<VirtualAccountNumber, Uuid>,
    pub disbursements: BTreeMap<Uuid, DisbursementState>,
    pub requests: HashMap<RequestId, RequestRecord>,
    pub bank_refs: HashMap<(Uuid, BankRef), u64>,
    pub entries: BTreeMap<u64, Entry>,
    pub reversed_by: HashMap<u64, u64>,
    pub special_lines: BTreeMap<(Uuid, u64), SpecialLine>,
    pub unidentified: BTreeMap<Uuid, UnidentifiedReceiptState>,
    pub deferrals: BTreeMap<Uuid, DeferralState>,
    pub case_facts: BTreeMap<(CaseNumber, u64), CaseFacts>,
    pub bank_lines: BTreeMap<(Uuid, u64), BankLine>,
    pub principals: BTreeMap<Uuid, PrincipalState>,
    pub principal_names: HashMap<Text, Uuid>,
}

impl MemState {
    /// Replays entries from the start into a fresh state.
    pub fn replay<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<MemState, Fault> {
        let mut state = MemState::default();
        for entry in entries {
            super::apply(&mut state, entry)?;
        }
        Ok(state)
    }
}

impl State for MemState {
    fn meta(&self) -> Result<Meta, Fault> {
        Ok(self.meta)
    }
    fn special(&self, id: Uuid) -> Read<SpecialAccountState> {
        Ok(self.specials.get(&id).cloned())
    }
    fn case(&self, id: Uuid) -> Read<CaseState> {
        Ok(self.cases.get(&id).cloned())
    }
    fn case_by_number(&self, number: &CaseNumber) -> Read<Uuid> {
        Ok(self.case_numbers.get(number).copied())
    }
    fn case_by_van(&self, van: &VirtualAccountNumber) -> Read<Uuid> {
        Ok(self.vans.get(van).copied())
    }
    fn disbursement(&self, id: Uuid) -> Read<DisbursementState> {
        Ok(self.disbursements.get(&id).cloned())
    }
    fn request(&self, id: &RequestId) -> Read<RequestRecord> {
        Ok(self.requests.get(id).copied())
    }
    fn bank_ref(&self, special_id: Uuid, bank_ref: &BankRef) -> Read<u64> {
        Ok(self.bank_refs.get(&(special_id, bank_ref.clone())).copied())
    }
    fn entry(&self, sequence: u64) -> Read<Entry> {
        Ok(self.entries.get(&sequence).cloned())
    }
    fn reversed_by(&self, sequence: u64) -> Read<u64> {
        Ok(self.reversed_by.get(&sequence).copied())
    }
    fn unidentified(&self, id: Uuid) -> Read<UnidentifiedReceiptState> {
        Ok(self.unidentified.get(&id).cloned())
    }
    fn deferral(&self, id: Uuid) -> Read<DeferralState> {
        Ok(self.deferrals.get(&id).cloned())
    }
    fn principal(&self, id: Uuid) -> Read<PrincipalState> {
        Ok(self.principals.get(&id).cloned())
    }
    fn principal_by_name(&self, name: &Text) -> Read<Uuid> {
        Ok(self.principal_names.get(name).copied())
    }
    fn all_principals(&self) -> Result<Vec<PrincipalState>, Fault> {
        Ok(self.principals.values().cloned().collect())
    }
}

impl StateMut for MemState {
    fn put_meta(&mut self, meta: Meta) {
        self.meta = meta;
    }
    fn put_special(&mut self, special: SpecialAccountState) {
        self.specials.insert(special.id, special);
    }
    fn put_case(&mut self, case: CaseState) {
        self.cases.insert(case.id, case);
    }
    fn put_case_number(&mut self, number: CaseNumber, case_id: Uuid) {
        self.case_numbers.insert(number, case_id);
    }
    fn put_van(&mut self, van: VirtualAccountNumber, case_id: Uuid) {
        self.vans.insert(van, case_id);
    }
    fn put_disbursement(&mut self, disbursement: DisbursementState) {
        self.disbursements.insert(disbursement.id, disbursement);
    }
    fn put_request(&mut self, id: RequestId, record: RequestRecord) {
        self.requests.insert(id, record);
    }
    fn put_bank_ref(&mut self, special_id: Uuid, bank_ref: BankRef, sequence: u64) {
        self.bank_refs.insert((special_id, bank_ref), sequence);
    }
    fn put_entry(&mut self, entry: &Entry) {
        self.entries.insert(entry.sequence, entry.clone());
    }
    fn put_reversed_by(&mut self, sequence: u64, by: u64) {
        self.reversed_by.insert(sequence, by);
    }
    fn put_special_line(&mut self, special_id: Uuid, sequence: u64, line: SpecialLine) {
        self.special_lines.insert((special_id, sequence), line);
    }
    fn put_unidentified(&mut self, receipt: UnidentifiedReceiptState) {
        self.unidentified.insert(receipt.id, receipt);
    }
    fn put_deferral(&mut self, deferral: DeferralState) {
        self.deferrals.insert(deferral.id, deferral);
    }
    fn put_case_facts(&mut self, case_number: &CaseNumber, sequence: u64, facts: CaseFacts) {
        self.case_facts
            .insert((case_number.clone(), sequence), facts);
    }
    fn put_bank_line(&mut self, special_id: Uuid, sequence: u64, line: BankLine) {
        self.bank_lines.insert((special_id, sequence), line);
    }
    fn put_principal(&mut self, principal: PrincipalState) {
        self.principal_names
            .insert(principal.name.clone(), principal.id);
        self.principals.insert(principal.id, principal);
    }
}
