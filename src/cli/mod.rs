//! The command line: `serve` starts the server; `bench` loads one and measures it;
//! `reconcile` runs a reconciliation against a running server and `bench-reconcile`
//! measures one; `verify`, `backup`, `restore` and `rebuild` are tools for operators.

pub mod auth;
mod bench;
mod bench_reconcile;
pub mod reconcile;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::api::pb;
use crate::reconcile::Limits;
use crate::server::{Server, ServerConfig, SHUTDOWN_GRACE_DEFAULT};

#[derive(Parser)]
#[command(
    name = "case-escrow",
    version,
    about = "One case, one account: the ledger of court enforcement money"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gRPC server on a data directory (created if missing).
    Serve(ServeArgs),
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
        #[arg(
            long,
            env = "CASE_ESCROW_SERVER",
            default_value = "http://127.0.0.1:50051"
        )]
        server: String,
        #[command(flatten)]
        token: auth::TokenArgs,
    },
    /// Restore a backup into a new, empty data directory, verifying it first.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Rebuild every balance and index from the journal alone (the server must be
    /// stopped; the old state is moved aside, not deleted).
    Rebuild {
        #[arg(long, env = "CASE_ESCROW_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Reconcile a case-flow export or a bank statement against a running server.
    Reconcile(ReconcileArgs),
    /// Load a server over gRPC on loopback and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Measure a case-flow reconciliation of many rows (see BENCHMARKS.md).
    BenchReconcile(bench_reconcile::BenchArgs),
}

#[derive(clap::Args)]
struct ReconcileArgs {
    /// The server to ask.
    #[arg(
        long,
        env = "CASE_ESCROW_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    #[command(flatten)]
    token: auth::TokenArgs,
    /// Where the report goes: OUT.csv and OUT.jsonl (default: FILE.report).
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
    /// A case-flow export (formats.md): one row per case.
    CaseFlow {
        file: PathBuf,
        /// The day the limits are measured at (YYYY-MM-DD; default today).
        #[arg(long)]
        as_of: Option<String>,
        /// A court code prefix whose every case account the file should list.
        #[arg(long, default_value = "")]
        court_scope: String,
    },
    /// One special account's bank statement (formats.md).
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
    /// Address to listen on. Use 127.0.0.1:0 for any free port (it is printed).
    #[arg(long, env = "CASE_ESCROW_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Directory holding the journal and the state.
    #[arg(long, env = "CASE_ESCROW_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Free space (MiB) to keep on the data directory's disk; below it writes are
    /// refused with RESOURCE_EXHAUSTED until space is freed.
    #[arg(long, env = "CASE_ESCROW_DISK_RESERVE_MB", default_value_t = crate::store::DISK_RESERVE_BYTES_DEFAULT >> 20)]
    disk_reserve_mb: u64,
    /// Seconds to let open calls finish at shutdown.
    #[arg(long, env = "CASE_ESCROW_SHUTDOWN_GRACE_S", default_value_t = SHUTDOWN_GRACE_DEFAULT.as_secs())]
    shutdown_grace_s: u64,
    /// Days within which received money must be paid out (reconciliation).
    #[arg(long, env = "CASE_ESCROW_DISBURSE_WITHIN_DAYS", default_value_t = Limits::default().disburse_within_days)]
    disburse_within_days: u32,
    /// Days within which money is paid once a deferral ends.
    #[arg(long, env = "CASE_ESCROW_AFTER_DEFERRAL_DAYS", default_value_t = Limits::default().after_deferral_days)]
    after_deferral_days: u32,
    /// Days an unidentified receipt may wait in suspense.
    #[arg(long, env = "CASE_ESCROW_SUSPENSE_AGE_DAYS", default_value_t = Limits::default().suspense_age_days)]
    suspense_age_days: u32,
    /// Approval tiers: rising amounts in yuan, comma-separated; a disbursement above
    /// the n-th needs an approver of level n + 1.
    #[arg(
        long,
        env = "CASE_ESCROW_APPROVAL_TIERS_YUAN",
        default_value = "100000"
    )]
    approval_tiers_yuan: String,
    /// PEM certificate (chain) to serve TLS with; needs --tls-key.
    #[arg(long, env = "CASE_ESCROW_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CASE_ESCROW_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) whose client certificates are accepted (mutual TLS); a
    /// certificate authenticates the principal registered with its SHA-256.
    #[arg(long, env = "CASE_ESCROW_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

/// `--approval-tiers-yuan 100000,1000000` as tiers.
fn approval_tiers(text: &str) -> Result<crate::domain::ApprovalTiers, String> {
    let mut fen = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let amount = crate::domain::Amount::parse(part)
            .map_err(|e| format!("--approval-tiers-yuan: {part}: {e}"))?;
        fen.push(amount.fen());
    }
    crate::domain::ApprovalTiers::new(&fen).ok_or_else(|| {
        "--approval-tiers-yuan: at most four amounts, each larger than the one before".to_owned()
    })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CASE_ESCROW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let command = match cli.command {
        // The bench builds its own runtimes, one for the server and one for the clients.
        Command::Bench(args) => return bench::main(args),
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
    let result = runtime.block_on(async {
        match command {
            Command::Serve(args) => serve(args).await,
            Command::Verify { data_dir } => tools::verify(&data_dir),
            Command::Backup { to, server, token } => {
                tools::backup(&server, &to, auth::bearer(&token)?).await
            }
            Command::Restore { from, data_dir } => tools::restore(&from, &data_dir).await,
            Command::Rebuild { data_dir } => tools::rebuild(&data_dir).await,
            Command::Reconcile(args) => run_reconcile(args).await.map_err(|e| e as _),
            Command::BenchReconcile(args) => bench_reconcile::run(args).await.map_err(|e| e as _),
            Command::Bench(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("case-escrow: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::bind(ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_s),
        store: crate::store::StoreOptions {
            disk_reserve_bytes: args.disk_reserve_mb.saturating_mul(1 << 20),
            approval_tiers: approval_tiers(&args.approval_tiers_yuan)?,
        },
    })
    .await?
    .with_limits(Limits {
        disburse_within_days: args.disburse_within_days,
        after_deferral_days: args.after_deferral_days,
        suspense_age_days: args.suspense_age_days,
    });
    let server = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => server.with_tls(crate::server::TlsConfig::from_files(
            cert,
            key,
            args.tls_client_ca.as_deref(),
        )?),
        _ => server,
    };
    let addr = server.local_addr();
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "serving");
    // One line on stdout, for scripts and tests that start the server on port 0.
    println!("case-escrow listening on {addr}");
    server.run(shutdown_signal()).await?;
    Ok(())
}

fn report_path(out: Option<PathBuf>, file: &std::path::Path) -> PathBuf {
    out.unwrap_or_else(|| {
        let mut p = file.as_os_str().to_owned();
        p.push(".report");
        PathBuf::from(p)
    })
}

async fn run_reconcile(args: ReconcileArgs) -> reconcile::CliResult<()> {
    let limits = Some(pb::Limits {
        disburse_within_days: args.disburse_within_days,
        after_deferral_days: args.after_deferral_days,
        suspense_age_days: args.suspense_age_days,
    });
    let mut client = reconcile::connect(&args.server, auth::bearer(&args.token)?).await?;
    match args.what {
        ReconcileWhat::CaseFlow {
            file,
            as_of,
            court_scope,
        } => {
            let report = report_path(args.out, &file);
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
            println!(
                "Full report: {}.csv and {}.jsonl",
                report.display(),
                report.display()
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
            let report = report_path(args.out, &file);
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
            println!(
                "Full report: {}.csv and {}.jsonl",
                report.display(),
                report.display()
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
