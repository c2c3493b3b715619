//! One chaos run from start to end: bring up a fresh testnet through the lab, run the clients,
//! the worker sampler and the nemesis for the run's duration, stop them, bring the cluster back
//! whole, read every key once more, check the history, and take the testnet down — also when
//! something fails on the way or the run is interrupted.
//!
//! The order at the end matters: the clients stop before the recovery (so the history ends with
//! the faults), the final reads come after it (so every key's last value is read through a
//! healthy leader, which pins down what the lost writes did), every manager's own replica is
//! then compared with the others' (nothing writes any more, so they must agree), and the check
//! runs before the
//! testnet goes (so a failing run can keep the agents' logs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::board::Board;
use super::checker::{CheckConfig, check};
use super::error::ChaosError;
use super::history::{ClientId, HistoryRecorder};
use super::nemesis::{Nemesis, NemesisOptions};
use super::options::ChaosOptions;
use super::recovery::{self, Recovery};
use super::replicas;
use super::report::{ChaosRun, RunSetup, unavailability};
use super::tasks::{blocking, stopped};
use super::workload::{self, Workload};
use super::{sampler, services, settle};
use crate::lab::{Addressing, Lab, LabError, Lifetime, UpOptions};

/// How long the final reads may keep trying.
const FINAL_READS_TIMEOUT: Duration = Duration::from_secs(60);
/// The forming of the cluster may take at least this long (debug builds, loaded machine).
const MIN_FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// Where to copy the agents' logs before the testnet is taken down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveLogs {
    Never,
    /// Only if the run failed.
    OnFailure(PathBuf),
    Always(PathBuf),
}

/// Runs one chaos run (see the module docs). `interrupt` turning `true` (Ctrl-C) ends the run
/// early: the testnet is taken down and [`ChaosError::Interrupted`] returned.
pub async fn run(
    options: &ChaosOptions,
    save_logs: &SaveLogs,
    mut interrupt: watch::Receiver<bool>,
) -> Result<ChaosRun, ChaosError> {
    validate(options)?;
    let mut teardown = Teardown::new(&options.lab_dir);
    let up_options = UpOptions {
        dir: options.lab_dir.clone(),
        managers: options.managers,
        workers: options.workers,
        backend: options.backend,
        agent_bin: options.agent_bin.clone(),
        subnet: options.subnet,
        // Partitions need nodes on addresses of their own.
        addressing: Addressing::Subnet,
        // Taken down by the run itself, from its state file, also after a Ctrl-C.
        lifetime: Lifetime::Detached,
        log_level: options.log_level.clone(),
        agent_args: options.agent_args.clone(),
        start_timeout: options.start_timeout,
        form_timeout: options.recovery_timeout.max(MIN_FORM_TIMEOUT),
        disk_mb: small_disks(options),
    };
    let mut progress = |message: &str| eprintln!("up: {message}");
    let lab = tokio::select! {
        lab = Lab::up(up_options, &mut progress) => lab,
        () = stopped(&mut interrupt) => {
            teardown.down();
            return Err(ChaosError::Interrupted);
        }
    };
    let lab = match lab {
        Ok(lab) => lab,
        // Nothing was created: nothing to take down (and another run's testnet must be left
        // alone).
        Err(error @ LabError::AlreadyUp { .. }) => {
            teardown.disarm();
            return Err(error.into());
        }
        Err(error) => {
            // The agents' logs say why; keep them before the testnet goes.
            let dir = match save_logs {
                SaveLogs::Always(dir) | SaveLogs::OnFailure(dir) => Some(dir),
                SaveLogs::Never => None,
            };
            if let Some(dir) = dir
                && let Ok(lab) = Lab::open(&options.lab_dir)
                && copy_logs(&lab, dir).is_ok()
            {
                eprintln!("chaos: agent logs copied to {}", dir.display());
            }
            return Err(error.into());
        }
    };

    let services = services::create(&lab).await;
    let recorder = HistoryRecorder::new();
    let board = Arc::new(Board::new(recorder.clone(), &lab.state().nodes));
    let keys = workload::keys(options.seed, options.keys);
    let workload = Arc::new(Workload {
        seed: options.seed,
        keys: keys.clone(),
        op_timeout: options.op_timeout,
        think_max: options.think_max,
    });
    let (stop_workload, workload_stop) = watch::channel(false);
    let (stop_sampler, sampler_stop) = watch::channel(false);
    eprintln!(
        "chaos: seed {}, {} client(s) on {} key(s) for {:?}",
        options.seed, options.clients, options.keys, options.duration
    );
    let sampler = tokio::spawn(sampler::run(board.clone(), sampler_stop));
    let clients: Vec<_> = (0..options.clients)
        .map(|id| {
            tokio::spawn(workload::client(
                id,
                workload.clone(),
                board.clone(),
                recorder.clone(),
                workload_stop.clone(),
            ))
        })
        .collect();
    let nemesis = Nemesis::new(
        lab,
        board.clone(),
        NemesisOptions {
            seed: options.seed,
            kinds: options.faults.clone(),
            managers: options.managers,
            worker_down_timeout: options.worker_down_timeout,
            recovery_timeout: options.recovery_timeout,
        },
    );
    // The nemesis runs in this task rather than a spawned one: the lab's calls hold borrows
    // across awaits that the compiler cannot prove `Send` for every lifetime (the async-closure
    // higher-ranked `Send` limitation), and nothing is gained by another task.
    let workload_start_ns = recorder.now_ns();
    let timer = async {
        let interrupted = tokio::select! {
            () = tokio::time::sleep(options.duration) => false,
            () = stopped(&mut interrupt) => true,
        };
        let _ = stop_workload.send(true);
        eprintln!("chaos: stopping the clients and the nemesis");
        (interrupted, recorder.now_ns())
    };
    let (outcome, (interrupted, workload_end_ns)) =
        tokio::join!(nemesis.run(workload_stop.clone()), timer);
    for client in clients {
        client
            .await
            .map_err(|error| ChaosError::Task(format!("a client: {error}")))?;
    }
    let mut lab = outcome.lab;
    if interrupted {
        let _ = stop_sampler.send(true);
        teardown.down();
        return Err(ChaosError::Interrupted);
    }

    eprintln!("chaos: recovering the cluster");
    let mut recovery_interrupt = interrupt.clone();
    let recovery = tokio::select! {
        recovery = recovery::recover(
            &mut lab,
            &board,
            &outcome.undone,
            options.managers,
            options.recovery_timeout,
            &mut recovery_interrupt,
        ) => recovery,
        () = stopped(&mut interrupt) => {
            teardown.down();
            return Err(ChaosError::Interrupted);
        }
    };
    let final_reads = final_reads(options, &board, &recorder, &keys, &recovery).await;
    let replicas = if recovery.recovered() {
        replicas::check(&lab, options.recovery_timeout).await
    } else {
        replicas::ReplicaReport::default()
    };
    let services = services::check(
        &lab,
        services,
        options.recovery_timeout,
        &mut recovery_interrupt,
    )
    .await;
    // Reads that failed after a recovery that looked complete: say what broke since.
    let broke_after = if final_reads < keys.len() && recovery.recovered() {
        settle::agreement(&lab, options.managers).await.err()
    } else {
        None
    };
    let _ = stop_sampler.send(true);
    let _ = sampler.await;

    eprintln!("chaos: checking the history");
    let history = recorder.history();
    let verdict = {
        let history = history.clone();
        tokio::task::spawn_blocking(move || check(&history, &CheckConfig::default()))
            .await
            .map_err(|error| ChaosError::Task(format!("the checker: {error}")))??
    };
    let mut run = ChaosRun {
        setup: RunSetup {
            seed: options.seed,
            backend: options.backend.to_string(),
            managers: options.managers,
            workers: options.workers,
            clients: options.clients,
            keys,
            duration_ms: u64::try_from(options.duration.as_millis()).unwrap_or(u64::MAX),
            faults: options.faults.clone(),
        },
        verdict,
        faults: outcome.faults,
        notes: outcome.notes,
        workers: board.worker_report(),
        services,
        recovery,
        final_reads,
        replicas,
        unavailability: unavailability(
            &history,
            options.clients,
            workload_start_ns,
            workload_end_ns,
        ),
        teardown: None,
        history,
    };
    if let Some(problem) = broke_after {
        run.notes.push(format!(
            "after the recovery the cluster broke again: {problem}"
        ));
    }
    let logs = match save_logs {
        SaveLogs::Always(dir) => Some(dir),
        SaveLogs::OnFailure(dir) if !run.passed() => Some(dir),
        _ => None,
    };
    if let Some(dir) = logs {
        match copy_logs(&lab, dir) {
            Ok(()) => run
                .notes
                .push(format!("agent logs copied to {}", dir.display())),
            Err(problem) => run.notes.push(problem),
        }
    }
    drop(lab);
    run.teardown = teardown.down();
    Ok(run)
}

/// Reads every key through the managers, the leader first.
async fn final_reads(
    options: &ChaosOptions,
    board: &Board,
    recorder: &HistoryRecorder,
    keys: &[String],
    recovery: &Recovery,
) -> usize {
    let mut sockets = board.serving_managers();
    if let Some(leader) = recovery
        .leader
        .as_deref()
        .and_then(|name| board.index_of(name))
    {
        sockets.sort_by_key(|(index, _)| *index != leader);
    }
    let reader: ClientId = options.clients;
    workload::read_every_key(
        reader,
        keys,
        &sockets,
        recorder,
        options.op_timeout,
        FINAL_READS_TIMEOUT,
    )
    .await
}

/// The size of each node's disk when disk-full faults are on and can be made here (the local
/// backend, as root: each config dir becomes a tmpfs of this size); `None` otherwise.
fn small_disks(options: &ChaosOptions) -> Option<u64> {
    let possible =
        options.backend == crate::lab::BackendKind::Local && rustix::process::geteuid().is_root();
    (options.enabled(super::options::FaultKind::DiskFull) && possible).then_some(64)
}

fn validate(options: &ChaosOptions) -> Result<(), ChaosError> {
    let problem = if options.managers == 0 {
        Some("a chaos run needs at least one manager (--managers)")
    } else if options.clients == 0 {
        Some("a chaos run needs at least one client (--clients)")
    } else if options.keys == 0 {
        Some("a chaos run needs at least one key (--keys)")
    } else if options.duration.is_zero() {
        Some("a chaos run needs a duration above zero (--duration)")
    } else if options.op_timeout.is_zero() {
        Some("operations need a timeout above zero (--op-timeout-ms)")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ChaosError::InvalidArgument(problem.to_string())),
        None => Ok(()),
    }
}

/// Copies every node's log (those that exist) to `dir/<node>.log`.
fn copy_logs(lab: &Lab, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    for node in &lab.state().nodes {
        let to = dir.join(format!("{}.log", node.name));
        match std::fs::copy(&node.log_path, &to) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(format!(
                    "cannot copy {} to {}: {error}",
                    node.log_path.display(),
                    to.display()
                ));
            }
        }
    }
    Ok(())
}

/// Takes the testnet in a state dir down — from its state file, so it works whoever holds the
/// [`Lab`] — once: explicitly, or when dropped on an early return.
struct Teardown {
    dir: PathBuf,
    armed: bool,
}

impl Teardown {
    fn new(dir: &Path) -> Teardown {
        Teardown {
            dir: dir.to_path_buf(),
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }

    /// Takes the testnet down; returns what could not be removed.
    fn down(&mut self) -> Option<String> {
        if !self.armed {
            return None;
        }
        self.armed = false;
        let dir = self.dir.clone();
        let outcome = blocking(move || match Lab::open(&dir) {
            Ok(lab) => lab.down(),
            Err(LabError::NoLab { .. }) => Ok(()),
            Err(error) => Err(error),
        });
        match outcome {
            Ok(()) => None,
            Err(error) => {
                let problem = error.to_string();
                eprintln!("chaos: {problem}");
                Some(problem)
            }
        }
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.down();
    }
}
