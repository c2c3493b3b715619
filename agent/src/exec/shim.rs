//! The task shim: `symphony-agent task-shim --dir DIR -- PROGRAM ARGS...`, one small process
//! per running task, between the agent and the task.
//!
//! The agent starts the shim (in a process group of its own) and the shim starts the task (in
//! another), copies its output into the task's bounded log, waits for it and writes how it
//! ended to `exit.json`. Because the shim, not the agent, is the task's parent, the task and
//! its exit code outlive an agent restart: a restarted agent finds the shim still waiting, or
//! the exit it recorded, and adopts the task instead of running its slot twice. The shim is
//! plain threads and blocking I/O: it costs little memory, and it must never need the agent.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::store::{ChildInfo, ExitInfo, write_json};

/// The log file, and the one it rotates to.
pub const LOG_FILE: &str = "output.log";
pub const OLD_LOG_FILE: &str = "output.log.1";

/// How long the shim waits for the task's output to drain after the task exits (a daemon it
/// left behind may hold the pipes open for ever).
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// How often the shim looks at the task's isolation lease.
const LEASE_CHECK: Duration = Duration::from_millis(200);

/// Runs the shim; returns its process exit code. `stop_grace` is the task's time between
/// SIGTERM and SIGKILL when its isolation lease runs out.
pub fn run(dir: &Path, max_log_bytes: u64, stop_grace: Duration, command: &[String]) -> i32 {
    let Some((program, args)) = command.split_first() else {
        return record_spawn_error(dir, "no program to run".to_string());
    };
    let log = Arc::new(Mutex::new(LogWriter::open(dir, max_log_bytes)));
    let mut child = match Command::new(program)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => return record_spawn_error(dir, format!("cannot start {program:?}: {error}")),
    };
    let pid = child.id();
    if let Err(error) = write_json(&dir.join(super::store::CHILD_FILE), &ChildInfo { pid }) {
        // Without child.json the agent cannot stop the task: stop it now rather than leave an
        // orphan nobody controls.
        let _ = child.kill();
        let _ = child.wait();
        return record_spawn_error(dir, format!("cannot record the task's pid: {error}"));
    }
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    hold_lease(dir.to_path_buf(), pid, stop_grace, ended.clone());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(copy_lines(stdout, "stdout", log.clone(), done_tx.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(copy_lines(stderr, "stderr", log.clone(), done_tx.clone()));
    }
    drop(done_tx);
    let status = child.wait();
    ended.store(true, std::sync::atomic::Ordering::Relaxed);
    // Let the output that is already there reach the log, but do not wait on a pipe a
    // left-behind process holds open.
    let deadline = std::time::Instant::now() + DRAIN_WAIT;
    for _ in 0..readers.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let exit = match status {
        Ok(status) => ExitInfo {
            code: status.code(),
            signal: status.signal(),
            error: None,
            failure: None,
        },
        Err(error) => ExitInfo {
            code: None,
            signal: None,
            error: Some(format!("cannot wait for the task: {error}")),
            failure: None,
        },
    };
    if let Ok(mut log) = log.lock() {
        log.flush();
    }
    match write_json(&dir.join(super::store::EXIT_FILE), &exit) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Stops the task (SIGTERM to its group, SIGKILL after `grace`) if its isolation lease (see
/// [`super::lease`]) runs out before it ends: the agent that should renew it is gone or cut
/// off. A task without a lease file has nothing to hold.
fn hold_lease(dir: PathBuf, pgid: u32, grace: Duration, ended: Arc<std::sync::atomic::AtomicBool>) {
    std::thread::spawn(move || {
        let ended = || ended.load(std::sync::atomic::Ordering::Relaxed);
        while !ended() {
            if super::lease::expired(&dir) {
                super::process::terminate(pgid);
                let deadline = std::time::Instant::now() + grace;
                while !ended() && std::time::Instant::now() < deadline {
                    std::thread::sleep(LEASE_CHECK);
                }
                if !ended() {
                    super::process::kill(pgid);
                }
                return;
            }
            std::thread::sleep(LEASE_CHECK);
        }
    });
}

fn record_spawn_error(dir: &Path, error: String) -> i32 {
    let exit = ExitInfo {
        code: None,
        signal: None,
        error: Some(error),
        failure: None,
    };
    match write_json(&dir.join(super::store::EXIT_FILE), &exit) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Copies `stream`'s lines into the log on a thread of its own; says so on `done` at EOF.
fn copy_lines(
    stream: impl Read + Send + 'static,
    name: &'static str,
    log: Arc<Mutex<LogWriter>>,
    done: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    if let Ok(mut log) = log.lock() {
                        log.write_line(name, text);
                    }
                }
            }
        }
        let _ = done.send(());
    })
}

/// The task's log: one line per output line, `<ms since the epoch> <stdout|stderr> <text>`,
/// rotated to one older file when it reaches its bound, so a task's logs never take more than
/// twice the bound. The docker driver writes the engine's log stream through it too.
pub(crate) struct LogWriter {
    path: PathBuf,
    old: PathBuf,
    max_bytes: u64,
    file: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
}

impl LogWriter {
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> LogWriter {
        let path = dir.join(LOG_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let written = file
            .as_ref()
            .and_then(|file| file.metadata().ok())
            .map_or(0, |metadata| metadata.len());
        LogWriter {
            path,
            old: dir.join(OLD_LOG_FILE),
            max_bytes: max_bytes.max(1024),
            file: file.map(std::io::BufWriter::new),
            written,
        }
    }

    fn write_line(&mut self, stream: &str, text: &str) {
        self.write_line_at(crate::now_ms(), stream, text);
    }

    /// Writes a line that was output at `at_ms`.
    pub(crate) fn write_line_at(&mut self, at_ms: u64, stream: &str, text: &str) {
        let line = format!("{at_ms} {stream} {text}\n");
        if self.written + line.len() as u64 > self.max_bytes {
            self.rotate();
        }
        if let Some(file) = self.file.as_mut()
            && file.write_all(line.as_bytes()).is_ok()
        {
            self.written += line.len() as u64;
            // Lines reach the file as they come, so `service logs --follow` sees them.
            let _ = file.flush();
        }
    }

    fn rotate(&mut self) {
        self.flush();
        self.file = None;
        let _ = std::fs::rename(&self.path, &self.old);
        self.file = std::fs::File::create(&self.path)
            .ok()
            .map(std::io::BufWriter::new);
        self.written = 0;
    }

    pub(crate) fn flush(&mut self) {
        if let Some(file) = self.file.as_mut() {
            let _ = file.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_at_its_bound_and_keeps_one_older_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogWriter::open(dir.path(), 1024);
        for n in 0..100 {
            log.write_line("stdout", &format!("line {n:03} {}", "x".repeat(20)));
        }
        log.flush();
        let current = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        let old = std::fs::metadata(dir.path().join(OLD_LOG_FILE))
            .unwrap()
            .len();
        assert!(current <= 1024 && old <= 1024, "{current} {old}");
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        assert!(
            text.trim_end()
                .ends_with(&format!("line 099 {}", "x".repeat(20)))
        );
    }

    #[test]
    fn the_shim_records_output_and_exit() {
        let dir = tempfile::tempdir().unwrap();
        let command: Vec<String> = ["sh", "-c", "echo out; echo err >&2; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            run(dir.path(), 1 << 20, Duration::from_secs(1), &command),
            0
        );
        let exit: ExitInfo =
            super::super::store::read_json(&dir.path().join(super::super::store::EXIT_FILE))
                .unwrap()
                .unwrap();
        assert_eq!(exit.code, Some(3));
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        assert!(text.contains(" stdout out"), "{text}");
        assert!(text.contains(" stderr err"), "{text}");

        let missing = vec!["/no/such/program".to_string()];
        run(dir.path(), 1 << 20, Duration::from_secs(1), &missing);
        let exit: ExitInfo =
            super::super::store::read_json(&dir.path().join(super::super::store::EXIT_FILE))
                .unwrap()
                .unwrap();
        assert!(exit.error.unwrap().contains("cannot start"));
    }

    #[test]
    fn a_lease_that_runs_out_stops_the_task_without_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        // A lease with a second left, which nobody renews.
        super::super::lease::write(
            dir.path(),
            super::super::lease::deadline(Duration::from_secs(1), Duration::ZERO),
        )
        .unwrap();
        let command: Vec<String> = ["sleep", "60"].iter().map(|s| s.to_string()).collect();
        let started = std::time::Instant::now();
        run(dir.path(), 1 << 20, Duration::from_secs(1), &command);
        assert!(started.elapsed() < Duration::from_secs(10));
        let exit: ExitInfo =
            super::super::store::read_json(&dir.path().join(super::super::store::EXIT_FILE))
                .unwrap()
                .unwrap();
        assert_eq!(exit.signal, Some(15), "{exit:?}");
    }
}
