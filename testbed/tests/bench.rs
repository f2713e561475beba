//! The benchmark command works end to end at a small size: every configuration and the scale
//! curve converge, the tables, a BENCHMARKS-style file and the plot are written, and the shipped
//! operator spends exactly one UpdateSelfUpgrade per decision. (Figures are for people; no time
//! or size is asserted.)

mod common;

use common::processes::BIN;
use std::process::Command;

#[test]
fn bench_runs_every_configuration_and_the_curve_and_writes_the_table_and_the_plot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("BENCHMARKS.md");
    let plot = dir.path().join("curve.png");
    let output = Command::new(BIN)
        .args(["bench", "--decisions", "40", "--accounts", "2"])
        .args(["--naive-decisions", "20", "--default-rate-decisions", "10"])
        .args(["--curve", "20,40", "--curve-decisions-per-account", "20"])
        .args(["--idle", "1s", "--curve-idle", "1s", "--write"])
        .arg(&file)
        .arg("--plot")
        .arg(&plot)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = std::fs::read_to_string(&file).expect("written");
    let row = |start: &str| {
        written
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row {start:?} in {written}"))
            .to_string()
    };
    for shipped in [
        row("| operator as shipped | 40 / 2 |"),
        row("| glibc malloc (MALLOC_ARENA_MAX=2) | 40 / 2 |"),
    ] {
        assert!(
            shipped.contains("| 40 (floor 40) |"),
            "one update per decision: {shipped}"
        );
        assert!(
            shipped.contains("| 0 in 1s |"),
            "no QuickSight call while idle: {shipped}"
        );
    }
    row("| at the default rate (--quicksight-rate 5) | 10 / 2 |");
    row("| naive: no listing cache (--listing-ttl 0s) | 20 / 1 |");
    // The curve: one row per size, the accounts growing with it, no update sent twice.
    for point in [row("| 20 / 1 |"), row("| 40 / 2 |")] {
        assert!(point.ends_with("| 1.000 | 0 |"), "{point}");
    }
    assert!(written.starts_with("# Benchmarks"));
    let png = std::fs::read(&plot).expect("plot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    // Each table's header and rows: four configurations, two points.
    let rows = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("| "))
        .count();
    assert_eq!(rows, 2 + 4 + 2);
}

#[test]
fn a_run_without_decisions_is_refused_with_the_flag_named() {
    let output = Command::new(BIN)
        .args(["bench", "--naive-decisions", "0"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--naive-decisions must be at least 1, got 0"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
