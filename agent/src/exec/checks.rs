//! The executor's guards of running tasks: health checks (a failed one fails the task) and the
//! isolation lease (a task of an `--on-isolation stop` service stops when the node has heard no
//! manager for it).

use symphony_consensus::{OnIsolation, TaskState};
use tokio::time::Instant;

use super::{Executor, TICK, docker, health, lease};

impl Executor {
    /// Starts the health checks that are due.
    pub(super) fn run_checks(&mut self) {
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
    pub(super) fn health_checked(&mut self, outcome: &health::Outcome) {
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
    pub(super) fn hold_leases(&mut self, last_contact: Option<Instant>) {
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
    pub(super) fn isolated(&self, last_contact: Option<Instant>) -> bool {
        let since = last_contact.unwrap_or(self.started);
        since.elapsed() > self.settings.isolation_lease
    }

    pub(super) fn stop_isolated(&mut self, isolated: bool) {
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
}
