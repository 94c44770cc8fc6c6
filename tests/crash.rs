//! Durability: the server runs as a child process, takes concurrent writes, and is
//! killed with SIGKILL while they are in flight. After a restart every acknowledged
//! write is there, nothing is half-written, and the journal replays to the same state.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use case_escrow::api::pb::{self, case_ledger_client::CaseLedgerClient};
use common::*;
use tokio::sync::Mutex;

const CASE: &str = "（2024）云0102执300号";
const WRITERS: usize = 16;
/// Each writer stops after this many receipts, whatever happens: the loop is bounded.
const RECEIPTS_PER_WRITER_MAX: usize = 200;
/// The kill lands once this many writes are acknowledged, with the rest in flight.
const KILL_AFTER_ACKS: usize = 300;

struct ServerProcess {
    child: Child,
    addr: String,
}

impl Drop for ServerProcess {
    /// A failing test must not leave a server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path) -> ServerProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_case-escrow"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("CASE_ESCROW_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reads the address line");
    let addr = line
        .trim()
        .strip_prefix("case-escrow listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    ServerProcess { child, addr }
}

/// Calls each RPC as the principal whose role it needs; the principals are added
/// through the administrator's token in the server's data directory.
async fn connect(addr: &str, dir: &std::path::Path) -> Ch {
    let admin = case_escrow::cli::auth::admin_token(dir).expect("admin.token");
    common::crew(addr.parse().expect("address"), &admin).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = spawn(dir.path());
    let channel = connect(&server.addr, dir.path()).await;
    let mut specials = pb::special_accounts_client::SpecialAccountsClient::new(channel.clone());
    let mut cases = CaseLedgerClient::new(channel.clone());
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE).await;

    let acked = Arc::new(Mutex::new(Vec::<(pb::RecordReceiptRequest, u64)>::new()));
    let sent = Arc::new(Mutex::new(Vec::<pb::RecordReceiptRequest>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(tokio::sync::Notify::new());
    let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut client = CaseLedgerClient::new(channel.clone());
        let (acked, sent, count) = (acked.clone(), sent.clone(), count.clone());
        let enough = enough.clone();
        let killed = killed_rx.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..RECEIPTS_PER_WRITER_MAX {
                if *killed.borrow() {
                    return;
                }
                let amount = format!("{}.{:02}", w + 1, i % 100);
                let request = receipt_request(CASE, &amount, &format!("W{w}-{i}"));
                sent.lock().await.push(request.clone());
                match client.record_receipt(request.clone()).await {
                    Ok(entry) => {
                        acked
                            .lock()
                            .await
                            .push((request, entry.into_inner().sequence));
                        if count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER_ACKS {
                            enough.notify_one();
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill as soon as enough writes are acknowledged, with the others in flight.
    tokio::time::timeout(std::time::Duration::from_secs(120), enough.notified())
        .await
        .expect("enough writes are acknowledged in time");
    server.child.kill().expect("SIGKILL");
    let _ = killed_tx.send(true);
    server.child.wait().expect("reaped");
    for t in tasks {
        t.await.expect("writer task");
    }
    let acked = acked.lock().await.clone();
    let sent = sent.lock().await.clone();
    assert!(
        acked.len() >= KILL_AFTER_ACKS,
        "only {} acknowledged",
        acked.len()
    );

    // Restart on the same directory.
    let mut server = spawn(dir.path());
    let mut cases = CaseLedgerClient::new(connect(&server.addr, dir.path()).await);

    // Every acknowledged write is there, at the sequence it was acknowledged with.
    for (request, sequence) in &acked {
        let again = cases
            .record_receipt(request.clone())
            .await
            .expect("retry of an acknowledged write")
            .into_inner();
        assert_eq!(
            again.sequence, *sequence,
            "acknowledged write moved or vanished"
        );
    }
    // Nothing is half-written: the balance is exactly the sum of the receipts listed,
    // each listed receipt is whole, and sequences have no gaps.
    let statement = list_everything(&mut cases).await;
    let listed: i64 = statement
        .iter()
        .filter(|e| e.kind == pb::EntryKind::Receipt as i32)
        .map(|e| fen(&e.amount))
        .sum();
    let bal = balances(&mut cases, CASE).await;
    assert_eq!(fen(&bal.received), listed);
    let mut running = 0;
    for e in &statement {
        if e.kind == pb::EntryKind::Receipt as i32 {
            running += fen(&e.amount);
        }
        assert_eq!(fen(&e.running_balance), running, "entry {}", e.sequence);
    }
    // Retrying every request that was sent, acknowledged or not, completes the set
    // exactly once: the unacknowledged ones either landed whole or not at all.
    for request in &sent {
        cases.record_receipt(request.clone()).await.expect("retry");
    }
    let expected: i64 = sent.iter().map(|r| fen(&r.amount)).sum();
    assert_eq!(fen(&balances(&mut cases, CASE).await.received), expected);

    let last = cases
        .get_case_account(pb::GetCaseAccountRequest {
            account: Some(pb::get_case_account_request::Account::CaseNumber(
                CASE.into(),
            )),
            as_of: None,
        })
        .await
        .expect("read")
        .into_inner();
    let live_received = last.balances.expect("balances").received;
    server.child.kill().expect("SIGKILL again");
    server.child.wait().expect("reaped");

    // The journal alone replays to the same balances, and keeps every invariant.
    let entries = case_escrow::store::journal::read_all(&dir.path().join("journal.log"))
        .expect("journal reads");
    assert_eq!(
        entries.len() as u64,
        last.as_of_sequence,
        "gap-free journal"
    );
    let replayed = case_escrow::ledger::MemState::replay(entries.iter()).expect("replays");
    case_escrow::ledger::invariants::check(&replayed).expect("invariants hold");
    let case = replayed
        .cases
        .values()
        .find(|c| c.case_number.as_str() == CASE)
        .expect("case replayed");
    assert_eq!(case.balances.received.to_string(), live_received);
}

async fn list_everything(cases: &mut CaseLedgerClient<Ch>) -> Vec<pb::Entry> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = cases
            .list_entries(pb::ListEntriesRequest {
                case_number: CASE.into(),
                page_size: 1000,
                page_token: token,
                as_of: None,
            })
            .await
            .expect("list")
            .into_inner();
        all.extend(page.entries);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

fn fen(text: &str) -> i64 {
    let (whole, frac) = text.split_once('.').expect("two places");
    whole.parse::<i64>().expect("digits") * 100 + frac.parse::<i64>().expect("digits")
}

/// A tiny deterministic generator, so each round's kill point is random but the test
/// is reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One acknowledged write: how to send it again, and the sequence it was given.
#[derive(Clone)]
enum Acked {
    Receipt(pb::RecordReceiptRequest, u64),
    Request(pb::RequestDisbursementRequest, u64),
    Approve(pb::ApproveDisbursementRequest, u64),
    Pay(pb::ConfirmDisbursementPaidRequest, u64),
    Transfer(pb::TransferBetweenCasesRequest, u64),
    Reverse(pb::ReverseEntryRequest, u64),
}

const ROUNDS: usize = 20;
const ROUND_WORKERS: usize = 6;
/// Bounds each worker's loop whatever happens.
const ROUND_STEPS_MAX: usize = 150;

fn case_of(worker: usize) -> String {
    format!("（2024）云0102执{}号", 500 + worker)
}

/// One worker's loop of every kind of write against its own case (and transfers to the
/// next worker's case), recording what was acknowledged.
async fn work(
    mut client: CaseLedgerClient<Ch>,
    worker: usize,
    round: usize,
    acked: Arc<Mutex<Vec<Acked>>>,
    count: Arc<AtomicUsize>,
    target: usize,
    enough: Arc<tokio::sync::Notify>,
) {
    let case = case_of(worker);
    let ack = |a: Acked| {
        let (acked, count, enough) = (acked.clone(), count.clone(), enough.clone());
        async move {
            acked.lock().await.push(a);
            if count.fetch_add(1, Ordering::SeqCst) + 1 == target {
                enough.notify_one();
            }
        }
    };
    for step in 0..ROUND_STEPS_MAX {
        let tag = format!("R{round}W{worker}S{step}");
        let receipt = receipt_request(&case, "10.00", &tag);
        let Ok(r) = client.record_receipt(receipt.clone()).await else {
            return;
        };
        let receipt_seq = r.into_inner().sequence;
        ack(Acked::Receipt(receipt, receipt_seq)).await;
        let request = disbursement_request(&case, "4.00");
        let Ok(d) = client.request_disbursement(request.clone()).await else {
            return;
        };
        let d = d.into_inner();
        ack(Acked::Request(request, d.sequence)).await;
        let approve = pb::ApproveDisbursementRequest {
            request_id: rid(),
            disbursement_id: d.disbursement_id.clone(),
            approval_ref: tag.clone(),
        };
        let Ok(a) = client.approve_disbursement(approve.clone()).await else {
            return;
        };
        ack(Acked::Approve(approve, a.into_inner().sequence)).await;
        let pay = pb::ConfirmDisbursementPaidRequest {
            request_id: rid(),
            disbursement_id: d.disbursement_id.clone(),
            bank_ref: format!("{tag}-PAY"),
            paid_at: None,
        };
        let Ok(p) = client.confirm_disbursement_paid(pay.clone()).await else {
            return;
        };
        ack(Acked::Pay(pay, p.into_inner().sequence)).await;
        let transfer = pb::TransferBetweenCasesRequest {
            request_id: rid(),
            from_case_number: case.clone(),
            to_case_number: case_of((worker + 1) % ROUND_WORKERS),
            amount: "1.00".into(),
            reason: "调账".into(),
            document_ref: String::new(),
        };
        let Ok(t) = client.transfer_between_cases(transfer.clone()).await else {
            return;
        };
        ack(Acked::Transfer(transfer, t.into_inner().sequence)).await;
        if step % 3 == 0 {
            // Reversing the receipt may be refused (the money moved on): that is an
            // answer too, and changes nothing.
            let reverse = pb::ReverseEntryRequest {
                request_id: rid(),
                sequence: receipt_seq,
                reason: "冲正".into(),
            };
            match client.reverse_entry(reverse.clone()).await {
                Ok(e) => ack(Acked::Reverse(reverse, e.into_inner().sequence)).await,
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
                Err(_) => return,
            }
        }
    }
}

/// Sends an acknowledged request again; it must come back with its original sequence.
async fn replayed_sequence(client: &mut CaseLedgerClient<Ch>, a: &Acked) -> (u64, u64) {
    match a.clone() {
        Acked::Receipt(r, s) => (
            s,
            client
                .record_receipt(r)
                .await
                .expect("retry")
                .into_inner()
                .sequence,
        ),
        Acked::Request(r, s) => (
            s,
            client
                .request_disbursement(r)
                .await
                .expect("retry")
                .into_inner()
                .sequence,
        ),
        Acked::Approve(r, s) => (
            s,
            client
                .approve_disbursement(r)
                .await
                .expect("retry")
                .into_inner()
                .sequence,
        ),
        Acked::Pay(r, s) => (
            s,
            client
                .confirm_disbursement_paid(r)
                .await
                .expect("retry")
                .into_inner()
                .sequence,
        ),
        Acked::Transfer(r, s) => (
            s,
            client
                .transfer_between_cases(r)
                .await
                .expect("retry")
                .into_inner()
                .sequence,
        ),
        Acked::Reverse(r, s) => (
            s,
            client
                .reverse_entry(r)
                .await
                .expect("retry")
                .into_inner()
                .sequence,
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_at_random_moments_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    {
        let server = spawn(dir.path());
        let channel = connect(&server.addr, dir.path()).await;
        let mut specials = pb::special_accounts_client::SpecialAccountsClient::new(channel.clone());
        let mut cases = CaseLedgerClient::new(channel);
        let special = open_special(&mut specials, "云0102").await;
        for w in 0..ROUND_WORKERS {
            open_case(&mut cases, &special.special_account_id, &case_of(w)).await;
        }
    }
    let mut all_acked: Vec<Acked> = Vec::new();
    for round in 0..ROUNDS {
        let mut server = spawn(dir.path());
        let channel = connect(&server.addr, dir.path()).await;
        let acked = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let enough = Arc::new(tokio::sync::Notify::new());
        let target = 5 + rng.below(120) as usize;
        let mut tasks = Vec::new();
        for w in 0..ROUND_WORKERS {
            tasks.push(tokio::spawn(work(
                CaseLedgerClient::new(channel.clone()),
                w,
                round,
                acked.clone(),
                count.clone(),
                target,
                enough.clone(),
            )));
        }
        tokio::time::timeout(std::time::Duration::from_secs(120), enough.notified())
            .await
            .expect("writes are acknowledged in time");
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("reaped");
        for t in tasks {
            t.await.expect("worker");
        }
        all_acked.extend(acked.lock().await.iter().cloned());

        // Restart: every write acknowledged in any round so far is there, unchanged.
        let server = spawn(dir.path());
        let mut client = CaseLedgerClient::new(connect(&server.addr, dir.path()).await);
        for a in &all_acked {
            let (want, got) = replayed_sequence(&mut client, a).await;
            assert_eq!(
                got, want,
                "round {round}: an acknowledged write moved or vanished"
            );
        }
        drop(client);
        drop(server);

        // The journal verifies, replays, and keeps every invariant.
        let v = case_escrow::store::journal::verify(&dir.path().join("journal.log"))
            .expect("journal reads");
        assert_eq!(v.broken, None, "round {round}");
        let entries = case_escrow::store::journal::read_all(&dir.path().join("journal.log"))
            .expect("journal reads");
        let replayed = case_escrow::ledger::MemState::replay(entries.iter()).expect("replays");
        case_escrow::ledger::invariants::check(&replayed).expect("invariants hold");
    }
    assert!(all_acked.len() >= ROUNDS * 5);
}
