//! What a reconciliation finds, and the totals it keeps while it streams.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::domain::Fen;

/// The kinds of disagreement. Each has a rule in `case_flow` or `bank` and a test with
/// a case that triggers it and a near miss that must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    CaseMissingInLedger,
    AccountMissingInCaseFlow,
    ReceivedMismatch,
    DisbursedMismatch,
    ClosedWithBalance,
    ActivityAfterClosure,
    OverdueDisbursement,
    CompletedButUnderRecovered,
    BankLineNotInLedger,
    LedgerEntryNotInBank,
    AmountMismatchWithBank,
    BankBalanceMismatch,
    SuspenseAged,
    InvalidRow,
    /// Open in one system and closed in the other (with no money held, which would be
    /// CLOSED_WITH_BALANCE), or closed with a different closure method.
    StatusMismatch,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::CaseMissingInLedger,
        Kind::AccountMissingInCaseFlow,
        Kind::ReceivedMismatch,
        Kind::DisbursedMismatch,
        Kind::ClosedWithBalance,
        Kind::ActivityAfterClosure,
        Kind::OverdueDisbursement,
        Kind::CompletedButUnderRecovered,
        Kind::BankLineNotInLedger,
        Kind::LedgerEntryNotInBank,
        Kind::AmountMismatchWithBank,
        Kind::BankBalanceMismatch,
        Kind::SuspenseAged,
        Kind::InvalidRow,
        Kind::StatusMismatch,
    ];

    /// The name used in reports and in the proto enum.
    pub fn name(self) -> &'static str {
        match self {
            Kind::CaseMissingInLedger => "CASE_MISSING_IN_LEDGER",
            Kind::AccountMissingInCaseFlow => "ACCOUNT_MISSING_IN_CASE_FLOW",
            Kind::ReceivedMismatch => "RECEIVED_MISMATCH",
            Kind::DisbursedMismatch => "DISBURSED_MISMATCH",
            Kind::ClosedWithBalance => "CLOSED_WITH_BALANCE",
            Kind::ActivityAfterClosure => "ACTIVITY_AFTER_CLOSURE",
            Kind::OverdueDisbursement => "OVERDUE_DISBURSEMENT",
            Kind::CompletedButUnderRecovered => "COMPLETED_BUT_UNDER_RECOVERED",
            Kind::BankLineNotInLedger => "BANK_LINE_NOT_IN_LEDGER",
            Kind::LedgerEntryNotInBank => "LEDGER_ENTRY_NOT_IN_BANK",
            Kind::AmountMismatchWithBank => "AMOUNT_MISMATCH_WITH_BANK",
            Kind::BankBalanceMismatch => "BANK_BALANCE_MISMATCH",
            Kind::SuspenseAged => "SUSPENSE_AGED",
            Kind::InvalidRow => "INVALID_ROW",
            Kind::StatusMismatch => "STATUS_MISMATCH",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing; no money is at risk.
    Info,
    /// The records disagree and someone should look.
    Warning,
    /// Money is unaccounted for, held against the rules, or recorded twice.
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }
}

/// One disagreement, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    pub kind: Kind,
    pub severity: Severity,
    pub court_code: String,
    pub case_number: String,
    pub bank_ref: String,
    /// The line of the input file (or the row's position in the stream); 0 when the
    /// discrepancy comes from the ledger side.
    pub line: u64,
    pub expected: String,
    pub found: String,
    /// A sentence a finance officer understands.
    pub message: String,
    /// The ledger entry concerned, 0 if none.
    pub sequence: u64,
}

/// A discrepancy repeats a client's own text (court, case number, bank reference, a
/// reason) at most this long: a row's fields are otherwise unbounded within a message.
pub use crate::domain::text::{clip, ECHO_CHARS_MAX};

/// The longest field of a row that is checked (and may be quoted in its reason):
/// longer is refused unread, so that a reason quotes at most this much of a field.
pub const FIELD_CHARS_MAX: usize = 256;

/// Refuses the first of `fields` (name, text) longer than [`FIELD_CHARS_MAX`].
pub fn fields_within(fields: &[(&str, &str)]) -> Result<(), String> {
    match fields
        .iter()
        .find(|(_, text)| text.chars().nth(FIELD_CHARS_MAX).is_some())
    {
        Some((name, text)) => Err(format!(
            "{name} is longer than {FIELD_CHARS_MAX} characters ({} bytes)",
            text.len()
        )),
        None => Ok(()),
    }
}

impl Discrepancy {
    pub fn new(kind: Kind, severity: Severity, message: impl Into<String>) -> Discrepancy {
        Discrepancy {
            kind,
            severity,
            court_code: String::new(),
            case_number: String::new(),
            bank_ref: String::new(),
            line: 0,
            expected: String::new(),
            found: String::new(),
            message: message.into(),
            sequence: 0,
        }
    }

    pub fn court(mut self, court: impl Into<String>) -> Self {
        self.court_code = court.into();
        self
    }

    pub fn case(mut self, case_number: impl Into<String>) -> Self {
        self.case_number = case_number.into();
        self
    }

    pub fn bank_ref(mut self, bank_ref: impl Into<String>) -> Self {
        self.bank_ref = bank_ref.into();
        self
    }

    pub fn line(mut self, line: u64) -> Self {
        self.line = line;
        self
    }

    pub fn values(mut self, expected: impl Into<String>, found: impl Into<String>) -> Self {
        self.expected = expected.into();
        self.found = found.into();
        self
    }

    pub fn sequence(mut self, sequence: u64) -> Self {
        self.sequence = sequence;
        self
    }
}

/// Money totals of one court (or of the whole run). Sums of fen in i128, so that no
/// number of rows can overflow them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub rows: u64,
    pub discrepancies: u64,
    pub target: i128,
    /// Received as the recovery rate counts it: the ledger's (net of returned
    /// payments) where the case is in the ledger, else the case-flow system's.
    pub received: i128,
    pub paid_outside_court: i128,
    pub case_flow_received: i128,
    pub case_flow_disbursed: i128,
    pub ledger_received: i128,
    pub ledger_disbursed: i128,
    pub ledger_balance: i128,
    pub by_kind: BTreeMap<Kind, u64>,
}

impl Totals {
    /// (received + paid outside court) / target, to four places; `None` without a
    /// target.
    pub fn recovery_rate(&self) -> Option<Decimal> {
        if self.target <= 0 {
            return None;
        }
        let recovered = Decimal::from_i128_with_scale(self.received + self.paid_outside_court, 2);
        let target = Decimal::from_i128_with_scale(self.target, 2);
        recovered.checked_div(target).map(|r| {
            let mut r =
                r.round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
            r.rescale(4);
            r
        })
    }

    pub fn count(&mut self, kind: Kind) {
        self.discrepancies += 1;
        *self.by_kind.entry(kind).or_default() += 1;
    }
}

/// Sums of fen as money text ("1234.50"); these totals stay far inside i64 in
/// practice, and a larger one is still printed exactly.
pub fn money(fen: i128) -> String {
    Decimal::from_i128_with_scale(fen, 2).to_string()
}

pub fn fen(f: Fen) -> i128 {
    i128::from(f.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_at_a_character_and_says_how_much_it_left_out() {
        let short = "执".repeat(ECHO_CHARS_MAX);
        assert_eq!(clip(&short), short.as_str());
        let long = "执".repeat(ECHO_CHARS_MAX + 2);
        assert_eq!(
            clip(&long),
            format!("{short}… (6 more bytes)").as_str(),
            "two characters of three bytes each"
        );
    }

    #[test]
    fn recovery_rate_is_rounded_and_absent_without_target() {
        let mut t = Totals {
            target: 30000,
            received: 10000,
            paid_outside_court: 0,
            ..Totals::default()
        };
        assert_eq!(
            t.recovery_rate().map(|d| d.to_string()),
            Some("0.3333".into())
        );
        t.paid_outside_court = 20000;
        assert_eq!(
            t.recovery_rate().map(|d| d.to_string()),
            Some("1.0000".into())
        );
        t.target = 0;
        assert_eq!(t.recovery_rate(), None);
        assert_eq!(money(-5), "-0.05");
        assert_eq!(money(123_450), "1234.50");
    }
}
