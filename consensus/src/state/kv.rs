//! The `kv` table: keys and values with etcd's revisions — one global revision bumped by every
//! put and every effective delete, and per key the revision it was created and last changed
//! at and how often it was written — and the recent history of changes
//! ([`super::kv_history`]), for watches and reads as of a revision.

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

use super::CommandResult;
use super::kv_history::{KvChange, KvCompacted, KvHistory};
use super::table::{Changes, Table, key_u64, u64_key};
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
    /// The changes of the last revisions.
    history: KvHistory,
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
    /// Keeps the changes of the last `revisions` revisions (at least
    /// [`super::kv_history::MIN_KEEP`]) for watches and reads as of a revision.
    KeepHistory { revisions: u64 },
}

/// The name of this table (its rows on disk, its change watch).
pub const TABLE: &str = "sm_kv";
/// Row keys: an entry is `e` and its key, the revision is `r`, a change of the history `h` and
/// its revision (big-endian), the history's bounds `b`.
const ENTRY: u8 = b'e';
const REVISION: &[u8] = b"r";
const CHANGE: u8 = b'h';
const BOUNDS: &[u8] = b"b";

fn change_row(revision: u64) -> Vec<u8> {
    let mut row = vec![CHANGE];
    row.extend_from_slice(&u64_key(revision));
    row
}

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

    /// The history of changes.
    pub fn history(&self) -> &KvHistory {
        &self.history
    }

    /// `key` as of `revision`: compacted revisions are refused, and so are revisions not yet
    /// made (`Ok(Err(now))`, with the current revision).
    pub fn get_at(
        &self,
        key: &str,
        revision: u64,
    ) -> Result<Result<Option<KvRecord>, u64>, KvCompacted> {
        if revision > self.revision {
            return Ok(Err(self.revision));
        }
        self.history
            .at(key, revision, self.entries.get(key))
            .map(Ok)
    }

    /// Records a change in the history and marks the rows it touched.
    fn remember(&mut self, change: KvChange, changes: &mut Changes) {
        let dropped = self.history.record(self.revision, change);
        changes.touch(TABLE, change_row(self.revision));
        self.touch_dropped(dropped, changes);
    }

    fn touch_dropped(&self, dropped: Vec<u64>, changes: &mut Changes) {
        if !dropped.is_empty() {
            changes.touch(TABLE, BOUNDS.to_vec());
        }
        for revision in dropped {
            changes.touch(TABLE, change_row(revision));
        }
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
                // One search of the map (a put is applied on every replica, for every write).
                let (record, prev) = match self.entries.entry(key.clone()) {
                    std::collections::btree_map::Entry::Occupied(mut slot) => {
                        let old = slot.get();
                        let record = KvRecord {
                            value: value.clone(),
                            create_revision: old.create_revision,
                            mod_revision: revision,
                            version: old.version + 1,
                        };
                        let prev = std::mem::replace(slot.get_mut(), record.clone());
                        (record, Some(prev))
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        let record = KvRecord {
                            value: value.clone(),
                            create_revision: revision,
                            mod_revision: revision,
                            version: 1,
                        };
                        slot.insert(record.clone());
                        (record, None)
                    }
                };
                changes.touch(TABLE, entry_row(key));
                changes.touch(TABLE, REVISION.to_vec());
                let change = KvChange {
                    key: key.clone(),
                    record: Some(record),
                    prev,
                };
                self.remember(change, changes);
                CommandResult::KvPut { revision }
            }
            KvCommand::Delete { key, if_revision } => {
                if let Some(failed) = self.compare(key, *if_revision) {
                    return failed;
                }
                let Some(prev) = self.entries.remove(key) else {
                    return CommandResult::KvDelete {
                        deleted: false,
                        revision: self.revision,
                    };
                };
                self.revision += 1;
                changes.touch(TABLE, entry_row(key));
                changes.touch(TABLE, REVISION.to_vec());
                let change = KvChange {
                    key: key.clone(),
                    record: None,
                    prev: Some(prev),
                };
                self.remember(change, changes);
                CommandResult::KvDelete {
                    deleted: true,
                    revision: self.revision,
                }
            }
            KvCommand::KeepHistory { revisions } => {
                let dropped = self.history.set_keep(*revisions);
                changes.touch(TABLE, BOUNDS.to_vec());
                self.touch_dropped(dropped, changes);
                CommandResult::Done
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
        keys.push(BOUNDS.to_vec());
        keys.extend(self.history.revisions().map(change_row));
        keys
    }

    fn encode_row(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match key.split_first() {
            Some((&ENTRY, name)) => {
                let name = std::str::from_utf8(name)
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                self.entries.get(name).map(encode).transpose()
            }
            Some((&CHANGE, revision)) => {
                self.history.get(key_u64(revision)?).map(encode).transpose()
            }
            _ if key == REVISION => encode(&self.revision).map(Some),
            _ if key == BOUNDS => {
                encode(&(self.history.compacted_through(), self.history.keep())).map(Some)
            }
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
            Some((&CHANGE, revision)) => self.history.load(key_u64(revision)?, decode(value)?),
            _ if key == REVISION => self.revision = decode(value)?,
            _ if key == BOUNDS => {
                let (compacted_through, keep) = decode(value)?;
                self.history.load_bounds(compacted_through, keep);
            }
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
        assert_eq!(touched.len(), 3, "the entry, the revision and the change");
        assert_eq!(state.kv.encode_row(&entry_row("k2")).unwrap(), None);

        state.apply(
            &Command::Kv(KvCommand::KeepHistory { revisions: 1 }),
            &mut Changes::default(),
        );
        let mut copy = KvTable::default();
        for key in state.kv.row_keys() {
            let value = state.kv.encode_row(&key).unwrap().unwrap();
            copy.load_row(&key, &value).unwrap();
        }
        assert_eq!(copy, state.kv);
        assert_eq!(copy.history().len(), 3);
    }

    #[test]
    fn every_write_is_in_the_history_with_what_it_replaced() {
        let mut state = ClusterState::default();
        put(&mut state, "a", "1", None);
        put(&mut state, "a", "2", None);
        put(&mut state, "b", "1", Some(7)); // fails: no change
        delete(&mut state, "a", None);
        delete(&mut state, "a", None); // nothing to delete: no change
        let super::super::kv_history::KvRead { changes, last } =
            state.kv.history().after(0, "", 100, usize::MAX).unwrap();
        type Seen<'a> = (u64, Option<&'a [u8]>, Option<&'a [u8]>);
        let seen: Vec<Seen> = changes
            .iter()
            .map(|(revision, change)| {
                (
                    *revision,
                    change.record.as_ref().map(|r| r.value.as_slice()),
                    change.prev.as_ref().map(|r| r.value.as_slice()),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (1, Some(&b"1"[..]), None),
                (2, Some(&b"2"[..]), Some(&b"1"[..])),
                (3, None, Some(&b"2"[..]))
            ]
        );
        assert_eq!(last, Some(3));
        assert_eq!(
            state.kv.get_at("a", 1).unwrap().unwrap().unwrap().value,
            b"1"
        );
        assert_eq!(state.kv.get_at("a", 3).unwrap().unwrap(), None);
        assert_eq!(
            state.kv.get_at("a", 4).unwrap(),
            Err(3),
            "a future revision"
        );
    }

    #[test]
    fn compaction_is_the_same_on_every_replica_and_persisted() {
        let mut state = ClusterState::default();
        state.apply(
            &Command::Kv(KvCommand::KeepHistory { revisions: 0 }),
            &mut Changes::default(),
        );
        assert_eq!(
            state.kv.history().keep(),
            super::super::kv_history::MIN_KEEP
        );
        let mut changes = Changes::default();
        for i in 0..150 {
            state.apply(
                &Command::Kv(KvCommand::Put {
                    key: format!("k{}", i % 7),
                    value: vec![1],
                    if_revision: None,
                }),
                &mut changes,
            );
        }
        assert_eq!(state.kv.history().compacted_through(), 50);
        assert!(
            changes.contains(TABLE, &change_row(1)),
            "a dropped change's row goes"
        );
        assert_eq!(state.kv.encode_row(&change_row(1)).unwrap(), None);
        assert_eq!(
            state
                .kv
                .history()
                .after(49, "", 10, usize::MAX)
                .unwrap_err()
                .oldest,
            51
        );
        assert!(state.kv.get_at("k1", 49).is_err());
        // The value at a kept revision, though written before it.
        let at_60 = state.kv.get_at("k0", 60).unwrap().unwrap().unwrap();
        assert!(at_60.mod_revision <= 60 && at_60.mod_revision > 53);
    }
}
