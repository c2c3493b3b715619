//! Agent processes found again by pid from any later `testnet` command, detached from the one
//! that started them.
//!
//! `testnet up` exits while its agents go on running, so an agent must not be tied to it:
//! - it runs in a process group of its own, so a Ctrl-C in the terminal of `testnet up` (which
//!   signals the terminal's foreground group) does not reach it (a test's or a benchmark's
//!   agents, [`Lifetime::Owned`], stay in its group instead, to stop with it);
//! - its stdin is `/dev/null` and its stdout and stderr go to its log file, so it holds no
//!   terminal and no pipe to a process that has gone;
//! - no `Child` handle is kept: a later command knows it only by pid. Since pids are recycled,
//!   the process's start time (see [`crate::procfs`]) is recorded with the pid and
//!   compared before any signal, so a recycled pid is never mistaken for a node.
//!
//! A process that started an agent and is still alive when the agent dies (a test, or
//! `testnet restart`) reaps it with a non-blocking `waitpid`, so that it does not stay a zombie.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

use crate::lab::backend::ProcessState;
use crate::lab::state::Lifetime;
use crate::procfs;

/// How long a SIGKILLed process may take to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_PAUSE: Duration = Duration::from_millis(5);

/// A started process: its pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    pub start_ticks: u64,
}

/// Starts `program args...` (see the module docs), its output appended to `log`; in a process
/// group of its own if its `lifetime` is [`Lifetime::Detached`]. With `cgroup_procs`, the
/// process first moves itself into that cgroup (by writing its pid to the `cgroup.procs` file,
/// through `sh`) and only then becomes the agent, so that every socket the agent opens belongs
/// to the cgroup from the start.
pub fn spawn(
    program: &Path,
    args: &[OsString],
    env: &std::collections::BTreeMap<String, String>,
    cgroup_procs: Option<&Path>,
    log: &Path,
    lifetime: Lifetime,
) -> std::io::Result<Started> {
    let out = crate::harness::log::append(log)?;
    let err = out.try_clone()?;
    let mut command = match cgroup_procs {
        Some(procs) => {
            let mut command = Command::new("/bin/sh");
            command
                .arg("-c")
                .arg(r#"echo $$ > "$1" && shift && exec "$@""#)
                .arg("symphony-testnet-start")
                .arg(procs)
                .arg(program);
            command
        }
        None => Command::new(program),
    };
    command
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    if lifetime == Lifetime::Detached {
        command.process_group(0);
    }
    let child = command.spawn()?;
    let pid = child.id();
    // Dropping a std Child neither kills nor waits for the process: later commands find it by
    // pid.
    drop(child);
    let start_ticks = procfs::stat(pid)
        .map_err(|_| std::io::Error::other(format!("process {pid} exited at once (see its log)")))?
        .start_ticks;
    Ok(Started { pid, start_ticks })
}

/// Whether the process `pid` started at `start_ticks` runs, is stopped, or is gone (a zombie
/// counts as gone, and is reaped if it is our child).
pub fn probe(pid: u32, expected_start: u64) -> ProcessState {
    match procfs::stat(pid) {
        Ok(stat) if stat.start_ticks != expected_start => ProcessState::Gone,
        // A multi-threaded process shows its main thread as a zombie while the other threads
        // are still exiting (and still hold its sockets and its cgroup): only once they are
        // gone is the process.
        Ok(stat) if stat.is_dead() && procfs::thread_count(pid).is_some_and(|n| n > 1) => {
            ProcessState::Running
        }
        Ok(stat) if stat.is_dead() => {
            reap(pid);
            ProcessState::Gone
        }
        Ok(stat) if stat.is_stopped() => ProcessState::Paused,
        Ok(_) => ProcessState::Running,
        Err(_) => ProcessState::Gone,
    }
}

/// Sends `signal` to `pid` if it is still the process that started at `start_ticks`; a process
/// that is gone is not an error.
pub fn signal(pid: u32, expected_start: u64, signal: Signal) -> std::io::Result<()> {
    if probe(pid, expected_start) == ProcessState::Gone {
        return Ok(());
    }
    let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Err(std::io::Error::other(format!("{pid} is not a valid pid")));
    };
    match rustix::process::kill_process(target, signal) {
        Ok(()) => Ok(()),
        // Exited between the probe and the signal.
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// SIGKILL, then waits (bounded) until the process is gone.
pub fn kill(pid: u32, expected_start: u64) -> std::io::Result<()> {
    signal(pid, expected_start, Signal::KILL)?;
    let deadline = Instant::now() + KILL_TIMEOUT;
    while probe(pid, expected_start) != ProcessState::Gone {
        if Instant::now() >= deadline {
            return Err(std::io::Error::other(format!(
                "process {pid} is still there {KILL_TIMEOUT:?} after SIGKILL"
            )));
        }
        std::thread::sleep(POLL_PAUSE);
    }
    Ok(())
}

/// Reaps `pid` if it is an exited child of this process; does nothing otherwise.
fn reap(pid: u32) {
    if let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::waitpid(Some(target), WaitOptions::NOHANG);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn detached_processes_are_probed_paused_resumed_and_killed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let started = spawn(
            Path::new("/bin/sleep"),
            &["30".into()],
            &std::collections::BTreeMap::new(),
            None,
            &log,
            Lifetime::Detached,
        )
        .unwrap();
        let (pid, start) = (started.pid, started.start_ticks);
        assert_eq!(probe(pid, start), ProcessState::Running);
        assert_eq!(
            probe(pid, start + 1),
            ProcessState::Gone,
            "another start time"
        );
        signal(pid, start, Signal::STOP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while probe(pid, start) != ProcessState::Paused && Instant::now() < deadline {
            std::thread::sleep(POLL_PAUSE);
        }
        assert_eq!(probe(pid, start), ProcessState::Paused);
        signal(pid, start, Signal::CONT).unwrap();
        kill(pid, start).unwrap();
        assert_eq!(probe(pid, start), ProcessState::Gone);
        // Signalling a process that is gone is not an error.
        signal(pid, start, Signal::KILL).unwrap();
    }
}
