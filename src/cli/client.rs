//! The one place where the command line connects to a server: which server, which
//! token, and the `authorization: Bearer …` header on every call.
//!
//! Precedence, for every setting: flag > environment > config file > default. The
//! token is taken from the first of: the `--token` flag, the `--token-file` flag,
//! `CASE_ESCROW_TOKEN`, `CASE_ESCROW_TOKEN_FILE`, the config file's `[client]
//! token_file`; and only for a server on this machine (loopback), the config file's
//! `<server.data_dir>/admin.token` or `./data/admin.token` if it exists, so a command
//! against a local server without tokens needs none, and a local administrator's token
//! is never sent elsewhere unasked.
//!
//! The token variables are read here rather than by clap, so that any flag beats any
//! variable: clap would merge `CASE_ESCROW_TOKEN` into `--token` and let it beat a
//! `--token-file` flag.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub use crate::api::error::code_name;
use crate::config::{ClientSection, ConfigFile, ADMIN_TOKEN_FILE};

pub const SERVER_DEFAULT: &str = "http://127.0.0.1:50051";
/// How long a command waits for the server to accept its connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A token file larger than this is not a token file.
pub const TOKEN_FILE_BYTES_MAX: u64 = 4096;
pub const ENV_TOKEN: &str = "CASE_ESCROW_TOKEN";
pub const ENV_TOKEN_FILE: &str = "CASE_ESCROW_TOKEN_FILE";

pub type CliError = Box<dyn std::error::Error + Send + Sync>;
pub type CliResult<T> = Result<T, CliError>;

/// The options every command that talks to a server takes.
#[derive(clap::Args, Clone, Default)]
pub struct ClientArgs {
    /// The server's address, e.g. http://127.0.0.1:50051 [default: http://127.0.0.1:50051]
    #[arg(long, env = "CASE_ESCROW_SERVER", global = true)]
    pub server: Option<String>,
    /// Your access token (prefer --token-file: a token on the command line is visible
    /// to other users of the machine). [env: CASE_ESCROW_TOKEN, weaker than any flag]
    #[arg(long, global = true, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding your access token (its first line), e.g. the server's
    /// data/admin.token. [env: CASE_ESCROW_TOKEN_FILE, weaker than any flag]
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// A configuration file (TOML) to take the server address and token file from.
    #[arg(long, env = "CASE_ESCROW_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// For an https:// server: the PEM file of the certificate authority that signed
    /// the server's certificate (the only one trusted).
    #[arg(long, env = "CASE_ESCROW_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// For a server that asks for client certificates (mutual TLS): your certificate,
    /// PEM. With --tls-key. (Not `CASE_ESCROW_TLS_CERT`: that is the server's own
    /// certificate, set beside the client in a container.)
    #[arg(long, env = "CASE_ESCROW_CLIENT_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, PEM.
    #[arg(long, env = "CASE_ESCROW_CLIENT_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry, when it is not the host of
    /// --server (e.g. a certificate for a name, reached by its IP address).
    #[arg(long, env = "CASE_ESCROW_TLS_DOMAIN", global = true)]
    pub tls_domain: Option<String>,
}

impl std::fmt::Debug for ClientArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientArgs")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("config", &self.config)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_domain", &self.tls_domain)
            .finish()
    }
}

/// Where to connect and with which token, once every source has been weighed.
#[derive(Clone)]
pub struct Target {
    pub server: String,
    pub token: Option<String>,
    /// Set exactly when `server` is https://.
    pub tls: Option<ClientTls>,
}

/// What a TLS connection trusts and shows, read from its files when the command starts
/// so that a missing or unreadable file is named before anything is asked.
#[derive(Clone)]
pub struct ClientTls {
    pub ca_pem: Vec<u8>,
    /// Certificate and key, PEM, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    pub domain: Option<String>,
}

/// A PEM file larger than this is not a certificate or key.
pub const PEM_FILE_BYTES_MAX: u64 = 1 << 20;

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Whether `server` (a URL) names this machine.
pub fn is_loopback(server: &str) -> bool {
    let Ok(uri) = server.parse::<http::Uri>() else {
        return false;
    };
    match uri.host() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

impl ClientArgs {
    /// Weighs flags, environment, the config file and the defaults.
    pub fn resolve(&self) -> CliResult<Target> {
        self.resolve_with(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// As [`ClientArgs::resolve`], with the token variables read through `env`.
    pub fn resolve_with(&self, env: impl Fn(&str) -> Option<String>) -> CliResult<Target> {
        let file = match &self.config {
            Some(path) => Some(ConfigFile::load(path)?),
            None => None,
        };
        let client = file.as_ref().map(|f| f.client.clone()).unwrap_or_default();
        let server = self
            .server
            .clone()
            .or(client.server.clone())
            .unwrap_or_else(|| SERVER_DEFAULT.to_owned());
        let token = if let Some(t) = &self.token {
            Some(t.trim().to_owned())
        } else if let Some(path) = &self.token_file {
            Some(read_token(path)?)
        } else if let Some(t) = env(ENV_TOKEN) {
            Some(t.trim().to_owned())
        } else if let Some(path) = env(ENV_TOKEN_FILE) {
            Some(read_token(Path::new(&path))?)
        } else if let Some(path) = &client.token_file {
            Some(read_token(path)?)
        } else if is_loopback(&server) {
            let data_dir = file
                .as_ref()
                .and_then(|f| f.server.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from("./data"));
            let path = data_dir.join(ADMIN_TOKEN_FILE);
            if path.is_file() {
                eprintln!(
                    "case-escrow: using the administrator's token in {}",
                    path.display()
                );
                Some(read_token(&path)?)
            } else {
                None
            }
        } else {
            None
        };
        if token.as_deref() == Some("") {
            return Err("the token is empty: give --token or a --token-file holding one".into());
        }
        if token.is_some() && server.starts_with("http://") && !is_loopback(&server) {
            eprintln!(
                "case-escrow: warning: the token goes to {server} unencrypted (http://); use https:// for a server on another machine"
            );
        }
        let tls = self.tls(&server, &client)?;
        Ok(Target { server, token, tls })
    }

    /// The TLS settings, flag over config file, checked against the server's scheme:
    /// a CA given for an http:// server, or an https:// server without one, is a
    /// mistake to name rather than a connection to attempt.
    fn tls(&self, server: &str, client: &ClientSection) -> CliResult<Option<ClientTls>> {
        if !server.starts_with("https://") {
            // Given on this command line, a CA for a plain server is a mistake to name; in
            // the config file it may serve other commands, and is left unused here.
            if self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some() {
                return Err(format!(
                    "--tls-ca, --tls-cert and --tls-key are for an https:// server; the server is {server}"
                )
                .into());
            }
            return Ok(None);
        }
        let ca = self.tls_ca.clone().or_else(|| client.tls_ca.clone());
        // Certificate and key come as a pair from one place: mixing a flag's
        // certificate with the config file's key would only fail in the handshake.
        let (cert, key) = if self.tls_cert.is_some() || self.tls_key.is_some() {
            (self.tls_cert.clone(), self.tls_key.clone())
        } else {
            (client.tls_cert.clone(), client.tls_key.clone())
        };
        let domain = self
            .tls_domain
            .clone()
            .or_else(|| client.tls_domain.clone());
        let Some(ca) = ca else {
            return Err(format!(
                "--server {server} is https://: give --tls-ca FILE, the PEM of the certificate authority that signed the server's certificate"
            )
            .into());
        };
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => {
                Some((read_pem("--tls-cert", &cert)?, read_pem("--tls-key", &key)?))
            }
            (None, None) => None,
            (Some(_), None) => return Err("--tls-cert needs --tls-key, its private key".into()),
            (None, Some(_)) => return Err("--tls-key needs --tls-cert, its certificate".into()),
        };
        Ok(Some(ClientTls {
            ca_pem: read_pem("--tls-ca", &ca)?,
            identity,
            domain,
        }))
    }
}

/// A PEM file named by `flag` (or its variable or config key), read whole.
fn read_pem(flag: &str, path: &Path) -> CliResult<Vec<u8>> {
    let named = |e: &dyn std::fmt::Display| format!("{flag} {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| named(&e))?;
    if !meta.is_file() || meta.len() > PEM_FILE_BYTES_MAX {
        return Err(named(&"not a PEM file (a regular file of at most 1 MiB)").into());
    }
    let bytes = std::fs::read(path).map_err(|e| named(&e))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(named(&"not a PEM file (no -----BEGIN line)").into());
    }
    Ok(bytes)
}

/// The first line of a regular file of at most [`TOKEN_FILE_BYTES_MAX`] bytes.
pub(crate) fn read_token(path: &Path) -> CliResult<String> {
    let named = |e: &dyn std::fmt::Display| format!("token file {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| named(&e))?;
    if !meta.is_file() {
        return Err(named(&"not a regular file").into());
    }
    if meta.len() > TOKEN_FILE_BYTES_MAX {
        return Err(named(&format!(
            "larger than {TOKEN_FILE_BYTES_MAX} bytes: not a token file"
        ))
        .into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "case-escrow: warning: token file {} can be read by other users (chmod 600 it)",
                path.display()
            );
        }
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(TOKEN_FILE_BYTES_MAX).read_to_string(&mut text))
        .map_err(|e| named(&e))?;
    Ok(text.lines().next().unwrap_or("").trim().to_owned())
}

/// Adds the bearer token (if any) and the request id (if any) to every call.
#[derive(Clone)]
pub struct Bearer {
    authorization: Option<MetadataValue<Ascii>>,
    request_id: Option<MetadataValue<Ascii>>,
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(a) = &self.authorization {
            req.metadata_mut().insert("authorization", a.clone());
        }
        if let Some(r) = &self.request_id {
            req.metadata_mut().insert("x-request-id", r.clone());
        }
        Ok(req)
    }
}

pub type Conn = InterceptedService<Channel, Bearer>;

/// The server could not be reached: nothing was asked, nothing was done.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the server at {server}: {reason}")]
pub struct Unreachable {
    pub server: String,
    pub reason: String,
}

impl Target {
    /// Connects; the request id, when given, goes with every call as `x-request-id`
    /// so the server's log lines of the call carry the id the clerk sees.
    pub async fn connect(&self, request_id: Option<&str>) -> CliResult<Conn> {
        let mut endpoint = Channel::from_shared(self.server.clone()).map_err(|e| {
            format!(
                "--server {}: not an address like {SERVER_DEFAULT} ({e})",
                self.server
            )
        })?;
        if let Some(tls) = &self.tls {
            let mut config =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            if let Some(domain) = &tls.domain {
                config = config.domain_name(domain.clone());
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| format!("TLS settings: {}", source_chain(&e)))?;
        }
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| Unreachable {
                server: self.server.clone(),
                reason: source_chain(&e),
            })?;
        Ok(InterceptedService::new(channel, self.bearer(request_id)?))
    }

    pub fn bearer(&self, request_id: Option<&str>) -> CliResult<Bearer> {
        let authorization = match &self.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| "the token has characters a header cannot carry")?,
            ),
            None => None,
        };
        // A header carries only visible ASCII; an id beyond that still goes in the
        // request itself, and the server names the call's log lines with an id of its own.
        let request_id = request_id.and_then(|r| r.parse().ok());
        Ok(Bearer {
            authorization,
            request_id,
        })
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Exit codes of the command line (README lists them).
pub mod exit {
    pub const OK: u8 = 0;
    /// Anything else: a file that cannot be read or written, a bad local value.
    pub const FAILED: u8 = 1;
    /// The command line itself is wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// The server answered and refused: its code and message are printed.
    pub const REFUSED: u8 = 3;
    /// The server could not be reached, or is shutting down.
    pub const UNREACHABLE: u8 = 4;
}

/// The server's messages name RPCs and request fields, for every client; this says
/// what the ones they name (in `ledger::execute` and `api::reconcile`) are called here.
const COMMAND_LINE_NAMES: [(&str, &str); 4] = [
    ("FailDisbursement", "`case fail`"),
    ("RecordReturnedPayment", "`case returned`"),
    ("CancelDisbursement", "`case cancel`"),
    ("header.court_scope", "`--court-scope`"),
];

fn command_line_names(message: &str) -> Vec<String> {
    COMMAND_LINE_NAMES
        .iter()
        .filter(|(api, _)| message.contains(api))
        .map(|(api, here)| format!("{api} is {here} on the command line"))
        .collect()
}

/// Prints an error the way a clerk can act on it and picks the exit code.
pub fn report(e: &(dyn std::error::Error + 'static)) -> u8 {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        let unreachable = matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        );
        if unreachable && status.message().contains("transport") {
            eprintln!("case-escrow: cannot reach the server: {}", status.message());
            return exit::UNREACHABLE;
        }
        eprintln!(
            "case-escrow: refused by the server: {} {}",
            code_name(status.code()),
            status.message()
        );
        for hint in command_line_names(status.message()) {
            eprintln!("case-escrow: {hint}");
        }
        return if status.code() == tonic::Code::Unavailable {
            exit::UNREACHABLE
        } else {
            exit::REFUSED
        };
    }
    if e.downcast_ref::<Unreachable>().is_some() {
        eprintln!("case-escrow: {e}");
        return exit::UNREACHABLE;
    }
    eprintln!("case-escrow: {e}");
    exit::FAILED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_naming_an_rpc_says_what_it_is_called_here() {
        let said = command_line_names(
            "disbursement 1 is APPROVED: finance may already be paying it, so only finance ends it now (FailDisbursement if the bank did not pay it); CancelDisbursement needs it to be REQUESTED",
        );
        assert_eq!(
            said,
            vec![
                "FailDisbursement is `case fail` on the command line",
                "CancelDisbursement is `case cancel` on the command line",
            ]
        );
        assert!(command_line_names("insufficient funds").is_empty());
        assert_eq!(
            command_line_names("may not reconcile every court: give header.court_scope"),
            vec!["header.court_scope is `--court-scope` on the command line"]
        );
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn flag_beats_config_file_which_beats_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write(
            dir.path(),
            "c.toml",
            "[client]\nserver = \"http://10.0.0.1:1\"\ntoken_file = \"TF\"\n",
        );
        let tf = write(dir.path(), "TF", "from-config-file\n");
        let text = std::fs::read_to_string(&config)
            .expect("read")
            .replace("TF", &tf.display().to_string());
        std::fs::write(&config, text).expect("write");

        let none = ClientArgs::default()
            .resolve_with(no_env)
            .expect("resolves");
        assert_eq!(none.server, SERVER_DEFAULT);

        let from_file = ClientArgs {
            config: Some(config.clone()),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect("resolves");
        assert_eq!(from_file.server, "http://10.0.0.1:1");
        assert_eq!(from_file.token.as_deref(), Some("from-config-file"));

        let flag_file = write(dir.path(), "flag", "from-flag-file\n");
        let flags = ClientArgs {
            config: Some(config.clone()),
            server: Some("http://127.0.0.2:2".into()),
            token_file: Some(flag_file),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect("resolves");
        assert_eq!(flags.server, "http://127.0.0.2:2");
        assert_eq!(flags.token.as_deref(), Some("from-flag-file"));

        let token = ClientArgs {
            config: Some(config),
            token: Some("t0k".into()),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect("resolves");
        assert_eq!(token.token.as_deref(), Some("t0k"));
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn any_token_flag_beats_any_token_variable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clerk = write(dir.path(), "clerk.token", "clerk\n");
        let admin = write(dir.path(), "admin.token", "admin\n");
        let admin_path = admin.display().to_string();
        let env = |name: &str| match name {
            ENV_TOKEN => Some("admin-from-env".to_owned()),
            ENV_TOKEN_FILE => Some(admin_path.clone()),
            _ => None,
        };
        let flag_file = ClientArgs {
            token_file: Some(clerk),
            ..Default::default()
        };
        assert_eq!(
            flag_file
                .resolve_with(env)
                .expect("resolves")
                .token
                .as_deref(),
            Some("clerk")
        );
        let flag_token = ClientArgs {
            token: Some("t".into()),
            ..Default::default()
        };
        assert_eq!(
            flag_token
                .resolve_with(env)
                .expect("resolves")
                .token
                .as_deref(),
            Some("t")
        );
        let only_env = ClientArgs::default().resolve_with(env).expect("resolves");
        assert_eq!(only_env.token.as_deref(), Some("admin-from-env"));
        let only_file_env = ClientArgs::default()
            .resolve_with(|n| (n == ENV_TOKEN_FILE).then(|| admin_path.clone()))
            .expect("resolves");
        assert_eq!(only_file_env.token.as_deref(), Some("admin"));
        // Both flags at once is a mistake the command line refuses.
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            c: ClientArgs,
        }
        assert!(Cmd::try_parse_from(["x", "--token", "a", "--token-file", "b"]).is_err());
    }

    #[test]
    fn a_local_admin_token_is_never_sent_to_another_machine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("d");
        std::fs::create_dir(&data).expect("mkdir");
        write(&data, ADMIN_TOKEN_FILE, "admin-secret\n");
        let config = write(
            dir.path(),
            "c.toml",
            &format!("[server]\ndata_dir = {:?}\n", data.display().to_string()),
        );
        let remote = ClientArgs {
            config: Some(config),
            server: Some("http://10.1.2.3:50051".into()),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect("resolves");
        assert_eq!(remote.token, None);
        assert!(
            is_loopback("http://127.0.0.1:1")
                && is_loopback("http://[::1]:1")
                && is_loopback("http://localhost:1")
        );
        assert!(!is_loopback("http://10.0.0.1:1") && !is_loopback("https://example.org"));
        assert!(!format!("{remote:?}").contains("secret"));
    }

    #[test]
    fn a_token_file_is_one_small_regular_file_and_its_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let two = write(dir.path(), "two", "first\nsecond\n");
        assert_eq!(read_token(&two).expect("reads"), "first");
        let big = write(dir.path(), "big", &"x".repeat(5000));
        assert!(read_token(&big)
            .expect_err("too big")
            .to_string()
            .contains("4096"));
        assert!(read_token(dir.path())
            .expect_err("a directory")
            .to_string()
            .contains("regular"));
    }

    #[test]
    fn the_admin_token_is_found_under_the_config_files_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("d");
        std::fs::create_dir(&data).expect("mkdir");
        write(&data, ADMIN_TOKEN_FILE, "admin-secret\n");
        let config = write(
            dir.path(),
            "c.toml",
            &format!("[server]\ndata_dir = {:?}\n", data.display().to_string()),
        );
        let t = ClientArgs {
            config: Some(config),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect("resolves");
        assert_eq!(t.token.as_deref(), Some("admin-secret"));
    }

    #[test]
    fn tls_comes_from_the_flags_or_else_the_config_file_and_only_for_https() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = write(dir.path(), "ca.pem", "-----BEGIN CERTIFICATE-----\nx\n");
        let other = write(dir.path(), "other.pem", "-----BEGIN CERTIFICATE-----\ny\n");
        let config = write(
            dir.path(),
            "c.toml",
            &format!(
                "[client]\nserver = \"https://10.0.0.1:1\"\ntls_ca = {:?}\ntls_domain = \"escrow\"\n",
                ca.display().to_string()
            ),
        );
        let from_file = ClientArgs {
            config: Some(config.clone()),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect("resolves");
        let tls = from_file.tls.expect("https takes TLS");
        assert!(tls.ca_pem.ends_with(b"x\n"));
        assert_eq!(tls.domain.as_deref(), Some("escrow"));
        let flag = ClientArgs {
            config: Some(config.clone()),
            tls_ca: Some(other),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect("resolves");
        assert!(flag.tls.expect("TLS").ca_pem.ends_with(b"y\n"));
        // The config file's CA does not get in the way of a plain local server.
        let plain = ClientArgs {
            config: Some(config),
            server: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect("resolves");
        assert!(plain.tls.is_none());
        let no_ca = ClientArgs {
            server: Some("https://10.0.0.1:1".into()),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect_err("https without a CA");
        assert!(no_ca.to_string().contains("--tls-ca"), "{no_ca}");
        let half = ClientArgs {
            server: Some("https://10.0.0.1:1".into()),
            tls_ca: Some(ca.clone()),
            tls_key: Some(ca),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect_err("a key without its certificate");
        assert!(half.to_string().contains("--tls-cert"), "{half}");
    }

    #[test]
    fn a_missing_token_file_is_named() {
        let e = ClientArgs {
            token_file: Some("/nonexistent/token".into()),
            ..Default::default()
        }
        .resolve_with(no_env)
        .expect_err("refused");
        assert!(e.to_string().contains("/nonexistent/token"), "{e}");
    }
}
