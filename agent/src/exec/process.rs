//! The process driver: a task is a child process in a process group of its own, started and
//! watched by a [shim](super::shim), stopped with SIGTERM to the whole group and, after the
//! task's grace, SIGKILL.

use std::path::Path;

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

use super::store::ShimInfo;
use crate::remote::proto::Assignment;

/// Where a task's environment says what it is.
pub const TASK_DIR_ENV: &str = "SYMPHONY_TASK_DIR";

/// Starts the shim for `assignment` in `dir`; returns the running shim.
pub fn spawn(
    dir: &Path,
    assignment: &Assignment,
    max_log_bytes: u64,
) -> std::io::Result<(tokio::process::Child, ShimInfo)> {
    let exe = std::env::current_exe()?;
    let spec = &assignment.spec;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("task-shim")
        .arg("--dir")
        .arg(dir)
        .arg("--log-max-bytes")
        .arg(max_log_bytes.to_string())
        .arg("--stop-grace-ms")
        .arg(spec.stop_grace_ms.to_string())
        .arg("--")
        .args(&spec.command)
        .envs(&spec.env)
        .env(TASK_DIR_ENV, dir)
        .env("SYMPHONY_TASK_ID", assignment.task_id.to_string())
        .env("SYMPHONY_SERVICE", &assignment.service)
        .current_dir(spec.workdir.as_deref().map_or(dir, Path::new))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // Its own group: a Ctrl-C meant for the agent does not reach the tasks.
        .process_group(0)
        .kill_on_drop(false);
    if let Some(slot) = assignment.slot {
        command.env("SYMPHONY_SLOT", slot.to_string());
    }
    let child = command.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("the shim exited at once"))?;
    let start_ticks = start_ticks(pid).unwrap_or(0);
    Ok((child, ShimInfo { pid, start_ticks }))
}

/// The health check `command` of `assignment`, in the task's environment and working dir. It
/// does not carry the task-dir variable: it is not the task (tools that find a node's tasks
/// by that variable must not count it).
pub fn health_command(
    dir: &Path,
    assignment: &Assignment,
    command: &[String],
) -> tokio::process::Command {
    let spec = &assignment.spec;
    let (program, args) = command
        .split_first()
        .map_or(("true", &[][..]), |(program, args)| {
            (program.as_str(), args)
        });
    let mut check = tokio::process::Command::new(program);
    check
        .args(args)
        .envs(&spec.env)
        .env("SYMPHONY_TASK_ID", assignment.task_id.to_string())
        .env("SYMPHONY_SERVICE", &assignment.service)
        .current_dir(spec.workdir.as_deref().map_or(dir, Path::new));
    if let Some(slot) = assignment.slot {
        check.env("SYMPHONY_SLOT", slot.to_string());
    }
    check
}

/// When the process `pid` started, in clock ticks since boot (`/proc/PID/stat`, field 22).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the shim still runs: the pid is alive and is the same process.
pub fn shim_alive(shim: &ShimInfo) -> bool {
    match start_ticks(shim.pid) {
        Some(ticks) => shim.start_ticks == 0 || ticks == shim.start_ticks,
        None => false,
    }
}

/// Whether any process of the group `pgid` is left.
pub fn group_alive(pgid: u32) -> bool {
    signal_group(pgid, None)
}

/// Sends `signal` to every process of the group `pgid` (`None`: only checks it exists).
pub fn signal_group(pgid: u32, signal: Option<Signal>) -> bool {
    let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    match signal {
        Some(signal) => kill_process_group(pid, signal).is_ok(),
        None => rustix::process::test_kill_process_group(pid).is_ok(),
    }
}

pub fn terminate(pgid: u32) -> bool {
    signal_group(pgid, Some(Signal::TERM))
}

pub fn kill(pgid: u32) -> bool {
    signal_group(pgid, Some(Signal::KILL))
}

/// Kills one process (a shim whose task has already been stopped).
pub fn kill_one(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_start_time_and_pid_1_another() {
        let me = std::process::id();
        let ticks = start_ticks(me).unwrap();
        assert!(shim_alive(&ShimInfo {
            pid: me,
            start_ticks: ticks
        }));
        assert!(!shim_alive(&ShimInfo {
            pid: me,
            start_ticks: ticks + 1
        }));
        assert!(!shim_alive(&ShimInfo {
            pid: u32::MAX - 1,
            start_ticks: 1
        }));
    }
}
