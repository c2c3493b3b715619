//! Running the host tools the lab needs (`docker`, `nft`, `ldd`), always with a deadline.
//!
//! Why deadlines: a daemon that hangs must not hang `testnet status` (or a test) forever. A
//! command still running at its deadline is killed — it is our own child — and reported.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::lab::LabError;

/// How often a running command is checked for having exited.
const POLL_PAUSE: Duration = Duration::from_millis(5);

/// What a finished command said.
#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    /// The exit status as a sentence fragment (`exit status: 1`).
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The first non-empty line of stderr (or of stdout), for one-sentence errors.
    pub fn first_line(&self) -> String {
        self.stderr
            .lines()
            .chain(self.stdout.lines())
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("no output")
            .to_string()
    }
}

/// Feeds a command's stdin; the pipe is closed when it returns.
pub type Feeder<'a> = Box<dyn FnOnce(&mut ChildStdin) -> std::io::Result<()> + Send + 'a>;

/// Runs `program args...` to completion or until `timeout`, with stdin fed by `feed` (or
/// `/dev/null`), collecting its output.
pub fn execute(
    program: &Path,
    args: &[OsString],
    feed: Option<Feeder<'_>>,
    timeout: Duration,
) -> std::io::Result<Output> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if feed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    std::thread::scope(|scope| {
        // Readers and the feeder run beside the wait, so that neither a full pipe nor a child
        // that stops reading can block us past the deadline.
        let fed = match (feed, stdin) {
            (Some(feed), Some(mut pipe)) => Some(scope.spawn(move || feed(&mut pipe))),
            _ => None,
        };
        let out = scope.spawn(move || read_all(stdout));
        let err = scope.spawn(move || read_all(stderr));
        let waited = wait_until(&mut child, timeout);
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        let fed = fed.map(|handle| {
            handle
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the feeding thread panicked")))
        });
        let status = waited?;
        let output = Output {
            success: status.success(),
            status: status.to_string(),
            stdout,
            stderr,
        };
        // A feeder that failed because the command exited early (a broken pipe) is reported
        // through the command's own failure; one that failed on its own side (reading a file)
        // is an error even if the command then exited cleanly.
        match fed {
            Some(Err(error))
                if output.success || error.kind() != std::io::ErrorKind::BrokenPipe =>
            {
                Err(error)
            }
            _ => Ok(output),
        }
    })
}

fn read_all<R: Read>(pipe: Option<R>) -> String {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Waits for `child` until `timeout`; past it, kills (and reaps) it and says so.
fn wait_until(child: &mut Child, timeout: Duration) -> std::io::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}; it was killed"),
            ));
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

/// Runs `program args...` and fails with [`LabError::CommandFailed`] unless it succeeds;
/// returns its stdout.
pub fn check(
    program: &Path,
    args: &[OsString],
    feed: Option<Feeder<'_>>,
    timeout: Duration,
) -> Result<String, LabError> {
    let output = execute(program, args, feed, timeout)
        .map_err(LabError::io(format!("cannot run {}", show(program, args))))?;
    if output.success {
        Ok(output.stdout)
    } else {
        Err(LabError::CommandFailed {
            command: show(program, args),
            status: output.status.clone(),
            output: output.first_line(),
        })
    }
}

/// `program arg arg` for messages.
pub fn show(program: &Path, args: &[OsString]) -> String {
    let name = program
        .file_name()
        .map(OsStr::to_string_lossy)
        .unwrap_or_else(|| program.to_string_lossy());
    let mut text = name.into_owned();
    for arg in args {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Turns string arguments into what [`execute`] takes.
pub fn os_args<S: AsRef<OsStr>>(args: &[S]) -> Vec<OsString> {
    args.iter().map(|arg| arg.as_ref().to_os_string()).collect()
}

/// `name` in one of the `PATH` directories.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use super::*;

    #[test]
    fn collects_output_and_feeds_stdin() {
        let feed: Feeder<'_> = Box::new(|pipe| pipe.write_all(b"fed\n"));
        let output = execute(
            Path::new("/bin/sh"),
            &os_args(&["-c", "cat; echo oops >&2; exit 3"]),
            Some(feed),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(!output.success);
        assert_eq!(output.stdout, "fed\n");
        assert_eq!(output.first_line(), "oops");
    }

    #[test]
    fn a_command_past_its_deadline_is_killed() {
        let started = Instant::now();
        let error = execute(
            Path::new("/bin/sh"),
            &os_args(&["-c", "exec sleep 30"]),
            None,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
