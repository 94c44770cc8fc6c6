//! `case-escrow bench`: a load generator over real gRPC on loopback.
//!
//! By default it starts its own server, in this process but on a runtime of its own,
//! on a data directory (a temporary one unless `--data-dir` is given), so that it can
//! report the writer's batches and, at the end, read the journal back and check the
//! ledger's invariants. `--addr` targets a running server instead.
//!
//! Every run is bounded: by `--requests` (operations; receipts for `batch`) and by
//! `--seconds`, whichever comes first. `--rate` turns the closed loop (each client
//! sends its next request when the last is answered) into an open one (requests are
//! due on a fixed schedule, and latency counts from when a request was due, so a slow
//! server cannot hide its queueing).
//!
//! Workloads:
//! - `receipts`: RecordReceipt to random cases, each with a new bank reference;
//! - `batch`: RecordReceipts with `--batch-size` receipts a call;
//! - `mixed`: case openings, receipts, disbursement lifecycles (request, approve,
//!   confirm paid) and statement reads, each client on its own cases;
//! - `fsync`: no server; appends a small record and `fdatasync`s it in a loop on the
//!   data directory's disk: the ceiling one sync per request would impose.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

use super::client::ClientArgs;
use super::procfs::{cpu_seconds, load_average, status_kib};
use hdrhistogram::Histogram;
use tonic::transport::Channel;

use crate::api::pb::{
    self, case_ledger_client::CaseLedgerClient, special_accounts_client::SpecialAccountsClient,
};
use crate::server::{Server, ServerConfig};
use crate::store::WriterStats;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Receipts,
    Batch,
    Mixed,
    Fsync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verify {
    /// Full check up to 1,000,000 entries, the gRPC check above.
    Auto,
    /// Replay the whole journal in memory and check the six invariants.
    Full,
    /// Compare each case's balances with what the clients had acknowledged.
    Grpc,
    None,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "receipts")]
    pub workload: Workload,
    /// Concurrent clients, each with one call at a time.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Connections the clients share, in turn (an HTTP/2 connection carries many
    /// calls at once); 0: each client its own.
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// Stop after this many operations (receipts, for `batch`).
    #[arg(long, default_value_t = 200_000)]
    pub requests: u64,
    /// Stop after this many seconds, even if `--requests` is not reached (at most a
    /// week).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub seconds: u64,
    /// Total operations a second across all clients (open loop); 0: as fast as answered.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Receipts per RecordReceipts call (`batch`).
    #[arg(long, default_value_t = 8189)]
    pub batch_size: usize,
    /// Case accounts opened before the run.
    #[arg(long, default_value_t = 1000)]
    pub cases: u32,
    /// A running server to load instead of starting one.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// The administrator's token of the server at `--addr` (a server started here is
    /// asked with its own data directory's admin.token). The run adds a clerk, an
    /// approver and a finance principal through it and calls each RPC as the one its
    /// role needs.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Data directory of the server started here (kept afterwards); default: a
    /// temporary directory, removed afterwards.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The engine of the state of the server started here; by default the one the
    /// data directory has (sled if none).
    #[arg(long, value_enum)]
    pub state_engine: Option<crate::store::Engine>,
    #[arg(long, value_enum, default_value = "auto")]
    pub verify: Verify,
    /// Print the process's memory and the journal's length this often (0: never).
    #[arg(long, default_value_t = 10)]
    pub report_every_s: u64,
    /// Calls due in the first this many seconds are made but left out of the latency
    /// figures (reported on a line of their own): the first calls on new connections to
    /// a just-started server pay for its warming up, which is not the steady state.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub warmup_s: u64,
    /// Worker threads of the server's runtime and of the clients' runtime each.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

impl BenchArgs {
    fn connections(&self) -> usize {
        match self.connections {
            0 => self.clients,
            n => n.min(self.clients),
        }
    }
}

/// The kinds of call measured, each with its own latency histogram.
const KINDS: [&str; 8] = [
    "open_case",
    "receipt",
    "receipts_batch",
    "disb_request",
    "disb_approve",
    "disb_paid",
    "statement",
    "fsync",
];
const K_OPEN: usize = 0;
const K_RECEIPT: usize = 1;
const K_BATCH: usize = 2;
const K_REQUEST: usize = 3;
const K_APPROVE: usize = 4;
const K_PAID: usize = 5;
const K_STATEMENT: usize = 6;
const K_FSYNC: usize = 7;

const COURT: &str = "云0102";

fn case_number(n: u32) -> String {
    format!("（2024）{COURT}执{n}号")
}

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// The workload's randomness, seeded per client: a run's mix of cases and amounts is
/// the same every time.
fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A number below `n` (0 when `n` is 0).
fn below(rng: &mut StdRng, n: u64) -> u64 {
    rng.random_range(0..n.max(1))
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s at 3 significant digits: fixed memory, however long the run.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("constant bounds are valid")
}

/// What one client measured and acknowledged.
struct Tally {
    latency: Vec<Histogram<u64>>,
    /// Calls due before this are counted and measured apart, as the warm-up.
    measure_from: Instant,
    warmup: Histogram<u64>,
    ops: [u64; KINDS.len()],
    errors: [u64; KINDS.len()],
    first_error: Option<String>,
    /// Fen acknowledged as received, and as paid out, per case number.
    received: BTreeMap<u32, i64>,
    paid: BTreeMap<u32, i64>,
}

impl Tally {
    fn new(measure_from: Instant) -> Tally {
        Tally {
            latency: KINDS.iter().map(|_| histogram()).collect(),
            measure_from,
            warmup: histogram(),
            ops: [0; KINDS.len()],
            errors: [0; KINDS.len()],
            first_error: None,
            received: BTreeMap::new(),
            paid: BTreeMap::new(),
        }
    }

    fn record(&mut self, kind: usize, since: Instant) {
        let micros = since.elapsed().as_micros().clamp(1, 100_000_000) as u64;
        let h = if since < self.measure_from {
            &mut self.warmup
        } else {
            &mut self.latency[kind]
        };
        // Bounds are clamped above, so recording cannot fail.
        let _ = h.record(micros);
        self.ops[kind] += 1;
    }

    fn error(&mut self, kind: usize, e: impl std::fmt::Display) {
        self.errors[kind] += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{}: {e}", KINDS[kind]));
        }
    }

    fn merge(&mut self, other: Tally) {
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            // Same bounds everywhere, so adding cannot fail.
            let _ = mine.add(theirs);
        }
        let _ = self.warmup.add(&other.warmup);
        for k in 0..KINDS.len() {
            self.ops[k] += other.ops[k];
            self.errors[k] += other.errors[k];
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        for (c, v) in other.received {
            *self.received.entry(c).or_default() += v;
        }
        for (c, v) in other.paid {
            *self.paid.entry(c).or_default() += v;
        }
    }
}

/// Shared by the clients: the budget of operations left and the deadline.
struct Budget {
    left: AtomicU64,
    deadline: Instant,
    stop: AtomicBool,
}

impl Budget {
    /// Takes `n` operations from the budget; false when the run is over.
    fn take(&self, n: u64) -> bool {
        if self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return false;
        }
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(n))
            .is_ok()
    }
}

pub fn main(args: BenchArgs) -> std::process::ExitCode {
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("case-escrow bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub fn run(args: BenchArgs) -> Result<(), BoxError> {
    if args.clients == 0 || args.threads == 0 {
        return Err("--clients and --threads must be at least 1".into());
    }
    if args.workload == Workload::Batch
        && !(1..=crate::api::receipts::RECEIPTS_PER_CALL_MAX).contains(&args.batch_size)
    {
        return Err(format!(
            "--batch-size must be 1 to {}",
            crate::api::receipts::RECEIPTS_PER_CALL_MAX
        )
        .into());
    }
    let (data_dir, _temp) = match &args.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!(
                "case-escrow-bench-{}-{}",
                std::process::id(),
                crate::api::now().0
            ));
            (d.clone(), Some(TempDir(d)))
        }
    };
    println!(
        "machine: {} cores; load average at start: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    if args.workload == Workload::Fsync {
        return fsync_rate(&data_dir, &args);
    }
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .thread_name("bench-server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let (addr, server) = match args.addr {
        Some(addr) => (addr, None),
        None => {
            let started = Instant::now();
            let server = server_rt.block_on(Server::bind(ServerConfig {
                listen: "127.0.0.1:0".parse()?,
                data_dir: data_dir.clone(),
                shutdown_grace: Duration::from_secs(30),
                store: crate::store::StoreOptions {
                    engine: args.state_engine,
                    ..Default::default()
                },
                ..Default::default()
            }))?;
            let took = started.elapsed();
            let addr = server.local_addr();
            let stats = server.writer_stats();
            let stored = journal_len(&data_dir);
            println!(
                "server: started in {:.3} s on {} ({} journal bytes stored), rss {} MiB",
                took.as_secs_f64(),
                data_dir.display(),
                stored,
                rss_mib()
            );
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = server_rt.spawn(server.run(async {
                let _ = stopped.await;
            }));
            (addr, Some((stop, task, stats)))
        }
    };
    let stats = server.as_ref().map(|(_, _, s)| s.clone());
    let admin_token = match args.addr {
        Some(_) => args
            .client
            .resolve()?
            .token
            .ok_or("--addr needs the administrator's token: --token or --token-file")?,
        None => super::auth::admin_token(&data_dir)?,
    };
    let result = client_rt.block_on(drive(&args, addr, &admin_token, stats.clone()));
    if let Some((stop, task, _)) = server {
        let _ = stop.send(());
        match server_rt.block_on(task) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("server stopped with an error: {e}").into()),
            Err(e) => return Err(format!("server task failed: {e}").into()),
        }
    }
    let (tally, entries_before) = result?;
    if args.addr.is_none() {
        verify_journal(&args, &data_dir, entries_before)?;
    }
    if let Some(e) = tally.first_error {
        return Err(format!("some requests failed; the first: {e}").into());
    }
    Ok(())
}

/// Removes the run's temporary data directory, however the run ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("bench: cannot remove {}: {e}", self.0.display());
        }
    }
}

/// Resident memory of this process (client and server together when it runs both).
fn rss_mib() -> u64 {
    status_kib("VmRSS:") / 1024
}

fn journal_len(data_dir: &Path) -> u64 {
    std::fs::metadata(data_dir.join("journal.log")).map_or(0, |m| m.len())
}

/// Each call goes as the principal whose role it needs (four eyes: the requester,
/// approver and payer of a disbursement are three principals).
type Ch = super::auth::ByRole;

async fn connect(addr: SocketAddr) -> Result<Channel, BoxError> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

fn client(channel: Ch) -> CaseLedgerClient<Ch> {
    CaseLedgerClient::new(channel).max_decoding_message_size(64 << 20)
}

/// Opens the special account and the cases, then runs the workload and reports.
async fn drive(
    args: &BenchArgs,
    addr: SocketAddr,
    admin_token: &str,
    stats: Option<Arc<WriterStats>>,
) -> Result<(Tally, u64), BoxError> {
    let run_tag = format!("{:08x}", rand::random::<u32>());
    let crew = super::auth::crew(
        connect(addr).await?,
        admin_token,
        &format!("bench-{run_tag}"),
        &[COURT],
    )
    .await?;
    let setup = crew.with_channel(connect(addr).await?);
    let mut specials = SpecialAccountsClient::new(setup.clone());
    let special = specials
        .open_special_account(pb::OpenSpecialAccountRequest {
            request_id: format!("bench-{run_tag}-special"),
            court_code: COURT.into(),
            bank_name: "中国工商银行".into(),
            bank_branch: "昆明五华支行".into(),
            account_number: "2502010009200012345".into(),
            account_name: "五华区人民法院执行款专户".into(),
            document_ref: "云高法〔2018〕35号".into(),
        })
        .await?
        .into_inner();
    let special_id = special.special_account_id;
    // Case numbers of this run start after any an earlier run left in the directory.
    let base = first_free_case(&setup).await?;
    let opened = Instant::now();
    let mut openers = Vec::new();
    let per = args.cases.div_ceil(8).max(1);
    for w in 0..8u32 {
        let mut c = client(setup.clone());
        let special_id = special_id.clone();
        let run_tag = run_tag.clone();
        let (lo, hi) = (w * per, ((w + 1) * per).min(args.cases));
        openers.push(tokio::spawn(async move {
            for i in lo..hi {
                c.open_case_account(open_case(&special_id, base + i, &run_tag))
                    .await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for o in openers {
        o.await??;
    }
    println!(
        "setup: {} case accounts opened in {:.2} s",
        args.cases,
        opened.elapsed().as_secs_f64()
    );
    let entries_before = stats
        .as_ref()
        .map_or(0, |s| s.entries.load(Ordering::Relaxed));
    let before = stats.as_ref().map(|s| snapshot(s));

    let budget = Arc::new(Budget {
        left: AtomicU64::new(args.requests),
        deadline: Instant::now() + Duration::from_secs(args.seconds),
        stop: AtomicBool::new(false),
    });
    let reporter = spawn_reporter(args, stats.clone(), budget.clone());
    // Every client is connected before the clock starts: an open loop's first requests
    // would otherwise be due before their connection exists, and count that as latency.
    let connections = args.connections();
    let mut shared = Vec::with_capacity(connections);
    for _ in 0..connections {
        shared.push(crew.with_channel(connect(addr).await?));
    }
    let channels: Vec<Ch> = (0..args.clients)
        .map(|c| shared[c % connections].clone())
        .collect();
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let mut tasks = Vec::new();
    for (c, channel) in channels.into_iter().enumerate() {
        let ctx = ClientCtx {
            id: c,
            clients: args.clients,
            cases: args.cases,
            base,
            run_tag: run_tag.clone(),
            special_id: special_id.clone(),
            budget: budget.clone(),
            interval: (args.rate > 0)
                .then(|| Duration::from_secs_f64(args.clients as f64 / args.rate as f64)),
            batch_size: args.batch_size,
            started,
            warmup: Duration::from_secs(args.warmup_s),
        };
        let workload = args.workload;
        tasks.push(tokio::spawn(async move {
            let mut rpc = client(channel);
            match workload {
                Workload::Receipts => receipts(&mut rpc, ctx).await,
                Workload::Batch => batch(&mut rpc, ctx).await,
                _ => mixed(&mut rpc, ctx).await,
            }
        }));
    }
    let mut tally = Tally::new(started + Duration::from_secs(args.warmup_s));
    for t in tasks {
        tally.merge(t.await?);
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    budget.stop.store(true, Ordering::Relaxed);
    if let Some(r) = reporter {
        r.abort();
    }
    let after = stats.as_ref().map(|s| snapshot(s));
    report(args, &tally, elapsed, cpu, before.zip(after));
    if matches!(args.verify, Verify::Auto | Verify::Grpc | Verify::Full) {
        verify_grpc(&setup, &tally).await?;
    }
    Ok((tally, entries_before))
}

/// The first case number free for this run: one past the highest any earlier run
/// opened under the court, found by probing, so runs can share a data directory.
async fn first_free_case(channel: &Ch) -> Result<u32, BoxError> {
    let c = client(channel.clone());
    let exists = |n: u32| {
        let mut c = c.clone();
        async move {
            match c
                .get_case_account(pb::GetCaseAccountRequest {
                    account: Some(pb::get_case_account_request::Account::CaseNumber(
                        case_number(n),
                    )),
                    as_of: None,
                })
                .await
            {
                Ok(_) => Ok(true),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
                Err(s) => Err(s),
            }
        }
    };
    if !exists(1).await? {
        return Ok(1);
    }
    let (mut lo, mut hi) = (1u32, 2u32);
    while exists(hi).await? {
        lo = hi;
        hi = hi.saturating_mul(2);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if exists(mid).await? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi)
}

fn open_case(special_id: &str, n: u32, run_tag: &str) -> pb::OpenCaseAccountRequest {
    pb::OpenCaseAccountRequest {
        request_id: format!("bench-{run_tag}-open-{n}"),
        special_account_id: special_id.into(),
        case_number: case_number(n),
        target_amount: "1000000.00".into(),
        applicants: vec![pb::Party {
            name: "张三".into(),
            payee_account: "6222020200012345678".into(),
            payee_bank: "中国建设银行昆明分行".into(),
        }],
        respondents: vec![pb::Party {
            name: "某某贸易有限公司".into(),
            payee_account: String::new(),
            payee_bank: String::new(),
        }],
    }
}

struct ClientCtx {
    id: usize,
    clients: usize,
    cases: u32,
    base: u32,
    run_tag: String,
    special_id: String,
    budget: Arc<Budget>,
    interval: Option<Duration>,
    batch_size: usize,
    started: Instant,
    warmup: Duration,
}

impl ClientCtx {
    fn measure_from(&self) -> Instant {
        self.started + self.warmup
    }

    /// When the client's `k`-th operation is due: now, in a closed loop; on the
    /// schedule in an open one, waiting for it if early.
    async fn due(&self, k: u64) -> Instant {
        match self.interval {
            None => Instant::now(),
            Some(every) => {
                // Clients are staggered so the total rate is even, not in bursts.
                let offset = every.mul_f64(self.id as f64 / self.clients as f64);
                let at = self.started + offset + every.mul_f64(k as f64);
                tokio::time::sleep_until(at.into()).await;
                at
            }
        }
    }

    fn receipt(&self, n: u32, fen: i64, k: u64) -> pb::RecordReceiptRequest {
        pb::RecordReceiptRequest {
            request_id: format!("{}-{}-r{k}", self.run_tag, self.id),
            account: Some(pb::record_receipt_request::Account::CaseNumber(
                case_number(n),
            )),
            amount: yuan(fen),
            payer_name: "某某贸易有限公司".into(),
            payer_account: "6217000000000000001".into(),
            bank_ref: format!("B{}{:04}{:010}", self.run_tag, self.id, k),
            value_date: "2024-03-01".into(),
            ..Default::default()
        }
    }
}

async fn receipts(rpc: &mut CaseLedgerClient<Ch>, ctx: ClientCtx) -> Tally {
    let mut tally = Tally::new(ctx.measure_from());
    let mut rng = rng(ctx.id as u64 + 1);
    let mut k = 0u64;
    while ctx.budget.take(1) {
        let n = ctx.base + below(&mut rng, u64::from(ctx.cases)) as u32;
        let fen = 100 + below(&mut rng, 1_000_000) as i64;
        let request = ctx.receipt(n, fen, k);
        let due = ctx.due(k).await;
        k += 1;
        match rpc.record_receipt(request).await {
            Ok(_) => {
                tally.record(K_RECEIPT, due);
                *tally.received.entry(n).or_default() += fen;
            }
            Err(e) => tally.error(K_RECEIPT, e),
        }
    }
    tally
}

async fn batch(rpc: &mut CaseLedgerClient<Ch>, ctx: ClientCtx) -> Tally {
    let mut tally = Tally::new(ctx.measure_from());
    let mut rng = rng(ctx.id as u64 + 1);
    let mut k = 0u64;
    let mut call = 0u64;
    while ctx.budget.take(ctx.batch_size as u64) {
        let mut items = Vec::with_capacity(ctx.batch_size);
        let mut amounts = Vec::with_capacity(ctx.batch_size);
        for _ in 0..ctx.batch_size {
            let n = ctx.base + below(&mut rng, u64::from(ctx.cases)) as u32;
            let fen = 100 + below(&mut rng, 1_000_000) as i64;
            items.push(ctx.receipt(n, fen, k));
            amounts.push((n, fen));
            k += 1;
        }
        let due = ctx.due(call).await;
        call += 1;
        let request = pb::RecordReceiptsRequest {
            request_id: format!("{}-{}-b{call}", ctx.run_tag, ctx.id),
            receipts: items,
        };
        match rpc.record_receipts(request).await {
            Ok(answer) => {
                tally.record(K_BATCH, due);
                for (result, (n, fen)) in answer.into_inner().results.iter().zip(amounts) {
                    match &result.result {
                        Some(pb::receipt_result::Result::Sequence(_)) => {
                            tally.ops[K_RECEIPT] += 1;
                            *tally.received.entry(n).or_default() += fen;
                        }
                        Some(pb::receipt_result::Result::Error(e)) => {
                            tally.error(K_RECEIPT, &e.message)
                        }
                        None => tally.error(K_RECEIPT, "empty result"),
                    }
                }
            }
            Err(e) => tally.error(K_BATCH, e),
        }
    }
    tally
}

/// Each client works on its own cases (those whose index is its id modulo the number
/// of clients), so it knows what they hold and never asks to pay out money that is
/// not there.
async fn mixed(rpc: &mut CaseLedgerClient<Ch>, ctx: ClientCtx) -> Tally {
    let mut tally = Tally::new(ctx.measure_from());
    let mut rng = rng(ctx.id as u64 + 1);
    let mut own: Vec<(u32, i64)> = (0..ctx.cases)
        .filter(|i| *i as usize % ctx.clients == ctx.id)
        .map(|i| (ctx.base + i, 0))
        .collect();
    let mut opened = 0u32;
    let mut k = 0u64;
    while ctx.budget.take(1) {
        let roll = below(&mut rng, 100);
        let due = ctx.due(k).await;
        k += 1;
        if roll < 5 || own.is_empty() {
            // A new case is filed: numbers past the pre-opened ones, per client.
            let n = ctx.base + ctx.cases + opened * ctx.clients as u32 + ctx.id as u32;
            opened += 1;
            match rpc
                .open_case_account(open_case(&ctx.special_id, n, &ctx.run_tag))
                .await
            {
                Ok(_) => {
                    tally.record(K_OPEN, due);
                    own.push((n, 0));
                }
                Err(e) => tally.error(K_OPEN, e),
            }
            continue;
        }
        let pick = below(&mut rng, own.len() as u64) as usize;
        let (n, available) = own[pick];
        if roll < 75 || (roll < 85 && available < 100) {
            let fen = 100 + below(&mut rng, 1_000_000) as i64;
            match rpc.record_receipt(ctx.receipt(n, fen, k)).await {
                Ok(_) => {
                    tally.record(K_RECEIPT, due);
                    *tally.received.entry(n).or_default() += fen;
                    own[pick].1 += fen;
                }
                Err(e) => tally.error(K_RECEIPT, e),
            }
        } else if roll < 85 {
            let fen = available / 2 + 1;
            if let Some(paid) = disbursement(rpc, &ctx, n, fen, k, &mut tally).await {
                own[pick].1 -= paid;
                *tally.paid.entry(n).or_default() += paid;
            }
        } else {
            let request = pb::ListEntriesRequest {
                case_number: case_number(n),
                page_size: 20,
                page_token: String::new(),
                as_of: None,
            };
            match rpc.list_entries(request).await {
                Ok(_) => tally.record(K_STATEMENT, due),
                Err(e) => tally.error(K_STATEMENT, e),
            }
        }
    }
    tally
}

/// Request, approve and confirm one disbursement; each call is measured on its own.
async fn disbursement(
    rpc: &mut CaseLedgerClient<Ch>,
    ctx: &ClientCtx,
    n: u32,
    fen: i64,
    k: u64,
    tally: &mut Tally,
) -> Option<i64> {
    let rid = |step: &str| format!("{}-{}-d{k}-{step}", ctx.run_tag, ctx.id);
    let t = Instant::now();
    let requested = rpc
        .request_disbursement(pb::RequestDisbursementRequest {
            request_id: rid("req"),
            case_number: case_number(n),
            amount: yuan(fen),
            payee_name: "张三".into(),
            payee_account: "6222020200012345678".into(),
            payee_bank: "中国建设银行昆明分行".into(),
            purpose: pb::DisbursementPurpose::ToApplicant as i32,
            memo: String::new(),
            exception_reason: String::new(),
        })
        .await;
    let id = match requested {
        Ok(d) => {
            tally.record(K_REQUEST, t);
            d.into_inner().disbursement_id
        }
        Err(e) => {
            tally.error(K_REQUEST, e);
            return None;
        }
    };
    let t = Instant::now();
    match rpc
        .approve_disbursement(pb::ApproveDisbursementRequest {
            request_id: rid("ok"),
            disbursement_id: id.clone(),
            approval_ref: "审批2024-001".into(),
        })
        .await
    {
        Ok(_) => tally.record(K_APPROVE, t),
        Err(e) => {
            tally.error(K_APPROVE, e);
            return None;
        }
    }
    let t = Instant::now();
    match rpc
        .confirm_disbursement_paid(pb::ConfirmDisbursementPaidRequest {
            request_id: rid("paid"),
            disbursement_id: id,
            bank_ref: format!("P{}{:04}{:010}", ctx.run_tag, ctx.id, k),
            paid_at: None,
        })
        .await
    {
        Ok(_) => {
            tally.record(K_PAID, t);
            Some(fen)
        }
        Err(e) => {
            tally.error(K_PAID, e);
            None
        }
    }
}

#[derive(Clone, Copy)]
struct Snapshot {
    batches: u64,
    requests: u64,
    entries: u64,
    commit_micros: u64,
    sync_micros: u64,
    apply_micros: u64,
}

fn snapshot(s: &WriterStats) -> Snapshot {
    Snapshot {
        batches: s.batches.load(Ordering::Relaxed),
        requests: s.requests.load(Ordering::Relaxed),
        entries: s.entries.load(Ordering::Relaxed),
        commit_micros: s.commit_micros.load(Ordering::Relaxed),
        sync_micros: s.sync_micros.load(Ordering::Relaxed),
        apply_micros: s.apply_micros.load(Ordering::Relaxed),
    }
}

fn spawn_reporter(
    args: &BenchArgs,
    stats: Option<Arc<WriterStats>>,
    budget: Arc<Budget>,
) -> Option<tokio::task::JoinHandle<()>> {
    if args.report_every_s == 0 {
        return None;
    }
    let every = Duration::from_secs(args.report_every_s);
    let started = Instant::now();
    Some(tokio::spawn(async move {
        let mut last = stats
            .as_ref()
            .map_or(0, |s| s.entries.load(Ordering::Relaxed));
        let mut tick = tokio::time::interval_at((Instant::now() + every).into(), every);
        while !budget.stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let entries = stats
                .as_ref()
                .map_or(0, |s| s.entries.load(Ordering::Relaxed));
            println!(
                "  t={:>5.0}s  entries written {:>10}  ({:>8.0}/s)  rss {:>5} MiB  load {}",
                started.elapsed().as_secs_f64(),
                entries,
                (entries - last) as f64 / every.as_secs_f64(),
                rss_mib(),
                load_average()
            );
            last = entries;
        }
    }))
}

fn report(
    args: &BenchArgs,
    tally: &Tally,
    elapsed: Duration,
    cpu_s: f64,
    writer: Option<(Snapshot, Snapshot)>,
) {
    let secs = elapsed.as_secs_f64();
    println!(
        "\nworkload {:?}: {} clients on {} connections, {:.2} s{}",
        args.workload,
        args.clients,
        args.connections(),
        secs,
        if args.rate > 0 {
            format!(", open loop at {} ops/s", args.rate)
        } else {
            ", closed loop".into()
        }
    );
    println!(
        "{:<15} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "call", "count", "per second", "p50 ms", "p99 ms", "p999 ms", "max ms", "errors"
    );
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (k, name) in KINDS.iter().enumerate() {
        let h = &tally.latency[k];
        if tally.ops[k] == 0 && tally.errors[k] == 0 {
            continue;
        }
        if h.is_empty() {
            println!(
                "{name:<15} {:>10} {:>11.0} {:>9} {:>9} {:>9} {:>9} {:>7}",
                tally.ops[k],
                tally.ops[k] as f64 / secs,
                "-",
                "-",
                "-",
                "-",
                tally.errors[k]
            );
            continue;
        }
        println!(
            "{name:<15} {:>10} {:>11.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            tally.ops[k],
            tally.ops[k] as f64 / secs,
            ms(h, 0.5),
            ms(h, 0.99),
            ms(h, 0.999),
            h.max() as f64 / 1000.0,
            tally.errors[k]
        );
    }
    if !tally.warmup.is_empty() {
        println!(
            "warm-up: {} calls due in the first {} s, left out of the latencies above and counted in the rates (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)",
            tally.warmup.len(),
            args.warmup_s,
            ms(&tally.warmup, 0.5),
            ms(&tally.warmup, 0.99),
            tally.warmup.max() as f64 / 1000.0
        );
    }
    let mut all = histogram();
    for (k, h) in tally.latency.iter().enumerate() {
        if k != K_BATCH {
            let _ = all.add(h);
        }
    }
    let ops: u64 = tally
        .ops
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != K_BATCH)
        .map(|(_, n)| n)
        .sum();
    let errors: u64 = tally.errors.iter().sum();
    if let Some((a, b)) = writer {
        let batches = b.batches - a.batches;
        let requests = b.requests - a.requests;
        let per_batch = |v: u64| v as f64 / batches.max(1) as f64;
        println!(
            "writer: {} batches (= fdatasyncs) in {:.2} s = {:.0}/s; {:.1} requests and {:.1} entries a batch; a commit {:.0} µs, of which fdatasync {:.0} µs and state apply {:.0} µs ({:.1} µs an entry)",
            batches,
            secs,
            batches as f64 / secs,
            requests as f64 / batches.max(1) as f64,
            per_batch(b.entries - a.entries),
            per_batch(b.commit_micros - a.commit_micros),
            per_batch(b.sync_micros - a.sync_micros),
            per_batch(b.apply_micros - a.apply_micros),
            (b.apply_micros - a.apply_micros) as f64 / (b.entries - a.entries).max(1) as f64,
        );
    }
    // Per operation, CPU time is the figure that survives a shared machine: wall-clock
    // throughput moves with the neighbours' load, the CPU a receipt costs hardly does.
    let counted = if args.workload == Workload::Mixed {
        ops
    } else {
        tally.ops[K_RECEIPT]
    };
    let cpu_us = cpu_s * 1e6 / counted.max(1) as f64;
    println!(
        "cpu: {cpu_s:.2} CPU-s ({}) over {counted} {} = {cpu_us:.1} µs each; {:.0} a CPU-second; load average {}",
        if args.addr.is_some() {
            "this process: the clients only"
        } else {
            "this process: clients and server"
        },
        if args.workload == Workload::Mixed { "operations" } else { "receipts" },
        1e6 / cpu_us.max(0.001),
        load_average()
    );
    // One line for scripts.
    let main = if args.workload == Workload::Batch {
        K_BATCH
    } else {
        K_RECEIPT
    };
    let h = &tally.latency[main];
    println!(
        "RESULT workload={:?} clients={} connections={} seconds={:.2} ops={} ops_per_s={:.0} receipts_per_s={:.0} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} all_p99_ms={:.2} warmup_s={} warmup_calls={} errors={} rss_mib={} cpu_us_per_op={:.1}",
        args.workload,
        args.clients,
        args.connections(),
        secs,
        ops,
        ops as f64 / secs,
        tally.ops[K_RECEIPT] as f64 / secs,
        ms(h, 0.5),
        ms(h, 0.99),
        ms(h, 0.999),
        ms(&all, 0.99),
        args.warmup_s,
        tally.warmup.len(),
        errors,
        rss_mib(),
        cpu_us
    );
}

/// Every case's balances over gRPC agree with what the clients had acknowledged.
async fn verify_grpc(channel: &Ch, tally: &Tally) -> Result<(), BoxError> {
    let mut c = client(channel.clone());
    let mut checked = 0;
    let mut cases: Vec<u32> = tally
        .received
        .keys()
        .chain(tally.paid.keys())
        .copied()
        .collect();
    cases.sort_unstable();
    cases.dedup();
    for n in cases {
        let b = c
            .get_case_account(pb::GetCaseAccountRequest {
                account: Some(pb::get_case_account_request::Account::CaseNumber(
                    case_number(n),
                )),
                as_of: None,
            })
            .await?
            .into_inner()
            .balances
            .ok_or("a case account came without balances")?;
        let want_received = yuan(tally.received.get(&n).copied().unwrap_or(0));
        let want_disbursed = yuan(tally.paid.get(&n).copied().unwrap_or(0));
        if b.received != want_received || b.disbursed != want_disbursed {
            return Err(format!(
                "case {}: received {} disbursed {}, but the clients were acknowledged {want_received} and {want_disbursed}",
                case_number(n),
                b.received,
                b.disbursed
            )
            .into());
        }
        checked += 1;
    }
    println!("verify: {checked} case accounts hold exactly what was acknowledged (gRPC)");
    Ok(())
}

/// Replays the journal the server left and checks the six invariants.
fn verify_journal(args: &BenchArgs, data_dir: &Path, _before: u64) -> Result<(), BoxError> {
    let path = data_dir.join("journal.log");
    let bytes = journal_len(data_dir);
    // About 330 bytes a receipt frame; a million entries replay in a few GiB at most.
    let full = match args.verify {
        Verify::Full => true,
        Verify::Auto => bytes < 330_000_000,
        _ => false,
    };
    if !full {
        println!("verify: journal replay skipped ({bytes} bytes; use --verify full)");
        return Ok(());
    }
    let started = Instant::now();
    let entries = crate::store::journal::read_all(&path)?;
    let state = crate::ledger::MemState::replay(&entries)?;
    crate::ledger::invariants::check(&state)?;
    println!(
        "verify: {} journal entries replayed; the six invariants hold ({:.1} s)",
        entries.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The disk's own rate of small appends each made durable with `fdatasync`.
fn fsync_rate(data_dir: &Path, args: &BenchArgs) -> Result<(), BoxError> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("fsync-probe");
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    let record = [0x5au8; 330];
    let mut tally = Tally::new(Instant::now());
    let deadline = Instant::now() + Duration::from_secs(args.seconds.min(30));
    let started = Instant::now();
    let mut n = 0u64;
    while n < args.requests && Instant::now() < deadline {
        let t = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        tally.record(K_FSYNC, t);
        n += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    let h = &tally.latency[K_FSYNC];
    println!(
        "fsync: {} appends of 330 bytes, each followed by fdatasync, in {:.2} s on {}",
        n,
        secs,
        data_dir.display()
    );
    println!(
        "RESULT workload=Fsync ops={} ops_per_s={:.0} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3}",
        n,
        n as f64 / secs,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0
    );
    Ok(())
}
