//! Authentication: every call but health checking carries `authorization: Bearer
//! <token>` (or, under mutual TLS, a client certificate registered for a principal).
//! [`Authenticated`] wraps each service: it finds the principal in memory (no disk
//! read), checks the RPC's role from [`super::authz::RULES`], and hands the principal
//! to the handler in the request's extensions. Everything else is refused before the
//! request is decoded.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;
use uuid::Uuid;

use crate::domain::principal::{legacy_token_hash, token_sha256};
use crate::domain::{PrincipalState, Role};

use super::authz::{self, Caller};

/// The longest authorization value looked at; a token is 64 hex digits.
const AUTHORIZATION_BYTES_MAX: usize = 256;

#[derive(Default)]
struct Maps {
    principals: HashMap<Uuid, Arc<PrincipalState>>,
    by_token: HashMap<[u8; 32], Uuid>,
    by_cert: HashMap<[u8; 32], Uuid>,
}

/// The principals in memory, keyed by token hash and by certificate fingerprint.
/// Filled from sled at start and refreshed by the Principals service after each
/// committed change, so authenticating a call reads no disk. A std lock: it is held
/// for a few map operations and never across an await.
#[derive(Default)]
pub struct Directory {
    maps: RwLock<Maps>,
}

impl Directory {
    pub fn new(principals: Vec<PrincipalState>) -> Directory {
        let d = Directory::default();
        for p in principals {
            d.refresh(p);
        }
        d
    }

    /// Puts a principal as the journal now has it, dropping its old token and
    /// certificate keys. A snapshot older than the one held (by the entry that last
    /// changed it) is ignored: callers read sled and refresh without any ordering, so
    /// a rotate's snapshot taken before a concurrent disable may arrive after it, and
    /// applying it would enable a disabled principal's token again until restart.
    pub fn refresh(&self, p: PrincipalState) {
        let mut maps = match self.maps.write() {
            Ok(m) => m,
            // A panic while holding the lock cannot leave the maps half-changed in a
            // way that matters more than refusing every call: keep serving.
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(held) = maps.principals.get(&p.id) {
            // Equal sequences are the same journal state; nothing to change.
            if held.changed_sequence >= p.changed_sequence {
                return;
            }
        }
        if let Some(old) = maps.principals.remove(&p.id) {
            maps.by_token.remove(&old.token_hash);
            if let Some(c) = old.cert_sha256 {
                maps.by_cert.remove(&c);
            }
        }
        maps.by_token.insert(p.token_hash, p.id);
        if let Some(c) = p.cert_sha256 {
            maps.by_cert.insert(c, p.id);
        }
        maps.principals.insert(p.id, Arc::new(p));
    }

    pub fn is_empty(&self) -> bool {
        self.read(|m| m.principals.is_empty())
    }

    fn read<T>(&self, f: impl FnOnce(&Maps) -> T) -> T {
        match self.maps.read() {
            Ok(m) => f(&m),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// A principal whose token hash is either form: the SHA-256 kept since holders
    /// bring their own tokens, or the older hash of principals journaled before.
    fn by_token(&self, token: &str) -> Option<Arc<PrincipalState>> {
        if !generated_shape(token) {
            return None;
        }
        let hashes = [token_sha256(token), legacy_token_hash(token)];
        self.read(|m| {
            let mut ids = hashes.iter().filter_map(|h| m.by_token.get(h));
            let id = ids.next()?;
            // Whoever knows an older principal's token could register its plain
            // SHA-256 for another: a token that names two principals names neither.
            if ids.any(|other| other != id) {
                return None;
            }
            m.principals.get(id).cloned()
        })
    }

    fn by_cert(&self, sha256: &[u8; 32]) -> Option<Arc<PrincipalState>> {
        self.read(|m| {
            m.by_cert
                .get(sha256)
                .and_then(|id| m.principals.get(id))
                .cloned()
        })
    }

    /// Who a call is, from its headers and, under mutual TLS, its client certificate.
    pub fn authenticate(
        &self,
        headers: &http::HeaderMap,
        cert_sha256: Option<[u8; 32]>,
    ) -> Result<Arc<PrincipalState>, Status> {
        let principal = match headers.get(http::header::AUTHORIZATION) {
            Some(value) => self
                .by_token(bearer(value)?)
                .ok_or_else(|| Status::unauthenticated("the bearer token is not valid"))?,
            None => match cert_sha256 {
                Some(c) => self.by_cert(&c).ok_or_else(|| {
                    Status::unauthenticated(
                        "the client certificate is registered for no principal; send `authorization: Bearer <token>`",
                    )
                })?,
                None => {
                    return Err(Status::unauthenticated(
                        "missing `authorization: Bearer <token>` metadata",
                    ))
                }
            },
        };
        if !principal.enabled {
            return Err(Status::unauthenticated(format!(
                "principal {} is disabled",
                principal.name
            )));
        }
        Ok(principal)
    }
}

/// What a call authenticated with, kept in its extensions so that a long stream can
/// ask again, before each thing it sends, whether it still authenticates: a principal
/// disabled or a token rotated mid-stream must stop receiving.
#[derive(Clone)]
pub struct Credentials {
    authorization: Option<http::HeaderValue>,
    cert_sha256: Option<[u8; 32]>,
    principal_id: Uuid,
}

impl Directory {
    /// Whether `credentials` still authenticate the principal they did at the start.
    pub fn reauthenticate(&self, credentials: &Credentials) -> Result<(), Status> {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = &credentials.authorization {
            headers.insert(http::header::AUTHORIZATION, value.clone());
        }
        let principal = self.authenticate(&headers, credentials.cert_sha256)?;
        if principal.id != credentials.principal_id {
            return Err(Status::unauthenticated(
                "the credentials of this call no longer name its principal",
            ));
        }
        Ok(())
    }
}

/// The token of an `authorization` value, never echoed in an error.
fn bearer(value: &http::HeaderValue) -> Result<&str, Status> {
    let malformed =
        || Status::unauthenticated("malformed authorization metadata: expected `Bearer <token>`");
    if value.len() > AUTHORIZATION_BYTES_MAX {
        return Err(malformed());
    }
    let text = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = text.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(token)
}

/// Whether a token has the shape every token is drawn in ([`new_token`], `principal
/// new-token`): exactly 64 lowercase hex digits. A holder who brings its own token
/// gives the service only its hash, so it could register the hash of a guessable
/// one ("1234"), which its fast, unsalted SHA-256 in the journal would then give
/// away. The service sees the token at every call, so it takes no other shape, and
/// refuses the others as it refuses an unknown token (no hint why).
pub fn generated_shape(token: &str) -> bool {
    token.len() == TOKEN_HEX_DIGITS
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// 32 random bytes.
const TOKEN_HEX_DIGITS: usize = 64;

/// A fresh bearer token: 32 random bytes as 64 lowercase hex digits.
pub fn new_token() -> Result<String, Status> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "the operating system's random source failed");
        Status::unavailable("no randomness for a token; try again")
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// How long a call waits for the state to hold what was acknowledged before it is
/// refused. The wait is normally at most one batch's apply (well under a second even
/// for 8,189 receipts); past this the state's engine is stalled, and an answer then
/// is better than a call that hangs.
pub const VISIBLE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// A service behind authentication and the role check of its RPCs.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    directory: Arc<Directory>,
    /// For a service that reads the state: every call first waits until the state
    /// holds what was acknowledged when it arrived (`store::Visible`).
    visible: Option<crate::store::Visible>,
}

impl<S> Authenticated<S> {
    /// A service of the ledger: its calls wait for the state first. The default, so
    /// that a service added later cannot read less than was acknowledged by mistake.
    pub fn new(inner: S, directory: Arc<Directory>, visible: crate::store::Visible) -> Self {
        Authenticated {
            inner,
            directory,
            visible: Some(visible),
        }
    }

    /// A service that never reads the ledger's state (reflection).
    pub fn reading_nothing(inner: S, directory: Arc<Directory>) -> Self {
        Authenticated {
            inner,
            directory,
            visible: None,
        }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

/// SHA-256 of the DER of the peer's first (leaf) certificate, under mutual TLS.
fn peer_cert_sha256<B>(request: &http::Request<B>) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let info = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    let leaf = certs.first()?;
    Some(Sha256::digest(leaf.as_ref()).into())
}

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let refuse =
            |status: Status| -> Self::Future { Box::pin(async move { Ok(status.into_http()) }) };
        let cert_sha256 = peer_cert_sha256(&request);
        let principal = match self.directory.authenticate(request.headers(), cert_sha256) {
            Ok(p) => p,
            Err(status) => return refuse(status),
        };
        let path = request.uri().path();
        let Some(rule) = authz::rule_for(path) else {
            return refuse(Status::permission_denied(format!(
                "no principal may call {path}"
            )));
        };
        if !rule.roles.iter().any(|r| principal.has_role(*r)) {
            let roles: Vec<_> = rule.roles.iter().map(|r| r.name()).collect();
            return refuse(Status::permission_denied(format!(
                "principal {} may not call {path}: that needs the role {}",
                principal.name,
                roles.join(" or ")
            )));
        }
        // No principal is added with admin and a money role any more, but journals from
        // before may hold one: it keeps its administration and loses the money calls
        // rather than being one person on both sides.
        if principal.has_role(Role::Admin)
            && principal.handles_money()
            && !rule
                .roles
                .iter()
                .any(|r| *r == Role::Admin || !r.handles_money())
        {
            return refuse(Status::permission_denied(format!(
                "principal {} holds the role admin and a role that handles money; an administrator may not move money (separation of duties): add the person again without admin",
                principal.name
            )));
        }
        let credentials = Credentials {
            authorization: request.headers().get(http::header::AUTHORIZATION).cloned(),
            cert_sha256,
            principal_id: principal.id,
        };
        request.extensions_mut().insert(credentials);
        request.extensions_mut().insert(Caller { principal, rule });
        // A service's future does nothing until polled: the wait comes first.
        let call = self.inner.call(request);
        let Some(visible) = self.visible.clone() else {
            return Box::pin(call);
        };
        Box::pin(async move {
            match tokio::time::timeout(VISIBLE_WAIT_MAX, visible.wait()).await {
                Ok(Ok(())) => call.await,
                Ok(Err(behind)) => Ok(Status::unavailable(behind.to_string()).into_http()),
                Err(_) => Ok(Status::unavailable(format!(
                    "the ledger's state has not caught up with what was acknowledged within {} s; retry",
                    VISIBLE_WAIT_MAX.as_secs()
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Role, Text};

    fn principal(id: Uuid, token: &str, enabled: bool, changed: u64) -> PrincipalState {
        PrincipalState {
            id,
            name: Text::default(),
            roles: vec![Role::Clerk],
            courts: Vec::new(),
            supervises: Vec::new(),
            approval_level: 1,
            enabled,
            token_hash: token_sha256(token),
            cert_sha256: None,
            created_sequence: 1,
            changed_sequence: changed,
        }
    }

    /// A token of the generated shape, told apart by `n`.
    fn tok(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn bearer_headers(token: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .unwrap_or_else(|e| panic!("{token}: {e}"));
        h.insert(http::header::AUTHORIZATION, value);
        h
    }

    /// A rotate (sequence 2) and a disable (sequence 3) of one principal commit; the
    /// disable's snapshot reaches the directory first, the rotate's last. The older
    /// snapshot must not bring the token back.
    #[test]
    fn an_older_snapshot_arriving_last_is_ignored() {
        let id = Uuid::now_v7();
        let (first, second, third) = (tok(1), tok(2), tok(3));
        let d = Directory::new(vec![principal(id, &first, true, 1)]);
        d.refresh(principal(id, &second, false, 3));
        d.refresh(principal(id, &second, true, 2));
        let refused = d.authenticate(&bearer_headers(&second), None);
        assert_eq!(
            refused.map(|p| p.enabled).map_err(|s| s.code()),
            Err(tonic::Code::Unauthenticated)
        );
        assert!(d.authenticate(&bearer_headers(&first), None).is_err());
        // A newer snapshot still applies.
        d.refresh(principal(id, &third, false, 4));
        assert!(d.authenticate(&bearer_headers(&second), None).is_err());
        assert!(d.authenticate(&bearer_headers(&third), None).is_err());
    }

    /// Principals journaled before tokens were kept as their plain SHA-256 still sign
    /// in with the hash they were stored under.
    #[test]
    fn a_token_stored_under_the_older_hash_still_signs_in() {
        let id = Uuid::now_v7();
        let older = tok(7);
        let mut p = principal(id, &older, true, 1);
        p.token_hash = legacy_token_hash(&older);
        let d = Directory::new(vec![p]);
        let found = d.authenticate(&bearer_headers(&older), None);
        assert_eq!(found.map(|p| p.id).map_err(|s| s.code()), Ok(id));
        assert!(d.authenticate(&bearer_headers(&tok(8)), None).is_err());
    }

    /// Whoever knows an older principal's token could register its plain SHA-256 for
    /// another principal: that token then signs in as neither.
    #[test]
    fn a_token_that_names_two_principals_signs_in_neither() {
        let older = tok(7);
        let mut first = principal(Uuid::now_v7(), &older, true, 1);
        first.token_hash = legacy_token_hash(&older);
        let second = principal(Uuid::now_v7(), &older, true, 2);
        let d = Directory::new(vec![first, second]);
        let refused = d.authenticate(&bearer_headers(&older), None);
        assert_eq!(
            refused.map(|p| p.id).map_err(|s| s.code()),
            Err(tonic::Code::Unauthenticated)
        );
    }

    #[test]
    fn a_newer_snapshot_replaces_the_token() {
        let id = Uuid::now_v7();
        let (first, second) = (tok(1), tok(2));
        let d = Directory::new(vec![principal(id, &first, true, 1)]);
        d.refresh(principal(id, &second, true, 2));
        assert!(d.authenticate(&bearer_headers(&first), None).is_err());
        assert!(d.authenticate(&bearer_headers(&second), None).is_ok());
    }

    /// A principal registered with the hash of a guessable token never signs in with
    /// it, and is refused in the words an unknown token gets.
    #[test]
    fn only_tokens_of_the_generated_shape_sign_in() {
        let d = Directory::default();
        for (n, token) in [
            "1234",
            &tok(0xab).to_uppercase(),
            &tok(2)[1..],
            &format!("{}0", tok(3)),
        ]
        .into_iter()
        .enumerate()
        {
            d.refresh(principal(Uuid::now_v7(), token, true, n as u64 + 1));
            let refused = d
                .authenticate(&bearer_headers(token), None)
                .expect_err("not the generated shape");
            let unknown = d
                .authenticate(&bearer_headers(&tok(9)), None)
                .expect_err("unknown");
            assert_eq!(
                (refused.code(), refused.message()),
                (unknown.code(), unknown.message()),
                "{token}"
            );
        }
        let fresh = new_token().unwrap_or_default();
        assert!(generated_shape(&fresh), "{fresh}");
        d.refresh(principal(Uuid::now_v7(), &fresh, true, 9));
        assert!(d.authenticate(&bearer_headers(&fresh), None).is_ok());
    }
}
