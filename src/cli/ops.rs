//! The commands a finance office runs every day, one a form: `special-account`, `case`,
//! `suspense`, `journal`, and `health`. Each is one or a few gRPC calls; the server
//! decides, the command line only shows what it answered.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use tokio_stream::StreamExt;

use crate::api::pb::{
    self, case_ledger_client::CaseLedgerClient, journal_client::JournalClient,
    special_accounts_client::SpecialAccountsClient,
};

use super::client::{CliResult, ClientArgs, Conn, Target};
use super::output::{self as out, Table};

/// Listing pages are fetched this size at a time (the server's maximum).
const PAGE_SIZE: u32 = 1000;
/// A listing stops after this many pages even if the server offers more.
const PAGES_MAX: usize = 10_000;

/// Options of every write: which request this is, so a retry is recognised.
#[derive(Args, Debug, Clone)]
pub struct WriteArgs {
    /// Names this request. Give the same id to retry a request whose answer you did
    /// not see: it is recorded once, whatever happens. [default: a new id, printed]
    #[arg(long)]
    pub request_id: Option<String>,
}

impl WriteArgs {
    fn id(&self) -> String {
        let id = self
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        // On stderr, so that --json output stays one document.
        eprintln!("request id: {id}  (to retry this request, give --request-id {id})");
        id
    }
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print one JSON document instead of a table (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SpecialCmd {
    /// Open a court's special account (执行款专户). Administrators only.
    Open {
        /// The court's code, e.g. 云0102 (a basic court of Kunming).
        #[arg(long)]
        court: String,
        /// The bank, e.g. 中国工商银行.
        #[arg(long)]
        bank: String,
        /// The branch, e.g. 昆明五华支行.
        #[arg(long)]
        branch: String,
        /// The account's number at the bank.
        #[arg(long)]
        account_number: String,
        /// The account's name at the bank, e.g. 五华区人民法院执行款专户.
        #[arg(long)]
        account_name: String,
        /// The document that approved it, e.g. 云高法〔2018〕35号.
        #[arg(long)]
        document: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Register a change of the account's bank, branch, number or name (变更登记).
    /// Give only what changes.
    Change {
        /// The special account's id (as `special-account list` shows it).
        special_account: String,
        /// The new bank.
        #[arg(long)]
        bank: Option<String>,
        /// The new branch.
        #[arg(long)]
        branch: Option<String>,
        /// The new account number.
        #[arg(long)]
        account_number: Option<String>,
        /// The new account name.
        #[arg(long)]
        account_name: Option<String>,
        /// Why it changes.
        #[arg(long)]
        reason: String,
        /// The document that approved the change.
        #[arg(long)]
        document: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Close a special account: only when all its case accounts and its suspense are
    /// zero.
    Close {
        /// The special account's id.
        special_account: String,
        /// Why it closes.
        #[arg(long)]
        reason: String,
        /// The document that approved the closing.
        #[arg(long)]
        document: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Show a special account: bank details, money held, every registration.
    Show {
        /// The special account's id.
        special_account: String,
    },
    /// List special accounts, optionally of one court and the courts under it.
    List {
        /// A court code or its beginning: 云 lists every court of the province.
        #[arg(long, default_value = "")]
        court: String,
    },
}

/// How a disbursement's money is used.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Purpose {
    /// To the applicant (申请执行人), the usual case.
    Applicant,
    /// Back to the respondent (被执行人).
    Refund,
    /// Court fees.
    Fee,
    /// Lodged (提存).
    Lodgement,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Closure {
    /// 执行完毕
    Completed,
    /// 终结本次执行程序 (终本)
    TerminatedThisStage,
    /// 终结执行
    Terminated,
    /// 销案
    Withdrawn,
    /// 不予执行
    NotEnforced,
    /// 驳回申请
    Rejected,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum DeferReason {
    /// 参与分配: distribution among creditors.
    Distribution,
    /// 冻结: frozen in another matter.
    Frozen,
    /// 申请人经通知未领取: the applicant was notified but does not collect.
    #[value(alias = "applicant-not-collecting", alias = "applicant_not_collecting")]
    NotCollecting,
    /// 中止执行: the case is suspended.
    Suspended,
    /// 其他经批准的事由: another approved reason (say which in --note).
    Other,
}

#[derive(Subcommand, Debug)]
pub enum CaseCmd {
    /// Open a case account when the case is filed; prints its virtual account number
    /// for payers.
    Open {
        /// The special account the case's money goes to.
        #[arg(long)]
        special_account: String,
        /// The case number, e.g. (2024)云0102执123号 (ASCII or full-width brackets).
        #[arg(long)]
        case_number: String,
        /// 执行标的: what the case is to recover, in yuan with up to 2 decimals
        /// (e.g. 120000.00); leave out when it recovers no money.
        #[arg(long, default_value = "")]
        target: String,
        /// An applicant (申请执行人) as NAME;ACCOUNT;BANK — the bank account confirmed
        /// for payment. Repeat for several.
        #[arg(long = "applicant", required = true)]
        applicants: Vec<String>,
        /// A respondent (被执行人) by name. Repeat for several.
        #[arg(long = "respondent", required = true)]
        respondents: Vec<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Show a case account: parties, balances, status.
    Show {
        /// The case number, or the case's virtual account number.
        case: String,
        /// As the account stood just after this journal entry.
        #[arg(long)]
        as_of_entry: Option<u64>,
    },
    /// The case's statement (案款明细): every entry with the balance after it. Also
    /// writes it as CSV and as a printable HTML page when asked.
    Statement {
        /// The case number.
        case: String,
        /// Also write the statement as CSV to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Also write it as a printable HTML page to this file.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Record money that arrived for a case (到账).
    Receipt {
        /// The case number, or the virtual account number the payer used.
        case: String,
        /// Yuan, up to 2 decimals, e.g. 50000.00.
        #[arg(long)]
        amount: String,
        /// Who paid.
        #[arg(long)]
        payer: String,
        /// The payer's bank account, if the bank gave it.
        #[arg(long, default_value = "")]
        payer_account: String,
        /// The bank's reference of the transfer: the same reference is recorded once.
        #[arg(long)]
        bank_ref: String,
        /// The day the money arrived (YYYY-MM-DD).
        #[arg(long)]
        value_date: String,
        /// If the case or account number matches no open case of this special account,
        /// hold the money in its suspense (不明款) instead of refusing it.
        #[arg(long, value_name = "SPECIAL_ACCOUNT")]
        else_suspense: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Request a disbursement (发放): reserves the money until it is approved and paid,
    /// rejected or cancelled.
    Disburse {
        /// The case number.
        case: String,
        /// Yuan, up to 2 decimals.
        #[arg(long)]
        amount: String,
        /// Who is paid (normally the applicant, as registered).
        #[arg(long)]
        payee: String,
        /// The payee's bank account.
        #[arg(long)]
        payee_account: String,
        /// The payee's bank.
        #[arg(long)]
        payee_bank: String,
        /// What the money is for.
        #[arg(long, value_enum, default_value = "applicant")]
        purpose: Purpose,
        /// A note for the statement.
        #[arg(long, default_value = "")]
        memo: String,
        /// Required when the payee is not an applicant's confirmed account: why.
        #[arg(long, default_value = "")]
        exception_reason: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Approve a requested disbursement (审批); moves no money.
    Approve {
        /// The disbursement's id, as `case disburse` printed it.
        disbursement: String,
        /// The approval's reference, e.g. 审批2024-001.
        #[arg(long)]
        approval_ref: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Reject a requested disbursement; its money is available again.
    Reject {
        /// The disbursement's id.
        disbursement: String,
        /// Why it is rejected.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Confirm that the bank paid an approved disbursement: the money leaves the case.
    Confirm {
        /// The disbursement's id.
        disbursement: String,
        /// The bank's reference of the payment.
        #[arg(long)]
        bank_ref: String,
        /// When the bank paid, China time: `YYYY-MM-DD` (that day; its end, or now if
        /// sooner) or `YYYY-MM-DD HH:MM[:SS]`. Default: now. The bank reconciliation
        /// looks for the payment on this day's statement.
        #[arg(long, value_name = "WHEN")]
        paid_at: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Record that the bank could not pay an approved disbursement; its money is
    /// available again.
    Fail {
        /// The disbursement's id.
        disbursement: String,
        /// What the bank said.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Withdraw a disbursement not yet approved (once approved, finance ends it:
    /// `confirm` or `fail`).
    Cancel {
        /// The disbursement's id.
        disbursement: String,
        /// Why it is withdrawn.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Record that the bank returned a paid disbursement: the money is back in the case.
    Returned {
        /// The disbursement's id.
        disbursement: String,
        /// The bank's reference of the returned money.
        #[arg(long)]
        bank_ref: String,
        /// Why the bank returned it.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Show one disbursement.
    Disbursement {
        /// The disbursement's id.
        disbursement: String,
    },
    /// Move money from one case to another of the same special account.
    Transfer {
        /// The case the money leaves.
        #[arg(long)]
        from: String,
        /// The case the money goes to.
        #[arg(long)]
        to: String,
        /// Yuan, up to 2 decimals.
        #[arg(long)]
        amount: String,
        /// Why the money moves.
        #[arg(long)]
        reason: String,
        /// The document that orders it.
        #[arg(long, default_value = "")]
        document: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Correct a receipt or a transfer by its exact negation (红字冲正); once per entry.
    Reverse {
        /// The journal entry to reverse (its number in the statement).
        entry: u64,
        /// Why it is corrected.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Record a reason to hold the case's money past the limit (暂缓发放); it holds
    /// nothing back until an approver runs `case approve-deferral`.
    Defer {
        /// The case number.
        case: String,
        /// Why the money may wait.
        #[arg(long, value_enum, ignore_case = true)]
        reason: DeferReason,
        /// The reference of the document the deferral rests on.
        #[arg(long)]
        approval_ref: String,
        /// Details, e.g. the other matter's case number.
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// End a deferral: the money is then due within the after-deferral limit.
    EndDeferral {
        /// The deferral's id, as `case defer` printed it.
        deferral: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Approve a recorded deferral (an approver other than who recorded it): from now
    /// on it holds the limit back.
    ApproveDeferral {
        /// The deferral's id, as `case defer` printed it.
        deferral: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Reject a recorded deferral: it never holds the limit back.
    RejectDeferral {
        /// The deferral's id.
        deferral: String,
        /// Why it is rejected.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Close a case account: only when its balance and reservations are zero.
    Close {
        /// The case number.
        case: String,
        /// How the case ended (结案方式).
        #[arg(long, value_enum)]
        method: Closure,
        /// Why it closes, for the record (the server requires one).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        write: WriteArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum SuspenseCmd {
    /// Record money at the special account that matches no case (不明款).
    Record {
        /// The special account the money arrived at.
        #[arg(long)]
        special_account: String,
        /// Yuan, up to 2 decimals.
        #[arg(long)]
        amount: String,
        /// Who paid, as the bank shows it.
        #[arg(long)]
        payer: String,
        /// The payer's bank account, if the bank gave it.
        #[arg(long, default_value = "")]
        payer_account: String,
        /// The bank's reference of the transfer.
        #[arg(long)]
        bank_ref: String,
        /// The day the money arrived (YYYY-MM-DD).
        #[arg(long)]
        value_date: String,
        /// What the bank's memo line said.
        #[arg(long, default_value = "")]
        memo: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Claim an unidentified receipt to its case.
    Assign {
        /// The unidentified receipt's id.
        receipt: String,
        /// The case number it belongs to.
        #[arg(long)]
        case: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Pay an unidentified receipt back to whoever sent it.
    Return {
        /// The unidentified receipt's id.
        receipt: String,
        /// Why it goes back.
        #[arg(long)]
        reason: String,
        /// The bank's reference of the payment back.
        #[arg(long, default_value = "")]
        bank_ref: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Show one unidentified receipt.
    Show {
        /// The unidentified receipt's id.
        receipt: String,
    },
    /// List a special account's unidentified receipts.
    List {
        /// The special account.
        #[arg(long)]
        special_account: String,
        /// Only those still waiting in suspense.
        #[arg(long)]
        waiting: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum JournalCmd {
    /// The journal's digest now: save it to prove later that nothing before it changed.
    Digest,
    /// Have the server recheck the hash chain (all of it, or a range of entries).
    Verify {
        /// The first entry to check (0: the first of the journal).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// The last entry to check (0: the last of the journal).
        #[arg(long, default_value_t = 0)]
        to: u64,
    },
    /// Follow the journal: every entry from --from on, then new ones as they are
    /// recorded. With --json, one JSON object a line.
    Watch {
        /// The first entry to show (after a disconnect: the last one seen + 1).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Stop after this many entries (default: follow until interrupted).
        #[arg(long)]
        limit: Option<u64>,
    },
}

fn amount_or(field: &str, text: &str) -> CliResult<String> {
    // The server checks money; this only spares a round trip for the plainest slip.
    if text.contains(',') {
        return Err(
            format!("{field}: write {text:?} without thousands separators, e.g. 12345.67").into(),
        );
    }
    Ok(text.to_owned())
}

/// A moment given in China time (UTC+8), as a clerk reads it off a bank statement:
/// `YYYY-MM-DD HH:MM[:SS]` (or with `T`), or a day alone, which means its last second,
/// or `now` if that is sooner (a payment is not confirmed before it is made).
fn china_time(text: &str, now: crate::domain::Micros) -> Result<prost_types::Timestamp, String> {
    let (day, time) = match text.trim().split_once([' ', 'T']) {
        Some((day, time)) => (day, Some(time.trim())),
        None => (text.trim(), None),
    };
    let day = crate::domain::Date::parse(day).map_err(|e| e.0)?;
    // Refused here, not moved to now: a day still to come is a typo, and the server
    // would refuse it too.
    if day > crate::domain::Date::in_china(now) {
        return Err(format!("{day} is a day still to come"));
    }
    let start = day.starts_in_china().0;
    let micros = match time {
        None => (start + 86_399_000_000).min(now.0),
        Some(time) => {
            let bad = || format!("{time:?} is not a time of the form HH:MM or HH:MM:SS");
            let parts: Vec<&str> = time.split(':').collect();
            if !(2..=3).contains(&parts.len())
                || parts
                    .iter()
                    .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(bad());
            }
            let num = |i: usize| parts.get(i).map_or(Ok(0), |p| p.parse::<i64>());
            let (h, m, sec) = (num(0), num(1), num(2));
            let (Ok(h), Ok(m), Ok(sec)) = (h, m, sec) else {
                return Err(bad());
            };
            if h > 23 || m > 59 || sec > 59 {
                return Err(bad());
            }
            start + (h * 3600 + m * 60 + sec) * 1_000_000
        }
    };
    Ok(crate::api::convert::timestamp(crate::domain::Micros(
        micros,
    )))
}

fn parse_applicant(text: &str) -> CliResult<pb::Party> {
    let parts: Vec<&str> = text.split(';').map(str::trim).collect();
    match parts[..] {
        [name, account, bank] if !name.is_empty() => Ok(pb::Party {
            name: name.into(),
            payee_account: account.into(),
            payee_bank: bank.into(),
        }),
        [name] if !name.is_empty() => Ok(pb::Party {
            name: name.into(),
            ..Default::default()
        }),
        _ => Err(format!(
            "--applicant {text:?}: write NAME;ACCOUNT;BANK, e.g. \"张三;6222020200012345678;中国建设银行昆明分行\""
        )
        .into()),
    }
}

fn case_or_van(text: &str) -> (bool, String) {
    // A virtual account number is digits only; a case number never is.
    let is_van = !text.is_empty() && text.chars().all(|c| c.is_ascii_digit());
    (is_van, text.to_owned())
}

fn show(json: bool, v: Value, text: String) {
    if json {
        out::print_json(&v);
    } else {
        out::print_text(&text);
    }
}

async fn specials(t: &Target, rid: Option<&str>) -> CliResult<SpecialAccountsClient<Conn>> {
    Ok(SpecialAccountsClient::new(t.connect(rid).await?))
}

async fn cases(t: &Target, rid: Option<&str>) -> CliResult<CaseLedgerClient<Conn>> {
    Ok(CaseLedgerClient::new(t.connect(rid).await?))
}

pub async fn special(common: Common, cmd: SpecialCmd) -> CliResult<()> {
    let t = common.client.resolve()?;
    let json = common.json;
    let account = match cmd {
        SpecialCmd::Open {
            court,
            bank,
            branch,
            account_number,
            account_name,
            document,
            write,
        } => {
            let id = write.id();
            specials(&t, Some(&id))
                .await?
                .open_special_account(pb::OpenSpecialAccountRequest {
                    request_id: id,
                    court_code: court,
                    bank_name: bank,
                    bank_branch: branch,
                    account_number,
                    account_name,
                    document_ref: document,
                })
                .await?
                .into_inner()
        }
        SpecialCmd::Change {
            special_account,
            bank,
            branch,
            account_number,
            account_name,
            reason,
            document,
            write,
        } => {
            let id = write.id();
            specials(&t, Some(&id))
                .await?
                .register_account_change(pb::RegisterAccountChangeRequest {
                    request_id: id,
                    special_account_id: special_account,
                    bank_name: bank,
                    bank_branch: branch,
                    account_number,
                    account_name,
                    reason,
                    document_ref: document,
                    effective_at: None,
                })
                .await?
                .into_inner()
        }
        SpecialCmd::Close {
            special_account,
            reason,
            document,
            write,
        } => {
            let id = write.id();
            specials(&t, Some(&id))
                .await?
                .close_special_account(pb::CloseSpecialAccountRequest {
                    request_id: id,
                    special_account_id: special_account,
                    reason,
                    document_ref: document,
                })
                .await?
                .into_inner()
        }
        SpecialCmd::Show { special_account } => specials(&t, None)
            .await?
            .get_special_account(pb::GetSpecialAccountRequest {
                special_account_id: special_account,
                as_of: None,
            })
            .await?
            .into_inner(),
        SpecialCmd::List { court } => {
            let mut client = specials(&t, None).await?;
            let mut all = Vec::new();
            let mut token = String::new();
            for _ in 0..PAGES_MAX {
                let page = client
                    .list_special_accounts(pb::ListSpecialAccountsRequest {
                        court_code: court.clone(),
                        page_size: PAGE_SIZE,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                all.extend(page.special_accounts);
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            let mut table = Table::new(&[
                "Special account",
                "Court",
                "Status",
                "Bank",
                "Account number",
                "Bank balance",
                "Suspense",
                "Cases",
            ]);
            for s in &all {
                table.row(vec![
                    s.special_account_id.clone(),
                    s.court_code.clone(),
                    out::special_status(s.status),
                    s.bank_name.clone(),
                    s.account_number.clone(),
                    s.bank_balance.clone(),
                    s.suspense_balance.clone(),
                    s.case_account_count.to_string(),
                ]);
            }
            show(
                json,
                Value::Array(all.iter().map(out::special_json).collect()),
                table.render(),
            );
            return Ok(());
        }
    };
    show(
        json,
        out::special_json(&account),
        out::special_text(&account),
    );
    Ok(())
}

pub async fn case(common: Common, cmd: CaseCmd) -> CliResult<()> {
    let t = common.client.resolve()?;
    let json = common.json;
    match cmd {
        CaseCmd::Open {
            special_account,
            case_number,
            target,
            applicants,
            respondents,
            write,
        } => {
            let applicants = applicants
                .iter()
                .map(|a| parse_applicant(a))
                .collect::<CliResult<Vec<_>>>()?;
            let respondents = respondents
                .into_iter()
                .map(|name| pb::Party {
                    name,
                    ..Default::default()
                })
                .collect();
            let id = write.id();
            let c = cases(&t, Some(&id))
                .await?
                .open_case_account(pb::OpenCaseAccountRequest {
                    request_id: id,
                    special_account_id: special_account,
                    case_number,
                    target_amount: amount_or("--target", &target)?,
                    applicants,
                    respondents,
                })
                .await?
                .into_inner();
            show(json, out::case_json(&c), out::case_text(&c));
        }
        CaseCmd::Show { case, as_of_entry } => {
            let c = get_case(&t, &case, as_of_entry).await?;
            show(json, out::case_json(&c), out::case_text(&c));
        }
        CaseCmd::Statement { case, csv, html } => {
            let c = get_case(&t, &case, None).await?;
            let entries = all_entries(&t, &c.case_number, c.as_of_sequence).await?;
            let special = specials(&t, None)
                .await?
                .get_special_account(pb::GetSpecialAccountRequest {
                    special_account_id: c.special_account_id.clone(),
                    // The bank details in force when the statement's last entry was
                    // recorded, like the rest of the page.
                    as_of: entries.last().and_then(|e| e.recorded_at),
                })
                .await?
                .into_inner();
            if let Some(path) = csv {
                super::statement::write_csv(&path, &c, &entries)?;
                eprintln!("statement written to {}", path.display());
            }
            if let Some(path) = html {
                let page = super::statement::html(&c, &special, &entries);
                super::statement::write_atomically(&path, page.as_bytes())?;
                eprintln!("printable statement written to {}", path.display());
            }
            show(
                json,
                json!({
                    "case": out::case_json(&c),
                    "entries": entries
                        .iter()
                        .map(|e| {
                            let mut v = out::entry_json(e);
                            v["in_out"] = out::case_effect(e, &c.case_account_id).into();
                            v
                        })
                        .collect::<Vec<_>>(),
                }),
                format!(
                    "{}\n{}",
                    out::case_text(&c),
                    out::entries_table(&entries, &c.case_account_id)
                ),
            );
        }
        CaseCmd::Receipt {
            case,
            amount,
            payer,
            payer_account,
            bank_ref,
            value_date,
            else_suspense,
            write,
        } => {
            let (is_van, account) = case_or_van(&case);
            let id = write.id();
            let sent = id.clone();
            let e = cases(&t, Some(&id))
                .await?
                .record_receipt(pb::RecordReceiptRequest {
                    request_id: id,
                    account: Some(if is_van {
                        pb::record_receipt_request::Account::VirtualAccountNumber(account)
                    } else {
                        pb::record_receipt_request::Account::CaseNumber(account)
                    }),
                    amount: amount_or("--amount", &amount)?,
                    payer_name: payer,
                    payer_account,
                    bank_ref,
                    value_date,
                    to_suspense_if_unmatched: else_suspense.is_some(),
                    special_account_id: else_suspense.unwrap_or_default(),
                })
                .await?
                .into_inner();
            // The answer is the entry that holds the money; another request's means
            // this bank transaction was recorded before and nothing was added now.
            if e.request_id != sent {
                eprintln!(
                    "case-escrow: already recorded: bank reference {} is entry {} (request {}); nothing was added",
                    e.bank_ref, e.sequence, e.request_id
                );
            }
            show(json, out::entry_json(&e), out::entry_text(&e));
        }
        CaseCmd::Disburse {
            case,
            amount,
            payee,
            payee_account,
            payee_bank,
            purpose,
            memo,
            exception_reason,
            write,
        } => {
            let id = write.id();
            let d = cases(&t, Some(&id))
                .await?
                .request_disbursement(pb::RequestDisbursementRequest {
                    request_id: id,
                    case_number: case,
                    amount: amount_or("--amount", &amount)?,
                    payee_name: payee,
                    payee_account,
                    payee_bank,
                    purpose: match purpose {
                        Purpose::Applicant => pb::DisbursementPurpose::ToApplicant,
                        Purpose::Refund => pb::DisbursementPurpose::RefundToRespondent,
                        Purpose::Fee => pb::DisbursementPurpose::CourtFee,
                        Purpose::Lodgement => pb::DisbursementPurpose::Lodgement,
                    } as i32,
                    memo,
                    exception_reason,
                })
                .await?
                .into_inner();
            show(json, out::disbursement_json(&d), out::disbursement_text(&d));
        }
        CaseCmd::Approve {
            disbursement,
            approval_ref,
            write,
        } => {
            let id = write.id();
            let d = cases(&t, Some(&id))
                .await?
                .approve_disbursement(pb::ApproveDisbursementRequest {
                    request_id: id,
                    disbursement_id: disbursement,
                    approval_ref,
                })
                .await?
                .into_inner();
            show(json, out::disbursement_json(&d), out::disbursement_text(&d));
        }
        CaseCmd::Reject {
            disbursement,
            reason,
            write,
        } => {
            let id = write.id();
            let d = cases(&t, Some(&id))
                .await?
                .reject_disbursement(pb::RejectDisbursementRequest {
                    request_id: id,
                    disbursement_id: disbursement,
                    reason,
                })
                .await?
                .into_inner();
            show(json, out::disbursement_json(&d), out::disbursement_text(&d));
        }
        CaseCmd::Confirm {
            disbursement,
            bank_ref,
            paid_at,
            write,
        } => {
            let paid_at = paid_at
                .map(|text| china_time(&text, crate::api::now()))
                .transpose()
                .map_err(|e| format!("--paid-at: {e}"))?;
            let id = write.id();
            let d = cases(&t, Some(&id))
                .await?
                .confirm_disbursement_paid(pb::ConfirmDisbursementPaidRequest {
                    request_id: id,
                    disbursement_id: disbursement,
                    bank_ref,
                    paid_at,
                })
                .await?
                .into_inner();
            show(json, out::disbursement_json(&d), out::disbursement_text(&d));
        }
        CaseCmd::Fail {
            disbursement,
            reason,
            write,
        } => {
            let id = write.id();
            let d = cases(&t, Some(&id))
                .await?
                .fail_disbursement(pb::FailDisbursementRequest {
                    request_id: id,
                    disbursement_id: disbursement,
                    reason,
                })
                .await?
                .into_inner();
            show(json, out::disbursement_json(&d), out::disbursement_text(&d));
        }
        CaseCmd::Cancel {
            disbursement,
            reason,
            write,
        } => {
            let id = write.id();
            let d = cases(&t, Some(&id))
                .await?
                .cancel_disbursement(pb::CancelDisbursementRequest {
                    request_id: id,
                    disbursement_id: disbursement,
                    reason,
                })
                .await?
                .into_inner();
            show(json, out::disbursement_json(&d), out::disbursement_text(&d));
        }
        CaseCmd::Returned {
            disbursement,
            bank_ref,
            reason,
            write,
        } => {
            let id = write.id();
            let d = cases(&t, Some(&id))
                .await?
                .record_returned_payment(pb::RecordReturnedPaymentRequest {
                    request_id: id,
                    disbursement_id: disbursement,
                    bank_ref,
                    reason,
                })
                .await?
                .into_inner();
            show(json, out::disbursement_json(&d), out::disbursement_text(&d));
        }
        CaseCmd::Disbursement { disbursement } => {
            let d = cases(&t, None)
                .await?
                .get_disbursement(pb::GetDisbursementRequest {
                    disbursement_id: disbursement,
                })
                .await?
                .into_inner();
            show(json, out::disbursement_json(&d), out::disbursement_text(&d));
        }
        CaseCmd::Transfer {
            from,
            to,
            amount,
            reason,
            document,
            write,
        } => {
            let id = write.id();
            let e = cases(&t, Some(&id))
                .await?
                .transfer_between_cases(pb::TransferBetweenCasesRequest {
                    request_id: id,
                    from_case_number: from,
                    to_case_number: to,
                    amount: amount_or("--amount", &amount)?,
                    reason,
                    document_ref: document,
                })
                .await?
                .into_inner();
            show(json, out::entry_json(&e), out::entry_text(&e));
        }
        CaseCmd::Reverse {
            entry,
            reason,
            write,
        } => {
            let id = write.id();
            let e = cases(&t, Some(&id))
                .await?
                .reverse_entry(pb::ReverseEntryRequest {
                    request_id: id,
                    sequence: entry,
                    reason,
                })
                .await?
                .into_inner();
            show(json, out::entry_json(&e), out::entry_text(&e));
        }
        CaseCmd::Defer {
            case,
            reason,
            approval_ref,
            note,
            write,
        } => {
            let id = write.id();
            let d = cases(&t, Some(&id))
                .await?
                .record_deferral(pb::RecordDeferralRequest {
                    request_id: id,
                    case_number: case,
                    reason: match reason {
                        DeferReason::Distribution => pb::DeferralReason::Distribution,
                        DeferReason::Frozen => pb::DeferralReason::Frozen,
                        DeferReason::NotCollecting => pb::DeferralReason::ApplicantNotCollecting,
                        DeferReason::Suspended => pb::DeferralReason::Suspended,
                        DeferReason::Other => pb::DeferralReason::Other,
                    } as i32,
                    approval_ref,
                    note,
                })
                .await?
                .into_inner();
            show(json, out::deferral_json(&d), out::deferral_text(&d));
        }
        CaseCmd::EndDeferral { deferral, write } => {
            let id = write.id();
            let d = cases(&t, Some(&id))
                .await?
                .end_deferral(pb::EndDeferralRequest {
                    request_id: id,
                    deferral_id: deferral,
                })
                .await?
                .into_inner();
            show(json, out::deferral_json(&d), out::deferral_text(&d));
        }
        CaseCmd::ApproveDeferral { deferral, write } => {
            let id = write.id();
            let d = cases(&t, Some(&id))
                .await?
                .approve_deferral(pb::ApproveDeferralRequest {
                    request_id: id,
                    deferral_id: deferral,
                })
                .await?
                .into_inner();
            show(json, out::deferral_json(&d), out::deferral_text(&d));
        }
        CaseCmd::RejectDeferral {
            deferral,
            reason,
            write,
        } => {
            let id = write.id();
            let d = cases(&t, Some(&id))
                .await?
                .reject_deferral(pb::RejectDeferralRequest {
                    request_id: id,
                    deferral_id: deferral,
                    reason,
                })
                .await?
                .into_inner();
            show(json, out::deferral_json(&d), out::deferral_text(&d));
        }
        CaseCmd::Close {
            case,
            method,
            reason,
            write,
        } => {
            let id = write.id();
            let c = cases(&t, Some(&id))
                .await?
                .close_case_account(pb::CloseCaseAccountRequest {
                    request_id: id,
                    case_number: case,
                    closure_method: match method {
                        Closure::Completed => pb::ClosureMethod::Completed,
                        Closure::TerminatedThisStage => pb::ClosureMethod::TerminatedThisStage,
                        Closure::Terminated => pb::ClosureMethod::Terminated,
                        Closure::Withdrawn => pb::ClosureMethod::Withdrawn,
                        Closure::NotEnforced => pb::ClosureMethod::NotEnforced,
                        Closure::Rejected => pb::ClosureMethod::Rejected,
                    } as i32,
                    reason,
                })
                .await?
                .into_inner();
            show(json, out::case_json(&c), out::case_text(&c));
        }
    }
    Ok(())
}

async fn get_case(t: &Target, case: &str, as_of_entry: Option<u64>) -> CliResult<pb::CaseAccount> {
    let (is_van, account) = case_or_van(case);
    Ok(cases(t, None)
        .await?
        .get_case_account(pb::GetCaseAccountRequest {
            account: Some(if is_van {
                pb::get_case_account_request::Account::VirtualAccountNumber(account)
            } else {
                pb::get_case_account_request::Account::CaseNumber(account)
            }),
            as_of: as_of_entry.map(|s| pb::AsOf {
                point: Some(pb::as_of::Point::Sequence(s)),
            }),
        })
        .await?
        .into_inner())
}

/// Every entry of a case up to `as_of` (so the pages and the balances read agree).
async fn all_entries(t: &Target, case_number: &str, as_of: u64) -> CliResult<Vec<pb::Entry>> {
    let mut client = cases(t, None).await?;
    let mut all = Vec::new();
    let mut token = String::new();
    for _ in 0..PAGES_MAX {
        let page = client
            .list_entries(pb::ListEntriesRequest {
                case_number: case_number.to_owned(),
                page_size: PAGE_SIZE,
                page_token: token,
                as_of: Some(pb::AsOf {
                    point: Some(pb::as_of::Point::Sequence(as_of)),
                }),
            })
            .await?
            .into_inner();
        all.extend(page.entries);
        token = page.next_page_token;
        if token.is_empty() {
            return Ok(all);
        }
    }
    Err(format!(
        "the statement of {case_number} has more than {} entries",
        PAGES_MAX * PAGE_SIZE as usize
    )
    .into())
}

pub async fn suspense(common: Common, cmd: SuspenseCmd) -> CliResult<()> {
    let t = common.client.resolve()?;
    let json = common.json;
    let u = match cmd {
        SuspenseCmd::Record {
            special_account,
            amount,
            payer,
            payer_account,
            bank_ref,
            value_date,
            memo,
            write,
        } => {
            let id = write.id();
            cases(&t, Some(&id))
                .await?
                .record_unidentified_receipt(pb::RecordUnidentifiedReceiptRequest {
                    request_id: id,
                    special_account_id: special_account,
                    amount: amount_or("--amount", &amount)?,
                    payer_name: payer,
                    payer_account,
                    bank_ref,
                    value_date,
                    memo,
                })
                .await?
                .into_inner()
        }
        SuspenseCmd::Assign {
            receipt,
            case,
            write,
        } => {
            let id = write.id();
            cases(&t, Some(&id))
                .await?
                .assign_unidentified_receipt(pb::AssignUnidentifiedReceiptRequest {
                    request_id: id,
                    unidentified_receipt_id: receipt,
                    case_number: case,
                })
                .await?
                .into_inner()
        }
        SuspenseCmd::Return {
            receipt,
            reason,
            bank_ref,
            write,
        } => {
            let id = write.id();
            cases(&t, Some(&id))
                .await?
                .return_unidentified_receipt(pb::ReturnUnidentifiedReceiptRequest {
                    request_id: id,
                    unidentified_receipt_id: receipt,
                    reason,
                    bank_ref,
                })
                .await?
                .into_inner()
        }
        SuspenseCmd::Show { receipt } => cases(&t, None)
            .await?
            .get_unidentified_receipt(pb::GetUnidentifiedReceiptRequest {
                unidentified_receipt_id: receipt,
            })
            .await?
            .into_inner(),
        SuspenseCmd::List {
            special_account,
            waiting,
        } => {
            let mut client = cases(&t, None).await?;
            let mut all = Vec::new();
            let mut token = String::new();
            for _ in 0..PAGES_MAX {
                let page = client
                    .list_unidentified_receipts(pb::ListUnidentifiedReceiptsRequest {
                        special_account_id: special_account.clone(),
                        only_in_suspense: waiting,
                        page_size: PAGE_SIZE,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                all.extend(page.unidentified_receipts);
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            show(
                json,
                Value::Array(all.iter().map(out::unidentified_json).collect()),
                out::unidentified_table(&all),
            );
            return Ok(());
        }
    };
    show(json, out::unidentified_json(&u), out::unidentified_text(&u));
    Ok(())
}

pub async fn journal(common: Common, cmd: JournalCmd) -> CliResult<()> {
    let t = common.client.resolve()?;
    let json = common.json;
    let mut client = JournalClient::new(t.connect(None).await?);
    match cmd {
        JournalCmd::Digest => {
            let d = client
                .get_digest(pb::GetDigestRequest {})
                .await?
                .into_inner();
            show(
                json,
                json!({"sequence": d.sequence, "digest": out::hex(&d.digest)}),
                out::fields(&[
                    ("Last entry", d.sequence.to_string()),
                    ("Digest", out::hex(&d.digest)),
                ]),
            );
        }
        JournalCmd::Verify { from, to } => {
            let v = client
                .verify_journal(pb::VerifyJournalRequest {
                    from_sequence: from,
                    to_sequence: to,
                })
                .await?
                .into_inner();
            let digest = v.digest.clone().unwrap_or_default();
            show(
                json,
                json!({
                    "ok": v.ok, "checked": v.checked, "broken_sequence": v.broken_sequence,
                    "reason": v.reason, "digest_sequence": digest.sequence,
                    "digest": out::hex(&digest.digest),
                }),
                out::fields(&[
                    ("Verified", if v.ok { "yes".into() } else { "NO".into() }),
                    ("Entries checked", v.checked.to_string()),
                    (
                        "Broken at entry",
                        if v.ok {
                            String::new()
                        } else {
                            v.broken_sequence.to_string()
                        },
                    ),
                    ("Reason", v.reason.clone()),
                    (
                        "Digest",
                        format!("{} at entry {}", out::hex(&digest.digest), digest.sequence),
                    ),
                ]),
            );
            if !v.ok {
                return Err(format!(
                    "the journal is broken at entry {}: {}",
                    v.broken_sequence, v.reason
                )
                .into());
            }
        }
        JournalCmd::Watch { from, limit } => {
            let mut stream = client
                .watch_journal(pb::WatchJournalRequest {
                    from_sequence: from,
                })
                .await?
                .into_inner();
            let mut seen = 0u64;
            let stdout = std::io::stdout();
            while limit.is_none_or(|l| seen < l) {
                let Some(item) = stream.next().await else {
                    if limit.is_some() {
                        // Fewer entries than asked for, and the server is gone.
                        return Err(tonic::Status::unavailable(format!(
                            "the server ended the journal after {seen} entries"
                        ))
                        .into());
                    }
                    return Err(tonic::Status::unavailable(
                        "the server ended the journal's stream (stopping?); resume with --from the last entry + 1",
                    )
                    .into());
                };
                let je = item?;
                let Some(e) = je.entry.as_ref() else { continue };
                let line = if json {
                    let mut v = out::entry_json(e);
                    if let Value::Object(m) = &mut v {
                        m.insert("entry_hash".into(), Value::String(out::hex(&je.entry_hash)));
                        m.insert("chain_hash".into(), Value::String(out::hex(&je.chain_hash)));
                    }
                    format!("{v}")
                } else {
                    format!(
                        "{:>8}  {}  {:<28}  {:>14}  {}",
                        e.sequence,
                        out::time(e.recorded_at.as_ref()),
                        out::entry_kind(e.kind),
                        e.amount,
                        e.case_number
                    )
                };
                // A reader that has gone away (`| head`) ends the watch, not a panic.
                let mut lock = stdout.lock();
                if writeln!(lock, "{line}")
                    .and_then(|()| lock.flush())
                    .is_err()
                {
                    break;
                }
                seen += 1;
            }
        }
    }
    Ok(())
}

/// The standard gRPC health check: exits 0 when the server is serving.
pub async fn health(client: ClientArgs) -> CliResult<()> {
    let t = client.resolve()?;
    let channel = t.connect(None).await?;
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status;
    if status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        println!("serving");
        Ok(())
    } else {
        Err(tonic::Status::unavailable("the server is not serving (starting or stopping)").into())
    }
}

/// The people and systems that may call the server (administrators only, but for
/// `whoami`, `new-token` and rotating one's own token).
#[derive(Subcommand, Debug)]
pub enum PrincipalCmd {
    /// Generate a token on this machine, without the server, and print it and its
    /// SHA-256. Keep the token (in a file only you can read); give the administrator
    /// only the SHA-256, for `principal add --token-sha256` or `principal rotate
    /// --token-sha256`.
    NewToken,
    /// Add a person or system that may call the server. A clerk, approver or finance
    /// principal brings its own token (`--token-sha256`, from its holder's `principal
    /// new-token`) or a client certificate; for the others, without `--token-sha256`,
    /// the server draws a token, printed once: hand it over and keep no copy.
    Add {
        /// A name people recognise, e.g. 五华区书记员张三.
        #[arg(long)]
        name: String,
        /// What it may do: clerk, approver, finance, admin, auditor (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Court codes it acts in (云 covers 云01 and 云0102); repeat for several.
        #[arg(long = "court")]
        courts: Vec<String>,
        /// Court codes it may only read (supervision); repeat for several.
        #[arg(long = "supervises")]
        supervises: Vec<String>,
        /// For approvers: the tier it may approve up to (1, 2, …; see the server's
        /// approval tiers).
        #[arg(long, default_value_t = 0)]
        approval_level: u32,
        /// SHA-256 (hex) of a client certificate that signs in as it (mutual TLS).
        #[arg(long, default_value = "")]
        cert_sha256: String,
        /// SHA-256 (hex) of the token its holder generated (`principal new-token`).
        #[arg(long, default_value = "")]
        token_sha256: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Stop a principal from calling the server; its entries stay in the journal.
    Disable {
        /// The principal's id.
        principal: String,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Give a principal a new token (the old one stops working): the one whose SHA-256
    /// `--token-sha256` gives, or else one the server draws and prints once. A clerk,
    /// approver or finance principal's token only that principal itself rotates.
    Rotate {
        /// The principal's id.
        principal: String,
        /// SHA-256 (hex) of the new token, generated by its holder.
        #[arg(long, default_value = "")]
        token_sha256: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// One principal.
    Show {
        /// The principal's id.
        principal: String,
    },
    /// Every principal this administrator manages.
    List,
    /// Who the token in use belongs to.
    Whoami,
}

fn role_of(text: &str) -> CliResult<i32> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "clerk" => pb::Role::Clerk,
        "approver" => pb::Role::Approver,
        "finance" => pb::Role::Finance,
        "admin" => pb::Role::Admin,
        "auditor" => pb::Role::Auditor,
        other => {
            return Err(format!(
                "--role: {other:?} is not one of clerk, approver, finance, admin, auditor"
            )
            .into())
        }
    } as i32)
}

fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Clerk) => "clerk",
        Ok(pb::Role::Approver) => "approver",
        Ok(pb::Role::Finance) => "finance",
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::Auditor) => "auditor",
        _ => "?",
    }
}

fn principal_json(p: &pb::Principal) -> Value {
    json!({
        "principal_id": p.principal_id,
        "name": p.name,
        "roles": p.roles.iter().map(|r| role_name(*r)).collect::<Vec<_>>(),
        "court_scopes": p.court_scopes,
        "supervised_scopes": p.supervised_scopes,
        "approval_level": p.approval_level,
        "enabled": p.enabled,
        "client_cert_sha256": p.client_cert_sha256,
        "created_sequence": p.created_sequence,
        "changed_sequence": p.changed_sequence,
    })
}

fn principal_row(p: &pb::Principal) -> Vec<String> {
    vec![
        p.principal_id.clone(),
        p.name.clone(),
        p.roles
            .iter()
            .map(|r| role_name(*r))
            .collect::<Vec<_>>()
            .join(","),
        p.court_scopes.join(","),
        p.supervised_scopes.join(","),
        p.approval_level.to_string(),
        if p.enabled { "yes" } else { "no" }.to_owned(),
    ]
}

const PRINCIPAL_HEADERS: [&str; 7] = [
    "id",
    "name",
    "roles",
    "courts",
    "supervises",
    "approval level",
    "enabled",
];

fn show_principal(json: bool, p: &pb::Principal, token: Option<&str>) {
    let mut v = principal_json(p);
    let mut table = Table::new(&PRINCIPAL_HEADERS);
    table.row(principal_row(p));
    let mut text = table.render();
    match token {
        Some(token) if !token.is_empty() => {
            v["token"] = Value::String(token.to_owned());
            text.push_str(&format!(
                "token (shown only now; hand it over and keep no copy): {token}\n"
            ));
        }
        Some(_) => text.push_str("token: its holder's own (the server shows none)\n"),
        None => {}
    }
    show(json, v, text);
}

/// `principal new-token`: no server, nothing journaled.
fn new_token(json: bool) -> CliResult<()> {
    let (token, sha256) = super::auth::new_token()?;
    show(
        json,
        json!({ "token": token, "token_sha256": sha256 }),
        format!(
            "token:        {token}\n\
             token_sha256: {sha256}\n\
             Keep the token secret (in a file only you can read, for --token-file); give the\n\
             administrator only token_sha256.\n"
        ),
    );
    Ok(())
}

pub async fn principal(common: Common, cmd: PrincipalCmd) -> CliResult<()> {
    use crate::api::pb::principals_client::PrincipalsClient;
    if let PrincipalCmd::NewToken = cmd {
        return new_token(common.json);
    }
    let t = common.client.resolve()?;
    let json = common.json;
    let client = |rid: Option<String>| {
        let t = t.clone();
        async move { CliResult::Ok(PrincipalsClient::new(t.connect(rid.as_deref()).await?)) }
    };
    match cmd {
        PrincipalCmd::Add {
            name,
            roles,
            courts,
            supervises,
            approval_level,
            cert_sha256,
            token_sha256,
            write,
        } => {
            let roles = roles
                .iter()
                .map(|r| role_of(r))
                .collect::<CliResult<Vec<_>>>()?;
            let id = write.id();
            let added = client(Some(id.clone()))
                .await?
                .add_principal(pb::AddPrincipalRequest {
                    request_id: id,
                    name,
                    roles,
                    court_scopes: courts,
                    supervised_scopes: supervises,
                    approval_level,
                    client_cert_sha256: cert_sha256,
                    token_sha256,
                })
                .await?
                .into_inner();
            let p = added.principal.unwrap_or_default();
            show_principal(json, &p, Some(&added.token));
        }
        PrincipalCmd::Disable {
            principal,
            reason,
            write,
        } => {
            let id = write.id();
            let p = client(Some(id.clone()))
                .await?
                .disable_principal(pb::DisablePrincipalRequest {
                    request_id: id,
                    principal_id: principal,
                    reason,
                })
                .await?
                .into_inner();
            show_principal(json, &p, None);
        }
        PrincipalCmd::Rotate {
            principal,
            token_sha256,
            write,
        } => {
            let id = write.id();
            let rotated = client(Some(id.clone()))
                .await?
                .rotate_token(pb::RotateTokenRequest {
                    request_id: id,
                    principal_id: principal,
                    token_sha256,
                })
                .await?
                .into_inner();
            let p = rotated.principal.unwrap_or_default();
            show_principal(json, &p, Some(&rotated.token));
        }
        PrincipalCmd::Show { principal } => {
            let p = client(None)
                .await?
                .get_principal(pb::GetPrincipalRequest {
                    principal_id: principal,
                })
                .await?
                .into_inner();
            show_principal(json, &p, None);
        }
        PrincipalCmd::Whoami => {
            let p = client(None)
                .await?
                .who_am_i(pb::WhoAmIRequest {})
                .await?
                .into_inner();
            show_principal(json, &p, None);
        }
        PrincipalCmd::NewToken => new_token(json)?,
        PrincipalCmd::List => {
            let mut c = client(None).await?;
            let mut all = Vec::new();
            let mut token = String::new();
            for _ in 0..PAGES_MAX {
                let page = c
                    .list_principals(pb::ListPrincipalsRequest {
                        page_size: PAGE_SIZE,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                all.extend(page.principals);
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            let mut table = Table::new(&PRINCIPAL_HEADERS);
            for p in &all {
                table.row(principal_row(p));
            }
            show(
                json,
                Value::Array(all.iter().map(principal_json).collect()),
                table.render(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::china_time;
    use crate::domain::Micros;

    /// 2024-03-28 00:00 in China is 2024-03-27 16:00 UTC.
    const DAY_START_S: i64 = 1_711_584_000 - 8 * 3600;
    const LATER: Micros = Micros(2_000_000_000_000_000);

    #[test]
    fn a_moment_read_off_a_bank_statement_is_china_time() {
        let at = |text: &str, now: Micros| china_time(text, now).map(|t| (t.seconds, t.nanos));
        let ten_thirty = DAY_START_S + 10 * 3600 + 30 * 60;
        assert_eq!(at("2024-03-28 10:30", LATER), Ok((ten_thirty, 0)));
        assert_eq!(at("2024-03-28T10:30:15", LATER), Ok((ten_thirty + 15, 0)));
        // A day alone is its last second, or now if that comes first.
        assert_eq!(at("2024-03-28", LATER), Ok((DAY_START_S + 86_399, 0)));
        let noon = Micros((DAY_START_S + 12 * 3600) * 1_000_000 + 250_000);
        assert_eq!(
            at("2024-03-28", noon),
            Ok((DAY_START_S + 12 * 3600, 250_000_000))
        );
        // A day still to come is a slip, not today.
        assert!(china_time("2024-03-29", noon).is_err());
        assert!(china_time("2024-03-29 00:10", noon).is_err());
        for bad in [
            "2024-03-28 24:00",
            "2024-03-28 10",
            "2024-03-28 1:30",
            "2024-03-28 10:60",
            "2024-03-28 10:30:5",
            "2024-02-30",
            "28/03/2024",
            "",
        ] {
            assert!(china_time(bad, LATER).is_err(), "{bad:?}");
        }
    }
}
