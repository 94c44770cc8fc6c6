//! Money: Chinese yuan, exact to the fen, never a float.
//!
//! Inside the service an amount is a whole number of fen (`i64`): addition is exact,
//! comparison is cheap and the bytes are canonical (`1.0` and `1.00` are one value).
//! Text crosses the wire as a decimal string with at most two places, parsed strictly
//! here through `rust_decimal` after checking the text's shape ourselves, because
//! `Decimal::from_str` rounds extra digits silently and `from_str_exact` accepts `_`.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::error::InvalidValue;
use super::text::clip;

/// The largest single amount accepted: ¥10,000,000,000.00. No enforcement payment comes
/// near it; anything larger is a typing mistake, and the bound keeps every sum of
/// amounts far from `i64` overflow.
pub const AMOUNT_MAX_FEN: i64 = 1_000_000_000_000;

/// Longest amount text accepted, to refuse absurd input before parsing it.
const AMOUNT_TEXT_LEN_MAX: usize = 32;

/// A signed sum of fen: balances and totals. Arithmetic is checked; an overflow is a
/// fault of ours (amounts are bounded), reported rather than wrapped.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Fen(pub i64);

/// A validated positive amount: 0 < amount <= [`AMOUNT_MAX_FEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Amount(i64);

impl Amount {
    /// Parses a decimal string such as `"1234.50"`, `"7"` or `"0.01"`.
    pub fn parse(text: &str) -> Result<Amount, InvalidValue> {
        let fen = parse_fen(text)?;
        Amount::from_fen(fen)
    }

    pub fn from_fen(fen: i64) -> Result<Amount, InvalidValue> {
        if fen <= 0 {
            return Err(InvalidValue::new("amount must be greater than zero"));
        }
        if fen > AMOUNT_MAX_FEN {
            return Err(InvalidValue::new(format!(
                "amount exceeds the maximum of {}",
                Fen(AMOUNT_MAX_FEN)
            )));
        }
        Ok(Amount(fen))
    }

    pub fn fen(self) -> Fen {
        Fen(self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Fen(self.0).fmt(f)
    }
}

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }

    pub fn checked_sub(self, other: Fen) -> Option<Fen> {
        self.0.checked_sub(other.0).map(Fen)
    }

    pub fn checked_neg(self) -> Option<Fen> {
        self.0.checked_neg().map(Fen)
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }
}

impl fmt::Display for Fen {
    /// Always two places: `"1234.50"`, `"-0.05"`, `"0.00"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_decimal())
    }
}

/// Parses non-negative decimal text with at most two places into fen. Zero is allowed
/// here (a target amount may be zero); [`Amount`] refuses it.
pub fn parse_fen(text: &str) -> Result<i64, InvalidValue> {
    if text.is_empty() {
        return Err(InvalidValue::new("amount is required"));
    }
    if text.len() > AMOUNT_TEXT_LEN_MAX {
        return Err(InvalidValue::new("amount is too long"));
    }
    check_shape(text)?;
    // Shape is checked, so the whole part is plain digits; more than 12 significant
    // digits is over the maximum whatever follows, and refusing it here keeps the
    // decimal arithmetic below far from its 28-digit limit.
    let whole = text.split('.').next().unwrap_or_default();
    if whole.trim_start_matches('0').len() > 12 {
        return Err(InvalidValue::new(format!(
            "amount exceeds the maximum of {}",
            Fen(AMOUNT_MAX_FEN)
        )));
    }
    let mut value = Decimal::from_str_exact(text).map_err(|_| {
        InvalidValue::new(format!("amount {:?} is not a decimal number", clip(text)))
    })?;
    // Exact: the shape check allowed at most two places.
    value.rescale(2);
    let fen = i64::try_from(value.mantissa())
        .map_err(|_| InvalidValue::new("amount exceeds the maximum"))?;
    if fen > AMOUNT_MAX_FEN {
        return Err(InvalidValue::new(format!(
            "amount exceeds the maximum of {}",
            Fen(AMOUNT_MAX_FEN)
        )));
    }
    Ok(fen)
}

/// Digits, optionally one point followed by one or two digits. No sign, no exponent, no
/// separators, no spaces: each of those is a different mistake, named for the caller.
fn check_shape(text: &str) -> Result<(), InvalidValue> {
    if text.starts_with('-') {
        return Err(InvalidValue::new("amount must be greater than zero"));
    }
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) {
        return Err(InvalidValue::new(format!(
            "amount {:?} is not a decimal number such as 1234.50",
            clip(text)
        )));
    }
    match frac {
        None => Ok(()),
        Some(f) if !digits(f) => Err(InvalidValue::new(format!(
            "amount {:?} is not a decimal number such as 1234.50",
            clip(text)
        ))),
        Some(f) if f.len() > 2 => Err(InvalidValue::new(
            "amount has more than two decimal places (fen)",
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_amounts() {
        let cases = [
            ("1234.50", 123_450),
            ("7", 700),
            ("0.01", 1),
            ("1.0", 100),
            ("1.00", 100),
            ("007.5", 750),
            ("10000000000", AMOUNT_MAX_FEN),
        ];
        for (text, fen) in cases {
            assert_eq!(Amount::parse(text).map(|a| a.fen().0), Ok(fen), "{text}");
        }
    }

    #[test]
    fn refuses_invalid_amounts() {
        let cases = [
            ("0", "greater than zero"),
            ("0.00", "greater than zero"),
            ("-1", "greater than zero"),
            ("1.001", "two decimal places"),
            ("1e3", "not a decimal"),
            ("abc", "not a decimal"),
            ("", "required"),
            (" 1", "not a decimal"),
            ("1_000", "not a decimal"),
            ("1.", "not a decimal"),
            (".5", "not a decimal"),
            ("+1", "not a decimal"),
            ("1,000.00", "not a decimal"),
            ("99999999999999999", "maximum"),
            ("10000000000.01", "maximum"),
            ("999999999999999999999999999999", "maximum"),
            ("123456789012345678901234567890123", "too long"),
        ];
        for (text, expected) in cases {
            let err = Amount::parse(text).expect_err(text);
            assert!(err.0.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn displays_two_places() {
        assert_eq!(Fen(123_450).to_string(), "1234.50");
        assert_eq!(Fen(0).to_string(), "0.00");
        assert_eq!(Fen(-5).to_string(), "-0.05");
        assert_eq!(Fen(100).to_string(), "1.00");
    }

    proptest::proptest! {
        #[test]
        fn display_then_parse_round_trips(fen in 1i64..=AMOUNT_MAX_FEN) {
            let text = Fen(fen).to_string();
            proptest::prop_assert_eq!(Amount::parse(&text).map(|a| a.fen().0), Ok(fen));
        }

        #[test]
        fn never_panics(text in ".{0,40}") {
            let _ = Amount::parse(&text);
        }
    }
}
