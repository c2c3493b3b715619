//! The cluster's gossip keyring, a part of the `cluster` table: the keys every node accepts
//! gossip under, and the primary one they seal with.
//!
//! Changed only by [`GossipKeyCommand`]s merged into the keyring the log has built (install,
//! use, remove), never by a keyring read from a replica and proposed back. Every change bumps
//! [`GossipKeyring::version`], which nodes compare with theirs to learn they are behind. Ids
//! count up and are never reused, so an id names one key for the cluster's whole life.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::CommandResult;

/// How many keys may be installed at once: a rotation needs two; more means old keys were
/// never removed.
pub const MAX_KEYS: usize = 8;

/// A key's 32 secret bytes. `Debug` shows none of them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeySecret(pub [u8; 32]);

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySecret(<secret>)")
    }
}

/// One installed key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipKeyRecord {
    pub id: u32,
    pub secret: KeySecret,
    pub installed_at_ms: u64,
}

/// The keyring. Empty (`primary: None`) only in a cluster created before gossip was sealed;
/// such a cluster gossips in the clear.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipKeyring {
    /// Bumped by every change.
    pub version: u64,
    /// The key packets are sealed with.
    pub primary: Option<u32>,
    /// Installed keys, by id.
    pub keys: Vec<GossipKeyRecord>,
    /// The id the next installed key gets.
    pub next_id: u32,
}

/// Changes to the keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipKeyCommand {
    /// Adds a key (chosen by the proposer, from the OS's RNG); nodes accept it at once and
    /// seal with it only once it is `Use`d.
    Install { secret: KeySecret, at_ms: u64 },
    /// Makes an installed key the primary.
    Use { id: u32 },
    /// Uninstalls a key that is not the primary.
    Remove { id: u32 },
}

impl GossipKeyring {
    /// The keyring of a new cluster: `secret` as key 1, the primary.
    pub fn first(secret: KeySecret, at_ms: u64) -> GossipKeyring {
        GossipKeyring {
            version: 1,
            primary: Some(1),
            keys: vec![GossipKeyRecord {
                id: 1,
                secret,
                installed_at_ms: at_ms,
            }],
            next_id: 2,
        }
    }

    pub fn get(&self, id: u32) -> Option<&GossipKeyRecord> {
        self.keys.iter().find(|key| key.id == id)
    }

    /// Applies `command` as a merge; a refusal changes nothing.
    pub(super) fn apply(&mut self, command: &GossipKeyCommand) -> CommandResult {
        let refuse = |reason: String| CommandResult::Rejected { reason };
        match command {
            GossipKeyCommand::Install { secret, at_ms } => {
                if self.primary.is_none() {
                    return refuse(
                        "this cluster was created before gossip was encrypted and has no gossip keyring"
                            .to_string(),
                    );
                }
                if self.keys.len() >= MAX_KEYS {
                    return refuse(format!(
                        "{MAX_KEYS} gossip keys are installed already; remove one that is not the primary first"
                    ));
                }
                let id = self.next_id.max(1);
                self.next_id = id.saturating_add(1);
                self.keys.push(GossipKeyRecord {
                    id,
                    secret: secret.clone(),
                    installed_at_ms: *at_ms,
                });
                self.keys.sort_by_key(|key| key.id);
                self.changed(id)
            }
            GossipKeyCommand::Use { id } => {
                if self.get(*id).is_none() {
                    return refuse(format!("gossip key {id} is not installed"));
                }
                if self.primary == Some(*id) {
                    return CommandResult::GossipKey {
                        id: *id,
                        version: self.version,
                    };
                }
                self.primary = Some(*id);
                self.changed(*id)
            }
            GossipKeyCommand::Remove { id } => {
                if self.primary == Some(*id) {
                    return refuse(format!(
                        "gossip key {id} is the primary; use another key first"
                    ));
                }
                let before = self.keys.len();
                self.keys.retain(|key| key.id != *id);
                if self.keys.len() == before {
                    return refuse(format!("gossip key {id} is not installed"));
                }
                self.changed(*id)
            }
        }
    }

    fn changed(&mut self, id: u32) -> CommandResult {
        self.version = self.version.saturating_add(1);
        CommandResult::GossipKey {
            id,
            version: self.version,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn install(ring: &mut GossipKeyring, byte: u8) -> CommandResult {
        ring.apply(&GossipKeyCommand::Install {
            secret: KeySecret([byte; 32]),
            at_ms: 5,
        })
    }

    #[test]
    fn install_use_remove_bump_the_version_and_never_reuse_ids() {
        let mut ring = GossipKeyring::first(KeySecret([1; 32]), 1);
        assert_eq!(
            install(&mut ring, 2),
            CommandResult::GossipKey { id: 2, version: 2 }
        );
        assert_eq!(ring.primary, Some(1));
        assert_eq!(
            ring.apply(&GossipKeyCommand::Use { id: 2 }),
            CommandResult::GossipKey { id: 2, version: 3 }
        );
        // Using the primary again changes nothing.
        assert_eq!(
            ring.apply(&GossipKeyCommand::Use { id: 2 }),
            CommandResult::GossipKey { id: 2, version: 3 }
        );
        assert_eq!(
            ring.apply(&GossipKeyCommand::Remove { id: 1 }),
            CommandResult::GossipKey { id: 1, version: 4 }
        );
        assert_eq!(
            install(&mut ring, 3),
            CommandResult::GossipKey { id: 3, version: 5 }
        );
        let ids: Vec<u32> = ring.keys.iter().map(|key| key.id).collect();
        assert_eq!(ids, [2, 3]);
    }

    #[test]
    fn refusals_change_nothing() {
        let mut ring = GossipKeyring::first(KeySecret([1; 32]), 1);
        let before = ring.clone();
        for command in [
            GossipKeyCommand::Remove { id: 1 },
            GossipKeyCommand::Remove { id: 9 },
            GossipKeyCommand::Use { id: 9 },
        ] {
            assert!(matches!(
                ring.apply(&command),
                CommandResult::Rejected { .. }
            ));
            assert_eq!(ring, before);
        }
        for byte in 2..=MAX_KEYS as u8 {
            install(&mut ring, byte);
        }
        let full = ring.clone();
        assert!(matches!(
            install(&mut ring, 99),
            CommandResult::Rejected { .. }
        ));
        assert_eq!(ring, full);
        // A cluster from before sealing has no keyring to add to.
        let mut legacy = GossipKeyring::default();
        assert!(matches!(
            install(&mut legacy, 1),
            CommandResult::Rejected { .. }
        ));
        assert_eq!(legacy, GossipKeyring::default());
    }

    #[test]
    fn secrets_are_not_shown() {
        let ring = GossipKeyring::first(KeySecret([0xab; 32]), 1);
        let shown = format!("{ring:?}");
        assert!(!shown.contains("171") && !shown.contains("ab, "), "{shown}");
    }
}
