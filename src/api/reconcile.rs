//! service Reconciliation: rows stream in, discrepancies stream out, the summary last.
//!
//! Each run gets one blocking thread that takes the client's messages, reconciles them
//! against the snapshot and pushes answers into a bounded channel; a task on the
//! runtime reads and decodes the next message meanwhile. The run holds no more than
//! its message of rows (at most [`ROWS_PER_MESSAGE_MAX`]), the one decoded ahead and
//! one channel of answers at a time,
//! so a slow client slows the run down instead of growing its memory.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::domain::{DomainError, Fen, Micros};
use crate::ledger::{Fault, State};
use crate::reconcile::bank::RawLine;
use crate::reconcile::case_flow::RawRow;
use crate::reconcile::report::{money, Totals};
use crate::reconcile::snapshot::{BankRun, BankSummary, CaseFlowRun, CaseFlowSummary, Snapshot};
use crate::reconcile::{self, Discrepancy, Limits};
use crate::store::StoreHandle;

use super::convert::{self as cv};
use super::pb::{self, reconciliation_server::Reconciliation};
use super::{authz, error};

/// Answers waiting for a slow client before the run pauses.
const ANSWERS_QUEUED: usize = 1024;
/// Messages of rows decoded while the run checks the one before: decoding (a tenth of
/// a case-flow run's work) then runs beside the checking instead of before it.
const MESSAGES_AHEAD: usize = 1;
/// The longest limit a request may set, in days.
const LIMIT_DAYS_MAX: u32 = 3650;

/// Runs at once, across callers. Each holds a thread of the blocking pool for as long
/// as its client keeps the stream open, sending or not; unbounded, silent streams
/// would take the whole pool, and with it Backup, VerifyJournal and the store's close.
pub const RECONCILE_RUNS_MAX: usize = 32;

pub struct ReconciliationService {
    pub store: StoreHandle,
    /// The server's configured limits; a request may override them.
    pub limits: Limits,
    /// [`RECONCILE_RUNS_MAX`] permits.
    pub runs: Arc<tokio::sync::Semaphore>,
}

type Answers<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

fn invalid(field: &str, reason: impl Into<String>) -> Status {
    DomainError::invalid(field, reason).into()
}

impl ReconciliationService {
    /// A place among the runs at once, or RESOURCE_EXHAUSTED.
    fn place(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.runs.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{RECONCILE_RUNS_MAX} reconciliations are running; retry once one has ended"
            ))
        })
    }

    fn limits(&self, given: Option<&pb::Limits>) -> Result<Limits, Status> {
        let Some(l) = given else {
            return Ok(self.limits);
        };
        for (name, v) in [
            ("disburse_within_days", l.disburse_within_days),
            ("after_deferral_days", l.after_deferral_days),
            ("suspense_age_days", l.suspense_age_days),
        ] {
            if v > LIMIT_DAYS_MAX {
                return Err(invalid(
                    &format!("header.limits.{name}"),
                    format!("at most {LIMIT_DAYS_MAX} days"),
                ));
            }
        }
        Ok(self.limits.overridden_by(
            l.disburse_within_days,
            l.after_deferral_days,
            l.suspense_age_days,
        ))
    }

    /// The journal sequence a run reads: the one asked for, or the last entry recorded
    /// by the end of `day` (China time) if that came before the last entry now.
    fn snapshot(&self, asked: u64, day: Option<crate::domain::Date>) -> Result<Snapshot, Status> {
        let reads = self.store.reads.clone();
        let last = reads.last_sequence()?;
        let sequence = if asked > 0 {
            if asked > last {
                return Err(invalid(
                    "header.as_of_sequence",
                    format!("{asked} is beyond the last entry {last}"),
                ));
            }
            asked
        } else if let Some(day) = day {
            let end = day.plus_days(1).starts_in_china().0 - 1;
            if end >= super::now().0 {
                last
            } else {
                reads.sequence_at(Micros(end))?.min(last)
            }
        } else {
            last
        };
        Ok(Snapshot { reads, sequence })
    }
}

fn pb_limits(l: &Limits) -> pb::Limits {
    pb::Limits {
        disburse_within_days: l.disburse_within_days,
        after_deferral_days: l.after_deferral_days,
        suspense_age_days: l.suspense_age_days,
    }
}

pub fn discrepancy(d: Discrepancy) -> pb::Discrepancy {
    pb::Discrepancy {
        kind: pb::DiscrepancyKind::from_str_name(d.kind.name())
            .unwrap_or(pb::DiscrepancyKind::Unspecified) as i32,
        severity: match d.severity {
            reconcile::Severity::Info => pb::Severity::Info,
            reconcile::Severity::Warning => pb::Severity::Warning,
            reconcile::Severity::Error => pb::Severity::Error,
        } as i32,
        court_code: d.court_code,
        case_number: d.case_number,
        bank_ref: d.bank_ref,
        expected: d.expected,
        found: d.found,
        message: d.message,
        line: d.line,
        sequence: d.sequence,
    }
}

fn counts(t: &Totals) -> Vec<pb::KindCount> {
    t.by_kind
        .iter()
        .map(|(k, n)| pb::KindCount {
            kind: pb::DiscrepancyKind::from_str_name(k.name())
                .unwrap_or(pb::DiscrepancyKind::Unspecified) as i32,
            count: *n,
        })
        .collect()
}

fn court_summary(court: &str, t: &Totals) -> pb::CourtSummary {
    pb::CourtSummary {
        court_code: court.to_owned(),
        rows: t.rows,
        discrepancies: t.discrepancies,
        counts_by_kind: counts(t),
        target_total: money(t.target),
        received_total: money(t.received),
        paid_outside_court_total: money(t.paid_outside_court),
        recovery_rate: t.recovery_rate().map(|r| r.to_string()).unwrap_or_default(),
        case_flow_received_total: money(t.case_flow_received),
        case_flow_disbursed_total: money(t.case_flow_disbursed),
        ledger_received_total: money(t.ledger_received),
        ledger_disbursed_total: money(t.ledger_disbursed),
        ledger_balance_total: money(t.ledger_balance),
    }
}

fn case_flow_summary(s: &CaseFlowSummary) -> pb::CaseFlowSummary {
    pb::CaseFlowSummary {
        as_of_sequence: s.sequence,
        as_of: s.as_of.map(|d| d.to_string()).unwrap_or_default(),
        limits: Some(pb_limits(&s.limits)),
        rows: s.rows,
        invalid_rows: s.invalid_rows,
        total: Some(court_summary("", &s.total)),
        courts: s
            .courts
            .iter()
            .map(|(court, t)| court_summary(court, t))
            .collect(),
    }
}

fn bank_summary(s: &BankSummary) -> pb::BankSummary {
    pb::BankSummary {
        as_of_sequence: s.sequence,
        special_account_id: s.special_id.to_string(),
        court_code: s.court.clone(),
        period_from: s.from.map(|d| d.to_string()).unwrap_or_default(),
        period_to: s.to.map(|d| d.to_string()).unwrap_or_default(),
        limits: Some(pb_limits(&s.limits)),
        rows: s.rows,
        invalid_rows: s.invalid_rows,
        matched: s.matched,
        discrepancies: s.total.discrepancies,
        counts_by_kind: counts(&s.total),
        statement_opening: s.statement_opening.to_string(),
        statement_closing: s.statement_closing.to_string(),
        statement_credits: money(s.statement_credits),
        statement_debits: money(s.statement_debits),
        ledger_opening: money(s.ledger_opening),
        ledger_closing: money(s.ledger_closing),
        ledger_bank_balance: money(s.ledger_bank_balance),
        ledger_cases_balance: money(s.ledger_cases_balance),
        ledger_suspense_balance: money(s.ledger_suspense_balance),
    }
}

fn raw_row(r: pb::CaseFlowRow) -> RawRow {
    RawRow {
        line: r.line,
        case_number: r.case_number,
        court_code: r.court_code,
        filed_on: r.filed_on,
        status: r.status,
        closure_method: r.closure_method,
        closed_on: r.closed_on,
        target_amount: r.target_amount,
        received_amount: r.received_amount,
        disbursed_amount: r.disbursed_amount,
        paid_outside_court: r.paid_outside_court,
        unreadable: r.unreadable,
    }
}

fn raw_line(r: pb::BankStatementRow) -> RawLine {
    RawLine {
        line: r.line,
        account_number: r.account_number,
        value_date: r.value_date,
        direction: r.direction,
        amount: r.amount,
        bank_ref: r.bank_ref,
        virtual_account: r.virtual_account,
        counterparty_name: r.counterparty_name,
        counterparty_account: r.counterparty_account,
        memo: r.memo,
        unreadable: r.unreadable,
    }
}

/// The most case-flow rows one run takes.
pub const CASE_FLOW_ROWS_MAX: u64 = 50_000_000;
/// The most bank statement lines one run takes.
pub const BANK_STATEMENT_LINES_MAX: u64 = 2_000_000;

/// How a run reports: answers go to the client; false once it has gone away.
struct Reply<T> {
    tx: mpsc::Sender<Result<T, Status>>,
    gone: bool,
}

impl<T> Reply<T> {
    fn send(&mut self, answer: Result<T, Status>) -> bool {
        if !self.gone && self.tx.blocking_send(answer).is_err() {
            self.gone = true;
        }
        !self.gone
    }
}

/// What a run does with each message of rows and at the end. The loop around it is
/// the same for both reconciliations.
trait Run: Send + 'static {
    type In: Send + 'static;
    type Out: Send + 'static;
    type Item;
    /// The most rows (and messages, so empty ones cannot keep a run alive forever) one
    /// run takes: a bound on its time and on what it keeps (per court, per statement).
    const ROWS_MAX: u64;
    /// The rows a message carries; `None` for a message that carries nothing.
    fn rows(msg: Self::In) -> Result<Option<Vec<Self::Item>>, Status>;
    /// Reconciles a message's rows in order; `out` returns false once the client has
    /// gone, and the run may then stop sending.
    fn batch(
        &mut self,
        items: Vec<Self::Item>,
        out: &mut dyn FnMut(Discrepancy) -> bool,
    ) -> Result<(), Fault>;
    fn finish(self, out: &mut dyn FnMut(Discrepancy)) -> Result<Self::Out, Fault>;
    fn discrepancy(d: Discrepancy) -> Self::Out;
}

/// What the reader hands the run: a message, or the stream's end. A channel that closes
/// without the end means the reader stopped (the server is stopping): what came in is
/// then not the whole input, and the run must not conclude from it.
type Ahead<T> = Result<Option<T>, Status>;

/// Reads and decodes the client's messages on the runtime, one message ahead of the
/// run's thread, until the stream ends, fails, or the run no longer takes them.
async fn read_ahead<T>(mut inbound: Streaming<T>, messages: mpsc::Sender<Ahead<T>>) {
    loop {
        // A place in the channel before reading: at most one decoded message waits.
        let Ok(permit) = messages.reserve().await else {
            return;
        };
        // A run that stopped early ends this task now, not at the client's next frame.
        let message = tokio::select! {
            m = inbound.message() => m,
            () = messages.closed() => return,
        };
        match message {
            Ok(Some(m)) => permit.send(Ok(Some(m))),
            Ok(None) => return permit.send(Ok(None)),
            Err(status) => return permit.send(Err(status)),
        }
    }
}

/// The most rows one message may carry; the command line sends 2,000. Bounds what a run
/// holds at once, whatever the row count of the whole run.
pub const ROWS_PER_MESSAGE_MAX: usize = 20_000;

fn drive<R: Run>(
    mut run: R,
    mut inbound: mpsc::Receiver<Ahead<R::In>>,
    started: R::Out,
    reply: &mut Reply<R::Out>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    if !reply.send(Ok(started)) {
        return;
    }
    let mut taken: u64 = 0;
    loop {
        let msg = match inbound.blocking_recv() {
            Some(Ok(Some(m))) => m,
            Some(Ok(None)) => break,
            Some(Err(status)) => {
                reply.send(Err(status));
                return;
            }
            None => {
                reply.send(Err(Status::unavailable(
                    "the rows stopped arriving before the request ended (the server is stopping); nothing was concluded: run it again",
                )));
                return;
            }
        };
        let items = match R::rows(msg) {
            Ok(Some(items)) => items,
            Ok(None) => Vec::new(),
            Err(status) => {
                reply.send(Err(status));
                return;
            }
        };
        if items.len() > ROWS_PER_MESSAGE_MAX {
            reply.send(Err(invalid(
                "rows",
                format!(
                    "a message carries at most {ROWS_PER_MESSAGE_MAX} rows; send more messages"
                ),
            )));
            return;
        }
        taken = taken.saturating_add((items.len() as u64).max(1));
        if taken > R::ROWS_MAX {
            reply.send(Err(Status::invalid_argument(format!(
                "rows: a run takes at most {} rows (and messages); split the file",
                R::ROWS_MAX
            ))));
            return;
        }
        let mut out = |d| reply.send(Ok(R::discrepancy(d)));
        if let Err(f) = run.batch(items, &mut out) {
            reply.send(Err(error::fault(f)));
            return;
        }
        if reply.gone {
            return;
        }
    }
    let mut out = |d| {
        reply.send(Ok(R::discrepancy(d)));
    };
    let finished = run.finish(&mut out);
    // Given back before the last answer: a caller who has read it may start another.
    drop(permit);
    match finished {
        Ok(summary) => {
            reply.send(Ok(summary));
        }
        Err(f) => {
            reply.send(Err(error::fault(f)));
        }
    }
}

fn spawn<R: Run>(
    run: R,
    inbound: Streaming<R::In>,
    started: R::Out,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Answers<R::Out> {
    let (tx, rx) = mpsc::channel(ANSWERS_QUEUED);
    let (messages, ahead) = mpsc::channel(MESSAGES_AHEAD);
    tokio::spawn(read_ahead(inbound, messages));
    tokio::task::spawn_blocking(move || {
        let mut reply = Reply { tx, gone: false };
        drive(run, ahead, started, &mut reply, permit);
    });
    Box::pin(ReceiverStream::new(rx))
}

fn header_again() -> Status {
    invalid(
        "header",
        "only the first message of the stream may carry the header",
    )
}

impl Run for CaseFlowRun {
    type In = pb::ReconcileCaseFlowRequest;
    type Out = pb::ReconcileCaseFlowResponse;
    type Item = pb::CaseFlowRow;
    /// A province's cases, many times over.
    const ROWS_MAX: u64 = CASE_FLOW_ROWS_MAX;

    fn rows(msg: Self::In) -> Result<Option<Vec<Self::Item>>, Status> {
        use pb::reconcile_case_flow_request::Message as M;
        match msg.message {
            Some(M::Rows(r)) => Ok(Some(r.rows)),
            Some(M::Header(_)) => Err(header_again()),
            None => Ok(None),
        }
    }

    fn batch(
        &mut self,
        items: Vec<Self::Item>,
        out: &mut dyn FnMut(Discrepancy) -> bool,
    ) -> Result<(), Fault> {
        CaseFlowRun::rows(self, items.into_iter().map(raw_row).collect(), &mut |d| {
            out(d)
        })
    }

    fn finish(self, out: &mut dyn FnMut(Discrepancy)) -> Result<Self::Out, Fault> {
        let s = CaseFlowRun::finish(self, &mut |d| out(d))?;
        Ok(pb::ReconcileCaseFlowResponse {
            message: Some(pb::reconcile_case_flow_response::Message::Summary(
                case_flow_summary(&s),
            )),
        })
    }

    fn discrepancy(d: Discrepancy) -> Self::Out {
        pb::ReconcileCaseFlowResponse {
            message: Some(pb::reconcile_case_flow_response::Message::Discrepancy(
                discrepancy(d),
            )),
        }
    }
}

impl Run for BankRun {
    type In = pb::ReconcileBankStatementRequest;
    type Out = pb::ReconcileBankStatementResponse;
    type Item = pb::BankStatementRow;
    /// A statement's lines are kept for the run (references, matches): bounded here.
    const ROWS_MAX: u64 = BANK_STATEMENT_LINES_MAX;

    fn rows(msg: Self::In) -> Result<Option<Vec<Self::Item>>, Status> {
        use pb::reconcile_bank_statement_request::Message as M;
        match msg.message {
            Some(M::Rows(r)) => Ok(Some(r.rows)),
            Some(M::Header(_)) => Err(header_again()),
            None => Ok(None),
        }
    }

    fn batch(
        &mut self,
        items: Vec<Self::Item>,
        out: &mut dyn FnMut(Discrepancy) -> bool,
    ) -> Result<(), Fault> {
        let mut listening = true;
        for item in items {
            BankRun::row(self, &mut raw_line(item), &mut |d| listening = out(d))?;
            if !listening {
                break;
            }
        }
        Ok(())
    }

    fn finish(self, out: &mut dyn FnMut(Discrepancy)) -> Result<Self::Out, Fault> {
        let s = BankRun::finish(self, &mut |d| out(d))?;
        Ok(pb::ReconcileBankStatementResponse {
            message: Some(pb::reconcile_bank_statement_response::Message::Summary(
                bank_summary(&s),
            )),
        })
    }

    fn discrepancy(d: Discrepancy) -> Self::Out {
        pb::ReconcileBankStatementResponse {
            message: Some(pb::reconcile_bank_statement_response::Message::Discrepancy(
                discrepancy(d),
            )),
        }
    }
}

fn started(snap: &Snapshot, as_of: String, limits: &Limits) -> pb::ReconciliationStarted {
    pb::ReconciliationStarted {
        as_of_sequence: snap.sequence,
        as_of,
        limits: Some(pb_limits(limits)),
    }
}

#[tonic::async_trait]
impl Reconciliation for ReconciliationService {
    type ReconcileCaseFlowStream = Answers<pb::ReconcileCaseFlowResponse>;
    type ReconcileBankStatementStream = Answers<pb::ReconcileBankStatementResponse>;

    async fn reconcile_case_flow(
        &self,
        request: Request<Streaming<pb::ReconcileCaseFlowRequest>>,
    ) -> Result<Response<Self::ReconcileCaseFlowStream>, Status> {
        use pb::reconcile_case_flow_request::Message as M;
        let caller = authz::caller(&request)?;
        let permit = self.place()?;
        let mut inbound = request.into_inner();
        let header = match inbound.message().await? {
            Some(pb::ReconcileCaseFlowRequest {
                message: Some(M::Header(h)),
            }) => h,
            Some(_) => return Err(invalid("header", "the first message must be the header")),
            None => return Err(invalid("header", "is required: the stream was empty")),
        };
        let as_of = cv::date("header.as_of", &header.as_of)?;
        let limits = self.limits(header.limits.as_ref())?;
        let scope = match header.court_scope.as_str() {
            "" => None,
            s => Some(cv::court_code("header.court_scope", s)?),
        };
        // A caller who may not read every court reconciles within a court scope it
        // may read, and rows of other courts are refused as INVALID_ROW: otherwise the
        // answers would tell which cases other courts hold.
        let restricted = !caller.principal.reads_everything();
        match &scope {
            Some(s) => authz::within(&caller, &[authz::Scope::Court(s.clone())])?,
            None if restricted => {
                return Err(Status::permission_denied(format!(
                    "principal {} may not reconcile every court: give header.court_scope, a court it may read",
                    caller.principal.name
                )))
            }
            None => {}
        }
        let snap = self.snapshot(header.as_of_sequence, Some(as_of))?;
        let first = pb::ReconcileCaseFlowResponse {
            message: Some(pb::reconcile_case_flow_response::Message::Started(started(
                &snap,
                as_of.to_string(),
                &limits,
            ))),
        };
        let run = CaseFlowRun::new(snap, as_of, limits, scope).restricted_to_scope(restricted);
        Ok(Response::new(spawn(run, inbound, first, permit)))
    }

    async fn reconcile_bank_statement(
        &self,
        request: Request<Streaming<pb::ReconcileBankStatementRequest>>,
    ) -> Result<Response<Self::ReconcileBankStatementStream>, Status> {
        use pb::reconcile_bank_statement_request::Message as M;
        let caller = authz::caller(&request)?;
        let permit = self.place()?;
        let mut inbound = request.into_inner();
        let header = match inbound.message().await? {
            Some(pb::ReconcileBankStatementRequest {
                message: Some(M::Header(h)),
            }) => h,
            Some(_) => return Err(invalid("header", "the first message must be the header")),
            None => return Err(invalid("header", "is required: the stream was empty")),
        };
        let special_id = cv::id("header.special_account_id", &header.special_account_id)?;
        let what = format!("special account {special_id}");
        let court = match self.store.reads.special(special_id)? {
            Some(s) => authz::Scope::Found {
                court: s.court,
                what,
            },
            None => authz::Scope::Missing(what),
        };
        authz::within(&caller, &[court])?;
        let from = cv::date("header.period_from", &header.period_from)?;
        let to = cv::date("header.period_to", &header.period_to)?;
        if to < from {
            return Err(invalid(
                "header.period_to",
                format!("{to} is before period_from {from}"),
            ));
        }
        let balance = |field: &str, text: &str| -> Result<Fen, Status> {
            if text.trim().is_empty() {
                return Err(invalid(field, "is required"));
            }
            reconcile::bank::parse_balance(text).map_err(|e| invalid(field, e))
        };
        let opening = balance("header.opening_balance", &header.opening_balance)?;
        let closing = balance("header.closing_balance", &header.closing_balance)?;
        let limits = self.limits(header.limits.as_ref())?;
        let snap = self.snapshot(header.as_of_sequence, None)?;
        let special = snap
            .reads
            .special(special_id)?
            .filter(|s| {
                s.registrations
                    .first()
                    .is_some_and(|r| r.sequence <= snap.sequence)
            })
            .ok_or_else(|| DomainError::not_found(format!("special account {special_id}")))?;
        let first = pb::ReconcileBankStatementResponse {
            message: Some(pb::reconcile_bank_statement_response::Message::Started(
                started(&snap, to.to_string(), &limits),
            )),
        };
        let run = BankRun::new(snap, special, from, to, opening, closing, limits);
        Ok(Response::new(spawn(run, inbound, first, permit)))
    }
}
