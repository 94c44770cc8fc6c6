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
        .env("CASE_ESCROW_STATE_ENGINE", engine_env(dir))
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

/// One write, as sent: how to send it (again).
#[derive(Clone)]
enum Call {
    OpenSpecial(pb::OpenSpecialAccountRequest),
    ChangeSpecial(pb::RegisterAccountChangeRequest),
    CloseSpecial(pb::CloseSpecialAccountRequest),
    OpenCase(pb::OpenCaseAccountRequest),
    CloseCase(pb::CloseCaseAccountRequest),
    Receipt(pb::RecordReceiptRequest),
    Receipts(pb::RecordReceiptsRequest),
    Request(pb::RequestDisbursementRequest),
    Approve(pb::ApproveDisbursementRequest),
    Reject(pb::RejectDisbursementRequest),
    Cancel(pb::CancelDisbursementRequest),
    Pay(pb::ConfirmDisbursementPaidRequest),
    Fail(pb::FailDisbursementRequest),
    Returned(pb::RecordReturnedPaymentRequest),
    Transfer(pb::TransferBetweenCasesRequest),
    Reverse(pb::ReverseEntryRequest),
    Unidentified(pb::RecordUnidentifiedReceiptRequest),
    Assign(pb::AssignUnidentifiedReceiptRequest),
    ReturnUnidentified(pb::ReturnUnidentifiedReceiptRequest),
    Defer(pb::RecordDeferralRequest),
    EndDeferral(pb::EndDeferralRequest),
    ApproveDeferral(pb::ApproveDeferralRequest),
    RejectDeferral(pb::RejectDeferralRequest),
}

/// What a call's answer says that a retry must repeat: the sequences it was given, and
/// the id of what it created (a disbursement, an unidentified receipt, a deferral…).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Answer {
    sequences: Vec<u64>,
    id: String,
}

#[derive(Clone)]
struct Clients {
    specials: pb::special_accounts_client::SpecialAccountsClient<Ch>,
    cases: CaseLedgerClient<Ch>,
}

impl Clients {
    fn new(channel: Ch) -> Clients {
        Clients {
            specials: pb::special_accounts_client::SpecialAccountsClient::new(channel.clone()),
            cases: CaseLedgerClient::new(channel),
        }
    }

    async fn send(&mut self, call: &Call) -> Result<Answer, tonic::Status> {
        let one = |sequence: u64, id: String| Answer {
            sequences: vec![sequence],
            id,
        };
        let (s, c) = (&mut self.specials, &mut self.cases);
        Ok(match call.clone() {
            Call::OpenSpecial(r) => {
                let a = s.open_special_account(r).await?.into_inner();
                one(a.as_of_sequence, a.special_account_id)
            }
            Call::ChangeSpecial(r) => {
                let a = s.register_account_change(r).await?.into_inner();
                one(a.as_of_sequence, a.special_account_id)
            }
            Call::CloseSpecial(r) => {
                let a = s.close_special_account(r).await?.into_inner();
                one(a.as_of_sequence, a.special_account_id)
            }
            Call::OpenCase(r) => {
                let a = c.open_case_account(r).await?.into_inner();
                one(a.as_of_sequence, a.case_account_id)
            }
            Call::CloseCase(r) => {
                let a = c.close_case_account(r).await?.into_inner();
                one(a.as_of_sequence, a.case_account_id)
            }
            Call::Receipt(r) => one(
                c.record_receipt(r).await?.into_inner().sequence,
                String::new(),
            ),
            Call::Receipts(r) => Answer {
                sequences: c
                    .record_receipts(r)
                    .await?
                    .into_inner()
                    .results
                    .into_iter()
                    .map(|item| match item.result {
                        Some(pb::receipt_result::Result::Sequence(s)) => s,
                        other => panic!("a batch item was refused: {other:?}"),
                    })
                    .collect(),
                id: String::new(),
            },
            Call::Request(r) => {
                let d = c.request_disbursement(r).await?.into_inner();
                one(d.sequence, d.disbursement_id)
            }
            Call::Approve(r) => {
                let d = c.approve_disbursement(r).await?.into_inner();
                one(d.sequence, d.disbursement_id)
            }
            Call::Reject(r) => {
                let d = c.reject_disbursement(r).await?.into_inner();
                one(d.sequence, d.disbursement_id)
            }
            Call::Cancel(r) => {
                let d = c.cancel_disbursement(r).await?.into_inner();
                one(d.sequence, d.disbursement_id)
            }
            Call::Pay(r) => {
                let d = c.confirm_disbursement_paid(r).await?.into_inner();
                one(d.sequence, d.disbursement_id)
            }
            Call::Fail(r) => {
                let d = c.fail_disbursement(r).await?.into_inner();
                one(d.sequence, d.disbursement_id)
            }
            Call::Returned(r) => {
                let d = c.record_returned_payment(r).await?.into_inner();
                one(d.sequence, d.disbursement_id)
            }
            Call::Transfer(r) => one(
                c.transfer_between_cases(r).await?.into_inner().sequence,
                String::new(),
            ),
            Call::Reverse(r) => one(
                c.reverse_entry(r).await?.into_inner().sequence,
                String::new(),
            ),
            Call::Unidentified(r) => {
                let u = c.record_unidentified_receipt(r).await?.into_inner();
                one(u.sequence, u.unidentified_receipt_id)
            }
            Call::Assign(r) => {
                let u = c.assign_unidentified_receipt(r).await?.into_inner();
                one(u.sequence, u.unidentified_receipt_id)
            }
            Call::ReturnUnidentified(r) => {
                let u = c.return_unidentified_receipt(r).await?.into_inner();
                one(u.sequence, u.unidentified_receipt_id)
            }
            Call::Defer(r) => {
                let d = c.record_deferral(r).await?.into_inner();
                one(d.sequence, d.deferral_id)
            }
            Call::EndDeferral(r) => {
                let d = c.end_deferral(r).await?.into_inner();
                one(d.sequence, d.deferral_id)
            }
            Call::ApproveDeferral(r) => {
                let d = c.approve_deferral(r).await?.into_inner();
                one(d.sequence, d.deferral_id)
            }
            Call::RejectDeferral(r) => {
                let d = c.reject_deferral(r).await?.into_inner();
                one(d.sequence, d.deferral_id)
            }
        })
    }
}

/// The kinds of write the harness must have had acknowledged over all rounds.
const KINDS: usize = 23;

fn kind(call: &Call) -> usize {
    match call {
        Call::OpenSpecial(_) => 0,
        Call::ChangeSpecial(_) => 1,
        Call::CloseSpecial(_) => 2,
        Call::OpenCase(_) => 3,
        Call::CloseCase(_) => 4,
        Call::Receipt(_) => 5,
        Call::Receipts(_) => 6,
        Call::Request(_) => 7,
        Call::Approve(_) => 8,
        Call::Reject(_) => 9,
        Call::Cancel(_) => 10,
        Call::Pay(_) => 11,
        Call::Fail(_) => 12,
        Call::Returned(_) => 13,
        Call::Transfer(_) => 14,
        Call::Reverse(_) => 15,
        Call::Unidentified(_) => 16,
        Call::Assign(_) => 17,
        Call::ReturnUnidentified(_) => 18,
        Call::Defer(_) => 19,
        Call::EndDeferral(_) => 20,
        Call::ApproveDeferral(_) => 21,
        Call::RejectDeferral(_) => 22,
    }
}

const ROUNDS: usize = 20;
const ROUND_WORKERS: usize = 6;
/// Bounds each worker's loop whatever happens.
const ROUND_STEPS_MAX: usize = 150;

fn case_of(worker: usize) -> String {
    format!("（2024）云0102执{}号", 500 + worker)
}

/// What happened to one call: acknowledged, refused by a rule of the ledger (an answer
/// that writes nothing), or lost with the server.
enum Outcome {
    Done(Answer),
    Refused,
    Gone,
}

struct Worker {
    clients: Clients,
    acked: Arc<Mutex<Vec<(Call, Answer)>>>,
    count: Arc<AtomicUsize>,
    target: usize,
    enough: Arc<tokio::sync::Notify>,
}

impl Worker {
    async fn call(&mut self, call: Call) -> Outcome {
        match self.clients.send(&call).await {
            Ok(answer) => {
                self.acked.lock().await.push((call, answer.clone()));
                if self.count.fetch_add(1, Ordering::SeqCst) + 1 == self.target {
                    self.enough.notify_one();
                }
                Outcome::Done(answer)
            }
            Err(s) if s.code() == tonic::Code::FailedPrecondition => Outcome::Refused,
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ) =>
            {
                Outcome::Gone
            }
            // Anything else is the harness sending something wrong: say so, don't hide it.
            Err(s) => panic!("unexpected answer: {s:?}"),
        }
    }
}

/// Runs `$call`; on to the next step if a rule refused it, out of the loop if the
/// server is gone.
macro_rules! step {
    ($worker:expr, $call:expr) => {
        match $worker.call($call).await {
            Outcome::Done(answer) => Some(answer),
            Outcome::Refused => None,
            Outcome::Gone => return,
        }
    };
}

/// One worker's loop of every kind of write against its own case (transfers go to the
/// next worker's case), recording what was acknowledged.
async fn work(mut w: Worker, worker: usize, round: usize, special_id: String) {
    let case = case_of(worker);
    for step in 0..ROUND_STEPS_MAX {
        let tag = format!("R{round}W{worker}S{step}");
        // Which way the branches below go turns with the worker too, so that every way
        // is taken early in every round, before the kill.
        let turn = step + worker;
        let serial = (round * ROUND_WORKERS + worker) * ROUND_STEPS_MAX + step;
        let Some(receipt) = step!(w, Call::Receipt(receipt_request(&case, "10.00", &tag))) else {
            continue;
        };
        step!(
            w,
            Call::Receipts(pb::RecordReceiptsRequest {
                request_id: rid(),
                receipts: vec![
                    receipt_request(&case, "1.00", &format!("{tag}-B1")),
                    receipt_request(&case, "2.00", &format!("{tag}-B2")),
                ],
            })
        );
        // A disbursement paid, and on every other step returned by the bank.
        if let Some(d) = step!(w, Call::Request(disbursement_request(&case, "4.00"))) {
            let id = d.id;
            let approved = step!(
                w,
                Call::Approve(pb::ApproveDisbursementRequest {
                    request_id: rid(),
                    disbursement_id: id.clone(),
                    approval_ref: tag.clone(),
                })
            );
            let paid = match approved {
                Some(_) => step!(
                    w,
                    Call::Pay(pb::ConfirmDisbursementPaidRequest {
                        request_id: rid(),
                        disbursement_id: id.clone(),
                        bank_ref: format!("{tag}-PAY"),
                        paid_at: None,
                    })
                ),
                None => None,
            };
            if paid.is_some() && turn.is_multiple_of(2) {
                step!(
                    w,
                    Call::Returned(pb::RecordReturnedPaymentRequest {
                        request_id: rid(),
                        disbursement_id: id,
                        bank_ref: format!("{tag}-RET"),
                        reason: "账户已销户".into(),
                    })
                );
            }
        }
        // A disbursement that ends otherwise: rejected, cancelled, or failed at the bank.
        if let Some(d) = step!(w, Call::Request(disbursement_request(&case, "1.00"))) {
            let id = d.id;
            match turn % 3 {
                0 => {
                    step!(
                        w,
                        Call::Reject(pb::RejectDisbursementRequest {
                            request_id: rid(),
                            disbursement_id: id,
                            reason: "材料不全".into(),
                        })
                    );
                }
                1 => {
                    step!(
                        w,
                        Call::Cancel(pb::CancelDisbursementRequest {
                            request_id: rid(),
                            disbursement_id: id,
                            reason: "申请人撤回".into(),
                        })
                    );
                }
                _ => {
                    let approve = Call::Approve(pb::ApproveDisbursementRequest {
                        request_id: rid(),
                        disbursement_id: id.clone(),
                        approval_ref: tag.clone(),
                    });
                    if step!(w, approve).is_some() {
                        step!(
                            w,
                            Call::Fail(pb::FailDisbursementRequest {
                                request_id: rid(),
                                disbursement_id: id,
                                reason: "户名不符".into(),
                            })
                        );
                    }
                }
            }
        }
        step!(
            w,
            Call::Transfer(pb::TransferBetweenCasesRequest {
                request_id: rid(),
                from_case_number: case.clone(),
                to_case_number: case_of((worker + 1) % ROUND_WORKERS),
                amount: "1.00".into(),
                reason: "调账".into(),
                document_ref: String::new(),
            })
        );
        if turn.is_multiple_of(3) {
            // Reversing the receipt may be refused (the money moved on): that is an
            // answer too, and changes nothing.
            step!(
                w,
                Call::Reverse(pb::ReverseEntryRequest {
                    request_id: rid(),
                    sequence: receipt.sequences[0],
                    reason: "冲正".into(),
                })
            );
        }
        if let Some(d) = step!(
            w,
            Call::Defer(pb::RecordDeferralRequest {
                request_id: rid(),
                case_number: case.clone(),
                reason: pb::DeferralReason::Frozen as i32,
                approval_ref: tag.clone(),
                note: String::new(),
            })
        ) {
            // Approved (by the crew's approver, not the clerk who recorded it) and
            // ended, or on every third turn rejected.
            if turn.is_multiple_of(3) {
                step!(
                    w,
                    Call::RejectDeferral(pb::RejectDeferralRequest {
                        request_id: rid(),
                        deferral_id: d.id,
                        reason: "依据不足".into(),
                    })
                );
            } else if step!(
                w,
                Call::ApproveDeferral(pb::ApproveDeferralRequest {
                    request_id: rid(),
                    deferral_id: d.id.clone(),
                })
            )
            .is_some()
            {
                step!(
                    w,
                    Call::EndDeferral(pb::EndDeferralRequest {
                        request_id: rid(),
                        deferral_id: d.id,
                    })
                );
            }
        }
        if let Some(u) = step!(
            w,
            Call::Unidentified(pb::RecordUnidentifiedReceiptRequest {
                request_id: rid(),
                special_account_id: special_id.clone(),
                amount: "3.00".into(),
                payer_name: "李四".into(),
                payer_account: "6217000000000000002".into(),
                bank_ref: format!("{tag}-UNK"),
                value_date: "2024-03-01".into(),
                memo: "无附言".into(),
            })
        ) {
            if turn.is_multiple_of(2) {
                step!(
                    w,
                    Call::Assign(pb::AssignUnidentifiedReceiptRequest {
                        request_id: rid(),
                        unidentified_receipt_id: u.id,
                        case_number: case.clone(),
                    })
                );
            } else {
                step!(
                    w,
                    Call::ReturnUnidentified(pb::ReturnUnidentifiedReceiptRequest {
                        request_id: rid(),
                        unidentified_receipt_id: u.id,
                        reason: "无法识别".into(),
                        bank_ref: format!("{tag}-UNK-RET"),
                    })
                );
            }
        }
        // A case opened and closed, and (one worker) a special account's life.
        let short_case = format!("（2024）云0102执{}号", 10_000 + serial);
        if step!(
            w,
            Call::OpenCase(open_case_request(&special_id, &short_case, "1.00"))
        )
        .is_some()
        {
            step!(
                w,
                Call::CloseCase(pb::CloseCaseAccountRequest {
                    request_id: rid(),
                    case_number: short_case,
                    closure_method: pb::ClosureMethod::Withdrawn as i32,
                    reason: "撤回申请".into(),
                })
            );
        }
        if worker == 0 {
            step!(
                w,
                Call::ChangeSpecial(pb::RegisterAccountChangeRequest {
                    request_id: rid(),
                    special_account_id: special_id.clone(),
                    bank_branch: Some(format!("昆明五华支行{round}-{step}")),
                    reason: "网点调整".into(),
                    document_ref: tag.clone(),
                    ..Default::default()
                })
            );
            let open = open_special_request("云0103", &format!("2502010009{serial:09}"));
            if let Some(s) = step!(w, Call::OpenSpecial(open)) {
                step!(
                    w,
                    Call::CloseSpecial(pb::CloseSpecialAccountRequest {
                        request_id: rid(),
                        special_account_id: s.id,
                        reason: "撤销专户".into(),
                        document_ref: tag.clone(),
                    })
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_at_random_moments_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let special_id = {
        let server = spawn(dir.path());
        let mut clients = Clients::new(connect(&server.addr, dir.path()).await);
        let special = open_special(&mut clients.specials, "云0102").await;
        for w in 0..ROUND_WORKERS {
            open_case(&mut clients.cases, &special.special_account_id, &case_of(w)).await;
        }
        special.special_account_id
    };
    let mut all_acked: Vec<(Call, Answer)> = Vec::new();
    for round in 0..ROUNDS {
        let mut server = spawn(dir.path());
        let channel = connect(&server.addr, dir.path()).await;
        let acked = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let enough = Arc::new(tokio::sync::Notify::new());
        let target = 5 + rng.below(200) as usize;
        let mut tasks = Vec::new();
        for w in 0..ROUND_WORKERS {
            let worker = Worker {
                clients: Clients::new(channel.clone()),
                acked: acked.clone(),
                count: count.clone(),
                target,
                enough: enough.clone(),
            };
            tasks.push(tokio::spawn(work(worker, w, round, special_id.clone())));
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
        let mut clients = Clients::new(connect(&server.addr, dir.path()).await);
        for (call, answer) in &all_acked {
            let again = clients.send(call).await.expect("retry");
            assert_eq!(
                &again, answer,
                "round {round}: an acknowledged write moved or vanished"
            );
        }
        drop(clients);
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
    let mut seen = [0usize; KINDS];
    for (call, _) in &all_acked {
        seen[kind(call)] += 1;
    }
    eprintln!("acknowledged writes by kind: {seen:?}");
    assert!(
        seen.iter().all(|&n| n > 0),
        "every kind of write was acknowledged in some round: {seen:?}"
    );
}
