//! Tasks on disk: one directory per task under `<config dir>/tasks/<task id>/`.
//!
//! - `task.json`: what the executor knows of the task (its assignment, its state, its shim),
//!   written whole and renamed into place at every change;
//! - `child.json`: the task's pid (its process group), written by the shim once it runs;
//! - `exit.json`: how it ended, written by the shim (or, for a docker task, by the agent once
//!   the engine says the container ended);
//! - `container.json`: a docker task's container, once started;
//! - `output.log`, `output.log.1`: its output, bounded (see [`super::shim`]).
//!
//! A restarted agent reads these to adopt what still runs and to report what ended while it
//! was away.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use symphony_consensus::TaskState;

use crate::remote::proto::Assignment;

pub const TASKS_DIR: &str = "tasks";
pub const TASK_FILE: &str = "task.json";
pub const CHILD_FILE: &str = "child.json";
pub const EXIT_FILE: &str = "exit.json";
pub const CONTAINER_FILE: &str = "container.json";

/// A docker task's container, written once the engine has started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
}

/// The task's process, as the shim recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    pub pid: u32,
}

/// How the task ended, as the shim recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Set when the task could not be started or waited for.
    pub error: Option<String>,
    /// Set when the task ran but its driver says it ended abnormally (the Docker engine went
    /// away, the container was killed for its memory): it ends `failed` with this.
    #[serde(default)]
    pub failure: Option<String>,
}

/// The shim of a running task: its pid and when it started (clock ticks since boot, from
/// `/proc/PID/stat`), so a pid the kernel gave to another process is not taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimInfo {
    pub pid: u32,
    pub start_ticks: u64,
}

/// What the executor keeps about one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFile {
    pub assignment: Assignment,
    pub state: TaskState,
    /// The process task's shim, or a docker task's lease guard (see
    /// [`super::docker::guard`]).
    pub shim: Option<ShimInfo>,
    /// Whether the executor asked the task to stop (its end is then `shutdown`).
    #[serde(default)]
    pub stop_requested: bool,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// When it ended, for pruning old task directories.
    #[serde(default)]
    pub ended_at_ms: Option<u64>,
    /// What its health check last said.
    #[serde(default)]
    pub health: Option<symphony_consensus::Health>,
    /// Stopped because its health check failed: it ends `failed`.
    #[serde(default)]
    pub unhealthy: bool,
}

/// The tasks directory of one node.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(config_dir: &Path) -> Store {
        Store {
            dir: config_dir.join(TASKS_DIR),
        }
    }

    pub fn task_dir(&self, task_id: u64) -> PathBuf {
        self.dir.join(task_id.to_string())
    }

    /// Every task file there is; an unreadable one is reported and skipped (its task, if it
    /// runs, is found by the process sweep of the harness or the operator, never restarted
    /// twice by us).
    pub fn load_all(&self) -> Vec<TaskFile> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut tasks = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path().join(TASK_FILE);
            match read_json::<TaskFile>(&path) {
                Ok(Some(task)) => tasks.push(task),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "a task file is unreadable; leaving it");
                }
            }
        }
        tasks.sort_by_key(|task| task.assignment.task_id);
        tasks
    }

    pub fn save(&self, task: &TaskFile) -> std::io::Result<()> {
        let dir = self.task_dir(task.assignment.task_id);
        std::fs::create_dir_all(&dir)?;
        write_json(&dir.join(TASK_FILE), task)
    }

    pub fn remove(&self, task_id: u64) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.task_dir(task_id)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    pub fn exit(&self, task_id: u64) -> Option<ExitInfo> {
        read_json(&self.task_dir(task_id).join(EXIT_FILE))
            .ok()
            .flatten()
    }

    pub fn container(&self, task_id: u64) -> Option<ContainerInfo> {
        read_json(&self.task_dir(task_id).join(CONTAINER_FILE))
            .ok()
            .flatten()
    }

    pub fn child(&self, task_id: u64) -> Option<ChildInfo> {
        read_json(&self.task_dir(task_id).join(CHILD_FILE))
            .ok()
            .flatten()
    }
}

/// Writes `value` as JSON over `path`, atomically and durably.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    crate::durable::write_atomically(path, &bytes)
}

/// Reads `path` as JSON; `None` when there is no such file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}
