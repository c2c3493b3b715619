//! The executor's docker side: a docker task's container started, watched, adopted after a
//! restart, health-checked through the engine and stopped, and the containers of tasks this
//! node no longer has removed. The rest of the executor (`mod.rs`) is the same for both
//! drivers; this is where it branches to the engine.

use std::time::Duration;

use symphony_consensus::{OnIsolation, TaskState};
use tokio::time::Instant;

use super::{Executor, Local, docker, lease, process, store};
use crate::remote::proto::Assignment;

impl Executor {
    /// Watches again the container of a docker task a previous run of the agent started.
    pub(super) fn adopt_container(
        &mut self,
        local: &mut Local,
        containers: Option<&[docker::engine::Listed]>,
    ) {
        let id = local.file.assignment.task_id;
        if local.file.state < TaskState::Starting || self.store.exit(id).is_some() {
            // Never started, or its end is recorded (`watch_one` reports it).
            return;
        }
        let (Some(engine), Some(containers)) = (self.settings.docker.clone(), containers) else {
            self.end(
                local,
                TaskState::Failed,
                None,
                Some("no Docker engine answered when the agent restarted, so its container could not be adopted".into()),
            );
            return;
        };
        let listed = containers
            .iter()
            .any(|container| container.task_id == Some(id));
        let started = self.store.container(id).is_some();
        match (listed, started) {
            (true, true) => {
                // A guard that died with the agent (or never ran) is started again.
                let guarded = local.file.assignment.spec.on_isolation == OnIsolation::Stop;
                if guarded
                    && !local
                        .file
                        .shim
                        .is_some_and(|guard| process::shim_alive(&guard))
                    && let Err(error) = self.spawn_guard(&engine, local)
                {
                    tracing::warn!(task = id, %error, "cannot start an adopted container's lease guard");
                }
                let watch = self.watch_of(&engine, local);
                local.watcher = Some(tokio::spawn(docker::task::follow(watch)));
                tracing::info!(task = id, container = %docker::spec::container_name(&local.file.assignment, self.settings.node_id), "adopted a running container");
            }
            (true, false) => {
                // Made but not known to have started: the agent stopped in between.
                self.remove_container(&local.file.assignment);
                self.end(
                    local,
                    TaskState::Failed,
                    None,
                    Some("the agent stopped while starting it".into()),
                );
            }
            (false, _) => self.end(
                local,
                TaskState::Failed,
                None,
                Some("its container disappeared while the agent was away".into()),
            ),
        }
    }

    /// Removes the containers of this node that belong to no task it still watches: ended
    /// tasks' (their removal was cut short) and unknown ones (a task directory pruned or lost).
    pub(super) fn sweep_containers(&self, containers: Option<&[docker::engine::Listed]>) {
        let (Some(engine), Some(containers)) = (&self.settings.docker, containers) else {
            return;
        };
        for container in containers {
            let watched = container
                .task_id
                .and_then(|id| self.tasks.get(&id))
                .is_some_and(|local| !local.file.state.is_terminal() && local.watcher.is_some());
            if watched {
                continue;
            }
            tracing::info!(container = %container.name, task = ?container.task_id, "removing a container of a task this node no longer runs");
            let engine = engine.clone();
            let name = container.name.clone();
            tokio::spawn(async move {
                if let Err(error) = engine.remove(&name).await {
                    tracing::warn!(container = %name, %error, "cannot remove a container");
                }
            });
        }
    }

    /// Removes a docker task's container, in the background.
    pub(super) fn remove_container(&self, assignment: &Assignment) {
        let Some(engine) = self.settings.docker.clone() else {
            return;
        };
        let name = docker::spec::container_name(assignment, self.settings.node_id);
        tokio::spawn(async move {
            if let Err(error) = engine.remove(&name).await {
                tracing::warn!(container = %name, %error, "cannot remove an ended task's container");
            }
        });
    }

    pub(super) fn watch_of(&self, engine: &docker::Engine, local: &Local) -> docker::task::Watch {
        let assignment = &local.file.assignment;
        docker::task::Watch {
            engine: engine.clone(),
            task_id: assignment.task_id,
            name: docker::spec::container_name(assignment, self.settings.node_id),
            dir: self.store.task_dir(assignment.task_id),
            max_log_bytes: self.settings.max_log_bytes,
            exited: self.exited.clone(),
            image_health: assignment
                .spec
                .health
                .is_none()
                .then(|| self.image_verdicts.clone()),
        }
    }

    /// The image's own health check of a docker task has a new verdict (only for tasks whose
    /// spec has none): reported like the spec's; an unhealthy task is stopped and fails.
    pub(super) fn image_health(&mut self, verdict: &docker::task::Verdict) {
        let id = verdict.task_id;
        let Some(mut local) = self.tasks.remove(&id) else {
            return;
        };
        let applies = local.file.state == TaskState::Running
            && !local.file.stop_requested
            && local.file.assignment.spec.health.is_none();
        if applies && local.file.health != Some(verdict.health) {
            local.file.health = Some(verdict.health);
            let state = local.file.state;
            self.advance(&mut local, state);
        }
        let unhealthy = applies && verdict.health == symphony_consensus::Health::Unhealthy;
        if unhealthy {
            local.file.unhealthy = true;
        }
        self.tasks.insert(id, local);
        if unhealthy {
            let why = format!("unhealthy: {}", verdict.detail);
            self.stop(id, Some(&why));
        }
    }

    /// Starts a docker task: its watcher makes and starts the container and records its end.
    /// It stays `starting` until the engine has started the container.
    pub(super) fn start_container(&mut self, local: &mut Local) {
        let id = local.file.assignment.task_id;
        let Some(engine) = self.settings.docker.clone() else {
            self.end(
                local,
                TaskState::Rejected,
                None,
                Some("no Docker engine on this node".into()),
            );
            return;
        };
        let dir = self.store.task_dir(id);
        if let Err(error) = std::fs::create_dir_all(&dir) {
            self.end(
                local,
                TaskState::Rejected,
                None,
                Some(format!("cannot make the task's directory: {error}")),
            );
            return;
        }
        // A previous attempt's records must not be read as this one's.
        let _ = std::fs::remove_file(dir.join(store::EXIT_FILE));
        let _ = std::fs::remove_file(dir.join(store::CONTAINER_FILE));
        if local.file.assignment.spec.on_isolation == OnIsolation::Stop {
            // The guard holds the lease from before the container exists.
            let guarded = match self.lease_deadline {
                Some(deadline) => {
                    lease::write(&dir, deadline).and_then(|()| self.spawn_guard(&engine, local))
                }
                None => Err(std::io::Error::other(
                    "no contact with the cluster to start an --on-isolation stop task under",
                )),
            };
            if let Err(error) = guarded {
                self.end(
                    local,
                    TaskState::Rejected,
                    None,
                    Some(format!("cannot start the task's lease guard: {error}")),
                );
                return;
            }
        }
        let watch = self.watch_of(&engine, local);
        local.watcher = Some(tokio::spawn(docker::task::run(
            watch,
            local.file.assignment.clone(),
            self.settings.node_id,
        )));
    }

    /// Starts the lease guard of an `--on-isolation stop` docker task (see
    /// [`docker::guard`]), which stops its container if the agent dies or is cut off.
    pub(super) fn spawn_guard(
        &self,
        engine: &docker::Engine,
        local: &mut Local,
    ) -> std::io::Result<()> {
        let assignment = &local.file.assignment;
        let (mut child, guard) = docker::guard::spawn(
            &self.store.task_dir(assignment.task_id),
            engine.socket(),
            &docker::spec::container_name(assignment, self.settings.node_id),
            Duration::from_millis(assignment.spec.stop_grace_ms),
        )?;
        local.file.shim = Some(guard);
        self.save(local);
        // Reaped here while the agent runs; after a restart, by whoever adopts orphans.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(())
    }

    /// Looks at a docker task: has its container started, has its end been recorded, is its
    /// watcher gone?
    pub(super) fn watch_container(&mut self, local: &mut Local) {
        let id = local.file.assignment.task_id;
        if let Some(exit) = self.store.exit(id) {
            self.finish(local, &exit);
        } else if local.file.state == TaskState::Starting && self.store.container(id).is_some() {
            if local.file.assignment.spec.health.is_some() {
                local.file.health = Some(symphony_consensus::Health::Starting);
            }
            self.advance(local, TaskState::Running);
            tracing::info!(task = id, service = %local.file.assignment.service, slot = ?local.file.assignment.slot, "started a task");
        } else if local
            .watcher
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
        {
            self.remove_container(&local.file.assignment);
            self.end(
                local,
                TaskState::Failed,
                None,
                Some("the agent lost track of the task's container".into()),
            );
        }
    }

    /// Asks the engine to stop a docker task's container (it kills it after the grace); the
    /// watcher records the end. One that has not started yet is not waited for: its watcher
    /// is stopped and whatever it made removed.
    pub(super) fn stop_container(&mut self, local: &mut Local) {
        let id = local.file.assignment.task_id;
        let name = docker::spec::container_name(&local.file.assignment, self.settings.node_id);
        let Some(engine) = self.settings.docker.clone() else {
            // Its watcher records the engine's absence as its end.
            local.stopping = Some(Instant::now());
            self.save(local);
            return;
        };
        if local.file.state == TaskState::Starting && self.store.container(id).is_none() {
            let watcher = local.watcher.take();
            tokio::spawn(async move {
                if let Some(watcher) = watcher {
                    watcher.abort();
                    let _ = watcher.await;
                }
                let _ = engine.remove(&name).await;
            });
            let why = local.file.error.clone();
            self.end(local, TaskState::Shutdown, None, why);
            return;
        }
        let grace = Duration::from_millis(local.file.assignment.spec.stop_grace_ms);
        tokio::spawn(async move {
            if let Err(error) = engine.stop(&name, grace).await {
                tracing::warn!(task = id, container = %name, %error, "cannot stop a container");
            }
        });
        local.stopping = Some(Instant::now());
        self.save(local);
    }
}
