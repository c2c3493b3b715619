//! Running the `docker` command (and the other host tools the docker backend needs: `ldd`,
//! `nft`), always with a deadline.
//!
//! Why the CLI rather than the Engine API (bollard): every call the backend makes is coarse
//! (create a network, run a container, kill it), so a process per call costs nothing that
//! matters; the CLI negotiates the API version with whatever daemon answers (a 28.x client
//! talks to older engines that speak API 1.41); it finds the daemon the way the operator's own
//! `docker` does (contexts, `DOCKER_HOST`); and a failure reads as the command an operator can
//! run by hand. No HTTP client stack is added to the workspace for it.
//!
//! Why deadlines: a daemon that hangs must not hang `testnet status` (or a test) forever. A
//! command still running at its deadline is killed — it is our own child — and reported.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::lab::LabError;

/// How long an ordinary docker command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `docker info` may take when deciding whether Docker is usable at all.
const DETECT_TIMEOUT: Duration = Duration::from_secs(20);
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

/// The `docker` command, found and answering.
#[derive(Debug, Clone)]
pub struct Docker {
    bin: PathBuf,
}

impl Docker {
    /// Finds `docker` on the `PATH` and checks that its daemon answers, or says in one sentence
    /// why Docker cannot be used here.
    pub fn detect() -> Result<Docker, String> {
        match find_on_path("docker") {
            Some(bin) => Docker::detect_at(&bin),
            None => Err(
                "Docker is not installed here (no `docker` command on the PATH); install Docker, or use --backend local"
                    .to_string(),
            ),
        }
    }

    /// Like [`Docker::detect`], for the `docker` command at `bin`.
    pub fn detect_at(bin: &Path) -> Result<Docker, String> {
        let args = os_args(&["info", "--format", "{{.ServerVersion}}"]);
        match execute(bin, &args, None, DETECT_TIMEOUT) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "Docker is not installed here ({} does not exist); install Docker, or use --backend local",
                bin.display()
            )),
            Err(error) => Err(format!(
                "the Docker daemon does not answer (`docker info`: {error}); start it, or use --backend local"
            )),
            Ok(output) if !output.success || output.stdout.trim().is_empty() => Err(format!(
                "the Docker daemon does not answer (`docker info` says: {}); start it (e.g. `systemctl start docker`) or check your access to it, or use --backend local",
                output.first_line().trim_end_matches('.')
            )),
            Ok(_) => Ok(Docker {
                bin: bin.to_path_buf(),
            }),
        }
    }

    /// `docker args...`, which must succeed; returns its stdout, trimmed.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String, LabError> {
        check(&self.bin, &os_args(args), None, COMMAND_TIMEOUT).map(|out| out.trim().to_string())
    }

    /// `docker args...` whatever its outcome, for callers that look at the failure.
    pub fn output<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output, LabError> {
        let args = os_args(args);
        execute(&self.bin, &args, None, COMMAND_TIMEOUT).map_err(LabError::io(format!(
            "cannot run {}",
            show(&self.bin, &args)
        )))
    }

    /// `docker args...` with stdin fed by `feed`, which must succeed within `timeout`.
    pub fn run_feeding(
        &self,
        args: &[OsString],
        feed: Feeder<'_>,
        timeout: Duration,
    ) -> Result<String, LabError> {
        check(&self.bin, args, Some(feed), timeout).map(|out| out.trim().to_string())
    }

    /// A failed command as the lab reports it.
    pub fn failed<S: AsRef<OsStr>>(&self, args: &[S], output: &Output) -> LabError {
        LabError::CommandFailed {
            command: show(&self.bin, &os_args(args)),
            status: output.status.clone(),
            output: output.first_line(),
        }
    }
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

    #[test]
    fn missing_or_dead_docker_is_one_clear_sentence() {
        let missing = Docker::detect_at(Path::new("/nonexistent/docker")).unwrap_err();
        assert!(missing.contains("not installed"), "{missing}");
        assert!(missing.contains("--backend local"), "{missing}");

        // A `docker` whose `info` fails, as it does when the daemon is down.
        let dead = Docker::detect_at(Path::new("/bin/false")).unwrap_err();
        assert!(dead.contains("does not answer"), "{dead}");
        assert!(!dead.contains('\n'), "{dead}");
    }
}
