//! `case-escrow reconcile case-flow FILE` and `case-escrow reconcile bank FILE`: read a
//! CSV file (formats.md), stream its rows to a running server, and write every
//! discrepancy to FILE's report as CSV and as JSON Lines, with a short summary on the
//! terminal. A line the client cannot read at all is sent as "unreadable" with its
//! line number, so the server reports it as INVALID_ROW in order with the rest.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::client::{Conn, Target};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::pb::{
    self, reconcile_bank_statement_request as bank_req,
    reconcile_bank_statement_response as bank_resp, reconcile_case_flow_request as flow_req,
    reconcile_case_flow_response as flow_resp, reconciliation_client::ReconciliationClient,
};

pub use super::client::CliResult;

/// Rows per message: large enough that per-message costs vanish, small enough to stay
/// far below the message limit.
pub const ROWS_PER_MESSAGE: usize = 2000;
/// Messages read ahead of the server.
const MESSAGES_AHEAD: usize = 8;

pub const CASE_FLOW_COLUMNS: [&str; 10] = [
    "case_number",
    "court_code",
    "filed_on",
    "status",
    "closure_method",
    "closed_on",
    "target_amount",
    "received_amount",
    "disbursed_amount",
    "paid_outside_court",
];
const CASE_FLOW_REQUIRED: [&str; 6] = [
    "case_number",
    "court_code",
    "filed_on",
    "status",
    "received_amount",
    "disbursed_amount",
];
pub const BANK_COLUMNS: [&str; 9] = [
    "account_number",
    "value_date",
    "direction",
    "amount",
    "bank_ref",
    "virtual_account",
    "counterparty_name",
    "counterparty_account",
    "memo",
];
const BANK_REQUIRED: [&str; 5] = [
    "account_number",
    "value_date",
    "direction",
    "amount",
    "bank_ref",
];

/// One line of the file, read into the columns asked for, or why it cannot be read.
pub struct Line {
    pub line: u64,
    pub fields: Result<Vec<String>, String>,
}

/// Reads a CSV file line by line into named columns. Unknown columns are ignored; a
/// missing required column is reported once (line 1) and its field is empty in every
/// row, which the server then reports row by row.
pub struct CsvLines {
    reader: csv::Reader<File>,
    index: Vec<Option<usize>>,
    header_len: usize,
    record: csv::ByteRecord,
    pub header_problem: Option<String>,
}

impl CsvLines {
    pub fn open(path: &Path, columns: &[&str], required: &[&str]) -> CliResult<CsvLines> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(file);
        let header = reader
            .byte_headers()
            .map_err(|e| format!("{}: the header line cannot be read: {e}", path.display()))?
            .clone();
        let names: Vec<String> = header
            .iter()
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim_start_matches('\u{feff}')
                    .trim()
                    .to_ascii_lowercase()
            })
            .collect();
        let position: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let index = columns.iter().map(|c| position.get(c).copied()).collect();
        let missing: Vec<&str> = required
            .iter()
            .filter(|c| !position.contains_key(*c))
            .copied()
            .collect();
        Ok(CsvLines {
            reader,
            index,
            header_len: names.len(),
            record: csv::ByteRecord::new(),
            header_problem: (!missing.is_empty())
                .then(|| format!("the header lacks required columns: {}", missing.join(", "))),
        })
    }

    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    /// The next line, or `None` at the end. An I/O error ends the file.
    pub fn next_line(&mut self) -> CliResult<Option<Line>> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => Ok(None),
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line());
                if self.record.len() != self.header_len {
                    return Ok(Some(Line {
                        line,
                        fields: Err(format!(
                            "it has {} fields where the header has {}",
                            self.record.len(),
                            self.header_len
                        )),
                    }));
                }
                let mut fields = Vec::with_capacity(self.index.len());
                for i in &self.index {
                    let bytes = i.and_then(|i| self.record.get(i)).unwrap_or_default();
                    match std::str::from_utf8(bytes) {
                        Ok(s) => fields.push(s.to_owned()),
                        Err(_) => {
                            return Ok(Some(Line {
                                line,
                                fields: Err("it is not valid UTF-8".into()),
                            }))
                        }
                    }
                }
                Ok(Some(Line {
                    line,
                    fields: Ok(fields),
                }))
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => Err(e.to_string().into()),
                _ => {
                    let line = e.position().map_or(0, |p| p.line());
                    Ok(Some(Line {
                        line,
                        fields: Err(format!("it cannot be read as CSV: {e}")),
                    }))
                }
            },
        }
    }
}

fn take(fields: &mut std::vec::IntoIter<String>) -> String {
    fields.next().unwrap_or_default()
}

pub fn case_flow_row(line: Line) -> pb::CaseFlowRow {
    match line.fields {
        Ok(fields) => {
            let mut f = fields.into_iter();
            pb::CaseFlowRow {
                line: line.line,
                case_number: take(&mut f),
                court_code: take(&mut f),
                filed_on: take(&mut f),
                status: take(&mut f),
                closure_method: take(&mut f),
                closed_on: take(&mut f),
                target_amount: take(&mut f),
                received_amount: take(&mut f),
                disbursed_amount: take(&mut f),
                paid_outside_court: take(&mut f),
                unreadable: String::new(),
            }
        }
        Err(reason) => pb::CaseFlowRow {
            line: line.line,
            unreadable: reason,
            ..Default::default()
        },
    }
}

pub fn bank_row(line: Line) -> pb::BankStatementRow {
    match line.fields {
        Ok(fields) => {
            let mut f = fields.into_iter();
            pb::BankStatementRow {
                line: line.line,
                account_number: take(&mut f),
                value_date: take(&mut f),
                direction: take(&mut f),
                amount: take(&mut f),
                bank_ref: take(&mut f),
                virtual_account: take(&mut f),
                counterparty_name: take(&mut f),
                counterparty_account: take(&mut f),
                memo: take(&mut f),
                unreadable: String::new(),
            }
        }
        Err(reason) => pb::BankStatementRow {
            line: line.line,
            unreadable: reason,
            ..Default::default()
        },
    }
}

fn progress(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Reads the file on a blocking thread and sends its rows in batches; the first
/// message (the header) is sent by the caller.
fn stream_rows<M: Send + 'static>(
    mut lines: CsvLines,
    tx: mpsc::Sender<M>,
    bar: ProgressBar,
    first_problem: Option<Line>,
    batch: impl Fn(Vec<Line>) -> M + Send + 'static,
) -> tokio::task::JoinHandle<CliResult<u64>> {
    tokio::task::spawn_blocking(move || {
        let mut count = 0u64;
        let mut rows: Vec<Line> = Vec::with_capacity(ROWS_PER_MESSAGE);
        if let Some(problem) = first_problem {
            rows.push(problem);
        }
        while let Some(line) = lines.next_line()? {
            rows.push(line);
            count += 1;
            if rows.len() >= ROWS_PER_MESSAGE {
                let full = std::mem::replace(&mut rows, Vec::with_capacity(ROWS_PER_MESSAGE));
                if tx.blocking_send(batch(full)).is_err() {
                    return Ok(count);
                }
                bar.set_position(lines.bytes_read());
                bar.set_message(format!("{count} rows"));
            }
        }
        if !rows.is_empty() {
            // The server may have ended the call (it says why in its answer).
            let _ = tx.blocking_send(batch(rows));
        }
        bar.set_position(lines.bytes_read());
        Ok(count)
    })
}

/// Where the report goes: `<prefix>.csv` and `<prefix>.jsonl`.
pub struct ReportFiles {
    csv: csv::Writer<BufWriter<File>>,
    jsonl: BufWriter<File>,
    pub csv_path: PathBuf,
    pub jsonl_path: PathBuf,
    pub written: u64,
}

impl ReportFiles {
    pub fn create(prefix: &Path) -> CliResult<ReportFiles> {
        let with = |ext: &str| {
            let mut p = prefix.as_os_str().to_owned();
            p.push(ext);
            PathBuf::from(p)
        };
        let (csv_path, jsonl_path) = (with(".csv"), with(".jsonl"));
        let open = |p: &Path| {
            File::create(p)
                .map(BufWriter::new)
                .map_err(|e| format!("{}: {e}", p.display()))
        };
        let mut csv = csv::Writer::from_writer(open(&csv_path)?);
        csv.write_record([
            "kind",
            "severity",
            "court_code",
            "case_number",
            "bank_ref",
            "line",
            "expected",
            "found",
            "message",
            "sequence",
        ])?;
        Ok(ReportFiles {
            csv,
            jsonl: open(&jsonl_path)?,
            csv_path,
            jsonl_path,
            written: 0,
        })
    }

    pub fn discrepancy(&mut self, d: &pb::Discrepancy) -> CliResult<()> {
        let kind = d.kind().as_str_name();
        let severity = d.severity().as_str_name().trim_start_matches("SEVERITY_");
        self.csv.write_record([
            kind,
            severity,
            &d.court_code,
            &d.case_number,
            &d.bank_ref,
            &d.line.to_string(),
            &d.expected,
            &d.found,
            &d.message,
            &d.sequence.to_string(),
        ])?;
        let value = json!({
            "type": "discrepancy",
            "kind": kind,
            "severity": severity,
            "court_code": d.court_code,
            "case_number": d.case_number,
            "bank_ref": d.bank_ref,
            "line": d.line,
            "expected": d.expected,
            "found": d.found,
            "message": d.message,
            "sequence": d.sequence,
        });
        serde_json::to_writer(&mut self.jsonl, &value)?;
        self.jsonl.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    pub fn finish(mut self, summary: serde_json::Value) -> CliResult<()> {
        serde_json::to_writer(&mut self.jsonl, &summary)?;
        self.jsonl.write_all(b"\n")?;
        self.jsonl.flush()?;
        self.csv.flush()?;
        Ok(())
    }
}

fn counts_json(counts: &[pb::KindCount]) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = counts
        .iter()
        .map(|c| (c.kind().as_str_name().to_owned(), json!(c.count)))
        .collect();
    serde_json::Value::Object(map)
}

fn court_json(c: &pb::CourtSummary) -> serde_json::Value {
    json!({
        "court_code": c.court_code,
        "rows": c.rows,
        "discrepancies": c.discrepancies,
        "counts_by_kind": counts_json(&c.counts_by_kind),
        "target_total": c.target_total,
        "received_total": c.received_total,
        "paid_outside_court_total": c.paid_outside_court_total,
        "recovery_rate": c.recovery_rate,
        "case_flow_received_total": c.case_flow_received_total,
        "case_flow_disbursed_total": c.case_flow_disbursed_total,
        "ledger_received_total": c.ledger_received_total,
        "ledger_disbursed_total": c.ledger_disbursed_total,
        "ledger_balance_total": c.ledger_balance_total,
    })
}

pub fn case_flow_summary_json(s: &pb::CaseFlowSummary) -> serde_json::Value {
    json!({
        "type": "summary",
        "as_of_sequence": s.as_of_sequence,
        "as_of": s.as_of,
        "rows": s.rows,
        "invalid_rows": s.invalid_rows,
        "limits": s.limits.as_ref().map(|l| json!({
            "disburse_within_days": l.disburse_within_days,
            "after_deferral_days": l.after_deferral_days,
            "suspense_age_days": l.suspense_age_days,
        })),
        "total": s.total.as_ref().map(court_json),
        "courts": s.courts.iter().map(court_json).collect::<Vec<_>>(),
    })
}

pub fn bank_summary_json(s: &pb::BankSummary) -> serde_json::Value {
    json!({
        "type": "summary",
        "as_of_sequence": s.as_of_sequence,
        "special_account_id": s.special_account_id,
        "court_code": s.court_code,
        "period_from": s.period_from,
        "period_to": s.period_to,
        "rows": s.rows,
        "invalid_rows": s.invalid_rows,
        "matched": s.matched,
        "discrepancies": s.discrepancies,
        "counts_by_kind": counts_json(&s.counts_by_kind),
        "statement_opening": s.statement_opening,
        "statement_closing": s.statement_closing,
        "statement_credits": s.statement_credits,
        "statement_debits": s.statement_debits,
        "ledger_opening": s.ledger_opening,
        "ledger_closing": s.ledger_closing,
        "ledger_bank_balance": s.ledger_bank_balance,
        "ledger_cases_balance": s.ledger_cases_balance,
        "ledger_suspense_balance": s.ledger_suspense_balance,
    })
}

fn kind_table(counts: &[pb::KindCount]) -> String {
    let mut out = String::new();
    for c in counts {
        out.push_str(&format!(
            "  {:<32} {:>10}\n",
            c.kind().as_str_name(),
            c.count
        ));
    }
    if counts.is_empty() {
        out.push_str("  (no discrepancies)\n");
    }
    out
}

/// The terminal summary of a case-flow run.
pub fn case_flow_table(s: &pb::CaseFlowSummary) -> String {
    let mut out = format!(
        "Case-flow reconciliation as of {} (ledger entry {}): {} rows, {} invalid\n",
        s.as_of, s.as_of_sequence, s.rows, s.invalid_rows
    );
    out.push_str("Discrepancies by kind:\n");
    out.push_str(&kind_table(
        s.total
            .as_ref()
            .map(|t| t.counts_by_kind.as_slice())
            .unwrap_or(&[]),
    ));
    out.push_str(&format!(
        "{:<10} {:>9} {:>13} {:>18} {:>18} {:>9}\n",
        "court", "rows", "discrepancies", "target", "recovered", "rate"
    ));
    let courts = s.courts.iter().map(|c| {
        let name = if c.court_code.is_empty() {
            "(no court)"
        } else {
            c.court_code.as_str()
        };
        (name, c)
    });
    for (name, c) in courts.chain(s.total.iter().map(|t| ("TOTAL", t))) {
        // Totals of a province exceed what one amount may be, so they are added as
        // decimals; a figure that does not read shows as "?", never as a silent 0.
        let dec = |t: &str| t.parse::<rust_decimal::Decimal>().ok();
        let recovered = match (dec(&c.received_total), dec(&c.paid_outside_court_total)) {
            (Some(a), Some(b)) => a
                .checked_add(b)
                .map_or_else(|| "?".to_owned(), |v| format!("{:.2}", v.round_dp(2))),
            _ => "?".to_owned(),
        };
        out.push_str(&format!(
            "{:<10} {:>9} {:>13} {:>18} {:>18} {:>9}\n",
            name,
            c.rows,
            c.discrepancies,
            c.target_total,
            recovered,
            if c.recovery_rate.is_empty() {
                "-"
            } else {
                &c.recovery_rate
            },
        ));
    }
    out
}

pub fn bank_table(s: &pb::BankSummary) -> String {
    format!(
        "Bank reconciliation of special account {} ({}) for {} to {} (ledger entry {}):\n  {} lines, {} invalid, {} matched\n  statement: opening {}, credits {}, debits {}, closing {}\n  ledger:    opening {}, closing {}; now bank {} = cases {} + suspense {}\nDiscrepancies by kind:\n{}",
        s.special_account_id,
        s.court_code,
        s.period_from,
        s.period_to,
        s.as_of_sequence,
        s.rows,
        s.invalid_rows,
        s.matched,
        s.statement_opening,
        s.statement_credits,
        s.statement_debits,
        s.statement_closing,
        s.ledger_opening,
        s.ledger_closing,
        s.ledger_bank_balance,
        s.ledger_cases_balance,
        s.ledger_suspense_balance,
        kind_table(&s.counts_by_kind)
    )
}

pub async fn connect(target: &Target) -> CliResult<ReconciliationClient<Conn>> {
    Ok(ReconciliationClient::new(target.connect(None).await?)
        .max_decoding_message_size(crate::server::RECONCILE_MESSAGE_BYTES_MAX))
}

/// Runs a case-flow reconciliation of `file`; returns the summary.
pub async fn case_flow(
    client: &mut ReconciliationClient<Conn>,
    file: &Path,
    header: pb::CaseFlowHeader,
    report: &Path,
    quiet: bool,
) -> CliResult<(pb::CaseFlowSummary, u64)> {
    let lines = CsvLines::open(file, &CASE_FLOW_COLUMNS, &CASE_FLOW_REQUIRED)?;
    let problem = lines.header_problem.clone().map(|p| Line {
        line: 1,
        fields: Err(p),
    });
    let total = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let bar = progress(total, quiet);
    let (tx, rx) = mpsc::channel(MESSAGES_AHEAD);
    tx.send(pb::ReconcileCaseFlowRequest {
        message: Some(flow_req::Message::Header(header)),
    })
    .await
    .map_err(|_| "the request stream closed before it started")?;
    let mut answers = client
        .reconcile_case_flow(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let reader = stream_rows(lines, tx, bar.clone(), problem, |rows| {
        pb::ReconcileCaseFlowRequest {
            message: Some(flow_req::Message::Rows(pb::CaseFlowRows {
                rows: rows.into_iter().map(case_flow_row).collect(),
            })),
        }
    });
    let mut files = ReportFiles::create(report)?;
    let mut summary = None;
    while let Some(answer) = answers.message().await? {
        match answer.message {
            Some(flow_resp::Message::Discrepancy(d)) => files.discrepancy(&d)?,
            Some(flow_resp::Message::Summary(s)) => summary = Some(s),
            Some(flow_resp::Message::Started(_)) | None => {}
        }
    }
    let rows = reader
        .await
        .map_err(|e| format!("reading the file stopped: {e}"))??;
    bar.finish_and_clear();
    let summary = summary.ok_or("the server ended the run without a summary")?;
    files.finish(case_flow_summary_json(&summary))?;
    Ok((summary, rows))
}

/// The first and last valid value dates of a statement file: its period, when the
/// command line does not give it.
pub fn statement_period(file: &Path) -> CliResult<(String, String)> {
    let mut lines = CsvLines::open(file, &["value_date"], &["value_date"])?;
    let mut range: Option<(crate::domain::Date, crate::domain::Date)> = None;
    while let Some(line) = lines.next_line()? {
        let Ok(fields) = line.fields else { continue };
        let Some(Ok(d)) = fields.first().map(|f| crate::domain::Date::parse(f.trim())) else {
            continue;
        };
        range = Some(match range {
            None => (d, d),
            Some((a, b)) => (a.min(d), b.max(d)),
        });
    }
    let (from, to) = range.ok_or("the statement has no valid value_date: give --from and --to")?;
    Ok((from.to_string(), to.to_string()))
}

pub async fn bank(
    client: &mut ReconciliationClient<Conn>,
    file: &Path,
    header: pb::BankStatementHeader,
    report: &Path,
    quiet: bool,
) -> CliResult<pb::BankSummary> {
    let lines = CsvLines::open(file, &BANK_COLUMNS, &BANK_REQUIRED)?;
    let problem = lines.header_problem.clone().map(|p| Line {
        line: 1,
        fields: Err(p),
    });
    let total = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let bar = progress(total, quiet);
    let (tx, rx) = mpsc::channel(MESSAGES_AHEAD);
    tx.send(pb::ReconcileBankStatementRequest {
        message: Some(bank_req::Message::Header(header)),
    })
    .await
    .map_err(|_| "the request stream closed before it started")?;
    let mut answers = client
        .reconcile_bank_statement(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let reader = stream_rows(lines, tx, bar.clone(), problem, |rows| {
        pb::ReconcileBankStatementRequest {
            message: Some(bank_req::Message::Rows(pb::BankStatementRows {
                rows: rows.into_iter().map(bank_row).collect(),
            })),
        }
    });
    let mut files = ReportFiles::create(report)?;
    let mut summary = None;
    while let Some(answer) = answers.message().await? {
        match answer.message {
            Some(bank_resp::Message::Discrepancy(d)) => files.discrepancy(&d)?,
            Some(bank_resp::Message::Summary(s)) => summary = Some(s),
            Some(bank_resp::Message::Started(_)) | None => {}
        }
    }
    reader
        .await
        .map_err(|e| format!("reading the file stopped: {e}"))??;
    bar.finish_and_clear();
    let summary = summary.ok_or("the server ended the run without a summary")?;
    files.finish(bank_summary_json(&summary))?;
    Ok(summary)
}
