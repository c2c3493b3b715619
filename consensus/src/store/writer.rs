//! The store's single writer: one thread that owns every write to the redb file.
//!
//! Log appends, votes, truncations, purges and state-machine rows are queued here in the order
//! openraft issues them. The thread drains whatever is queued into one transaction and commits
//! it with one fsync, so under load many client writes share one fsync and one commit, and the
//! log and the state machine never contend for redb's write lock. Completion callbacks fire
//! only after the commit, which is what "acknowledged only when durable" needs.

use std::io;
use std::sync::{Arc, mpsc};

use openraft::storage::IOFlushed;
use redb::{Database, Durability, WriteTransaction};
use tokio::sync::oneshot;

use super::{KV, LOG, LOG_META, NODES, SM_META, io_error};
use crate::types::TypeConfig;

/// The most writes one transaction takes; bounds the latency of the first one in a flood.
const MAX_WRITES_PER_COMMIT: usize = 4096;

pub(crate) const LAST_PURGED_KEY: &str = "last_purged";
pub(crate) const LAST_APPLIED_KEY: &str = "last_applied";
pub(crate) const MEMBERSHIP_KEY: &str = "membership";
pub(crate) const CLUSTER_KEY: &str = "cluster";
pub(crate) const REVISION_KEY: &str = "revision";

/// Who is told when a write is durable.
pub(crate) enum Done {
    /// Nobody waits: durability is implied by a later write someone does wait for.
    Nobody,
    /// An async caller waiting for the commit.
    Caller(oneshot::Sender<io::Result<()>>),
    /// openraft's log-flush callback.
    Raft(IOFlushed<TypeConfig>),
}

impl Done {
    fn complete(self, result: &io::Result<()>) {
        let result = match result {
            Ok(()) => Ok(()),
            Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
        };
        match self {
            Done::Nobody => {}
            Done::Caller(sender) => {
                let _ = sender.send(result);
            }
            Done::Raft(callback) => callback.io_completed(result),
        }
    }
}

/// One write to the file.
pub(crate) enum Write {
    /// Encoded log entries by index.
    Append(Vec<(u64, Vec<u8>)>),
    /// A row of the log metadata (vote, committed).
    LogMeta { key: &'static str, value: Vec<u8> },
    /// Remove every log entry with index >= `from`.
    Truncate { from: u64 },
    /// Remove every log entry with index <= `upto` and record the purge point.
    Purge { upto: u64, last_purged: Vec<u8> },
    /// State-machine rows with the applied position, atomically.
    StateRows(RowWrites),
}

/// Encoded state-machine rows to write; `None` deletes a row.
#[derive(Default)]
pub(crate) struct RowWrites {
    pub kv: Vec<(String, Option<Vec<u8>>)>,
    pub nodes: Vec<(u64, Option<Vec<u8>>)>,
    pub cluster: Option<Option<Vec<u8>>>,
    pub revision: Option<Vec<u8>>,
    pub last_applied: Option<Vec<u8>>,
    pub membership: Option<Vec<u8>>,
    /// Drop every KV and node row first (snapshot install).
    pub replace_all: bool,
}

/// The queue into the writer thread; clones share the thread.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<(Write, Done)>,
}

impl Writer {
    /// Starts the writer thread for `db`. It ends when every `Writer` clone is dropped.
    pub(crate) fn start(db: Arc<Database>) -> io::Result<Writer> {
        let (queue, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("raft-store-writer".into())
            .spawn(move || write_loop(&db, &receiver))?;
        Ok(Writer { queue })
    }

    /// Queues `write`; `done` is told once it is durable (or failed).
    pub(crate) fn submit(&self, write: Write, done: Done) -> io::Result<()> {
        self.queue.send((write, done)).map_err(|_| stopped())
    }

    /// Queues `write` and waits until it is durable.
    pub(crate) async fn write(&self, write: Write) -> io::Result<()> {
        let (sender, receiver) = oneshot::channel();
        self.submit(write, Done::Caller(sender))?;
        receiver.await.map_err(|_| stopped())?
    }
}

fn stopped() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the Raft store writer has stopped",
    )
}

fn write_loop(db: &Database, receiver: &mpsc::Receiver<(Write, Done)>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_WRITES_PER_COMMIT {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let result = commit(db, &batch);
        if let Err(error) = &result {
            // openraft stops the node on a storage error it is told about: nothing after this
            // write is acknowledged, so nothing acknowledged is lost.
            tracing::error!(%error, writes = batch.len(), "the Raft store could not be written");
        }
        for (_, done) in batch {
            done.complete(&result);
        }
    }
}

fn commit(db: &Database, batch: &[(Write, Done)]) -> io::Result<()> {
    let mut txn = db.begin_write().map_err(io_error)?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| io::Error::other(e.to_string()))?;
    for (write, _) in batch {
        apply(&txn, write)?;
    }
    txn.commit().map_err(io_error)
}

fn apply(txn: &WriteTransaction, write: &Write) -> io::Result<()> {
    match write {
        Write::Append(entries) => {
            let mut log = txn.open_table(LOG).map_err(io_error)?;
            for (index, bytes) in entries {
                log.insert(*index, bytes.as_slice()).map_err(io_error)?;
            }
        }
        Write::LogMeta { key, value } => {
            let mut meta = txn.open_table(LOG_META).map_err(io_error)?;
            meta.insert(*key, value.as_slice()).map_err(io_error)?;
        }
        Write::Truncate { from } => {
            let mut log = txn.open_table(LOG).map_err(io_error)?;
            log.retain_in(*from.., |_, _| false).map_err(io_error)?;
        }
        Write::Purge { upto, last_purged } => {
            let mut meta = txn.open_table(LOG_META).map_err(io_error)?;
            meta.insert(LAST_PURGED_KEY, last_purged.as_slice())
                .map_err(io_error)?;
            let mut log = txn.open_table(LOG).map_err(io_error)?;
            log.retain_in(..=*upto, |_, _| false).map_err(io_error)?;
        }
        Write::StateRows(rows) => write_rows(txn, rows)?,
    }
    Ok(())
}

fn write_rows(txn: &WriteTransaction, rows: &RowWrites) -> io::Result<()> {
    let mut kv = txn.open_table(KV).map_err(io_error)?;
    let mut nodes = txn.open_table(NODES).map_err(io_error)?;
    let mut meta = txn.open_table(SM_META).map_err(io_error)?;
    if rows.replace_all {
        kv.retain(|_, _| false).map_err(io_error)?;
        nodes.retain(|_, _| false).map_err(io_error)?;
    }
    for (key, value) in &rows.kv {
        match value {
            Some(bytes) => kv.insert(key.as_str(), bytes.as_slice()).map(drop),
            None => kv.remove(key.as_str()).map(drop),
        }
        .map_err(io_error)?;
    }
    for (id, value) in &rows.nodes {
        match value {
            Some(bytes) => nodes.insert(*id, bytes.as_slice()).map(drop),
            None => nodes.remove(*id).map(drop),
        }
        .map_err(io_error)?;
    }
    let meta_rows = [
        (CLUSTER_KEY, rows.cluster.as_ref().map(Option::as_ref)),
        (REVISION_KEY, rows.revision.as_ref().map(Some)),
        (LAST_APPLIED_KEY, rows.last_applied.as_ref().map(Some)),
        (MEMBERSHIP_KEY, rows.membership.as_ref().map(Some)),
    ];
    for (key, change) in meta_rows {
        match change {
            Some(Some(bytes)) => meta.insert(key, bytes.as_slice()).map(drop),
            Some(None) => meta.remove(key).map(drop),
            None => Ok(()),
        }
        .map_err(io_error)?;
    }
    Ok(())
}
