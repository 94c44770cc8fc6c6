//! `case-escrow bench-reconcile`: builds a ledger of many case accounts once, writes a
//! case-flow export of N rows for it, then reconciles that file through a server on
//! 127.0.0.1 exactly as `case-escrow reconcile case-flow` does (CSV parsing, gRPC
//! streaming, the server's rules, both report files), and reports rows per second and
//! the process's memory while it runs. BENCHMARKS.md records the figures.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::pb;
use crate::domain::{text::len, BankDetails, CaseNumber, CourtCode, Date, Fen, Party, Text};
use crate::ledger::{CaseKey, Command, Request};
use crate::server::{Server, ServerConfig};
use crate::store::Store;

use super::procfs::{cpu_seconds, status_kib};

use super::reconcile::{self as rc, CliResult};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Rows of the case-flow file.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Case accounts in the ledger (default: as many as rows; rows beyond them name
    /// cases the ledger lacks).
    #[arg(long)]
    cases: Option<u64>,
    /// Basic courts the cases are spread over.
    #[arg(long, default_value_t = 10)]
    courts: u32,
    /// Where the ledger, the file and the reports are kept; an existing bench ledger
    /// of the same size is reused.
    #[arg(long, default_value = "./bench-data")]
    data_dir: PathBuf,
    /// Also time the parts alone: reading the CSV, and the rules over the store
    /// without gRPC.
    #[arg(long)]
    parts: bool,
    /// Reconcile the file this many times against the same server: memory that does
    /// not grow from one pass to the next does not grow with the rows.
    #[arg(long, default_value_t = 1)]
    passes: u32,
    /// Write the rows in a scrambled order instead of filing order (each court's
    /// cases by number, the courts interleaved).
    #[arg(long)]
    shuffled: bool,
}

/// Requests in flight while the ledger is built: enough to fill the writer's batches.
const SETUP_IN_FLIGHT: usize = 4096;

fn text(s: &str) -> CliResult<Text> {
    Ok(Text::required(s, len::NAME).map_err(|e| e.0)?)
}

fn court(i: u32) -> String {
    format!("云01{:02}", i + 2)
}

fn case_number(courts: u32, n: u64) -> String {
    let c = (n % u64::from(courts)) as u32;
    format!("（2024）{}执{}号", court(c), n / u64::from(courts) + 1)
}

fn today() -> Date {
    Date::in_china(crate::api::now())
}

async fn submit_all(store: &Store, requests: Vec<Command>, what: &str) -> CliResult<()> {
    let started = Instant::now();
    let total = requests.len();
    let handle = store.handle();
    let mut set = tokio::task::JoinSet::new();
    for (i, command) in requests.into_iter().enumerate() {
        let handle = handle.clone();
        let id = crate::domain::RequestId::parse(&format!("bench-{}-{i}", what.replace(' ', "-")))
            .map_err(|e| e.0)?;
        set.spawn(async move {
            handle
                .write(Request {
                    id,
                    command,
                    principal: None,
                })
                .await
        });
        if set.len() >= SETUP_IN_FLIGHT {
            if let Some(done) = set.join_next().await {
                done??;
            }
        }
    }
    while let Some(done) = set.join_next().await {
        done??;
    }
    eprintln!(
        "  {total} {what} in {:.1} s ({:.0}/s)",
        started.elapsed().as_secs_f64(),
        total as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn build_ledger(dir: &Path, cases: u64, courts: u32) -> CliResult<()> {
    eprintln!(
        "building a ledger of {cases} case accounts in {}",
        dir.display()
    );
    let store = Store::open(dir)?;
    let mut opens = Vec::new();
    for c in 0..courts {
        opens.push(Command::OpenSpecialAccount {
            court: CourtCode::parse(&court(c)).map_err(|e| e.0)?,
            bank: BankDetails {
                bank_name: text("中国工商银行")?,
                bank_branch: text("昆明支行")?,
                account_number: text(&format!("25020100092000{c:05}"))?,
                account_name: text(&format!("{}法院执行款专户", court(c)))?,
            },
            document_ref: text("bench")?,
        });
    }
    // One at a time, so that court i gets special account i + 1.
    for (i, command) in opens.into_iter().enumerate() {
        let id = crate::domain::RequestId::parse(&format!("bench-special-{i}")).map_err(|e| e.0)?;
        store
            .handle()
            .write(Request {
                id,
                command,
                principal: None,
            })
            .await?;
    }
    let mut specials = Vec::new();
    for item in store
        .handle()
        .reads
        .list_specials("", None, courts as usize)?
    {
        specials.push(item.1);
    }
    let special_of = |c: &CourtCode| specials.iter().find(|s| &s.court == c).map(|s| s.id);
    let applicant = Party {
        name: text("张三")?,
        payee_account: text("6222020200012345678")?,
        payee_bank: text("建行")?,
    };
    let respondent = Party {
        name: text("某某公司")?,
        payee_account: Text::default(),
        payee_bank: Text::default(),
    };
    let mut requests = Vec::with_capacity(cases as usize);
    for n in 0..cases {
        let number = CaseNumber::parse(&case_number(courts, n)).map_err(|e| e.0)?;
        let special_id = special_of(number.court()).ok_or("no special account for a court")?;
        requests.push(Command::OpenCaseAccount {
            special_id,
            case_number: number,
            target: Fen(1_000_000),
            applicants: vec![applicant.clone()],
            respondents: vec![respondent.clone()],
        });
    }
    submit_all(&store, requests, "case accounts").await?;
    // A receipt for every fourth case; every fortieth arrived long ago (overdue).
    let mut receipts = Vec::new();
    for n in (0..cases).step_by(4) {
        let value_date = if n % 40 == 0 {
            today().plus_days(-90)
        } else {
            today()
        };
        receipts.push(Command::RecordReceipt(crate::ledger::Receipt {
            case: CaseKey::Number(CaseNumber::parse(&case_number(courts, n)).map_err(|e| e.0)?),
            amount: crate::domain::Amount::from_fen(100_000).map_err(|e| e.0)?,
            payer_name: text("某某公司")?,
            payer_account: text("6217")?,
            bank_ref: crate::domain::BankRef::parse(&format!("BENCH{n}")).map_err(|e| e.0)?,
            value_date,
        }));
    }
    submit_all(&store, receipts, "receipts").await?;
    store.close().await;
    Ok(())
}

/// The case-flow export: one row per case; about 1% disagree on the money received,
/// 0.1% are malformed, and rows beyond the ledger's cases name cases it lacks.
fn write_file(path: &Path, rows: u64, cases: u64, courts: u32, shuffled: bool) -> CliResult<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "case_number,court_code,filed_on,status,closure_method,closed_on,target_amount,received_amount,disbursed_amount,paid_outside_court"
    )?;
    // A multiplicative permutation of 0..rows: a stride coprime with rows visits
    // every row once, far from its neighbours.
    let stride = (1_000_003..)
        .find(|s| gcd(*s, rows.max(1)) == 1)
        .unwrap_or(1);
    for i in 0..rows {
        let n = if shuffled {
            ((u128::from(i) * u128::from(stride)) % u128::from(rows.max(1))) as u64
        } else {
            i
        };
        let number = case_number(courts, n);
        let court = court((n % u64::from(courts)) as u32);
        let mut received = if n < cases && n % 4 == 0 {
            "1000.00"
        } else {
            "0.00"
        };
        if n % 100 == 7 {
            received = "999.00";
        }
        let disbursed = if n % 1000 == 3 { "12.345" } else { "0.00" };
        writeln!(
            out,
            "{number},{court},2024-01-02,open,,,10000.00,{received},{disbursed},0.00"
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Times reading the file alone, then the file through the rules over the store in
/// this thread: what is left of a full run is gRPC and the report.
async fn parts(file: &Path, ledger_dir: &Path) -> CliResult<()> {
    let started = Instant::now();
    let mut lines = rc::CsvLines::open(file, &rc::CASE_FLOW_COLUMNS, &[])?;
    let mut n = 0u64;
    while let Some(line) = lines.next_line()? {
        std::hint::black_box(rc::case_flow_row(line));
        n += 1;
    }
    let csv = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut lines = rc::CsvLines::open(file, &rc::CASE_FLOW_COLUMNS, &[])?;
    while let Some(line) = lines.next_line()? {
        let row = rc::case_flow_row(line);
        let raw = crate::reconcile::case_flow::RawRow {
            line: row.line,
            case_number: row.case_number,
            court_code: row.court_code,
            filed_on: row.filed_on,
            status: row.status,
            closure_method: row.closure_method,
            closed_on: row.closed_on,
            target_amount: row.target_amount,
            received_amount: row.received_amount,
            disbursed_amount: row.disbursed_amount,
            paid_outside_court: row.paid_outside_court,
            unreadable: row.unreadable,
        };
        let _ = std::hint::black_box(crate::reconcile::case_flow::parse_row(&raw));
    }
    println!(
        "part: CSV + validating rows: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "part: reading the CSV alone: {n} rows in {csv:.2} s ({:.0} rows/s)",
        n as f64 / csv
    );
    let store = Store::open(ledger_dir)?;
    let reads = store.handle().reads.clone();
    let snap = crate::reconcile::snapshot::Snapshot {
        sequence: reads.last_sequence()?,
        reads,
    };
    let mut run = crate::reconcile::snapshot::CaseFlowRun::new(
        snap,
        today(),
        crate::reconcile::Limits::default(),
        None,
    );
    let started = Instant::now();
    let mut lines = rc::CsvLines::open(file, &rc::CASE_FLOW_COLUMNS, &[])?;
    let mut found = 0u64;
    while let Some(line) = lines.next_line()? {
        let row = rc::case_flow_row(line);
        let mut raw = crate::reconcile::case_flow::RawRow {
            line: row.line,
            case_number: row.case_number,
            court_code: row.court_code,
            filed_on: row.filed_on,
            status: row.status,
            closure_method: row.closure_method,
            closed_on: row.closed_on,
            target_amount: row.target_amount,
            received_amount: row.received_amount,
            disbursed_amount: row.disbursed_amount,
            paid_outside_court: row.paid_outside_court,
            unreadable: row.unreadable,
        };
        run.row(&mut raw, &mut |_| found += 1)?;
    }
    run.finish(&mut |_| found += 1)?;
    let engine = started.elapsed().as_secs_f64();
    println!(
        "part: CSV + rules over the store, one thread, no gRPC: {n} rows in {engine:.2} s ({:.0} rows/s), {found} discrepancies",
        n as f64 / engine
    );
    store.close().await;
    Ok(())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

pub async fn run(args: BenchArgs) -> CliResult<()> {
    let cases = args.cases.unwrap_or(args.rows);
    let courts = args.courts.max(1);
    let ledger_dir = args
        .data_dir
        .join(format!("ledger-{cases}-cases-{courts}-courts"));
    std::fs::create_dir_all(&args.data_dir)?;
    let ready = ledger_dir.join("BENCH_READY");
    if !ready.exists() {
        if ledger_dir.exists() {
            std::fs::remove_dir_all(&ledger_dir)?;
        }
        build_ledger(&ledger_dir, cases, courts).await?;
        std::fs::write(&ready, b"built\n")?;
        eprintln!(
            "peak memory while building: {} MiB; run again for figures without it",
            status_kib("VmHWM:") / 1024
        );
    }
    let order = if args.shuffled {
        "shuffled"
    } else {
        "filing-order"
    };
    let file = args
        .data_dir
        .join(format!("case-flow-{}-rows-{order}.csv", args.rows));
    if !file.exists() {
        write_file(&file, args.rows, cases, courts, args.shuffled)?;
    }
    println!("file: {} ({order})", file.display());
    if args.parts {
        parts(&file, &ledger_dir).await?;
    }
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: ledger_dir.clone(),
        shutdown_grace: Duration::from_secs(5),
        store: Default::default(),
        ..Default::default()
    })
    .await?;
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let admin = super::auth::admin_bearer(&ledger_dir)?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    // Reconciliation is the finance office's: the bench runs as a finance principal.
    let finance = super::auth::add_principal(
        channel,
        admin,
        &format!("bench-finance-{}", uuid::Uuid::now_v7()),
        &[crate::domain::Role::Finance],
        &["最高法"],
    )
    .await?;
    let mut client = rc::connect(&super::client::Target {
        server: format!("http://{addr}"),
        token: Some(finance),
        tls: None,
    })
    .await?;
    let rss_before = status_kib("VmRSS:");
    let hwm_before = status_kib("VmHWM:");
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                samples.push((started.elapsed().as_secs_f64(), status_kib("VmRSS:")));
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        })
    };
    let report = args.data_dir.join(format!("report-{}-rows", args.rows));
    let mut passes = Vec::new();
    let mut last = None;
    for pass in 1..=args.passes.max(1) {
        let started = Instant::now();
        let cpu_before = cpu_seconds();
        let header = pb::CaseFlowHeader {
            as_of: today().to_string(),
            ..Default::default()
        };
        let (summary, _) = rc::case_flow(&mut client, &file, header, &report, true).await?;
        let took = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_before;
        passes.push((pass, summary.rows, took, cpu, status_kib("VmRSS:")));
        last = Some(summary);
    }
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.join().map_err(|_| "the memory sampler stopped")?;
    let _ = stop.send(());
    serving.await??;
    let summary = last.ok_or("no pass ran")?;
    let took: f64 = passes.iter().map(|p| p.2).sum();
    for (pass, rows, secs, cpu, rss) in &passes {
        println!(
            "pass {pass}: {rows} rows in {secs:.2} s = {:.0} rows/s; {cpu:.2} CPU-s (client and server) = {:.0} rows per CPU-second; RSS after it {} MiB",
            *rows as f64 / secs,
            *rows as f64 / cpu.max(0.01),
            rss / 1024
        );
    }
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    println!("{}", rc::case_flow_table(&summary));
    println!("rows:              {} per pass", summary.rows);
    println!("seconds:           {took:.2}");
    println!(
        "rows per second:   {:.0}",
        (summary.rows as f64) * (passes.len() as f64) / took
    );
    println!(
        "memory (RSS, MiB): before {} | peak during run {} | process peak before run {} | after {}",
        rss_before / 1024,
        peak / 1024,
        hwm_before / 1024,
        status_kib("VmRSS:") / 1024
    );
    let step = (samples.len() / 10).max(1);
    let series: Vec<String> = samples
        .iter()
        .step_by(step)
        .map(|(t, kib)| format!("{t:.0}s:{}", kib / 1024))
        .collect();
    println!("RSS over the run (s:MiB): {}", series.join(" "));
    println!(
        "report: {}.csv, {}.jsonl",
        report.display(),
        report.display()
    );
    Ok(())
}
