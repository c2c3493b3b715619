//! The `docker` command, with a deadline on every call (see [`crate::lab::exec`]).
//!
//! Why the CLI rather than the Engine API (bollard): every call the backend makes is coarse
//! (create a network, run a container, kill it), so a process per call costs nothing that
//! matters; the CLI negotiates the API version with whatever daemon answers (a 28.x client
//! talks to older engines that speak API 1.41); it finds the daemon the way the operator's own
//! `docker` does (contexts, `DOCKER_HOST`); and a failure reads as the command an operator can
//! run by hand. No HTTP client stack is added to the workspace for it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lab::LabError;
use crate::lab::exec::{Feeder, Output, check, execute, find_on_path, os_args, show};

/// How long an ordinary docker command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `docker info` may take when deciding whether Docker is usable at all.
const DETECT_TIMEOUT: Duration = Duration::from_secs(20);

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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
