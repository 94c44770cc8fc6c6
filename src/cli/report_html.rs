//! The reconciliation summary as one self-contained HTML page with charts drawn as
//! inline SVG: discrepancies by kind, discrepancies by court (stacked by kind), and
//! the recovery rate per court. No external assets, every client text escaped.
//!
//! The page carries a small self-check: it records script errors and, once laid out,
//! checks that every chart has a size and marks, then writes the verdict into
//! `<html data-render-check="…">`. People never see it; the browser test reads it.

use std::fmt::Write as _;

use crate::api::pb;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::statement::esc;

/// Colours for kinds, in order (a kind keeps its colour across charts).
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
const CHART_WIDTH: u32 = 760;
const BAR_HEIGHT: u32 = 22;
const LABEL_WIDTH: u32 = 260;

fn kind_name(k: i32) -> String {
    pb::DiscrepancyKind::try_from(k).map_or(k.to_string(), |k| k.as_str_name().to_owned())
}

const STYLE: &str = r#"
body { font-family: "Noto Sans CJK SC", "PingFang SC", sans-serif; margin: 2em; color: #111; }
h1 { font-size: 1.4em; }
h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #999; padding: 3px 8px; }
th { background: #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg.chart text { font-size: 12px; fill: #222; }
.legend span { display: inline-block; margin-right: 1em; font-size: 0.8em; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
@media print { body { margin: 0; } @page { size: A4; margin: 12mm; } svg.chart { page-break-inside: avoid; } }
"#;

/// Records errors from the first moment, before anything else on the page runs.
const ERROR_TRAP: &str = r#"<script>
window.__renderErrors = [];
window.addEventListener("error", function (e) { window.__renderErrors.push(String(e.message || e.type)); }, true);
</script>"#;

/// After layout: every chart announced has a size and at least one mark.
const SELF_CHECK: &str = r#"<script>
(function () {
  var problems = window.__renderErrors.slice();
  var charts = document.querySelectorAll("svg.chart");
  var expected = Number(document.body.getAttribute("data-charts"));
  if (charts.length !== expected) problems.push("charts: " + charts.length + " of " + expected);
  charts.forEach(function (c) {
    var box = c.getBoundingClientRect();
    if (!(box.width > 0 && box.height > 0)) problems.push(c.id + ": no size");
    var marks = c.querySelectorAll("rect.mark");
    var want = Number(c.getAttribute("data-marks"));
    if (marks.length === 0 || marks.length !== want) problems.push(c.id + ": " + marks.length + " marks of " + want);
    marks.forEach(function (m, i) {
      var b = m.getBBox();
      if (!(isFinite(b.width) && isFinite(b.height) && b.width > 0 && b.height > 0)) problems.push(c.id + ": mark " + i + " has no area");
    });
  });
  document.documentElement.setAttribute("data-render-check", problems.length ? "fail: " + problems.join("; ") : "ok");
})();
</script>"#;

/// A horizontal bar chart: one bar a label, bars scaled to the largest value.
fn bar_chart(id: &str, title: &str, bars: &[(String, f64, String)], color: &str) -> String {
    // The marks drawn: one a bar, or the empty chart's axis.
    let marks = bars.len().max(1);
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(1e-9);
    let height = BAR_HEIGHT * (bars.len().max(1) as u32) + 10;
    let plot = f64::from(CHART_WIDTH - LABEL_WIDTH - 90);
    let mut s = format!(
        "<svg class=\"chart\" id=\"{id}\" data-marks=\"{marks}\" role=\"img\" aria-label=\"{t}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{height}\" viewBox=\"0 0 {CHART_WIDTH} {height}\"><title>{t}</title>",
        t = esc(title)
    );
    if bars.is_empty() {
        // An empty chart still draws its axis, so "nothing found" reads as such.
        let _ = write!(
            s,
            "<rect class=\"mark\" x=\"{LABEL_WIDTH}\" y=\"4\" width=\"1\" height=\"{}\" fill=\"#999\"/><text x=\"{}\" y=\"18\">none</text>",
            BAR_HEIGHT - 6,
            LABEL_WIDTH + 6
        );
    }
    for (i, (label, value, shown)) in bars.iter().enumerate() {
        let y = 4 + BAR_HEIGHT * i as u32;
        let w = (value / max * plot).max(1.0);
        let _ = write!(
            s,
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
             <rect class=\"mark\" x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{w:.1}\" height=\"{h}\" fill=\"{color}\"><title>{label}: {shown}</title></rect>\
             <text x=\"{vx:.1}\" y=\"{ty}\">{shown}</text>",
            lx = LABEL_WIDTH - 6,
            ty = y + 15,
            h = BAR_HEIGHT - 6,
            vx = f64::from(LABEL_WIDTH) + w + 4.0,
            label = esc(label),
            shown = esc(shown),
        );
    }
    s.push_str("</svg>");
    s
}

/// Discrepancies per court, each bar split by kind.
fn stacked_chart(id: &str, title: &str, courts: &[pb::CourtSummary], kinds: &[i32]) -> String {
    let marks = courts
        .iter()
        .map(|c| c.counts_by_kind.len().max(1))
        .sum::<usize>()
        .max(1);
    let max = courts
        .iter()
        .map(|c| c.discrepancies)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let height = BAR_HEIGHT * (courts.len().max(1) as u32) + 10;
    let plot = f64::from(CHART_WIDTH - LABEL_WIDTH - 90);
    let mut s = format!(
        "<svg class=\"chart\" id=\"{id}\" data-marks=\"{marks}\" role=\"img\" aria-label=\"{t}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{height}\" viewBox=\"0 0 {CHART_WIDTH} {height}\"><title>{t}</title>",
        t = esc(title)
    );
    if courts.is_empty() {
        let _ = write!(
            s,
            "<rect class=\"mark\" x=\"{LABEL_WIDTH}\" y=\"4\" width=\"1\" height=\"{}\" fill=\"#999\"/>",
            BAR_HEIGHT - 6
        );
    }
    for (i, c) in courts.iter().enumerate() {
        let y = 4 + BAR_HEIGHT * i as u32;
        let name = if c.court_code.is_empty() {
            "(no court)"
        } else {
            c.court_code.as_str()
        };
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            LABEL_WIDTH - 6,
            y + 15,
            esc(name)
        );
        let mut x = f64::from(LABEL_WIDTH);
        for kc in &c.counts_by_kind {
            let w = (kc.count as f64 / max * plot).max(0.5);
            let color = kinds
                .iter()
                .position(|k| *k == kc.kind)
                .map_or("#999", |i| PALETTE[i % PALETTE.len()]);
            let _ = write!(
                s,
                "<rect class=\"mark\" x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{color}\"><title>{}: {} {}</title></rect>",
                BAR_HEIGHT - 6,
                esc(name),
                kc.count,
                esc(&kind_name(kc.kind))
            );
            x += w;
        }
        if c.counts_by_kind.is_empty() {
            let _ = write!(
                s,
                "<rect class=\"mark\" x=\"{x:.1}\" y=\"{y}\" width=\"1\" height=\"{}\" fill=\"#999\"/>",
                BAR_HEIGHT - 6
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\">{}</text>",
            x + 4.0,
            y + 15,
            c.discrepancies
        );
    }
    s.push_str("</svg>");
    s
}

/// A money or rate figure of the summary, exactly; totals have no per-amount cap.
fn dec(field: &str, text: &str) -> Result<Decimal, String> {
    if text.is_empty() {
        return Ok(Decimal::ZERO);
    }
    text.parse::<Decimal>()
        .map_err(|e| format!("the summary's {field} {text:?} is not a number: {e}"))
}

/// A recovery rate ("0.4133") as a percentage with 2 places ("41.33"); `None` without
/// a target.
fn rate_percent(rate: &str) -> Result<Option<Decimal>, String> {
    if rate.is_empty() {
        return Ok(None);
    }
    let r = dec("recovery_rate", rate)?;
    Ok(Some((r * Decimal::ONE_HUNDRED).round_dp(2)))
}

/// The case-flow reconciliation summary as a printable page.
pub fn case_flow(s: &pb::CaseFlowSummary) -> Result<String, String> {
    let total = s.total.clone().unwrap_or_default();
    let kinds: Vec<i32> = total.counts_by_kind.iter().map(|k| k.kind).collect();
    let by_kind: Vec<(String, f64, String)> = total
        .counts_by_kind
        .iter()
        .map(|k| (kind_name(k.kind), k.count as f64, k.count.to_string()))
        .collect();
    let mut rates: Vec<(String, f64, String)> = Vec::new();
    for c in &s.courts {
        if let Some(p) = rate_percent(&c.recovery_rate)? {
            let name = if c.court_code.is_empty() {
                "(no court)"
            } else {
                &c.court_code
            };
            // The bar's length is geometry; the figure shown is the exact decimal.
            rates.push((
                name.to_owned(),
                p.to_f64().unwrap_or(0.0),
                format!("{p:.2}%"),
            ));
        }
    }
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">{ERROR_TRAP}\
         <title>对账汇总 Case-flow reconciliation {as_of}</title><style>{STYLE}</style></head>\
         <body data-charts=\"3\">\n<h1>案款对账汇总 Case-flow reconciliation</h1>\n\
         <p>As of {as_of} (ledger entry {seq}); {rows} rows read, {invalid} unreadable; \
         {disc} discrepancies.</p>\n",
        as_of = esc(&s.as_of),
        seq = s.as_of_sequence,
        rows = s.rows,
        invalid = s.invalid_rows,
        disc = total.discrepancies,
    );
    h.push_str("<h2>Discrepancies by kind</h2>\n");
    h.push_str(&bar_chart(
        "by-kind",
        "Discrepancies by kind",
        &by_kind,
        PALETTE[0],
    ));
    h.push_str("\n<h2>Discrepancies by court</h2>\n<div class=\"legend\">");
    for (i, k) in kinds.iter().enumerate() {
        let _ = write!(
            h,
            "<span><i style=\"background:{}\"></i>{}</span>",
            PALETTE[i % PALETTE.len()],
            esc(&kind_name(*k))
        );
    }
    h.push_str("</div>\n");
    h.push_str(&stacked_chart(
        "by-court",
        "Discrepancies by court",
        &s.courts,
        &kinds,
    ));
    h.push_str("\n<h2>Recovery rate per court (实际执行到位率)</h2>\n");
    h.push_str(&bar_chart(
        "recovery-rate",
        "Recovery rate per court",
        &rates,
        PALETTE[4],
    ));
    h.push_str(
        "\n<h2>Per court</h2>\n<table><thead><tr><th>Court</th><th>Rows</th><th>Discrepancies</th>\
         <th>Target (yuan)</th><th>Recovered (yuan)</th><th>Recovery rate</th></tr></thead><tbody>\n",
    );
    for c in s.courts.iter().chain(std::iter::once(&total)) {
        let name = if std::ptr::eq(c, &total) {
            "TOTAL"
        } else if c.court_code.is_empty() {
            "(no court)"
        } else {
            c.court_code.as_str()
        };
        let recovered = dec("received_total", &c.received_total)?
            + dec("paid_outside_court_total", &c.paid_outside_court_total)?;
        let rate = rate_percent(&c.recovery_rate)?;
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(name),
            c.rows,
            c.discrepancies,
            esc(&c.target_total),
            recovered.round_dp(2),
            rate.map_or("-".to_owned(), |p| format!("{p:.2}%")),
        );
    }
    h.push_str("</tbody></table>\n");
    h.push_str(SELF_CHECK);
    h.push_str("\n</body></html>\n");
    Ok(h)
}

/// The bank reconciliation summary as a printable page (one chart: by kind).
pub fn bank(s: &pb::BankSummary) -> String {
    let by_kind: Vec<(String, f64, String)> = s
        .counts_by_kind
        .iter()
        .map(|k| (kind_name(k.kind), k.count as f64, k.count.to_string()))
        .collect();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">{ERROR_TRAP}\
         <title>银行对账 Bank reconciliation</title><style>{STYLE}</style></head>\
         <body data-charts=\"1\">\n<h1>银行对账 Bank reconciliation</h1>\n\
         <p>Special account {sa} ({court}), {from} to {to} (ledger entry {seq}): {rows} lines, \
         {invalid} unreadable, {matched} matched, {disc} discrepancies.</p>\n\
         <table><tbody>\
         <tr><th></th><th>Opening</th><th>Credits</th><th>Debits</th><th>Closing</th></tr>\
         <tr><td>Statement</td><td class=\"n\">{so}</td><td class=\"n\">{sc}</td><td class=\"n\">{sd}</td><td class=\"n\">{scl}</td></tr>\
         <tr><td>Ledger</td><td class=\"n\">{lo}</td><td></td><td></td><td class=\"n\">{lc}</td></tr>\
         </tbody></table>\n<p>At the snapshot: bank {bank} = cases {cases} + suspense {susp}.</p>\n\
         <h2>Discrepancies by kind</h2>\n",
        sa = esc(&s.special_account_id),
        court = esc(&s.court_code),
        from = esc(&s.period_from),
        to = esc(&s.period_to),
        seq = s.as_of_sequence,
        rows = s.rows,
        invalid = s.invalid_rows,
        matched = s.matched,
        disc = s.discrepancies,
        so = esc(&s.statement_opening),
        sc = esc(&s.statement_credits),
        sd = esc(&s.statement_debits),
        scl = esc(&s.statement_closing),
        lo = esc(&s.ledger_opening),
        lc = esc(&s.ledger_closing),
        bank = esc(&s.ledger_bank_balance),
        cases = esc(&s.ledger_cases_balance),
        susp = esc(&s.ledger_suspense_balance),
    );
    h.push_str(&bar_chart(
        "by-kind",
        "Discrepancies by kind",
        &by_kind,
        PALETTE[0],
    ));
    h.push_str(SELF_CHECK);
    h.push_str("\n</body></html>\n");
    h
}
