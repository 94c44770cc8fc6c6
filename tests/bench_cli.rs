//! `case-escrow bench` stays working: each workload, tiny, ends with its checks passed.

use std::process::Command;

fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_case-escrow"))
        .arg("bench")
        .args(args)
        .args(["--report-every-s", "0", "--threads", "1"])
        .env("CASE_ESCROW_LOG", "warn")
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn every_workload_runs_bounded_and_verifies_the_ledger() {
    // The open loop (`--rate`) is run by the warm-up test below.
    for args in [
        &[
            "--workload",
            "receipts",
            "--clients",
            "4",
            "--requests",
            "200",
            "--cases",
            "10",
        ][..],
        &[
            "--workload",
            "receipts",
            "--clients",
            "6",
            "--connections",
            "2",
            "--requests",
            "200",
            "--cases",
            "10",
        ][..],
        &[
            "--workload",
            "mixed",
            "--clients",
            "4",
            "--requests",
            "300",
            "--cases",
            "8",
        ][..],
        &[
            "--workload",
            "batch",
            "--clients",
            "2",
            "--batch-size",
            "50",
            "--requests",
            "300",
            "--cases",
            "10",
        ][..],
    ] {
        let out = bench(args);
        assert!(out.contains("RESULT "), "{args:?}: {out}");
        assert!(out.contains("errors=0"), "{args:?}: {out}");
        assert!(
            out.contains("hold exactly what was acknowledged"),
            "{args:?}: {out}"
        );
        assert!(out.contains("the six invariants hold"), "{args:?}: {out}");
        if args.contains(&"--connections") {
            assert!(out.contains("6 clients on 2 connections"), "{out}");
            assert!(out.contains("clients=6 connections=2 "), "{out}");
        }
    }
}

#[test]
fn calls_due_in_the_warm_up_are_counted_apart() {
    // 100 calls at 500/s are all due within the first second, the default warm-up.
    let open_loop = [
        "--workload",
        "receipts",
        "--clients",
        "4",
        "--requests",
        "100",
        "--rate",
        "500",
        "--cases",
        "5",
    ];
    let out = bench(&open_loop);
    assert!(out.contains(" ops=100 "), "{out}");
    assert!(out.contains(" warmup_calls=100 "), "{out}");
    assert!(
        out.contains("warm-up: 100 calls due in the first 1 s"),
        "{out}"
    );
    let out = bench(&[&open_loop[..], &["--warmup-s", "0"]].concat());
    assert!(out.contains(" warmup_calls=0 "), "{out}");
    assert!(!out.contains("warm-up:"), "{out}");
    assert!(out.contains("errors=0"), "{out}");
    assert!(out.contains("hold exactly what was acknowledged"), "{out}");
    assert!(out.contains("the six invariants hold"), "{out}");
}

#[test]
fn the_fsync_probe_reports_a_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let out = bench(&[
        "--workload",
        "fsync",
        "--requests",
        "20",
        "--seconds",
        "5",
        "--data-dir",
        data,
    ]);
    assert!(out.contains("RESULT workload=Fsync ops=20 "), "{out}");
}
