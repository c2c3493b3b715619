//! A short `testnet chaos` run on the local backend, end to end: a real testnet of three
//! managers and a worker, KV clients, kills, pauses and clean restarts (and partitions when this
//! machine allows them: root and nft), then recovery and the linearizability check.
//!
//! Fixed seed, about 20 s of faults: a smoke test that the runner, the nemesis and the cluster
//! work together, not a search for rare bugs — `testnet chaos --duration 10m` is that. The
//! Docker backend is covered by the CI command (see the chaos runner's docs), not here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use symphony_testnet::chaos::{ChaosOptions, FaultKind, SaveLogs, runner};
use symphony_testnet::lab::Nft;
use symphony_testnet::lab::Subnet;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_under_faults_stays_linearizable_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ChaosOptions::new(20, dir.path().join("lab"));
    options.duration = Duration::from_secs(20);
    options.workers = 1;
    options.clients = 4;
    // Its own subnet, so it runs beside the lab tests (127.77.x) and a user's chaos run.
    options.subnet = Subnet::new(78, 150).unwrap();
    options.faults = vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Restart];
    match Nft::detect() {
        Ok(_) => options.faults.push(FaultKind::Partition),
        Err(reason) => println!("partition faults skipped: {reason}"),
    }
    // Kept past the test only when it fails, for whoever looks into it.
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos-smoke");
    let save_logs = SaveLogs::OnFailure(artifacts.join("logs"));
    let (_never, interrupt) = watch::channel(false);

    let run = runner::run(&options, &save_logs, interrupt).await.unwrap();
    println!("{}", run.summary());
    if !run.passed() {
        std::fs::create_dir_all(&artifacts).unwrap();
        let report = artifacts.join("report.json");
        run.write_json(&report).unwrap();
        println!("report: {}", report.display());
    }
    assert!(
        run.verdict.is_linearizable(),
        "the history is not linearizable:\n{}",
        run.verdict
    );
    assert!(
        run.recovery.recovered(),
        "the cluster did not recover: {:?}",
        run.recovery.missing
    );
    assert!(
        run.workers.ok(),
        "worker check violations: {:?}",
        run.workers.violations
    );
    assert_eq!(run.final_reads, run.setup.keys.len(), "final reads");
    assert!(!run.faults.is_empty(), "no fault was injected");
    assert!(run.verdict.ops_ok > 0, "no operation succeeded");
    assert_eq!(run.teardown, None, "the testnet was not taken down cleanly");
}
