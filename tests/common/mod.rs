//! The test harness: a real server on 127.0.0.1 (an ephemeral port), on a temporary
//! data directory, talked to over gRPC; plus builders for the usual requests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use case_escrow::api::pb::{
    self, case_ledger_client::CaseLedgerClient, special_accounts_client::SpecialAccountsClient,
};
use case_escrow::server::{Server, ServerConfig, ServerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A connection that calls each RPC as a principal holding the role it needs: a
/// clerk, an approver, a finance officer (all of 最高法), or the administrator.
pub type Ch = case_escrow::cli::auth::ByRole;

/// Held while a test runs a child process to completion, and while a test opens a
/// store.
///
/// A child forked from this multi-threaded test process starts with copies of every
/// open file — other tests' data-directory locks among them — and closes them only as
/// its exec completes, which can be just after `spawn` has returned. A store closed and
/// reopened in that instant would find its own lock still held. Holding this until the
/// child has exited removes the window. (The server never forks; this is test-only.)
pub static SPAWN_OR_OPEN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a child process to completion under [`SPAWN_OR_OPEN`]. Off the async threads.
pub fn run_child(command: &mut std::process::Command) -> std::process::Output {
    let _guard = SPAWN_OR_OPEN.blocking_lock();
    command.output().expect("the child process runs")
}

/// Runs the case-escrow binary to completion, off the async thread: the server under
/// test runs on this runtime and must keep answering while the command waits for it.
pub async fn run_cli(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        run_child(
            std::process::Command::new(env!("CARGO_BIN_EXE_case-escrow"))
                .args(args)
                .env_remove("CASE_ESCROW_SERVER")
                .env_remove("CASE_ESCROW_TOKEN")
                .env_remove("CASE_ESCROW_TOKEN_FILE")
                .env_remove("CASE_ESCROW_CONFIG")
                .env_remove("CASE_ESCROW_TLS_CA")
                .env_remove("CASE_ESCROW_TLS_CERT")
                .env_remove("CASE_ESCROW_TLS_KEY")
                .env_remove("CASE_ESCROW_CLIENT_TLS_CERT")
                .env_remove("CASE_ESCROW_CLIENT_TLS_KEY")
                .env_remove("CASE_ESCROW_TLS_DOMAIN"),
        )
    })
    .await
    .expect("the command's thread")
}

/// The state engine of a new data directory's server: `CASE_ESCROW_TEST_STATE_ENGINE`
/// (`sled` or `fjall`), to run the whole suite on either; by default, and for a
/// directory that has a state already, the server's own choice.
pub fn test_engine(data_dir: &Path) -> Option<case_escrow::store::Engine> {
    let has_state =
        (case_escrow::store::Engine::ALL.iter()).any(|e| data_dir.join(e.dir_name()).exists());
    if has_state {
        return None;
    }
    match std::env::var("CASE_ESCROW_TEST_STATE_ENGINE").as_deref() {
        Ok("fjall") => Some(case_escrow::store::Engine::Fjall),
        Ok("sled") => Some(case_escrow::store::Engine::Sled),
        Ok(other) => panic!("CASE_ESCROW_TEST_STATE_ENGINE={other:?}: sled or fjall"),
        Err(_) => None,
    }
}

/// [`test_engine`] for a `case-escrow serve` child: its `CASE_ESCROW_STATE_ENGINE`.
pub fn engine_env(data_dir: &Path) -> &'static str {
    test_engine(data_dir).map_or("auto", case_escrow::store::Engine::name)
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// Where metrics are served, when the test asked for them.
    pub metrics_addr: Option<SocketAddr>,
    pub stats: std::sync::Arc<case_escrow::store::WriterStats>,
    pub data_dir: PathBuf,
    /// The first administrator's token, from `<data_dir>/admin.token`.
    pub admin_token: String,
    crew: Ch,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    pub async fn start(data_dir: &Path) -> TestServer {
        Self::start_with(data_dir, |_| {}).await
    }

    /// Starts a server on 127.0.0.1:0 with the test's changes to the configuration.
    pub async fn start_with(data_dir: &Path, change: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            data_dir: data_dir.to_owned(),
            shutdown_grace: Duration::from_secs(5),
            store: case_escrow::store::StoreOptions {
                engine: test_engine(data_dir),
                ..Default::default()
            },
            ..Default::default()
        };
        change(&mut config);
        let guard = SPAWN_OR_OPEN.lock().await;
        let server = Server::bind(config).await.expect("server starts");
        drop(guard);
        let addr = server.local_addr();
        let metrics_addr = server.metrics_addr();
        let stats = server.writer_stats();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let admin_token = case_escrow::cli::auth::admin_token(data_dir).expect("admin.token");
        let crew = saved_crew(addr, data_dir, &admin_token).await;
        TestServer {
            addr,
            metrics_addr,
            stats,
            data_dir: data_dir.to_owned(),
            admin_token,
            crew,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A new connection, calling each RPC as the principal whose role it needs.
    pub async fn channel(&self) -> Ch {
        self.crew.with_channel(self.plain_channel().await)
    }

    /// A new connection that sends no token.
    pub async fn plain_channel(&self) -> Channel {
        plain_channel(&self.addr.to_string()).await
    }

    /// A new connection that sends `token` with every call.
    pub async fn channel_as(&self, token: &str) -> Ch {
        as_one(self.plain_channel().await, token)
    }

    pub async fn specials(&self) -> SpecialAccountsClient<Ch> {
        SpecialAccountsClient::new(self.channel().await)
    }

    pub async fn cases(&self) -> CaseLedgerClient<Ch> {
        CaseLedgerClient::new(self.channel().await)
    }

    /// The administrator's token file, once the server writes one (issue 5).
    pub fn token_file(&self) -> Option<PathBuf> {
        let p = self.data_dir.join(case_escrow::config::ADMIN_TOKEN_FILE);
        p.is_file().then_some(p)
    }

    /// Where and with which token the command line reaches this server.
    pub fn target(&self) -> case_escrow::cli::client::Target {
        case_escrow::cli::client::Target {
            server: format!("http://{}", self.addr),
            token: self
                .token_file()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|t| t.trim().to_owned()),
            tls: None,
        }
    }

    /// The command line's options that name this server and its token.
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["--server".to_owned(), format!("http://{}", self.addr)];
        if let Some(p) = self.token_file() {
            args.push("--token-file".into());
            args.push(p.display().to_string());
        }
        args
    }

    /// Graceful stop: waits until the store is closed, so the directory can reopen.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }
}

/// A connection that sends `token` with every call.
pub fn as_one(channel: Channel, token: &str) -> Ch {
    case_escrow::cli::auth::ByRole::new(channel, &[], token).expect("a token fits a header")
}

pub async fn plain_channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connects")
}

/// A clerk, an approver and a finance officer of 最高法, added by the administrator,
/// and a channel that calls each RPC as the one whose role it needs.
pub async fn crew(addr: SocketAddr, admin_token: &str) -> Ch {
    case_escrow::cli::auth::crew(
        plain_channel(&addr.to_string()).await,
        admin_token,
        &format!("test-{}", uuid::Uuid::new_v4()),
        &["最高法"],
    )
    .await
    .expect("the test principals are added")
}

/// Adds a principal with `roles` in `courts` and answers its token.
pub async fn principal(
    server: &TestServer,
    roles: &[case_escrow::domain::Role],
    courts: &[&str],
) -> String {
    case_escrow::cli::auth::add_principal(
        server.plain_channel().await,
        case_escrow::cli::auth::Bearer::new(&server.admin_token).expect("token"),
        &format!("p-{}", uuid::Uuid::new_v4()),
        roles,
        courts,
    )
    .await
    .expect("the principal is added")
}

/// A finance officer of 最高法, as the command line's client code reaches it.
pub async fn finance_target(server: &TestServer) -> case_escrow::cli::client::Target {
    let token = principal(server, &[case_escrow::domain::Role::Finance], &["最高法"]).await;
    case_escrow::cli::client::Target {
        server: format!("http://{}", server.addr),
        token: Some(token),
        tls: None,
    }
}

pub async fn finance(server: &TestServer) -> case_escrow::cli::auth::Bearer {
    let token = principal(server, &[case_escrow::domain::Role::Finance], &["最高法"]).await;
    case_escrow::cli::auth::Bearer::new(&token).expect("token")
}

/// The file in a data directory where the harness keeps its principals' tokens, so a
/// restarted server is driven by the same principals and adds no entries.
pub const CREW_FILE: &str = "test-crew.tokens";

async fn saved_crew(addr: SocketAddr, data_dir: &Path, admin_token: &str) -> Ch {
    use case_escrow::domain::Role;
    let path = data_dir.join(CREW_FILE);
    let channel = plain_channel(&addr.to_string()).await;
    if let Ok(text) = std::fs::read_to_string(&path) {
        let tokens: Vec<&str> = text.lines().collect();
        let [clerk, approver, finance] = tokens[..] else {
            panic!("{} holds {} lines", path.display(), tokens.len());
        };
        let pairs = [
            (Role::Clerk, clerk),
            (Role::Approver, approver),
            (Role::Finance, finance),
            (Role::Admin, admin_token),
        ];
        return case_escrow::cli::auth::ByRole::new(channel, &pairs, clerk).expect("tokens");
    }
    let mut tokens = Vec::new();
    for role in [Role::Clerk, Role::Approver, Role::Finance] {
        let token = case_escrow::cli::auth::add_principal(
            channel.clone(),
            case_escrow::cli::auth::Bearer::new(admin_token).expect("token"),
            &format!("test-{}-{}", role.name(), uuid::Uuid::new_v4()),
            &[role],
            &["最高法"],
        )
        .await
        .expect("the test principals are added");
        tokens.push(token);
    }
    std::fs::write(&path, tokens.join("\n")).expect("the crew file is written");
    let pairs = [
        (Role::Clerk, tokens[0].as_str()),
        (Role::Approver, tokens[1].as_str()),
        (Role::Finance, tokens[2].as_str()),
        (Role::Admin, admin_token),
    ];
    case_escrow::cli::auth::ByRole::new(channel, &pairs, &tokens[0]).expect("tokens")
}

/// Copies the administrator's and the harness's tokens to a restored data directory
/// (a backup holds the journal, not the files beside it).
pub fn copy_credentials(from: &Path, to: &Path) {
    for name in ["admin.token", CREW_FILE] {
        std::fs::copy(from.join(name), to.join(name)).expect("credentials copied");
    }
}

pub fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn open_special_request(court: &str, account_number: &str) -> pb::OpenSpecialAccountRequest {
    pb::OpenSpecialAccountRequest {
        request_id: rid(),
        court_code: court.into(),
        bank_name: "中国工商银行".into(),
        bank_branch: "昆明五华支行".into(),
        account_number: account_number.into(),
        account_name: format!("{court}法院执行款专户"),
        document_ref: "云高法〔2018〕35号".into(),
    }
}

pub async fn open_special(
    client: &mut SpecialAccountsClient<Ch>,
    court: &str,
) -> pb::SpecialAccount {
    client
        .open_special_account(open_special_request(court, "2502010009200012345"))
        .await
        .expect("special account opens")
        .into_inner()
}

pub const APPLICANT_ACCOUNT: &str = "6222020200012345678";

pub fn open_case_request(
    special_id: &str,
    case_number: &str,
    target: &str,
) -> pb::OpenCaseAccountRequest {
    pb::OpenCaseAccountRequest {
        request_id: rid(),
        special_account_id: special_id.into(),
        case_number: case_number.into(),
        target_amount: target.into(),
        applicants: vec![pb::Party {
            name: "张三".into(),
            payee_account: APPLICANT_ACCOUNT.into(),
            payee_bank: "中国建设银行昆明分行".into(),
        }],
        respondents: vec![pb::Party {
            name: "某某贸易有限公司".into(),
            payee_account: String::new(),
            payee_bank: String::new(),
        }],
    }
}

pub async fn open_case(
    client: &mut CaseLedgerClient<Ch>,
    special_id: &str,
    case_number: &str,
) -> pb::CaseAccount {
    client
        .open_case_account(open_case_request(special_id, case_number, "100000.00"))
        .await
        .expect("case account opens")
        .into_inner()
}

pub fn receipt_request(
    case_number: &str,
    amount: &str,
    bank_ref: &str,
) -> pb::RecordReceiptRequest {
    pb::RecordReceiptRequest {
        request_id: rid(),
        account: Some(pb::record_receipt_request::Account::CaseNumber(
            case_number.into(),
        )),
        amount: amount.into(),
        payer_name: "某某贸易有限公司".into(),
        payer_account: "6217000000000000001".into(),
        bank_ref: bank_ref.into(),
        value_date: "2024-03-01".into(),
        ..Default::default()
    }
}

pub fn disbursement_request(case_number: &str, amount: &str) -> pb::RequestDisbursementRequest {
    pb::RequestDisbursementRequest {
        request_id: rid(),
        case_number: case_number.into(),
        amount: amount.into(),
        payee_name: "张三".into(),
        payee_account: APPLICANT_ACCOUNT.into(),
        payee_bank: "中国建设银行昆明分行".into(),
        purpose: pb::DisbursementPurpose::ToApplicant as i32,
        memo: String::new(),
        exception_reason: String::new(),
    }
}

/// GetCaseAccount by case number, as it stands now.
pub fn get_case_request(case_number: &str) -> pb::GetCaseAccountRequest {
    pb::GetCaseAccountRequest {
        account: Some(pb::get_case_account_request::Account::CaseNumber(
            case_number.into(),
        )),
        as_of: None,
    }
}

pub async fn balances(client: &mut CaseLedgerClient<Ch>, case_number: &str) -> pb::Balances {
    client
        .get_case_account(get_case_request(case_number))
        .await
        .expect("case account reads")
        .into_inner()
        .balances
        .expect("balances present")
}

// ----------------------------------------------------------------------------------
// Reconciliation (issue 3)
// ----------------------------------------------------------------------------------

pub async fn reconciliation(
    server: &TestServer,
) -> pb::reconciliation_client::ReconciliationClient<Ch> {
    pb::reconciliation_client::ReconciliationClient::new(server.channel().await)
}

/// Today in China (UTC+8), as the ledger dates its entries.
pub fn today() -> case_escrow::domain::Date {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64;
    case_escrow::domain::Date::in_china(case_escrow::domain::Micros(micros))
}

/// `days` from today, as YYYY-MM-DD.
pub fn day(days: i64) -> String {
    today().plus_days(days).to_string()
}

/// Request → approve → confirm paid; returns the disbursement id.
pub async fn pay(
    client: &mut CaseLedgerClient<Ch>,
    case_number: &str,
    amount: &str,
    bank_ref: &str,
) -> String {
    let d = client
        .request_disbursement(disbursement_request(case_number, amount))
        .await
        .expect("request")
        .into_inner();
    client
        .approve_disbursement(pb::ApproveDisbursementRequest {
            request_id: rid(),
            disbursement_id: d.disbursement_id.clone(),
            approval_ref: "审批".into(),
        })
        .await
        .expect("approve");
    client
        .confirm_disbursement_paid(pb::ConfirmDisbursementPaidRequest {
            request_id: rid(),
            disbursement_id: d.disbursement_id.clone(),
            bank_ref: bank_ref.into(),
            paid_at: None,
        })
        .await
        .expect("paid");
    d.disbursement_id
}
