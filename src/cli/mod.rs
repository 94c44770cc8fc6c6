//! The command line. `serve` starts the server; `bench` loads one and measures it.

mod bench;

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
    /// Load a server over gRPC on loopback and report throughput and latency.
    Bench(bench::BenchArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on. Use 127.0.0.1:0 for any free port (it is printed).
    #[arg(long, env = "CASE_ESCROW_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Directory holding the journal and the state.
    #[arg(long, env = "CASE_ESCROW_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
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
    let args = match cli.command {
        Command::Serve(args) => args,
        // The bench builds its own runtimes, one for the server and one for the clients.
        Command::Bench(args) => return bench::main(args),
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
    let result = runtime.block_on(serve(args));
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
