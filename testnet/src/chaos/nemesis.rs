//! The nemesis: a seeded schedule of faults, injected one at a time into the running testnet.
//!
//! Each round waits a short gap, picks a fault kind from the enabled ones and a target (the
//! leader, a random manager or a random worker), applies the fault, holds it, undoes it, and
//! then waits until the cluster is whole again (see [`super::settle`]) before the next round.
//! One fault at a time, each undone before the next, keeps the cluster able to form a quorum:
//! the run checks what the cluster promises while it can keep its promises, not what happens
//! when it cannot.
//!
//! For a worker that is killed, paused or cut off, the hold lasts until the leader's `node ls`
//! shows it `down` (up to `worker_down_timeout`, after which that is a worker violation), and
//! after the fault it must be `ready` again; see [`super::workers`].
//!
//! Every random choice is drawn from the seeded RNG in the same order whatever the cluster
//! does, so the same seed gives the same schedule of kinds, targets and hold times; only what
//! "the leader" is at the moment, and so which node that target names, depends on timing.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use symphony_ctl::proto::Role;
use tokio::sync::watch;
use tokio::time::Instant;

use super::board::Board;
use super::membership::{self, Undone};
use super::options::FaultKind;
use super::settle::wait_whole;
use super::tasks::{blocking, off_runtime, pause, stopped};
use super::workers::WorkerViolation;
use crate::lab::{Lab, LabError, NodeRecord};

/// The quiet gap before each fault, in milliseconds.
const GAP_MS: (u64, u64) = (1_000, 3_000);
/// How long a fault on a manager is held, in milliseconds.
const HOLD_MS: (u64, u64) = (2_000, 5_000);
/// How much longer a worker fault is held once the worker was seen down.
const WORKER_EXTRA_MS: (u64, u64) = (500, 1_500);
/// How long a clean stop (SIGTERM) may take before the node is killed.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long after the cluster is whole a recovered worker may take to be seen ready by the
/// sampler (which samples every 250 ms, so this is generous).
const READY_SEEN_TIMEOUT: Duration = Duration::from_secs(5);

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// What was done, e.g. `kill manager-2 (leader)`.
    pub action: String,
    /// Milliseconds on the history's clock.
    pub start_ms: u64,
    /// When the fault was undone.
    pub end_ms: u64,
    /// How long the cluster took to be whole again after the fault was undone.
    pub settled_ms: Option<u64>,
    /// The run ended before the cluster was whole again (the final recovery took over).
    pub cut_short: bool,
    /// Anything that went wrong injecting, undoing or recovering.
    pub problems: Vec<String>,
}

/// What the nemesis leaves behind.
#[derive(Debug)]
pub struct NemesisOutcome {
    pub lab: Lab,
    pub faults: Vec<FaultRecord>,
    /// Things worth knowing that are not faults (e.g. partitions not available here).
    pub notes: Vec<String>,
    pub undone: Vec<Undone>,
}

/// Timings and limits of the nemesis.
#[derive(Debug, Clone)]
pub struct NemesisOptions {
    pub seed: u64,
    pub kinds: Vec<FaultKind>,
    pub managers: usize,
    pub worker_down_timeout: Duration,
    pub recovery_timeout: Duration,
}

/// See the module docs.
#[derive(Debug)]
pub struct Nemesis {
    lab: Lab,
    board: Arc<Board>,
    rng: StdRng,
    options: NemesisOptions,
    faults: Vec<FaultRecord>,
    notes: Vec<String>,
    undone: Vec<Undone>,
    /// Why partitions cannot be made here, once a try showed it.
    no_partitions: Option<String>,
}

/// A fault being applied: what the record will say.
struct Current {
    action: String,
    start_ns: u64,
    problems: Vec<String>,
}

impl Nemesis {
    pub fn new(lab: Lab, board: Arc<Board>, options: NemesisOptions) -> Nemesis {
        let kinds: Vec<FaultKind> = options
            .kinds
            .iter()
            .copied()
            // A manager leaving three leaves two: the fewest that still form a quorum.
            .filter(|kind| *kind != FaultKind::Membership || options.managers >= 3)
            .collect();
        let mut notes = Vec::new();
        if kinds.len() < options.kinds.len() {
            notes.push("membership faults need at least 3 managers; skipped".to_string());
        }
        let local = lab.state().backend == crate::lab::BackendKind::Local;
        let mut kinds = kinds;
        if kinds.contains(&FaultKind::DiskFull) && lab.state().disk_mb.is_none() {
            kinds.retain(|kind| *kind != FaultKind::DiskFull);
            notes.push(
                "disk-full faults need small disks (the local backend, as root); skipped"
                    .to_string(),
            );
        }
        if kinds.contains(&FaultKind::Clock) && (!local || libfaketime().is_none()) {
            kinds.retain(|kind| *kind != FaultKind::Clock);
            notes.push(
                "clock faults need the local backend and libfaketime (apt-get install faketime); skipped"
                    .to_string(),
            );
        }
        Nemesis {
            lab,
            board,
            rng: StdRng::seed_from_u64(options.seed ^ 0x6e65_6d65_7369_7321),
            options: NemesisOptions { kinds, ..options },
            faults: Vec::new(),
            notes,
            undone: Vec::new(),
            no_partitions: None,
        }
    }

    /// Injects faults until `stop`; a fault in progress is undone at once when it comes.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> NemesisOutcome {
        loop {
            let gap = self.draw_ms(GAP_MS);
            if pause(&mut stop, gap).await {
                break;
            }
            let kinds: Vec<FaultKind> = self
                .options
                .kinds
                .iter()
                .copied()
                .filter(|kind| *kind != FaultKind::Partition || self.no_partitions.is_none())
                .collect();
            let draw = self.rng.random_range(0..kinds.len().max(1));
            let Some(kind) = kinds.get(draw).copied() else {
                // No faults: only the workload runs.
                stopped(&mut stop).await;
                break;
            };
            if let Some(record) = self.inject(kind, &mut stop).await {
                self.faults.push(record);
            }
            if *stop.borrow() {
                break;
            }
        }
        NemesisOutcome {
            lab: self.lab,
            faults: self.faults,
            notes: self.notes,
            undone: self.undone,
        }
    }

    /// One round: apply, hold, undo, wait for the cluster. `None` if nothing was injected.
    async fn inject(
        &mut self,
        kind: FaultKind,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<FaultRecord> {
        let leader = off_runtime(self.lab.status()).await.leader;
        // Drawn every round, whatever the kind, so later rounds do not depend on this one.
        let target_roll = self.rng.random_range(0..100u32);
        let index_roll = self.rng.random::<u64>();
        let second_roll = self.rng.random::<u64>();
        let hold = self.draw_ms(HOLD_MS);
        let extra = self.draw_ms(WORKER_EXTRA_MS);
        let mode = self.rng.random_bool(0.5);
        let target = pick_target(
            &self.lab.state().nodes,
            target_roll,
            index_roll,
            leader.as_deref(),
            kind,
        );
        let mut current = Current {
            action: String::new(),
            start_ns: self.board.now_ns(),
            problems: Vec::new(),
        };
        let touched: Vec<String> = match kind {
            FaultKind::Kill => {
                current.action = format!("kill {}", describe(&target, leader.as_deref()));
                self.kill(&target, hold, extra, &mut current, stop).await;
                vec![target.clone()]
            }
            FaultKind::Pause => {
                current.action = format!("pause {}", describe(&target, leader.as_deref()));
                self.pause(&target, hold, extra, &mut current, stop).await;
                vec![target.clone()]
            }
            FaultKind::Restart => {
                current.action = format!("restart {}", describe(&target, leader.as_deref()));
                self.restart(&target, &mut current).await;
                vec![target.clone()]
            }
            FaultKind::Partition => {
                let sides = pick_sides(
                    &self.lab.state().nodes,
                    target_roll,
                    index_roll,
                    second_roll,
                    leader.as_deref(),
                    &target,
                );
                current.action = format!(
                    "partition {}",
                    sides
                        .iter()
                        .map(|side| side
                            .iter()
                            .map(|name| describe(name, leader.as_deref()))
                            .collect::<Vec<_>>()
                            .join(", "))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
                match self
                    .partition(&sides, hold, extra, &mut current, stop)
                    .await
                {
                    Some(touched) => touched,
                    None => return None,
                }
            }
            FaultKind::DiskFull => {
                current.action =
                    format!("fill the disk of {}", describe(&target, leader.as_deref()));
                self.disk_full(&target, hold, &mut current, stop).await;
                vec![target.clone()]
            }
            FaultKind::Clock => {
                let offset = if mode { "-1h" } else { "+1d" };
                current.action = format!(
                    "restart {} with its clock {}",
                    describe(&target, leader.as_deref()),
                    if mode {
                        "an hour behind"
                    } else {
                        "a day ahead"
                    }
                );
                self.clock(&target, offset, hold, &mut current, stop).await;
                vec![target.clone()]
            }
            FaultKind::SlowDisk => {
                current.action = format!(
                    "slow the disk of {} (50 ms more per fsync)",
                    describe(&target, leader.as_deref())
                );
                self.failpoint(&target, "store.fsync=sleep(50)", hold, &mut current, stop)
                    .await;
                vec![target.clone()]
            }
            FaultKind::Failpoint => {
                let point =
                    FAILPOINTS[usize::try_from(second_roll % FAILPOINTS.len() as u64).unwrap_or(0)];
                current.action = format!(
                    "failpoint {point} on {}",
                    describe(&target, leader.as_deref())
                );
                self.failpoint(&target, point, hold, &mut current, stop)
                    .await;
                vec![target.clone()]
            }
            FaultKind::CaRotate => {
                current.action = format!(
                    "rotate the cluster's root CA through {}",
                    describe(&target, leader.as_deref())
                );
                // No node is faulted: every node must stay ready and serving through it.
                if let Err(problem) = super::ca_rotation::rotate(&self.lab, &target, stop).await {
                    current.problems.push(problem);
                }
                Vec::new()
            }
            FaultKind::Membership => {
                if mode {
                    current.action = format!(
                        "{} leaves the cluster and joins again",
                        describe(&target, leader.as_deref())
                    );
                    self.leave_and_join(&target, hold, &mut current, stop).await;
                } else {
                    current.action = format!(
                        "demote {} and promote it again",
                        describe(&target, leader.as_deref())
                    );
                    self.demote_and_promote(&target, hold, &mut current, stop)
                        .await;
                }
                vec![target.clone()]
            }
        };
        let end_ns = self.board.now_ns();
        let settled = wait_whole(
            &self.lab,
            self.options.managers,
            self.options.recovery_timeout,
            stop,
        )
        .await;
        let settled_ms = match settled {
            Ok((took, _)) => Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
            Err(missing) => {
                if !*stop.borrow() {
                    current.problems.push(missing);
                }
                None
            }
        };
        if !*stop.borrow() {
            self.check_ready(&touched, &current.action, end_ns, stop)
                .await;
        }
        Some(FaultRecord {
            kind,
            action: current.action,
            start_ms: current.start_ns / 1_000_000,
            end_ms: end_ns / 1_000_000,
            settled_ms,
            cut_short: *stop.borrow(),
            problems: current.problems,
        })
    }

    async fn kill(
        &mut self,
        target: &str,
        hold: Duration,
        extra: Duration,
        current: &mut Current,
        stop: &mut watch::Receiver<bool>,
    ) {
        self.board.set_serving(target, false);
        self.board.fault_begins(target, &current.action);
        let killed = blocking(|| self.lab.kill(target));
        if let Err(error) = killed {
            current.problems.push(error.to_string());
        }
        self.hold(&[target], true, hold, extra, current, stop).await;
        self.start_again(target, current).await;
    }

    async fn pause(
        &mut self,
        target: &str,
        hold: Duration,
        extra: Duration,
        current: &mut Current,
        stop: &mut watch::Receiver<bool>,
    ) {
        self.board.fault_begins(target, &current.action);
        if let Err(error) = blocking(|| self.lab.pause(target)) {
            current.problems.push(error.to_string());
        }
        self.hold(&[target], true, hold, extra, current, stop).await;
        if let Err(error) = blocking(|| self.lab.resume(target)) {
            current.problems.push(error.to_string());
        }
        self.board.fault_ends(target);
    }

    /// A clean stop (SIGTERM, as `systemctl stop` would) and a start right after.
    async fn restart(&mut self, target: &str, current: &mut Current) {
        self.board.set_serving(target, false);
        self.board.fault_begins(target, &current.action);
        if let Err(problem) = self.terminate(target).await {
            current.problems.push(problem);
        }
        self.start_again(target, current).await;
    }

    /// Cuts the links between `sides`; `None` (nothing injected) if partitions cannot be made
    /// here. Returns the workers the partition touched.
    async fn partition(
        &mut self,
        sides: &[Vec<String>],
        hold: Duration,
        extra: Duration,
        current: &mut Current,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Vec<String>> {
        let mut words = Vec::new();
        for (index, side) in sides.iter().enumerate() {
            if index > 0 {
                words.push("/".to_string());
            }
            words.push(side.join(","));
        }
        // Workers cut off from the side that keeps the quorum: the leader's side when the
        // leader is isolated alone does not count (it loses its leadership).
        let majority_side = sides
            .iter()
            .max_by_key(|side| {
                side.iter()
                    .filter(|name| {
                        self.lab
                            .node(name)
                            .is_ok_and(|node| node.role == Role::Manager)
                    })
                    .count()
            })
            .cloned()
            .unwrap_or_default();
        let cut_off: Vec<String> = sides
            .iter()
            .flatten()
            .filter(|name| self.board.is_worker(name) && !majority_side.contains(name))
            .cloned()
            .collect();
        match blocking(|| self.lab.partition(&words)) {
            Ok(_) => {}
            Err(LabError::PartitionUnavailable { reason }) => {
                self.notes
                    .push(format!("partition faults skipped: {reason}"));
                self.no_partitions = Some(reason);
                return None;
            }
            Err(error) => {
                current.problems.push(error.to_string());
                return Some(Vec::new());
            }
        }
        // Only a worker cut off alone must be seen down: one on a minority side with a
        // manager may or may not be, depending on the timings.
        let isolated = sides
            .iter()
            .any(|side| side.len() == 1 && cut_off.contains(&side[0]));
        for worker in &cut_off {
            self.board.fault_begins(worker, &current.action);
        }
        let held: Vec<&str> = cut_off.iter().map(String::as_str).collect();
        self.hold(&held, isolated, hold, extra, current, stop).await;
        if let Err(error) = blocking(|| self.lab.heal()) {
            current.problems.push(error.to_string());
        }
        for worker in &cut_off {
            self.board.fault_ends(worker);
        }
        Some(cut_off)
    }

    /// Fills `target`'s small disk, holds, frees it. The node must heal by itself.
    async fn disk_full(
        &mut self,
        target: &str,
        hold: Duration,
        current: &mut Current,
        stop: &mut watch::Receiver<bool>,
    ) {
        if let Err(error) = blocking(|| self.lab.fill_disk(target)) {
            current.problems.push(error.to_string());
        }
        pause(stop, hold).await;
        if let Err(error) = blocking(|| self.lab.free_disk(target)) {
            current.problems.push(error.to_string());
        }
    }

    /// Restarts `target` with its wall clock shifted by `offset`, holds, and restarts it with
    /// the clock right.
    async fn clock(
        &mut self,
        target: &str,
        offset: &str,
        hold: Duration,
        current: &mut Current,
        stop: &mut watch::Receiver<bool>,
    ) {
        let Some(library) = libfaketime() else {
            current
                .problems
                .push("libfaketime is not installed".to_string());
            return;
        };
        let shifted = std::collections::BTreeMap::from([
            ("LD_PRELOAD".to_string(), library),
            ("FAKETIME".to_string(), offset.to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
        ]);
        if let Err(error) = self.lab.set_env(target, shifted) {
            current.problems.push(error.to_string());
            return;
        }
        self.restart(target, current).await;
        pause(stop, hold).await;
        if let Err(error) = self.lab.set_env(target, std::collections::BTreeMap::new()) {
            current.problems.push(error.to_string());
        }
        self.restart(target, current).await;
    }

    /// Sets a failpoint on `target`, holds, clears it. A failpoint that panics takes the agent
    /// down: it is started again, as after a kill.
    async fn failpoint(
        &mut self,
        target: &str,
        spec: &str,
        hold: Duration,
        current: &mut Current,
        stop: &mut watch::Receiver<bool>,
    ) {
        if let Err(error) = self.lab.set_failpoints(target, spec) {
            current.problems.push(error.to_string());
            return;
        }
        pause(stop, hold).await;
        if let Err(error) = self.lab.set_failpoints(target, "") {
            current.problems.push(error.to_string());
        }
        let gone = self
            .lab
            .node(target)
            .is_ok_and(|node| self.lab.probe(node) == crate::lab::ProcessState::Gone);
        if gone {
            self.board.set_serving(target, false);
            self.start_again(target, current).await;
        }
    }

    async fn leave_and_join(
        &mut self,
        target: &str,
        hold: Duration,
        current: &mut Current,
        stop: &mut watch::Receiver<bool>,
    ) {
        self.board.set_serving(target, false);
        if let Err(problem) = membership::leave(&self.lab, target).await {
            current.problems.push(problem);
            self.board.set_serving(target, true);
            return;
        }
        pause(stop, hold).await;
        match membership::join_again(&self.lab, &self.board, target).await {
            Ok(()) => self.board.set_serving(target, true),
            Err(problem) => {
                current.problems.push(problem);
                self.undone.push(Undone::Rejoin(target.to_string()));
            }
        }
    }

    async fn demote_and_promote(
        &mut self,
        target: &str,
        hold: Duration,
        current: &mut Current,
        stop: &mut watch::Receiver<bool>,
    ) {
        if let Err(problem) = membership::demote(&self.lab, &self.board, target).await {
            current.problems.push(problem);
            return;
        }
        pause(stop, hold).await;
        if let Err(problem) = membership::promote(&self.lab, &self.board, target).await {
            current.problems.push(problem);
            self.undone.push(Undone::Promote(target.to_string()));
        }
    }

    /// Holds the fault: until each worker in `workers` is seen down (when `expect_down`) and
    /// then `extra` more, or `hold` when no worker is involved. Ends early if the run stops.
    async fn hold(
        &mut self,
        workers: &[&str],
        expect_down: bool,
        hold: Duration,
        extra: Duration,
        current: &mut Current,
        stop: &mut watch::Receiver<bool>,
    ) {
        let watched: Vec<&str> = workers
            .iter()
            .copied()
            .filter(|name| self.board.is_worker(name))
            .collect();
        if watched.is_empty() || !expect_down {
            pause(stop, hold).await;
            return;
        }
        let started = Instant::now();
        let deadline = started + self.options.worker_down_timeout;
        let leader_changes = self.board.leader_changes();
        for worker in watched {
            loop {
                if self.board.worker_down_seen(worker).is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    let waited_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let changes = self.board.leader_changes() - leader_changes;
                    if changes > 0 {
                        // A new leader marks nothing down until its view is a few seconds
                        // old (the liveness reconciler's warm-up): leadership churn, not the
                        // worker check, is what this run saw.
                        let note = format!(
                            "{worker} was not marked down within {:.1} s, but the leader changed {changes} time(s) meanwhile; not counted",
                            waited_ms as f64 / 1000.0
                        );
                        current.problems.push(note.clone());
                        self.board.worker_inconclusive(note);
                    } else {
                        self.board.worker_violation(WorkerViolation::NotMarkedDown {
                            worker: worker.to_string(),
                            fault: current.action.clone(),
                            waited_ms,
                        });
                        current
                            .problems
                            .push(format!("{worker} was not marked down in time"));
                    }
                    break;
                }
                if pause(stop, Duration::from_millis(50)).await {
                    return;
                }
            }
        }
        pause(stop, extra).await;
    }

    /// After the cluster is whole: each touched worker must have been seen ready again.
    async fn check_ready(
        &mut self,
        touched: &[String],
        action: &str,
        end_ns: u64,
        stop: &mut watch::Receiver<bool>,
    ) {
        for name in touched.iter().filter(|name| self.board.is_worker(name)) {
            let started = Instant::now();
            while !self.board.worker_ready_seen(name) {
                if started.elapsed() >= READY_SEEN_TIMEOUT {
                    let since_end = self.board.now_ns().saturating_sub(end_ns);
                    self.board.worker_violation(WorkerViolation::NotReady {
                        worker: name.clone(),
                        fault: action.to_string(),
                        waited_ms: since_end / 1_000_000,
                    });
                    break;
                }
                if pause(stop, Duration::from_millis(50)).await {
                    return;
                }
            }
        }
    }

    /// Starts `target` again after a kill or a clean stop, and puts it back in service.
    async fn start_again(&mut self, target: &str, current: &mut Current) {
        if let Err(error) = off_runtime(self.lab.restart(target)).await {
            current.problems.push(error.to_string());
        }
        self.board.set_serving(target, true);
        self.board.fault_ends(target);
    }

    /// SIGTERM to `target` and wait until it exited; SIGKILL if it does not in time.
    async fn terminate(&mut self, target: &str) -> Result<(), String> {
        off_runtime(self.lab.terminate(target, TERMINATE_TIMEOUT))
            .await
            .map_err(|error| error.to_string())
    }

    fn draw_ms(&mut self, (low, high): (u64, u64)) -> Duration {
        Duration::from_millis(self.rng.random_range(low..=high))
    }
}

/// The failpoints a failpoint fault picks from: each place that can fail, and a panic in the
/// store's writer (the agent dies and is started again).
const FAILPOINTS: [&str; 7] = [
    "store.fsync=error",
    "store.commit=error",
    "store.commit=enospc",
    "snapshot.build=error",
    "snapshot.send=error",
    "snapshot.install=error",
    "store.fsync=panic",
];

/// Where libfaketime is, if it is installed.
fn libfaketime() -> Option<String> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|path| std::path::Path::new(path).exists())
    .map(str::to_string)
}

/// The node a fault of `kind` hits: the leader (about a third of the time), a random
/// manager, or a random worker (never for membership faults).
fn pick_target(
    nodes: &[NodeRecord],
    roll: u32,
    index_roll: u64,
    leader: Option<&str>,
    kind: FaultKind,
) -> String {
    let managers: Vec<&str> = nodes
        .iter()
        .filter(|node| node.role == Role::Manager)
        .map(|node| node.name.as_str())
        .collect();
    let workers: Vec<&str> = nodes
        .iter()
        .filter(|node| node.role == Role::Worker)
        .map(|node| node.name.as_str())
        .collect();
    let pick = |from: &[&str]| {
        from.get(usize::try_from(index_roll % from.len().max(1) as u64).unwrap_or(0))
            .map(|name| name.to_string())
    };
    // Faults of the Raft store and of membership concern managers only.
    let worker_allowed = !matches!(
        kind,
        FaultKind::Membership
            | FaultKind::DiskFull
            | FaultKind::SlowDisk
            | FaultKind::Failpoint
            | FaultKind::CaRotate
    ) && !workers.is_empty();
    let chosen = match (roll, leader) {
        (0..35, Some(leader)) => Some(leader.to_string()),
        (70.., _) if worker_allowed => pick(&workers),
        _ => pick(&managers),
    };
    chosen.unwrap_or_else(|| "manager-1".to_string())
}

/// The sides of a partition: mostly `target` against everyone else; now and then a split of
/// the managers into a minority (with the leader half of the time, and sometimes a worker)
/// and a majority with the other workers.
fn pick_sides(
    nodes: &[NodeRecord],
    roll: u32,
    index_roll: u64,
    second_roll: u64,
    leader: Option<&str>,
    target: &str,
) -> Vec<Vec<String>> {
    let managers: Vec<String> = nodes
        .iter()
        .filter(|node| node.role == Role::Manager)
        .map(|node| node.name.clone())
        .collect();
    let workers: Vec<String> = nodes
        .iter()
        .filter(|node| node.role == Role::Worker)
        .map(|node| node.name.clone())
        .collect();
    let split = roll.is_multiple_of(4) && managers.len() >= 3;
    if !split {
        let rest: Vec<String> = nodes
            .iter()
            .map(|node| node.name.clone())
            .filter(|name| name != target)
            .collect();
        return vec![vec![target.to_string()], rest];
    }
    let minority_size = (managers.len() - 1) / 2;
    let mut pool: Vec<String> = managers.clone();
    let mut minority: Vec<String> = Vec::new();
    if let Some(leader) = leader
        && index_roll.is_multiple_of(2)
    {
        pool.retain(|name| name != leader);
        minority.push(leader.to_string());
    }
    let mut pick = second_roll;
    while minority.len() < minority_size && !pool.is_empty() {
        let at = usize::try_from(pick % pool.len() as u64).unwrap_or(0);
        minority.push(pool.remove(at));
        pick /= 7;
    }
    if !workers.is_empty() && (index_roll / 2).is_multiple_of(2) {
        let at = usize::try_from((index_roll / 4) % workers.len() as u64).unwrap_or(0);
        minority.push(workers[at].clone());
    }
    let majority: Vec<String> = nodes
        .iter()
        .map(|node| node.name.clone())
        .filter(|name| !minority.contains(name))
        .collect();
    vec![minority, majority]
}

/// SIGTERM to a local agent process.
/// `manager-2 (leader)` or `worker-1`.
fn describe(name: &str, leader: Option<&str>) -> String {
    if leader == Some(name) {
        format!("{name} (leader)")
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;
    use crate::lab::plan::plan;
    use crate::lab::{Addressing, Subnet};

    fn nodes() -> Vec<NodeRecord> {
        plan(Path::new("/x"), Addressing::Subnet, Subnet::DEFAULT, 3, 2).unwrap()
    }

    #[test]
    fn targets_are_the_leader_a_manager_or_a_worker() {
        let nodes = nodes();
        let leader = Some("manager-2");
        let cases = [
            (10, 0, leader, FaultKind::Kill, "manager-2"),
            (50, 2, leader, FaultKind::Kill, "manager-3"),
            (80, 1, leader, FaultKind::Pause, "worker-2"),
            // Membership faults only ever hit managers; without a leader a manager is picked.
            (80, 1, leader, FaultKind::Membership, "manager-2"),
            (10, 0, None, FaultKind::Kill, "manager-1"),
        ];
        for (roll, index_roll, leader, kind, expected) in cases {
            assert_eq!(
                pick_target(&nodes, roll, index_roll, leader, kind),
                expected,
                "roll {roll}, index roll {index_roll}, leader {leader:?}, {kind}"
            );
        }
    }

    #[test]
    fn partitions_isolate_one_node_or_split_off_a_minority() {
        let nodes = nodes();
        let sides = pick_sides(&nodes, 1, 0, 0, Some("manager-1"), "worker-1");
        assert_eq!(sides[0], ["worker-1"]);
        assert_eq!(sides[1].len(), 4);
        // A split: the leader (index_roll even) and a worker (index_roll / 2 even) against the
        // rest, which keeps the majority of the managers.
        let sides = pick_sides(&nodes, 4, 0, 0, Some("manager-1"), "manager-3");
        assert_eq!(sides[0], ["manager-1", "worker-1"]);
        assert_eq!(sides[1], ["manager-2", "manager-3", "worker-2"]);
        let sides = pick_sides(&nodes, 8, 3, 1, Some("manager-1"), "manager-3");
        assert_eq!(sides[0], ["manager-2"]);
        assert_eq!(sides[1].len(), 4);
    }
}
