//! `testnet chaos`: the command-line glue around [`runner::run`] — where the testnet and the
//! artifacts go, Ctrl-C, printing the summary and the final JSON line, and the exit status.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use super::error::ChaosError;
use super::options::{ChaosOptions, agent_args};
use super::runner::{self, SaveLogs};
use crate::cli::ChaosArgs;

/// Runs `testnet chaos`. Fails (so the process exits non-zero) when the run failed: a
/// violation, a worker check violation, or a cluster that did not recover.
pub async fn run(args: ChaosArgs) -> Result<(), ChaosError> {
    let seed = args.seed.unwrap_or_else(seed_from_clock);
    // Without --dir everything lives in a temp dir that goes at the end; the report of a failed
    // run (and the agents' logs) are written next to where the command ran.
    let temp;
    let (base, report_path, save_logs) = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(ChaosError::io(format!("cannot create {}", dir.display())))?;
            let report = args.out.clone().unwrap_or_else(|| dir.join("report.json"));
            (dir.clone(), report, SaveLogs::Always(dir.join("logs")))
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("symphony-chaos-")
                .tempdir()
                .map_err(ChaosError::io("cannot create a temp dir for the testnet"))?;
            let report = args
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("chaos-seed{seed}.json")));
            let logs = report.with_extension("logs");
            (temp.path().to_path_buf(), report, SaveLogs::OnFailure(logs))
        }
    };
    let mut options = ChaosOptions::new(seed, base.join("lab"));
    options.duration = args.duration;
    options.faults = args.faults.clone();
    options.backend = args.backend;
    options.managers = args.managers;
    options.workers = args.workers;
    options.clients = args.clients;
    options.keys = args.keys;
    options.agent_bin = args.agent_bin.clone();
    options.subnet = args.subnet.parse()?;
    options.agent_args = agent_args(&args.agent_arg);
    options.log_level = args.log_level.clone();
    options.op_timeout = Duration::from_millis(args.op_timeout_ms);
    options.worker_down_timeout = Duration::from_secs(args.worker_down_timeout_s);
    options.recovery_timeout = Duration::from_secs(args.recovery_timeout_s);

    let (tell, interrupt) = watch::channel(false);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("chaos: interrupted; stopping and taking the testnet down");
            let _ = tell.send(true);
        }
    });
    let outcome = runner::run(&options, &save_logs, interrupt).await;
    ctrl_c.abort();
    let run = outcome?;

    println!("{}", run.summary());
    let failures = run.failures();
    let report = if args.dir.is_some() || !failures.is_empty() {
        run.write_json(&report_path)?;
        Some(report_path)
    } else {
        None
    };
    println!("{}", run.json_line(report.as_deref()));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ChaosError::RunFailed {
            reasons: failures.join("; "),
            report,
        })
    }
}

/// A seed for a run without `--seed`: printed with the results, so the run can be repeated.
fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() % 1_000_000)
        .unwrap_or(1)
}
