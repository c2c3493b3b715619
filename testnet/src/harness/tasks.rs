//! The processes agents run for tasks, found by the task directory in their environment: to
//! count what runs for a test, and to stop what an agent left running when it was killed
//! (tasks outlive their agent by design, so a test must clean up after itself).

use std::path::{Path, PathBuf};

/// The variable the agent puts in every task's environment (see `symphony_agent::exec`).
const TASK_DIR_ENV: &str = "SYMPHONY_TASK_DIR=";

/// A process run for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskProcess {
    pub pid: u32,
    pub task_dir: PathBuf,
    /// The program's name (`/proc/PID/comm`).
    pub comm: String,
}

impl TaskProcess {
    /// Whether this is the agent's shim rather than the task itself.
    pub fn is_shim(&self) -> bool {
        self.comm.starts_with("symphony-agent")
    }

    /// The task's id, from its directory's name.
    pub fn task_id(&self) -> Option<u64> {
        self.task_dir.file_name()?.to_str()?.parse().ok()
    }
}

/// Every process whose task directory is under `config_dir`.
pub fn task_processes(config_dir: &Path) -> Vec<TaskProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let task_dir = environ
            .split(|byte| *byte == 0)
            .filter_map(|var| std::str::from_utf8(var).ok())
            .find_map(|var| var.strip_prefix(TASK_DIR_ENV))
            .map(PathBuf::from);
        let Some(task_dir) = task_dir.filter(|dir| dir.starts_with(config_dir)) else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        found.push(TaskProcess {
            pid,
            task_dir,
            comm,
        });
    }
    found.sort_by_key(|process| process.pid);
    found
}

/// Kills every process run for a task under `config_dir`.
pub fn kill_tasks(config_dir: &Path) {
    for process in task_processes(config_dir) {
        if let Some(pid) = i32::try_from(process.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}
