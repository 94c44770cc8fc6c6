//! A bearer-token interceptor, and a channel that picks a token by RPC for tools (and
//! tests) that act as several principals. Where a command's token comes from is
//! `client.rs`, not here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::api::authz;
use crate::domain::Role;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    pub fn new(token: &str) -> Result<Bearer, String> {
        MetadataValue::try_from(format!("Bearer {}", token.trim()))
            .map(Bearer)
            .map_err(|_| "the token holds characters a header cannot carry".to_owned())
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A channel that sends each call with the token of a principal holding a role its
/// RPC needs (from `authz::RULES`), so one client can act as clerk, approver and
/// finance without breaking four eyes. Calls no rule names go with `fallback`.
#[derive(Clone)]
pub struct ByRole {
    inner: Channel,
    tokens: Arc<HashMap<Role, http::HeaderValue>>,
    fallback: Option<http::HeaderValue>,
}

impl ByRole {
    /// `tokens`: a token per role; `fallback` for calls any role may make.
    pub fn new(inner: Channel, tokens: &[(Role, &str)], fallback: &str) -> Result<ByRole, String> {
        let value = |t: &str| {
            http::HeaderValue::try_from(format!("Bearer {}", t.trim()))
                .map_err(|_| "the token holds characters a header cannot carry".to_owned())
        };
        let mut map = HashMap::new();
        for (role, token) in tokens {
            map.insert(*role, value(token)?);
        }
        Ok(ByRole {
            inner,
            tokens: Arc::new(map),
            fallback: Some(value(fallback)?),
        })
    }

    /// A channel that sends no token at all (to show what is refused without one).
    pub fn without_token(inner: Channel) -> ByRole {
        ByRole {
            inner,
            tokens: Arc::new(HashMap::new()),
            fallback: None,
        }
    }
}

impl ByRole {
    /// The same principals over another connection.
    pub fn with_channel(&self, inner: Channel) -> ByRole {
        ByRole {
            inner,
            tokens: self.tokens.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl Service<http::Request<Body>> for ByRole {
    type Response = <Channel as Service<http::Request<Body>>>::Response;
    type Error = <Channel as Service<http::Request<Body>>>::Error;
    type Future = <Channel as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let value = authz::rule_for(request.uri().path())
            .filter(|rule| rule.roles.len() < Role::ALL.len())
            .and_then(|rule| rule.roles.iter().find_map(|r| self.tokens.get(r)))
            .or(self.fallback.as_ref())
            .cloned();
        if let Some(value) = value {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        self.inner.call(request)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The administrator's token of a data directory (written at its first start), read
/// with the same care as any token file.
pub fn admin_token(data_dir: &Path) -> Result<String, String> {
    super::client::read_token(&data_dir.join(crate::api::principals::ADMIN_TOKEN_FILE))
        .map_err(|e| e.to_string())
}

pub fn admin_bearer(data_dir: &Path) -> Result<Bearer, String> {
    Bearer::new(&admin_token(data_dir)?)
}

/// A fresh token, drawn as the server draws its own, and its SHA-256 in hex: what
/// `principal new-token` prints. The holder keeps the token and hands over the hash.
pub fn new_token() -> Result<(String, String), String> {
    let token = crate::api::auth::new_token().map_err(|s| s.message().to_owned())?;
    let sha256 = crate::api::principals::hex(&crate::domain::principal::token_sha256(&token));
    Ok((token, sha256))
}

/// Registers a principal, as the administrator, with a token drawn here whose hash alone
/// the server is given, and answers that token. Tests and `bench` play every person at
/// once with it; a real deployment's people draw their own (`principal new-token`).
pub async fn add_principal(
    channel: Channel,
    admin: Bearer,
    name: &str,
    roles: &[Role],
    courts: &[&str],
) -> Result<String, BoxError> {
    use crate::api::pb;
    let role = |r: &Role| match r {
        Role::Clerk => pb::Role::Clerk as i32,
        Role::Approver => pb::Role::Approver as i32,
        Role::Finance => pb::Role::Finance as i32,
        Role::Admin => pb::Role::Admin as i32,
        Role::Auditor => pb::Role::Auditor as i32,
    };
    let (token, sha256) = new_token()?;
    let mut client = pb::principals_client::PrincipalsClient::with_interceptor(channel, admin);
    client
        .add_principal(pb::AddPrincipalRequest {
            request_id: format!("add-{name}"),
            name: name.to_owned(),
            roles: roles.iter().map(role).collect(),
            court_scopes: courts.iter().map(|c| (*c).to_owned()).collect(),
            approval_level: u32::from(crate::domain::principal::APPROVAL_LEVEL_MAX),
            token_sha256: sha256,
            ..Default::default()
        })
        .await?;
    Ok(token)
}

/// A clerk, an approver (of the highest level) and a finance officer in `courts`,
/// named after `tag`, and a channel that calls each RPC as the one whose role it
/// needs (administrator RPCs as the administrator): for load generators and tests
/// that drive whole disbursements, which four eyes forbid one principal to do.
pub async fn crew(
    channel: Channel,
    admin_token: &str,
    tag: &str,
    courts: &[&str],
) -> Result<ByRole, BoxError> {
    let admin = Bearer::new(admin_token)?;
    let mut tokens = Vec::new();
    for role in [Role::Clerk, Role::Approver, Role::Finance] {
        let name = format!("{tag}-{}", role.name());
        let token = add_principal(channel.clone(), admin.clone(), &name, &[role], courts).await?;
        tokens.push((role, token));
    }
    let clerk = tokens[0].1.clone();
    let mut pairs: Vec<(Role, &str)> = tokens.iter().map(|(r, t)| (*r, t.as_str())).collect();
    pairs.push((Role::Admin, admin_token));
    Ok(ByRole::new(channel, &pairs, &clerk)?)
}
