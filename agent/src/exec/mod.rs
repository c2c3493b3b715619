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
//! - [`logs`]: reading a task's output for `service logs`;
//! - `lifecycle.rs`: a task's life here, from start to report; `checks.rs`: the health checks
//!   and the isolation lease that guard a running task.

mod checks;
mod containers;
pub mod docker;
pub mod feed;
pub mod health;
pub mod lease;
mod lifecycle;
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
use self::store::{Store, TaskFile};
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
}

/// A task's slot: its service and slot number (a global task's is its service alone).
fn slot_of(assignment: &Assignment) -> (String, Option<u32>) {
    (assignment.service.clone(), assignment.slot)
}
