//! The reconciliation summary page, rendered by a real headless browser (Debian's
//! chromium; `.ci/run` installs it): the page's own self-check must report that no
//! script failed and every chart was laid out with its marks. The same check is shown
//! to fail on pages broken on purpose, so a pass means something.

use std::path::Path;
use std::process::Command;

use case_escrow::api::pb;
use case_escrow::cli::report_html;

/// The longest one rendering may take before the test fails instead of hanging.
const BROWSER_SECONDS_MAX: &str = "90";

fn summary() -> pb::CaseFlowSummary {
    let kinds = |pairs: &[(pb::DiscrepancyKind, u64)]| -> Vec<pb::KindCount> {
        pairs
            .iter()
            .map(|(k, n)| pb::KindCount {
                kind: *k as i32,
                count: *n,
            })
            .collect()
    };
    let court =
        |code: &str, rows, pairs: &[(pb::DiscrepancyKind, u64)], rate: &str| pb::CourtSummary {
            court_code: code.into(),
            rows,
            discrepancies: pairs.iter().map(|p| p.1).sum(),
            counts_by_kind: kinds(pairs),
            target_total: "1000000.00".into(),
            received_total: "420000.00".into(),
            paid_outside_court_total: "0.00".into(),
            recovery_rate: rate.into(),
            ..Default::default()
        };
    use pb::DiscrepancyKind as K;
    let a = [(K::ReceivedMismatch, 3), (K::OverdueDisbursement, 5)];
    let b = [(K::CaseMissingInLedger, 2), (K::ReceivedMismatch, 1)];
    pb::CaseFlowSummary {
        as_of_sequence: 42,
        as_of: "2024-03-31".into(),
        rows: 120,
        invalid_rows: 1,
        total: Some(court(
            "",
            120,
            &[
                (K::ReceivedMismatch, 4),
                (K::OverdueDisbursement, 5),
                (K::CaseMissingInLedger, 2),
            ],
            "0.4200",
        )),
        courts: vec![
            court("云0102", 70, &a, "0.4200"),
            // A court code is client text: it must stay text.
            court(
                "云0103<script>window.__renderErrors.push('injected')</script>",
                50,
                &b,
                "1.0500",
            ),
        ],
        ..Default::default()
    }
}

/// Renders `html` in headless chromium and returns the page's verdict, with the
/// renderer's own complaints about the markup (chromium logs an SVG attribute it
/// cannot read as `Error: <rect> attribute …`) added to it.
fn render(dir: &Path, name: &str, html: &str) -> String {
    let page = dir.join(name);
    std::fs::write(&page, html).expect("page written");
    let profile = tempfile::tempdir().expect("browser profile");
    let out = Command::new("timeout")
        .args(["-k", "5", BROWSER_SECONDS_MAX, "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (apt-get install -y chromium; .ci/run does it)");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let marker = "data-render-check=\"";
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("the page's self-check did not run:\n{dom}"))
        + marker.len();
    let end = dom[start..].find('"').expect("attribute ends") + start;
    let verdict = dom[start..end].to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let markup: Vec<&str> = stderr.lines().filter(|l| l.contains("Error: <")).collect();
    if markup.is_empty() {
        verdict
    } else {
        format!("fail: markup: {}; {verdict}", markup.join("; "))
    }
}

#[test]
fn the_reconciliation_summary_renders_its_charts_without_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let html = report_html::case_flow(&summary()).expect("renders");
    assert!(
        !html.contains("<script>window.__renderErrors.push('injected')"),
        "escaped"
    );
    assert_eq!(render(dir.path(), "summary.html", &html), "ok");

    let bank = report_html::bank(&pb::BankSummary {
        special_account_id: "sa-1".into(),
        counts_by_kind: vec![pb::KindCount {
            kind: pb::DiscrepancyKind::BankLineNotInLedger as i32,
            count: 2,
        }],
        ..Default::default()
    });
    assert_eq!(render(dir.path(), "bank.html", &bank), "ok");
    // A run without discrepancies still draws its (empty) charts.
    let empty = report_html::case_flow(&pb::CaseFlowSummary::default()).expect("renders");
    assert_eq!(render(dir.path(), "empty.html", &empty), "ok");

    // The check fails when a script fails…
    let broken = html.replacen("</h1>", "</h1><script>undefinedFunction();</script>", 1);
    let verdict = render(dir.path(), "broken-script.html", &broken);
    assert!(
        verdict.starts_with("fail") && verdict.contains("undefinedFunction"),
        "{verdict}"
    );
    // …and when a chart is not laid out.
    let hidden = html.replacen(
        "<svg class=\"chart\" id=\"by-court\"",
        "<svg style=\"display:none\" class=\"chart\" id=\"by-court\"",
        1,
    );
    let verdict = render(dir.path(), "hidden-chart.html", &hidden);
    assert!(
        verdict.starts_with("fail") && verdict.contains("by-court: no size"),
        "{verdict}"
    );
    // …and when a chart lost a mark…
    let first_mark = html.find("<rect class=\"mark\"").expect("a mark");
    let mark_end =
        html[first_mark..].find("</rect>").expect("mark ends") + first_mark + "</rect>".len();
    let lost = format!("{}{}", &html[..first_mark], &html[mark_end..]);
    let verdict = render(dir.path(), "lost-mark.html", &lost);
    assert!(verdict.contains("by-kind: 2 marks of 3"), "{verdict}");
    // …and when the markup says something the renderer cannot draw…
    let garbled = html.replacen("height=\"16\"", "height=\"sixteen\"", 1);
    let verdict = render(dir.path(), "garbled.html", &garbled);
    assert!(
        verdict.contains("markup") && verdict.contains("height"),
        "{verdict}"
    );
    // …and when a chart is missing.
    let start = html
        .find("<svg class=\"chart\" id=\"recovery-rate\"")
        .expect("chart");
    let end = html[start..].find("</svg>").expect("end") + start + "</svg>".len();
    let missing = format!("{}{}", &html[..start], &html[end..]);
    let verdict = render(dir.path(), "missing-chart.html", &missing);
    assert!(verdict.contains("charts: 2 of 3"), "{verdict}");
}
