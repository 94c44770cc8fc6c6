//! Small validated values: request ids, bank references, free text, dates and times.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::InvalidValue;

/// Longest request id: long enough for any UUID or ULID form a client uses.
pub const REQUEST_ID_LEN_MAX: usize = 64;
/// Longest bank transaction reference; banks use 16 to 32 characters.
pub const BANK_REF_LEN_MAX: usize = 64;

/// The most characters of a client's own text an error repeats back. Its fields are
/// otherwise unbounded within a message, and a reason quotes them escaped (a control
/// character takes six): without a bound, junk would make answers larger than the
/// input they answer, and a status's message travels in an HTTP/2 header that clients
/// refuse past 8–16 KiB, dropping the connection instead of reading the refusal.
pub const ECHO_CHARS_MAX: usize = 120;

/// `text`, cut to [`ECHO_CHARS_MAX`] characters, saying how much was left out.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(ECHO_CHARS_MAX) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => std::borrow::Cow::Owned(format!(
            "{}… ({} more bytes)",
            &text[..end],
            text.len() - end
        )),
    }
}

/// A client's idempotency key: 1–64 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(String);

impl RequestId {
    pub fn parse(text: &str) -> Result<RequestId, InvalidValue> {
        printable_ascii(text, REQUEST_ID_LEN_MAX, "request_id").map(RequestId)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The bank's unique reference of one transaction on a special account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BankRef(String);

impl BankRef {
    pub fn parse(text: &str) -> Result<BankRef, InvalidValue> {
        printable_ascii(text, BANK_REF_LEN_MAX, "bank_ref").map(BankRef)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BankRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn printable_ascii(text: &str, len_max: usize, what: &str) -> Result<String, InvalidValue> {
    if text.is_empty() {
        return Err(InvalidValue::new(format!("{what} is required")));
    }
    if text.len() > len_max {
        return Err(InvalidValue::new(format!(
            "{what} is longer than {len_max} characters"
        )));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidValue::new(format!(
            "{what} may hold only printable ASCII characters without spaces"
        )));
    }
    Ok(text.to_owned())
}

/// Free text from a person: names, reasons, references. Trimmed, bounded, and free of
/// control characters so that it prints safely in statements and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Text(String);

/// Unicode format characters (category Cf) that show nothing or reorder what follows:
/// a payee named with a zero-width space alone is not empty to a program but blank
/// to a person, and a right-to-left override shows a statement line reversed.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Upper bounds on free text, by what it holds.
pub mod len {
    pub const NAME: usize = 200;
    pub const REF: usize = 100;
    pub const ACCOUNT: usize = 64;
    pub const REASON: usize = 1000;
}

impl Text {
    /// Text that must not be empty.
    pub fn required(text: &str, len_max: usize) -> Result<Text, InvalidValue> {
        let t = Self::optional(text, len_max)?;
        if t.0.is_empty() {
            return Err(InvalidValue::new("is required"));
        }
        Ok(t)
    }

    /// Text that may be empty.
    pub fn optional(text: &str, len_max: usize) -> Result<Text, InvalidValue> {
        let t = text.trim();
        if t.chars().count() > len_max {
            return Err(InvalidValue::new(format!(
                "is longer than {len_max} characters"
            )));
        }
        if t.chars().any(char::is_control) {
            return Err(InvalidValue::new("must not contain control characters"));
        }
        if let Some(c) = t.chars().find(|c| invisible(*c)) {
            return Err(InvalidValue::new(format!(
                "must not contain invisible formatting characters (U+{:04X})",
                u32::from(c)
            )));
        }
        Ok(Text(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Microseconds since the Unix epoch, UTC. The journal's clock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Micros(pub i64);

/// A calendar date (a bank's value date), kept as `YYYY-MM-DD` after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    pub fn parse(text: &str) -> Result<Date, InvalidValue> {
        let bad = || {
            InvalidValue::new(format!(
                "{:?} is not a date of the form YYYY-MM-DD",
                clip(text)
            ))
        };
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, InvalidValue> {
            let s = text.get(r).ok_or_else(bad)?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1990..=2099).contains(&year) {
            return Err(InvalidValue::new(format!(
                "{text:?}: year must be between 1990 and 2099"
            )));
        }
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(InvalidValue::new(format!(
                "{text:?} is not a calendar date"
            )));
        }
        // The ranges were checked just above, so the narrowing cannot truncate.
        Ok(Date {
            year: year as u16,
            month: month as u8,
            day: day as u8,
        })
    }
}

impl Date {
    pub const MIN: Date = Date {
        year: 1990,
        month: 1,
        day: 1,
    };
    pub const MAX: Date = Date {
        year: 2099,
        month: 12,
        day: 31,
    };

    /// Days since 1970-01-01 (Howard Hinnant's days_from_civil), for date arithmetic.
    pub fn days(self) -> i64 {
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01, held within [`Date::MIN`]..=[`Date::MAX`]:
    /// the journal's clock and every limit stay far inside that range.
    pub fn from_days(days: i64) -> Date {
        let days = days.clamp(Date::MIN.days(), Date::MAX.days());
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // Clamped above, so every part fits its field.
        Date {
            year: year as u16,
            month: month as u8,
            day: day as u8,
        }
    }

    /// The calendar day in China (UTC+8, no daylight saving) at a journal time: the
    /// day a court's finance office would write down.
    pub fn in_china(at: Micros) -> Date {
        Date::from_days(at.0.saturating_add(CST_MICROS).div_euclid(DAY_MICROS))
    }

    /// The first moment of this day in China: the inverse of [`Date::in_china`].
    pub fn starts_in_china(self) -> Micros {
        Micros(self.days() * DAY_MICROS - CST_MICROS)
    }

    pub fn plus_days(self, days: i64) -> Date {
        Date::from_days(self.days().saturating_add(days))
    }
}

const DAY_MICROS: i64 = 86_400_000_000;
/// China time is UTC+8 all year (no daylight saving).
const CST_MICROS: i64 = 8 * 3_600_000_000;

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_formatting_is_refused_and_chinese_text_is_not() {
        for bad in ["\u{200B}", "张\u{202E}三", "\u{FEFF}李四", "王\u{2066}五"] {
            assert!(Text::required(bad, 10).is_err(), "{bad:?}");
        }
        for good in [
            "张三",
            "云南省昆明市（五华区）",
            "O'Brien-Smith",
            "执行款·退付",
        ] {
            assert!(Text::required(good, 20).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn dates() {
        for ok in ["2024-02-29", "2023-12-31", "2000-02-29", "1990-01-01"] {
            assert_eq!(Date::parse(ok).map(|d| d.to_string()), Ok(ok.to_owned()));
        }
        for bad in [
            "2023-02-29",
            "1900-02-28",
            "2024-13-01",
            "2024-1-01",
            "20240101",
            "",
            "2024-04-31",
            "２０２４-01-01",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn day_arithmetic() {
        let d = |t: &str| Date::parse(t).expect("date");
        assert_eq!(d("1990-01-01").days(), 7305);
        for t in [
            "1990-01-01",
            "2024-02-29",
            "2024-03-01",
            "2099-12-31",
            "2000-02-29",
        ] {
            assert_eq!(Date::from_days(d(t).days()), d(t), "{t}");
        }
        assert_eq!(d("2024-02-28").plus_days(1), d("2024-02-29"));
        assert_eq!(d("2024-01-31").plus_days(30), d("2024-03-01"));
        assert_eq!(d("2024-03-01").days() - d("2024-01-31").days(), 30);
        // 2024-03-01 16:00 UTC is already 2024-03-02 in Beijing.
        assert_eq!(
            Date::in_china(Micros(1_709_308_800_000_000)),
            d("2024-03-02")
        );
        assert_eq!(
            Date::in_china(Micros(1_709_251_200_000_000)),
            d("2024-03-01")
        );
        assert_eq!(Date::from_days(i64::MIN), Date::MIN);
        // A day in China starts at 16:00 UTC the day before, and its last microsecond
        // is still that day.
        let start = d("2024-03-02").starts_in_china();
        assert_eq!(start, Micros(1_709_308_800_000_000));
        assert_eq!(Date::in_china(start), d("2024-03-02"));
        assert_eq!(Date::in_china(Micros(start.0 - 1)), d("2024-03-01"));
    }

    #[test]
    fn request_ids_and_bank_refs() {
        assert!(RequestId::parse("0192f0c4-7b7e-7c1a-9c5e-2f7c1b0c9a11").is_ok());
        assert!(RequestId::parse("").is_err());
        assert!(RequestId::parse("has space").is_err());
        assert!(RequestId::parse(&"x".repeat(65)).is_err());
        assert!(BankRef::parse("ICBC20240101000123").is_ok());
        assert!(BankRef::parse("银行").is_err());
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(
            Text::required("  张三 ", 10).map(|t| t.0),
            Ok("张三".to_owned())
        );
        assert!(Text::required("   ", 10).is_err());
        assert!(Text::optional("a\u{0}b", 10).is_err());
        assert!(Text::optional(&"字".repeat(11), 10).is_err());
        assert!(Text::optional(&"字".repeat(10), 10).is_ok());
    }
}
