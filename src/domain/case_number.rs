//! Enforcement case numbers in the form used since 2016 (法〔2015〕137号, amended 2018),
//! e.g. `（2018）云0102执123号` or `（2017）皖1102执1059号之一`.

use std::fmt;

use crate::domain::court_code::CourtCode;
use crate::domain::error::InvalidValue;

/// Bounds the work done on hostile input; real case numbers are about 20 characters.
const MAX_CHARS: usize = 64;

const MIN_YEAR: u16 = 1990;
const MAX_YEAR: u16 = 2099;
const MAX_SEQUENCE_DIGITS: usize = 7;

/// The enforcement case types this ledger holds money for. Other case types (民初,
/// 刑终 …) never own an escrow account, so they are refused at the door.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum CaseType {
    /// 执: enforcement proper (执行实施).
    Enforcement,
    /// 执恢: enforcement resumed (恢复执行).
    EnforcementResumed,
    /// 执保: enforcement of a property preservation order (财产保全执行).
    PreservationEnforcement,
    /// 执异: objection in enforcement (执行异议).
    EnforcementObjection,
    /// 执复: review of an enforcement objection ruling (执行复议).
    EnforcementReview,
    /// 执监: enforcement supervision (执行监督).
    EnforcementSupervision,
    /// 执协: enforcement coordination between courts (执行协调).
    EnforcementCoordination,
    /// 执他: other enforcement matters (其他执行).
    EnforcementOther,
    /// 司救执: judicial aid in enforcement (执行司法救助).
    JudicialAidEnforcement,
    /// 财保: non-litigation property preservation (非诉财产保全审查).
    PropertyPreservation,
}

impl CaseType {
    /// In the order the error messages list them.
    pub const ALL: [CaseType; 10] = [
        CaseType::Enforcement,
        CaseType::EnforcementResumed,
        CaseType::PreservationEnforcement,
        CaseType::EnforcementObjection,
        CaseType::EnforcementReview,
        CaseType::EnforcementSupervision,
        CaseType::EnforcementCoordination,
        CaseType::EnforcementOther,
        CaseType::JudicialAidEnforcement,
        CaseType::PropertyPreservation,
    ];

    /// Longest code first, so `执恢` is never read as `执` followed by junk.
    const BY_LENGTH: [CaseType; 10] = [
        CaseType::JudicialAidEnforcement,
        CaseType::EnforcementResumed,
        CaseType::PreservationEnforcement,
        CaseType::EnforcementObjection,
        CaseType::EnforcementReview,
        CaseType::EnforcementSupervision,
        CaseType::EnforcementCoordination,
        CaseType::EnforcementOther,
        CaseType::PropertyPreservation,
        CaseType::Enforcement,
    ];

    /// The code as written in a case number, e.g. `执恢`.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseType::Enforcement => "执",
            CaseType::EnforcementResumed => "执恢",
            CaseType::PreservationEnforcement => "执保",
            CaseType::EnforcementObjection => "执异",
            CaseType::EnforcementReview => "执复",
            CaseType::EnforcementSupervision => "执监",
            CaseType::EnforcementCoordination => "执协",
            CaseType::EnforcementOther => "执他",
            CaseType::JudicialAidEnforcement => "司救执",
            CaseType::PropertyPreservation => "财保",
        }
    }

    fn match_prefix(text: &str) -> Option<CaseType> {
        Self::BY_LENGTH
            .into_iter()
            .find(|t| text.starts_with(t.as_str()))
    }

    fn expected_list() -> String {
        Self::ALL.map(CaseType::as_str).join(", ")
    }
}

impl fmt::Display for CaseType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated enforcement case number, kept in one canonical spelling (full-width
/// parentheses) so that equal cases compare and hash equal however they were typed.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct CaseNumber {
    canonical: String,
    year: u16,
    court: CourtCode,
    specialised: Option<char>,
    case_type: CaseType,
    sequence: u32,
    suffix: Option<u8>,
}

impl CaseNumber {
    /// Parses a case number; surrounding whitespace is ignored, ASCII and full-width
    /// parentheses are both accepted.
    pub fn parse(text: &str) -> Result<CaseNumber, InvalidValue> {
        let text = text.trim();
        if text.is_empty() {
            return Err(InvalidValue::new("case number is empty"));
        }
        if text.chars().nth(MAX_CHARS).is_some() {
            return Err(InvalidValue::new(format!(
                "case number is longer than {MAX_CHARS} characters"
            )));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(InvalidValue::new(
                "case number must not contain whitespace inside it",
            ));
        }

        let rest = text
            .strip_prefix('（')
            .or_else(|| text.strip_prefix('('))
            .ok_or_else(|| {
                InvalidValue::new(
                    "case number must start with the year in parentheses, like （2018）",
                )
            })?;

        let (digits, rest) = split_ascii_digits(rest);
        if digits.len() != 4 {
            return Err(InvalidValue::new("year must be four digits, like （2018）"));
        }
        let year: u16 = digits
            .parse()
            .map_err(|_| InvalidValue::new("year must be four digits, like （2018）"))?;
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return Err(InvalidValue::new(format!(
                "year {year} is out of range; expected {MIN_YEAR} to {MAX_YEAR}"
            )));
        }
        let rest = rest
            .strip_prefix('）')
            .or_else(|| rest.strip_prefix(')'))
            .ok_or_else(|| {
                InvalidValue::new(format!(
                    "year {year} must be followed by a closing parenthesis ）"
                ))
            })?;

        let (court, used) = CourtCode::parse_prefix(rest).ok_or_else(|| {
            InvalidValue::new(
                "court code is missing or unknown after the year; expected 最高法 or a \
                 province abbreviation such as 云 or 兵, optionally with 2 or 4 digits",
            )
        })?;
        let rest = &rest[used..];
        if rest.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(stray_court_digits(&court, rest));
        }

        let (specialised, case_type, rest) = split_case_type(&court, rest)?;

        let (digits, rest) = split_ascii_digits(rest);
        if digits.is_empty() {
            return Err(InvalidValue::new(format!(
                "sequence number is missing after case type {case_type}; expected digits followed by 号"
            )));
        }
        if digits.starts_with('0') {
            return Err(InvalidValue::new(
                "sequence number must be a natural number without leading zeros",
            ));
        }
        if digits.len() > MAX_SEQUENCE_DIGITS {
            return Err(InvalidValue::new(format!(
                "sequence number must have at most {MAX_SEQUENCE_DIGITS} digits"
            )));
        }
        let sequence: u32 = digits.parse().map_err(|_| {
            InvalidValue::new("sequence number must be a natural number without leading zeros")
        })?;

        let rest = rest
            .strip_prefix('号')
            .ok_or_else(|| match rest.chars().next() {
                None => InvalidValue::new(format!(
                    "case number must end with 号 after the sequence number {sequence}"
                )),
                Some(c) => InvalidValue::new(format!(
                    "expected 号 after the sequence number {sequence}, found {c:?}"
                )),
            })?;

        let suffix = if rest.is_empty() {
            None
        } else {
            let numeral = rest.strip_prefix('之').ok_or_else(|| {
                InvalidValue::new(format!(
                    "unexpected text after 号: {rest:?}; only a suffix such as 之一 may follow"
                ))
            })?;
            Some(numeral_value(numeral).ok_or_else(|| {
                InvalidValue::new(format!(
                    "suffix after 之 must be a Chinese numeral from 一 to 九十九, found {numeral:?}"
                ))
            })?)
        };

        Ok(CaseNumber::from_parts(
            year,
            court,
            specialised,
            case_type,
            sequence,
            suffix,
        ))
    }

    fn from_parts(
        year: u16,
        court: CourtCode,
        specialised: Option<char>,
        case_type: CaseType,
        sequence: u32,
        suffix: Option<u8>,
    ) -> CaseNumber {
        let mut canonical = format!("（{year}）{court}");
        if let Some(c) = specialised {
            canonical.push(c);
        }
        canonical.push_str(case_type.as_str());
        canonical.push_str(&sequence.to_string());
        canonical.push('号');
        if let Some(n) = suffix {
            canonical.push('之');
            canonical.push_str(&numeral(n));
        }
        CaseNumber {
            canonical,
            year,
            court,
            specialised,
            case_type,
            sequence,
            suffix,
        }
    }

    /// The canonical spelling, with full-width parentheses.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    pub fn year(&self) -> u16 {
        self.year
    }

    pub fn court(&self) -> &CourtCode {
        &self.court
    }

    /// The specialised-court character between court code and case type, if any.
    pub fn specialised(&self) -> Option<char> {
        self.specialised
    }

    pub fn case_type(&self) -> CaseType {
        self.case_type
    }

    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// The number after 之 (`之一` is 1), for cases split off an earlier one.
    pub fn suffix(&self) -> Option<u8> {
        self.suffix
    }

    /// Bytes that order case numbers as a court lists them: by court, year, case type
    /// and then sequence as a number (`执9号` before `执10号`), unlike the text.
    /// Distinct case numbers have distinct keys: the parts determine the number.
    pub fn ordered_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.court.as_str().len() + 16);
        k.extend_from_slice(self.court.as_str().as_bytes());
        // Court codes are prefixes of one another (云01, 云0102): end the code.
        k.push(0);
        k.extend_from_slice(&self.year.to_be_bytes());
        k.extend_from_slice(&u32::from(self.specialised.unwrap_or('\0')).to_be_bytes());
        let type_index = CaseType::ALL
            .iter()
            .position(|t| *t == self.case_type)
            .unwrap_or(0);
        k.push(type_index as u8);
        k.extend_from_slice(&self.sequence.to_be_bytes());
        k.push(self.suffix.unwrap_or(0));
        k
    }
}

impl fmt::Display for CaseNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

fn split_ascii_digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Explains why digits right after the longest valid court code do not belong to it;
/// re-parsing the code with its digits gives the court-code parser's precise reason.
fn stray_court_digits(court: &CourtCode, rest: &str) -> InvalidValue {
    let (digits, _) = split_ascii_digits(rest);
    let written = format!("{court}{digits}");
    match CourtCode::parse(&written) {
        Err(e) => e,
        Ok(_) => InvalidValue::new(format!(
            "court code {court} is followed by unexpected digits {digits}"
        )),
    }
}

/// Reads the case type, allowing one specialised-court character before it when no
/// case type starts right after the court code.
fn split_case_type<'a>(
    court: &CourtCode,
    text: &'a str,
) -> Result<(Option<char>, CaseType, &'a str), InvalidValue> {
    if let Some(t) = CaseType::match_prefix(text) {
        return Ok((None, t, &text[t.as_str().len()..]));
    }
    let mut chars = text.chars();
    if let Some(c) = chars.next().filter(|&c| is_cjk(c)) {
        let after = chars.as_str();
        if let Some(t) = CaseType::match_prefix(after) {
            return Ok((Some(c), t, &after[t.as_str().len()..]));
        }
    }
    let (found, _) = text.split_at(
        text.find(|c: char| c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let found = if found.is_empty() {
        String::from("nothing")
    } else {
        format!("{:?}", super::text::clip(found))
    };
    Err(InvalidValue::new(format!(
        "case type is missing or unknown after court code {court}; expected one of {}, found {found}",
        CaseType::expected_list()
    )))
}

/// CJK unified ideographs (all planes) and compatibility ideographs: the only kind of
/// character a specialised-court code can be.
fn is_cjk(c: char) -> bool {
    matches!(
        c,
        '\u{3400}'..='\u{4DBF}'
            | '\u{4E00}'..='\u{9FFF}'
            | '\u{F900}'..='\u{FAFF}'
            | '\u{20000}'..='\u{323AF}'
    )
}

const DIGITS: [char; 9] = ['一', '二', '三', '四', '五', '六', '七', '八', '九'];

/// The everyday spelling of 1..=99: 一, 十, 十一, 二十, 二十一. Anything else is empty.
fn numeral(n: u8) -> String {
    let digit = |d: u8| DIGITS[usize::from(d - 1)];
    let mut s = String::new();
    match (n / 10, n % 10) {
        (0, 0) | (10.., _) => {}
        (0, u) => s.push(digit(u)),
        (t, u) => {
            if t > 1 {
                s.push(digit(t));
            }
            s.push('十');
            if u > 0 {
                s.push(digit(u));
            }
        }
    }
    s
}

/// Accepts exactly the spellings [`numeral`] writes, so each suffix has one form.
fn numeral_value(text: &str) -> Option<u8> {
    // At most three characters (二十一), so don't compare longer junk 99 times.
    if text.is_empty() || text.chars().nth(3).is_some() {
        return None;
    }
    (1..=99).find(|&n| numeral(n) == text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ordered_keys_follow_the_court_and_the_sequence_as_a_number() {
        let k = |t: &str| CaseNumber::parse(t).expect(t).ordered_key();
        assert!(k("（2024）云0102执9号") < k("（2024）云0102执10号"));
        assert!(k("（2024）云0102执10号") < k("（2024）云0102执10号之一"));
        assert!(k("（2023）云0102执99号") < k("（2024）云0102执1号"));
        assert!(k("（2024）云01执5号") < k("（2024）云0102执1号"));
        assert_ne!(k("（2024）云0102执1号"), k("（2024）云0102执恢1号"));
        assert_eq!(k("(2024)云0102执1号"), k("（2024）云0102执1号"));
    }

    use super::*;
    use proptest::prelude::*;

    /// Renders the parsed parts as `year court specialised type sequence suffix`, with
    /// `-` for an absent part, so each table row stays on one line.
    fn parts(n: &CaseNumber) -> String {
        let opt = |o: Option<String>| o.unwrap_or_else(|| "-".to_owned());
        format!(
            "{} {} {} {} {} {}",
            n.year(),
            n.court(),
            opt(n.specialised().map(String::from)),
            n.case_type(),
            n.sequence(),
            opt(n.suffix().map(|s| s.to_string())),
        )
    }

    #[test]
    fn accepts_valid_numbers() {
        // input, canonical, parts
        #[rustfmt::skip]
        let cases = [
            ("（2018）云0102执123号", "（2018）云0102执123号", "2018 云0102 - 执 123 -"),
            ("（2022）鲁1426执547号", "（2022）鲁1426执547号", "2022 鲁1426 - 执 547 -"),
            ("（2017）皖1102执1059号之一", "（2017）皖1102执1059号之一", "2017 皖1102 - 执 1059 1"),
            ("(2018)云0102执123号", "（2018）云0102执123号", "2018 云0102 - 执 123 -"),
            ("(2018）云0102执123号", "（2018）云0102执123号", "2018 云0102 - 执 123 -"),
            ("（2018)云0102执123号", "（2018）云0102执123号", "2018 云0102 - 执 123 -"),
            ("  （2018）云0102执123号\n", "（2018）云0102执123号", "2018 云0102 - 执 123 -"),
            ("（2019）最高法执监12号", "（2019）最高法执监12号", "2019 最高法 - 执监 12 -"),
            ("（2020）兵0101执33号", "（2020）兵0101执33号", "2020 兵0101 - 执 33 -"),
            ("（2021）云7101执8号", "（2021）云7101执8号", "2021 云7101 - 执 8 -"),
            ("（2021）云71执8号", "（2021）云71执8号", "2021 云71 - 执 8 -"),
            ("（2019）云执复12号", "（2019）云执复12号", "2019 云 - 执复 12 -"),
            ("（2020）云0102执恢5号", "（2020）云0102执恢5号", "2020 云0102 - 执恢 5 -"),
            ("（2020）云0102执保5号", "（2020）云0102执保5号", "2020 云0102 - 执保 5 -"),
            ("（2020）云0102执异5号", "（2020）云0102执异5号", "2020 云0102 - 执异 5 -"),
            ("（2020）云01执复5号", "（2020）云01执复5号", "2020 云01 - 执复 5 -"),
            ("（2020）云执协5号", "（2020）云执协5号", "2020 云 - 执协 5 -"),
            ("（2020）云0102执他5号", "（2020）云0102执他5号", "2020 云0102 - 执他 5 -"),
            ("（2020）云0102司救执5号", "（2020）云0102司救执5号", "2020 云0102 - 司救执 5 -"),
            ("（2020）云0102财保5号", "（2020）云0102财保5号", "2020 云0102 - 财保 5 -"),
            ("（2019）最高法知执5号", "（2019）最高法知执5号", "2019 最高法 知 执 5 -"),
            ("（2020）沪72海执恢9号", "（2020）沪72海执恢9号", "2020 沪72 海 执恢 9 -"),
            ("（2020）京73知司救执9号", "（2020）京73知司救执9号", "2020 京73 知 司救执 9 -"),
            ("（2020）云0102刑执5号", "（2020）云0102刑执5号", "2020 云0102 刑 执 5 -"),
            ("（1990）云执1号", "（1990）云执1号", "1990 云 - 执 1 -"),
            ("（2099）云执9999999号", "（2099）云执9999999号", "2099 云 - 执 9999999 -"),
            ("（2017）皖1102执1059号之十", "（2017）皖1102执1059号之十", "2017 皖1102 - 执 1059 10"),
            ("（2017）皖1102执1059号之十一", "（2017）皖1102执1059号之十一", "2017 皖1102 - 执 1059 11"),
            ("（2017）皖1102执1059号之二十", "（2017）皖1102执1059号之二十", "2017 皖1102 - 执 1059 20"),
            ("（2017）皖1102执1059号之九十九", "（2017）皖1102执1059号之九十九", "2017 皖1102 - 执 1059 99"),
        ];
        for (input, canonical, expected_parts) in cases {
            let n = CaseNumber::parse(input)
                .unwrap_or_else(|e| panic!("{input:?} should parse, got {e}"));
            assert_eq!(n.as_str(), canonical, "{input:?}");
            assert_eq!(n.to_string(), canonical, "{input:?}");
            assert_eq!(parts(&n), expected_parts, "{input:?}");
            assert_eq!(CaseNumber::parse(n.as_str()), Ok(n.clone()), "{input:?}");
        }
    }

    #[test]
    fn rejects_invalid_numbers() {
        let over_long = format!("（2018）云0102执1号{}", "之一".repeat(30));
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("  \t", "empty"),
            ("（2018）云0102执123", "must end with 号 after the sequence number 123"),
            ("（2018）云0102执123之一", "expected 号 after the sequence number 123, found '之'"),
            ("（2018）云0102执0123号", "natural number without leading zeros"),
            ("（2018）云0102执0号", "natural number without leading zeros"),
            ("（2018）云0102执12345678号", "at most 7 digits"),
            ("（2018）云0102执号", "sequence number is missing after case type 执"),
            ("（2018）云0102民初123号", "case type is missing or unknown after court code 云0102; expected one of 执, 执恢, 执保, 执异, 执复, 执监, 执协, 执他, 司救执, 财保, found \"民初\""),
            ("（2018）云0102123号", "must have 2 digits (intermediate court) or 4 digits (basic court) after the province abbreviation 云, found 7"),
            ("（2018）云0102号", "case type is missing or unknown after court code 云0102"),
            ("（2018）云0102", "case type is missing or unknown after court code 云0102; expected one of 执, 执恢, 执保, 执异, 执复, 执监, 执协, 执他, 司救执, 财保, found nothing"),
            ("（2018）云0102刑民执5号", "case type is missing or unknown"),
            ("（2018）云0102a执5号", "case type is missing or unknown"),
            ("（18）云0102执123号", "year must be four digits"),
            ("（20188）云0102执123号", "year must be four digits"),
            ("（二〇一八）云0102执123号", "year must be four digits"),
            ("（1989）云0102执123号", "year 1989 is out of range; expected 1990 to 2099"),
            ("（2100）云0102执123号", "year 2100 is out of range"),
            ("（2018云0102执123号", "must be followed by a closing parenthesis"),
            ("2018云0102执123号", "must start with the year in parentheses"),
            ("【2018】云0102执123号", "must start with the year in parentheses"),
            ("（2018）港0102执123号", "court code is missing or unknown after the year"),
            ("（2018）执123号", "court code is missing or unknown after the year"),
            ("（2018）云0100执123号", "basic-court digits must be 01 to 99, not 00"),
            ("（2018）云00执123号", "intermediate-court digits must be 01 to 99, not 00"),
            ("（2018）云010执123号", "found 3"),
            ("（2018）最高法01执1号", "takes no digits"),
            ("（2018）云0102执123号abc", "unexpected text after 号: \"abc\""),
            ("（2018）云0102执123号号", "unexpected text after 号"),
            ("（2018）云0102执123号之", "suffix after 之 must be a Chinese numeral from 一 to 九十九"),
            ("（2018）云0102执123号之零", "Chinese numeral"),
            ("（2018）云0102执123号之一十", "Chinese numeral"),
            ("（2018）云0102执123号之一百", "Chinese numeral"),
            ("（2018）云0102执123号之1", "Chinese numeral"),
            ("（2018）云0102执123号之十一一一一", "Chinese numeral"),
            ("（2018）云0102执 123号", "must not contain whitespace"),
            ("（2018） 云0102执123号", "must not contain whitespace"),
            ("（2018）云0102执123号\u{3000}之一", "must not contain whitespace"),
            (&over_long, "longer than 64 characters"),
        ];
        for (input, expected) in cases {
            match CaseNumber::parse(input) {
                Ok(n) => panic!("{input:?} should be rejected, got {n}"),
                Err(e) => assert!(
                    e.0.contains(expected),
                    "{input:?}: {:?} does not mention {expected:?}",
                    e.0
                ),
            }
        }
    }

    #[test]
    fn numerals_cover_one_to_ninety_nine_once_each() {
        let table = [
            (1, "一"),
            (9, "九"),
            (10, "十"),
            (11, "十一"),
            (19, "十九"),
            (20, "二十"),
            (21, "二十一"),
            (90, "九十"),
            (99, "九十九"),
        ];
        for (n, text) in table {
            assert_eq!(numeral(n), text);
            assert_eq!(numeral_value(text), Some(n));
        }
        let all: std::collections::HashSet<String> = (1..=99).map(numeral).collect();
        assert_eq!(all.len(), 99);
        assert!(all.iter().all(|s| !s.is_empty()));
        assert_eq!(numeral(0), "");
        assert_eq!(numeral(100), "");
    }

    #[test]
    fn case_type_lists_agree() {
        let mut by_length = CaseType::BY_LENGTH.to_vec();
        by_length.sort();
        assert_eq!(by_length, CaseType::ALL.to_vec());
        for pair in CaseType::BY_LENGTH.windows(2) {
            assert!(pair[0].as_str().chars().count() >= pair[1].as_str().chars().count());
        }
    }

    fn valid_number(
    ) -> impl Strategy<Value = (String, u16, Option<char>, CaseType, u32, Option<u8>)> {
        let court = prop_oneof![
            Just("最高法".to_owned()),
            (
                proptest::sample::select(
                    "京津冀晋蒙辽吉黑沪苏浙皖闽赣鲁豫鄂湘粤桂琼渝川贵云藏陕甘青宁新兵"
                        .chars()
                        .collect::<Vec<_>>()
                ),
                proptest::option::of(1u8..=99),
                proptest::option::of(1u8..=99),
            )
                .prop_map(|(p, a, b)| match (a, b) {
                    (Some(a), Some(b)) => format!("{p}{a:02}{b:02}"),
                    (Some(a), None) => format!("{p}{a:02}"),
                    _ => p.to_string(),
                }),
        ];
        (
            any::<bool>(),
            any::<bool>(),
            MIN_YEAR..=MAX_YEAR,
            court,
            proptest::option::of(proptest::sample::select(vec![
                '知', '海', '铁', '刑', '民', '㐀', '𠀀',
            ])),
            proptest::sample::select(CaseType::ALL.to_vec()),
            1u32..=9_999_999,
            proptest::option::of(1u8..=99),
        )
            .prop_map(
                |(ascii_open, ascii_close, year, court, spec, t, seq, suffix)| {
                    let open = if ascii_open { "(" } else { "（" };
                    let close = if ascii_close { ")" } else { "）" };
                    let spec_text = spec.map(String::from).unwrap_or_default();
                    let suffix_text = suffix
                        .map(|n| format!("之{}", numeral(n)))
                        .unwrap_or_default();
                    let text =
                        format!("{open}{year}{close}{court}{spec_text}{t}{seq}号{suffix_text}");
                    (text, year, spec, t, seq, suffix)
                },
            )
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            if let Err(e) = CaseNumber::parse(&text) {
                prop_assert!(!e.0.is_empty());
            }
        }

        #[test]
        fn parse_never_panics_on_near_misses(text in "[(（）) 0-9云最高法兵执恢司救财保民之一十号a]{0,30}") {
            if let Ok(n) = CaseNumber::parse(&text) {
                prop_assert_eq!(CaseNumber::parse(n.as_str()), Ok(n.clone()));
            }
        }

        #[test]
        fn valid_numbers_round_trip((text, year, spec, t, seq, suffix) in valid_number()) {
            let n = CaseNumber::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(n.year(), year);
            prop_assert_eq!(n.specialised(), spec);
            prop_assert_eq!(n.case_type(), t);
            prop_assert_eq!(n.sequence(), seq);
            prop_assert_eq!(n.suffix(), suffix);
            prop_assert!(!n.as_str().contains(['(', ')']));
            prop_assert_eq!(CaseNumber::parse(n.as_str()), Ok(n.clone()));
        }
    }
}
