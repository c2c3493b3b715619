//! The Raft state machine: [`ClusterState`] in memory, persisted row by row in redb.
//!
//! Each `apply` call applies its batch of entries to the in-memory state, then writes the rows
//! the batch touched together with the last-applied log id and the membership in one redb
//! transaction. That transaction skips fsync: it becomes durable with the log's next fsynced
//! commit (same file, ordered commits), and whatever a crash loses is replayed from the log,
//! which is only purged behind a snapshot.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, WriteTransaction};

use super::{KV, NODES, SM_META, decode, encode, io_error, snapshot};
use crate::state::{Changes, ClusterInfo, ClusterState, CommandResult, KvRecord, NodeRecord};
use crate::store::SnapshotPayload;
use crate::types::{LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig};

const LAST_APPLIED_KEY: &str = "last_applied";
const MEMBERSHIP_KEY: &str = "membership";
const CLUSTER_KEY: &str = "cluster";
const REVISION_KEY: &str = "revision";

/// The applied cluster state, shared with readers. Writers are only the state machine.
#[derive(Clone, Default)]
pub struct SharedState {
    inner: Arc<RwLock<ClusterState>>,
}

impl SharedState {
    /// A read view of the state as applied so far on this node.
    pub fn read(&self) -> RwLockReadGuard<'_, ClusterState> {
        // Apply never leaves the state half-changed across a panic point, so a poisoned lock
        // still guards consistent data.
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, ClusterState> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The state machine handle openraft drives.
pub struct StateMachineStore {
    db: Arc<Database>,
    state: SharedState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot_path: PathBuf,
    /// The current snapshot, shared with snapshot builders that replace it.
    current_snapshot: Arc<Mutex<Option<Snapshot>>>,
}

impl StateMachineStore {
    pub(crate) fn load(db: Arc<Database>, dir: &Path) -> io::Result<StateMachineStore> {
        let mut state = ClusterState::default();
        let mut last_applied = None;
        let mut membership = StoredMembership::default();
        {
            let txn = db.begin_read().map_err(io_error)?;
            let meta = txn.open_table(SM_META).map_err(io_error)?;
            if let Some(bytes) = meta.get(LAST_APPLIED_KEY).map_err(io_error)? {
                last_applied = Some(decode(bytes.value())?);
            }
            if let Some(bytes) = meta.get(MEMBERSHIP_KEY).map_err(io_error)? {
                membership = decode(bytes.value())?;
            }
            if let Some(bytes) = meta.get(CLUSTER_KEY).map_err(io_error)? {
                state.cluster = Some(decode(bytes.value())?);
            }
            if let Some(bytes) = meta.get(REVISION_KEY).map_err(io_error)? {
                state.revision = decode(bytes.value())?;
            }
            let kv = txn.open_table(KV).map_err(io_error)?;
            for row in kv.iter().map_err(io_error)? {
                let (key, bytes) = row.map_err(io_error)?;
                let record: KvRecord = decode(bytes.value())?;
                state.kv.insert(key.value().to_string(), record);
            }
            let nodes = txn.open_table(NODES).map_err(io_error)?;
            for row in nodes.iter().map_err(io_error)? {
                let (id, bytes) = row.map_err(io_error)?;
                let record: NodeRecord = decode(bytes.value())?;
                state.nodes.insert(id.value(), record);
            }
        }
        let snapshot_path = snapshot::path_in(dir);
        let current_snapshot = snapshot::load(&snapshot_path)?;
        Ok(StateMachineStore {
            db,
            state: SharedState {
                inner: Arc::new(RwLock::new(state)),
            },
            last_applied,
            membership,
            snapshot_path,
            current_snapshot: Arc::new(Mutex::new(current_snapshot)),
        })
    }

    /// The applied state, for readers.
    pub fn shared_state(&self) -> SharedState {
        self.state.clone()
    }

    /// Writes the touched rows and the applied position in one transaction.
    fn persist(&self, rows: RowWrites, durability: Durability) -> io::Result<()> {
        let mut txn = self.db.begin_write().map_err(io_error)?;
        txn.set_durability(durability)
            .map_err(|e| io::Error::other(e.to_string()))?;
        write_rows(&txn, &rows)?;
        {
            let mut meta = txn.open_table(SM_META).map_err(io_error)?;
            if let Some(last_applied) = &self.last_applied {
                meta.insert(LAST_APPLIED_KEY, encode(last_applied)?.as_slice())
                    .map_err(io_error)?;
            }
            meta.insert(MEMBERSHIP_KEY, encode(&self.membership)?.as_slice())
                .map_err(io_error)?;
        }
        txn.commit().map_err(io_error)
    }

    fn snapshot_builder(&self) -> SnapshotBuilder {
        SnapshotBuilder {
            state: self.state.read().clone(),
            last_applied: self.last_applied.clone(),
            membership: self.membership.clone(),
            path: self.snapshot_path.clone(),
            current: self.current_snapshot.clone(),
        }
    }
}

/// Encoded rows to write: `None` deletes the row.
#[derive(Default)]
struct RowWrites {
    kv: Vec<(String, Option<Vec<u8>>)>,
    nodes: Vec<(u64, Option<Vec<u8>>)>,
    cluster: Option<Option<Vec<u8>>>,
    revision: Option<Vec<u8>>,
    /// Replace every KV and node row (snapshot install).
    replace_all: bool,
}

impl RowWrites {
    /// The rows `changes` names, encoded from `state`.
    fn from_changes(state: &ClusterState, changes: &Changes) -> io::Result<RowWrites> {
        let mut rows = RowWrites::default();
        for key in &changes.kv {
            let value = state.kv.get(key).map(encode).transpose()?;
            rows.kv.push((key.clone(), value));
        }
        for id in &changes.nodes {
            let value = state.nodes.get(id).map(encode).transpose()?;
            rows.nodes.push((*id, value));
        }
        if changes.cluster {
            rows.cluster = Some(
                state
                    .cluster
                    .as_ref()
                    .map(encode::<ClusterInfo>)
                    .transpose()?,
            );
        }
        if changes.revision {
            rows.revision = Some(encode(&state.revision)?);
        }
        Ok(rows)
    }

    /// Every row of `state`, replacing whatever was stored.
    fn everything(state: &ClusterState) -> io::Result<RowWrites> {
        let changes = Changes {
            kv: state.kv.keys().cloned().collect(),
            nodes: state.nodes.keys().copied().collect(),
            cluster: true,
            revision: true,
        };
        let mut rows = RowWrites::from_changes(state, &changes)?;
        rows.replace_all = true;
        Ok(rows)
    }
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
    match &rows.cluster {
        Some(Some(bytes)) => meta.insert(CLUSTER_KEY, bytes.as_slice()).map(drop),
        Some(None) => meta.remove(CLUSTER_KEY).map(drop),
        None => Ok(()),
    }
    .map_err(io_error)?;
    if let Some(bytes) = &rows.revision {
        meta.insert(REVISION_KEY, bytes.as_slice())
            .map_err(io_error)?;
    }
    Ok(())
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied.clone(), self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let batch: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut changes = Changes::default();
        let mut replies = Vec::with_capacity(batch.len());
        let rows = {
            let mut state = self.state.write();
            for (entry, responder) in batch {
                let result = match &entry.payload {
                    EntryPayload::Normal(command) => state.apply(command, &mut changes),
                    EntryPayload::Membership(membership) => {
                        self.membership =
                            StoredMembership::new(Some(entry.log_id()), membership.clone());
                        CommandResult::Done
                    }
                    EntryPayload::Blank => CommandResult::Done,
                };
                self.last_applied = Some(entry.log_id());
                if let Some(responder) = responder {
                    replies.push((responder, result));
                }
            }
            RowWrites::from_changes(&state, &changes)?
        };
        self.persist(rows, Durability::None)?;
        for (responder, result) in replies {
            responder.send(result);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_builder()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let new_state = SnapshotPayload::decode(&snapshot)?;
        let rows = RowWrites::everything(&new_state)?;
        self.last_applied = meta.last_log_id.clone();
        self.membership = meta.last_membership.clone();
        self.persist(rows, Durability::Immediate)?;
        *self.state.write() = new_state;
        let snapshot = Snapshot {
            meta: meta.clone(),
            snapshot,
        };
        snapshot::save(&self.snapshot_path, &snapshot)?;
        *self
            .current_snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(snapshot);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self
            .current_snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone())
    }
}

/// Builds a snapshot from a copy of the state taken when openraft asked for the builder, so
/// applies can go on while the snapshot is encoded and written.
pub struct SnapshotBuilder {
    state: ClusterState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    path: PathBuf,
    current: Arc<Mutex<Option<Snapshot>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let data = SnapshotPayload::encode(&self.state)?;
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_log_id: self.last_applied.clone(),
                last_membership: self.membership.clone(),
            },
            snapshot: data,
        };
        snapshot::save(&self.path, &snapshot)?;
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(snapshot.clone());
        tracing::info!(last_log_id = ?self.last_applied, "built a snapshot");
        Ok(snapshot)
    }
}
