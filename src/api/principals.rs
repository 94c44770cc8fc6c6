//! service Principals: adding, disabling and rotating principals, journaled like every
//! other change; the in-memory [`Directory`] follows each committed change.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::principal::{token_sha256, APPROVAL_LEVEL_MAX, SCOPES_MAX};
use crate::domain::{text::len, CourtCode, DomainError, PrincipalState, Role};
use crate::ledger::{self, Command, Fault, State};
use crate::store::StoreHandle;

use super::auth::{new_token, Directory};
use super::authz::{self, Caller};
use super::convert as cv;
use super::pb::{self, principals_server::Principals};
use super::{error, page_size};

pub struct PrincipalsService {
    pub store: StoreHandle,
    pub directory: Arc<Directory>,
}

pub fn role_from_pb(field: &str, value: i32) -> Result<Role, Status> {
    use pb::Role as P;
    match P::try_from(value) {
        Ok(P::Clerk) => Ok(Role::Clerk),
        Ok(P::Approver) => Ok(Role::Approver),
        Ok(P::Finance) => Ok(Role::Finance),
        Ok(P::Admin) => Ok(Role::Admin),
        Ok(P::Auditor) => Ok(Role::Auditor),
        Ok(P::Unspecified) | Err(_) => Err(Status::invalid_argument(format!(
            "{field}: {value} is not a role (CLERK, APPROVER, FINANCE, ADMIN, AUDITOR)"
        ))),
    }
}

fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::Clerk => pb::Role::Clerk,
        Role::Approver => pb::Role::Approver,
        Role::Finance => pb::Role::Finance,
        Role::Admin => pb::Role::Admin,
        Role::Auditor => pb::Role::Auditor,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A lowercase or uppercase hex SHA-256, as `sha256sum` prints it.
pub fn parse_sha256(field: &str, text: &str) -> Result<Option<[u8; 32]>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || Status::invalid_argument(format!("{field}: expected 64 hex digits"));
    // from_str_radix alone would also take a sign ("+a" is 10).
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        let pair = text.get(2 * i..2 * i + 2).ok_or_else(bad)?;
        *b = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(Some(out))
}

pub fn principal_pb(p: &PrincipalState) -> pb::Principal {
    pb::Principal {
        principal_id: p.id.to_string(),
        name: p.name.to_string(),
        roles: p.roles.iter().map(|r| role_to_pb(*r) as i32).collect(),
        court_scopes: p.courts.iter().map(ToString::to_string).collect(),
        supervised_scopes: p.supervises.iter().map(ToString::to_string).collect(),
        approval_level: u32::from(p.approval_level),
        enabled: p.enabled,
        client_cert_sha256: p.cert_sha256.map(|c| hex(&c)).unwrap_or_default(),
        created_sequence: p.created_sequence,
        changed_sequence: p.changed_sequence,
    }
}

fn courts(field: &str, codes: &[String]) -> Result<Vec<CourtCode>, Status> {
    if codes.len() > SCOPES_MAX {
        return Err(Status::invalid_argument(format!(
            "{field}: at most {SCOPES_MAX} court codes"
        )));
    }
    let mut out: Vec<CourtCode> = Vec::with_capacity(codes.len());
    for (i, c) in codes.iter().enumerate() {
        let code = cv::court_code(&format!("{field}[{i}]"), c)?;
        if !out.contains(&code) {
            out.push(code);
        }
    }
    Ok(out)
}

/// Why an administrator is never shown the token of a principal that handles money.
const BRING_YOUR_OWN: &str = "its holder generates a token on their own machine (`case-escrow principal new-token`) and hands over only its SHA-256, so that no administrator ever holds a token that moves money";

/// The token a request sets: the hash its holder brought (`token_sha256`), or one
/// drawn here, which the answer shows once if `show` (else nobody ever sees it).
fn token(brought: Option<[u8; 32]>, show: bool) -> Result<([u8; 32], Option<String>), Status> {
    if let Some(hash) = brought {
        return Ok((hash, None));
    }
    let token = new_token()?;
    Ok((token_sha256(&token), show.then_some(token)))
}

/// The command AddPrincipal submits, and the token to show once, if the server drew
/// one to show.
pub fn add_command(r: &pb::AddPrincipalRequest) -> Result<(Command, Option<String>), Status> {
    if r.roles.is_empty() {
        return Err(Status::invalid_argument(
            "roles: at least one role is required",
        ));
    }
    if r.roles.len() > Role::ALL.len() {
        return Err(Status::invalid_argument(format!(
            "roles: at most {} roles",
            Role::ALL.len()
        )));
    }
    let mut roles = Vec::new();
    for (i, v) in r.roles.iter().enumerate() {
        let role = role_from_pb(&format!("roles[{i}]"), *v)?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles.sort();
    let handles_money = roles.iter().any(|r| r.handles_money());
    if handles_money && roles.contains(&Role::Admin) {
        return Err(Status::invalid_argument(
            "roles: an administrator may not also be clerk, approver or finance (separation of duties): whoever manages principals could otherwise move money, or act as two people",
        ));
    }
    let courts_ = courts("court_scopes", &r.court_scopes)?;
    let supervises = courts("supervised_scopes", &r.supervised_scopes)?;
    if courts_.is_empty() && supervises.is_empty() {
        return Err(Status::invalid_argument(
            "court_scopes: a principal needs at least one court code in court_scopes or supervised_scopes",
        ));
    }
    let level = match r.approval_level {
        0 => 1,
        n if n > u32::from(APPROVAL_LEVEL_MAX) => {
            return Err(Status::invalid_argument(format!(
                "approval_level: at most {APPROVAL_LEVEL_MAX}"
            )))
        }
        n => n as u8,
    };
    let name = cv::required("name", &r.name, len::NAME)?;
    let cert_sha256 = parse_sha256("client_cert_sha256", &r.client_cert_sha256)?;
    let brought = parse_sha256("token_sha256", &r.token_sha256)?;
    if handles_money && brought.is_none() && cert_sha256.is_none() {
        return Err(Status::invalid_argument(format!(
            "token_sha256: required (or client_cert_sha256) for a principal with the role clerk, approver or finance: {BRING_YOUR_OWN}"
        )));
    }
    // A principal that handles money and signs in only by certificate still gets a
    // token hash: one drawn here and shown to nobody.
    let (token_hash, shown) = token(brought, !handles_money)?;
    Ok((
        Command::AddPrincipal {
            name,
            roles,
            courts: courts_,
            supervises,
            approval_level: level,
            token_hash,
            cert_sha256,
        },
        shown,
    ))
}

impl PrincipalsService {
    /// Writes a change of principals, then puts the principal as it now is into the
    /// directory that authenticates calls. On a task of its own: if the caller hangs
    /// up after the write was sent, the change is still made, and the directory must
    /// still learn of it, or a disabled principal's token (or a rotated-out one) would
    /// go on working until a restart.
    async fn commit(
        &self,
        who: Option<Uuid>,
        request_id: &str,
        command: Command,
    ) -> Result<PrincipalState, Status> {
        let request = ledger::Request {
            id: cv::request_id(request_id)?,
            command,
            principal: who,
        };
        let (store, directory) = (self.store.clone(), self.directory.clone());
        tokio::spawn(async move {
            let outcome = store.write(request).await.map_err(error::write)?;
            committed(&store, &directory, outcome.sequence)
        })
        .await
        .map_err(|e| error::fault(Fault(format!("the principal change did not finish: {e}"))))?
    }
}

/// The principal an entry made or changed, now in the directory too.
fn committed(
    store: &StoreHandle,
    directory: &Directory,
    sequence: u64,
) -> Result<PrincipalState, Status> {
    use crate::domain::Op;
    let entry = store
        .reads
        .entry(sequence)?
        .ok_or_else(|| error::fault(Fault(format!("acknowledged entry {sequence} is missing"))))?;
    let id = match entry.op {
        Op::PrincipalAdded { principal_id, .. }
        | Op::PrincipalDisabled { principal_id, .. }
        | Op::PrincipalTokenRotated { principal_id, .. } => principal_id,
        _ => {
            return Err(Status::aborted(format!(
                "request_id was already used for entry {sequence}, which changed no principal"
            )))
        }
    };
    let p = store.reads.principal(id)?.ok_or_else(|| {
        error::fault(Fault(format!(
            "entry {sequence} names missing principal {id}"
        )))
    })?;
    directory.refresh(p.clone());
    Ok(p)
}

/// Adds the first administrator when the ledger has no principal yet, and writes its
/// token to `<data_dir>/admin.token` (0600, created exclusively). Logs the file's
/// path, never the token.
pub async fn bootstrap(
    store: &StoreHandle,
    directory: &Directory,
    data_dir: &std::path::Path,
) -> Result<(), String> {
    if !directory.is_empty() {
        return Ok(());
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let token = new_token().map_err(|s| s.message().to_owned())?;
    // The file is in place before the administrator is journaled, so no administrator
    // exists whose token nobody has. A crash in between leaves a token that names no
    // one; the next start, finding still no principal, replaces it.
    write_token_file(data_dir, &path, &token)?;
    let (command, _) = add_command(&pb::AddPrincipalRequest {
        name: "admin".into(),
        roles: vec![pb::Role::Admin as i32],
        court_scopes: vec!["最高法".into()],
        token_sha256: hex(&token_sha256(&token)),
        ..Default::default()
    })
    .map_err(|s| s.message().to_owned())?;
    let request = ledger::Request {
        id: cv::request_id(&format!("bootstrap-admin-{}", Uuid::now_v7()))
            .map_err(|s| s.message().to_owned())?,
        command,
        principal: None,
    };
    let outcome = store.write(request).await.map_err(|e| e.to_string())?;
    committed(store, directory, outcome.sequence).map_err(|s| s.message().to_owned())?;
    tracing::info!(path = %path.display(), "created the first administrator; its token is in this file (mode 0600)");
    Ok(())
}

pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The answer of AddPrincipal and RotateToken. A token drawn now that is not the one
/// stored means the request id had been used: a retry cannot show a token again.
fn answer(
    p: PrincipalState,
    shown: Option<String>,
    request_id: String,
) -> Result<Response<pb::PrincipalWithToken>, Status> {
    if let Some(token) = &shown {
        if p.token_hash != token_sha256(token) {
            return Err(DomainError::RequestIdReused { request_id }.into());
        }
    }
    Ok(Response::new(pb::PrincipalWithToken {
        principal: Some(principal_pb(&p)),
        token: shown.unwrap_or_default(),
    }))
}

/// Writes the token under a fresh name (created exclusively, mode 0600, so nothing
/// already there, not even a symbolic link, is followed or reused), then renames it
/// into place and syncs the directory.
fn write_token_file(
    data_dir: &std::path::Path,
    path: &std::path::Path,
    token: &str,
) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temp = data_dir.join(format!("{ADMIN_TOKEN_FILE}.{}.tmp", Uuid::new_v4()));
    let cannot = |what: &str, p: &std::path::Path, e: std::io::Error| {
        format!(
            "cannot {what} {} for the first administrator's token: {e}",
            p.display()
        )
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| cannot("create", &temp, e))?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| cannot("write", &temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| cannot("rename into", path, e))?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| cannot("sync", data_dir, e))?;
    Ok(())
}

#[tonic::async_trait]
impl Principals for PrincipalsService {
    async fn add_principal(
        &self,
        request: Request<pb::AddPrincipalRequest>,
    ) -> Result<Response<pb::PrincipalWithToken>, Status> {
        let who = authz::check(&request, &self.store.reads)?;
        let r = request.into_inner();
        let (command, shown) = add_command(&r)?;
        let p = self.commit(Some(who.id), &r.request_id, command).await?;
        answer(p, shown, r.request_id)
    }

    async fn disable_principal(
        &self,
        request: Request<pb::DisablePrincipalRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let who = authz::check(&request, &self.store.reads)?;
        let r = request.into_inner();
        let command = Command::DisablePrincipal {
            principal_id: cv::id("principal_id", &r.principal_id)?,
            reason: cv::required("reason", &r.reason, len::REASON)?,
        };
        let p = self.commit(Some(who.id), &r.request_id, command).await?;
        Ok(Response::new(principal_pb(&p)))
    }

    async fn rotate_token(
        &self,
        request: Request<pb::RotateTokenRequest>,
    ) -> Result<Response<pb::PrincipalWithToken>, Status> {
        let (who, target) = authz::check_rotate(&request, &self.store.reads)?;
        let r = request.into_inner();
        let brought = parse_sha256("token_sha256", &r.token_sha256)?;
        // Only a money principal itself sets its credential. An administrator shown a
        // drawn token, or setting one it brought, would hold that person's identity
        // (and its history) as well as its own. A lost token is replaced by disabling
        // the principal and adding the person again: a new identity, in the journal.
        // (Roles never change once added, so reading them here is not racy.)
        if target != who.id {
            if let Some(p) = self.store.reads.principal(target)? {
                if p.handles_money() {
                    return Err(Status::permission_denied(format!(
                        "principal {} has the role clerk, approver or finance: only it may rotate its own token; to replace a lost one, disable it and add the person again with the SHA-256 of a token they made (`case-escrow principal new-token`)",
                        p.name
                    )));
                }
            }
        }
        // A drawn token exists only in the answer: lost on the way (a dropped link, a
        // killed client), the old one is dead and a retry is refused as a reuse. For
        // the last national administrator that would lock administration out for good.
        if brought.is_none() {
            use crate::ledger::State;
            let all = self.store.reads.all_principals()?;
            let last = all.iter().any(|p| p.id == target && p.is_national_admin())
                && !all.iter().any(|p| p.id != target && p.is_national_admin());
            if last {
                return Err(DomainError::rule(
                    "the last enabled administrator with court scope 最高法 brings its new token (token_sha256: `case-escrow principal new-token`), so that a lost answer cannot lock administration out; or add a second one first",
                )
                .into());
            }
        }
        let (token_hash, shown) = token(brought, true)?;
        let command = Command::RotateToken {
            principal_id: target,
            token_hash,
        };
        let p = self.commit(Some(who.id), &r.request_id, command).await?;
        answer(p, shown, r.request_id)
    }

    async fn get_principal(
        &self,
        request: Request<pb::GetPrincipalRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        authz::check(&request, &self.store.reads)?;
        let id = cv::id("principal_id", &request.get_ref().principal_id)?;
        let p = self
            .store
            .reads
            .principal(id)?
            .ok_or_else(|| DomainError::not_found(format!("principal {id}")))?;
        Ok(Response::new(principal_pb(&p)))
    }

    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        authz::check(&request, &self.store.reads)?;
        let caller: Caller = authz::caller(&request)?;
        let r = request.into_inner();
        let limit = page_size(r.page_size)?;
        let after = match r.page_token.as_str() {
            "" => None,
            t => Some(cv::id("page_token", t)?),
        };
        // Principals lie in id order (UUIDv7: the order they were added). The page is
        // filtered to those the caller may manage, so it may come back short; the token
        // continues after the last one scanned.
        let page = self.store.reads.principals_after(after, limit)?;
        let next_page_token = match page.last() {
            Some(p) if page.len() == limit => p.id.to_string(),
            _ => String::new(),
        };
        let principals = page
            .iter()
            .filter(|p| authz::may_manage(&caller, p))
            .map(principal_pb)
            .collect();
        Ok(Response::new(pb::ListPrincipalsResponse {
            principals,
            next_page_token,
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let who = authz::check(&request, &self.store.reads)?;
        Ok(Response::new(principal_pb(&who)))
    }
}
