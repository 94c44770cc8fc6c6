//! Virtual account numbers: the per-case sub-account a payer transfers money to.
//! Fourteen digits (5 for the court's special account, 9 for the case) and two
//! ISO 7064 MOD 97-10 check digits, so a mistyped number is refused rather than
//! crediting the wrong case.

use std::fmt;

use crate::domain::error::InvalidValue;

const SPECIAL_DIGITS: usize = 5;
const CASE_DIGITS: usize = 9;
const LEN: usize = SPECIAL_DIGITS + CASE_DIGITS + 2;

/// Bounds the work done on hostile input before the length check reports it.
const MAX_CHARS: usize = 64;

/// A 16-digit virtual account number whose check digits hold.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct VirtualAccountNumber(String);

impl VirtualAccountNumber {
    /// Builds the number for one case under one special account.
    pub fn issue(special_serial: u32, case_serial: u64) -> VirtualAccountNumber {
        debug_assert!(special_serial < 100_000, "special_serial has 5 digits");
        debug_assert!(case_serial < 1_000_000_000, "case_serial has 9 digits");
        let mut digits = format!("{special_serial:05}{case_serial:09}");
        // Appending 00 and subtracting from 98 makes the whole number ≡ 1 (mod 97).
        let check = 98 - mod97(digits.bytes().chain(*b"00"));
        digits.push_str(&format!("{check:02}"));
        VirtualAccountNumber(digits)
    }

    /// Parses a number as typed by a payer or clerk; surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<VirtualAccountNumber, InvalidValue> {
        let text = text.trim();
        if text.is_empty() {
            return Err(InvalidValue::new("virtual account number is empty"));
        }
        if text.chars().nth(MAX_CHARS).is_some() {
            return Err(InvalidValue::new(format!(
                "virtual account number is longer than {MAX_CHARS} characters; it must be exactly {LEN} digits"
            )));
        }
        if let Some(c) = text.chars().find(|c| !c.is_ascii_digit()) {
            return Err(InvalidValue::new(format!(
                "virtual account number must contain only ASCII digits, found {c:?}"
            )));
        }
        if text.len() != LEN {
            return Err(InvalidValue::new(format!(
                "virtual account number must be exactly {LEN} digits, got {}",
                text.len()
            )));
        }
        if mod97(text.bytes()) != 1 {
            return Err(InvalidValue::new(
                "virtual account number check digits do not match: the number is mistyped",
            ));
        }
        Ok(VirtualAccountNumber(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The special account's serial and the case's serial under it, as issued.
    pub fn serials(&self) -> (u32, u64) {
        // Parsed numbers are 16 ASCII digits, so both slices exist and parse.
        let special = self.0.get(..SPECIAL_DIGITS).and_then(|s| s.parse().ok());
        let case = self
            .0
            .get(SPECIAL_DIGITS..SPECIAL_DIGITS + CASE_DIGITS)
            .and_then(|s| s.parse().ok());
        (special.unwrap_or(0), case.unwrap_or(0))
    }
}

impl fmt::Display for VirtualAccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The remainder mod 97 of a decimal number given as ASCII digits, one digit at a
/// time so that no length of number can overflow.
fn mod97(digits: impl IntoIterator<Item = u8>) -> u32 {
    digits
        .into_iter()
        .fold(0, |r, d| (r * 10 + u32::from(d - b'0')) % 97)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn issues_known_numbers() {
        // Expected values computed independently with arbitrary-precision arithmetic.
        let cases = [
            (0, 0, "0000000000000098"),
            (1, 1, "0000100000000190"),
            (12345, 678_901_234, "1234567890123428"),
            (99_999, 999_999_999, "9999999999999939"),
        ];
        for (special, case, expected) in cases {
            let van = VirtualAccountNumber::issue(special, case);
            assert_eq!(van.as_str(), expected);
            assert_eq!(van.to_string(), expected);
            assert_eq!(van.serials(), (special, case));
            assert_eq!(VirtualAccountNumber::parse(expected), Ok(van));
        }
    }

    #[test]
    fn accepts_with_surrounding_whitespace() {
        let van = VirtualAccountNumber::issue(321, 4567);
        let padded = format!("  {van}\n");
        assert_eq!(VirtualAccountNumber::parse(&padded), Ok(van));
    }

    #[test]
    fn rejects_invalid_numbers() {
        let good = VirtualAccountNumber::issue(12345, 678_901_234);
        let mut bad_check = good.as_str().to_owned();
        let last = bad_check
            .pop()
            .map_or('0', |c| if c == '0' { '1' } else { '0' });
        bad_check.push(last);
        let too_long = "1".repeat(65);
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("123", "exactly 16 digits, got 3"),
            ("12345678901234567", "exactly 16 digits, got 17"),
            ("1234 5678 9012 3456", "only ASCII digits, found ' '"),
            ("123456789012345x", "only ASCII digits, found 'x'"),
            ("１２３４５６７８９０１２３４５６", "only ASCII digits"),
            ("-123456789012345", "only ASCII digits, found '-'"),
            (
                &bad_check,
                "check digits do not match: the number is mistyped",
            ),
            ("0000000000000000", "check digits do not match"),
            (&too_long, "longer than 64 characters"),
        ];
        for (input, expected) in cases {
            match VirtualAccountNumber::parse(input) {
                Ok(v) => panic!("{input:?} should be rejected, got {v}"),
                Err(e) => assert!(
                    e.0.contains(expected),
                    "{input:?}: {:?} does not mention {expected:?}",
                    e.0
                ),
            }
        }
    }

    fn sample_numbers() -> Vec<VirtualAccountNumber> {
        [
            (0, 0),
            (1, 1),
            (12345, 678_901_234),
            (99_999, 999_999_999),
            (40_001, 100_000_007),
            (7, 31_415_926),
        ]
        .into_iter()
        .map(|(s, c)| VirtualAccountNumber::issue(s, c))
        .collect()
    }

    #[test]
    fn detects_every_single_digit_substitution() {
        for van in sample_numbers() {
            let digits = van.as_str().as_bytes();
            for i in 0..digits.len() {
                for d in b'0'..=b'9' {
                    if d == digits[i] {
                        continue;
                    }
                    let mut typo = digits.to_vec();
                    typo[i] = d;
                    let typo = String::from_utf8(typo).expect("ASCII digits");
                    assert!(
                        VirtualAccountNumber::parse(&typo).is_err(),
                        "{typo} (from {van}) passed"
                    );
                }
            }
        }
    }

    #[test]
    fn detects_every_adjacent_transposition() {
        for van in sample_numbers() {
            let digits = van.as_str().as_bytes();
            for i in 0..digits.len() - 1 {
                if digits[i] == digits[i + 1] {
                    continue;
                }
                let mut typo = digits.to_vec();
                typo.swap(i, i + 1);
                let typo = String::from_utf8(typo).expect("ASCII digits");
                assert!(
                    VirtualAccountNumber::parse(&typo).is_err(),
                    "{typo} (from {van}) passed"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            if let Err(e) = VirtualAccountNumber::parse(&text) {
                prop_assert!(!e.0.is_empty());
            }
        }

        #[test]
        fn parse_never_panics_on_digits(text in "[0-9]{0,20}") {
            let _ = VirtualAccountNumber::parse(&text);
        }

        #[test]
        fn issued_numbers_round_trip(special in 0u32..100_000, case in 0u64..1_000_000_000) {
            let van = VirtualAccountNumber::issue(special, case);
            prop_assert_eq!(van.as_str().len(), LEN);
            let expected_prefix = format!("{special:05}{case:09}");
            prop_assert!(van.as_str().starts_with(&expected_prefix));
            prop_assert_eq!(VirtualAccountNumber::parse(van.as_str()), Ok(van.clone()));
        }
    }
}
