//! Wiring: the store, the gRPC services, health and reflection, and a bounded graceful
//! shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use std::sync::Arc;

use crate::api::auth::{Authenticated, Directory};
use crate::api::pb::{
    case_ledger_server::CaseLedgerServer, journal_server::JournalServer,
    principals_server::PrincipalsServer, reconciliation_server::ReconciliationServer,
    special_accounts_server::SpecialAccountsServer,
};
use crate::api::{
    self, CaseLedgerService, JournalService, PrincipalsService, ReconciliationService,
    SpecialAccountsService,
};
use crate::reconcile::Limits;
use crate::store::{Store, StoreError};

/// The largest request message accepted; no legitimate request comes near it.
pub const MESSAGE_BYTES_MAX: usize = 1 << 20;
/// The largest message of reconciliation rows accepted.
pub const RECONCILE_MESSAGE_BYTES_MAX: usize = 8 << 20;
/// How long shutdown waits for open calls before it stops anyway.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(10);
/// Calls open at once on one connection: far above what a client multiplexes (the
/// load generator puts 16 on each), far below what would exhaust the server.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 1024;
/// How often an idle connection's peer is asked whether it is still there, and how
/// long it has to answer.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(60);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// A TLS handshake takes a few round trips; ten seconds is generous on any link a
/// court's network has, and short enough that idle half-open connections cannot pile up.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server runs with; `config.rs` fills it from the TOML file, the environment
/// and the flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub shutdown_grace: Duration,
    pub store: crate::store::StoreOptions,
    /// Where Prometheus metrics are served over HTTP; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The limits on holding money that reconciliation checks.
    pub limits: Limits,
    /// Read by `main` before the server starts (the subscriber is process-wide).
    pub log: crate::config::LogSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("./data"),
            shutdown_grace: SHUTDOWN_GRACE_DEFAULT,
            store: Default::default(),
            metrics_listen: None,
            limits: Limits::default(),
            log: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("principals: {0}")]
    Principals(String),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Server TLS, and mutual TLS when `client_ca_pem` is given: a client then presents a
/// certificate signed by that CA, and a principal registered with the SHA-256 of the
/// certificate's DER is authenticated by it (a bearer token still works and wins).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
    /// How long a new connection may take over its TLS handshake before it is closed
    /// ([`TLS_HANDSHAKE_TIMEOUT`] from the command line). tonic runs each handshake in
    /// a task of its own and sets no bound: without one, a peer that connects and says
    /// nothing holds a socket and a task for as long as it likes, and enough of them
    /// run the server out of file descriptors.
    pub handshake_timeout: Duration,
}

impl TlsConfig {
    /// Reads the PEM files named on the command line.
    pub fn from_files(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: Option<&std::path::Path>,
    ) -> Result<TlsConfig, String> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        Ok(TlsConfig {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            client_ca_pem: client_ca.map(read).transpose()?,
            handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
        })
    }

    fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let mut config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(self.handshake_timeout);
        if let Some(ca) = &self.client_ca_pem {
            // Optional, so that a client without a certificate can still authenticate
            // by token; one with a certificate must present one the CA signed.
            config = config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        config
    }
}

/// A store that is open and a socket that is bound, ready to serve.
pub struct Server {
    store: Store,
    listener: TcpListener,
    addr: SocketAddr,
    shutdown_grace: Duration,
    limits: Limits,
    directory: Arc<Directory>,
    tls: Option<TlsConfig>,
    data_dir: PathBuf,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    metrics_listener: Option<TcpListener>,
}

impl Server {
    /// Opens (and if needed recovers) the store, then binds the socket, so that a
    /// server that cannot use its data never accepts a connection.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let data_dir = config.data_dir.clone();
        let options = config.store;
        let store = tokio::task::spawn_blocking(move || Store::open_with(&data_dir, options))
            .await
            .map_err(|e| {
                StoreError::Replay(format!("opening the store stopped abnormally: {e}"))
            })??;
        let principals = store
            .handle()
            .reads
            .principals()
            .map_err(|e| ServerError::Principals(e.to_string()))?;
        let directory = Arc::new(Directory::new(principals));
        api::principals::bootstrap(&store.handle(), &directory, &config.data_dir)
            .await
            .map_err(ServerError::Principals)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                crate::metrics::bind(addr)
                    .await
                    .map_err(|source| ServerError::Metrics { addr, source })?,
            ),
            None => None,
        };
        let metrics = crate::metrics::Metrics::new();
        metrics.watch_writer(&store.handle());
        Ok(Server {
            store,
            listener,
            addr,
            shutdown_grace: config.shutdown_grace,
            directory,
            tls: None,
            limits: config.limits,
            data_dir: config.data_dir,
            metrics,
            metrics_listener,
        })
    }

    /// Serves over TLS (and mutual TLS if the config names a client CA).
    pub fn with_tls(mut self, tls: TlsConfig) -> Server {
        self.tls = Some(tls);
        self
    }

    /// The limits on holding money that reconciliation checks (default: the law's).
    pub fn with_limits(mut self, limits: Limits) -> Server {
        self.limits = limits;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where metrics are served, if anywhere (the port is known once bound).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The writer's counters: batches, requests, entries, commit time.
    pub fn writer_stats(&self) -> std::sync::Arc<crate::store::WriterStats> {
        self.store.handle().stats
    }

    /// Serves until `shutdown` completes; then reports NOT_SERVING, lets open calls
    /// finish within the grace period, lets the writer drain, and flushes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let handle = self.store.handle();
        let visible = handle.visible.clone();
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::Serving).await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(api::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        // Set when a stop begins: change feeds end at once (telling where to resume)
        // rather than holding the stop for its whole grace period.
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        // Every service but health checking is behind authentication.
        let specials = Authenticated::new(
            SpecialAccountsServer::new(SpecialAccountsService {
                store: handle.clone(),
            })
            .max_decoding_message_size(MESSAGE_BYTES_MAX),
            self.directory.clone(),
            visible.clone(),
        );
        let cases = Authenticated::new(
            api::limits::CaseLedgerWithLimits::new(
                CaseLedgerService {
                    store: handle.clone(),
                },
                MESSAGE_BYTES_MAX,
                api::receipts::MESSAGE_BYTES_MAX,
            ),
            self.directory.clone(),
            visible.clone(),
        );
        let journal = Authenticated::new(
            JournalServer::new(JournalService {
                store: handle.clone(),
                directory: self.directory.clone(),
                scans: std::sync::Arc::new(tokio::sync::Semaphore::new(
                    crate::api::JOURNAL_SCANS_MAX,
                )),
                stopping,
            })
            .max_decoding_message_size(MESSAGE_BYTES_MAX),
            self.directory.clone(),
            visible.clone(),
        );
        let principals = Authenticated::new(
            PrincipalsServer::new(PrincipalsService {
                store: handle.clone(),
                directory: self.directory.clone(),
            })
            .max_decoding_message_size(MESSAGE_BYTES_MAX),
            self.directory.clone(),
            visible.clone(),
        );
        // Rows come in batches: a message may hold a few thousand of them.
        let reconciliation = Authenticated::new(
            ReconciliationServer::new(ReconciliationService {
                store: handle,
                limits: self.limits,
                runs: std::sync::Arc::new(tokio::sync::Semaphore::new(
                    crate::api::RECONCILE_RUNS_MAX,
                )),
            })
            .max_decoding_message_size(RECONCILE_MESSAGE_BYTES_MAX),
            self.directory.clone(),
            visible,
        );
        let reflection = Authenticated::reading_nothing(reflection, self.directory.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // Without TCP_NODELAY a client that waits for each answer before its next call
        // meets Nagle's algorithm and delayed ACKs: about 40 ms a call.
        let incoming = TcpIncoming::from(self.listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(TCP_KEEPALIVE));
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_task = self.metrics_listener.map(|listener| {
            tokio::spawn(crate::metrics::serve_http(
                listener,
                self.metrics.clone(),
                self.store.handle(),
                self.data_dir.clone(),
                async move {
                    let _ = metrics_stopped.await;
                },
            ))
        });
        // A peer that vanished (a machine switched off, a cut link) is found and its
        // streams ended, rather than held open with whatever they hold; and one
        // connection's streams are bounded, which tonic otherwise leaves unbounded.
        let mut builder = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(STREAMS_PER_CONNECTION_MAX))
            .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
            .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT));
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls.server_config())?;
        }
        let serve = builder
            .layer(crate::metrics::CallLayer {
                metrics: self.metrics.clone(),
            })
            .add_service(health_service)
            .add_service(reflection)
            .add_service(specials)
            .add_service(cases)
            .add_service(journal)
            .add_service(reconciliation)
            .add_service(principals)
            .serve_with_incoming_shutdown(incoming, async {
                // A dropped sender also means stop.
                let _ = stop_rx.await;
            });
        // Boxed rather than pinned in place, so it can be dropped (with the services and
        // their store handles) before the store is closed.
        let mut serve = Box::pin(serve);
        tokio::select! {
            served = &mut serve => served?,
            () = shutdown => {
                tracing::info!("shutting down: refusing new calls, finishing open ones");
                set_health(&health, ServingStatus::NotServing).await;
                let _ = stopping_tx.send(true);
                let _ = stop_tx.send(());
                match tokio::time::timeout(self.shutdown_grace, &mut serve).await {
                    Ok(served) => served?,
                    Err(_) => tracing::warn!(
                        grace_ms = self.shutdown_grace.as_millis() as u64,
                        "calls still open after the grace period; stopping anyway"
                    ),
                }
            }
        }
        drop(serve);
        let _ = metrics_stop.send(());
        if let Some(task) = metrics_task {
            // It holds a store handle; closing the store waits for every handle.
            let _ = task.await;
        }
        self.store.close().await;
        tracing::info!("stopped; the store is flushed");
        Ok(())
    }
}

/// Every service the server offers, as health checking names them ("" is the server).
const SERVICE_NAMES: [&str; 6] = [
    "",
    <SpecialAccountsServer<SpecialAccountsService> as NamedService>::NAME,
    <CaseLedgerServer<CaseLedgerService> as NamedService>::NAME,
    <JournalServer<JournalService> as NamedService>::NAME,
    <ReconciliationServer<ReconciliationService> as NamedService>::NAME,
    <PrincipalsServer<PrincipalsService> as NamedService>::NAME,
];

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}
