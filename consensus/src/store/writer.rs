//! The store's single writer: one thread that owns every write to the log's file and to the
//! redb file.
//!
//! Log appends, votes, truncations, purges and state-machine rows are queued here in the order
//! openraft issues them. The thread drains whatever is queued into one batch: the log's
//! changes go to the write-ahead log ([`Wal`]) as one record with one fsync, so under load many
//! client writes share one fsync, and the state rows, when due, to redb in one transaction
//! after it. Completion callbacks fire only after the sync, which is what "acknowledged only
//! when durable" needs.
//!
//! State-machine rows are coalesced: every `StateRows` write is merged into one pending set
//! (the last value of a key wins) that is committed, with its applied position, at most
//! [`STATE_FLUSH_INTERVAL`] later, before any log purge, and at once when someone waits for it.
//! The durable state therefore always matches one applied log id, lags the log by at most that
//! interval, and the log entries it lags by are replayed on start. Within a batch the log's
//! record is synced before the state rows are committed, so the durable state never runs
//! ahead of the durable log; a purge goes after the state rows (a second record), so the log
//! never loses entries the durable state has not taken in. Log metadata nobody waits
//! for (the committed id, a recovery hint) is deferred the same way: it rides with the next
//! commit, and a client write costs one fsync per replica, not two. Coalescing keeps redb's
//! commits to one every few milliseconds instead of one per batch, each writing the pages of
//! the keys touched meanwhile once (what etcd's backend batching does too).
//!
//! The first write that fails is the last one tried: every write queued after it fails too,
//! without touching the file, until the store is opened again. The file therefore always holds
//! a prefix of what was queued. Without that latch a commit that failed (a failpoint, a
//! transient error redb does not latch on itself) followed by one that succeeded would leave a
//! hole in the log — entries missing below entries present — and a replica that restarts from
//! such a file skips the missing entries for ever, and its state parts from the others'.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use openraft::storage::IOFlushed;
use redb::{Database, Durability, WriteTransaction};
use tokio::sync::oneshot;

use super::health::StoreHealth;
use super::timing::CommitTimings;
use super::wal::{Op, Wal};
use super::{SM_META, io_error, rows_table};
use crate::types::TypeConfig;

/// The most writes one transaction takes; bounds the latency of the first one in a flood.
const MAX_WRITES_PER_COMMIT: usize = 4096;

/// Coalesced state rows are committed at most this long after the first of them was queued.
pub(crate) const STATE_FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// ... or as soon as this many distinct rows are pending.
const MAX_PENDING_ROWS: usize = 10_000;

pub(crate) const LAST_PURGED_KEY: &str = "last_purged";
pub(crate) const LAST_APPLIED_KEY: &str = "last_applied";
pub(crate) const MEMBERSHIP_KEY: &str = "membership";

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

/// Encoded state-machine rows to write, by table; `None` deletes a row.
#[derive(Default)]
pub(crate) struct RowWrites {
    pub tables: BTreeMap<&'static str, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    pub last_applied: Option<Vec<u8>>,
    pub membership: Option<Vec<u8>>,
    /// Drop every row of every table first (snapshot install).
    pub replace_all: bool,
}

impl RowWrites {
    /// Folds `later` into `self`: later values win, and a replacement drops what came before.
    fn merge(&mut self, later: RowWrites) {
        if later.replace_all {
            *self = later;
            return;
        }
        for (table, rows) in later.tables {
            self.tables.entry(table).or_default().extend(rows);
        }
        if later.last_applied.is_some() {
            self.last_applied = later.last_applied;
        }
        if later.membership.is_some() {
            self.membership = later.membership;
        }
    }

    fn len(&self) -> usize {
        self.tables.values().map(BTreeMap::len).sum()
    }
}

/// The queue into the writer thread; clones share the thread.
#[derive(Clone)]
pub(crate) struct Writer {
    inner: Arc<WriterThread>,
}

/// Owns the thread: dropping the last `Writer` closes the queue, lets the thread commit what
/// is pending and waits for it, so the database is closed when the store is.
struct WriterThread {
    queue: Option<mpsc::Sender<(Write, Done)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Writer {
    /// Starts the writer thread for `db`. It ends when every `Writer` clone is dropped. A write
    /// that fails is recorded in `health`.
    /// Each commit's time goes to `timings`.
    pub(crate) fn start(
        db: Arc<Database>,
        mut wal: Wal,
        health: StoreHealth,
        timings: CommitTimings,
    ) -> io::Result<Writer> {
        let (queue, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raft-store-writer".into())
            .spawn(move || {
                // A panic in here (a bug, or a failpoint set to panic) must not leave the store
                // dead without a word: it is recorded as the store's fault, like a failed
                // write, so the node's owner starts the Raft node again from the file.
                // (A commit that panics is caught nearer, in `write_loop`, so its callers are
                // answered; this is the last resort for the rest of the loop.)
                let run = std::panic::AssertUnwindSafe(|| {
                    write_loop(&receiver, &health, &timings, |writes, state| {
                        crate::failpoint::check("store.commit")
                            .and_then(|()| commit(&db, &mut wal, writes, state))
                    });
                });
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let error = panicked(panic.as_ref());
                    tracing::error!(%error, "the Raft store writer stopped");
                    health.failed(&error);
                }
            })?;
        Ok(Writer {
            inner: Arc::new(WriterThread {
                queue: Some(queue),
                thread: Some(thread),
            }),
        })
    }

    /// Queues `write`; `done` is told once it is durable (or failed).
    pub(crate) fn submit(&self, write: Write, done: Done) -> io::Result<()> {
        let queue = self.inner.queue.as_ref().ok_or_else(stopped)?;
        queue.send((write, done)).map_err(|_| stopped())
    }

    /// Queues `write` and waits until it is durable.
    pub(crate) async fn write(&self, write: Write) -> io::Result<()> {
        let (sender, receiver) = oneshot::channel();
        self.submit(write, Done::Caller(sender))?;
        receiver.await.map_err(|_| stopped())?
    }
}

/// The error a caught panic stands for.
fn panicked(panic: &(dyn std::any::Any + Send)) -> io::Error {
    let what = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string());
    io::Error::other(format!("the Raft store writer panicked: {what}"))
}

fn stopped() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the Raft store writer has stopped",
    )
}

/// Drains the queue into commits (see the module comment) until every sender is gone.
/// `commit` writes one transaction: log writes and, when due, the coalesced state rows.
fn write_loop(
    receiver: &mpsc::Receiver<(Write, Done)>,
    health: &StoreHealth,
    timings: &CommitTimings,
    mut commit: impl FnMut(&[Write], Option<&RowWrites>) -> io::Result<()>,
) {
    let mut pending = RowWrites::default();
    // Log metadata nobody waits for (the committed id, a hint): written with the next commit
    // made for another reason, or with the state rows when they are due. Committed at once,
    // it cost every client write a second fsync, and the next append queued behind it.
    let mut deferred_meta: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    let mut meta_since: Option<Instant> = None;
    let mut pending_since: Option<Instant> = None;
    // The first commit that failed: nothing after it is written (see the module comment).
    let mut failed: Option<io::Error> = None;
    loop {
        // Wait for work; with state rows or metadata pending, only until they are due.
        let due = pending_since.into_iter().chain(meta_since).min();
        let first = match due {
            None => match receiver.recv() {
                Ok(write) => Some(write),
                Err(_) => return,
            },
            Some(since) => {
                match receiver.recv_timeout(STATE_FLUSH_INTERVAL.saturating_sub(since.elapsed())) {
                    Ok(write) => Some(write),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        if failed.is_none() {
                            let _ = commit(&meta_writes(&mut deferred_meta), Some(&pending));
                        }
                        return;
                    }
                }
            }
        };
        let due_now = first.is_none();
        let mut writes = Vec::new();
        let mut dones = Vec::new();
        let mut flush_state = first.is_none();
        let queued = first
            .into_iter()
            .chain(std::iter::from_fn(|| receiver.try_recv().ok()));
        for (write, done) in queued.take(MAX_WRITES_PER_COMMIT) {
            match write {
                Write::StateRows(rows) => {
                    pending.merge(rows);
                    pending_since.get_or_insert_with(Instant::now);
                    flush_state |= !matches!(done, Done::Nobody);
                }
                Write::Purge { .. } => {
                    // Never purge log entries the durable state has not caught up with.
                    flush_state = true;
                    writes.push(write);
                }
                Write::LogMeta { key, value } if matches!(done, Done::Nobody) => {
                    deferred_meta.insert(key, value);
                    meta_since.get_or_insert_with(Instant::now);
                }
                other => writes.push(other),
            }
            dones.push(done);
        }
        if let Some(earlier) = &failed {
            // Pending rows are dropped: the store is reopened from the file, not from them.
            pending = RowWrites::default();
            deferred_meta.clear();
            meta_since = None;
            pending_since = None;
            let result = Err(failed_earlier(earlier));
            for done in dones {
                done.complete(&result);
            }
            continue;
        }
        flush_state |= pending.len() >= MAX_PENDING_ROWS
            || pending_since.is_some_and(|since| since.elapsed() >= STATE_FLUSH_INTERVAL);
        let state = (flush_state && pending_since.is_some()).then_some(&pending);
        if !writes.is_empty() || state.is_some() || due_now {
            // Ahead of this batch's own writes: they were queued earlier.
            writes.splice(0..0, meta_writes(&mut deferred_meta));
            meta_since = None;
        }
        let writes_something = !writes.is_empty() || state.is_some();
        let started = Instant::now();
        // A panic in a commit fails that commit, as an I/O error would: every write waiting
        // on it is told, so the Raft node stops and its owner starts it again from the file.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(&writes, state)))
                .unwrap_or_else(|panic| Err(panicked(panic.as_ref())));
        if writes_something && result.is_ok() {
            timings.record(started.elapsed());
        }
        if let Err(error) = &result {
            // openraft stops the node on a storage error it is told about: nothing after this
            // write is acknowledged, so nothing acknowledged is lost. The node's owner starts
            // it again from the file once the cause is gone.
            if health.fault().is_none() {
                tracing::error!(%error, writes = writes.len(), "the Raft store could not be written");
            }
            health.failed(error);
            failed = Some(io::Error::new(error.kind(), error.to_string()));
        }
        if flush_state && result.is_ok() {
            pending = RowWrites::default();
            pending_since = None;
        }
        for done in dones {
            done.complete(&result);
        }
    }
}

/// The deferred metadata rows as writes, leaving none deferred.
fn meta_writes(deferred: &mut BTreeMap<&'static str, Vec<u8>>) -> Vec<Write> {
    std::mem::take(deferred)
        .into_iter()
        .map(|(key, value)| Write::LogMeta { key, value })
        .collect()
}

/// The error of a write refused because an earlier one failed: of the same kind (a full disk
/// stays a full disk to whoever reads it).
fn failed_earlier(earlier: &io::Error) -> io::Error {
    io::Error::new(
        earlier.kind(),
        format!(
            "an earlier write to the Raft store failed ({earlier}); it takes no more until it is opened again"
        ),
    )
}

/// Writes one batch: the log's changes before the first purge (one synced record), the state
/// rows (one redb transaction), then the purge and what follows it (a second record).
fn commit(
    db: &Database,
    wal: &mut Wal,
    writes: &[Write],
    state: Option<&RowWrites>,
) -> io::Result<()> {
    if writes.is_empty() && state.is_none() {
        return Ok(());
    }
    crate::failpoint::check("store.fsync")?;
    let split = writes
        .iter()
        .position(|write| matches!(write, Write::Purge { .. }))
        .unwrap_or(writes.len());
    wal.write(&log_ops(&writes[..split]))?;
    if let Some(rows) = state {
        let mut txn = db.begin_write().map_err(io_error)?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| io::Error::other(e.to_string()))?;
        write_rows(&txn, rows)?;
        txn.commit().map_err(io_error)?;
    }
    wal.write(&log_ops(&writes[split..]))
}

/// The log's changes among `writes`, as the write-ahead log's ops.
fn log_ops(writes: &[Write]) -> Vec<Op<'_>> {
    let mut ops = Vec::new();
    for write in writes {
        match write {
            Write::Append(entries) => ops.extend(entries.iter().map(|(index, bytes)| Op::Append {
                index: *index,
                entry: bytes,
            })),
            Write::LogMeta { key, value } => ops.push(Op::Meta { key, value }),
            Write::Truncate { from } => ops.push(Op::Truncate { from: *from }),
            Write::Purge { upto, last_purged } => ops.push(Op::Purge {
                upto: *upto,
                last_purged,
            }),
            // Coalesced by the loop and written by `commit`.
            Write::StateRows(_) => {}
        }
    }
    ops
}

pub(crate) fn write_rows(txn: &WriteTransaction, rows: &RowWrites) -> io::Result<()> {
    if rows.replace_all {
        for table in crate::state::ClusterState::default().tables() {
            let mut stored = txn.open_table(rows_table(table.name())).map_err(io_error)?;
            stored.retain(|_, _| false).map_err(io_error)?;
        }
    }
    for (name, table_rows) in &rows.tables {
        let mut stored = txn.open_table(rows_table(name)).map_err(io_error)?;
        for (key, value) in table_rows {
            match value {
                Some(bytes) => stored.insert(key.as_slice(), bytes.as_slice()).map(drop),
                None => stored.remove(key.as_slice()).map(drop),
            }
            .map_err(io_error)?;
        }
    }
    let mut meta = txn.open_table(SM_META).map_err(io_error)?;
    let meta_rows = [
        (LAST_APPLIED_KEY, rows.last_applied.as_ref()),
        (MEMBERSHIP_KEY, rows.membership.as_ref()),
    ];
    for (key, change) in meta_rows {
        if let Some(bytes) = change {
            meta.insert(key, bytes.as_slice()).map_err(io_error)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// What the fake commit was asked to write: the appended indexes of each call.
    type Calls = Arc<Mutex<Vec<Vec<u64>>>>;

    /// Runs `write_loop` on a thread with a commit that fails its `fail_at`-th call (from 1)
    /// and succeeds otherwise.
    fn start(
        fail_at: usize,
    ) -> (
        mpsc::Sender<(Write, Done)>,
        Calls,
        std::thread::JoinHandle<()>,
    ) {
        let (sender, receiver) = mpsc::channel();
        let calls = Calls::default();
        let seen = calls.clone();
        let thread = std::thread::spawn(move || {
            let health = StoreHealth::default();
            write_loop(
                &receiver,
                &health,
                &CommitTimings::default(),
                |writes, _| {
                    let mut seen = seen.lock().unwrap();
                    seen.push(
                        writes
                            .iter()
                            .filter_map(|write| match write {
                                Write::Append(entries) => entries.first().map(|(index, _)| *index),
                                _ => None,
                            })
                            .collect(),
                    );
                    if seen.len() == fail_at {
                        Err(io::Error::other("injected"))
                    } else {
                        Ok(())
                    }
                },
            );
        });
        (sender, calls, thread)
    }

    /// Queues an append of entry `index` and waits for its outcome.
    fn append(sender: &mpsc::Sender<(Write, Done)>, index: u64) -> io::Result<()> {
        let (done, outcome) = oneshot::channel();
        sender
            .send((Write::Append(vec![(index, vec![0])]), Done::Caller(done)))
            .unwrap();
        outcome.blocking_recv().unwrap()
    }

    #[test]
    fn writes_commit_in_order_while_nothing_fails() {
        let (sender, calls, thread) = start(usize::MAX);
        for index in 1..=3 {
            append(&sender, index).unwrap();
        }
        drop(sender);
        thread.join().unwrap();
        assert_eq!(*calls.lock().unwrap(), vec![vec![1], vec![2], vec![3]]);
    }

    /// After a failed commit nothing reaches the file: a later write that would succeed on its
    /// own is refused, so the log on disk never has a hole (entry 2 missing below entry 3).
    #[test]
    fn nothing_is_written_after_a_failed_write() {
        let (sender, calls, thread) = start(2);
        append(&sender, 1).unwrap();
        let failed = append(&sender, 2).unwrap_err();
        assert_eq!(failed.to_string(), "injected");
        let refused = append(&sender, 3).unwrap_err();
        assert!(refused.to_string().contains("injected"), "{refused}");
        // State rows queued now are not flushed at the end either.
        sender
            .send((Write::StateRows(RowWrites::default()), Done::Nobody))
            .unwrap();
        drop(sender);
        thread.join().unwrap();
        assert_eq!(*calls.lock().unwrap(), vec![vec![1], vec![2]]);
    }

    /// The committed id (a hint nobody waits for) makes no commit of its own: it rides with
    /// the next append, and with nothing else to write it is committed once it is due.
    #[test]
    fn the_committed_hint_rides_with_the_next_commit() {
        type Seen = Arc<Mutex<Vec<(Vec<u64>, Vec<&'static str>)>>>;
        let (sender, receiver) = mpsc::channel();
        let seen = Seen::default();
        let recorded = seen.clone();
        let thread = std::thread::spawn(move || {
            write_loop(
                &receiver,
                &StoreHealth::default(),
                &CommitTimings::default(),
                |writes, _| {
                    let mut appends = Vec::new();
                    let mut meta = Vec::new();
                    for write in writes {
                        match write {
                            Write::Append(entries) => {
                                appends.extend(entries.iter().map(|(index, _)| *index));
                            }
                            Write::LogMeta { key, .. } => meta.push(*key),
                            _ => {}
                        }
                    }
                    // The loop may call with nothing to write (the real commit then returns).
                    if !appends.is_empty() || !meta.is_empty() {
                        recorded.lock().unwrap().push((appends, meta));
                    }
                    Ok(())
                },
            );
        });
        let hint = |index: u8| {
            sender
                .send((
                    Write::LogMeta {
                        key: "committed",
                        value: vec![index],
                    },
                    Done::Nobody,
                ))
                .unwrap();
        };
        append(&sender, 1).unwrap();
        hint(1);
        append(&sender, 2).unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(vec![1], vec![]), (vec![2], vec!["committed"])]
        );
        // Nothing follows the last hint: it is written on its own once due.
        hint(2);
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < 3 {
            assert!(Instant::now() < deadline, "the hint was never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(sender);
        thread.join().unwrap();
        assert_eq!(seen.lock().unwrap()[2], (vec![], vec!["committed"]));
    }

    /// A full disk stays a full disk to whoever is refused after it.
    #[test]
    fn a_refused_write_keeps_the_kind_of_the_failure() {
        let earlier = io::Error::from(io::ErrorKind::StorageFull);
        assert_eq!(failed_earlier(&earlier).kind(), io::ErrorKind::StorageFull);
    }
}
