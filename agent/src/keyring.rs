//! The node's gossip keyring: the cluster's keys as this node holds them, kept in
//! `gossip-keys.json` (mode 0600) in the config dir so that a restarted node seals and opens
//! gossip before it has heard from any manager.
//!
//! The cluster's keyring lives in the replicated `cluster` table. A manager takes it from its
//! replica; a worker is handed it with its join reply and learns every later version from its
//! session replies (it says which version it holds; a manager with a newer one sends it). All
//! of them [`offer`](KeyringStore::offer) what they got here: a newer version (or another
//! cluster's keyring) is published and written to disk, and the gossip keeper puts it into
//! the driver. What the driver seals with is recorded back here
//! ([`KeyringStore::set_applied`]) — that is what this node reports when the leader asks
//! whether every node has caught up with a rotation.
//!
//! Offers come from the session loop, the join and the gossip keeper; a lock serialises the
//! file writes, and readers only ever see the published snapshot.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use symphony_consensus::GossipKeyring;
use symphony_gossip::{GossipKey, Keyring};
use tokio::sync::watch;

pub const KEYRING_FILE: &str = "gossip-keys.json";

/// A cluster's keyring as this node holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldKeyring {
    pub cluster_id: String,
    pub keyring: GossipKeyring,
}

impl HeldKeyring {
    /// The keyring gossip seals with: `None` for a cluster whose keyring is empty (created
    /// before gossip was sealed), which gossips in the clear.
    pub fn sealing(&self) -> Option<Keyring> {
        to_gossip(&self.keyring)
    }
}

/// What the gossip driver seals with and accepts now, as reported to the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedKeys {
    pub cluster_id: String,
    pub version: u64,
    pub primary: Option<u32>,
    pub ids: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringFileError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The gossip keys of a cluster, as foca's driver takes them.
pub fn to_gossip(keyring: &GossipKeyring) -> Option<Keyring> {
    let primary = keyring.primary?;
    let keys = keyring
        .keys
        .iter()
        .map(|key| (key.id, GossipKey::from_bytes(key.secret.0)));
    match Keyring::new(primary, keys) {
        Ok(keyring) => Some(keyring),
        Err(error) => {
            // The state machine keeps the primary among the keys; a broken file could not.
            tracing::warn!(%error, "the gossip keyring is inconsistent; gossiping without it");
            None
        }
    }
}

/// The node's keyring, on disk and published. See the module documentation.
#[derive(Debug)]
pub struct KeyringStore {
    dir: PathBuf,
    held: watch::Sender<Option<HeldKeyring>>,
    applied: watch::Sender<Option<AppliedKeys>>,
    /// Whether the held keyring is not on disk yet (its write failed); the lock also
    /// serialises writes of the file.
    unsaved: Mutex<bool>,
}

impl KeyringStore {
    /// The keyring in `dir`, if any. A damaged or unreadable file is set aside with a warning
    /// (the node learns the keyring again from a manager) rather than stopping the agent.
    pub fn load(dir: &Path) -> KeyringStore {
        let path = dir.join(KEYRING_FILE);
        let held = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<HeldKeyring>(&bytes) {
                Ok(held) => Some(held),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "the gossip keyring file is damaged; waiting for a manager to hand the keyring over again");
                    None
                }
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the gossip keyring file; waiting for a manager to hand the keyring over again");
                None
            }
        };
        KeyringStore {
            dir: dir.to_path_buf(),
            held: watch::Sender::new(held),
            applied: watch::Sender::new(None),
            unsaved: Mutex::new(false),
        }
    }

    /// The keyring held for `cluster_id`.
    pub fn held(&self, cluster_id: &str) -> Option<HeldKeyring> {
        self.held
            .borrow()
            .as_ref()
            .filter(|held| held.cluster_id == cluster_id)
            .cloned()
    }

    /// The version held for `cluster_id`, for a session request.
    pub fn version(&self, cluster_id: &str) -> Option<u64> {
        self.held(cluster_id).map(|held| held.keyring.version)
    }

    /// Takes `keyring` for `cluster_id` if it is newer than what is held (or belongs to
    /// another cluster than what is held): published, then written to disk. Returns whether
    /// it was taken. A keyring that could not be written (a full disk) is used all the same —
    /// a node must not fall behind a rotation for want of disk space — and the write is tried
    /// again at the next offer.
    pub fn offer(
        &self,
        cluster_id: &str,
        keyring: &GossipKeyring,
    ) -> Result<bool, KeyringFileError> {
        let mut unsaved = self
            .unsaved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = match self.held.borrow().as_ref() {
            Some(held) => held.cluster_id != cluster_id || held.keyring.version < keyring.version,
            None => true,
        };
        if newer {
            tracing::info!(
                version = keyring.version,
                primary = ?keyring.primary,
                keys = keyring.keys.len(),
                "gossip keyring updated"
            );
            self.held.send_replace(Some(HeldKeyring {
                cluster_id: cluster_id.to_string(),
                keyring: keyring.clone(),
            }));
        } else if !*unsaved {
            return Ok(false);
        }
        let Some(held) = self.held.borrow().clone() else {
            return Ok(newer);
        };
        *unsaved = true;
        self.save(&held)?;
        *unsaved = false;
        Ok(newer)
    }

    /// Resolves when a new keyring is held.
    pub fn subscribe(&self) -> watch::Receiver<Option<HeldKeyring>> {
        self.held.subscribe()
    }

    /// Records what the gossip driver now seals with.
    pub fn set_applied(&self, applied: Option<AppliedKeys>) {
        self.applied.send_replace(applied);
    }

    /// What the gossip driver seals with, if it runs.
    pub fn applied(&self) -> Option<AppliedKeys> {
        self.applied.borrow().clone()
    }

    /// Written whole to a temporary file created 0600, synced and renamed over the old one.
    fn save(&self, held: &HeldKeyring) -> Result<(), KeyringFileError> {
        let path = self.dir.join(KEYRING_FILE);
        let bytes = serde_json::to_vec(held).map_err(|json| KeyringFileError::Write {
            path: path.clone(),
            source: std::io::Error::other(json),
        })?;
        crate::durable::write_private(&path, &bytes)
            .map_err(|source| KeyringFileError::Write { path, source })
    }
}

/// The key ids of a gossip keyring, for what this node reports.
pub fn applied(
    cluster_id: &str,
    keyring: &GossipKeyring,
    sealing: Option<&Keyring>,
) -> AppliedKeys {
    AppliedKeys {
        cluster_id: cluster_id.to_string(),
        version: keyring.version,
        primary: sealing.map(Keyring::primary),
        ids: sealing.map(Keyring::ids).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use symphony_consensus::{GossipKeyRecord, KeySecret};

    use super::*;

    fn keyring(version: u64) -> GossipKeyring {
        let mut keyring = GossipKeyring::first(KeySecret([3; 32]), 1);
        keyring.version = version;
        keyring
    }

    #[test]
    fn newer_versions_are_kept_on_disk_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyringStore::load(dir.path());
        assert_eq!(store.held("c"), None);
        assert!(store.offer("c", &keyring(2)).unwrap());
        assert!(!store.offer("c", &keyring(2)).unwrap(), "same version");
        assert!(!store.offer("c", &keyring(1)).unwrap(), "older version");
        let path = dir.path().join(KEYRING_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A restart reads it back.
        let again = KeyringStore::load(dir.path());
        assert_eq!(again.version("c"), Some(2));
        assert_eq!(again.held("other"), None);
        // Another cluster's keyring replaces it whatever its version.
        assert!(again.offer("other", &keyring(1)).unwrap());
        assert_eq!(again.version("other"), Some(1));
        assert_eq!(again.version("c"), None);
    }

    #[test]
    fn a_keyring_that_cannot_be_written_is_used_and_written_later() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("not-yet");
        let store = KeyringStore::load(&dir);
        assert!(store.offer("c", &keyring(2)).is_err());
        assert_eq!(store.version("c"), Some(2), "in use all the same");
        std::fs::create_dir(&dir).unwrap();
        assert!(
            !store.offer("c", &keyring(2)).unwrap(),
            "not newer, but written now"
        );
        assert_eq!(KeyringStore::load(&dir).version("c"), Some(2));
    }

    #[test]
    fn a_damaged_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEYRING_FILE), b"{\"cluster_id\":").unwrap();
        let store = KeyringStore::load(dir.path());
        assert_eq!(store.held("c"), None);
        assert!(store.offer("c", &keyring(1)).unwrap());
    }

    #[test]
    fn the_sealing_keyring_follows_the_cluster_keyring() {
        let mut cluster = keyring(1);
        let sealing = to_gossip(&cluster).unwrap();
        assert_eq!((sealing.primary(), sealing.ids()), (1, vec![1]));
        cluster.keys.push(GossipKeyRecord {
            id: 2,
            secret: KeySecret([4; 32]),
            installed_at_ms: 2,
        });
        let sealing = to_gossip(&cluster).unwrap();
        assert_eq!((sealing.primary(), sealing.ids()), (1, vec![1, 2]));
        assert!(to_gossip(&GossipKeyring::default()).is_none());
        let shown = format!("{:?}", applied("c", &cluster, Some(&sealing)));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
