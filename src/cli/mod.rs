//! The command line: `serve` starts the server; the other commands are tools for
//! operators (verify, backup, restore, rebuild).

mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Verify { data_dir } => tools::verify(&data_dir),
            Command::Backup { to, server } => tools::backup(&server, &to).await,
            Command::Restore { from, data_dir } => tools::restore(&from, &data_dir).await,
            Command::Rebuild { data_dir } => tools::rebuild(&data_dir).await,
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
        },
    })
    .await?;
    let addr = server.local_addr();
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "serving");
    // One line on stdout, for scripts and tests that start the server on port 0.
    println!("case-escrow listening on {addr}");
    server.run(shutdown_signal()).await?;
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
