//! service CaseLedger: case accounts, receipts, disbursements, transfers, reversals and
//! statements.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{text::len, DomainError, Entry, Op, Payee, PrincipalState};
use crate::ledger::{self, CaseKey, Command, Fault, State};
use crate::store::StoreHandle;

use super::convert::{self as cv};
use super::pb::{self, case_ledger_server::CaseLedger};
use super::{authz, error, page_size, resolve_as_of};

pub struct CaseLedgerService {
    pub store: StoreHandle,
}

pub(super) type Answer<T> = Result<Response<T>, Status>;

impl CaseLedgerService {
    pub(super) async fn submit(
        &self,
        who: &PrincipalState,
        request_id: &str,
        command: Command,
    ) -> Result<Entry, Status> {
        // Callers read what the entry left (a case account, a disbursement): they wait
        // until the state has it.
        let request = Self::request(who, request_id, command)?;
        let written = self.store.write(request).await.map_err(error::write)?;
        match written.fresh {
            Some(fresh) => Ok(fresh.entry),
            None => self.entry(written.sequence),
        }
    }

    /// Submits a request and answers with its entry as its case's statement shows it.
    pub(super) async fn submit_for_entry(
        &self,
        who: &PrincipalState,
        request_id: &str,
        command: Command,
    ) -> Result<pb::Entry, Status> {
        // Answered from what the writer had at hand, so it needs no wait for the state.
        let request = Self::request(who, request_id, command)?;
        let written = (self.store.write_durable(request).await).map_err(error::write)?;
        match written.fresh {
            // What the writer had at hand is what a read as of the entry would find.
            Some(fresh) => {
                let case = fresh.entry.cases().first().map(|(_, number)| *number);
                let line = case.zip(fresh.case_balances);
                Ok(cv::entry(&fresh.entry, line))
            }
            None => self.entry_answer(&self.entry(written.sequence)?),
        }
    }

    fn request(
        who: &PrincipalState,
        request_id: &str,
        command: Command,
    ) -> Result<ledger::Request, Status> {
        Ok(ledger::Request {
            id: cv::request_id(request_id)?,
            command,
            principal: Some(who.id),
        })
    }

    fn entry(&self, sequence: u64) -> Result<Entry, Status> {
        self.store
            .reads
            .entry(sequence)?
            .ok_or_else(|| error::fault(Fault(format!("acknowledged entry {sequence} is missing"))))
    }

    fn case_id(&self, key: &CaseKey) -> Result<Uuid, Status> {
        let reads = &self.store.reads;
        let (id, what) = match key {
            CaseKey::Number(n) => (
                reads.case_by_number(n)?,
                format!("case account for case number {n}"),
            ),
            CaseKey::Van(v) => (
                reads.case_by_van(v)?,
                format!("case account with virtual account number {v}"),
            ),
        };
        id.ok_or_else(|| DomainError::not_found(what).into())
    }

    /// A case account as it stood at `sequence`.
    fn case_at(&self, id: Uuid, sequence: u64) -> Result<pb::CaseAccount, Status> {
        let reads = &self.store.reads;
        let case = reads
            .case(id)?
            .ok_or_else(|| error::fault(Fault(format!("case index names missing case {id}"))))?;
        let facts = reads
            .case_facts_at(&case.case_number, sequence)?
            .ok_or_else(|| {
                DomainError::not_found(format!(
                    "case account {} at entry {sequence}",
                    case.case_number
                ))
            })?;
        Ok(cv::case_account(
            &case,
            &facts.balances,
            facts.clock.returned,
            sequence,
        ))
    }

    /// An entry as its primary case's statement shows it.
    pub(super) fn entry_answer(&self, entry: &Entry) -> Result<pb::Entry, Status> {
        let cases = entry.cases();
        let Some((_, number)) = cases.first() else {
            return Ok(cv::entry(entry, None));
        };
        let balances = self.store.reads.case_balances_at(number, entry.sequence)?;
        Ok(cv::entry(entry, balances.map(|b| (*number, b))))
    }

    /// The disbursement as the entry left it, even if it has moved on since (a retried
    /// request gets its original answer).
    fn disbursement_answer(&self, entry: &Entry) -> Answer<pb::Disbursement> {
        let id = match &entry.op {
            Op::DisbursementRequested {
                disbursement_id, ..
            }
            | Op::DisbursementMoved {
                disbursement_id, ..
            } => *disbursement_id,
            _ => {
                return Err(error::fault(Fault(format!(
                    "entry {} is no disbursement step",
                    entry.sequence
                ))))
            }
        };
        let mut d = self
            .store
            .reads
            .disbursement(id)?
            .ok_or_else(|| error::fault(Fault(format!("disbursement {id} is missing"))))?;
        if d.sequence != entry.sequence {
            as_of_step(&mut d, entry);
        }
        Ok(Response::new(cv::disbursement(&d)))
    }

    async fn disbursement_step(
        &self,
        who: &PrincipalState,
        request_id: &str,
        command: Command,
    ) -> Answer<pb::Disbursement> {
        let entry = self.submit(who, request_id, command).await?;
        self.disbursement_answer(&entry)
    }
}

/// Winds a disbursement that has moved on back to how `entry` left it: the fields later
/// steps set are cleared, and the entry's own are put back.
fn as_of_step(d: &mut crate::domain::DisbursementState, entry: &Entry) {
    use crate::domain::DisbursementStatus as S;
    let (to, note, bank_ref, at) = match &entry.op {
        Op::DisbursementMoved {
            to,
            note,
            bank_ref,
            at,
            ..
        } => (*to, note.clone(), bank_ref.clone(), *at),
        _ => (S::Requested, Default::default(), None, None),
    };
    d.status = to;
    d.sequence = entry.sequence;
    d.returned_bank_ref = None;
    if to != S::Paid {
        d.bank_ref = None;
        d.paid_at = None;
    }
    match to {
        S::Requested => {
            d.approval_ref = Default::default();
            d.reason = Default::default();
        }
        S::Approved => {
            d.approval_ref = note;
            d.reason = Default::default();
        }
        S::Paid => {
            d.bank_ref = bank_ref;
            d.paid_at = at;
            d.reason = Default::default();
        }
        S::Rejected | S::Cancelled | S::Failed | S::Returned => d.reason = note,
    }
}

#[tonic::async_trait]
impl CaseLedger for CaseLedgerService {
    async fn open_case_account(
        &self,
        request: Request<pb::OpenCaseAccountRequest>,
    ) -> Answer<pb::CaseAccount> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let command = Command::OpenCaseAccount {
            special_id: cv::id("special_account_id", &r.special_account_id)?,
            case_number: cv::case_number("case_number", &r.case_number)?,
            target: cv::amount_or_zero("target_amount", &r.target_amount)?,
            applicants: cv::parties("applicants", &r.applicants, true)?,
            respondents: cv::parties("respondents", &r.respondents, false)?,
        };
        let entry = self.submit(&who, &r.request_id, command).await?;
        let Op::CaseAccountOpened { case_id, .. } = entry.op else {
            return Err(error::fault(Fault(format!(
                "entry {} opened no case account",
                entry.sequence
            ))));
        };
        self.case_at(case_id, entry.sequence).map(Response::new)
    }

    async fn get_case_account(
        &self,
        request: Request<pb::GetCaseAccountRequest>,
    ) -> Answer<pb::CaseAccount> {
        use pb::get_case_account_request::Account as A;
        let (_, r) = authz::authorize(request, &self.store.reads)?;
        let key = match &r.account {
            Some(A::CaseNumber(n)) => CaseKey::Number(cv::case_number("case_number", n)?),
            Some(A::VirtualAccountNumber(v)) => CaseKey::Van(cv::van("virtual_account_number", v)?),
            None => {
                return Err(DomainError::invalid(
                    "case_number",
                    "case_number or virtual_account_number is required",
                )
                .into())
            }
        };
        let id = self.case_id(&key)?;
        let (sequence, _) = resolve_as_of(&self.store.reads, r.as_of.as_ref())?;
        self.case_at(id, sequence).map(Response::new)
    }

    async fn record_receipt(
        &self,
        request: Request<pb::RecordReceiptRequest>,
    ) -> Answer<pb::Entry> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        if r.to_suspense_if_unmatched {
            return self.receipt_or_suspense(&who, r).await;
        }
        // One validation for RecordReceipt and every item of RecordReceipts.
        let command = super::receipts::command(&r)?;
        self.submit_for_entry(&who, &r.request_id, command)
            .await
            .map(Response::new)
    }

    async fn record_receipts(
        &self,
        request: Request<pb::RecordReceiptsRequest>,
    ) -> Answer<pb::RecordReceiptsResponse> {
        let caller = authz::caller(&request)?;
        super::receipts::record_receipts(&self.store, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn request_disbursement(
        &self,
        request: Request<pb::RequestDisbursementRequest>,
    ) -> Answer<pb::Disbursement> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let command = Command::RequestDisbursement {
            case_number: cv::case_number("case_number", &r.case_number)?,
            amount: cv::amount("amount", &r.amount)?,
            payee: Payee {
                name: cv::required("payee_name", &r.payee_name, len::NAME)?,
                account: cv::required("payee_account", &r.payee_account, len::ACCOUNT)?,
                bank: cv::optional("payee_bank", &r.payee_bank, len::NAME)?,
            },
            purpose: cv::purpose(r.purpose)?,
            memo: cv::optional("memo", &r.memo, len::REASON)?,
            exception_reason: cv::optional("exception_reason", &r.exception_reason, len::REASON)?,
        };
        self.disbursement_step(&who, &r.request_id, command).await
    }

    async fn approve_disbursement(
        &self,
        request: Request<pb::ApproveDisbursementRequest>,
    ) -> Answer<pb::Disbursement> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let command = Command::ApproveDisbursement {
            disbursement_id: cv::id("disbursement_id", &r.disbursement_id)?,
            approval_ref: cv::required("approval_ref", &r.approval_ref, len::REF)?,
        };
        self.disbursement_step(&who, &r.request_id, command).await
    }

    async fn reject_disbursement(
        &self,
        request: Request<pb::RejectDisbursementRequest>,
    ) -> Answer<pb::Disbursement> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let command = Command::RejectDisbursement {
            disbursement_id: cv::id("disbursement_id", &r.disbursement_id)?,
            reason: cv::required("reason", &r.reason, len::REASON)?,
        };
        self.disbursement_step(&who, &r.request_id, command).await
    }

    async fn cancel_disbursement(
        &self,
        request: Request<pb::CancelDisbursementRequest>,
    ) -> Answer<pb::Disbursement> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let command = Command::CancelDisbursement {
            disbursement_id: cv::id("disbursement_id", &r.disbursement_id)?,
            reason: cv::required("reason", &r.reason, len::REASON)?,
        };
        self.disbursement_step(&who, &r.request_id, command).await
    }

    async fn confirm_disbursement_paid(
        &self,
        request: Request<pb::ConfirmDisbursementPaidRequest>,
    ) -> Answer<pb::Disbursement> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let command = Command::ConfirmDisbursementPaid {
            disbursement_id: cv::id("disbursement_id", &r.disbursement_id)?,
            bank_ref: cv::bank_ref("bank_ref", &r.bank_ref)?,
            paid_at: cv::optional_time("paid_at", r.paid_at.as_ref())?,
        };
        self.disbursement_step(&who, &r.request_id, command).await
    }

    async fn fail_disbursement(
        &self,
        request: Request<pb::FailDisbursementRequest>,
    ) -> Answer<pb::Disbursement> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let command = Command::FailDisbursement {
            disbursement_id: cv::id("disbursement_id", &r.disbursement_id)?,
            reason: cv::required("reason", &r.reason, len::REASON)?,
        };
        self.disbursement_step(&who, &r.request_id, command).await
    }

    async fn record_returned_payment(
        &self,
        request: Request<pb::RecordReturnedPaymentRequest>,
    ) -> Answer<pb::Disbursement> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let command = Command::RecordReturnedPayment {
            disbursement_id: cv::id("disbursement_id", &r.disbursement_id)?,
            bank_ref: cv::bank_ref("bank_ref", &r.bank_ref)?,
            reason: cv::required("reason", &r.reason, len::REASON)?,
        };
        self.disbursement_step(&who, &r.request_id, command).await
    }

    async fn get_disbursement(
        &self,
        request: Request<pb::GetDisbursementRequest>,
    ) -> Answer<pb::Disbursement> {
        authz::check(&request, &self.store.reads)?;
        let id = cv::id("disbursement_id", &request.get_ref().disbursement_id)?;
        let d = self
            .store
            .reads
            .disbursement(id)?
            .ok_or_else(|| DomainError::not_found(format!("disbursement {id}")))?;
        Ok(Response::new(cv::disbursement(&d)))
    }

    async fn transfer_between_cases(
        &self,
        request: Request<pb::TransferBetweenCasesRequest>,
    ) -> Answer<pb::Entry> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let command = Command::TransferBetweenCases {
            from: cv::case_number("from_case_number", &r.from_case_number)?,
            to: cv::case_number("to_case_number", &r.to_case_number)?,
            amount: cv::amount("amount", &r.amount)?,
            reason: cv::required("reason", &r.reason, len::REASON)?,
            document_ref: cv::optional("document_ref", &r.document_ref, len::REF)?,
        };
        self.submit_for_entry(&who, &r.request_id, command)
            .await
            .map(Response::new)
    }

    async fn reverse_entry(&self, request: Request<pb::ReverseEntryRequest>) -> Answer<pb::Entry> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        if r.sequence == 0 {
            return Err(
                DomainError::invalid("sequence", "is required: the entry to reverse").into(),
            );
        }
        let command = Command::ReverseEntry {
            sequence: r.sequence,
            reason: cv::required("reason", &r.reason, len::REASON)?,
        };
        self.submit_for_entry(&who, &r.request_id, command)
            .await
            .map(Response::new)
    }

    async fn close_case_account(
        &self,
        request: Request<pb::CloseCaseAccountRequest>,
    ) -> Answer<pb::CaseAccount> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let command = Command::CloseCaseAccount {
            case_number: cv::case_number("case_number", &r.case_number)?,
            method: cv::closure_method(r.closure_method)?,
            reason: cv::required("reason", &r.reason, len::REASON)?,
        };
        let entry = self.submit(&who, &r.request_id, command).await?;
        let Op::CaseAccountClosed { case_id, .. } = entry.op else {
            return Err(error::fault(Fault(format!(
                "entry {} closed no case account",
                entry.sequence
            ))));
        };
        self.case_at(case_id, entry.sequence).map(Response::new)
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Answer<pb::ListEntriesResponse> {
        let (_, r) = authz::authorize(request, &self.store.reads)?;
        let number = cv::case_number("case_number", &r.case_number)?;
        // A case that does not exist is NOT_FOUND, not an empty statement.
        self.case_id(&CaseKey::Number(number.clone()))?;
        let limit = page_size(r.page_size)?;
        let after = match r.page_token.as_str() {
            "" => 0,
            t => t.parse::<u64>().map_err(|_| {
                Status::invalid_argument("page_token: not a token this server issued")
            })?,
        };
        let (until, _) = resolve_as_of(&self.store.reads, r.as_of.as_ref())?;
        let lines = self.store.reads.case_lines(&number, after, until, limit)?;
        let mut entries = Vec::with_capacity(lines.len());
        for (seq, balances) in &lines {
            let entry = self.entry(*seq)?;
            entries.push(cv::entry(&entry, Some((&number, *balances))));
        }
        let next_page_token = match lines.last() {
            Some((seq, _)) if lines.len() == limit => seq.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListEntriesResponse {
            entries,
            next_page_token,
        }))
    }

    async fn record_unidentified_receipt(
        &self,
        request: Request<pb::RecordUnidentifiedReceiptRequest>,
    ) -> Answer<pb::UnidentifiedReceipt> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        self.record_unidentified(&who, r).await
    }

    async fn assign_unidentified_receipt(
        &self,
        request: Request<pb::AssignUnidentifiedReceiptRequest>,
    ) -> Answer<pb::UnidentifiedReceipt> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        self.assign_unidentified(&who, r).await
    }

    async fn return_unidentified_receipt(
        &self,
        request: Request<pb::ReturnUnidentifiedReceiptRequest>,
    ) -> Answer<pb::UnidentifiedReceipt> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        self.return_unidentified(&who, r).await
    }

    async fn get_unidentified_receipt(
        &self,
        request: Request<pb::GetUnidentifiedReceiptRequest>,
    ) -> Answer<pb::UnidentifiedReceipt> {
        authz::check(&request, &self.store.reads)?;
        self.get_unidentified(request.into_inner())
    }

    async fn list_unidentified_receipts(
        &self,
        request: Request<pb::ListUnidentifiedReceiptsRequest>,
    ) -> Answer<pb::ListUnidentifiedReceiptsResponse> {
        authz::check(&request, &self.store.reads)?;
        self.list_unidentified(request.into_inner())
    }

    async fn record_deferral(
        &self,
        request: Request<pb::RecordDeferralRequest>,
    ) -> Answer<pb::Deferral> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        self.record_deferral_(&who, r).await
    }

    async fn end_deferral(&self, request: Request<pb::EndDeferralRequest>) -> Answer<pb::Deferral> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        self.end_deferral_(&who, r).await
    }

    async fn get_deferral(&self, request: Request<pb::GetDeferralRequest>) -> Answer<pb::Deferral> {
        authz::check(&request, &self.store.reads)?;
        self.get_deferral_(request.into_inner())
    }

    async fn approve_deferral(
        &self,
        request: Request<pb::ApproveDeferralRequest>,
    ) -> Answer<pb::Deferral> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        self.approve_deferral_(&who, r).await
    }

    async fn reject_deferral(
        &self,
        request: Request<pb::RejectDeferralRequest>,
    ) -> Answer<pb::Deferral> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        self.reject_deferral_(&who, r).await
    }
}
