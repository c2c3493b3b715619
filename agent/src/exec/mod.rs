//! The executor: what runs tasks on this node, manager or worker.
//!
//! One task owns the node's running tasks and reconciles them with what the node is assigned,
//! level-triggered: a task assigned to run and not running is started, one assigned to stop
//! (or no longer assigned) is stopped, and every change of state is reported. A slot never runs
//! twice here: a task waits until another task of its service and slot has stopped. A task of
//! an `--on-isolation stop` service is stopped when the node has heard no manager for the
//! isolation lease.
//!
//! - [`feed`]: where assignments come from (a manager's stream, or on a manager its own
//!   replica) and when the node last had contact with the cluster;
//! - [`report`]: sending what happened to the leader, in order, until it is recorded;
//! - [`store`]: the tasks' directories, which make a restarted agent adopt what still runs;
//! - [`process`] and [`shim`]: the process driver;
//! - [`docker`]: the docker driver (a container of the node's engine per task, adopted by its
//!   labels after a restart), and `containers.rs` the executor's side of it;
//! - [`health`]: health checks, whose failure fails the task;
//! - [`lease`]: the isolation lease, which the shim holds too, so that a task of a killed or
//!   frozen agent stops on time;
//! - [`logs`]: reading a task's output for `service logs`.

mod containers;
pub mod docker;
pub mod feed;
pub mod health;
pub mod lease;
pub mod logs;
pub mod process;
pub mod report;
pub mod shim;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use symphony_consensus::{DesiredState, Driver, OnIsolation, TaskReport, TaskState};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::feed::Assigned;
use self::store::{ExitInfo, Store, TaskFile};
use crate::remote::proto::Assignment;

/// How often the executor looks at its tasks when nothing happens (adopted shims, stop graces,
/// the isolation lease).
const TICK: Duration = Duration::from_millis(500);
/// Ended tasks whose directories (and logs) are kept for `service logs`.
const KEEP_ENDED: usize = 50;

/// The executor's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_dir: PathBuf,
    /// Each task's log is kept under this many bytes (twice, with the rotated file).
    pub max_log_bytes: u64,
    pub isolation_lease: Duration,
    /// This node's id: docker tasks' containers carry it.
    pub node_id: u64,
    /// The node's Docker engine, if one answered at start-up; docker tasks need it.
    pub docker: Option<docker::Engine>,
}

/// One task here.
struct Local {
    file: TaskFile,
    /// When SIGTERM went to the task's group; SIGKILL follows after its grace.
    stopping: Option<Instant>,
    killed: bool,
    /// A docker task's watch over its container (see [`docker::task`]).
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Local {
    fn new(file: TaskFile) -> Local {
        Local {
            file,
            stopping: None,
            killed: false,
            watcher: None,
        }
    }

    fn is_docker(&self) -> bool {
        self.file.assignment.spec.driver == Driver::Docker
    }
}

/// Runs until `shutdown`. Tasks keep running when the agent stops: a restarted agent adopts
/// them.
pub async fn run(
    settings: Settings,
    mut assigned: watch::Receiver<Assigned>,
    contact: watch::Receiver<Option<Instant>>,
    reports: mpsc::UnboundedSender<TaskReport>,
    shutdown: CancellationToken,
) {
    let (exited, mut exits) = mpsc::unbounded_channel();
    let (health_results, mut checked) = mpsc::unbounded_channel();
    let (image_verdicts, mut verdicts) = mpsc::unbounded_channel();
    // The containers of this node, for adoption; unknown without an engine.
    let containers = match &settings.docker {
        Some(engine) => match engine.list_own(settings.node_id).await {
            Ok(listed) => Some(listed),
            Err(error) => {
                tracing::warn!(%error, "cannot list this node's containers; its docker tasks are not adopted");
                None
            }
        },
        None => None,
    };
    let mut executor = Executor {
        store: Store::new(&settings.config_dir),
        settings,
        tasks: BTreeMap::new(),
        reports,
        exited,
        started: Instant::now(),
        lease_deadline: None,
        checks: health::Checks::default(),
        health_results,
        image_verdicts,
    };
    executor.adopt(containers.as_deref());
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut epoch = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = assigned.changed() => if changed.is_err() { return },
            Some(_) = exits.recv() => {}
            Some(outcome) = checked.recv() => {
                executor.health_checked(&outcome);
            }
            Some(verdict) = verdicts.recv() => {
                executor.image_health(&verdict);
            }
            _ = ticks.tick() => {}
        }
        let current = assigned.borrow().clone();
        if current.epoch != epoch {
            epoch = current.epoch;
            executor.report_all();
        }
        let last_contact = *contact.borrow();
        executor.reconcile(&current, last_contact);
    }
}

struct Executor {
    store: Store,
    settings: Settings,
    tasks: BTreeMap<u64, Local>,
    reports: mpsc::UnboundedSender<TaskReport>,
    /// Told the id of a task whose shim this agent started has exited.
    exited: mpsc::UnboundedSender<u64>,
    started: Instant,
    /// The isolation lease's deadline as of the last contact (`CLOCK_BOOTTIME` ms).
    lease_deadline: Option<u64>,
    /// The health checks of running tasks, and where their runs report.
    checks: health::Checks,
    health_results: mpsc::UnboundedSender<health::Outcome>,
    /// Where docker tasks' watchers send the verdicts of their images' health checks.
    image_verdicts: mpsc::UnboundedSender<docker::task::Verdict>,
}

impl Executor {
    /// Takes over the tasks a previous run of the agent left: what ended meanwhile is
    /// reported, what still runs is watched again, what lost its shim is stopped.
    fn adopt(&mut self, containers: Option<&[docker::engine::Listed]>) {
        for file in self.store.load_all() {
            let id = file.assignment.task_id;
            let mut local = Local::new(file);
            if !local.file.state.is_terminal() && local.is_docker() {
                self.adopt_container(&mut local, containers);
            } else if !local.file.state.is_terminal() {
                match local.file.shim {
                    Some(shim) if process::shim_alive(&shim) => {
                        tracing::info!(task = id, pid = shim.pid, "adopted a running task");
                    }
                    Some(_) if self.store.exit(id).is_some() => {}
                    Some(_) => {
                        // No shim and no recorded exit: whatever is left of the task is
                        // stopped, and it counts as failed.
                        if let Some(child) = self.store.child(id) {
                            process::kill(child.pid);
                        }
                        self.end(&mut local, TaskState::Failed, None, Some("the task's supervisor ended while the agent was away; it was stopped".into()));
                    }
                    None if local.file.state >= TaskState::Starting => {
                        self.end(
                            &mut local,
                            TaskState::Failed,
                            None,
                            Some("the agent stopped while starting it".into()),
                        );
                    }
                    None => {}
                }
            }
            self.tasks.insert(id, local);
        }
        self.sweep_containers(containers);
        self.prune();
    }

    fn reconcile(&mut self, assigned: &Assigned, last_contact: Option<Instant>) {
        // Ended shims first: their slots free up for what waits.
        let ids: Vec<u64> = self.tasks.keys().copied().collect();
        for id in &ids {
            self.watch_one(*id);
        }
        let isolated = self.isolated(last_contact);
        self.hold_leases(last_contact);
        let Some(wanted) = &assigned.tasks else {
            // No full set yet (just started, or no manager answered): change nothing but what
            // isolation demands.
            self.stop_isolated(isolated);
            return;
        };
        for assignment in wanted.values() {
            let id = assignment.task_id;
            if !self.tasks.contains_key(&id) {
                let mut local = Local::new(TaskFile {
                    assignment: assignment.clone(),
                    state: TaskState::Assigned,
                    shim: None,
                    stop_requested: false,
                    exit_code: None,
                    error: None,
                    ended_at_ms: None,
                    health: None,
                    unhealthy: false,
                });
                self.advance(&mut local, TaskState::Accepted);
                self.tasks.insert(id, local);
            }
            if let Some(local) = self.tasks.get_mut(&id) {
                local.file.assignment.desired = assignment.desired;
            }
        }
        // What is no longer assigned, or assigned to stop, stops.
        for id in &ids {
            let stop = wanted
                .get(id)
                .is_none_or(|assignment| assignment.desired == DesiredState::Shutdown);
            if stop {
                self.stop(*id, None);
            }
        }
        self.stop_isolated(isolated);
        self.run_checks();
        // Start what may start, oldest first.
        let busy: BTreeSet<(String, Option<u32>)> = self
            .tasks
            .values()
            .filter(|local| {
                local.file.state >= TaskState::Starting && !local.file.state.is_terminal()
            })
            .map(|local| slot_of(&local.file.assignment))
            .collect();
        let mut busy = busy;
        let startable: Vec<u64> = self
            .tasks
            .values()
            .filter(|local| local.file.state == TaskState::Accepted && !local.file.stop_requested)
            .filter(|local| {
                wanted
                    .get(&local.file.assignment.task_id)
                    .is_some_and(feed::wants_running)
            })
            .map(|local| local.file.assignment.task_id)
            .collect();
        for id in startable {
            let Some(local) = self.tasks.get(&id) else {
                continue;
            };
            let assignment = local.file.assignment.clone();
            // Never started without a lease to run under.
            if assignment.spec.on_isolation == OnIsolation::Stop
                && (isolated || self.lease_deadline.is_none())
            {
                continue;
            }
            if !busy.insert(slot_of(&assignment)) {
                continue;
            }
            self.start(id);
        }
        self.prune();
    }

    /// Starts the health checks that are due.
    fn run_checks(&mut self) {
        let now = Instant::now();
        let tasks = &self.tasks;
        self.checks.retain(|id| {
            tasks
                .get(&id)
                .is_some_and(|local| local.file.state == TaskState::Running)
        });
        for local in self.tasks.values() {
            if local.file.state != TaskState::Running || local.file.stop_requested {
                continue;
            }
            let id = local.file.assignment.task_id;
            let probe = if local.is_docker() {
                let Some(engine) = self.settings.docker.clone() else {
                    continue;
                };
                health::Probe::Docker {
                    engine,
                    container: docker::spec::container_name(
                        &local.file.assignment,
                        self.settings.node_id,
                    ),
                }
            } else {
                health::Probe::Process(self.store.task_dir(id))
            };
            self.checks
                .run_if_due(&local.file.assignment, probe, &self.health_results, now);
        }
    }

    /// A health check finished: a new verdict is reported; an unhealthy task is stopped and
    /// will end `failed`.
    fn health_checked(&mut self, outcome: &health::Outcome) {
        let id = outcome.task_id;
        let Some(check) = self
            .tasks
            .get(&id)
            .and_then(|local| local.file.assignment.spec.health.clone())
        else {
            return;
        };
        let Some(verdict) = self.checks.record(&check, outcome, Instant::now()) else {
            return;
        };
        let Some(mut local) = self.tasks.remove(&id) else {
            return;
        };
        local.file.health = Some(verdict);
        let state = local.file.state;
        self.advance(&mut local, state);
        let unhealthy = verdict == symphony_consensus::Health::Unhealthy;
        if unhealthy {
            local.file.unhealthy = true;
        }
        self.tasks.insert(id, local);
        if unhealthy {
            let why = format!("unhealthy: {}", outcome.detail);
            self.stop(id, Some(&why));
        }
    }

    /// Moves the lease of every `--on-isolation stop` task forward to the last contact plus the
    /// lease. Only real contact moves it: an agent that has just started (and has heard no
    /// manager yet) leaves its tasks' deadlines where its previous life left them.
    fn hold_leases(&mut self, last_contact: Option<Instant>) {
        let Some(contact) = last_contact else {
            return;
        };
        let deadline = lease::deadline(self.settings.isolation_lease, contact.elapsed());
        self.lease_deadline = Some(deadline);
        let mut unrenewable = Vec::new();
        for local in self.tasks.values() {
            if local.file.assignment.spec.on_isolation != OnIsolation::Stop
                || local.file.state < TaskState::Starting
                || local.file.state.is_terminal()
            {
                continue;
            }
            let id = local.file.assignment.task_id;
            let dir = self.store.task_dir(id);
            if let Err(error) = lease::write(&dir, deadline) {
                tracing::warn!(task = id, %error, "cannot renew a task's isolation lease");
                if lease::runs_out(lease::read(&dir), lease::now_ms(), TICK * 2) {
                    unrenewable.push((id, error));
                }
            }
        }
        // Its shim stops it when the lease it holds runs out: the executor stops it first, so
        // that it ends `shutdown` with the reason (and is replaced whatever its restart
        // policy), not `failed` by a signal nobody explains.
        for (id, error) in unrenewable {
            self.stop(
                id,
                Some(&format!("cannot renew the task's isolation lease: {error}")),
            );
        }
    }

    /// Whether this node has heard no manager for longer than the isolation lease.
    fn isolated(&self, last_contact: Option<Instant>) -> bool {
        let since = last_contact.unwrap_or(self.started);
        since.elapsed() > self.settings.isolation_lease
    }

    fn stop_isolated(&mut self, isolated: bool) {
        if !isolated {
            return;
        }
        let ids: Vec<u64> = self
            .tasks
            .values()
            .filter(|local| local.file.assignment.spec.on_isolation == OnIsolation::Stop)
            .filter(|local| !local.file.state.is_terminal())
            .map(|local| local.file.assignment.task_id)
            .collect();
        for id in ids {
            self.stop(id, Some("no manager was reachable for the isolation lease"));
        }
    }

    fn start(&mut self, id: u64) {
        let Some(mut local) = self.tasks.remove(&id) else {
            return;
        };
        self.advance(&mut local, TaskState::Starting);
        if local.is_docker() {
            self.start_container(&mut local);
            self.tasks.insert(id, local);
            return;
        }
        let dir = self.store.task_dir(id);
        let on_lease = local.file.assignment.spec.on_isolation == OnIsolation::Stop;
        let deadline = self.lease_deadline;
        let started = std::fs::create_dir_all(&dir).and_then(|()| {
            // A previous attempt's exit must not be read as this one's.
            let _ = std::fs::remove_file(dir.join(store::EXIT_FILE));
            // The shim holds the lease from its first moment.
            match (on_lease, deadline) {
                (true, Some(deadline)) => lease::write(&dir, deadline)?,
                (true, None) => {
                    return Err(std::io::Error::other(
                        "no contact with the cluster to start an --on-isolation stop task under",
                    ));
                }
                (false, _) => {}
            }
            process::spawn(&dir, &local.file.assignment, self.settings.max_log_bytes)
        });
        match started {
            Ok((mut child, shim)) => {
                local.file.shim = Some(shim);
                if local.file.assignment.spec.health.is_some() {
                    local.file.health = Some(symphony_consensus::Health::Starting);
                }
                self.advance(&mut local, TaskState::Running);
                let exited = self.exited.clone();
                tokio::spawn(async move {
                    let _ = child.wait().await;
                    let _ = exited.send(id);
                });
                tracing::info!(task = id, service = %local.file.assignment.service, slot = ?local.file.assignment.slot, "started a task");
            }
            Err(error) => {
                self.end(
                    &mut local,
                    TaskState::Rejected,
                    None,
                    Some(format!("cannot start the task's supervisor: {error}")),
                );
            }
        }
        self.tasks.insert(id, local);
    }

    /// Looks at one task: has its shim recorded an exit, has it gone, is its stop grace over?
    fn watch_one(&mut self, id: u64) {
        let Some(mut local) = self.tasks.remove(&id) else {
            return;
        };
        if local.is_docker()
            && (local.file.state == TaskState::Running || local.file.state == TaskState::Starting)
        {
            self.watch_container(&mut local);
        } else if local.file.state == TaskState::Running || local.file.state == TaskState::Starting
        {
            if let Some(exit) = self.store.exit(id) {
                self.finish(&mut local, &exit);
            } else if local
                .file
                .shim
                .is_some_and(|shim| !process::shim_alive(&shim))
            {
                if let Some(child) = self.store.child(id) {
                    process::kill(child.pid);
                }
                self.end(
                    &mut local,
                    TaskState::Failed,
                    None,
                    Some("the task's supervisor ended without recording an exit".into()),
                );
            } else if let Some(since) = local.stopping
                && !local.killed
                && since.elapsed()
                    >= Duration::from_millis(local.file.assignment.spec.stop_grace_ms)
                && let Some(child) = self.store.child(id)
            {
                tracing::info!(
                    task = id,
                    "the task did not stop within its grace; killing it"
                );
                process::kill(child.pid);
                local.killed = true;
            }
        }
        self.tasks.insert(id, local);
    }

    /// Asks a task to stop; `why` is given for a stop the cluster did not ask for.
    fn stop(&mut self, id: u64, why: Option<&str>) {
        let Some(mut local) = self.tasks.remove(&id) else {
            return;
        };
        if !local.file.state.is_terminal() && !local.file.stop_requested {
            local.file.stop_requested = true;
            if let Some(why) = why {
                local.file.error = Some(why.to_string());
                tracing::warn!(task = id, "{why}; stopping the task");
            }
            match local.file.state {
                TaskState::Starting | TaskState::Running if local.is_docker() => {
                    self.stop_container(&mut local);
                }
                TaskState::Starting | TaskState::Running => {
                    if let Some(child) = self.store.child(id) {
                        process::terminate(child.pid);
                    }
                    local.stopping = Some(Instant::now());
                    self.save(&local);
                }
                // Never started: nothing to stop.
                _ => self.end(&mut local, TaskState::Shutdown, None, None),
            }
        }
        self.tasks.insert(id, local);
    }

    /// The shim (or a docker task's watcher) recorded how the task ended.
    fn finish(&mut self, local: &mut Local, exit: &ExitInfo) {
        let (state, error) = if local.file.unhealthy {
            (TaskState::Failed, local.file.error.clone())
        } else if local.file.stop_requested {
            (TaskState::Shutdown, local.file.error.clone())
        } else if let Some(error) = &exit.error {
            (TaskState::Rejected, Some(error.clone()))
        } else if let Some(failure) = &exit.failure {
            (TaskState::Failed, Some(failure.clone()))
        } else {
            match (exit.code, exit.signal) {
                (Some(0), _) => (TaskState::Complete, None),
                (Some(code), _) => (TaskState::Failed, Some(format!("exited with code {code}"))),
                (None, Some(signal)) => (
                    TaskState::Failed,
                    Some(format!("killed by signal {signal}")),
                ),
                (None, None) => (TaskState::Failed, Some("ended without an exit code".into())),
            }
        };
        // Its output is in the task's log: the container has nothing more to give.
        if local.is_docker() {
            self.remove_container(&local.file.assignment);
        }
        // The shim is done; a process the task left in its group goes too.
        if let Some(child) = self.store.child(local.file.assignment.task_id)
            && process::group_alive(child.pid)
        {
            process::kill(child.pid);
        }
        self.end(local, state, exit.code, error);
    }

    fn end(
        &mut self,
        local: &mut Local,
        state: TaskState,
        exit_code: Option<i32>,
        error: Option<String>,
    ) {
        local.file.exit_code = exit_code;
        local.file.error = error;
        local.file.ended_at_ms = Some(crate::now_ms());
        local.file.shim = None;
        local.stopping = None;
        local.watcher = None;
        self.advance(local, state);
        tracing::info!(task = local.file.assignment.task_id, state = state.as_str(), error = ?local.file.error, "a task ended");
    }

    /// Moves a task to `state`, saves it and reports it.
    fn advance(&mut self, local: &mut Local, state: TaskState) {
        local.file.state = state;
        self.save(local);
        let _ = self.reports.send(TaskReport {
            task_id: local.file.assignment.task_id,
            state,
            exit_code: local.file.exit_code,
            error: local.file.error.clone(),
            health: local.file.health,
        });
    }

    fn save(&self, local: &Local) {
        if let Err(error) = self.store.save(&local.file) {
            tracing::warn!(task = local.file.assignment.task_id, %error, "cannot save the task's state");
        }
    }

    /// Forgets the oldest ended tasks beyond the few whose logs are kept.
    fn prune(&mut self) {
        let mut ended: Vec<(u64, u64)> = self
            .tasks
            .values()
            .filter(|local| local.file.state.is_terminal())
            .map(|local| {
                (
                    local.file.ended_at_ms.unwrap_or(0),
                    local.file.assignment.task_id,
                )
            })
            .collect();
        if ended.len() <= KEEP_ENDED {
            return;
        }
        ended.sort_unstable();
        for (_, id) in ended.iter().take(ended.len() - KEEP_ENDED) {
            self.tasks.remove(id);
            if let Err(error) = self.store.remove(*id) {
                tracing::debug!(task = id, %error, "cannot remove an old task's directory");
            }
        }
    }

    /// Reports every task's current state again: a manager has just started serving this
    /// node, and reports sent before may have been lost (the log ignores repeats).
    fn report_all(&self) {
        for local in self.tasks.values() {
            let _ = self.reports.send(TaskReport {
                task_id: local.file.assignment.task_id,
                state: local.file.state,
                exit_code: local.file.exit_code,
                error: local.file.error.clone(),
                health: local.file.health,
            });
        }
    }
}

/// A task's slot: its service and slot number (a global task's is its service alone).
fn slot_of(assignment: &Assignment) -> (String, Option<u32>) {
    (assignment.service.clone(), assignment.slot)
}
