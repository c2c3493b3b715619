//! `worker.json`: what a worker remembers of its cluster across restarts.
//!
//! A manager's membership lives in its Raft store; a worker has none, so this file is what
//! makes a restarted worker the same member of the same cluster: the cluster id (which also
//! tags its gossip packets), the secret it proves itself with, and the managers it last knew,
//! to find the cluster again without a token. It is written whole to a temporary file, synced
//! and renamed over the old one, so a crash leaves either the old or the new version.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const WORKER_FILE: &str = "worker.json";

/// A manager as a worker knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerContact {
    pub node_id: u64,
    /// Its node-to-node API (TCP): sessions, joins, leave notices.
    pub remote_addr: String,
    /// Where it gossips (UDP), when known.
    pub gossip_addr: Option<String>,
}

/// A worker's membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerState {
    pub cluster_id: String,
    /// Issued by the leader at join; sessions and the leave notice carry it.
    pub node_secret: String,
    /// The managers this worker last knew (refreshed by its session).
    pub managers: Vec<ManagerContact>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerStateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is damaged ({reason}); it was left untouched. Restore it, or remove it and join the cluster again with a worker token"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl WorkerState {
    /// The worker state in `dir`, or `None` when this node is not a worker.
    pub fn load(dir: &Path) -> Result<Option<WorkerState>, WorkerStateError> {
        let path = dir.join(WORKER_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(WorkerStateError::Read { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| WorkerStateError::Corrupt {
                path,
                reason: error.to_string(),
            })
    }

    /// Writes the state to `dir` atomically and durably.
    pub fn save(&self, dir: &Path) -> Result<(), WorkerStateError> {
        let path = dir.join(WORKER_FILE);
        let error = |source| WorkerStateError::Write {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|json| error(std::io::Error::other(json.to_string())))?;
        crate::durable::write_atomically(&path, &bytes).map_err(error)
    }

    /// Forgets the membership: the node is no longer a worker.
    pub fn remove(dir: &Path) -> Result<(), WorkerStateError> {
        let path = dir.join(WORKER_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(WorkerStateError::Write { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn state() -> WorkerState {
        WorkerState {
            cluster_id: "c".into(),
            node_secret: "s".into(),
            managers: vec![ManagerContact {
                node_id: 1,
                remote_addr: "127.0.0.1:27242".into(),
                gossip_addr: Some("127.0.0.1:27242".into()),
            }],
        }
    }

    #[test]
    fn saves_loads_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(WorkerState::load(dir.path()).unwrap(), None);
        state().save(dir.path()).unwrap();
        assert_eq!(WorkerState::load(dir.path()).unwrap(), Some(state()));
        WorkerState::remove(dir.path()).unwrap();
        WorkerState::remove(dir.path()).unwrap();
        assert_eq!(WorkerState::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_damaged_file_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WORKER_FILE), b"{\"cluster_id\": ").unwrap();
        let error = WorkerState::load(dir.path()).unwrap_err();
        assert!(matches!(error, WorkerStateError::Corrupt { .. }), "{error}");
        assert!(dir.path().join(WORKER_FILE).exists());
    }
}
