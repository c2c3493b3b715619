//! `testnet bench kv`, small: three real managers (the agent binary `cargo build --bins` left
//! in the target dir). The command must succeed, lose nothing, and its last line must be a
//! JSON object with the throughput and what the managers spent on it: CPU time per 1,000
//! writes and each manager's resident memory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use serde_json::Value;

const MANAGERS: usize = 3;
const OPS: u64 = 300;

#[test]
fn a_small_kv_bench_reports_throughput_cpu_per_write_and_memory() {
    let output = Command::new(env!("CARGO_BIN_EXE_testnet"))
        .args([
            "bench",
            "kv",
            "--managers",
            &MANAGERS.to_string(),
            "--clients",
            "4",
            "--ops",
            &OPS.to_string(),
        ])
        .output()
        .expect("cannot run testnet");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench kv failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let last = stdout.lines().last().expect("no output");
    let figures: Value = serde_json::from_str(last)
        .unwrap_or_else(|error| panic!("the last line is not JSON ({error}): {last}"));
    let number = |field: &str| {
        figures[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is not a number: {figures}"))
    };
    assert_eq!(figures["bench"], "kv");
    assert_eq!(figures["errors"], 0, "{figures}");
    assert_eq!(figures["lost"], 0, "{figures}");
    assert!(number("writes_per_sec") > 0.0, "{figures}");
    // Three processes that took writes spent CPU on them, and each holds some memory.
    assert!(number("managers_cpu_s") > 0.0, "{figures}");
    assert!(number("cpu_ms_per_1000_ops") > 0.0, "{figures}");
    let rss = figures["managers_rss_mib"]
        .as_array()
        .unwrap_or_else(|| panic!("managers_rss_mib is not a list: {figures}"));
    assert_eq!(rss.len(), MANAGERS, "{figures}");
    assert!(
        rss.iter()
            .all(|mib| mib.as_f64().is_some_and(|mib| mib > 1.0)),
        "{figures}"
    );
    assert!(
        stdout.contains("ms per 1,000 writes"),
        "no CPU line in the human output:\n{stdout}"
    );
}
