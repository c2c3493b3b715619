//! The harness's typed errors: each says what failed and, where it can, what to do about it.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use symphony_ctl::ClientError;

use crate::lab::LabError;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "the symphony-agent binary was not found (looked at: {}); run `cargo build -p symphony-agent` first, or set {} (or --agent-bin) to its path",
        display_paths(searched),
        super::AGENT_BIN_ENV
    )]
    AgentBinaryNotFound { searched: Vec<PathBuf> },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the agent in {dir} exited ({status}) before it answered on its control socket; the end of its log:\n{log_tail}"
    )]
    ExitedEarly {
        dir: PathBuf,
        status: ExitStatus,
        log_tail: String,
    },

    #[error(
        "the agent in {dir} did not answer `status` on its control socket within {waited:?} (last failure: {last}); the end of its log:\n{log_tail}"
    )]
    NotReady {
        dir: PathBuf,
        waited: Duration,
        last: String,
        log_tail: String,
    },

    #[error("timed out after {waited:?} waiting for {what} (last failure: {last})")]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },

    #[error(
        "the agent in {dir} is still running; stop it (kill9 or terminate) before starting it again"
    )]
    StillRunning { dir: PathBuf },

    #[error("the agent in {dir} is not running")]
    NotRunning { dir: PathBuf },

    #[error("no free TCP port on 127.0.0.1 after {attempts} attempts")]
    NoFreePort { attempts: usize },

    #[error("no node {index} in a cluster of {count}")]
    NoSuchNode { index: usize, count: usize },

    #[error("no running member of the cluster is left to ask")]
    NoLiveMember,

    #[error("{node} has not answered on its control socket yet (wait for it first)")]
    NotAnswered { node: String },

    #[error("{command} failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        output: String,
    },

    #[error(
        "{lost} of {acknowledged} acknowledged writes are missing or changed on node {node}; the first: {examples}"
    )]
    LostWrites {
        node: String,
        acknowledged: usize,
        lost: usize,
        examples: String,
    },

    #[error(transparent)]
    Client(#[from] ClientError),

    /// What the lab underneath a [`super::Cluster`] could not do.
    #[error(transparent)]
    Lab(Box<LabError>),
}

impl From<LabError> for HarnessError {
    fn from(error: LabError) -> HarnessError {
        match error {
            // The lab's own waits fail with harness errors: no need to wrap them twice.
            LabError::Harness(inner) => inner,
            other => HarnessError::Lab(Box::new(other)),
        }
    }
}

impl HarnessError {
    /// Wraps an I/O error with what the harness was doing when it happened.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
        let context = context.into();
        move |source| HarnessError::Io { context, source }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
