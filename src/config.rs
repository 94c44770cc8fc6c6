//! The configuration: one TOML file, every setting of which an environment variable
//! (`CASE_ESCROW_*`) and a flag override. Precedence: flag > environment > file >
//! default. `case-escrow config check FILE` prints what a server would use.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:50051"
//! data_dir = "/var/lib/case-escrow"
//! shutdown_grace_s = 10
//! disk_reserve_mb = 64
//! state_engine = "auto"   # or "sled", "fjall"; auto: the directory's, sled if new
//! metrics_listen = "127.0.0.1:9464"   # or "off" (the default)
//! disburse_within_days = 30
//! after_deferral_days = 10
//! suspense_age_days = 3
//!
//! [log]
//! format = "human"   # or "json"
//! level = "info"     # a filter: "info", "case_escrow=debug", …
//!
//! [client]
//! server = "http://127.0.0.1:50051"
//! token_file = "/var/lib/case-escrow/admin.token"
//! tls_ca = "/etc/case-escrow/ca.pem"   # for an https:// server
//! ```

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::reconcile::Limits;
use crate::server::{ServerConfig, SHUTDOWN_GRACE_DEFAULT};

/// The administrator's token file in a data directory (one name, the server's).
pub use crate::api::principals::ADMIN_TOKEN_FILE;

/// The longest shutdown grace accepted: longer is a typo, not a wish.
pub const SHUTDOWN_GRACE_S_MAX: u64 = 3600;
/// The longest a limit on holding money may be set to (days).
pub const LIMIT_DAYS_MAX: u32 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{key}: {reason}")]
    Value { key: &'static str, reason: String },
}

/// The file as written: every setting optional, unknown keys refused (a misspelt key
/// would otherwise be silently ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub client: ClientSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub shutdown_grace_s: Option<u64>,
    pub disk_reserve_mb: Option<u64>,
    pub state_engine: Option<String>,
    pub metrics_listen: Option<String>,
    pub disburse_within_days: Option<u32>,
    pub after_deferral_days: Option<u32>,
    pub suspense_age_days: Option<u32>,
    pub approval_tiers_yuan: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    pub server: Option<String>,
    pub token_file: Option<PathBuf>,
    /// For an https:// server; see the command line's --tls-ca, --tls-cert, --tls-key
    /// and --tls-domain.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_domain: Option<String>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| ConfigError::File {
            path: path.to_owned(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }
}

/// The server's settings from flags and environment (clap merges those two).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerOverrides {
    /// A configuration file (TOML); flags and environment override what it says.
    #[arg(long, env = "CASE_ESCROW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on. Use 127.0.0.1:0 for any free port (it is printed).
    /// [default: 127.0.0.1:50051]
    #[arg(long, env = "CASE_ESCROW_LISTEN")]
    pub listen: Option<String>,
    /// Directory holding the journal and the state. [default: ./data]
    #[arg(long, env = "CASE_ESCROW_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seconds to let open calls finish at shutdown. [default: 10]
    #[arg(long, env = "CASE_ESCROW_SHUTDOWN_GRACE_S")]
    pub shutdown_grace_s: Option<u64>,
    /// Free space (MiB) to keep on the data directory's disk; below it writes are
    /// refused with RESOURCE_EXHAUSTED until space is freed. [default: 64]
    #[arg(long, env = "CASE_ESCROW_DISK_RESERVE_MB")]
    pub disk_reserve_mb: Option<u64>,
    /// The engine of the derived state: "sled", "fjall", or "auto" (the one the data
    /// directory has; sled for a new one). To move a state to the other engine, use
    /// `case-escrow rebuild --state-engine …`. [default: auto]
    #[arg(long, env = "CASE_ESCROW_STATE_ENGINE")]
    pub state_engine: Option<String>,
    /// Where to serve Prometheus metrics over HTTP (GET /metrics), e.g.
    /// 127.0.0.1:9464; "off" serves none. [default: off]
    #[arg(long, env = "CASE_ESCROW_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Days within which received money must be paid out (reconciliation). [default: 30]
    #[arg(long, env = "CASE_ESCROW_DISBURSE_WITHIN_DAYS")]
    pub disburse_within_days: Option<u32>,
    /// Days within which money is paid once a deferral ends. [default: 10]
    #[arg(long, env = "CASE_ESCROW_AFTER_DEFERRAL_DAYS")]
    pub after_deferral_days: Option<u32>,
    /// Days an unidentified receipt may wait in suspense. [default: 3]
    #[arg(long, env = "CASE_ESCROW_SUSPENSE_AGE_DAYS")]
    pub suspense_age_days: Option<u32>,
    /// Approval tiers: rising amounts in yuan, comma-separated; a disbursement of the
    /// n-th or more (以上) needs an approver of level n + 1. [default: 100000]
    #[arg(long, env = "CASE_ESCROW_APPROVAL_TIERS_YUAN")]
    pub approval_tiers_yuan: Option<String>,
    /// PEM certificate (chain) to serve TLS with; needs --tls-key.
    #[arg(long, env = "CASE_ESCROW_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CASE_ESCROW_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) whose client certificates are accepted (mutual TLS); a
    /// certificate authenticates the principal registered with its SHA-256.
    #[arg(long, env = "CASE_ESCROW_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Log lines as "human" text or as "json" objects, one a line. [default: human]
    #[arg(long, env = "CASE_ESCROW_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Which log lines to write: "info", "warn", "case_escrow=debug", …
    /// [default: info]
    #[arg(long, env = "CASE_ESCROW_LOG")]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// Where an effective setting came from, for `config check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Override,
    File,
    Default,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Override => "flag or environment",
            Source::File => "config file",
            Source::Default => "default",
        }
    }
}

/// The effective settings, each with where it came from.
#[derive(Debug, Clone)]
pub struct Effective {
    pub server: ServerConfig,
    pub tls: Option<TlsFiles>,
    pub sources: Vec<(&'static str, String, Source)>,
}

fn pick<T: Clone>(over: &Option<T>, file: &Option<T>, default: T) -> (T, Source) {
    match (over, file) {
        (Some(v), _) => (v.clone(), Source::Override),
        (None, Some(v)) => (v.clone(), Source::File),
        (None, None) => (default, Source::Default),
    }
}

impl ServerOverrides {
    /// Reads the config file (if any) and weighs it against these overrides.
    pub fn effective(&self) -> Result<Effective, ConfigError> {
        let file = match &self.config {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::default(),
        };
        self.effective_with(&file)
    }

    pub fn effective_with(&self, file: &ConfigFile) -> Result<Effective, ConfigError> {
        let s = &file.server;
        let d = ServerConfig::default();
        let mut sources = Vec::new();
        let mut note = |key: &'static str, shown: String, src: Source| {
            sources.push((key, shown, src));
        };

        let (listen, src) = pick(&self.listen, &s.listen, d.listen.to_string());
        let listen = parse_addr("server.listen", &listen)?;
        note("server.listen", quote(&listen.to_string()), src);

        let (data_dir, src) = pick(&self.data_dir, &s.data_dir, d.data_dir.clone());
        if data_dir.as_os_str().is_empty() {
            return Err(value("server.data_dir", "must name a directory"));
        }
        note(
            "server.data_dir",
            quote(&data_dir.display().to_string()),
            src,
        );

        let (grace, src) = pick(
            &self.shutdown_grace_s,
            &s.shutdown_grace_s,
            SHUTDOWN_GRACE_DEFAULT.as_secs(),
        );
        if grace > SHUTDOWN_GRACE_S_MAX {
            return Err(value(
                "server.shutdown_grace_s",
                &format!("{grace} is more than {SHUTDOWN_GRACE_S_MAX} seconds"),
            ));
        }
        note("server.shutdown_grace_s", grace.to_string(), src);

        let (reserve_mb, src) = pick(
            &self.disk_reserve_mb,
            &s.disk_reserve_mb,
            d.store.disk_reserve_bytes >> 20,
        );
        note("server.disk_reserve_mb", reserve_mb.to_string(), src);

        let (engine_text, src) = pick(&self.state_engine, &s.state_engine, "auto".to_owned());
        let state_engine = match engine_text.trim() {
            "auto" => None,
            "sled" => Some(crate::store::Engine::Sled),
            "fjall" => Some(crate::store::Engine::Fjall),
            other => {
                return Err(value(
                    "server.state_engine",
                    &format!("{other:?} is not \"auto\", \"sled\" or \"fjall\""),
                ))
            }
        };
        note("server.state_engine", quote(&engine_text), src);

        let (metrics, src) = pick(&self.metrics_listen, &s.metrics_listen, "off".to_owned());
        let metrics_listen = match metrics.trim() {
            "" | "off" => None,
            text => Some(parse_addr("server.metrics_listen", text)?),
        };
        note("server.metrics_listen", quote(&metrics), src);

        let dl = Limits::default();
        let mut day = |key: &'static str, o: &Option<u32>, f: &Option<u32>, default: u32| {
            let (v, src) = pick(o, f, default);
            if v == 0 || v > LIMIT_DAYS_MAX {
                return Err(value(
                    key,
                    &format!("{v} is not between 1 and {LIMIT_DAYS_MAX} days"),
                ));
            }
            note(key, v.to_string(), src);
            Ok(v)
        };
        let limits = Limits {
            disburse_within_days: day(
                "server.disburse_within_days",
                &self.disburse_within_days,
                &s.disburse_within_days,
                dl.disburse_within_days,
            )?,
            after_deferral_days: day(
                "server.after_deferral_days",
                &self.after_deferral_days,
                &s.after_deferral_days,
                dl.after_deferral_days,
            )?,
            suspense_age_days: day(
                "server.suspense_age_days",
                &self.suspense_age_days,
                &s.suspense_age_days,
                dl.suspense_age_days,
            )?,
        };

        let (tiers_text, src) = pick(
            &self.approval_tiers_yuan,
            &s.approval_tiers_yuan,
            "100000".to_owned(),
        );
        let approval_tiers = approval_tiers(&tiers_text)?;
        note("server.approval_tiers_yuan", quote(&tiers_text), src);

        let path = |o: &Option<PathBuf>, f: &Option<PathBuf>| o.clone().or_else(|| f.clone());
        let tls = match (
            path(&self.tls_cert, &s.tls_cert),
            path(&self.tls_key, &s.tls_key),
            path(&self.tls_client_ca, &s.tls_client_ca),
        ) {
            (None, None, None) => None,
            (Some(cert), Some(key), client_ca) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (_, None, _) => {
                return Err(value(
                    "server.tls_key",
                    "TLS needs both tls_cert and tls_key",
                ))
            }
            (None, _, _) => {
                return Err(value(
                    "server.tls_cert",
                    "TLS needs both tls_cert and tls_key (and tls_client_ca only with them)",
                ))
            }
        };
        if let Some(t) = &tls {
            let src = if self.tls_cert.is_some() {
                Source::Override
            } else {
                Source::File
            };
            note("server.tls_cert", quote(&t.cert.display().to_string()), src);
            note("server.tls_key", quote(&t.key.display().to_string()), src);
            if let Some(ca) = &t.client_ca {
                note(
                    "server.tls_client_ca",
                    quote(&ca.display().to_string()),
                    src,
                );
            }
        }

        let (format, src) = pick(&self.log_format, &file.log.format, "human".to_owned());
        let format = match format.as_str() {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                return Err(value(
                    "log.format",
                    &format!("{other:?} is neither \"human\" nor \"json\""),
                ))
            }
        };
        note(
            "log.format",
            quote(if format == LogFormat::Json {
                "json"
            } else {
                "human"
            }),
            src,
        );
        let (level, src) = pick(&self.log_level, &file.log.level, "info".to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
            return Err(value(
                "log.level",
                &format!("{level:?} is not a log filter: {e}"),
            ));
        }
        note("log.level", quote(&level), src);

        Ok(Effective {
            server: ServerConfig {
                listen,
                data_dir,
                shutdown_grace: Duration::from_secs(grace),
                store: crate::store::StoreOptions {
                    disk_reserve_bytes: reserve_mb.saturating_mul(1 << 20),
                    approval_tiers,
                    engine: state_engine,
                    faults: None,
                },
                metrics_listen,
                limits,
                log: LogSettings { format, level },
            },
            tls,
            sources,
        })
    }
}

impl Effective {
    /// The effective settings as a TOML file, each line saying where it came from.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let mut section = "";
        for (key, shown, src) in &self.sources {
            let (sec, name) = key.split_once('.').unwrap_or(("", key));
            if sec != section {
                if !section.is_empty() {
                    out.push('\n');
                }
                let _ = writeln!(out, "[{sec}]");
                section = sec;
            }
            let _ = writeln!(out, "{name} = {shown}  # {}", src.label());
        }
        out
    }
}

/// `100000,1000000` as tiers.
fn approval_tiers(text: &str) -> Result<crate::domain::ApprovalTiers, ConfigError> {
    let key = "server.approval_tiers_yuan";
    let mut fen = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let amount =
            crate::domain::Amount::parse(part).map_err(|e| value(key, &format!("{part}: {e}")))?;
        fen.push(amount.fen());
    }
    // An empty value (an unset variable in a compose file, say) would otherwise take the
    // tiers away, letting a first-level approver approve any amount.
    if fen.is_empty() {
        return Err(value(
            key,
            "is empty: give one to four amounts in yuan, each larger than the one before (the default is 100000)",
        ));
    }
    crate::domain::ApprovalTiers::new(&fen)
        .ok_or_else(|| value(key, "at most four amounts, each larger than the one before"))
}

/// The PEM files of server TLS; read (and checked) before the server opens its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

fn quote(s: &str) -> String {
    // A TOML basic string: the same escapes as JSON for what a path or address holds.
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn value(key: &'static str, reason: &str) -> ConfigError {
    ConfigError::Value {
        key,
        reason: reason.to_owned(),
    }
}

fn parse_addr(key: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| {
        value(
            key,
            &format!("{text:?} is not an address and port like 127.0.0.1:50051"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(text).expect("parses")
    }

    #[test]
    fn a_flag_beats_the_file_and_the_file_beats_the_default() {
        let f = file(
            "[server]\nlisten = \"127.0.0.1:6000\"\ndisk_reserve_mb = 5\n\n[log]\nformat = \"json\"\n",
        );
        let none = ServerOverrides::default()
            .effective_with(&f)
            .expect("valid");
        assert_eq!(none.server.listen.port(), 6000);
        assert_eq!(none.server.store.disk_reserve_bytes, 5 << 20);
        assert_eq!(none.server.log.format, LogFormat::Json);
        assert_eq!(none.server.shutdown_grace, SHUTDOWN_GRACE_DEFAULT);
        assert_eq!(none.server.metrics_listen, None);

        let over = ServerOverrides {
            listen: Some("127.0.0.1:7000".into()),
            log_format: Some("human".into()),
            metrics_listen: Some("127.0.0.1:9464".into()),
            ..Default::default()
        }
        .effective_with(&f)
        .expect("valid");
        assert_eq!(over.server.listen.port(), 7000);
        assert_eq!(over.server.log.format, LogFormat::Human);
        assert_eq!(over.server.store.disk_reserve_bytes, 5 << 20);
        assert_eq!(over.server.metrics_listen.map(|a| a.port()), Some(9464));
        let shown = over.to_toml();
        assert!(
            shown.contains("listen = \"127.0.0.1:7000\"  # flag or environment"),
            "{shown}"
        );
        assert!(
            shown.contains("disk_reserve_mb = 5  # config file"),
            "{shown}"
        );
        assert!(
            shown.contains("suspense_age_days = 3  # default"),
            "{shown}"
        );
    }

    #[test]
    fn environment_overrides_the_file_through_the_same_arguments() {
        // clap fills ServerOverrides from the environment when no flag is given; the
        // flag wins over the variable.
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            o: ServerOverrides,
        }
        // No other test reads this variable, so setting it races with none.
        std::env::set_var("CASE_ESCROW_AFTER_DEFERRAL_DAYS", "12");
        let f = file("[server]\nafter_deferral_days = 11\n");
        let from_env = Cmd::parse_from(["x"]).o.effective_with(&f).expect("valid");
        assert_eq!(from_env.server.limits.after_deferral_days, 12);
        let from_flag = Cmd::parse_from(["x", "--after-deferral-days", "13"])
            .o
            .effective_with(&f)
            .expect("valid");
        assert_eq!(from_flag.server.limits.after_deferral_days, 13);
        std::env::remove_var("CASE_ESCROW_AFTER_DEFERRAL_DAYS");
        let from_file = Cmd::parse_from(["x"]).o.effective_with(&f).expect("valid");
        assert_eq!(from_file.server.limits.after_deferral_days, 11);
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let cases: [(&str, &str); 10] = [
            ("[server]\nlisten = \"localhost\"\n", "server.listen"),
            (
                "[server]\napproval_tiers_yuan = \"\"\n",
                "server.approval_tiers_yuan",
            ),
            (
                "[server]\napproval_tiers_yuan = \" , \"\n",
                "server.approval_tiers_yuan",
            ),
            (
                "[server]\nstate_engine = \"rocksdb\"\n",
                "server.state_engine",
            ),
            (
                "[server]\nmetrics_listen = \"9464\"\n",
                "server.metrics_listen",
            ),
            (
                "[server]\nsuspense_age_days = 0\n",
                "server.suspense_age_days",
            ),
            (
                "[server]\nshutdown_grace_s = 99999\n",
                "server.shutdown_grace_s",
            ),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[log]\nlevel = \"=[\"\n", "log.level"),
            ("[server]\ndata_dir = \"\"\n", "server.data_dir"),
        ];
        for (text, key) in cases {
            let e = ServerOverrides::default()
                .effective_with(&file(text))
                .expect_err(text);
            assert!(e.to_string().starts_with(key), "{text}: {e}");
        }
    }

    #[test]
    fn the_example_file_is_valid() {
        let f = file(include_str!("../case-escrow.example.toml"));
        let e = ServerOverrides::default()
            .effective_with(&f)
            .expect("valid");
        assert_eq!(e.server.metrics_listen.map(|a| a.port()), Some(9464));
        assert_eq!(f.client.server.as_deref(), Some("http://127.0.0.1:50051"));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_by_name() {
        let e =
            ConfigFile::parse("[server]\nlisten_addr = \"127.0.0.1:1\"\n").expect_err("unknown");
        assert!(e.contains("listen_addr"), "{e}");
        let e = ConfigFile::parse("[server]\ndisk_reserve_mb = \"lots\"\n").expect_err("type");
        assert!(e.contains("disk_reserve_mb"), "{e}");
    }
}
