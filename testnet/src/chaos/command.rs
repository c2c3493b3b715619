//! `testnet chaos`: the command-line glue around [`runner::run`] — where the testnet and the
//! artifacts go, Ctrl-C, printing the summary and the final JSON line, and the exit status.

use std::path::PathBuf;

use tokio::sync::watch;

use super::error::ChaosError;
use super::options::ChaosOptions;
use super::runner::{self, SaveLogs};

/// What `testnet chaos` was asked for: the run, and where it and its artifacts go.
#[derive(Debug, Clone)]
pub struct ChaosCommand {
    /// The seed of every random choice; `None`: one from the clock (printed, so that the run
    /// can be repeated).
    pub seed: Option<u64>,
    /// Keep the artifacts here — the report (report.json) and the agents' logs (logs/) — and
    /// run the testnet in `dir/lab`; `None`: a temp dir.
    pub dir: Option<PathBuf>,
    /// Where the report goes when the run fails (default: `dir/report.json` with a dir, else
    /// `./chaos-seed<SEED>.json`, with the agents' logs in `./chaos-seed<SEED>.logs/`).
    pub out: Option<PathBuf>,
    /// The run; its `seed` and `lab_dir` are the ones this command settles on.
    pub run: ChaosOptions,
}

/// Runs `testnet chaos`. Fails (so the process exits non-zero) when the run failed: a
/// violation, a worker check violation, or a cluster that did not recover.
pub async fn run(command: ChaosCommand) -> Result<(), ChaosError> {
    let seed = command.seed.unwrap_or_else(seed_from_clock);
    // Without a dir everything lives in a temp dir that goes at the end; the report of a failed
    // run (and the agents' logs) are written next to where the command ran.
    let temp;
    let (base, report_path, save_logs) = match &command.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(ChaosError::io(format!("cannot create {}", dir.display())))?;
            let report = command
                .out
                .clone()
                .unwrap_or_else(|| dir.join("report.json"));
            (dir.clone(), report, SaveLogs::Always(dir.join("logs")))
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("symphony-chaos-")
                .tempdir()
                .map_err(ChaosError::io("cannot create a temp dir for the testnet"))?;
            let report = command
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("chaos-seed{seed}.json")));
            let logs = report.with_extension("logs");
            (temp.path().to_path_buf(), report, SaveLogs::OnFailure(logs))
        }
    };
    let options = ChaosOptions {
        seed,
        lab_dir: base.join("lab"),
        ..command.run
    };

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
    let report = if command.dir.is_some() || !failures.is_empty() {
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
