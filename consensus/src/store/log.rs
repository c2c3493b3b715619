//! The Raft log store.
//!
//! Entries that are not yet purged are kept in memory as well as in the log's file: openraft requires an
//! appended entry to be readable the moment `append` returns, before it is flushed, and the
//! replication tasks read recent entries constantly. The on-disk copy is written by the store's
//! [`Writer`] thread, in submission order as openraft requires, and openraft's flush callback
//! fires only once the entries are fsynced.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

use super::wal::Replayed;
use super::writer::{Done, Write, Writer};
use super::{decode, encode};
use crate::types::{Entry, LogId, TypeConfig, Vote};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, entry::RaftEntry};

pub(crate) const VOTE_KEY: &str = "vote";
pub(crate) const COMMITTED_KEY: &str = "committed";

/// Handle to the log; clones share the same log (openraft's readers are clones).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// The unpurged log and the small metadata, as openraft sees it right now.
    memory: Mutex<LogMemory>,
    /// Writes on their way to disk, in order.
    writer: Writer,
}

#[derive(Default)]
struct LogMemory {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
}

impl LogStore {
    /// Loads the log from what its file replayed; `writer` persists what changes.
    pub(crate) fn load(replayed: Replayed, writer: Writer) -> io::Result<LogStore> {
        let mut memory = LogMemory::default();
        if let Some(bytes) = replayed.meta.get(VOTE_KEY) {
            memory.vote = Some(decode(bytes)?);
        }
        if let Some(bytes) = replayed.meta.get(COMMITTED_KEY) {
            memory.committed = Some(decode(bytes)?);
        }
        if let Some((_, bytes)) = &replayed.last_purged {
            memory.last_purged = Some(decode(bytes)?);
        }
        for (index, bytes) in replayed.entries {
            let entry: Entry = decode(&bytes)?;
            if entry.index() != index {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("log row {index} holds entry {}", entry.log_id()),
                ));
            }
            if let Some((&last, _)) = memory.entries.last_key_value()
                && index != last + 1
            {
                return Err(hole(last, index));
            }
            memory.entries.insert(index, entry);
        }
        Ok(LogStore {
            shared: Arc::new(Shared {
                memory: Mutex::new(memory),
                writer,
            }),
        })
    }

    fn memory(&self) -> MutexGuard<'_, LogMemory> {
        // A panic while holding this lock can only come from a bug in this file; the data it
        // guards stays consistent (every update is a single map or field operation).
        self.shared
            .memory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The error of a log with entries missing between `before` and `after`: the store is damaged
/// (its writer never writes past a failed write, so a hole means the file was altered).
fn hole(before: u64, after: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the Raft log has a hole: entry {after} follows entry {before}; the store is damaged"
        ),
    )
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Bound::Included(i),
            Bound::Excluded(&i) => Bound::Excluded(i),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(i),
            Bound::Excluded(&i) => Bound::Excluded(i),
            Bound::Unbounded => Bound::Unbounded,
        };
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) =
            (start, end)
            && s > e
        {
            return Ok(Vec::new());
        }
        let memory = self.memory();
        let entries: Vec<Entry> = memory
            .entries
            .range((start, end))
            .map(|(_, entry)| entry.clone())
            .collect();
        // A hole would make openraft apply around the missing entries without a word.
        if let Some(pair) = entries
            .windows(2)
            .find(|pair| pair[1].index() != pair[0].index() + 1)
        {
            return Err(hole(pair[0].index(), pair[1].index()));
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.memory().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let memory = self.memory();
        let last_purged_log_id = memory.last_purged;
        let last_log_id = memory
            .entries
            .last_key_value()
            .map(|(_, entry)| entry.log_id())
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let value = encode(vote)?;
        self.shared
            .writer
            .write(Write::LogMeta {
                key: VOTE_KEY,
                value,
            })
            .await?;
        self.memory().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not awaited: the committed id is a hint that speeds up recovery, and the next fsync
        // (there is one per append batch) makes it durable.
        if let Some(committed) = committed {
            self.shared.writer.submit(
                Write::LogMeta {
                    key: COMMITTED_KEY,
                    value: encode(&committed)?,
                },
                Done::Nobody,
            )?;
        }
        self.memory().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.memory().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        {
            let mut memory = self.memory();
            for entry in entries {
                let index = entry.index();
                encoded.push((index, encode(&entry)?));
                memory.entries.insert(index, entry);
            }
        }
        self.shared
            .writer
            .submit(Write::Append(encoded), Done::Raft(callback))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        {
            let mut memory = self.memory();
            let _removed = memory.entries.split_off(&from);
        }
        self.shared.writer.write(Write::Truncate { from }).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let upto = log_id.index();
        let last_purged = encode(&log_id)?;
        {
            let mut memory = self.memory();
            memory.entries = memory.entries.split_off(&(upto + 1));
            memory.last_purged = Some(log_id);
        }
        self.shared
            .writer
            .write(Write::Purge { upto, last_purged })
            .await
    }
}
