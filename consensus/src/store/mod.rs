//! Durable Raft storage: the log in its own append-only file, the state machine in redb.
//!
//! - [`log`]: the [`LogStore`]; openraft is told entries are flushed only after their fsync;
//! - `wal`: the log's file, segments of checksummed records (entries, vote, purge point) in
//!   `wal/` beside the database;
//! - [`state_machine`]: the [`StateMachineStore`], which applies entries to the in-memory
//!   [`ClusterState`](crate::state::ClusterState) and persists the touched rows, the last-applied
//!   log id and the membership as one atomic write;
//! - [`snapshot`]: the snapshot file beside the database;
//! - `writer`: the one thread that writes both files, group-committing everything queued:
//!   the log's changes in one synced record, then the state rows when due in one transaction;
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
pub mod wal;
mod writer;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::state::ClusterState;

pub use self::health::{StoreFault, StoreHealth};
pub use self::log::LogStore;
pub use self::snapshot::SnapshotPayload;
pub use self::state_machine::{SharedState, StateMachineStore, TableWatch};
pub use self::timing::{CommitTimes, CommitTimings};

/// The Raft log as stores before the write-ahead log kept it (index → encoded entry), and as
/// `seed` leaves an empty one: moved into the write-ahead log when the store is opened.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// The log's metadata in the same case: vote, last purged log id, committed log id.
pub(crate) const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_log_meta");
/// State machine metadata: last applied, membership, the row format, the log file's store id.
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
/// puts held ~40 MiB of pages nobody reads again. Only commits read the database after the start
/// (the log's unpurged entries and the whole state are in memory), so the cache only has to
/// hold the B-trees' upper pages that every commit walks, and a commit's dirty pages (redb
/// gives a tenth of it to writes). Leaves a commit touches that are not cached are read back
/// from the kernel's page cache. 4 MiB rather than 16: 16 MiB less resident after 40,000 puts
/// at 256 clients (104–112 instead of 120–128 MiB), throughput within the noise
/// (`testnet bench kv --managers 3`, 2026-12-04).
pub const PAGE_CACHE_BYTES: usize = 4 * 1024 * 1024;

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
    let wal_dir = path
        .parent()
        .map_or_else(|| PathBuf::from(wal::WAL_DIR), |dir| dir.join(wal::WAL_DIR));
    let (wal, replayed) = open_log(&db, &wal_dir).map_err(load_error)?;
    let writer = writer::Writer::start(db.clone(), wal, health, timings).map_err(load_error)?;
    let log = LogStore::load(replayed, writer.clone()).map_err(load_error)?;
    let state_machine = StateMachineStore::load(&db, writer).map_err(load_error)?;
    Ok((log, state_machine))
}

/// The key in [`SM_META`] of the id that the log file's segments carry: which log is this
/// database's. Absent in a store of an earlier version and in one `seed` made, whose log (if
/// any) is still in the [`LOG`] tables.
const WAL_ID_KEY: &str = "wal_store_id";

/// Opens the store's log file in `dir`, first moving the log into it from the database when
/// it is still there (see [`WAL_ID_KEY`]).
fn open_log(db: &Database, dir: &Path) -> io::Result<(wal::Wal, wal::Replayed)> {
    let known = {
        let txn = db.begin_read().map_err(io_error)?;
        let meta = txn.open_table(SM_META).map_err(io_error)?;
        meta.get(WAL_ID_KEY)
            .map_err(io_error)?
            .map(|bytes| decode::<u64>(bytes.value()))
            .transpose()?
    };
    if let Some(id) = known {
        return wal::Wal::open(dir, id, || {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the Raft log of this store ({}) is missing: the database says its log is there",
                    dir.display()
                ),
            ))
        });
    }
    // A new id: segments left by a store this database was seeded over are removed by `open`.
    let id = fresh_id();
    let in_database = log_in_database(db)?;
    let opened = wal::Wal::open(dir, id, || Ok(in_database))?;
    // The log is durable in its file now; the database forgets its copy and names the file.
    // A crash before this commit moves it again at the next start, under another id.
    let mut txn = db.begin_write().map_err(io_error)?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(|e| io::Error::other(e.to_string()))?;
    txn.open_table(LOG)
        .map_err(io_error)?
        .retain(|_, _| false)
        .map_err(io_error)?;
    txn.open_table(LOG_META)
        .map_err(io_error)?
        .retain(|_, _| false)
        .map_err(io_error)?;
    txn.open_table(SM_META)
        .map_err(io_error)?
        .insert(WAL_ID_KEY, encode(&id)?.as_slice())
        .map_err(io_error)?;
    txn.commit().map_err(io_error)?;
    Ok(opened)
}

/// The log the database holds (see [`LOG`]), as the log file replays it.
fn log_in_database(db: &Database) -> io::Result<wal::Replayed> {
    use redb::ReadableTable;
    let mut replayed = wal::Replayed::default();
    let txn = db.begin_read().map_err(io_error)?;
    let meta = txn.open_table(LOG_META).map_err(io_error)?;
    for row in meta.iter().map_err(io_error)? {
        let (key, value) = row.map_err(io_error)?;
        let (key, value) = (key.value(), value.value().to_vec());
        if key == writer::LAST_PURGED_KEY {
            let purged: crate::types::LogId = decode(&value)?;
            replayed.last_purged = Some((purged.index(), value));
        } else {
            replayed.meta.insert(key.to_string(), value);
        }
    }
    let log = txn.open_table(LOG).map_err(io_error)?;
    for row in log.iter().map_err(io_error)? {
        let (index, bytes) = row.map_err(io_error)?;
        replayed
            .entries
            .insert(index.value(), bytes.value().to_vec());
    }
    Ok(replayed)
}

/// An id no other store on this machine has: 64 random bits from the standard library's
/// per-process random hash keys, with the time and the process id mixed in.
fn fresh_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
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
