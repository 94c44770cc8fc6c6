//! Bank statement reconciliation, rule by rule: one statement line and what the
//! ledger recorded under its bank reference become discrepancies; so do the ledger's
//! bank lines of the period that the statement lacks, and the balances. Pure.

use crate::domain::{money::parse_fen, Amount, BankLine, BankLineKind, BankRef, Date, Fen};

use super::report::{clip, fields_within, Discrepancy, Kind, Severity};

/// A statement line as it arrives: the file's fields as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawLine {
    pub line: u64,
    pub account_number: String,
    pub value_date: String,
    pub direction: String,
    pub amount: String,
    pub bank_ref: String,
    pub virtual_account: String,
    pub counterparty_name: String,
    pub counterparty_account: String,
    pub memo: String,
    /// Set by a client that could not read the line at all: the reason.
    pub unreadable: String,
}

/// A statement line whose fields are valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub line: u64,
    pub value_date: Date,
    /// Money in (credit) is positive, money out (debit) negative.
    pub amount: Fen,
    pub bank_ref: BankRef,
    pub counterparty_name: String,
}

/// The period and account a statement covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    pub to: Date,
    /// Every account number registered for the special account: a statement may
    /// straddle a change registration (变更登记).
    pub account_numbers: Vec<String>,
}

fn required<'a>(name: &str, text: &'a str) -> Result<&'a str, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("{name} is required"));
    }
    Ok(t)
}

pub fn parse_line(raw: &RawLine, period: &Period) -> Result<Line, String> {
    if !raw.unreadable.is_empty() {
        return Err(clip(&raw.unreadable).into_owned());
    }
    // The fields a reason may quote; the others are never repeated, or only clipped.
    fields_within(&[
        ("account_number", &raw.account_number),
        ("value_date", &raw.value_date),
        ("direction", &raw.direction),
        ("amount", &raw.amount),
        ("bank_ref", &raw.bank_ref),
    ])?;
    let account = required("account_number", &raw.account_number)?;
    if !period.account_numbers.iter().any(|a| a == account) {
        return Err(format!(
            "account_number {account} is not the bank account of this special account ({})",
            period.account_numbers.join(", ")
        ));
    }
    let value_date = Date::parse(required("value_date", &raw.value_date)?)
        .map_err(|e| format!("value_date: {e}"))?;
    if value_date < period.from || value_date > period.to {
        return Err(format!(
            "value_date {value_date} is outside the statement period {} to {}",
            period.from, period.to
        ));
    }
    let credit = match required("direction", &raw.direction)?
        .to_ascii_lowercase()
        .as_str()
    {
        "credit" | "贷" | "收入" => true,
        "debit" | "借" | "支出" => false,
        other => return Err(format!("direction {other:?} is neither credit nor debit")),
    };
    let amount = Amount::parse(required("amount", &raw.amount)?)
        .map_err(|e| format!("amount: {e}"))?
        .fen();
    let bank_ref = BankRef::parse(required("bank_ref", &raw.bank_ref)?)
        .map_err(|e| format!("bank_ref: {e}"))?;
    Ok(Line {
        line: raw.line,
        value_date,
        amount: if credit { amount } else { Fen(-amount.0) },
        bank_ref,
        // Only ever repeated back in a message.
        counterparty_name: clip(raw.counterparty_name.trim()).into_owned(),
    })
}

/// A statement balance: a non-negative amount with at most two places.
pub fn parse_balance(text: &str) -> Result<Fen, String> {
    parse_fen(text.trim()).map(Fen).map_err(|e| e.to_string())
}

pub fn invalid_line(raw: &RawLine, reason: &str) -> Discrepancy {
    Discrepancy::new(
        Kind::InvalidRow,
        Severity::Error,
        format!(
            "Line {} of the bank statement cannot be reconciled: {reason}.",
            raw.line
        ),
    )
    .bank_ref(clip(raw.bank_ref.trim()))
    .line(raw.line)
    .values("a valid statement line", reason)
}

/// What the ledger recorded under a statement line's bank reference, as of the
/// snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Nothing,
    /// Recorded, but after the snapshot this run reads.
    AfterSnapshot(u64),
    /// Recorded as entry `seq`, and reversed (红字冲正) by entry `by`.
    Reversed {
        seq: u64,
        by: u64,
    },
    Line {
        seq: u64,
        line: BankLine,
    },
}

fn direction(amount: Fen) -> &'static str {
    if amount.0 >= 0 {
        "credit"
    } else {
        "debit"
    }
}

fn abs(amount: Fen) -> Fen {
    Fen(amount.0.abs())
}

fn describe(kind: BankLineKind) -> &'static str {
    match kind {
        BankLineKind::Receipt => "a receipt",
        BankLineKind::UnidentifiedReceipt => "an unidentified receipt",
        BankLineKind::Payment => "a payment",
        BankLineKind::ReturnedPayment => "a returned payment",
        BankLineKind::UnidentifiedReturned => "the return of an unidentified receipt",
        BankLineKind::Reversal { .. } => "a reversal",
    }
}

/// The rules for one statement line; true if it matched a ledger entry.
pub fn check_line(
    line: &Line,
    recorded: &Recorded,
    court: &str,
    out: &mut impl FnMut(Discrepancy),
) -> bool {
    let r = line.bank_ref.as_str();
    let what = format!(
        "{} of {} on {}",
        direction(line.amount),
        abs(line.amount),
        line.value_date
    );
    let d = |kind, message: String| {
        Discrepancy::new(kind, Severity::Error, message)
            .court(court)
            .bank_ref(r)
            .line(line.line)
    };
    match recorded {
        Recorded::Nothing => {
            out(d(
                Kind::BankLineNotInLedger,
                format!(
                    "The bank statement shows a {what} (reference {r}{}) that the ledger has not recorded.",
                    if line.counterparty_name.is_empty() {
                        String::new()
                    } else {
                        format!(", counterparty {}", line.counterparty_name)
                    }
                ),
            )
            .values("a ledger entry", what));
            false
        }
        Recorded::AfterSnapshot(seq) => {
            out(d(
                Kind::BankLineNotInLedger,
                format!(
                    "The bank statement shows a {what} (reference {r}) that the ledger recorded only after this reconciliation's snapshot (entry {seq})."
                ),
            )
            .values("a ledger entry", what)
            .sequence(*seq));
            false
        }
        Recorded::Reversed { seq, by } => {
            out(d(
                Kind::BankLineNotInLedger,
                format!(
                    "The bank statement shows a {what} (reference {r}); the ledger recorded it as entry {seq} but reversed it with entry {by}."
                ),
            )
            .values("a ledger entry", format!("entry {seq} reversed by {by}"))
            .sequence(*seq));
            false
        }
        Recorded::Line { seq, line: l } => {
            if l.amount != line.amount {
                let case = l
                    .case_number
                    .as_ref()
                    .map(|n| format!(" for case {n}"))
                    .unwrap_or_default();
                out(d(
                    Kind::AmountMismatchWithBank,
                    format!(
                        "Reference {r}: the bank shows a {what}, the ledger recorded {}{case} as a {} of {} (entry {seq}).",
                        describe(l.kind),
                        direction(l.amount),
                        abs(l.amount)
                    ),
                )
                .case(
                    l.case_number
                        .as_ref()
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                )
                .values(
                    format!("{} {}", direction(l.amount), abs(l.amount)),
                    format!("{} {}", direction(line.amount), abs(line.amount)),
                )
                .sequence(*seq));
            }
            true
        }
    }
}

/// LEDGER_ENTRY_NOT_IN_BANK for a ledger bank line of the period that no statement
/// line matched.
pub fn not_in_bank(seq: u64, line: &BankLine, court: &str) -> Discrepancy {
    let amount = abs(line.amount);
    let (r, why) = match &line.bank_ref {
        Some(r) => (r.to_string(), String::new()),
        None => (
            String::new(),
            " It was recorded without a bank reference, so it cannot be matched.".to_owned(),
        ),
    };
    Discrepancy::new(
        Kind::LedgerEntryNotInBank,
        Severity::Error,
        format!(
            "The ledger recorded {} ({} of {amount} on {}, entry {seq}{}{}) that the bank statement does not show.{why}",
            describe(line.kind),
            direction(line.amount),
            line.date,
            if r.is_empty() { String::new() } else { format!(", reference {r}") },
            line.case_number
                .as_ref()
                .map(|n| format!(", case {n}"))
                .unwrap_or_default(),
        ),
    )
    .court(court)
    .bank_ref(r)
    .case(
        line.case_number
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default(),
    )
    .values(format!("{} {amount}", direction(line.amount)), "not on the statement")
    .sequence(seq)
}

/// BANK_BALANCE_MISMATCH for one balance of the statement.
pub fn balance_mismatch(
    which: &str,
    day: Date,
    statement: Fen,
    ledger: Fen,
    court: &str,
) -> Option<Discrepancy> {
    (statement != ledger).then(|| {
        Discrepancy::new(
            Kind::BankBalanceMismatch,
            Severity::Error,
            format!(
                "The statement's {which} balance ({day}) is {statement}, but the ledger's bank balance then is {ledger} (difference {}).",
                Fen(statement.0 - ledger.0)
            ),
        )
        .court(court)
        .values(ledger.to_string(), statement.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period() -> Period {
        Period {
            from: Date::parse("2024-03-01").expect("date"),
            to: Date::parse("2024-03-31").expect("date"),
            account_numbers: vec!["2502".into()],
        }
    }

    fn raw() -> RawLine {
        RawLine {
            line: 2,
            account_number: "2502".into(),
            value_date: "2024-03-05".into(),
            direction: "credit".into(),
            amount: "100.00".into(),
            bank_ref: "R1".into(),
            ..RawLine::default()
        }
    }

    #[test]
    fn lines_are_validated() {
        assert_eq!(
            parse_line(&raw(), &period()).map(|l| l.amount),
            Ok(Fen(10000))
        );
        let mut debit = raw();
        debit.direction = "DEBIT".into();
        assert_eq!(
            parse_line(&debit, &period()).map(|l| l.amount),
            Ok(Fen(-10000))
        );
        type Spoil<'a> = (&'a dyn Fn(&mut RawLine), &'a str);
        let cases: &[Spoil] = &[
            (
                &|r| r.account_number = "9999".into(),
                "not the bank account",
            ),
            (
                &|r| r.value_date = "2024-04-01".into(),
                "outside the statement period",
            ),
            (&|r| r.direction = "in".into(), "neither credit nor debit"),
            (&|r| r.amount = "0".into(), "amount"),
            (&|r| r.bank_ref.clear(), "bank_ref is required"),
            (&|r| r.unreadable = "bad quoting".into(), "bad quoting"),
        ];
        for (spoil, reason) in cases {
            let mut r = raw();
            spoil(&mut r);
            let err = parse_line(&r, &period()).expect_err(reason);
            assert!(err.contains(reason), "{err:?} should mention {reason:?}");
        }
    }

    #[test]
    fn matching_compares_direction_and_amount() {
        let line = parse_line(&raw(), &period()).expect("line");
        let ledger = |amount| Recorded::Line {
            seq: 7,
            line: BankLine {
                kind: BankLineKind::Receipt,
                bank_ref: Some(BankRef::parse("R1").expect("ref")),
                amount: Fen(amount),
                date: Date::parse("2024-03-05").expect("date"),
                case_number: None,
            },
        };
        let mut found = Vec::new();
        assert!(check_line(&line, &ledger(10000), "云0102", &mut |d| found
            .push(d.kind)));
        assert!(found.is_empty());
        assert!(check_line(&line, &ledger(-10000), "云0102", &mut |d| {
            found.push(d.kind)
        }));
        assert!(check_line(&line, &ledger(9999), "云0102", &mut |d| found.push(d.kind)));
        assert_eq!(found, vec![Kind::AmountMismatchWithBank; 2]);
        found.clear();
        assert!(!check_line(
            &line,
            &Recorded::Nothing,
            "云0102",
            &mut |d| found.push(d.kind)
        ));
        assert_eq!(found, vec![Kind::BankLineNotInLedger]);
    }
}
