//! The Raft log store.
//!
//! Entries that are not yet purged are kept in memory as well as in redb: openraft requires an
//! appended entry to be readable the moment `append` returns, before it is flushed, and the
//! replication tasks read recent entries constantly. The on-disk copy is written by one writer
//! thread that drains every pending write (appends, votes, truncations, purges) into a single
//! redb transaction and fsyncs it once: under load many client writes share one fsync, which is
//! what makes a durable log fast. Writes are applied in submission order, as openraft requires.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, entry::RaftEntry};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use tokio::sync::oneshot;

use super::{LOG, LOG_META, decode, encode, io_error};
use crate::types::{Entry, LogId, TypeConfig, Vote};

const VOTE_KEY: &str = "vote";
const LAST_PURGED_KEY: &str = "last_purged";
const COMMITTED_KEY: &str = "committed";

/// The most writes one transaction takes before it is committed; bounds latency under a flood.
const MAX_WRITES_PER_COMMIT: usize = 4096;

/// Handle to the log; clones share the same log (openraft's readers are clones).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// The unpurged log and the small metadata, as openraft sees it right now.
    memory: Mutex<LogMemory>,
    /// Writes on their way to disk, in order.
    writer: mpsc::Sender<Write>,
}

#[derive(Default)]
struct LogMemory {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
}

/// One durable write, done by the writer thread.
enum Write {
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        callback: IOFlushed<TypeConfig>,
    },
    Meta {
        key: &'static str,
        value: Vec<u8>,
        done: Option<oneshot::Sender<io::Result<()>>>,
    },
    /// Remove every entry with index >= `from`.
    Truncate {
        from: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Remove every entry with index <= `upto` and record the purge point.
    Purge {
        upto: u64,
        last_purged: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
}

impl Write {
    fn complete(self, result: &io::Result<()>) {
        let result = match result {
            Ok(()) => Ok(()),
            Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
        };
        match self {
            Write::Append { callback, .. } => callback.io_completed(result),
            Write::Meta { done, .. } => {
                if let Some(done) = done {
                    let _ = done.send(result);
                }
            }
            Write::Truncate { done, .. } | Write::Purge { done, .. } => {
                let _ = done.send(result);
            }
        }
    }
}

impl LogStore {
    /// Loads the log from `db` and starts its writer thread.
    pub(crate) fn load(db: Arc<Database>) -> io::Result<LogStore> {
        let mut memory = LogMemory::default();
        {
            let txn = db.begin_read().map_err(io_error)?;
            let meta = txn.open_table(LOG_META).map_err(io_error)?;
            if let Some(bytes) = meta.get(VOTE_KEY).map_err(io_error)? {
                memory.vote = Some(decode(bytes.value())?);
            }
            if let Some(bytes) = meta.get(LAST_PURGED_KEY).map_err(io_error)? {
                memory.last_purged = Some(decode(bytes.value())?);
            }
            if let Some(bytes) = meta.get(COMMITTED_KEY).map_err(io_error)? {
                memory.committed = Some(decode(bytes.value())?);
            }
            let log = txn.open_table(LOG).map_err(io_error)?;
            for row in log.iter().map_err(io_error)? {
                let (index, bytes) = row.map_err(io_error)?;
                let entry: Entry = decode(bytes.value())?;
                if entry.index() != index.value() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("log row {} holds entry {}", index.value(), entry.log_id()),
                    ));
                }
                memory.entries.insert(index.value(), entry);
            }
        }
        let (writer, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || write_loop(&db, &queue))?;
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

    fn submit(&self, write: Write) -> io::Result<()> {
        self.shared.writer.send(write).map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the Raft log writer has stopped")
        })
    }

    async fn submit_and_wait(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Write,
    ) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.submit(make(done))?;
        wait.await.map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the Raft log writer has stopped")
        })?
    }
}

/// The writer thread: take every queued write, commit them in one fsynced transaction, report.
fn write_loop(db: &Database, queue: &mpsc::Receiver<Write>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_WRITES_PER_COMMIT {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let result = commit_batch(db, &batch);
        if let Err(error) = &result {
            tracing::error!(%error, writes = batch.len(), "the Raft log could not be written");
        }
        for write in batch {
            write.complete(&result);
        }
    }
}

fn commit_batch(db: &Database, batch: &[Write]) -> io::Result<()> {
    let mut txn = db.begin_write().map_err(io_error)?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| io::Error::other(e.to_string()))?;
    {
        let mut log = txn.open_table(LOG).map_err(io_error)?;
        let mut meta = txn.open_table(LOG_META).map_err(io_error)?;
        for write in batch {
            match write {
                Write::Append { entries, .. } => {
                    for (index, bytes) in entries {
                        log.insert(*index, bytes.as_slice()).map_err(io_error)?;
                    }
                }
                Write::Meta { key, value, .. } => {
                    meta.insert(*key, value.as_slice()).map_err(io_error)?;
                }
                Write::Truncate { from, .. } => {
                    log.retain_in(*from.., |_, _| false).map_err(io_error)?;
                }
                Write::Purge {
                    upto, last_purged, ..
                } => {
                    meta.insert(LAST_PURGED_KEY, last_purged.as_slice())
                        .map_err(io_error)?;
                    log.retain_in(..=*upto, |_, _| false).map_err(io_error)?;
                }
            }
        }
    }
    txn.commit().map_err(io_error)
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
        Ok(memory
            .entries
            .range((start, end))
            .map(|(_, entry)| entry.clone())
            .collect())
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
        self.submit_and_wait(|done| Write::Meta {
            key: VOTE_KEY,
            value,
            done: Some(done),
        })
        .await?;
        self.memory().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not awaited: the committed id is a hint that speeds up recovery, and the next fsync
        // (there is one per append batch) makes it durable.
        if let Some(committed) = committed {
            self.submit(Write::Meta {
                key: COMMITTED_KEY,
                value: encode(&committed)?,
                done: None,
            })?;
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
        self.submit(Write::Append {
            entries: encoded,
            callback,
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        {
            let mut memory = self.memory();
            let _removed = memory.entries.split_off(&from);
        }
        self.submit_and_wait(|done| Write::Truncate { from, done })
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let upto = log_id.index();
        let last_purged = encode(&log_id)?;
        {
            let mut memory = self.memory();
            memory.entries = memory.entries.split_off(&(upto + 1));
            memory.last_purged = Some(log_id);
        }
        self.submit_and_wait(|done| Write::Purge {
            upto,
            last_purged,
            done,
        })
        .await
    }
}
