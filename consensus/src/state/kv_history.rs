//! The KV store's recent history: every put and delete of the last revisions, kept in the
//! replicated state, for `kv watch` and `kv get --revision`.
//!
//! Why in the state and not beside it: a watcher that loses its manager resumes on another
//! from the last revision it saw, and a manager that restarts must still serve it. So the
//! history is part of what every replica applies, persists (one row per change, in the KV
//! table's rows) and carries in snapshots, and its compaction is deterministic — the same
//! revisions are dropped on every replica, at the same point of the log.
//!
//! The history is bounded twice: at most [`KvHistory::keep`] revisions (a cluster setting,
//! `kv history --keep`, default [`DEFAULT_KEEP`]) and at most [`MAX_BYTES`] of keys and values.
//! Each change carries the record it replaced, so the value of a key at any kept revision is
//! known even when the key was last written long before the oldest kept change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kv::KvRecord;

/// Revisions kept unless the cluster was told otherwise.
pub const DEFAULT_KEEP: u64 = 10_000;
/// The fewest revisions an operator may keep.
pub const MIN_KEEP: u64 = 100;
/// Keys and values the history holds at most, whatever the revision count.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// One put or delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvChange {
    pub key: String,
    /// The record after a put; `None` for a delete.
    pub record: Option<KvRecord>,
    /// The record it replaced (`None`: the key did not exist).
    pub prev: Option<KvRecord>,
}

impl KvChange {
    fn bytes(&self) -> u64 {
        let value = |record: &Option<KvRecord>| record.as_ref().map_or(0, |r| r.value.len());
        u64::try_from(self.key.len() + value(&self.record) + value(&self.prev) + 64)
            .unwrap_or(u64::MAX)
    }
}

/// What a reader asked for is no longer kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("revision {requested} was compacted; the oldest revision still kept is {oldest}")]
pub struct KvCompacted {
    pub requested: u64,
    /// The oldest revision a watch may start from, or a read be made at.
    pub oldest: u64,
}

/// What one read of the history found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvRead {
    /// The changes wanted, with their revisions, in order.
    pub changes: Vec<(u64, KvChange)>,
    /// The last revision looked at (wanted or not): where the next read goes on from.
    pub last: Option<u64>,
}

/// The history of the KV table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvHistory {
    changes: BTreeMap<u64, KvChange>,
    /// Every change after this revision is in `changes`.
    compacted_through: u64,
    /// Revisions kept.
    keep: u64,
    /// The size of `changes`, as [`KvChange::bytes`] counts it.
    bytes: u64,
}

impl Default for KvHistory {
    fn default() -> Self {
        KvHistory {
            changes: BTreeMap::new(),
            compacted_through: 0,
            keep: DEFAULT_KEEP,
            bytes: 0,
        }
    }
}

impl KvHistory {
    /// Revisions kept at most.
    pub fn keep(&self) -> u64 {
        self.keep
    }

    /// Every change after this revision is kept.
    pub fn compacted_through(&self) -> u64 {
        self.compacted_through
    }

    /// The oldest revision a watch may start from (and a read be made at).
    pub fn oldest(&self) -> u64 {
        self.compacted_through.saturating_add(1)
    }

    /// The changes kept.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Records the change made at `revision` and drops what the bounds no longer allow; the
    /// revisions dropped are returned (their rows go).
    pub(super) fn record(&mut self, revision: u64, change: KvChange) -> Vec<u64> {
        self.bytes = self.bytes.saturating_add(change.bytes());
        self.changes.insert(revision, change);
        self.compact()
    }

    /// Keeps at most `keep` revisions from now on; the revisions dropped are returned.
    pub(super) fn set_keep(&mut self, keep: u64) -> Vec<u64> {
        self.keep = keep.max(MIN_KEEP);
        self.compact()
    }

    fn compact(&mut self) -> Vec<u64> {
        let mut dropped = Vec::new();
        while u64::try_from(self.changes.len()).unwrap_or(u64::MAX) > self.keep
            || (self.bytes > MAX_BYTES && self.changes.len() > 1)
        {
            let Some((revision, change)) = self.changes.pop_first() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(change.bytes());
            self.compacted_through = revision;
            dropped.push(revision);
        }
        dropped
    }

    /// The changes after revision `after` to keys starting with `prefix`, in revision order,
    /// at most `max` of them and about `max_bytes` (at least one); `Err` when some were
    /// compacted. Also says the last revision looked at, so that a reader moves past changes
    /// to other keys.
    pub fn after(
        &self,
        after: u64,
        prefix: &str,
        max: usize,
        max_bytes: usize,
    ) -> Result<KvRead, KvCompacted> {
        if after < self.compacted_through {
            return Err(KvCompacted {
                requested: after.saturating_add(1),
                oldest: self.compacted_through.saturating_add(1),
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut last = None;
        for (revision, change) in self.changes.range(after.saturating_add(1)..) {
            if out.len() >= max || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            last = Some(*revision);
            if change.key.starts_with(prefix) {
                bytes += usize::try_from(change.bytes()).unwrap_or(usize::MAX);
                out.push((*revision, change.clone()));
            }
        }
        Ok(KvRead { changes: out, last })
    }

    /// The record of `key` as of `revision` (which must be kept and not in the future:
    /// `current` is the KV table's revision), given the record it has now.
    pub fn at(
        &self,
        key: &str,
        revision: u64,
        now: Option<&KvRecord>,
    ) -> Result<Option<KvRecord>, KvCompacted> {
        if revision < self.compacted_through {
            return Err(KvCompacted {
                requested: revision,
                oldest: self.compacted_through.saturating_add(1),
            });
        }
        // The first change of the key after `revision` knows what it was then; with none, it
        // is what it is now.
        let later = self
            .changes
            .range(revision.saturating_add(1)..)
            .find(|(_, change)| change.key == key);
        Ok(match later {
            Some((_, change)) => change.prev.clone(),
            None => now.cloned(),
        })
    }

    /// The change at `revision`, for its row.
    pub(super) fn get(&self, revision: u64) -> Option<&KvChange> {
        self.changes.get(&revision)
    }

    pub(super) fn revisions(&self) -> impl Iterator<Item = u64> + '_ {
        self.changes.keys().copied()
    }

    /// Loads one kept change (from the store's rows).
    pub(super) fn load(&mut self, revision: u64, change: KvChange) {
        self.bytes = self.bytes.saturating_add(change.bytes());
        self.changes.insert(revision, change);
    }

    pub(super) fn load_bounds(&mut self, compacted_through: u64, keep: u64) {
        self.compacted_through = compacted_through;
        self.keep = keep;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(value: &str, revision: u64) -> KvRecord {
        KvRecord {
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: revision,
            version: revision,
        }
    }

    fn put(history: &mut KvHistory, revision: u64, key: &str, prev: Option<KvRecord>) {
        history.record(
            revision,
            KvChange {
                key: key.into(),
                record: Some(record(&format!("v{revision}"), revision)),
                prev,
            },
        );
    }

    #[test]
    fn readers_get_changes_in_order_by_prefix_and_are_told_of_compaction() {
        let mut history = KvHistory::default();
        history.set_keep(MIN_KEEP);
        for revision in 1..=MIN_KEEP + 10 {
            let key = if revision % 2 == 0 { "a/x" } else { "b/y" };
            put(&mut history, revision, key, None);
        }
        assert_eq!(history.len() as u64, MIN_KEEP);
        assert_eq!(history.compacted_through(), 10);
        let KvRead { changes, last } = history.after(10, "a/", 1_000, usize::MAX).unwrap();
        assert!(
            changes
                .iter()
                .all(|(revision, c)| revision % 2 == 0 && c.key == "a/x")
        );
        assert_eq!(changes.first().unwrap().0, 12);
        assert_eq!(last, Some(MIN_KEEP + 10));
        let KvRead { changes, last } = history.after(10, "", 3, usize::MAX).unwrap();
        assert_eq!(
            changes.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
            [11, 12, 13]
        );
        assert_eq!(last, Some(13));
        assert_eq!(
            history.after(9, "", 10, usize::MAX),
            Err(KvCompacted {
                requested: 10,
                oldest: 11
            })
        );
    }

    #[test]
    fn a_key_is_read_as_of_a_kept_revision() {
        let mut history = KvHistory::default();
        // k was written at 3 (not in the history), then at 5 and deleted at 7.
        let at3 = record("v3", 3);
        history.load_bounds(4, DEFAULT_KEEP);
        put(&mut history, 5, "k", Some(at3.clone()));
        put(&mut history, 6, "other", None);
        let at5 = record("v5", 5);
        history.record(
            7,
            KvChange {
                key: "k".into(),
                record: None,
                prev: Some(at5.clone()),
            },
        );
        assert_eq!(history.at("k", 4, None).unwrap(), Some(at3));
        assert_eq!(history.at("k", 6, None).unwrap(), Some(at5));
        assert_eq!(history.at("k", 7, None).unwrap(), None);
        assert_eq!(history.at("k", 3, None).unwrap_err().oldest, 5);
    }

    #[test]
    fn large_values_are_bounded_by_bytes() {
        let mut history = KvHistory::default();
        let big = vec![0u8; 1024 * 1024];
        for revision in 1..=100 {
            history.record(
                revision,
                KvChange {
                    key: "k".into(),
                    record: Some(KvRecord {
                        value: big.clone(),
                        create_revision: 1,
                        mod_revision: revision,
                        version: revision,
                    }),
                    prev: None,
                },
            );
        }
        assert!(history.bytes <= MAX_BYTES, "{}", history.bytes);
        assert!(history.len() < 100 && history.len() > 32);
    }
}
