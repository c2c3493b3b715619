//! A task's life on this node: started, watched, stopped, ended, saved, forgotten, and
//! reported at each step.

use std::time::Duration;

use symphony_consensus::{OnIsolation, TaskReport, TaskState};
use tokio::time::Instant;

use super::store::ExitInfo;
use super::{Executor, KEEP_ENDED, Local, lease, process, store};

impl Executor {
    pub(super) fn start(&mut self, id: u64) {
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
    pub(super) fn watch_one(&mut self, id: u64) {
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
    pub(super) fn stop(&mut self, id: u64, why: Option<&str>) {
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
    pub(super) fn finish(&mut self, local: &mut Local, exit: &ExitInfo) {
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

    pub(super) fn end(
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
    pub(super) fn advance(&mut self, local: &mut Local, state: TaskState) {
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

    pub(super) fn save(&self, local: &Local) {
        if let Err(error) = self.store.save(&local.file) {
            tracing::warn!(task = local.file.assignment.task_id, %error, "cannot save the task's state");
        }
    }

    /// Forgets the oldest ended tasks beyond the few whose logs are kept.
    pub(super) fn prune(&mut self) {
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
    pub(super) fn report_all(&self) {
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
