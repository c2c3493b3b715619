//! `testnet bench schedule`, small: three real managers (the agent binary `cargo build --bins`
//! left in the target dir) and simulated workers in the `testnet` process. The command must
//! succeed and its last line must be a JSON object saying that every task was placed once,
//! reported running and counted running by the leader.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bench_output;

const WORKERS: u64 = 20;
const TASKS: u64 = 200;

#[test]
fn a_small_schedule_bench_places_and_runs_every_task() {
    let workers = WORKERS.to_string();
    let tasks = TASKS.to_string();
    let (figures, _) = bench_output::run(&[
        "schedule",
        "--workers",
        &workers,
        "--tasks",
        &tasks,
        "--timeout-s",
        "60",
    ]);
    let count = |field: &str| {
        figures[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} is not a count: {figures}"))
    };
    let number = |field: &str| bench_output::number(&figures, field);
    assert_eq!(figures["bench"], "schedule");
    assert_eq!(count("workers"), WORKERS);
    assert_eq!(count("tasks"), TASKS);
    assert_eq!(count("placed"), TASKS, "{figures}");
    assert_eq!(count("reported_running"), TASKS, "{figures}");
    assert_eq!(count("running_in_state"), TASKS, "{figures}");
    assert_eq!(count("duplicates"), 0, "{figures}");
    // Placements were seen over some time, at some rate, and running came after placed.
    let per_sec = number("placements_per_sec");
    let all_placed = number("all_placed_s");
    assert!(per_sec > 0.0 && all_placed > 0.0, "{figures}");
    // Both are rounded to two decimals: the product is off by at most the rate's 5 ms.
    assert!(
        (per_sec * all_placed - TASKS as f64).abs() <= per_sec * 0.005 + 1.0,
        "the rate is every task over the time to the last placement: {figures}"
    );
    assert!(number("all_running_s") >= all_placed, "{figures}");
    assert!(count("peak_placements_per_sec") >= 1, "{figures}");
    assert!(count("peak_placements_per_sec") <= TASKS, "{figures}");
    // The leader did the work, and /proc was read.
    assert!(number("leader_cpu_s") > 0.0, "{figures}");
    assert!(number("leader_rss_mib") > 1.0, "{figures}");
}
