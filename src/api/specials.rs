//! service SpecialAccounts: opening, change registration, closing and reading.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{text::len, BankChange, BankDetails, DomainError, Micros, PrincipalState};
use crate::ledger::{self, Command, State};
use crate::store::StoreHandle;

use super::convert::{self as cv};
use super::pb::{self, special_accounts_server::SpecialAccounts};
use super::{authz, error, page_size, resolve_as_of};

pub struct SpecialAccountsService {
    pub store: StoreHandle,
}

impl SpecialAccountsService {
    async fn submit(
        &self,
        who: &PrincipalState,
        request_id: &str,
        command: Command,
    ) -> Result<u64, Status> {
        let request = ledger::Request {
            id: cv::request_id(request_id)?,
            command,
            principal: Some(who.id),
        };
        let outcome = self.store.write(request).await.map_err(error::write)?;
        Ok(outcome.sequence)
    }

    fn read(&self, id: Uuid, sequence: u64, at: Micros) -> Result<pb::SpecialAccount, Status> {
        let special = self
            .store
            .reads
            .special(id)?
            .filter(|s| {
                s.registrations
                    .first()
                    .is_some_and(|r| r.sequence <= sequence)
            })
            .ok_or_else(|| DomainError::not_found(format!("special account {id}")))?;
        let line = self
            .store
            .reads
            .special_line_at(id, sequence)?
            .unwrap_or_default();
        Ok(cv::special_account(&special, &line, sequence, at))
    }

    /// The account right after the entry a write produced (or found).
    async fn answer(
        &self,
        id: Uuid,
        sequence: u64,
    ) -> Result<Response<pb::SpecialAccount>, Status> {
        self.read(id, sequence, super::now()).map(Response::new)
    }
}

fn bank_field(field: &str, value: &Option<String>) -> Result<Option<crate::domain::Text>, Status> {
    value
        .as_deref()
        .map(|v| cv::required(field, v, len::NAME))
        .transpose()
}

#[tonic::async_trait]
impl SpecialAccounts for SpecialAccountsService {
    async fn open_special_account(
        &self,
        request: Request<pb::OpenSpecialAccountRequest>,
    ) -> Result<Response<pb::SpecialAccount>, Status> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let command = Command::OpenSpecialAccount {
            court: cv::court_code("court_code", &r.court_code)?,
            bank: BankDetails {
                bank_name: cv::required("bank_name", &r.bank_name, len::NAME)?,
                bank_branch: cv::optional("bank_branch", &r.bank_branch, len::NAME)?,
                account_number: cv::required("account_number", &r.account_number, len::ACCOUNT)?,
                account_name: cv::required("account_name", &r.account_name, len::NAME)?,
            },
            document_ref: cv::required("document_ref", &r.document_ref, len::REF)?,
        };
        let sequence = self.submit(&who, &r.request_id, command).await?;
        let id = match self.store.reads.entry(sequence)?.map(|e| e.op) {
            Some(crate::domain::Op::SpecialAccountOpened { special_id, .. }) => special_id,
            _ => {
                return Err(error::fault(ledger::Fault(format!(
                    "entry {sequence} opened no special account"
                ))))
            }
        };
        self.answer(id, sequence).await
    }

    async fn register_account_change(
        &self,
        request: Request<pb::RegisterAccountChangeRequest>,
    ) -> Result<Response<pb::SpecialAccount>, Status> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let id = cv::id("special_account_id", &r.special_account_id)?;
        let change = BankChange {
            bank_name: bank_field("bank_name", &r.bank_name)?,
            bank_branch: bank_field("bank_branch", &r.bank_branch)?,
            account_number: r
                .account_number
                .as_deref()
                .map(|v| cv::required("account_number", v, len::ACCOUNT))
                .transpose()?,
            account_name: bank_field("account_name", &r.account_name)?,
        };
        if change == BankChange::default() {
            return Err(DomainError::invalid(
                "bank_name",
                "a change registration names at least one of bank_name, bank_branch, account_number, account_name",
            )
            .into());
        }
        let command = Command::RegisterAccountChange {
            special_id: id,
            change,
            reason: cv::required("reason", &r.reason, len::REASON)?,
            document_ref: cv::required("document_ref", &r.document_ref, len::REF)?,
            effective_at: cv::optional_time("effective_at", r.effective_at.as_ref())?,
        };
        let sequence = self.submit(&who, &r.request_id, command).await?;
        self.answer(id, sequence).await
    }

    async fn close_special_account(
        &self,
        request: Request<pb::CloseSpecialAccountRequest>,
    ) -> Result<Response<pb::SpecialAccount>, Status> {
        let (who, r) = authz::authorize(request, &self.store.reads)?;
        let id = cv::id("special_account_id", &r.special_account_id)?;
        let command = Command::CloseSpecialAccount {
            special_id: id,
            reason: cv::required("reason", &r.reason, len::REASON)?,
            document_ref: cv::required("document_ref", &r.document_ref, len::REF)?,
        };
        let sequence = self.submit(&who, &r.request_id, command).await?;
        self.answer(id, sequence).await
    }

    async fn get_special_account(
        &self,
        request: Request<pb::GetSpecialAccountRequest>,
    ) -> Result<Response<pb::SpecialAccount>, Status> {
        let (_, r) = authz::authorize(request, &self.store.reads)?;
        let id = cv::id("special_account_id", &r.special_account_id)?;
        let (sequence, at) = match &r.as_of {
            // A bare Timestamp here, not an AsOf: an error names this request's field.
            Some(ts) => {
                let at = cv::time("as_of", ts)?;
                (self.store.reads.sequence_at(at)?, at)
            }
            None => resolve_as_of(&self.store.reads, None)?,
        };
        self.read(id, sequence, at).map(Response::new)
    }

    async fn list_special_accounts(
        &self,
        request: Request<pb::ListSpecialAccountsRequest>,
    ) -> Result<Response<pb::ListSpecialAccountsResponse>, Status> {
        authz::check(&request, &self.store.reads)?;
        let caller = authz::caller(&request)?;
        let r = request.into_inner();
        let prefix = if r.court_code.is_empty() {
            String::new()
        } else {
            cv::court_code("court_code", &r.court_code)?.to_string()
        };
        let limit = page_size(r.page_size)?;
        let after = decode_token(&r.page_token)?;
        let (sequence, now) = resolve_as_of(&self.store.reads, None)?;
        let page = self
            .store
            .reads
            .list_specials(&prefix, after.as_deref(), limit)?;
        let next_page_token = match page.last() {
            Some((key, _)) if page.len() == limit => encode_token(key),
            _ => String::new(),
        };
        let mut special_accounts = Vec::with_capacity(page.len());
        // Filtered after paging, so a page may come back short; its token still
        // continues where the scan stopped.
        for (_, s) in page
            .iter()
            .filter(|(_, s)| authz::may_read(&caller, &s.court))
        {
            // An account opened after `sequence` was read is shown as it now is.
            let seq = sequence.max(s.registrations.last().map_or(0, |r| r.sequence));
            let line = self
                .store
                .reads
                .special_line_at(s.id, seq)?
                .unwrap_or_default();
            special_accounts.push(cv::special_account(s, &line, seq, now));
        }
        Ok(Response::new(pb::ListSpecialAccountsResponse {
            special_accounts,
            next_page_token,
        }))
    }
}

fn encode_token(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Result<Option<Vec<u8>>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Status::invalid_argument("page_token: not a token this server issued");
    if !token.len().is_multiple_of(2) || token.len() > 512 {
        return Err(bad());
    }
    (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)
        })
        .collect::<Result<Vec<u8>, Status>>()
        .map(Some)
}
