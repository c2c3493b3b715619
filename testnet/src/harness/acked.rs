//! Bookkeeping of acknowledged writes, so that a test or a benchmark can check at the end that
//! none was lost: every write the cluster acknowledged must be readable afterwards, with its
//! value, at the revision the acknowledgement named (or a later one, if the key was written
//! again and that later write was acknowledged too).

use std::collections::BTreeMap;
use std::sync::Mutex;

use symphony_ctl::Client;
use symphony_ctl::proto::{KvEntry, ReadConsistency};

use super::HarnessError;

/// How many lost writes an error names.
const EXAMPLES: usize = 5;

/// The last acknowledged write of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedWrite {
    pub value: Vec<u8>,
    pub revision: u64,
}

/// Every acknowledged write, by key; the latest acknowledgement of a key wins. Shared by
/// reference between concurrent writers (a mutex inside).
#[derive(Debug, Default)]
pub struct Acknowledged {
    writes: Mutex<BTreeMap<String, AckedWrite>>,
}

impl Acknowledged {
    pub fn new() -> Acknowledged {
        Acknowledged::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AckedWrite>> {
        // A poisoned lock still holds a valid map: a panicking writer cannot corrupt it.
        self.writes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Records that a put of `value` at `key` was acknowledged at `revision`.
    pub fn record(&self, key: &str, value: &[u8], revision: u64) {
        let mut writes = self.lock();
        let newer = writes
            .get(key)
            .is_none_or(|known| known.revision < revision);
        if newer {
            writes.insert(
                key.to_string(),
                AckedWrite {
                    value: value.to_vec(),
                    revision,
                },
            );
        }
    }

    /// How many keys have an acknowledged write.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The highest acknowledged revision (0 when nothing was acknowledged).
    pub fn max_revision(&self) -> u64 {
        self.lock()
            .values()
            .map(|write| write.revision)
            .max()
            .unwrap_or(0)
    }

    /// A copy of what was acknowledged.
    pub fn writes(&self) -> BTreeMap<String, AckedWrite> {
        self.lock().clone()
    }

    /// The acknowledged writes under `prefix` that `entries` (a listing of the store) does not
    /// hold with their value at their revision or later: `(count, the first few described)`.
    /// The acknowledged keys that start with `prefix`.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.lock()
            .range(prefix.to_string()..)
            .map(|(key, _)| key.clone())
            .take_while(|key| key.starts_with(prefix))
            .collect()
    }

    pub fn missing_from(&self, prefix: &str, entries: &[KvEntry]) -> (usize, Vec<String>) {
        let by_key: BTreeMap<&str, &KvEntry> = entries
            .iter()
            .map(|entry| (entry.key.as_str(), entry))
            .collect();
        let mut lost = 0;
        let mut examples = Vec::new();
        for (key, write) in self.lock().range(prefix.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            let problem = match by_key.get(key.as_str()) {
                None => Some(format!(
                    "{key} (acknowledged at revision {}) is absent",
                    write.revision
                )),
                Some(entry) if entry.mod_revision < write.revision => Some(format!(
                    "{key} is at revision {} but was acknowledged at {}",
                    entry.mod_revision, write.revision
                )),
                Some(entry)
                    if entry.mod_revision == write.revision && entry.value != write.value =>
                {
                    Some(format!(
                        "{key} at revision {} holds {} bytes other than the acknowledged value",
                        entry.mod_revision,
                        entry.value.len()
                    ))
                }
                Some(_) => None,
            };
            if let Some(problem) = problem {
                lost += 1;
                if examples.len() < EXAMPLES {
                    examples.push(problem);
                }
            }
        }
        (lost, examples)
    }

    /// Reads the whole store under `prefix` through `client` and fails with
    /// [`HarnessError::LostWrites`] if any acknowledged write under it is missing. `node` names
    /// the node in the error.
    pub async fn verify(
        &self,
        client: &mut Client,
        prefix: &str,
        consistency: ReadConsistency,
        node: &str,
    ) -> Result<(), HarnessError> {
        let listing = client.kv_list(prefix, consistency).await?;
        let acknowledged = self
            .lock()
            .keys()
            .filter(|key| key.starts_with(prefix))
            .count();
        let (lost, examples) = self.missing_from(prefix, &listing.entries);
        if lost == 0 {
            return Ok(());
        }
        Err(HarnessError::LostWrites {
            node: node.to_string(),
            acknowledged,
            lost,
            examples: examples.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &[u8], revision: u64) -> KvEntry {
        KvEntry {
            key: key.to_string(),
            value: value.to_vec(),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
        }
    }

    #[test]
    fn the_latest_acknowledgement_of_a_key_wins() {
        let acked = Acknowledged::new();
        acked.record("a", b"2", 5);
        acked.record("a", b"1", 3);
        assert_eq!(acked.len(), 1);
        assert_eq!(acked.max_revision(), 5);
        assert_eq!(acked.missing_from("", &[entry("a", b"2", 5)]).0, 0);
    }

    #[test]
    fn finds_absent_older_and_changed_writes() {
        let acked = Acknowledged::new();
        acked.record("absent", b"x", 1);
        acked.record("older", b"y", 4);
        acked.record("changed", b"z", 6);
        acked.record("fine", b"w", 7);
        acked.record("rewritten", b"v", 2);
        let entries = [
            entry("older", b"y", 3),
            entry("changed", b"other", 6),
            entry("fine", b"w", 7),
            entry("rewritten", b"later", 9),
        ];
        let (lost, examples) = acked.missing_from("", &entries);
        assert_eq!(lost, 3, "{examples:?}");
        assert_eq!(acked.missing_from("fi", &entries).0, 0);
        assert_eq!(acked.missing_from("abs", &entries).0, 1);
    }
}
