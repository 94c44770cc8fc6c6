//! Case-flow reconciliation, rule by rule: one row of the case management system's
//! export and the ledger's facts about that case, as of the run's snapshot, become
//! discrepancies. Pure: no I/O, no clock.

use crate::domain::{
    money::parse_fen, Balances, CaseClock, CaseNumber, ClosureMethod, CourtCode, Date, Fen,
};

use super::report::{clip, fen, fields_within, Discrepancy, Kind, Severity};
use super::Limits;

/// A row as it arrives: the export's fields as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRow {
    pub line: u64,
    pub case_number: String,
    pub court_code: String,
    pub filed_on: String,
    pub status: String,
    pub closure_method: String,
    pub closed_on: String,
    pub target_amount: String,
    pub received_amount: String,
    pub disbursed_amount: String,
    pub paid_outside_court: String,
    /// Set by a client that could not read the line at all: the reason.
    pub unreadable: String,
}

/// A row whose every field is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub case_number: CaseNumber,
    pub court: CourtCode,
    pub filed_on: Date,
    /// `Some` when the case-flow system has the case closed.
    pub closed: Option<(ClosureMethod, Date)>,
    pub target: Option<Fen>,
    pub received: Fen,
    pub disbursed: Fen,
    pub paid_outside_court: Fen,
}

/// What the ledger knows about a case as of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCase {
    pub case_number: CaseNumber,
    /// The serials of its virtual account number: who it is in the seen-set.
    pub van_serials: (u32, u64),
    pub target: Fen,
    pub balances: Balances,
    pub clock: CaseClock,
    /// The closure, if the account was closed at or before the snapshot.
    pub closed: Option<(ClosureMethod, u64)>,
}

impl LedgerCase {
    /// Received, counting a payment the bank returned once, as a case-flow system does.
    pub fn net_received(&self) -> Fen {
        Fen(self.balances.received.0 - self.clock.returned.0)
    }

    pub fn net_disbursed(&self) -> Fen {
        Fen(self.balances.disbursed.0 - self.clock.returned.0)
    }
}

/// The codes of formats.md, and the Chinese terms, for 结案方式.
pub fn parse_closure_method(text: &str) -> Option<ClosureMethod> {
    let t = text.trim();
    let m = match t.to_ascii_lowercase().as_str() {
        "completed" | "执行完毕" => ClosureMethod::Completed,
        "terminated_this_stage" | "终结本次执行程序" | "终本" => {
            ClosureMethod::TerminatedThisStage
        }
        "terminated" | "终结执行" => ClosureMethod::Terminated,
        "withdrawn" | "销案" => ClosureMethod::Withdrawn,
        "not_enforced" | "不予执行" => ClosureMethod::NotEnforced,
        "rejected" | "驳回申请" => ClosureMethod::Rejected,
        _ => return None,
    };
    Some(m)
}

pub fn closure_name(m: ClosureMethod) -> &'static str {
    match m {
        ClosureMethod::Completed => "completed (执行完毕)",
        ClosureMethod::TerminatedThisStage => "terminated this stage (终本)",
        ClosureMethod::Terminated => "terminated (终结执行)",
        ClosureMethod::Withdrawn => "withdrawn (销案)",
        ClosureMethod::NotEnforced => "not enforced (不予执行)",
        ClosureMethod::Rejected => "rejected (驳回申请)",
    }
}

fn required<'a>(name: &str, text: &'a str) -> Result<&'a str, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("{name} is required"));
    }
    Ok(t)
}

fn amount(name: &str, text: &str) -> Result<Fen, String> {
    parse_fen(text.trim())
        .map(Fen)
        .map_err(|e| format!("{name}: {e}"))
}

fn date(name: &str, text: &str) -> Result<Date, String> {
    Date::parse(text.trim()).map_err(|e| format!("{name}: {e}"))
}

/// Validates a row; the error is the reason, for INVALID_ROW.
pub fn parse_row(raw: &RawRow) -> Result<Row, String> {
    if !raw.unreadable.is_empty() {
        return Err(clip(&raw.unreadable).into_owned());
    }
    fields_within(&[
        ("case_number", &raw.case_number),
        ("court_code", &raw.court_code),
        ("filed_on", &raw.filed_on),
        ("status", &raw.status),
        ("closure_method", &raw.closure_method),
        ("closed_on", &raw.closed_on),
        ("target_amount", &raw.target_amount),
        ("received_amount", &raw.received_amount),
        ("disbursed_amount", &raw.disbursed_amount),
        ("paid_outside_court", &raw.paid_outside_court),
    ])?;
    let case_number = CaseNumber::parse(required("case_number", &raw.case_number)?)
        .map_err(|e| format!("case_number: {e}"))?;
    let court = CourtCode::parse(required("court_code", &raw.court_code)?)
        .map_err(|e| format!("court_code: {e}"))?;
    if &court != case_number.court() {
        return Err(format!(
            "court_code {court} is not the court of case {case_number} ({})",
            case_number.court()
        ));
    }
    let filed_on = date("filed_on", required("filed_on", &raw.filed_on)?)?;
    let closed = match required("status", &raw.status)?
        .to_ascii_lowercase()
        .as_str()
    {
        "open" => {
            if !raw.closed_on.trim().is_empty() {
                return Err("closed_on is given but status is open".into());
            }
            None
        }
        "closed" => {
            let method_text = required("closure_method (status is closed)", &raw.closure_method)?;
            let method = parse_closure_method(method_text).ok_or_else(|| {
                format!(
                    "closure_method {method_text:?} is not one of completed, terminated_this_stage, terminated, withdrawn, not_enforced, rejected (or their Chinese terms)"
                )
            })?;
            let on = date(
                "closed_on",
                required("closed_on (status is closed)", &raw.closed_on)?,
            )?;
            if on < filed_on {
                return Err(format!("closed_on {on} is before filed_on {filed_on}"));
            }
            Some((method, on))
        }
        other => return Err(format!("status {other:?} is neither open nor closed")),
    };
    let target = match raw.target_amount.trim() {
        "" => None,
        t => Some(amount("target_amount", t)?),
    };
    let paid_outside_court = match raw.paid_outside_court.trim() {
        "" => Fen::ZERO,
        t => amount("paid_outside_court", t)?,
    };
    Ok(Row {
        line: raw.line,
        case_number,
        court,
        filed_on,
        closed,
        target,
        received: amount(
            "received_amount",
            required("received_amount", &raw.received_amount)?,
        )?,
        disbursed: amount(
            "disbursed_amount",
            required("disbursed_amount", &raw.disbursed_amount)?,
        )?,
        paid_outside_court,
    })
}

/// The INVALID_ROW for a row that cannot be reconciled.
pub fn invalid_row(raw: &RawRow, reason: &str) -> Discrepancy {
    Discrepancy::new(
        Kind::InvalidRow,
        Severity::Error,
        format!(
            "Line {} of the case-flow data cannot be reconciled: {reason}.",
            raw.line
        ),
    )
    .court(clip(raw.court_code.trim()))
    .case(clip(raw.case_number.trim()))
    .line(raw.line)
    .values("a valid case-flow row", reason)
}

/// The rules for one row. `ledger` is `None` when the ledger had no account for the
/// case at the snapshot.
pub fn check_row(
    row: &Row,
    ledger: Option<&LedgerCase>,
    as_of: Date,
    limits: &Limits,
    out: &mut impl FnMut(Discrepancy),
) {
    let number = row.case_number.as_str();
    let court = row.court.as_str();
    let d = |kind, severity, message: String| {
        Discrepancy::new(kind, severity, message)
            .court(court)
            .case(number)
            .line(row.line)
    };
    let Some(ledger) = ledger else {
        let money = row.received.0 > 0 || row.disbursed.0 > 0;
        out(d(
            Kind::CaseMissingInLedger,
            if money { Severity::Error } else { Severity::Warning },
            format!(
                "Case {number} is in the case-flow data{} but has no case account in the ledger as of {as_of}: every enforcement case must have its own account (一案一账户).",
                if money {
                    format!(", which records {} received and {} disbursed,", row.received, row.disbursed)
                } else {
                    String::new()
                }
            ),
        )
        .values("a case account", "none"));
        under_recovered(row, row.received, 0, &d, out);
        return;
    };
    let received = ledger.net_received();
    let disbursed = ledger.net_disbursed();
    if row.received != received {
        out(d(
            Kind::ReceivedMismatch,
            Severity::Error,
            format!(
                "Case {number}: the case-flow data records {} received, the ledger {} (difference {}).",
                row.received,
                received,
                Fen(received.0 - row.received.0)
            ),
        )
        .values(received.to_string(), row.received.to_string()));
    }
    if row.disbursed != disbursed {
        out(d(
            Kind::DisbursedMismatch,
            Severity::Error,
            format!(
                "Case {number}: the case-flow data records {} disbursed, the ledger {} (difference {}).",
                row.disbursed,
                disbursed,
                Fen(disbursed.0 - row.disbursed.0)
            ),
        )
        .values(disbursed.to_string(), row.disbursed.to_string()));
    }
    let balance = ledger.balances.balance();
    let reserved = ledger.balances.reserved;
    let mut reported_activity = false;
    match (row.closed, ledger.closed) {
        (Some((method, closed_on)), ledger_closed) => {
            if balance.0 > 0 || reserved.0 > 0 {
                out(d(
                    Kind::ClosedWithBalance,
                    Severity::Error,
                    format!(
                        "Case {number} was closed on {closed_on} in the case-flow data, but its account still holds {balance}{}: money must be paid out before a case is closed.",
                        if reserved.0 > 0 { format!(" ({reserved} of it reserved for payments not yet made)") } else { String::new() }
                    ),
                )
                .values("0.00", balance.to_string()));
            } else if ledger_closed.is_none() {
                out(d(
                    Kind::StatusMismatch,
                    Severity::Warning,
                    format!(
                        "Case {number} was closed on {closed_on} in the case-flow data, but its account in the ledger is still open (it holds nothing)."
                    ),
                )
                .values("closed", "open"));
            }
            if let Some((ledger_method, _)) = ledger_closed {
                if ledger_method != method {
                    out(d(
                        Kind::StatusMismatch,
                        Severity::Warning,
                        format!(
                            "Case {number} was closed as {} in the case-flow data but as {} in the ledger.",
                            closure_name(method),
                            closure_name(ledger_method)
                        ),
                    )
                    .values(closure_name(ledger_method), closure_name(method)));
                }
            }
            if let Some((seq, moved_on)) = ledger.clock.last_movement {
                if moved_on > closed_on {
                    reported_activity = true;
                    out(d(
                        Kind::ActivityAfterClosure,
                        Severity::Error,
                        format!(
                            "Money of case {number} moved on {moved_on} (ledger entry {seq}), after the case was closed on {closed_on} in the case-flow data."
                        ),
                    )
                    .values(format!("no movement after {closed_on}"), moved_on.to_string())
                    .sequence(seq));
                }
            }
            if method == ClosureMethod::Completed {
                under_recovered(row, received, ledger.target.0, &d, out);
            }
        }
        (None, Some(_)) => out(d(
            Kind::StatusMismatch,
            Severity::Warning,
            format!(
                "Case {number} is open in the case-flow data, but its account in the ledger is closed."
            ),
        )
        .values("open", "closed")),
        (None, None) => {}
    }
    if let (Some((_, closed_seq)), Some((seq, moved_on))) =
        (ledger.closed, ledger.clock.last_movement)
    {
        if seq > closed_seq && !reported_activity {
            out(d(
                Kind::ActivityAfterClosure,
                Severity::Error,
                format!(
                    "Money of case {number} moved on {moved_on} (ledger entry {seq}), after its account was closed (entry {closed_seq})."
                ),
            )
            .values(format!("no movement after entry {closed_seq}"), format!("entry {seq}"))
            .sequence(seq));
        }
    }
    overdue(ledger, as_of, limits, &mut |x: Discrepancy| {
        out(x.court(court).line(row.line))
    });
}

/// COMPLETED_BUT_UNDER_RECOVERED: closed as completed (执行完毕) although received and
/// settled outside the court fall short of the target.
fn under_recovered(
    row: &Row,
    received: Fen,
    ledger_target: i64,
    d: &impl Fn(Kind, Severity, String) -> Discrepancy,
    out: &mut impl FnMut(Discrepancy),
) {
    let Some((ClosureMethod::Completed, closed_on)) = row.closed else {
        return;
    };
    let target = row.target.map_or(ledger_target, |t| t.0);
    let recovered = received.0 + row.paid_outside_court.0;
    if target > 0 && recovered < target {
        out(d(
            Kind::CompletedButUnderRecovered,
            Severity::Warning,
            format!(
                "Case {} was closed as completed (执行完毕) on {closed_on}, but only {} of the target {} was recovered ({} received, {} paid outside the court).",
                row.case_number,
                Fen(recovered),
                Fen(target),
                received,
                row.paid_outside_court
            ),
        )
        .values(Fen(target).to_string(), Fen(recovered).to_string()));
    }
}

/// The day by which the case's money is due, if it holds any and no deferral is
/// active: `held_since` + the limit, or the end of the last deferral + its limit,
/// whichever is later.
pub fn due_date(clock: &CaseClock, balance: Fen, limits: &Limits) -> Option<Date> {
    if balance.0 <= 0 || clock.active_deferrals > 0 {
        return None;
    }
    let held = clock.held_since?;
    let due = held.plus_days(i64::from(limits.disburse_within_days));
    Some(match clock.deferral_ended_on {
        Some(ended) => due.max(ended.plus_days(i64::from(limits.after_deferral_days))),
        None => due,
    })
}

/// OVERDUE_DISBURSEMENT: money held past its due date with no active deferral.
pub fn overdue(
    ledger: &LedgerCase,
    as_of: Date,
    limits: &Limits,
    out: &mut impl FnMut(Discrepancy),
) {
    let balance = ledger.balances.balance();
    let Some(due) = due_date(&ledger.clock, balance, limits) else {
        return;
    };
    if as_of <= due {
        return;
    }
    let held = ledger.clock.held_since.unwrap_or(due);
    let late = as_of.days() - due.days();
    let why = match ledger.clock.deferral_ended_on {
        Some(ended) if ended.plus_days(i64::from(limits.after_deferral_days)) >= due => format!(
            "its deferral ended on {ended} and payment was due within {} days",
            limits.after_deferral_days
        ),
        _ => format!(
            "money must be paid out within {} days unless a deferral is recorded",
            limits.disburse_within_days
        ),
    };
    out(Discrepancy::new(
        Kind::OverdueDisbursement,
        Severity::Error,
        format!(
            "Case {} has held {balance} since {held}; it was due by {due} ({why}) and is {late} days late on {as_of}.",
            ledger.case_number
        ),
    )
    .court(ledger.case_number.court().as_str())
    .case(ledger.case_number.as_str())
    .values(format!("paid out by {due}"), format!("{balance} held on {as_of}")));
}

/// ACCOUNT_MISSING_IN_CASE_FLOW: a ledger account of a court the data covers that
/// the data does not list. A closed, empty account is left out: exports commonly
/// omit cases closed before their period.
pub fn missing_in_case_flow(ledger: &LedgerCase, out: &mut impl FnMut(Discrepancy)) {
    let balance = ledger.balances.balance();
    if ledger.closed.is_some() && balance.0 == 0 && ledger.balances.reserved.0 == 0 {
        return;
    }
    let number = ledger.case_number.as_str();
    out(Discrepancy::new(
        Kind::AccountMissingInCaseFlow,
        if balance.0 > 0 { Severity::Error } else { Severity::Warning },
        format!(
            "The ledger has an {} account for case {number} holding {balance}, but the case-flow data does not list the case.",
            if ledger.closed.is_some() { "closed" } else { "open" }
        ),
    )
    .court(ledger.case_number.court().as_str())
    .case(number)
    .values("a case-flow row", "none"));
}

/// What a row adds to its court's totals.
pub fn add_to_totals(t: &mut super::report::Totals, row: &Row, ledger: Option<&LedgerCase>) {
    t.rows += 1;
    t.target += fen(row.target.unwrap_or(ledger.map_or(Fen::ZERO, |l| l.target)));
    t.paid_outside_court += fen(row.paid_outside_court);
    t.case_flow_received += fen(row.received);
    t.case_flow_disbursed += fen(row.disbursed);
    match ledger {
        Some(l) => {
            t.received += fen(l.net_received());
            t.ledger_received += fen(l.net_received());
            t.ledger_disbursed += fen(l.net_disbursed());
            t.ledger_balance += fen(l.balances.balance());
        }
        None => t.received += fen(row.received),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(number: &str) -> RawRow {
        RawRow {
            line: 2,
            case_number: number.into(),
            court_code: "云0102".into(),
            filed_on: "2024-01-05".into(),
            status: "open".into(),
            received_amount: "100.00".into(),
            disbursed_amount: "0".into(),
            ..RawRow::default()
        }
    }

    fn ledger(number: &str, received: i64, disbursed: i64) -> LedgerCase {
        LedgerCase {
            case_number: CaseNumber::parse(number).expect("number"),
            van_serials: (1, 1),
            target: Fen(100_000),
            balances: Balances {
                received: Fen(received),
                disbursed: Fen(disbursed),
                reserved: Fen::ZERO,
            },
            clock: CaseClock {
                held_since: (received > disbursed)
                    .then(|| Date::parse("2024-03-01").expect("date")),
                ..CaseClock::default()
            },
            closed: None,
        }
    }

    fn kinds(row: &Row, l: Option<&LedgerCase>, as_of: &str) -> Vec<Kind> {
        let mut out = Vec::new();
        check_row(
            row,
            l,
            Date::parse(as_of).expect("date"),
            &Limits::default(),
            &mut |d| out.push(d.kind),
        );
        out
    }

    #[test]
    fn rows_are_validated_field_by_field() {
        let ok = parse_row(&raw("(2024)云0102执1号")).expect("valid");
        assert_eq!(ok.case_number.as_str(), "（2024）云0102执1号");
        type Spoil<'a> = (&'a dyn Fn(&mut RawRow), &'a str);
        let cases: &[Spoil] = &[
            (&|r| r.case_number.clear(), "case_number is required"),
            (
                &|r| r.case_number = "（2024）云0102民1号".into(),
                "case_number",
            ),
            (&|r| r.court_code = "云0103".into(), "not the court of case"),
            (&|r| r.filed_on = "2024-02-30".into(), "filed_on"),
            (&|r| r.status = "pending".into(), "neither open nor closed"),
            (&|r| r.status = "closed".into(), "closure_method"),
            (&|r| r.received_amount = "-1".into(), "received_amount"),
            (&|r| r.received_amount = "1.001".into(), "received_amount"),
            (
                &|r| r.disbursed_amount.clear(),
                "disbursed_amount is required",
            ),
            (&|r| r.target_amount = "abc".into(), "target_amount"),
            (
                &|r| r.unreadable = "line 7 has 3 fields".into(),
                "line 7 has 3 fields",
            ),
            (
                &|r| {
                    r.status = "closed".into();
                    r.closure_method = "finished".into();
                    r.closed_on = "2024-02-01".into();
                },
                "closure_method",
            ),
            (
                &|r| {
                    r.status = "closed".into();
                    r.closure_method = "执行完毕".into();
                    r.closed_on = "2023-12-01".into();
                },
                "before filed_on",
            ),
        ];
        for (spoil, reason) in cases {
            let mut r = raw("（2024）云0102执1号");
            spoil(&mut r);
            let err = parse_row(&r).expect_err(reason);
            assert!(err.contains(reason), "{err:?} should mention {reason:?}");
        }
    }

    #[test]
    fn agreeing_case_has_no_discrepancy() {
        let row = parse_row(&raw("（2024）云0102执1号")).expect("row");
        let l = ledger("（2024）云0102执1号", 10000, 0);
        assert_eq!(kinds(&row, Some(&l), "2024-03-31"), Vec::<Kind>::new());
    }

    #[test]
    fn returned_payments_count_once() {
        let mut r = raw("（2024）云0102执1号");
        r.disbursed_amount = "100.00".into();
        let row = parse_row(&r).expect("row");
        // Paid 100, returned, paid again: the ledger's sums count the return twice.
        let mut l = ledger("（2024）云0102执1号", 20000, 20000);
        l.clock.returned = Fen(10000);
        assert_eq!(kinds(&row, Some(&l), "2024-03-31"), Vec::<Kind>::new());
    }

    #[test]
    fn overdue_counts_from_held_since_and_deferrals() {
        let l = ledger("（2024）云0102执1号", 10000, 0);
        let row = parse_row(&raw("（2024）云0102执1号")).expect("row");
        // Held since 03-01: due 03-31; late from 04-01.
        assert!(kinds(&row, Some(&l), "2024-03-31").is_empty());
        assert_eq!(
            kinds(&row, Some(&l), "2024-04-01"),
            vec![Kind::OverdueDisbursement]
        );
        let mut deferred = l.clone();
        deferred.clock.active_deferrals = 1;
        assert!(kinds(&row, Some(&deferred), "2024-09-01").is_empty());
        let mut ended = l.clone();
        ended.clock.deferral_ended_on = Some(Date::parse("2024-05-01").expect("date"));
        assert!(kinds(&row, Some(&ended), "2024-05-11").is_empty());
        assert_eq!(
            kinds(&row, Some(&ended), "2024-05-12"),
            vec![Kind::OverdueDisbursement]
        );
        let limits = Limits {
            disburse_within_days: 10,
            ..Limits::default()
        };
        assert_eq!(
            due_date(&l.clock, Fen(1), &limits),
            Some(Date::parse("2024-03-11").expect("date"))
        );
    }
}
