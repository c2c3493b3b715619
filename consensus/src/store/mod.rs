//! Durable Raft storage in one redb file: the log, the vote and the state machine.
//!
//! - [`log`]: the [`LogStore`]; openraft is told entries are flushed only after their fsync;
//! - [`state_machine`]: the [`StateMachineStore`], which applies entries to the in-memory
//!   [`ClusterState`](crate::state::ClusterState) and persists the touched rows, the last-applied
//!   log id and the membership as one atomic write;
//! - [`snapshot`]: the snapshot file beside the database;
//! - `writer`: the one thread that writes the file, group-committing everything queued
//!   (log appends and state rows alike) in one fsynced transaction;
//! - [`health`]: the first write that failed, and why.
//!
//! State rows are queued after the entries they come from, so a crash can only lose applies
//! whose entries are in the durable log, which openraft replays on start.

pub mod health;
pub mod log;
pub mod seed;
pub mod snapshot;
pub mod state_machine;
pub mod timing;
mod writer;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, TableDefinition};

use crate::state::ClusterState;

pub use self::health::{StoreFault, StoreHealth};
pub use self::log::LogStore;
pub use self::snapshot::SnapshotPayload;
pub use self::state_machine::{SharedState, StateMachineStore, TableWatch};
pub use self::timing::{CommitTimes, CommitTimings};

/// The Raft log: index → encoded entry.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Log metadata: vote, last purged log id, committed log id.
pub(crate) const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_log_meta");
/// State machine metadata: last applied, membership, the row format.
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

/// The on-disk table of the cluster state's table `name`: row key → encoded row (see
/// [`crate::state::table`]).
pub(crate) fn rows_table(
    name: &'static str,
) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

/// The name of the database file inside a node's data directory.
pub const DB_FILE: &str = "raft.redb";

/// How much memory redb may keep for its pages. redb's default is 1 GiB, a ceiling it
/// fills with every page written until the file is all in memory: a manager that took 40,000
/// puts held ~40 MiB of pages nobody reads again. Nothing reads the database after the start
/// (the log's unpurged entries and the whole state are in memory), so the cache only has to
/// hold the B-trees' upper pages that every commit walks, and a commit's dirty pages (redb
/// gives a tenth of it to writes).
pub const PAGE_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// redb with [`PAGE_CACHE_BYTES`].
fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(PAGE_CACHE_BYTES);
    builder
}

/// Knobs of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The directory that holds the database and the snapshot.
    pub dir: PathBuf,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot open the Raft database {path}: {source}")]
    Database {
        path: PathBuf,
        source: Box<redb::DatabaseError>,
    },
    #[error("the Raft store at {path} is unreadable: {source}")]
    Load { path: PathBuf, source: io::Error },
}

/// Opens (or creates) the store in `options.dir` and loads what it holds.
pub fn open(options: &StoreOptions) -> Result<(LogStore, StateMachineStore), OpenError> {
    open_with_health(options, StoreHealth::default(), CommitTimings::default())
}

/// [`open`], recording a failed write in `health` and each commit's time in `timings`.
pub fn open_with_health(
    options: &StoreOptions,
    health: StoreHealth,
    timings: CommitTimings,
) -> Result<(LogStore, StateMachineStore), OpenError> {
    std::fs::create_dir_all(&options.dir).map_err(|source| OpenError::CreateDir {
        path: options.dir.clone(),
        source,
    })?;
    let path = options.dir.join(DB_FILE);
    let database_error = |source| OpenError::Database {
        path: path.clone(),
        source: Box::new(source),
    };
    if !path.exists() {
        create_atomically(&path).map_err(|source| OpenError::Load {
            path: path.clone(),
            source,
        })?;
    }
    let db = builder().create(&path).map_err(database_error)?;
    load(db, path, health, timings)
}

/// Creates an empty store at `path` all at once: made and synced under another name, then
/// renamed. A crash while redb lays out a new file leaves something that is not a database
/// yet, and a node that found that at `path` would never start again; under the other name it
/// is simply made again.
fn create_atomically(path: &Path) -> io::Result<()> {
    let mut creating = path.as_os_str().to_owned();
    creating.push(".new");
    let creating = PathBuf::from(creating);
    match std::fs::remove_file(&creating) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    {
        let db = Database::create(&creating).map_err(io_error)?;
        create_tables(&db)?;
    }
    std::fs::File::open(&creating)?.sync_all()?;
    std::fs::rename(&creating, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// [`open_with_health`] on a storage backend given by the caller instead of the file in
/// `options.dir` (snapshots still go to `options.dir`): how the crash tests cut the power
/// under the store (see `power_cut`).
pub fn open_on_backend(
    options: &StoreOptions,
    health: StoreHealth,
    backend: impl redb::StorageBackend,
) -> Result<(LogStore, StateMachineStore), OpenError> {
    std::fs::create_dir_all(&options.dir).map_err(|source| OpenError::CreateDir {
        path: options.dir.clone(),
        source,
    })?;
    let path = options.dir.join(DB_FILE);
    let db = builder()
        .create_with_backend(backend)
        .map_err(|source| OpenError::Database {
            path: path.clone(),
            source: Box::new(source),
        })?;
    load(db, path, health, CommitTimings::default())
}

/// Makes the tables, starts the writer and loads the log and the state.
fn load(
    db: Database,
    path: PathBuf,
    health: StoreHealth,
    timings: CommitTimings,
) -> Result<(LogStore, StateMachineStore), OpenError> {
    let db = Arc::new(db);
    let load_error = |source| OpenError::Load {
        path: path.clone(),
        source,
    };
    create_tables(&db).map_err(load_error)?;
    let writer = writer::Writer::start(db.clone(), health, timings).map_err(load_error)?;
    let log = LogStore::load(&db, writer.clone()).map_err(load_error)?;
    let state_machine = StateMachineStore::load(&db, writer).map_err(load_error)?;
    Ok((log, state_machine))
}

/// Creates every table once, so read transactions never meet a missing table.
fn create_tables(db: &Database) -> io::Result<()> {
    let txn = db.begin_write().map_err(io_error)?;
    txn.open_table(LOG).map_err(io_error)?;
    txn.open_table(LOG_META).map_err(io_error)?;
    txn.open_table(SM_META).map_err(io_error)?;
    for table in ClusterState::default().tables() {
        txn.open_table(rows_table(table.name())).map_err(io_error)?;
    }
    txn.commit().map_err(io_error)
}

pub(crate) use crate::codec::{decode, encode};

/// redb's errors become `io::Error`, which is what openraft's storage traits speak.
pub(crate) fn io_error(error: impl Into<redb::Error>) -> io::Error {
    let error: redb::Error = error.into();
    match error {
        redb::Error::Io(io) => io,
        other => io::Error::other(other),
    }
}

/// Writes `bytes` to `path` atomically: a temp file, fsync, rename, fsync of the directory.
/// The file is readable by its owner only (0600) from its creation: a snapshot holds the
/// cluster's secrets (the CA key, the tokens, the managers' secret, the gossip keys).
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod power_cut;
#[cfg(test)]
mod tests;
