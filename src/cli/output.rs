//! How the command line shows what the server answered: aligned tables for people
//! (a Chinese character is two columns wide), one JSON document for scripts.

use serde_json::{json, Value};
use unicode_width::UnicodeWidthStr;

use crate::api::pb;

/// A table: a header row and rows of cells, printed with columns aligned.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.width()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.width());
                }
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: Vec<&str>| {
            let n = cells.len();
            for (i, cell) in cells.into_iter().enumerate() {
                out.push_str(cell);
                if i + 1 < n {
                    let pad = widths
                        .get(i)
                        .copied()
                        .unwrap_or(0)
                        .saturating_sub(cell.width());
                    out.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push('\n');
        };
        line(&mut out, self.headers.clone());
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&mut out, rule.iter().map(String::as_str).collect());
        for row in &self.rows {
            line(&mut out, row.iter().map(String::as_str).collect());
        }
        out
    }
}

/// Label: value lines, labels aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(l, _)| l.width()).max().unwrap_or(0);
    let mut out = String::new();
    for (label, value) in pairs {
        out.push_str(label);
        out.push(':');
        out.push_str(&" ".repeat(width - label.width() + 1));
        out.push_str(&clean(value));
        out.push('\n');
    }
    out
}

pub fn print_json(v: &Value) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => print_text(&format!("{s}\n")),
        Err(e) => eprintln!("case-escrow: cannot write JSON: {e}"),
    }
}

/// Writes to stdout; a reader that went away (`| head -1`) is no error of ours.
pub fn print_text(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("case-escrow: cannot write the output: {e}");
        }
    }
}

/// Text from clients (names, memos) with control characters made visible, so that it
/// cannot move the cursor or recolour the clerk's terminal.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

const CST_SECONDS: i64 = 8 * 3600;

fn china_parts(ts: &prost_types::Timestamp) -> (crate::domain::Date, i64) {
    let local = ts.seconds.saturating_add(CST_SECONDS);
    let day = crate::domain::Date::from_days(local.div_euclid(86_400));
    (day, local.rem_euclid(86_400))
}

/// China time (UTC+8), as a finance office writes it: `2024-03-01 14:05:09`.
pub fn time(ts: Option<&prost_types::Timestamp>) -> String {
    match ts {
        Some(ts) => {
            let (day, s) = china_parts(ts);
            format!("{day} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        }
        None => String::new(),
    }
}

/// RFC 3339 with the China offset, for JSON: `2024-03-01T14:05:09+08:00`.
pub fn time_json(ts: Option<&prost_types::Timestamp>) -> Value {
    match ts {
        Some(ts) => {
            let (day, s) = china_parts(ts);
            Value::String(format!(
                "{day}T{:02}:{:02}:{:02}+08:00",
                s / 3600,
                s / 60 % 60,
                s % 60
            ))
        }
        None => Value::Null,
    }
}

/// An enum value's name without its type prefix, lower case: `ENTRY_KIND_RECEIPT` →
/// `receipt`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

pub fn entry_kind(k: i32) -> String {
    pb::EntryKind::try_from(k).map_or(k.to_string(), |k| short(k.as_str_name(), "ENTRY_KIND_"))
}

pub fn disbursement_state(k: i32) -> String {
    pb::DisbursementState::try_from(k).map_or(k.to_string(), |k| {
        short(k.as_str_name(), "DISBURSEMENT_STATE_")
    })
}

pub fn purpose(k: i32) -> String {
    pb::DisbursementPurpose::try_from(k).map_or(k.to_string(), |k| {
        short(k.as_str_name(), "DISBURSEMENT_PURPOSE_")
    })
}

pub fn special_status(k: i32) -> String {
    pb::SpecialAccountStatus::try_from(k).map_or(k.to_string(), |k| {
        short(k.as_str_name(), "SPECIAL_ACCOUNT_STATUS_")
    })
}

pub fn case_status(k: i32) -> String {
    pb::CaseAccountStatus::try_from(k).map_or(k.to_string(), |k| {
        short(k.as_str_name(), "CASE_ACCOUNT_STATUS_")
    })
}

pub fn closure(k: i32) -> String {
    pb::ClosureMethod::try_from(k)
        .map_or(k.to_string(), |k| short(k.as_str_name(), "CLOSURE_METHOD_"))
}

pub fn registration_kind(k: i32) -> String {
    pb::RegistrationKind::try_from(k).map_or(k.to_string(), |k| {
        short(k.as_str_name(), "REGISTRATION_KIND_")
    })
}

pub fn unidentified_state(k: i32) -> String {
    pb::UnidentifiedReceiptState::try_from(k).map_or(k.to_string(), |k| {
        short(k.as_str_name(), "UNIDENTIFIED_RECEIPT_STATE_")
    })
}

pub fn deferral_reason(k: i32) -> String {
    pb::DeferralReason::try_from(k).map_or(k.to_string(), |k| {
        short(k.as_str_name(), "DEFERRAL_REASON_")
    })
}

pub fn hex(bytes: &[u8]) -> String {
    crate::store::backup::hex(bytes)
}

// ---------------------------------------------------------------------------------
// JSON of each answer: enum values by name, times in RFC 3339, money as strings.
// ---------------------------------------------------------------------------------

pub fn special_json(s: &pb::SpecialAccount) -> Value {
    json!({
        "special_account_id": s.special_account_id,
        "court_code": s.court_code,
        "bank_name": s.bank_name,
        "bank_branch": s.bank_branch,
        "account_number": s.account_number,
        "account_name": s.account_name,
        "status": special_status(s.status),
        "bank_balance": s.bank_balance,
        "suspense_balance": s.suspense_balance,
        "reserved": s.reserved,
        "case_account_count": s.case_account_count,
        "as_of_sequence": s.as_of_sequence,
        "registrations": s.registrations.iter().map(|r| json!({
            "sequence": r.sequence,
            "kind": registration_kind(r.kind),
            "bank_name": r.bank_name,
            "bank_branch": r.bank_branch,
            "account_number": r.account_number,
            "account_name": r.account_name,
            "reason": r.reason,
            "document_ref": r.document_ref,
            "effective_at": time_json(r.effective_at.as_ref()),
            "recorded_at": time_json(r.recorded_at.as_ref()),
            "request_id": r.request_id,
        })).collect::<Vec<_>>(),
    })
}

fn party_json(p: &pb::Party) -> Value {
    json!({"name": p.name, "payee_account": p.payee_account, "payee_bank": p.payee_bank})
}

pub fn balances_json(b: Option<&pb::Balances>) -> Value {
    let b = b.cloned().unwrap_or_default();
    json!({
        "received": b.received,
        "disbursed": b.disbursed,
        "reserved": b.reserved,
        "balance": b.balance,
        "available": b.available,
    })
}

pub fn case_json(c: &pb::CaseAccount) -> Value {
    json!({
        "case_account_id": c.case_account_id,
        "special_account_id": c.special_account_id,
        "case_number": c.case_number,
        "court_code": c.court_code,
        "virtual_account_number": c.virtual_account_number,
        "target_amount": c.target_amount,
        "applicants": c.applicants.iter().map(party_json).collect::<Vec<_>>(),
        "respondents": c.respondents.iter().map(party_json).collect::<Vec<_>>(),
        "status": case_status(c.status),
        "balances": balances_json(c.balances.as_ref()),
        "returned_payments": returned(c),
        "closure_method": if c.closure_method == 0 { Value::Null } else { Value::String(closure(c.closure_method)) },
        "opened_at": time_json(c.opened_at.as_ref()),
        "closed_at": time_json(c.closed_at.as_ref()),
        "as_of_sequence": c.as_of_sequence,
    })
}

pub fn entry_json(e: &pb::Entry) -> Value {
    json!({
        "sequence": e.sequence,
        "kind": entry_kind(e.kind),
        "special_account_id": e.special_account_id,
        "case_number": e.case_number,
        "amount": e.amount,
        "running_balance": e.running_balance,
        "running_available": e.running_available,
        "bank_ref": e.bank_ref,
        "disbursement_id": e.disbursement_id,
        "reversed_sequence": e.reversed_sequence,
        "original_sequence": e.original_sequence,
        "request_id": e.request_id,
        "recorded_at": time_json(e.recorded_at.as_ref()),
        "value_date": e.value_date,
        "counterparty_case_number": e.counterparty_case_number,
        "counterparty_name": e.counterparty_name,
        "counterparty_account": e.counterparty_account,
        "memo": e.memo,
        "unidentified_receipt_id": e.unidentified_receipt_id,
        "deferral_id": e.deferral_id,
        "postings": e.postings.iter().map(|p| json!({
            "account": p.account, "debit": p.debit, "credit": p.credit
        })).collect::<Vec<_>>(),
    })
}

pub fn disbursement_json(d: &pb::Disbursement) -> Value {
    json!({
        "disbursement_id": d.disbursement_id,
        "case_number": d.case_number,
        "amount": d.amount,
        "payee_name": d.payee_name,
        "payee_account": d.payee_account,
        "payee_bank": d.payee_bank,
        "purpose": purpose(d.purpose),
        "memo": d.memo,
        "exception_reason": d.exception_reason,
        "state": disbursement_state(d.state),
        "approval_ref": d.approval_ref,
        "reason": d.reason,
        "bank_ref": d.bank_ref,
        "returned_bank_ref": d.returned_bank_ref,
        "paid_at": time_json(d.paid_at.as_ref()),
        "requested_at": time_json(d.requested_at.as_ref()),
        "sequence": d.sequence,
    })
}

pub fn unidentified_json(u: &pb::UnidentifiedReceipt) -> Value {
    json!({
        "unidentified_receipt_id": u.unidentified_receipt_id,
        "special_account_id": u.special_account_id,
        "amount": u.amount,
        "payer_name": u.payer_name,
        "payer_account": u.payer_account,
        "bank_ref": u.bank_ref,
        "value_date": u.value_date,
        "memo": u.memo,
        "state": unidentified_state(u.state),
        "case_number": u.case_number,
        "return_reason": u.return_reason,
        "return_bank_ref": u.return_bank_ref,
        "account_given": u.account_given,
        "recorded_at": time_json(u.recorded_at.as_ref()),
        "settled_at": time_json(u.settled_at.as_ref()),
        "sequence": u.sequence,
    })
}

pub fn deferral_state(k: i32) -> String {
    pb::DeferralState::try_from(k)
        .map_or(k.to_string(), |k| short(k.as_str_name(), "DEFERRAL_STATE_"))
}

pub fn deferral_json(d: &pb::Deferral) -> Value {
    json!({
        "deferral_id": d.deferral_id,
        "case_number": d.case_number,
        "reason": deferral_reason(d.reason),
        "state": deferral_state(d.state),
        "approval_ref": d.approval_ref,
        "note": d.note,
        "active": d.active,
        "started_on": d.started_on,
        "ended_on": d.ended_on,
        "recorded_at": time_json(d.recorded_at.as_ref()),
        "recorded_by": d.recorded_by,
        "approved_by": d.approved_by,
        "approved_at": time_json(d.approved_at.as_ref()),
        "rejected_by": d.rejected_by,
        "rejected_at": time_json(d.rejected_at.as_ref()),
        "rejection_reason": d.rejection_reason,
        "ended_at": time_json(d.ended_at.as_ref()),
        "sequence": d.sequence,
    })
}

// ---------------------------------------------------------------------------------
// The same answers for people.
// ---------------------------------------------------------------------------------

pub fn special_text(s: &pb::SpecialAccount) -> String {
    let mut out = fields(&[
        ("Special account", s.special_account_id.clone()),
        ("Court", s.court_code.clone()),
        ("Status", special_status(s.status)),
        ("Bank", s.bank_name.clone()),
        ("Branch", s.bank_branch.clone()),
        ("Account number", s.account_number.clone()),
        ("Account name", s.account_name.clone()),
        ("Bank balance (yuan)", s.bank_balance.clone()),
        ("Suspense (yuan)", s.suspense_balance.clone()),
        ("Reserved (yuan)", s.reserved.clone()),
        ("Case accounts", s.case_account_count.to_string()),
        ("As of entry", s.as_of_sequence.to_string()),
    ]);
    if !s.registrations.is_empty() {
        let mut t = Table::new(&[
            "Entry",
            "Registration",
            "Bank",
            "Account number",
            "Document",
            "Effective",
            "Reason",
        ]);
        for r in &s.registrations {
            t.row(vec![
                r.sequence.to_string(),
                registration_kind(r.kind),
                r.bank_name.clone(),
                r.account_number.clone(),
                r.document_ref.clone(),
                time(r.effective_at.as_ref()),
                r.reason.clone(),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

fn parties(ps: &[pb::Party]) -> String {
    ps.iter()
        .map(|p| {
            if p.payee_account.is_empty() {
                p.name.clone()
            } else {
                format!("{} ({} {})", p.name, p.payee_bank, p.payee_account)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Payments the bank sent back; `null` from a server too old to say.
fn returned(c: &pb::CaseAccount) -> Value {
    match c.returned_payments.as_str() {
        "" => Value::Null,
        r => Value::String(r.to_owned()),
    }
}

/// Received or disbursed, saying how much of it is payments the bank sent back: each
/// is counted in both, and "received" alone would overstate what came from outside.
pub fn with_returns(amount: &str, c: &pb::CaseAccount) -> String {
    match c.returned_payments.as_str() {
        "" | "0.00" => amount.to_owned(),
        r => format!("{amount} (of which {r} payments returned by the bank)"),
    }
}

pub fn case_text(c: &pb::CaseAccount) -> String {
    let b = c.balances.clone().unwrap_or_default();
    let mut pairs = vec![
        ("Case number", c.case_number.clone()),
        ("Court", c.court_code.clone()),
        ("Status", case_status(c.status)),
        ("Virtual account number", c.virtual_account_number.clone()),
        ("Special account", c.special_account_id.clone()),
        ("Target amount (yuan)", c.target_amount.clone()),
        ("Applicants", parties(&c.applicants)),
        ("Respondents", parties(&c.respondents)),
        ("Received (yuan)", with_returns(&b.received, c)),
        ("Disbursed (yuan)", with_returns(&b.disbursed, c)),
        ("Reserved (yuan)", b.reserved),
        ("Balance (yuan)", b.balance),
        ("Available (yuan)", b.available),
        ("Opened", time(c.opened_at.as_ref())),
    ];
    if c.closure_method != 0 {
        pairs.push(("Closed", time(c.closed_at.as_ref())));
        pairs.push(("Closure method", closure(c.closure_method)));
    }
    pairs.push(("As of entry", c.as_of_sequence.to_string()));
    fields(&pairs)
}

/// What an entry did to one case's money, signed: `+` in, `-` out, empty when it
/// moved none (a request or an approval only reserves or releases). Read from the
/// entry's postings on `case:<id>`, so a transfer shows which way it went and a
/// reversal shows the opposite sign of what it reverses.
pub fn case_effect(e: &pb::Entry, case_account_id: &str) -> String {
    use rust_decimal::Decimal;
    let account = format!("case:{case_account_id}");
    let amount = |s: &str| match s {
        "" => Some(Decimal::ZERO),
        s => s.parse::<Decimal>().ok(),
    };
    let mut moved = false;
    let mut net = Decimal::ZERO;
    for p in e.postings.iter().filter(|p| p.account == account) {
        // A figure this client cannot read is left out rather than shown wrong.
        let (Some(credit), Some(debit)) = (amount(&p.credit), amount(&p.debit)) else {
            return String::new();
        };
        moved = true;
        net += credit - debit;
    }
    if !moved {
        return String::new();
    }
    net.rescale(2);
    if net.is_sign_positive() && !net.is_zero() {
        format!("+{net}")
    } else {
        net.to_string()
    }
}

pub fn entries_table(entries: &[pb::Entry], case_account_id: &str) -> String {
    let mut t = Table::new(&[
        "Entry",
        "Recorded",
        "Value date",
        "Kind",
        "Amount",
        "In/out",
        "Balance",
        "Available",
        "Bank ref",
        "Counterparty",
        "Memo",
    ]);
    for e in entries {
        t.row(vec![
            e.sequence.to_string(),
            time(e.recorded_at.as_ref()),
            e.value_date.clone(),
            entry_kind(e.kind),
            e.amount.clone(),
            case_effect(e, case_account_id),
            e.running_balance.clone(),
            e.running_available.clone(),
            e.bank_ref.clone(),
            if e.counterparty_case_number.is_empty() {
                e.counterparty_name.clone()
            } else {
                e.counterparty_case_number.clone()
            },
            e.memo.clone(),
        ]);
    }
    t.render()
}

pub fn entry_text(e: &pb::Entry) -> String {
    fields(&[
        ("Entry", e.sequence.to_string()),
        ("Kind", entry_kind(e.kind)),
        ("Case number", e.case_number.clone()),
        ("Amount (yuan)", e.amount.clone()),
        ("Balance after (yuan)", e.running_balance.clone()),
        ("Available after (yuan)", e.running_available.clone()),
        ("Bank ref", e.bank_ref.clone()),
        ("Value date", e.value_date.clone()),
        ("Recorded", time(e.recorded_at.as_ref())),
        ("Request id", e.request_id.clone()),
        (
            "Same as entry",
            if e.original_sequence == 0 {
                String::new()
            } else {
                e.original_sequence.to_string()
            },
        ),
    ])
}

pub fn disbursement_text(d: &pb::Disbursement) -> String {
    fields(&[
        ("Disbursement", d.disbursement_id.clone()),
        ("Case number", d.case_number.clone()),
        ("State", disbursement_state(d.state)),
        ("Amount (yuan)", d.amount.clone()),
        ("Payee", d.payee_name.clone()),
        ("Payee account", d.payee_account.clone()),
        ("Payee bank", d.payee_bank.clone()),
        ("Purpose", purpose(d.purpose)),
        ("Exception reason", d.exception_reason.clone()),
        ("Approval", d.approval_ref.clone()),
        ("Reason", d.reason.clone()),
        ("Bank ref", d.bank_ref.clone()),
        ("Requested", time(d.requested_at.as_ref())),
        ("Paid", time(d.paid_at.as_ref())),
        ("Entry", d.sequence.to_string()),
    ])
}

pub fn unidentified_text(u: &pb::UnidentifiedReceipt) -> String {
    fields(&[
        ("Unidentified receipt", u.unidentified_receipt_id.clone()),
        ("Special account", u.special_account_id.clone()),
        ("State", unidentified_state(u.state)),
        ("Amount (yuan)", u.amount.clone()),
        ("Payer", u.payer_name.clone()),
        ("Payer account", u.payer_account.clone()),
        ("Bank ref", u.bank_ref.clone()),
        ("Value date", u.value_date.clone()),
        ("Account given", u.account_given.clone()),
        ("Assigned to case", u.case_number.clone()),
        ("Return reason", u.return_reason.clone()),
        ("Memo", u.memo.clone()),
        ("Recorded", time(u.recorded_at.as_ref())),
        ("Entry", u.sequence.to_string()),
    ])
}

pub fn unidentified_table(list: &[pb::UnidentifiedReceipt]) -> String {
    let mut t = Table::new(&[
        "Id",
        "State",
        "Amount",
        "Payer",
        "Bank ref",
        "Value date",
        "Case",
    ]);
    for u in list {
        t.row(vec![
            u.unidentified_receipt_id.clone(),
            unidentified_state(u.state),
            u.amount.clone(),
            u.payer_name.clone(),
            u.bank_ref.clone(),
            u.value_date.clone(),
            u.case_number.clone(),
        ]);
    }
    t.render()
}

pub fn deferral_text(d: &pb::Deferral) -> String {
    fields(&[
        ("Deferral", d.deferral_id.clone()),
        ("Case number", d.case_number.clone()),
        ("Reason", deferral_reason(d.reason)),
        ("State", deferral_state(d.state)),
        ("Approval", d.approval_ref.clone()),
        ("Note", d.note.clone()),
        ("Active", if d.active { "yes".into() } else { "no".into() }),
        ("Recorded by", d.recorded_by.clone()),
        ("Approved by", d.approved_by.clone()),
        ("Rejected by", d.rejected_by.clone()),
        ("Rejected because", d.rejection_reason.clone()),
        ("Started on", d.started_on.clone()),
        ("Ended on", d.ended_on.clone()),
        ("Entry", d.sequence.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_text_takes_two_columns() {
        let mut t = Table::new(&["Case", "Amount"]);
        t.row(vec!["（2024）云0102执1号".into(), "1.00".into()]);
        t.row(vec!["x".into(), "2.00".into()]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        // "Amount", "1.00" and "2.00" start in the same column.
        let at = |line: &str, text: &str| line.rfind(text).map(|i| line[..i].width());
        assert_eq!(at(lines[0], "Amount"), Some(21));
        assert_eq!(at(lines[2], "1.00"), Some(21));
        assert_eq!(at(lines[3], "2.00"), Some(21));
    }

    #[test]
    fn received_and_disbursed_say_how_much_came_back_from_the_bank() {
        let mut c = pb::CaseAccount {
            balances: Some(pb::Balances {
                received: "83000.00".into(),
                disbursed: "31100.00".into(),
                ..Default::default()
            }),
            returned_payments: "30000.00".into(),
            ..Default::default()
        };
        let text = case_text(&c);
        assert!(
            text.contains("83000.00 (of which 30000.00 payments returned by the bank)"),
            "{text}"
        );
        assert_eq!(case_json(&c)["returned_payments"], "30000.00");
        c.returned_payments = "0.00".into();
        assert!(!case_text(&c).contains("returned"));
        // A server from before the field says nothing, and neither does this.
        c.returned_payments = String::new();
        assert_eq!(case_json(&c)["returned_payments"], Value::Null);
        assert!(!case_text(&c).contains("returned"));
    }

    #[test]
    fn a_statement_line_says_which_way_the_money_went_for_its_case() {
        let posting = |account: &str, debit: &str, credit: &str| pb::Posting {
            account: account.into(),
            debit: debit.into(),
            credit: credit.into(),
        };
        let transfer = pb::Entry {
            amount: "100.00".into(),
            postings: vec![
                posting("case:A", "100.00", ""),
                posting("case:B", "", "100.00"),
            ],
            ..Default::default()
        };
        assert_eq!(case_effect(&transfer, "A"), "-100.00");
        assert_eq!(case_effect(&transfer, "B"), "+100.00");
        // Its reversal carries negated amounts: the money goes back.
        let reversal = pb::Entry {
            postings: vec![
                posting("case:A", "-100.00", ""),
                posting("case:B", "", "-100.00"),
            ],
            ..Default::default()
        };
        assert_eq!(case_effect(&reversal, "A"), "+100.00");
        assert_eq!(case_effect(&reversal, "B"), "-100.00");
        // A request moves no money of the case; an unreadable figure shows nothing.
        assert_eq!(case_effect(&pb::Entry::default(), "A"), "");
        let odd = pb::Entry {
            postings: vec![posting("case:A", "1,00", "")],
            ..Default::default()
        };
        assert_eq!(case_effect(&odd, "A"), "");
        let receipt = pb::Entry {
            postings: vec![posting("bank:S", "5", ""), posting("case:A", "", "5")],
            ..Default::default()
        };
        assert_eq!(case_effect(&receipt, "A"), "+5.00");
    }

    #[test]
    fn times_are_shown_in_china_time() {
        let ts = prost_types::Timestamp {
            seconds: 1_709_251_200, // 2024-03-01T00:00:00Z
            nanos: 0,
        };
        assert_eq!(time(Some(&ts)), "2024-03-01 08:00:00");
        assert_eq!(
            time_json(Some(&ts)),
            Value::String("2024-03-01T08:00:00+08:00".into())
        );
    }
}
