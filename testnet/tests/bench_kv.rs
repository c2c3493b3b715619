//! `testnet bench kv`, small: three real managers (the agent binary `cargo build --bins` left
//! in the target dir). The command must succeed, lose nothing, and its last line must be a
//! JSON object with the throughput and what the managers spent on it: CPU time per 1,000
//! writes and each manager's resident memory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bench_output;

const MANAGERS: usize = 3;
const OPS: u64 = 300;

#[test]
fn a_small_kv_bench_reports_throughput_cpu_per_write_and_memory() {
    let managers = MANAGERS.to_string();
    let ops = OPS.to_string();
    let (figures, stdout) = bench_output::run(&[
        "kv",
        "--managers",
        &managers,
        "--clients",
        "4",
        "--ops",
        &ops,
    ]);
    let number = |field: &str| bench_output::number(&figures, field);
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

#[test]
fn a_mixed_kv_bench_reads_and_writes_and_loses_nothing() {
    let (figures, stdout) = bench_output::run(&[
        "kv",
        "--managers",
        "3",
        "--clients",
        "4",
        "--ops",
        "400",
        "--op",
        "mixed",
        "--read-ratio",
        "0.5",
        "--keys",
        "50",
    ]);
    let number = |field: &str| bench_output::number(&figures, field);
    assert_eq!(figures["op"], "mixed");
    assert_eq!(figures["errors"], 0, "{figures}");
    assert_eq!(figures["lost"], 0, "{figures}");
    // Half of 400 operations each way, give or take what a fair coin does.
    let seconds = number("elapsed_s");
    let reads = number("reads_per_sec") * seconds;
    let writes = number("writes_per_sec") * seconds;
    assert!(reads > 100.0 && writes > 100.0, "{figures}");
    assert!(
        number("read_p99_ms") > 0.0 && number("write_p99_ms") > 0.0,
        "{figures}"
    );
    assert!(stdout.contains("  reads: "), "{stdout}");
}
