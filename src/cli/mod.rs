//! The command line. `serve` starts the server; `special-account`, `case`, `suspense`
//! and `journal` are the daily forms of a finance office (`ops.rs`); `reconcile` runs
//! a reconciliation; `config check` validates a configuration file; `health` asks a
//! server whether it serves; `bench` and `bench-reconcile` measure; `verify`,
//! `backup`, `restore` and `rebuild` are tools for operators. Every command that talks
//! to a server connects through `client.rs`.

pub mod auth;
mod bench;
mod bench_reconcile;
pub mod client;
pub mod ops;
pub mod output;
mod procfs;
pub mod reconcile;
pub mod report_html;
pub mod statement;
mod tools;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api::pb;
use crate::config::{LogFormat, LogSettings, ServerOverrides};
use crate::server::Server;
use client::{exit, CliResult, ClientArgs};

#[derive(Parser)]
#[command(
    name = "case-escrow",
    version,
    about = "One case, one account: the ledger of court enforcement money (执行案款)",
    after_help = "Money is in yuan with up to 2 decimals (e.g. 1234.50). Case numbers look like \
(2024)云0102执123号. Exit codes: 0 done, 1 failed here, 2 wrong command line, \
3 refused by the server (its reason is printed), 4 server unreachable."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gRPC server on a data directory (created if missing).
    Serve(ServeArgs),
    /// A court's special account (执行款专户): open, change, close, show, list.
    #[command(name = "special-account")]
    SpecialAccount {
        #[command(flatten)]
        common: ops::Common,
        #[command(subcommand)]
        cmd: ops::SpecialCmd,
    },
    /// A case account (案款子账户) and its money: open, receipts, disbursements,
    /// transfers, reversals, deferrals, statement, close.
    Case {
        #[command(flatten)]
        common: ops::Common,
        #[command(subcommand)]
        cmd: ops::CaseCmd,
    },
    /// Who may call the server: add, disable, rotate, show, list principals; whoami.
    Principal {
        #[command(flatten)]
        common: ops::Common,
        #[command(subcommand)]
        cmd: ops::PrincipalCmd,
    },
    /// Unidentified receipts (不明款) held in a special account's suspense.
    Suspense {
        #[command(flatten)]
        common: ops::Common,
        #[command(subcommand)]
        cmd: ops::SuspenseCmd,
    },
    /// The journal: its digest, a check of its hash chain, and its entries as they come.
    Journal {
        #[command(flatten)]
        common: ops::Common,
        #[command(subcommand)]
        cmd: ops::JournalCmd,
    },
    /// The configuration file.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Ask a server whether it is serving (the standard gRPC health check); exits 0 if
    /// it is. For container health checks.
    Health {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check the whole journal offline: checksums, sequence numbers and the hash chain.
    /// Exits non-zero and names the first broken entry if anything was altered.
    Verify {
        #[arg(long, env = "CASE_ESCROW_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Take an online, consistent backup from a running server into FILE.
    Backup {
        /// The file to write (written whole or not at all).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore a backup into a new, empty data directory, verifying it first.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        /// The engine to build the state in (sled if not named).
        #[arg(long, value_enum)]
        state_engine: Option<crate::store::Engine>,
    },
    /// Rebuild every balance and index from the journal alone (the server must be
    /// stopped; the old state is moved aside, not deleted).
    Rebuild {
        #[arg(long, env = "CASE_ESCROW_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// The engine to rebuild the state into; by default the one the directory
        /// has (sled if none). Rebuilding into the other moves the state to it.
        #[arg(long, value_enum)]
        state_engine: Option<crate::store::Engine>,
    },
    /// Reconcile a case-flow export or a bank statement against a running server.
    Reconcile(ReconcileArgs),
    /// Load a server over gRPC on loopback and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Measure a case-flow reconciliation of many rows (see BENCHMARKS.md).
    BenchReconcile(bench_reconcile::BenchArgs),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check a configuration file and print the settings a server would run with:
    /// the file's, overridden by environment variables and by any flags given here
    /// (the same flags as `serve`). Each line says where its value came from.
    Check {
        /// The TOML file.
        file: PathBuf,
        #[command(flatten)]
        overrides: ServerOverrides,
    },
}

#[derive(clap::Args)]
struct ReconcileArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Where the report goes: OUT.csv, OUT.jsonl and OUT.html (default: FILE.report).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, global = true)]
    quiet: bool,
    /// Override the server's limits for this run (days; 0 keeps the server's).
    #[arg(long, global = true, default_value_t = 0)]
    disburse_within_days: u32,
    #[arg(long, global = true, default_value_t = 0)]
    after_deferral_days: u32,
    #[arg(long, global = true, default_value_t = 0)]
    suspense_age_days: u32,
    #[command(subcommand)]
    what: ReconcileWhat,
}

#[derive(Subcommand)]
enum ReconcileWhat {
    /// A case-flow export (docs/formats.md): one row per case.
    CaseFlow {
        file: PathBuf,
        /// The day the limits are measured at (YYYY-MM-DD; default today).
        #[arg(long)]
        as_of: Option<String>,
        /// A court code prefix whose every case account the file should list.
        #[arg(long, default_value = "")]
        court_scope: String,
    },
    /// One special account's bank statement (docs/formats.md).
    Bank {
        file: PathBuf,
        #[arg(long)]
        special_account: String,
        /// The statement's opening and closing balances.
        #[arg(long)]
        opening: String,
        #[arg(long)]
        closing: String,
        /// The statement's period (default: its first and last value dates).
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    overrides: ServerOverrides,
}

/// Logs go to stderr: human lines (coloured on a terminal) or one JSON object a line.
fn init_logging(log: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder
            .json()
            // The call's span (rpc, request_id) on every line, flattened into one object.
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = match &cli.command {
        Command::Serve(args) => match args.overrides.effective() {
            Ok(e) => e.server.log,
            Err(e) => {
                eprintln!("case-escrow: {e}");
                return ExitCode::from(exit::FAILED);
            }
        },
        _ => LogSettings {
            format: LogFormat::Human,
            level: std::env::var("CASE_ESCROW_LOG").unwrap_or_else(|_| "warn".into()),
        },
    };
    init_logging(&log);
    let command = match cli.command {
        // The bench builds its own runtimes, one for the server and one for the clients.
        Command::Bench(args) => return bench::main(args),
        Command::Config {
            cmd: ConfigCmd::Check { file, overrides },
        } => return config_check(file, overrides),
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("case-escrow: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: CliResult<()> = runtime.block_on(async {
        match command {
            Command::Serve(args) => serve(args).await,
            Command::SpecialAccount { common, cmd } => ops::special(common, cmd).await,
            Command::Case { common, cmd } => ops::case(common, cmd).await,
            Command::Suspense { common, cmd } => ops::suspense(common, cmd).await,
            Command::Principal { common, cmd } => ops::principal(common, cmd).await,
            Command::Journal { common, cmd } => ops::journal(common, cmd).await,
            Command::Health { client } => ops::health(client).await,
            Command::Verify { data_dir } => tools::verify(&data_dir),
            Command::Backup { to, client } => tools::backup(&client.resolve()?, &to).await,
            Command::Restore {
                from,
                data_dir,
                state_engine,
            } => tools::restore(&from, &data_dir, state_engine).await,
            Command::Rebuild {
                data_dir,
                state_engine,
            } => tools::rebuild(&data_dir, state_engine).await,
            Command::Reconcile(args) => run_reconcile(args).await,
            Command::BenchReconcile(args) => bench_reconcile::run(args).await,
            Command::Bench(_) | Command::Config { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(client::report(e.as_ref())),
    }
}

fn config_check(file: PathBuf, mut overrides: ServerOverrides) -> ExitCode {
    overrides.config = Some(file.clone());
    match overrides.effective() {
        Ok(e) => {
            println!(
                "# {}: valid. The settings a server would run with:",
                file.display()
            );
            print!("{}", e.to_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("case-escrow: {e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

async fn serve(args: ServeArgs) -> CliResult<()> {
    let effective = args.overrides.effective()?;
    // The TLS files are read before the store is opened (and before a first start
    // writes the administrator's token), so a wrong path changes nothing.
    let tls = match &effective.tls {
        Some(t) => Some(crate::server::TlsConfig::from_files(
            &t.cert,
            &t.key,
            t.client_ca.as_deref(),
        )?),
        None => None,
    };
    let tls_off = tls.is_none();
    let config = effective.server;
    let data_dir = config.data_dir.clone();
    let server = Server::bind(config).await?;
    let server = match tls {
        Some(tls) => server.with_tls(tls),
        None => server,
    };
    let addr = server.local_addr();
    let metrics = server.metrics_addr();
    if tls_off && !addr.ip().is_loopback() {
        // Tokens are bearer secrets: on a network without TLS anyone on the path holds
        // them. A container binding 0.0.0.0 behind a port published to its host alone
        // is the usual exception, so this is said, not refused.
        tracing::warn!(%addr, "listening beyond loopback without TLS: every token crosses the network in clear (set tls_cert and tls_key)");
    }
    if metrics.is_some_and(|m| !m.ip().is_loopback()) {
        tracing::warn!(metrics = ?metrics, "metrics beyond loopback: /metrics has no authentication and shows money totals");
    }
    tracing::info!(%addr, data_dir = %data_dir.display(), metrics = ?metrics, "serving");
    // One line on stdout, for scripts and tests that start the server on port 0.
    match metrics {
        Some(m) => println!("case-escrow listening on {addr}; metrics on http://{m}/metrics"),
        None => println!("case-escrow listening on {addr}"),
    }
    server.run(shutdown_signal()).await?;
    Ok(())
}

fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

/// The report's prefix; refused when one of its files would be the file being read
/// (`--out export` beside `export.csv`): writing the report would destroy the export
/// while it is still being read.
fn report_path(out: Option<PathBuf>, file: &std::path::Path) -> CliResult<PathBuf> {
    let report = out.unwrap_or_else(|| {
        let mut p = file.as_os_str().to_owned();
        p.push(".report");
        PathBuf::from(p)
    });
    let input = std::fs::metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
    for suffix in [".csv", ".jsonl", ".html"] {
        let output = with_suffix(&report, suffix);
        // The same file by any name: a relative path, `..`, a symbolic or hard link.
        if std::fs::metadata(&output).is_ok_and(|o| same_file(&o, &input)) {
            return Err(format!(
                "--out {} would write the report over {}, the file being reconciled; choose another prefix",
                report.display(),
                file.display()
            )
            .into());
        }
    }
    Ok(report)
}

async fn run_reconcile(args: ReconcileArgs) -> CliResult<()> {
    let limits = Some(pb::Limits {
        disburse_within_days: args.disburse_within_days,
        after_deferral_days: args.after_deferral_days,
        suspense_age_days: args.suspense_age_days,
    });
    let report = match &args.what {
        ReconcileWhat::CaseFlow { file, .. } | ReconcileWhat::Bank { file, .. } => {
            report_path(args.out, file)?
        }
    };
    let mut client = reconcile::connect(&args.client.resolve()?).await?;
    match args.what {
        ReconcileWhat::CaseFlow {
            file,
            as_of,
            court_scope,
        } => {
            let as_of = as_of
                .unwrap_or_else(|| crate::domain::Date::in_china(crate::api::now()).to_string());
            let header = pb::CaseFlowHeader {
                as_of,
                as_of_sequence: 0,
                court_scope,
                limits,
            };
            let (summary, _) =
                reconcile::case_flow(&mut client, &file, header, &report, args.quiet).await?;
            print!("{}", reconcile::case_flow_table(&summary));
            let html = with_suffix(&report, ".html");
            statement::write_atomically(&html, report_html::case_flow(&summary)?.as_bytes())?;
            println!(
                "Full report: {r}.csv and {r}.jsonl; printable summary: {r}.html",
                r = report.display()
            );
        }
        ReconcileWhat::Bank {
            file,
            special_account,
            opening,
            closing,
            from,
            to,
        } => {
            let (period_from, period_to) = match (from, to) {
                (Some(f), Some(t)) => (f, t),
                (f, t) => {
                    let (first, last) = reconcile::statement_period(&file)?;
                    (f.unwrap_or(first), t.unwrap_or(last))
                }
            };
            let header = pb::BankStatementHeader {
                special_account_id: special_account,
                period_from,
                period_to,
                opening_balance: opening,
                closing_balance: closing,
                as_of_sequence: 0,
                limits,
            };
            let summary = reconcile::bank(&mut client, &file, header, &report, args.quiet).await?;
            print!("{}", reconcile::bank_table(&summary));
            let html = with_suffix(&report, ".html");
            statement::write_atomically(&html, report_html::bank(&summary).as_bytes())?;
            println!(
                "Full report: {r}.csv and {r}.jsonl; printable summary: {r}.html",
                r = report.display()
            );
        }
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    /// clap checks a command's definition only when that command is parsed; this checks
    /// every subcommand at once (e.g. that no two flattened option sets share a flag).
    #[test]
    fn every_command_line_form_is_well_defined() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn a_report_is_never_written_over_the_file_it_reports_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let export = dir.path().join("export.csv");
        std::fs::write(&export, "case_number\n").expect("write");
        let refused = super::report_path(Some(dir.path().join("export")), &export)
            .expect_err("export.csv is the file being read");
        assert!(
            refused.to_string().contains("choose another prefix"),
            "{refused}"
        );
        let through_dots = dir.path().join("sub").join("..").join("export");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        assert!(super::report_path(Some(through_dots), &export).is_err());
        let beside = super::report_path(Some(dir.path().join("export-report")), &export)
            .expect("another prefix");
        assert_eq!(beside, dir.path().join("export-report"));
        let default = super::report_path(None, &export).expect("the default");
        assert_eq!(default, dir.path().join("export.csv.report"));
        // A hard link is the same file under another name.
        std::fs::hard_link(&export, dir.path().join("linked.csv")).expect("link");
        assert!(super::report_path(Some(dir.path().join("linked")), &export).is_err());
    }
}
