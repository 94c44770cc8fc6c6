//! service CaseLedger, continued: unidentified receipts (不明款) and deferrals (暂缓发放).

use tonic::{Response, Status};
use uuid::Uuid;

use crate::domain::{text::len, DomainError, Entry, Op, PrincipalState, VirtualAccountNumber};
use crate::ledger::{Command, Fault, State, UnmatchedKey};

use super::cases::{Answer, CaseLedgerService};
use super::convert::{self as cv};
use super::{error, page_size, pb};

fn receipt_id_of(entry: &Entry) -> Result<Uuid, Status> {
    match &entry.op {
        Op::UnidentifiedReceiptRecorded { receipt_id, .. }
        | Op::UnidentifiedReceiptAssigned { receipt_id, .. }
        | Op::UnidentifiedReceiptReturned { receipt_id, .. } => Ok(*receipt_id),
        _ => Err(error::fault(Fault(format!(
            "entry {} is no unidentified receipt step",
            entry.sequence
        )))),
    }
}

fn deferral_id_of(entry: &Entry) -> Result<Uuid, Status> {
    match &entry.op {
        Op::DeferralRecorded { deferral_id, .. }
        | Op::DeferralRequested { deferral_id, .. }
        | Op::DeferralApproved { deferral_id, .. }
        | Op::DeferralRejected { deferral_id, .. }
        | Op::DeferralEnded { deferral_id, .. } => Ok(*deferral_id),
        _ => Err(error::fault(Fault(format!(
            "entry {} is no deferral step",
            entry.sequence
        )))),
    }
}

fn optional_bank_ref(field: &str, text: &str) -> Result<Option<crate::domain::BankRef>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    cv::bank_ref(field, text).map(Some)
}

impl CaseLedgerService {
    /// RecordReceipt with `to_suspense_if_unmatched`: an account that names no open
    /// case of the special account is not the client's mistake but the payer's, and
    /// the money is in the bank all the same, so it is recorded in suspense.
    pub(super) async fn receipt_or_suspense(
        &self,
        who: &PrincipalState,
        r: pb::RecordReceiptRequest,
    ) -> Answer<pb::Entry> {
        use pb::record_receipt_request::Account as A;
        let account = match r.account.as_ref() {
            Some(A::CaseNumber(n)) => UnmatchedKey::Number(cv::case_number("case_number", n)?),
            Some(A::VirtualAccountNumber(v)) if v.trim().is_empty() => {
                return Err(DomainError::invalid("virtual_account_number", "is empty").into())
            }
            Some(A::VirtualAccountNumber(v)) => match VirtualAccountNumber::parse(v) {
                Ok(van) => UnmatchedKey::Van(van),
                Err(_) => UnmatchedKey::Unreadable(cv::required(
                    "virtual_account_number",
                    v,
                    len::ACCOUNT,
                )?),
            },
            None => {
                return Err(DomainError::invalid(
                    "case_number",
                    "case_number or virtual_account_number is required",
                )
                .into())
            }
        };
        if r.special_account_id.is_empty() {
            return Err(DomainError::invalid(
                "special_account_id",
                "is required with to_suspense_if_unmatched: the special account the money arrived at",
            )
            .into());
        }
        let command = Command::RecordReceiptOrSuspense {
            special_id: cv::id("special_account_id", &r.special_account_id)?,
            account,
            amount: cv::amount("amount", &r.amount)?,
            payer_name: cv::required("payer_name", &r.payer_name, len::NAME)?,
            payer_account: cv::optional("payer_account", &r.payer_account, len::ACCOUNT)?,
            bank_ref: cv::bank_ref("bank_ref", &r.bank_ref)?,
            value_date: cv::date("value_date", &r.value_date)?,
        };
        self.submit_for_entry(who, &r.request_id, command)
            .await
            .map(Response::new)
    }

    async fn unidentified_step(
        &self,
        who: &PrincipalState,
        request_id: &str,
        command: Command,
    ) -> Answer<pb::UnidentifiedReceipt> {
        let entry = self.submit(who, request_id, command).await?;
        let id = receipt_id_of(&entry)?;
        let u =
            self.store.reads.unidentified(id)?.ok_or_else(|| {
                error::fault(Fault(format!("unidentified receipt {id} is missing")))
            })?;
        Ok(Response::new(cv::unidentified_at(&u, entry.sequence)))
    }

    pub(super) async fn record_unidentified(
        &self,
        who: &PrincipalState,
        r: pb::RecordUnidentifiedReceiptRequest,
    ) -> Answer<pb::UnidentifiedReceipt> {
        let command = Command::RecordUnidentifiedReceipt {
            special_id: cv::id("special_account_id", &r.special_account_id)?,
            amount: cv::amount("amount", &r.amount)?,
            payer_name: cv::required("payer_name", &r.payer_name, len::NAME)?,
            payer_account: cv::optional("payer_account", &r.payer_account, len::ACCOUNT)?,
            bank_ref: cv::bank_ref("bank_ref", &r.bank_ref)?,
            value_date: cv::date("value_date", &r.value_date)?,
            memo: cv::optional("memo", &r.memo, len::REASON)?,
        };
        self.unidentified_step(who, &r.request_id, command).await
    }

    pub(super) async fn assign_unidentified(
        &self,
        who: &PrincipalState,
        r: pb::AssignUnidentifiedReceiptRequest,
    ) -> Answer<pb::UnidentifiedReceipt> {
        let command = Command::AssignUnidentifiedReceipt {
            receipt_id: cv::id("unidentified_receipt_id", &r.unidentified_receipt_id)?,
            case_number: cv::case_number("case_number", &r.case_number)?,
        };
        self.unidentified_step(who, &r.request_id, command).await
    }

    pub(super) async fn return_unidentified(
        &self,
        who: &PrincipalState,
        r: pb::ReturnUnidentifiedReceiptRequest,
    ) -> Answer<pb::UnidentifiedReceipt> {
        let command = Command::ReturnUnidentifiedReceipt {
            receipt_id: cv::id("unidentified_receipt_id", &r.unidentified_receipt_id)?,
            reason: cv::required("reason", &r.reason, len::REASON)?,
            bank_ref: optional_bank_ref("bank_ref", &r.bank_ref)?,
        };
        self.unidentified_step(who, &r.request_id, command).await
    }

    pub(super) fn get_unidentified(
        &self,
        r: pb::GetUnidentifiedReceiptRequest,
    ) -> Answer<pb::UnidentifiedReceipt> {
        let id = cv::id("unidentified_receipt_id", &r.unidentified_receipt_id)?;
        let u = self
            .store
            .reads
            .unidentified(id)?
            .ok_or_else(|| DomainError::not_found(format!("unidentified receipt {id}")))?;
        Ok(Response::new(cv::unidentified(&u)))
    }

    pub(super) fn list_unidentified(
        &self,
        r: pb::ListUnidentifiedReceiptsRequest,
    ) -> Answer<pb::ListUnidentifiedReceiptsResponse> {
        let special_id = cv::id("special_account_id", &r.special_account_id)?;
        if self.store.reads.special(special_id)?.is_none() {
            return Err(DomainError::not_found(format!("special account {special_id}")).into());
        }
        let limit = page_size(r.page_size)?;
        let after = match r.page_token.as_str() {
            "" => None,
            t => Some(Uuid::try_parse(t).map_err(|_| {
                Status::invalid_argument("page_token: not a token this server issued")
            })?),
        };
        let (page, next) =
            self.store
                .reads
                .list_unidentified(special_id, after, limit, r.only_in_suspense)?;
        Ok(Response::new(pb::ListUnidentifiedReceiptsResponse {
            unidentified_receipts: page.iter().map(cv::unidentified).collect(),
            next_page_token: next.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn deferral_step(
        &self,
        who: &PrincipalState,
        request_id: &str,
        command: Command,
    ) -> Answer<pb::Deferral> {
        let entry = self.submit(who, request_id, command).await?;
        let id = deferral_id_of(&entry)?;
        let d = self
            .store
            .reads
            .deferral(id)?
            .ok_or_else(|| error::fault(Fault(format!("deferral {id} is missing"))))?;
        Ok(Response::new(cv::deferral_at(&d, entry.sequence)))
    }

    pub(super) async fn record_deferral_(
        &self,
        who: &PrincipalState,
        r: pb::RecordDeferralRequest,
    ) -> Answer<pb::Deferral> {
        let command = Command::RecordDeferral {
            case_number: cv::case_number("case_number", &r.case_number)?,
            reason: cv::deferral_reason(r.reason)?,
            approval_ref: cv::required("approval_ref", &r.approval_ref, len::REF)?,
            note: cv::optional("note", &r.note, len::REASON)?,
        };
        self.deferral_step(who, &r.request_id, command).await
    }

    pub(super) async fn end_deferral_(
        &self,
        who: &PrincipalState,
        r: pb::EndDeferralRequest,
    ) -> Answer<pb::Deferral> {
        let command = Command::EndDeferral {
            deferral_id: cv::id("deferral_id", &r.deferral_id)?,
        };
        self.deferral_step(who, &r.request_id, command).await
    }

    pub(super) async fn approve_deferral_(
        &self,
        who: &PrincipalState,
        r: pb::ApproveDeferralRequest,
    ) -> Answer<pb::Deferral> {
        let command = Command::ApproveDeferral {
            deferral_id: cv::id("deferral_id", &r.deferral_id)?,
        };
        self.deferral_step(who, &r.request_id, command).await
    }

    pub(super) async fn reject_deferral_(
        &self,
        who: &PrincipalState,
        r: pb::RejectDeferralRequest,
    ) -> Answer<pb::Deferral> {
        let command = Command::RejectDeferral {
            deferral_id: cv::id("deferral_id", &r.deferral_id)?,
            reason: cv::required("reason", &r.reason, len::REASON)?,
        };
        self.deferral_step(who, &r.request_id, command).await
    }

    pub(super) fn get_deferral_(&self, r: pb::GetDeferralRequest) -> Answer<pb::Deferral> {
        let id = cv::id("deferral_id", &r.deferral_id)?;
        let d = self
            .store
            .reads
            .deferral(id)?
            .ok_or_else(|| DomainError::not_found(format!("deferral {id}")))?;
        Ok(Response::new(cv::deferral_at(&d, u64::MAX)))
    }
}
