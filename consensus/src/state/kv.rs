//! The `kv` table: keys and values with etcd's revisions — one global revision bumped by every
//! put and every effective delete, and per key the revision it was created and last changed
//! at and how often it was written.

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

use super::CommandResult;
use super::table::{Changes, Table};
use crate::codec::{decode, encode};

/// A key's value and its etcd-style revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRecord {
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

/// The KV table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvTable {
    entries: BTreeMap<String, KvRecord>,
    /// Bumped by every put and every effective delete.
    revision: u64,
}

/// Changes to the KV table. With `if_revision`, only if the key's `mod_revision` is that (0:
/// only if the key does not exist); otherwise nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    Put {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        if_revision: Option<u64>,
    },
    Delete {
        key: String,
        if_revision: Option<u64>,
    },
}

/// The name of this table (its rows on disk, its change watch).
pub const TABLE: &str = "sm_kv";
/// Row keys: an entry is `e` and its key, the revision is `r`.
const ENTRY: u8 = b'e';
const REVISION: &[u8] = b"r";

fn entry_row(key: &str) -> Vec<u8> {
    let mut row = Vec::with_capacity(key.len() + 1);
    row.push(ENTRY);
    row.extend_from_slice(key.as_bytes());
    row
}

impl KvTable {
    /// The KV store's global revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn get(&self, key: &str) -> Option<&KvRecord> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys that start with `prefix`, in key order.
    pub fn list<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a KvRecord)> {
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(key, _)| key.starts_with(prefix))
    }

    pub(super) fn apply(&mut self, command: &KvCommand, changes: &mut Changes) -> CommandResult {
        match command {
            KvCommand::Put {
                key,
                value,
                if_revision,
            } => {
                if let Some(failed) = self.compare(key, *if_revision) {
                    return failed;
                }
                self.revision += 1;
                let revision = self.revision;
                let record = match self.entries.remove(key) {
                    Some(old) => KvRecord {
                        value: value.clone(),
                        create_revision: old.create_revision,
                        mod_revision: revision,
                        version: old.version + 1,
                    },
                    None => KvRecord {
                        value: value.clone(),
                        create_revision: revision,
                        mod_revision: revision,
                        version: 1,
                    },
                };
                self.entries.insert(key.clone(), record);
                changes.touch(TABLE, entry_row(key));
                changes.touch(TABLE, REVISION.to_vec());
                CommandResult::KvPut { revision }
            }
            KvCommand::Delete { key, if_revision } => {
                if let Some(failed) = self.compare(key, *if_revision) {
                    return failed;
                }
                if self.entries.remove(key).is_none() {
                    return CommandResult::KvDelete {
                        deleted: false,
                        revision: self.revision,
                    };
                }
                self.revision += 1;
                changes.touch(TABLE, entry_row(key));
                changes.touch(TABLE, REVISION.to_vec());
                CommandResult::KvDelete {
                    deleted: true,
                    revision: self.revision,
                }
            }
        }
    }

    /// The compare of a compare-and-set: `None` when `if_revision` is absent or matches the
    /// key's `mod_revision` (0 for a missing key), else the failure to return.
    fn compare(&self, key: &str, if_revision: Option<u64>) -> Option<CommandResult> {
        let expected = if_revision?;
        let actual = self
            .entries
            .get(key)
            .map_or(0, |record| record.mod_revision);
        (expected != actual).then(|| CommandResult::CompareFailed {
            key: key.to_string(),
            expected,
            actual,
        })
    }
}

impl Table for KvTable {
    fn name(&self) -> &'static str {
        TABLE
    }

    fn row_keys(&self) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self.entries.keys().map(|key| entry_row(key)).collect();
        keys.push(REVISION.to_vec());
        keys
    }

    fn encode_row(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match key.split_first() {
            Some((&ENTRY, name)) => {
                let name = std::str::from_utf8(name)
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                self.entries.get(name).map(encode).transpose()
            }
            _ if key == REVISION => encode(&self.revision).map(Some),
            _ => Ok(None),
        }
    }

    fn load_row(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        match key.split_first() {
            Some((&ENTRY, name)) => {
                let name = String::from_utf8(name.to_vec())
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                self.entries.insert(name, decode(value)?);
            }
            _ if key == REVISION => self.revision = decode(value)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "an unknown row in the KV table",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::{ClusterState, Command};
    use super::*;

    fn put(
        state: &mut ClusterState,
        key: &str,
        value: &str,
        if_revision: Option<u64>,
    ) -> CommandResult {
        let command = Command::Kv(KvCommand::Put {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            if_revision,
        });
        state.apply(&command, &mut Changes::default())
    }

    fn delete(state: &mut ClusterState, key: &str, if_revision: Option<u64>) -> CommandResult {
        let command = Command::Kv(KvCommand::Delete {
            key: key.into(),
            if_revision,
        });
        state.apply(&command, &mut Changes::default())
    }

    #[test]
    fn revisions_follow_etcd() {
        let mut state = ClusterState::default();
        assert_eq!(
            put(&mut state, "a", "1", None),
            CommandResult::KvPut { revision: 1 }
        );
        assert_eq!(
            put(&mut state, "b", "1", None),
            CommandResult::KvPut { revision: 2 }
        );
        assert_eq!(
            put(&mut state, "a", "2", None),
            CommandResult::KvPut { revision: 3 }
        );
        let a = state.kv.get("a").unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 3, 2));
        assert_eq!(a.value, b"2");
        assert_eq!(
            delete(&mut state, "a", None),
            CommandResult::KvDelete {
                deleted: true,
                revision: 4
            }
        );
        assert_eq!(
            delete(&mut state, "a", None),
            CommandResult::KvDelete {
                deleted: false,
                revision: 4
            }
        );
        assert_eq!(
            put(&mut state, "a", "3", None),
            CommandResult::KvPut { revision: 5 }
        );
        let a = state.kv.get("a").unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (5, 5, 1));
    }

    #[test]
    fn compare_and_set() {
        let mut state = ClusterState::default();
        assert_eq!(
            put(&mut state, "k", "v", Some(0)),
            CommandResult::KvPut { revision: 1 }
        );
        assert_eq!(
            put(&mut state, "k", "v", Some(0)),
            CommandResult::CompareFailed {
                key: "k".into(),
                expected: 0,
                actual: 1
            }
        );
        assert_eq!(
            put(&mut state, "k", "w", Some(7)),
            CommandResult::CompareFailed {
                key: "k".into(),
                expected: 7,
                actual: 1
            }
        );
        assert_eq!(state.kv.revision(), 1, "a failed compare writes nothing");
        assert_eq!(
            put(&mut state, "k", "w", Some(1)),
            CommandResult::KvPut { revision: 2 }
        );
        assert_eq!(
            delete(&mut state, "k", Some(1)),
            CommandResult::CompareFailed {
                key: "k".into(),
                expected: 1,
                actual: 2
            }
        );
        assert_eq!(
            delete(&mut state, "k", Some(2)),
            CommandResult::KvDelete {
                deleted: true,
                revision: 3
            }
        );
    }

    #[test]
    fn prefix_listing_is_ordered_and_bounded() {
        let mut state = ClusterState::default();
        for key in ["app/b", "app/a", "apple", "ap", "b"] {
            put(&mut state, key, "x", None);
        }
        let keys: Vec<&str> = state.kv.list("app/").map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["app/a", "app/b"]);
        let keys: Vec<&str> = state.kv.list("ap").map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["ap", "app/a", "app/b", "apple"]);
        assert_eq!(state.kv.list("").count(), 5);
    }

    #[test]
    fn rows_round_trip_through_the_table_interface() {
        let mut state = ClusterState::default();
        put(&mut state, "k", "v", None);
        put(&mut state, "k2", "v", None);
        let mut changes = Changes::default();
        state.apply(
            &Command::Kv(KvCommand::Delete {
                key: "k2".into(),
                if_revision: None,
            }),
            &mut changes,
        );
        let touched: Vec<&Vec<u8>> = changes.of(TABLE).collect();
        assert_eq!(touched.len(), 2, "the entry and the revision");
        assert_eq!(state.kv.encode_row(&entry_row("k2")).unwrap(), None);

        let mut copy = KvTable::default();
        for key in state.kv.row_keys() {
            let value = state.kv.encode_row(&key).unwrap().unwrap();
            copy.load_row(&key, &value).unwrap();
        }
        assert_eq!(copy, state.kv);
    }
}
