//! Court codes as used in case numbers since 2016 (法〔2015〕137号): `最高法`, or a
//! province abbreviation optionally followed by two digits (intermediate or special
//! court) and two more (basic court).

use std::fmt;

use crate::domain::error::InvalidValue;

/// The Supreme People's Court; it has no province and no digits.
const SUPREME: &str = "最高法";

/// The 31 mainland provinces plus 兵, whose courts serve the Xinjiang Production and
/// Construction Corps and are numbered like a province's.
const PROVINCES: &str = "京津冀晋蒙辽吉黑沪苏浙皖闽赣鲁豫鄂湘粤桂琼渝川贵云藏陕甘青宁新兵";

/// Bounds the work done on hostile input; the longest real code is 5 characters.
const MAX_CHARS: usize = 16;

/// A validated court code such as `云0102`, `云01`, `云`, `云7101` or `最高法`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct CourtCode(String);

impl CourtCode {
    /// Parses a court code, ignoring surrounding whitespace and nothing else.
    pub fn parse(text: &str) -> Result<CourtCode, InvalidValue> {
        let text = text.trim();
        if text.is_empty() {
            return Err(InvalidValue::new("court code is empty"));
        }
        if text.chars().nth(MAX_CHARS).is_some() {
            return Err(InvalidValue::new(format!(
                "court code is longer than {MAX_CHARS} characters"
            )));
        }
        if let Some(rest) = text.strip_prefix(SUPREME) {
            if rest.is_empty() {
                return Ok(CourtCode(SUPREME.to_owned()));
            }
            return Err(InvalidValue::new(format!(
                "{SUPREME} (the Supreme People's Court) takes no digits or other text after it, found {rest:?}"
            )));
        }
        let mut chars = text.chars();
        let province = match chars.next() {
            Some(c) if is_province(c) => c,
            Some(c) => {
                return Err(InvalidValue::new(format!(
                    "court code must be {SUPREME} or start with a province abbreviation \
                     (one of {PROVINCES}), found {c:?}"
                )))
            }
            None => return Err(InvalidValue::new("court code is empty")),
        };
        let digits = chars.as_str();
        if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
            return Err(InvalidValue::new(format!(
                "court code {province} may be followed only by ASCII digits, found {c:?}"
            )));
        }
        // Only ASCII digits remain, so byte offsets below are character boundaries.
        match digits.len() {
            0 => {}
            2 | 4 => {
                if &digits[..2] == "00" {
                    return Err(InvalidValue::new(format!(
                        "court code {text}: the intermediate-court digits must be 01 to 99, not 00"
                    )));
                }
                if digits.len() == 4 && &digits[2..] == "00" {
                    return Err(InvalidValue::new(format!(
                        "court code {text}: the basic-court digits must be 01 to 99, not 00"
                    )));
                }
            }
            n => {
                return Err(InvalidValue::new(format!(
                    "court code must have 2 digits (intermediate court) or 4 digits (basic court) \
                     after the province abbreviation {province}, found {n}"
                )))
            }
        }
        Ok(CourtCode(text.to_owned()))
    }

    /// Finds the longest valid court code at the very start of `text` (no trimming)
    /// and its length in bytes, so the case-number parser can continue after it.
    pub(crate) fn parse_prefix(text: &str) -> Option<(CourtCode, usize)> {
        if text.starts_with(SUPREME) {
            return Some((CourtCode(SUPREME.to_owned()), SUPREME.len()));
        }
        let province = text.chars().next().filter(|&c| is_province(c))?;
        let mut end = province.len_utf8();
        // Each group is taken only whole and non-zero; a basic-court group needs an
        // intermediate one before it.
        for _ in 0..2 {
            match text.as_bytes().get(end..end + 2) {
                Some(&[a, b])
                    if a.is_ascii_digit() && b.is_ascii_digit() && (a, b) != (b'0', b'0') =>
                {
                    end += 2;
                }
                _ => break,
            }
        }
        Some((CourtCode(text[..end].to_owned()), end))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a court with this code has jurisdiction over `other`: a higher court's
    /// scope includes every code that starts with its own, and 最高法 covers all.
    pub fn covers(&self, other: &CourtCode) -> bool {
        self.0 == SUPREME || other.0.starts_with(&self.0)
    }

    /// The Supreme People's Court, whose scope is every court.
    pub fn is_supreme(&self) -> bool {
        self.0 == SUPREME
    }

    /// The province abbreviation (`云` for `云0102`). The Supreme People's Court has no
    /// province; its whole code `最高法` is returned so the value is never empty.
    pub fn province(&self) -> &str {
        if self.0 == SUPREME {
            return &self.0;
        }
        let end = self.0.chars().next().map_or(0, char::len_utf8);
        &self.0[..end]
    }
}

impl fmt::Display for CourtCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_province(c: char) -> bool {
    PROVINCES.contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_valid_codes() {
        let cases = [
            ("最高法", "最高法", "最高法"),
            ("云", "云", "云"),
            ("云01", "云01", "云"),
            ("云0102", "云0102", "云"),
            ("云71", "云71", "云"),
            ("云7101", "云7101", "云"),
            ("兵0101", "兵0101", "兵"),
            ("鲁1426", "鲁1426", "鲁"),
            ("  皖1102\t", "皖1102", "皖"),
            ("新99", "新99", "新"),
        ];
        for (input, canonical, province) in cases {
            let code = CourtCode::parse(input)
                .unwrap_or_else(|e| panic!("{input:?} should parse, got {e}"));
            assert_eq!(code.as_str(), canonical, "{input:?}");
            assert_eq!(code.to_string(), canonical, "{input:?}");
            assert_eq!(code.province(), province, "{input:?}");
        }
    }

    #[test]
    fn every_province_is_accepted() {
        assert_eq!(PROVINCES.chars().count(), 32);
        for p in PROVINCES.chars() {
            for suffix in ["", "01", "0102"] {
                let text = format!("{p}{suffix}");
                assert!(CourtCode::parse(&text).is_ok(), "{text}");
            }
        }
    }

    #[test]
    fn rejects_invalid_codes() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("港01", "province abbreviation"),
            ("01", "province abbreviation"),
            ("高法", "province abbreviation"),
            ("云00", "intermediate-court digits must be 01 to 99, not 00"),
            ("云0100", "basic-court digits must be 01 to 99, not 00"),
            (
                "云0001",
                "intermediate-court digits must be 01 to 99, not 00",
            ),
            ("云1", "found 1"),
            ("云010", "found 3"),
            ("云010203", "found 6"),
            ("云０１", "only by ASCII digits"),
            ("云 01", "only by ASCII digits"),
            ("云01执", "only by ASCII digits"),
            ("最高法01", "takes no digits"),
            ("最高法院", "takes no digits"),
            ("云01010101010101010", "longer than 16"),
        ];
        for (input, expected) in cases {
            match CourtCode::parse(input) {
                Ok(code) => panic!("{input:?} should be rejected, got {code}"),
                Err(e) => assert!(
                    e.0.contains(expected),
                    "{input:?}: {:?} does not mention {expected:?}",
                    e.0
                ),
            }
        }
    }

    #[test]
    fn prefix_takes_longest_valid_code() {
        let cases = [
            ("云0102执123号", Some(("云0102", 7))),
            ("云01执", Some(("云01", 5))),
            ("云执", Some(("云", 3))),
            ("云0100执", Some(("云01", 5))),
            ("云010", Some(("云01", 5))),
            ("云001", Some(("云", 3))),
            ("云01023", Some(("云0102", 7))),
            ("最高法执监12号", Some(("最高法", 9))),
            ("兵0101执", Some(("兵0101", 7))),
            ("港01", None),
            ("", None),
            (" 云01", None),
        ];
        for (input, expected) in cases {
            let got = CourtCode::parse_prefix(input);
            let got = got.as_ref().map(|(c, n)| (c.as_str(), *n));
            assert_eq!(got, expected, "{input:?}");
        }
    }

    #[test]
    fn coverage_follows_the_hierarchy() {
        let cases = [
            ("最高法", "云0102", true),
            ("最高法", "最高法", true),
            ("云", "云0102", true),
            ("云", "云7101", true),
            ("云01", "云0102", true),
            ("云01", "云01", true),
            ("云01", "云0201", false),
            ("云0102", "云01", false),
            ("云", "京", false),
            ("云", "最高法", false),
            ("云0102", "云0102", true),
        ];
        for (outer, inner, expected) in cases {
            let outer = CourtCode::parse(outer).expect("valid");
            let inner = CourtCode::parse(inner).expect("valid");
            assert_eq!(outer.covers(&inner), expected, "{outer} covers {inner}");
        }
    }

    fn valid_code() -> impl Strategy<Value = String> {
        let provinces: Vec<char> = PROVINCES.chars().collect();
        prop_oneof![
            Just(SUPREME.to_owned()),
            (
                proptest::sample::select(provinces),
                proptest::option::of(1u8..=99),
                proptest::option::of(1u8..=99),
            )
                .prop_map(|(p, a, b)| match (a, b) {
                    (Some(a), Some(b)) => format!("{p}{a:02}{b:02}"),
                    (Some(a), None) => format!("{p}{a:02}"),
                    _ => p.to_string(),
                }),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            if let Err(e) = CourtCode::parse(&text) {
                prop_assert!(!e.0.is_empty());
            }
            let _ = CourtCode::parse_prefix(&text);
        }

        #[test]
        fn parse_agrees_with_prefix(text in "[云京兵最高法港0-9 执]{0,8}") {
            let whole = CourtCode::parse_prefix(&text).filter(|(_, n)| *n == text.len());
            let parsed = CourtCode::parse(&text).ok();
            // parse trims, parse_prefix does not; compare only untrimmed-identical texts.
            if text.trim() == text {
                prop_assert_eq!(parsed, whole.map(|(c, _)| c));
            }
        }

        #[test]
        fn valid_codes_round_trip(text in valid_code()) {
            let code = CourtCode::parse(&text).map_err(|e| TestCaseError::fail(e.0))?;
            prop_assert_eq!(code.as_str(), text.as_str());
            prop_assert_eq!(CourtCode::parse(code.as_str()), Ok(code.clone()));
            prop_assert!(CourtCode::parse(SUPREME).map(|s| s.covers(&code)).unwrap_or(false));
            prop_assert!(code.covers(&code));
        }
    }
}
