//! A case's statement (案款明细) as CSV and as a printable HTML page: one file, inline
//! CSS with a print stylesheet, no scripts, nothing fetched. Every text from a client
//! (names, memos, references) is escaped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::api::pb;

use super::client::CliResult;
use super::output as out;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Writes `bytes` under a temporary name and renames it, so a reader never sees half a
/// file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> CliResult<()> {
    let mut tmp = path.as_os_str().to_owned();
    // A fresh name, created only if absent: never someone's file or symlink.
    tmp.push(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", path.display()).into());
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The rename is durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(())
}

pub const CSV_COLUMNS: [&str; 16] = [
    "case_number",
    "sequence",
    "recorded_at",
    "value_date",
    "kind",
    "amount",
    "in_out",
    "running_balance",
    "running_available",
    "bank_ref",
    "counterparty_name",
    "counterparty_account",
    "counterparty_case_number",
    "disbursement_id",
    "memo",
    "original_sequence",
];

/// A text cell a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, tab, CR
/// first) gets a leading `'`: names and memos come from clients. Amounts never pass
/// here, so a negative amount stays a number.
pub fn text_cell(s: &str) -> std::borrow::Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

pub fn write_csv(path: &Path, case: &pb::CaseAccount, entries: &[pb::Entry]) -> CliResult<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_COLUMNS)?;
    for e in entries {
        w.write_record([
            text_cell(&case.case_number).as_ref(),
            &e.sequence.to_string(),
            &out::time(e.recorded_at.as_ref()),
            &text_cell(&e.value_date),
            &out::entry_kind(e.kind),
            &e.amount,
            &out::case_effect(e, &case.case_account_id),
            &e.running_balance,
            &e.running_available,
            &text_cell(&e.bank_ref),
            &text_cell(&e.counterparty_name),
            &text_cell(&e.counterparty_account),
            &text_cell(&e.counterparty_case_number),
            &text_cell(&e.disbursement_id),
            &text_cell(&e.memo),
            &(if e.original_sequence == 0 {
                String::new()
            } else {
                e.original_sequence.to_string()
            }),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    write_atomically(path, &bytes)
}

const STYLE: &str = r#"
body { font-family: "Noto Serif CJK SC", "Songti SC", SimSun, serif; margin: 2em; color: #111; }
h1 { font-size: 1.4em; text-align: center; margin-bottom: 0.2em; }
.sub { text-align: center; color: #444; margin-top: 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.85em; }
th, td { border: 1px solid #999; padding: 3px 6px; vertical-align: top; }
th { background: #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 1em; }
dl.meta dt { font-weight: bold; }
dl.meta dd { margin: 0; }
.sign { margin-top: 3em; display: flex; justify-content: space-between; }
@media print {
  body { margin: 0; }
  @page { size: A4 landscape; margin: 12mm; }
  thead { display: table-header-group; }
  tr { page-break-inside: avoid; }
}
"#;

pub fn html(case: &pb::CaseAccount, special: &pb::SpecialAccount, entries: &[pb::Entry]) -> String {
    let b = case.balances.clone().unwrap_or_default();
    let parties = |ps: &[pb::Party]| {
        ps.iter()
            .map(|p| {
                if p.payee_account.is_empty() {
                    esc(&p.name)
                } else {
                    format!(
                        "{} ({} {})",
                        esc(&p.name),
                        esc(&p.payee_bank),
                        esc(&p.payee_account)
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("<br>")
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <title>案款明细 {case_number}</title><style>{STYLE}</style></head><body>\n\
         <h1>案款明细 Case account statement</h1>\n\
         <p class=\"sub\">{case_number}</p>\n<dl class=\"meta\">\
         <dt>法院 Court</dt><dd>{court}</dd>\
         <dt>案号 Case number</dt><dd>{case_number}</dd>\
         <dt>执行款专户 Special account</dt><dd>{bank} {branch} {account} ({account_name})</dd>\
         <dt>虚拟账号 Virtual account</dt><dd>{van}</dd>\
         <dt>申请执行人 Applicants</dt><dd>{applicants}</dd>\
         <dt>被执行人 Respondents</dt><dd>{respondents}</dd>\
         <dt>执行标的 Target (yuan)</dt><dd>{target}</dd>\
         <dt>状态 Status</dt><dd>{status}</dd>\
         <dt>已收 Received</dt><dd>{received}</dd>\
         <dt>已付 Disbursed</dt><dd>{disbursed}</dd>\
         <dt>冻结 Reserved</dt><dd>{reserved}</dd>\
         <dt>余额 Balance</dt><dd>{balance}</dd>\
         <dt>可用 Available</dt><dd>{available}</dd>\
         <dt>截至 As of</dt><dd>journal entry {as_of}</dd></dl>\n",
        case_number = esc(&case.case_number),
        court = esc(&case.court_code),
        bank = esc(&special.bank_name),
        branch = esc(&special.bank_branch),
        account = esc(&special.account_number),
        account_name = esc(&special.account_name),
        van = esc(&case.virtual_account_number),
        applicants = parties(&case.applicants),
        respondents = parties(&case.respondents),
        target = esc(&case.target_amount),
        status = esc(&out::case_status(case.status)),
        received = esc(&out::with_returns(&b.received, case)),
        disbursed = esc(&out::with_returns(&b.disbursed, case)),
        reserved = esc(&b.reserved),
        balance = esc(&b.balance),
        available = esc(&b.available),
        as_of = case.as_of_sequence,
    );
    h.push_str(
        "<table><thead><tr><th>序号 Entry</th><th>记账时间 Recorded</th><th>起息日 Value date</th>\
         <th>类型 Kind</th><th>金额 Amount</th><th>收支 In/out</th><th>余额 Balance</th><th>可用 Available</th>\
         <th>银行流水 Bank ref</th><th>对方 Counterparty</th><th>摘要 Memo</th></tr></thead><tbody>\n",
    );
    for e in entries {
        let counterparty = if e.counterparty_case_number.is_empty() {
            format!("{} {}", e.counterparty_name, e.counterparty_account)
        } else {
            e.counterparty_case_number.clone()
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.sequence,
            esc(&out::time(e.recorded_at.as_ref())),
            esc(&e.value_date),
            esc(&out::entry_kind(e.kind)),
            esc(&e.amount),
            esc(&out::case_effect(e, &case.case_account_id)),
            esc(&e.running_balance),
            esc(&e.running_available),
            esc(&e.bank_ref),
            esc(counterparty.trim()),
            esc(&if e.original_sequence == 0 {
                e.memo.clone()
            } else {
                format!("{} (same as entry {})", e.memo, e.original_sequence)
                    .trim()
                    .to_owned()
            }),
        );
    }
    let _ = write!(
        h,
        "</tbody></table>\n<p>{} entries. Amounts in yuan; times in China time (UTC+8).</p>\n\
         <div class=\"sign\"><span>经办人 Prepared by: ____________</span>\
         <span>复核人 Checked by: ____________</span><span>日期 Date: ____________</span></div>\n\
         </body></html>\n",
        entries.len()
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cells_cannot_become_formulas() {
        for (given, written) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("张三", "张三"),
            ("", ""),
        ] {
            assert_eq!(text_cell(given), written);
        }
    }

    #[test]
    fn text_from_clients_cannot_become_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let case = pb::CaseAccount {
            case_number: "（2024）云0102执1号".into(),
            applicants: vec![pb::Party {
                name: "<img src=x onerror=alert(1)>".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let page = html(&case, &pb::SpecialAccount::default(), &[]);
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;img"));
    }
}
