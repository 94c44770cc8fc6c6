//! Metrics in the Prometheus (OpenMetrics) text format on a separate HTTP port, and the
//! layer on the gRPC server that counts and times every call and gives each call a
//! tracing span carrying its request id.
//!
//! Each server has its own registry (tests run several servers in one process), so
//! nothing here is global.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::store::{StoreHandle, WriterEvent, WriterHook};

/// How often the gauges that need a pass over the ledger are recomputed at most.
pub const LEDGER_TOTALS_EVERY: Duration = Duration::from_secs(30);
/// The longest request head the metrics endpoint reads.
const HTTP_REQUEST_BYTES_MAX: usize = 8 << 10;
/// How long the metrics endpoint waits for a request head.
const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    rpc: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Family<RpcLabels, Histogram, fn() -> Histogram>,
    batch_requests: Histogram,
    batch_entries: Histogram,
    commit_seconds: Histogram,
    sync_seconds: Histogram,
    journal_last_sequence: Gauge,
    journal_bytes: Gauge,
    store_bytes: Gauge,
    open_case_accounts: Gauge,
    special_accounts: Gauge,
    suspense_fen: Gauge,
    totals: Mutex<Option<(Instant, crate::store::reads::LedgerTotals)>>,
    /// Set while a pass over the ledger runs, so that scrapes never start two.
    totalling: std::sync::atomic::AtomicBool,
    /// The RPCs the server offers (`package.Service/Method`); any other path a client
    /// sends is counted as "other", so no client can grow or crowd the label set.
    rpcs: std::collections::HashSet<String>,
}

/// Every method of every service the server registers, from the descriptor sets it
/// serves for reflection.
fn known_rpcs() -> std::collections::HashSet<String> {
    use prost::Message as _;
    let mut names = std::collections::HashSet::new();
    for set in [
        crate::api::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    names.insert(format!(
                        "{package}.{service_name}/{}",
                        method.name.unwrap_or_default()
                    ));
                }
            }
        }
    }
    // Reflection's own descriptor set is not exported; its one method is named here.
    names.insert("grpc.reflection.v1.ServerReflection/ServerReflectionInfo".into());
    names
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("case_escrow");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC calls answered, by RPC and status code",
            calls.clone(),
        );
        let latency = Family::<RpcLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "grpc_request_duration_seconds",
            "Time from a call's arrival to its response headers (for a stream: its start)",
            latency.clone(),
        );
        let batch_requests = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        registry.register(
            "writer_batch_requests",
            "Requests per group-commit batch",
            batch_requests.clone(),
        );
        let batch_entries = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        registry.register(
            "writer_batch_entries",
            "Journal entries written per group-commit batch",
            batch_entries.clone(),
        );
        let commit_seconds = latency_histogram();
        registry.register(
            "writer_commit_duration_seconds",
            "Time from a batch's first request to its answer",
            commit_seconds.clone(),
        );
        let sync_seconds = latency_histogram();
        registry.register(
            "writer_flush_duration_seconds",
            "Time of one journal write and fdatasync",
            sync_seconds.clone(),
        );
        let journal_last_sequence = Gauge::default();
        registry.register(
            "journal_last_sequence",
            "Sequence of the last durable journal entry (the journal's length in entries)",
            journal_last_sequence.clone(),
        );
        let journal_bytes = Gauge::default();
        registry.register(
            "journal_bytes",
            "Size of the journal file",
            journal_bytes.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_bytes",
            "Size of the data directory: journal and derived state",
            store_bytes.clone(),
        );
        let open_case_accounts = Gauge::default();
        registry.register(
            "open_case_accounts",
            "Case accounts open (recomputed at most every 30 s)",
            open_case_accounts.clone(),
        );
        let special_accounts = Gauge::default();
        registry.register(
            "special_accounts",
            "Special accounts, open or closed (recomputed at most every 30 s)",
            special_accounts.clone(),
        );
        let suspense_fen = Gauge::default();
        registry.register(
            "suspense_fen",
            "Unidentified receipts waiting in suspense, all special accounts, in fen (recomputed at most every 30 s)",
            suspense_fen.clone(),
        );
        Arc::new(Metrics {
            registry,
            calls,
            latency,
            batch_requests,
            batch_entries,
            commit_seconds,
            sync_seconds,
            journal_last_sequence,
            journal_bytes,
            store_bytes,
            open_case_accounts,
            special_accounts,
            suspense_fen,
            totals: Mutex::new(None),
            totalling: Default::default(),
            rpcs: known_rpcs(),
        })
    }

    /// Lets the store's writer report its batches and syncs here.
    pub fn watch_writer(self: &Arc<Self>, store: &StoreHandle) {
        let me = Arc::downgrade(self);
        let hook = WriterHook(Box::new(move |event| {
            let Some(m) = me.upgrade() else { return };
            match event {
                WriterEvent::Batch {
                    requests,
                    entries,
                    commit,
                } => {
                    m.batch_requests.observe(requests as f64);
                    m.batch_entries.observe(entries as f64);
                    m.commit_seconds.observe(commit.as_secs_f64());
                }
                WriterEvent::Sync(took) => m.sync_seconds.observe(took.as_secs_f64()),
            }
        }));
        // A store serves one server; a second registration would be a wiring mistake
        // that only loses the second one's histograms.
        let _ = store.stats.hook.set(hook);
    }

    fn record_call(&self, rpc: &str, code: &'static str, took: Duration) {
        let rpc = if self.rpcs.contains(rpc) {
            rpc
        } else {
            "other"
        };
        self.calls
            .get_or_create(&CallLabels {
                rpc: rpc.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&RpcLabels {
                rpc: rpc.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Brings the gauges up to date and encodes everything.
    ///
    /// The ledger totals need a pass over every case record: when they are older than
    /// [`LEDGER_TOTALS_EVERY`] a new pass starts in the background and this scrape shows
    /// the previous totals, so a scrape never waits for a pass but the very first.
    pub async fn render(self: &Arc<Self>, store: &StoreHandle, data_dir: &Path) -> String {
        let last = *store.committed.borrow();
        self.journal_last_sequence.set(last as i64);
        let journal = std::fs::metadata(data_dir.join("journal.log")).map_or(0, |m| m.len());
        self.journal_bytes.set(journal as i64);
        let dir = data_dir.to_owned();
        if let Ok(size) = tokio::task::spawn_blocking(move || dir_bytes(&dir)).await {
            self.store_bytes.set(size as i64);
        }
        let (have, stale) = match self.totals.lock() {
            Ok(t) => (
                t.is_some(),
                t.is_none_or(|(at, _)| at.elapsed() >= LEDGER_TOTALS_EVERY),
            ),
            Err(_) => (false, true),
        };
        if stale && !self.totalling.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            let reads = store.reads.clone();
            let pass = tokio::spawn(async move {
                let totals = tokio::task::spawn_blocking(move || reads.ledger_totals()).await;
                match totals {
                    Ok(Ok(t)) => {
                        if let Ok(mut slot) = me.totals.lock() {
                            *slot = Some((Instant::now(), t));
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot total the ledger for metrics"),
                    Err(e) => tracing::warn!(error = %e, "the ledger totals' pass failed"),
                }
                me.totalling.store(false, Ordering::Release);
            });
            if !have {
                let _ = pass.await;
            }
        }
        if let Ok(Some((_, t))) = self.totals.lock().map(|t| *t) {
            self.open_case_accounts.set(t.open_case_accounts as i64);
            self.special_accounts.set(t.special_accounts as i64);
            self.suspense_fen.set(t.suspense.0);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Bytes of the files under `dir`: the journal, and the state's files (fjall keeps its
/// tables four levels down, `state-fjall/partitions/ledger/segments/`).
fn dir_bytes(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: u32) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut total = 0;
        for e in entries.flatten() {
            match e.metadata() {
                // Blocks, not lengths: fjall preallocates its log files (sparse).
                Ok(m) if m.is_file() => {
                    total += std::os::unix::fs::MetadataExt::blocks(&m).saturating_mul(512)
                }
                Ok(m) if m.is_dir() && depth > 0 => total += walk(&e.path(), depth - 1),
                _ => {}
            }
        }
        total
    }
    walk(dir, 5)
}

/// Connections the metrics endpoint answers at once; beyond, it closes them unanswered.
const HTTP_CONNECTIONS_MAX: usize = 8;

/// Serves `GET /metrics` until `stop` completes. Each connection on a task of its own,
/// bounded in size and time, and at most [`HTTP_CONNECTIONS_MAX`] at once: one at a time,
/// two idle connections held the scraper out for good.
pub async fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: StoreHandle,
    data_dir: PathBuf,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let places = Arc::new(tokio::sync::Semaphore::new(HTTP_CONNECTIONS_MAX));
    let mut answering = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            a = listener.accept() => a,
            // Reaps finished connections, so the set holds only those still open.
            Some(_) = answering.join_next(), if !answering.is_empty() => continue,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                // Out of file descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            continue;
        };
        let (metrics, store, data_dir) = (metrics.clone(), store.clone(), data_dir.clone());
        answering.spawn(async move {
            answer_http(stream, &metrics, &store, &data_dir).await;
            drop(place);
        });
    }
    // The store handles they hold must go before the store closes.
    answering.shutdown().await;
}

async fn answer_http(
    mut stream: tokio::net::TcpStream,
    metrics: &Arc<Metrics>,
    store: &StoreHandle,
    data_dir: &std::path::Path,
) {
    let answered = tokio::time::timeout(HTTP_READ_TIMEOUT, async {
        let head = read_head(&mut stream).await?;
        let (status, body, kind) = match head.split_whitespace().take(2).collect::<Vec<_>>()[..] {
            ["GET", "/metrics"] => (
                "200 OK",
                metrics.render(store, data_dir).await,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            ["GET", _] => ("404 Not Found", "only /metrics is here\n".to_owned(), "text/plain"),
            _ => ("405 Method Not Allowed", "GET /metrics\n".to_owned(), "text/plain"),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if let Ok(Err(e)) = answered {
        tracing::debug!(error = %e, "metrics endpoint: connection failed");
    }
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > HTTP_REQUEST_BYTES_MAX {
            return Err(std::io::Error::other("request head too long"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    Ok(head.lines().next().unwrap_or("").to_owned())
}

/// Binds the metrics port before the server accepts calls, so a port in use stops
/// start-up with a clear error instead of failing later.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

// ---------------------------------------------------------------------------------
// The gRPC layer
// ---------------------------------------------------------------------------------

/// Wraps every gRPC call: a span `call{rpc, request_id}` around its handling (the id
/// is the caller's `x-request-id`, or a fresh UUID v7), its count and latency, and one
/// log line when it is refused.
#[derive(Clone)]
pub struct CallLayer {
    pub metrics: Arc<Metrics>,
}

impl<S> tower_layer::Layer<S> for CallLayer {
    type Service = CallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CallService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// Longest request id taken from a caller; longer ones are cut (they only name log
/// lines).
const REQUEST_ID_CHARS_MAX: usize = 128;

impl<S, B, RB> tower_service::Service<http::Request<B>> for CallService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The clone is not ready; the instance that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        // Our RPC names are `package.Service/Method`: anything else a client sends is
        // kept to those characters, so a label can never break the text format.
        let rpc: String = req
            .uri()
            .path()
            .trim_start_matches('/')
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._/".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(|v| v.chars().take(REQUEST_ID_CHARS_MAX).collect::<String>())
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let span = tracing::info_span!("call", rpc = %rpc, request_id = %request_id);
        Box::pin(
            async move {
                let started = Instant::now();
                let answer = inner.call(req).await;
                let took = started.elapsed();
                let code = match &answer {
                    // A refusal is a trailers-only answer: its status is in the headers.
                    // Without one the call succeeded, or a stream ends with its status
                    // in the trailers, after this layer has seen the response.
                    Ok(res) => res
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                    Err(_) => tonic::Code::Unknown,
                };
                let name = crate::api::error::code_name(code);
                metrics.record_call(&rpc, name, took);
                let took_ms = took.as_secs_f64() * 1e3;
                if code == tonic::Code::Ok {
                    tracing::debug!(took_ms, "answered");
                } else {
                    // The message is left out at info: it may quote a party's account.
                    tracing::info!(code = name, took_ms, "refused");
                }
                answer
            }
            .instrument(span),
        )
    }
}
