//! The one place where the command line connects to a server: which server, which
//! token, and the `authorization: Bearer …` header on every call.
//!
//! Precedence, for every setting: flag > environment > config file > default. The
//! token is taken from the first of: `--token` / `CASE_ESCROW_TOKEN`, `--token-file` /
//! `CASE_ESCROW_TOKEN_FILE`, the config file's `[client] token_file`, the config
//! file's `<server.data_dir>/admin.token`, and `./data/admin.token` — the last two only
//! if the file exists, so a command against a server without tokens needs none.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use crate::api::error::code_name;
use crate::config::{ConfigFile, ADMIN_TOKEN_FILE};

pub const SERVER_DEFAULT: &str = "http://127.0.0.1:50051";
/// How long a command waits for the server to accept its connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub type CliError = Box<dyn std::error::Error + Send + Sync>;
pub type CliResult<T> = Result<T, CliError>;

/// The options every command that talks to a server takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// The server's address, e.g. http://127.0.0.1:50051 [default: http://127.0.0.1:50051]
    #[arg(long, env = "CASE_ESCROW_SERVER", global = true)]
    pub server: Option<String>,
    /// Your access token (prefer --token-file: a token on the command line is visible
    /// to other users of the machine).
    #[arg(long, env = "CASE_ESCROW_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A file holding your access token (one line), e.g. the server's
    /// data/admin.token.
    #[arg(long, env = "CASE_ESCROW_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// A configuration file (TOML) to take the server address and token file from.
    #[arg(long, env = "CASE_ESCROW_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// Where to connect and with which token, once every source has been weighed.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    pub token: Option<String>,
}

impl ClientArgs {
    /// Weighs flags and environment (already merged by clap) against the config file
    /// and the defaults.
    pub fn resolve(&self) -> CliResult<Target> {
        let file = match &self.config {
            Some(path) => Some(ConfigFile::load(path)?),
            None => None,
        };
        let client = file.as_ref().map(|f| f.client.clone()).unwrap_or_default();
        let server = self
            .server
            .clone()
            .or(client.server)
            .unwrap_or_else(|| SERVER_DEFAULT.to_owned());
        let token = if let Some(t) = &self.token {
            Some(t.trim().to_owned())
        } else if let Some(path) = &self.token_file {
            Some(read_token(path)?)
        } else if let Some(path) = &client.token_file {
            Some(read_token(path)?)
        } else {
            let data_dir = file
                .as_ref()
                .and_then(|f| f.server.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from("./data"));
            let path = data_dir.join(ADMIN_TOKEN_FILE);
            if path.is_file() {
                Some(read_token(&path)?)
            } else {
                None
            }
        };
        if token.as_deref() == Some("") {
            return Err("the token is empty: give --token or a --token-file holding one".into());
        }
        Ok(Target { server, token })
    }
}

fn read_token(path: &Path) -> CliResult<String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
    Ok(text.trim().to_owned())
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
        let channel = Channel::from_shared(self.server.clone())
            .map_err(|e| {
                format!(
                    "--server {}: not an address like {SERVER_DEFAULT} ({e})",
                    self.server
                )
            })?
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

        let none = ClientArgs::default().resolve().expect("resolves");
        assert_eq!(none.server, SERVER_DEFAULT);

        let from_file = ClientArgs {
            config: Some(config.clone()),
            ..Default::default()
        }
        .resolve()
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
        .resolve()
        .expect("resolves");
        assert_eq!(flags.server, "http://127.0.0.2:2");
        assert_eq!(flags.token.as_deref(), Some("from-flag-file"));

        let token = ClientArgs {
            config: Some(config),
            token: Some("t0k".into()),
            ..Default::default()
        }
        .resolve()
        .expect("resolves");
        assert_eq!(token.token.as_deref(), Some("t0k"));
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
        .resolve()
        .expect("resolves");
        assert_eq!(t.token.as_deref(), Some("admin-secret"));
    }

    #[test]
    fn a_missing_token_file_is_named() {
        let e = ClientArgs {
            token_file: Some("/nonexistent/token".into()),
            ..Default::default()
        }
        .resolve()
        .expect_err("refused");
        assert!(e.to_string().contains("/nonexistent/token"), "{e}");
    }
}
