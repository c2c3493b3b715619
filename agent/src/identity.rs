//! The node's identity: `key.json` in the config dir, created on first start and never rewritten.
//!
//! Ids are random and non-zero (never derived from a log index), so two nodes can not collide
//! by construction order. A damaged file stops the agent with a clear error and is left as it
//! is: overwriting it would silently turn this machine into a different node.

use std::path::{Path, PathBuf};

use rand::Rng;
use serde::{Deserialize, Serialize};

pub const KEY_FILE: &str = "key.json";

/// Who this node is, across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The node's id in the cluster (managers and workers alike).
    pub node_id: u64,
    /// The node's id as a Raft member, should it be a manager.
    pub raft_node_id: u64,
    /// When the identity was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is damaged ({reason}); it was left untouched. Restore it from a backup, or move it away to make this a brand-new node"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Identity {
    /// Loads `dir/key.json`, or creates it with fresh random ids when there is none.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&path, &bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Self::create(&path),
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Identity, IdentityError> {
        let corrupt = |reason: String| IdentityError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let identity: Identity =
            serde_json::from_slice(bytes).map_err(|error| corrupt(error.to_string()))?;
        if identity.node_id == 0 || identity.raft_node_id == 0 {
            return Err(corrupt("a node id is zero".to_string()));
        }
        Ok(identity)
    }

    fn create(path: &Path) -> Result<Identity, IdentityError> {
        let mut rng = rand::rng();
        let identity = Identity {
            node_id: non_zero(&mut rng),
            raft_node_id: non_zero(&mut rng),
            created_at_ms: crate::now_ms(),
        };
        identity.write(path)?;
        Ok(identity)
    }

    /// The same node with a new Raft id, written to `dir/key.json`: a manager that left its
    /// cluster must never come back under its old Raft id. openraft would let it replay the
    /// old log as a learner, and an old membership in which it was the only voter makes it
    /// elect itself at once (seen in chaos runs: two leaders, then panics on the others).
    /// The node id, which the cluster state knows it by, does not change.
    pub fn renew_raft_id(&self, dir: &Path) -> Result<Identity, IdentityError> {
        let mut rng = rand::rng();
        let renewed = loop {
            let raft_node_id = non_zero(&mut rng);
            if raft_node_id != self.raft_node_id {
                break Identity {
                    raft_node_id,
                    ..self.clone()
                };
            }
        };
        renewed.write(&dir.join(KEY_FILE))?;
        Ok(renewed)
    }

    fn write(&self, path: &Path) -> Result<(), IdentityError> {
        let identity = self;
        let create_error = |source| IdentityError::Create {
            path: path.to_path_buf(),
            source,
        };
        let mut text = serde_json::to_vec_pretty(&identity)
            .map_err(|error| create_error(std::io::Error::other(error)))?;
        text.push(b'\n');
        // Never half written: a crash leaves the old key.json or the new one.
        crate::durable::write_atomically(path, &text).map_err(create_error)
    }
}

fn non_zero(rng: &mut impl Rng) -> u64 {
    loop {
        // Kept below 2^53 so the ids survive JSON tooling that reads numbers as doubles.
        let id = rng.random::<u64>() >> 11;
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        assert_ne!(first.node_id, 0);
        assert_ne!(first.raft_node_id, 0);
        let bytes = std::fs::read(dir.path().join(KEY_FILE)).unwrap();
        let second = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(bytes, std::fs::read(dir.path().join(KEY_FILE)).unwrap());
    }

    #[test]
    fn a_renewed_raft_id_is_new_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let renewed = first.renew_raft_id(dir.path()).unwrap();
        assert_eq!(renewed.node_id, first.node_id);
        assert_ne!(renewed.raft_node_id, first.raft_node_id);
        assert_eq!(Identity::load_or_create(dir.path()).unwrap(), renewed);
    }

    #[test]
    fn damaged_files_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let valid = br#"{"node_id": 7, "raft_node_id": 9, "created_at_ms": 1}"#;
        for damaged in [
            &b"\x00\xffgarbage"[..],
            &valid[..valid.len() / 2],
            br#"{"node_id": 0, "raft_node_id": 9, "created_at_ms": 1}"#,
        ] {
            std::fs::write(&path, damaged).unwrap();
            let error = Identity::load_or_create(dir.path()).unwrap_err();
            assert!(matches!(error, IdentityError::Corrupt { .. }), "{error}");
            assert!(error.to_string().contains("key.json"));
            assert_eq!(std::fs::read(&path).unwrap(), damaged);
        }
        std::fs::write(&path, valid).unwrap();
        assert_eq!(Identity::load_or_create(dir.path()).unwrap().node_id, 7);
    }
}
