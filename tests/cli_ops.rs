//! The command line a finance office uses, run as the real binary against a real
//! server: a case's whole life, refusals and their exit codes, the configuration's
//! precedence, the metrics endpoint, and the request id on the server's log lines.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

const CASE: &str = "(2024)云0102执1234号";
const CASE_CANONICAL: &str = "（2024）云0102执1234号";

/// The role a command's RPC needs (src/api/authz.rs): the command line is used the way
/// an office would, each form by the person whose job it is. Reads go as the
/// administrator, who may read everything.
fn role_of(args: &[&str]) -> Option<case_escrow::domain::Role> {
    use case_escrow::domain::Role;
    match (args.first().copied(), args.get(1).copied()) {
        (
            Some("case"),
            Some("open" | "receipt" | "disburse" | "cancel" | "defer" | "end-deferral" | "close"),
        ) => Some(Role::Clerk),
        (Some("case"), Some("approve" | "reject" | "approve-deferral" | "reject-deferral")) => {
            Some(Role::Approver)
        }
        (Some("case"), Some("confirm" | "fail" | "returned" | "transfer" | "reverse")) => {
            Some(Role::Finance)
        }
        (Some("suspense"), Some("record" | "assign" | "return")) => Some(Role::Finance),
        _ => None,
    }
}

/// The token file of a principal of `role` in every court, added once per server and
/// kept in its data directory.
async fn token_file_of(server: &TestServer, role: case_escrow::domain::Role) -> String {
    let path = server.data_dir.join(format!("cli-{role:?}.token"));
    if !path.exists() {
        let token = principal(server, &[role], &["最高法"]).await;
        std::fs::write(&path, format!("{token}\n")).expect("token file");
    }
    path.display().to_string()
}

/// Adds the office's principals (each one journal entry) before a test counts entries,
/// and returns the journal's last sequence after them.
async fn prepare(server: &TestServer) -> u64 {
    use case_escrow::domain::Role;
    for role in [Role::Clerk, Role::Approver, Role::Finance] {
        token_file_of(server, role).await;
    }
    let digest = cli_json(server, &["journal", "digest"]).await;
    digest["sequence"].as_u64().expect("a sequence")
}

/// Runs a command against `server`; returns (exit code, stdout, stderr).
async fn cli(server: &TestServer, args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    match role_of(args) {
        Some(role) => {
            all.extend(["--server".to_owned(), format!("http://{}", server.addr)]);
            all.extend(["--token-file".to_owned(), token_file_of(server, role).await]);
        }
        None => all.extend(server.cli_args()),
    }
    let out = run_cli(all).await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must succeed and print one JSON document.
async fn cli_json(server: &TestServer, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let (code, out, err) = cli(server, &with_json).await;
    assert_eq!(code, 0, "{args:?} failed: {err}\n{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

fn s(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

async fn open_special_and_case(server: &TestServer) -> String {
    let special = cli_json(
        server,
        &[
            "special-account",
            "open",
            "--court",
            "云0102",
            "--bank",
            "中国工商银行",
            "--branch",
            "昆明五华支行",
            "--account-number",
            "2502010009200012345",
            "--account-name",
            "五华区人民法院执行款专户",
            "--document",
            "云高法〔2018〕35号",
        ],
    )
    .await;
    let special_id = s(&special["special_account_id"]);
    let case = cli_json(
        server,
        &[
            "case",
            "open",
            "--special-account",
            &special_id,
            "--case-number",
            CASE,
            "--target",
            "120000.00",
            "--applicant",
            &format!("张三;{APPLICANT_ACCOUNT};中国建设银行昆明分行"),
            "--respondent",
            "某某贸易有限公司",
        ],
    )
    .await;
    assert_eq!(case["case_number"], CASE_CANONICAL);
    assert_eq!(case["status"], "open");
    special_id
}

#[tokio::test]
async fn a_case_lives_its_whole_life_through_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let base = prepare(&server).await;
    open_special_and_case(&server).await;

    // A receipt, told by its table output.
    let receipt = [
        "case",
        "receipt",
        CASE,
        "--amount",
        "50000.00",
        "--payer",
        "某某贸易有限公司",
        "--bank-ref",
        "ICBC20240301000123",
        "--value-date",
        "2024-03-01",
        "--request-id",
        "clerk-r-1",
    ];
    let (code, out, err) = cli(&server, &receipt).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Amount (yuan):") && out.contains("50000.00"),
        "{out}"
    );
    assert!(
        err.contains("clerk-r-1"),
        "the request id is shown for retries: {err}"
    );
    // Retrying with the same request id records nothing twice.
    let (code, _, err) = cli(&server, &receipt).await;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("already recorded"), "{err}");
    // The same bank transaction under a new request id (a colleague entering the same
    // notice): nothing is added, and the clerk is told so.
    let (code, out, err) = cli(&server, &receipt[..receipt.len() - 2]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("already recorded") && err.contains("clerk-r-1"),
        "{err}\n{out}"
    );

    let d = cli_json(
        &server,
        &[
            "case",
            "disburse",
            CASE,
            "--amount",
            "30000.00",
            "--payee",
            "张三",
            "--payee-account",
            APPLICANT_ACCOUNT,
            "--payee-bank",
            "中国建设银行昆明分行",
        ],
    )
    .await;
    assert_eq!(d["state"], "requested");
    let id = s(&d["disbursement_id"]);
    let approved = cli_json(
        &server,
        &["case", "approve", &id, "--approval-ref", "审批2024-001"],
    )
    .await;
    assert_eq!(approved["state"], "approved");
    // The payment dated as the bank statement shows it, in China time to the second
    // (at or just after the request, which the server checks against).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let paid_when = case_escrow::cli::output::time(Some(&prost_types::Timestamp {
        seconds: now,
        nanos: 0,
    }));
    let paid = cli_json(
        &server,
        &[
            "case",
            "confirm",
            &id,
            "--bank-ref",
            "ICBC20240305000456",
            "--paid-at",
            &paid_when,
        ],
    )
    .await;
    assert_eq!(paid["state"], "paid");
    assert_eq!(
        paid["paid_at"],
        format!("{}+08:00", paid_when.replace(' ', "T"))
    );

    let shown = cli_json(&server, &["case", "show", CASE]).await;
    assert_eq!(shown["balances"]["received"], "50000.00");
    assert_eq!(shown["balances"]["disbursed"], "30000.00");
    assert_eq!(shown["balances"]["available"], "20000.00");

    // The statement: table, JSON, CSV and HTML.
    let csv = dir.path().join("statement.csv");
    let html = dir.path().join("statement.html");
    let (code, table, err) = cli(
        &server,
        &[
            "case",
            "statement",
            CASE,
            "--csv",
            csv.to_str().expect("utf-8"),
            "--html",
            html.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    for kind in [
        "case_account_opened",
        "receipt",
        "disbursement_requested",
        "disbursement_approved",
        "disbursement_paid",
    ] {
        assert!(
            table.contains(kind),
            "{kind} missing from the statement:\n{table}"
        );
    }
    // Columns line up: every amount of the table starts in the same column.
    let header = table
        .lines()
        .find(|l| l.starts_with("Entry"))
        .expect("table header");
    let amount_col = header.find("Amount").expect("Amount column");
    let receipt_line = table
        .lines()
        .find(|l| l.contains(" receipt "))
        .expect("receipt line");
    let width = |t: &str| {
        t.chars()
            .map(|c| if c.is_ascii() { 1 } else { 2 })
            .sum::<usize>()
    };
    let at = receipt_line.find("50000.00").expect("amount");
    assert_eq!(width(&receipt_line[..at]), amount_col, "{table}");

    let statement = cli_json(&server, &["case", "statement", CASE]).await;
    let entries = statement["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 5, "{statement}");
    assert_eq!(
        entries.last().map(|e| e["running_balance"].clone()),
        Some(Value::from("20000.00"))
    );
    assert_eq!(
        entries.last().map(|e| e["in_out"].clone()),
        Some(Value::from("-30000.00"))
    );

    let csv = std::fs::read_to_string(&csv).expect("csv written");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    assert_eq!(&headers[0], "case_number");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(&rows[1][4], "receipt");
    assert_eq!(&rows[1][5], "50000.00");
    assert_eq!(&headers[6], "in_out");
    assert_eq!(&rows[1][6], "+50000.00");
    // The paid disbursement takes the money out; its request and approval move none.
    let paid_row = rows
        .iter()
        .find(|r| &r[4] == "disbursement_paid")
        .expect("paid row");
    assert_eq!(&paid_row[6], "-30000.00");
    let asked = rows
        .iter()
        .find(|r| &r[4] == "disbursement_requested")
        .expect("request row");
    assert_eq!(&asked[6], "");

    let html = std::fs::read_to_string(&html).expect("html written");
    for needle in [
        CASE_CANONICAL,
        "云0102",
        "张三",
        "某某贸易有限公司",
        "中国工商银行",
        "ICBC20240305000456",
        "@media print",
    ] {
        assert!(
            html.contains(needle),
            "{needle} missing from the printable statement"
        );
    }
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );

    // The journal commands see the same history.
    let digest = cli_json(&server, &["journal", "digest"]).await;
    assert_eq!(digest["sequence"], base + 7);
    let verified = cli_json(&server, &["journal", "verify"]).await;
    assert_eq!(verified["ok"], true);
    let from = (base + 1).to_string();
    let (code, lines, err) = cli(
        &server,
        &[
            "journal", "watch", "--from", &from, "--limit", "7", "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let watched: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(watched.len(), 7);
    assert_eq!(watched[6]["kind"], "disbursement_paid");
    assert!(watched.iter().any(|e| e["kind"] == "already_recorded"));

    let (code, out, _) = cli(&server, &["health"]).await;
    assert_eq!((code, out.trim()), (0, "serving"));
    server.stop().await;
}

#[tokio::test]
async fn a_refused_call_prints_the_servers_reason_and_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    open_special_and_case(&server).await;
    let cases: [(&[&str], &str, &str); 3] = [
        (
            &[
                "case",
                "disburse",
                CASE,
                "--amount",
                "1.00",
                "--payee",
                "张三",
                "--payee-account",
                APPLICANT_ACCOUNT,
                "--payee-bank",
                "建行",
            ],
            "FAILED_PRECONDITION",
            "insufficient funds",
        ),
        (
            &[
                "case",
                "receipt",
                CASE,
                "--amount",
                "1.001",
                "--payer",
                "x",
                "--bank-ref",
                "R",
                "--value-date",
                "2024-03-01",
            ],
            "INVALID_ARGUMENT",
            "amount",
        ),
        (
            &["case", "show", "(2024)云0102执9999号"],
            "NOT_FOUND",
            "9999",
        ),
    ];
    for (args, code_name, words) in cases {
        let (code, out, err) = cli(&server, args).await;
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(
            err.contains(code_name) && err.contains(words),
            "{args:?}: {err}"
        );
        assert!(out.is_empty(), "nothing on stdout for a refusal: {out}");
    }
    // A mistake on the command line itself is clap's exit code 2, before any call.
    let (code, _, err) = cli(
        &server,
        &[
            "case",
            "disburse",
            CASE,
            "--amount",
            "1.00",
            "--payee",
            "张三",
            "--payee-account",
            APPLICANT_ACCOUNT,
            "--payee-bank",
            "建行",
            "--purpose",
            "lunch",
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lunch"), "{err}");
    let port = server.addr.port();
    server.stop().await;
    // Nobody listens any more: unreachable is 4.
    let out = run_cli(vec![
        "case".into(),
        "show".into(),
        CASE.into(),
        "--server".into(),
        format!("http://127.0.0.1:{port}"),
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_check_prints_the_effective_settings_and_names_a_bad_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("case-escrow.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:6000\"\ndisk_reserve_mb = 5\nsuspense_age_days = 4\n\n[log]\nformat = \"json\"\n",
    )
    .expect("write");
    let check = |extra: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_case-escrow"));
        c.args(["config", "check"]).arg(&file).args(extra);
        for var in [
            "CASE_ESCROW_LISTEN",
            "CASE_ESCROW_DISK_RESERVE_MB",
            "CASE_ESCROW_SUSPENSE_AGE_DAYS",
            "CASE_ESCROW_LOG_FORMAT",
            "CASE_ESCROW_LOG",
            "CASE_ESCROW_METRICS_LISTEN",
        ] {
            c.env_remove(var);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        // Other tests of this file hold stores open: children start under their lock.
        let out = run_child(&mut c);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // File over default; environment over file; flag over environment.
    let (code, out, err) = check(
        &["--suspense-age-days", "6"],
        &[
            ("CASE_ESCROW_DISK_RESERVE_MB", "7"),
            ("CASE_ESCROW_SUSPENSE_AGE_DAYS", "5"),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    for line in [
        "listen = \"127.0.0.1:6000\"  # config file",
        "disk_reserve_mb = 7  # flag or environment",
        "suspense_age_days = 6  # flag or environment",
        "disburse_within_days = 30  # default",
        "format = \"json\"  # config file",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    let (_, out, _) = check(&[], &[("CASE_ESCROW_SUSPENSE_AGE_DAYS", "5")]);
    assert!(
        out.contains("suspense_age_days = 5  # flag or environment"),
        "{out}"
    );

    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:6000\"\nmetrics_listen = \"everywhere\"\n",
    )
    .expect("write");
    let (code, _, err) = check(&[], &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("server.metrics_listen") && err.contains("everywhere"),
        "{err}"
    );
    // `serve` refuses the same file before it opens anything.
    let mut serve = Command::new(env!("CARGO_BIN_EXE_case-escrow"));
    serve
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("never-created"))
        .arg("--config")
        .arg(&file)
        .env_remove("CASE_ESCROW_METRICS_LISTEN");
    let out = run_child(&mut serve);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.metrics_listen"));
    assert!(!dir.path().join("never-created").exists());
    std::fs::write(&file, "[server]\nlisen = \"127.0.0.1:6000\"\n").expect("write");
    let (code, _, err) = check(&[], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("lisen"), "{err}");
}

/// Kills the child process when the test ends early (a failed assertion), so no
/// server outlives its test.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn get(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("the child is held")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One GET over a plain socket: the endpoint is for scrapers, so a scraper's request.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).await.expect("response");
    body
}

#[tokio::test]
async fn metrics_count_calls_by_rpc_and_code_and_show_the_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(&dir.path().join("data"), |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    })
    .await;
    let metrics = server.metrics_addr.expect("metrics are served");
    let base = prepare(&server).await;
    open_special_and_case(&server).await;
    let (code, _, err) = cli(
        &server,
        &[
            "case",
            "receipt",
            CASE,
            "--amount",
            "10.00",
            "--payer",
            "x",
            "--bank-ref",
            "M1",
            "--value-date",
            "2024-03-01",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = cli(&server, &["case", "show", "(2024)云0102执9999号"]).await;
    assert_eq!(code, 3);
    let special = cli_json(&server, &["special-account", "list"]).await;
    let special_id = s(&special[0]["special_account_id"]);
    let (code, _, err) = cli(
        &server,
        &[
            "suspense",
            "record",
            "--special-account",
            &special_id,
            "--amount",
            "7.50",
            "--payer",
            "不明",
            "--bank-ref",
            "M2",
            "--value-date",
            "2024-03-01",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");

    // Connections that send nothing (held for the endpoint's 5 s each) do not keep a
    // scraper out: each is answered on its own.
    let idle = [
        tokio::net::TcpStream::connect(metrics)
            .await
            .expect("connects"),
        tokio::net::TcpStream::connect(metrics)
            .await
            .expect("connects"),
    ];
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        http_get(metrics, "/metrics"),
    )
    .await
    .expect("answered beside two idle connections");
    drop(idle);
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    for needle in [
        "case_escrow_grpc_requests_total{rpc=\"case_escrow.v1.CaseLedger/RecordReceipt\",code=\"OK\"} 1",
        "case_escrow_grpc_requests_total{rpc=\"case_escrow.v1.CaseLedger/GetCaseAccount\",code=\"NOT_FOUND\"} 1",
        "case_escrow_grpc_request_duration_seconds_count{rpc=\"case_escrow.v1.CaseLedger/RecordReceipt\"} 1",
        "case_escrow_writer_batch_requests_count ",
        "case_escrow_writer_flush_duration_seconds_bucket{le=",
        &format!("case_escrow_journal_last_sequence {}", base + 4),
        "case_escrow_open_case_accounts 1",
        "case_escrow_suspense_fen 750",
        "case_escrow_store_bytes ",
        "case_escrow_journal_bytes ",
        "# EOF",
    ] {
        assert!(response.contains(needle), "{needle:?} missing:\n{response}");
    }
    let bytes = response
        .lines()
        .find_map(|l| l.strip_prefix("case_escrow_store_bytes "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("store size");
    assert!(bytes > 0);
    let missing = http_get(metrics, "/other").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_the_request_id_and_no_party_accounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // The server as an operator runs it: its own process, JSON logs on stderr.
    let guard = SPAWN_OR_OPEN.lock().await;
    let child = Command::new(env!("CARGO_BIN_EXE_case-escrow"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log-level",
            "info,case_escrow::metrics=debug",
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("CASE_ESCROW_CONFIG")
        .env_remove("CASE_ESCROW_METRICS_LISTEN")
        .env("CASE_ESCROW_STATE_ENGINE", engine_env(&data))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");
    let mut child = KillOnDrop(Some(child));
    let mut line = String::new();
    // Its first line comes after its exec: from then on it holds no copy of our files.
    BufReader::new(child.get().stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("address line");
    drop(guard);
    let addr = line.trim().rsplit(' ').next().expect("address").to_owned();
    // A clerk opens cases and asks for payments; the administrator opens the account.
    let admin = case_escrow::cli::auth::admin_token(&data).expect("admin.token");
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let clerk = case_escrow::cli::auth::add_principal(
        channel,
        case_escrow::cli::auth::Bearer::new(&admin).expect("token"),
        "log-clerk",
        &[case_escrow::domain::Role::Clerk],
        &["最高法"],
    )
    .await
    .expect("the clerk is added");
    let clerk_file = data.join("clerk.token");
    std::fs::write(&clerk_file, format!("{clerk}\n")).expect("token file");
    let server_args = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--server".to_owned(), format!("http://{addr}")]);
        let token = if args.first() == Some(&"case") {
            clerk_file.clone()
        } else {
            data.join("admin.token")
        };
        all.extend(["--token-file".to_owned(), token.display().to_string()]);
        all
    };
    let special = run_cli(server_args(&[
        "special-account",
        "open",
        "--court",
        "云0102",
        "--bank",
        "中国工商银行",
        "--branch",
        "昆明五华支行",
        "--account-number",
        "2502010009200012345",
        "--account-name",
        "专户",
        "--document",
        "d",
        "--json",
    ]))
    .await;
    assert!(
        special.status.success(),
        "{}",
        String::from_utf8_lossy(&special.stderr)
    );
    let special: Value = serde_json::from_slice(&special.stdout).expect("json");
    let special_id = s(&special["special_account_id"]);
    let applicant = format!("张三;{APPLICANT_ACCOUNT};建行");
    let opened = run_cli(server_args(&[
        "case",
        "open",
        "--special-account",
        &special_id,
        "--case-number",
        CASE,
        "--applicant",
        &applicant,
        "--respondent",
        "某某贸易有限公司",
        "--request-id",
        "log-open-1",
    ]))
    .await;
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    // Refused (no money yet), naming the applicant's account in the request.
    let refused = run_cli(server_args(&[
        "case",
        "disburse",
        CASE,
        "--amount",
        "5.00",
        "--payee",
        "张三",
        "--payee-account",
        APPLICANT_ACCOUNT,
        "--payee-bank",
        "建行",
        "--request-id",
        "log-refused-1",
    ]))
    .await;
    assert_eq!(refused.status.code(), Some(3));

    let mut server_process = child.0.take().expect("still running");
    let pid = server_process.id().to_string();
    let killed =
        tokio::task::spawn_blocking(move || run_child(Command::new("kill").args(["-TERM", &pid])))
            .await
            .expect("kill's thread");
    assert!(killed.status.success());
    // Bounded: a server that does not stop within the time is killed and the test fails.
    let (done, stopped) = std::sync::mpsc::channel();
    let mut stderr_pipe = server_process.stderr.take().expect("piped");
    std::thread::spawn(move || {
        let mut stderr = String::new();
        let read = stderr_pipe.read_to_string(&mut stderr);
        let _ = done.send((stderr, read.is_ok()));
    });
    let waited = tokio::task::spawn_blocking(move || {
        let got = stopped.recv_timeout(std::time::Duration::from_secs(30));
        let mut guard = KillOnDrop(Some(server_process));
        let status = got.is_ok().then(|| guard.get().wait().ok()).flatten();
        (got, status)
    })
    .await
    .expect("the server's thread");
    let (Ok((stderr, true)), Some(status)) = waited else {
        panic!("the server did not stop within 30 s of SIGTERM");
    };
    assert!(status.success());

    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let of = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect()
    };
    let open_lines = of("log-open-1");
    assert!(!open_lines.is_empty(), "{stderr}");
    assert!(open_lines
        .iter()
        .all(|l| l["span"]["rpc"] == "case_escrow.v1.CaseLedger/OpenCaseAccount"));
    let refused_lines = of("log-refused-1");
    assert!(
        refused_lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["code"] == "FAILED_PRECONDITION"),
        "{stderr}"
    );
    // Every line of the refused call, and only those, name its request id.
    let refused_rpc: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["rpc"] == "case_escrow.v1.CaseLedger/RequestDisbursement")
        .collect();
    assert!(!refused_rpc.is_empty());
    assert!(
        refused_rpc
            .iter()
            .all(|l| l["span"]["request_id"] == "log-refused-1"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(APPLICANT_ACCOUNT),
        "a party's account number reached the log:\n{stderr}"
    );
}

#[tokio::test]
async fn principals_are_managed_from_the_command_line() {
    use sha2::{Digest as _, Sha256};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    // The clerk generates its token on its own machine: no server, no token file.
    let generated = run_cli(vec![
        "principal".into(),
        "new-token".into(),
        "--json".into(),
    ])
    .await;
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let generated: Value = serde_json::from_slice(&generated.stdout).expect("json");
    let token = s(&generated["token"]);
    let sha256 = s(&generated["token_sha256"]);
    assert_eq!(token.len(), 64);
    let expected: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha256, expected, "what sha256sum prints for the token");
    // Without the hash an administrator cannot add a clerk.
    let add = |hash: Option<&str>| {
        let mut args = vec![
            "principal",
            "add",
            "--name",
            "五华区书记员",
            "--role",
            "clerk",
            "--court",
            "云0102",
        ];
        if let Some(h) = hash {
            args.extend(["--token-sha256", h]);
        }
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let args = add(None);
    let (code, _, err) = cli(
        &server,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("token_sha256"),
        "{err}"
    );
    let args = add(Some(&sha256));
    let added = cli_json(
        &server,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let id = s(&added["principal_id"]);
    assert!(added.get("token").is_none(), "no token is shown: {added}");
    assert_eq!(added["roles"][0], "clerk");
    let token_file = dir.path().join("clerk.token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let as_clerk = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--server".to_owned(),
            format!("http://{}", server.addr),
            "--token-file".to_owned(),
            token_file.display().to_string(),
        ]);
        all
    };
    let me = run_cli(as_clerk(&["principal", "whoami", "--json"])).await;
    assert!(
        me.status.success(),
        "{}",
        String::from_utf8_lossy(&me.stderr)
    );
    let me: Value = serde_json::from_slice(&me.stdout).expect("json");
    assert_eq!(me["principal_id"], id.as_str());
    assert_eq!(me["name"], "五华区书记员");
    // A clerk may not manage principals.
    let denied = run_cli(as_clerk(&["principal", "list"])).await;
    assert_eq!(denied.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("PERMISSION_DENIED"));

    let listed = cli_json(&server, &["principal", "list"]).await;
    assert!(listed
        .as_array()
        .expect("a list")
        .iter()
        .any(|p| p["principal_id"] == id.as_str()));
    // The clerk's new token, brought the same way; only the clerk may set it.
    let next = run_cli(vec!["principal".into(), "new-token".into()]).await;
    let next = String::from_utf8_lossy(&next.stdout).into_owned();
    let field = |name: &str| {
        next.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {next}"))
    };
    let (new_token, new_sha) = (field("token:"), field("token_sha256:"));
    let (code, _, err) = cli(
        &server,
        &["principal", "rotate", &id, "--token-sha256", &new_sha],
    )
    .await;
    assert_eq!(
        code, 3,
        "an administrator does not set a clerk's token: {err}"
    );
    assert!(err.contains("PERMISSION_DENIED"), "{err}");
    let mine = run_cli(as_clerk(&[
        "principal",
        "rotate",
        &id,
        "--token-sha256",
        &new_sha,
    ]))
    .await;
    assert!(
        mine.status.success(),
        "the clerk rotates its own token: {}",
        String::from_utf8_lossy(&mine.stderr)
    );
    assert!(!String::from_utf8_lossy(&mine.stdout).contains(&new_token));
    let old = run_cli(as_clerk(&["principal", "whoami"])).await;
    assert_eq!(old.status.code(), Some(3), "the old token is gone");
    std::fs::write(&token_file, format!("{new_token}\n")).expect("token file");
    let now = run_cli(as_clerk(&["principal", "whoami"])).await;
    assert!(
        now.status.success(),
        "the new token signs in: {}",
        String::from_utf8_lossy(&now.stderr)
    );
    let disabled = cli_json(&server, &["principal", "disable", &id, "--reason", "调离"]).await;
    assert_eq!(disabled["enabled"], false);
    let gone = run_cli(as_clerk(&["principal", "whoami"])).await;
    assert_eq!(gone.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("UNAUTHENTICATED"));
    server.stop().await;
}

/// A deferral from the command line: the clerk records it, it waits, an approver
/// approves (or rejects) it, the clerk ends it.
#[tokio::test]
async fn a_deferral_is_recorded_approved_and_ended_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    prepare(&server).await;
    open_special_and_case(&server).await;
    let defer = |approval: &str| {
        [
            "case",
            "defer",
            CASE,
            "--reason",
            "frozen",
            "--approval-ref",
            approval,
            "--note",
            "另案冻结",
        ]
        .map(str::to_owned)
    };
    let args = defer("冻结裁定1");
    let recorded = cli_json(
        &server,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(recorded["state"], "pending_approval", "{recorded}");
    assert_eq!(recorded["active"], false);
    let id = s(&recorded["deferral_id"]);
    // Ending it before it is approved is the ledger's refusal (exit 3).
    let (code, _, err) = cli(&server, &["case", "end-deferral", &id]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("FAILED_PRECONDITION"), "{err}");
    let approved = cli_json(&server, &["case", "approve-deferral", &id]).await;
    assert_eq!(approved["state"], "active", "{approved}");
    assert_eq!(approved["active"], true);
    assert!(!s(&approved["approved_by"]).is_empty());
    let (code, table, err) = cli(&server, &["case", "approve-deferral", &id]).await;
    assert_eq!(code, 3, "approved once: {err}{table}");
    let ended = cli_json(&server, &["case", "end-deferral", &id]).await;
    assert_eq!(ended["state"], "ended", "{ended}");
    let args = defer("冻结裁定2");
    let second = cli_json(
        &server,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let (code, table, err) = cli(
        &server,
        &[
            "case",
            "reject-deferral",
            &s(&second["deferral_id"]),
            "--reason",
            "无冻结文书",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("rejected") && table.contains("无冻结文书"),
        "{table}"
    );
    server.stop().await;
}
