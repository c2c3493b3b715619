//! Why a chaos run could not produce a verdict, or produced a failing one. Each is one sentence
//! for an operator: what went wrong and where to look.

use std::path::PathBuf;

use crate::lab::LabError;

use super::history::HistoryError;

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("{0}")]
    InvalidArgument(String),

    #[error(transparent)]
    Lab(#[from] LabError),

    #[error(transparent)]
    History(#[from] HistoryError),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("a chaos task failed: {0}")]
    Task(String),

    #[error("interrupted; the testnet was taken down")]
    Interrupted,

    /// The run finished and the verdict, the worker check or the recovery failed.
    #[error("the chaos run failed: {reasons}{}", report_hint(.report))]
    RunFailed {
        reasons: String,
        report: Option<PathBuf>,
    },
}

impl ChaosError {
    /// Wraps an I/O error with what the run was doing when it happened.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ChaosError {
        let context = context.into();
        move |source| ChaosError::Io { context, source }
    }
}

fn report_hint(report: &Option<PathBuf>) -> String {
    match report {
        Some(path) => format!("; the report is {}", path.display()),
        None => String::new(),
    }
}
