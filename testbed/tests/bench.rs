//! The benchmark command works end to end at a small size: both configurations converge, the
//! table and BENCHMARKS-style file are written, and the shipped operator spends exactly one
//! UpdateSelfUpgrade per decision. (Figures are for people; no time is asserted.)

mod common;

use common::processes::BIN;
use std::process::Command;

#[test]
fn bench_runs_both_configurations_and_writes_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("BENCHMARKS.md");
    let output = Command::new(BIN)
        .args(["bench", "--decisions", "40", "--accounts", "2"])
        .args(["--naive-decisions", "20", "--idle", "1s", "--write"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = std::fs::read_to_string(&file).expect("written");
    let shipped = written
        .lines()
        .find(|l| l.starts_with("| operator as shipped | 40 / 2 |"))
        .unwrap_or_else(|| panic!("{written}"));
    assert!(
        shipped.contains("| 40 (floor 40) |"),
        "one update per decision: {shipped}"
    );
    assert!(
        shipped.contains("| 0 in 1s |"),
        "no QuickSight call while idle: {shipped}"
    );
    assert!(
        written.contains("| naive: no listing cache (--listing-ttl 0s) | 20 / 1 |"),
        "{written}"
    );
    assert!(written.starts_with("# Benchmarks"));
    // The header and one row per configuration.
    let rows = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("| "))
        .count();
    assert_eq!(rows, 3);
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
