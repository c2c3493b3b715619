//! The lab's typed errors. Each is one sentence for an operator: what went wrong and, where we
//! can tell, what to do next (which node, which log, which command).

use std::path::PathBuf;

use symphony_ctl::ClientError;

use crate::harness::HarnessError;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },

    #[error("no testnet in {dir} (no state.json there); start one with `testnet up --dir {dir}`")]
    NoLab { dir: PathBuf },

    #[error(
        "a testnet is already up in {dir}; stop it with `testnet down --dir {dir}` or use another --dir"
    )]
    AlreadyUp { dir: PathBuf },

    #[error("the state file {path} cannot be read: {reason}; `testnet down --dir {dir}` removes what it can", dir = path.parent().map(|dir| dir.display().to_string()).unwrap_or_default())]
    BadState { path: PathBuf, reason: String },

    #[error("{0}")]
    InvalidArgument(String),

    #[error("no node named {name} in this testnet (it has: {known})")]
    NoSuchNode { name: String, known: String },

    #[error("the {backend} backend is not available: {reason}")]
    BackendUnavailable {
        backend: &'static str,
        reason: String,
    },

    #[error(
        "{addr} is already in use (another testnet on the same subnet?); pick another --subnet or run `testnet down` on the other one"
    )]
    AddressInUse { addr: String },

    #[error("{node} failed to start: {reason}; its log is {log}{tail}", tail = log_tail(tail))]
    NodeFailed {
        node: String,
        reason: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{node} is {state}; {hint}")]
    WrongNodeState {
        node: String,
        state: String,
        hint: String,
    },

    #[error("partitions are not available: {reason}")]
    PartitionUnavailable { reason: String },

    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },

    #[error("cannot send {signal} to {node} (pid {pid}): {cause}")]
    Signal {
        node: String,
        pid: u32,
        signal: &'static str,
        cause: std::io::Error,
    },

    #[error("{what} on {node}: {cause}")]
    Control {
        node: String,
        what: String,
        cause: Box<ClientError>,
    },

    #[error(transparent)]
    Harness(#[from] HarnessError),

    #[error("cannot encode the status as JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("`testnet down` could not remove everything: {0}")]
    Cleanup(String),
}

impl LabError {
    /// Wraps an I/O error with what the lab was doing when it happened.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
        let context = context.into();
        move |cause| LabError::Io { context, cause }
    }
}

fn log_tail(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; the end of it:\n{tail}")
    }
}
