//! The Raft state machine: [`ClusterState`] in memory, persisted row by row in redb.
//!
//! Each `apply` call applies its batch of entries to the in-memory state, then queues the rows
//! the batch touched together with the last-applied log id and the membership as one write to
//! the store's writer, which commits it atomically (usually in the same fsync as the next log
//! append). Clients are answered without waiting for that commit: their entries are already
//! durable in the log, and whatever a crash loses here is replayed from it, since the log is
//! only purged behind a snapshot.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::watch;

use super::writer::{Done, LAST_APPLIED_KEY, MEMBERSHIP_KEY, RowWrites, Write, Writer};
use super::{SM_META, decode, encode, io_error, rows_table};
use crate::events::{self, EventLog};
use crate::state::{Changes, ClusterState, Command, CommandResult};
use crate::store::SnapshotPayload;
use crate::types::{LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig};

/// The applied cluster state, shared with readers. Writers are only the state machine.
#[derive(Clone, Default)]
pub struct SharedState {
    inner: Arc<RwLock<ClusterState>>,
    changes: Arc<TableChanges>,
    assignments: Arc<AssignmentChanges>,
    events: EventLog,
    /// The size of the last snapshot this replica made (to send) or installed, in bytes; 0
    /// before the first.
    snapshot_bytes: Arc<std::sync::atomic::AtomicU64>,
}

/// One counter per table, bumped after every apply that changed it, so a reader can wait for
/// the tables it cares about and sleep through the rest (a busy KV store does not wake the
/// task dispatcher).
pub struct TableChanges {
    tables: BTreeMap<&'static str, watch::Sender<u64>>,
}

impl Default for TableChanges {
    fn default() -> Self {
        TableChanges {
            tables: ClusterState::default()
                .tables()
                .iter()
                .map(|table| (table.name(), watch::Sender::new(0)))
                .collect(),
        }
    }
}

impl TableChanges {
    fn bump(&self, table: &str) {
        if let Some(sender) = self.tables.get(table) {
            sender.send_modify(|count| *count += 1);
        }
    }
}

/// One counter per node that someone watches, bumped after every apply that changed what the
/// node is assigned ([`crate::state::tasks::TaskTable::node_changes`]). A thousand nodes'
/// assignment streams each wake for their own node only: woken by every change to the tasks
/// table instead, each of them took the state's read lock on every apply to find nothing.
#[derive(Default)]
struct AssignmentChanges {
    nodes: std::sync::Mutex<std::collections::HashMap<u64, watch::Sender<u64>>>,
}

impl AssignmentChanges {
    fn watch(&self, node_id: u64) -> watch::Receiver<u64> {
        let mut nodes = self.lock();
        // Streams come and go with sessions: forget the counters nobody watches any more.
        nodes.retain(|_, sender| sender.receiver_count() > 0);
        nodes
            .entry(node_id)
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    fn bump(&self, touched: impl IntoIterator<Item = u64>) {
        let nodes = self.lock();
        for node_id in touched {
            if let Some(sender) = nodes.get(&node_id) {
                sender.send_modify(|count| *count += 1);
            }
        }
    }

    fn bump_all(&self) {
        for sender in self.lock().values() {
            sender.send_modify(|count| *count += 1);
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, watch::Sender<u64>>> {
        // Nothing is left half-done under this lock.
        self.nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Waits for changes to some tables of the applied state.
pub struct TableWatch {
    receivers: Vec<watch::Receiver<u64>>,
}

impl TableWatch {
    /// Resolves once any of the watched tables changed since the last call (or since the
    /// watch was made); `false` if the state machine is gone.
    pub async fn changed(&mut self) -> bool {
        if self.receivers.is_empty() {
            return std::future::pending().await;
        }
        let waits = self
            .receivers
            .iter_mut()
            .map(|receiver| Box::pin(receiver.changed()));
        let (result, _, _) = futures_util::future::select_all(waits).await;
        result.is_ok()
    }
}

impl SharedState {
    /// The size of the last snapshot made or installed here, in bytes (0: none yet).
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn snapshot_made(&self, bytes: usize) {
        self.snapshot_bytes.store(
            u64::try_from(bytes).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// This replica's recent events.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// Watches `tables` (by [`crate::state::Table::name`], e.g. `state::tasks::TABLE`).
    pub fn watch(&self, tables: &[&str]) -> TableWatch {
        TableWatch {
            receivers: tables
                .iter()
                .filter_map(|table| self.changes.tables.get(table))
                .map(watch::Sender::subscribe)
                .collect(),
        }
    }

    /// Watches what `node_id` is assigned: the receiver sees a new value after every apply
    /// that changed the tasks the node acts on (see
    /// [`crate::state::tasks::TaskTable::node_changes`]), and after a snapshot is installed.
    pub fn watch_assignments(&self, node_id: u64) -> watch::Receiver<u64> {
        self.assignments.watch(node_id)
    }

    fn changed(&self, changes: &Changes) {
        for table in self.changes.tables.keys() {
            if changes.of(table).next().is_some() {
                self.changes.bump(table);
            }
        }
    }

    fn replaced(&self) {
        for table in self.changes.tables.keys() {
            self.changes.bump(table);
        }
        self.assignments.bump_all();
    }

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
    writer: Writer,
    state: SharedState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl StateMachineStore {
    pub(crate) fn load(db: &Database, writer: Writer) -> io::Result<StateMachineStore> {
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
            for table in state.tables_mut() {
                let rows = txn.open_table(rows_table(table.name())).map_err(io_error)?;
                for row in rows.iter().map_err(io_error)? {
                    let (key, bytes) = row.map_err(io_error)?;
                    table.load_row(key.value(), bytes.value())?;
                }
            }
        }
        let events = EventLog::default();
        events.start_at(last_applied.map_or(0, |id: LogId| id.index()));
        Ok(StateMachineStore {
            writer,
            state: SharedState {
                inner: Arc::new(RwLock::new(state)),
                changes: Arc::default(),
                assignments: Arc::default(),
                events,
                snapshot_bytes: Arc::default(),
            },
            last_applied,
            membership,
        })
    }

    /// The last applied log id and membership.
    pub fn applied(&self) -> (Option<LogId>, StoredMembership) {
        (self.last_applied, self.membership.clone())
    }

    /// The applied state, for readers.
    pub fn shared_state(&self) -> SharedState {
        self.state.clone()
    }

    /// The touched rows plus the applied position and membership, as one atomic write.
    fn rows_with_position(&self, mut rows: RowWrites) -> io::Result<RowWrites> {
        rows.last_applied = self.last_applied.as_ref().map(encode).transpose()?;
        rows.membership = Some(encode(&self.membership)?);
        Ok(rows)
    }

    fn snapshot_meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
        }
    }
}

/// Every row of `state`, replacing whatever a store held.
pub(crate) fn rows_for_everything(state: &ClusterState) -> io::Result<RowWrites> {
    RowWrites::everything(state)
}

/// Building row writes from the in-memory state.
trait RowsFromState: Sized {
    fn from_changes(state: &ClusterState, changes: &Changes) -> io::Result<Self>;
    fn everything(state: &ClusterState) -> io::Result<Self>;
}

impl RowsFromState for RowWrites {
    /// The rows `changes` names, encoded from `state`.
    fn from_changes(state: &ClusterState, changes: &Changes) -> io::Result<RowWrites> {
        let mut rows = RowWrites::default();
        for table in state.tables() {
            for key in changes.of(table.name()) {
                rows.tables
                    .entry(table.name())
                    .or_default()
                    .insert(key.clone(), table.encode_row(key)?);
            }
        }
        Ok(rows)
    }

    /// Every row of `state`, replacing whatever was stored.
    fn everything(state: &ClusterState) -> io::Result<RowWrites> {
        let mut rows = RowWrites {
            replace_all: true,
            ..RowWrites::default()
        };
        for table in state.tables() {
            let stored = rows.tables.entry(table.name()).or_default();
            for key in table.row_keys() {
                let row = table.encode_row(&key)?;
                stored.insert(key, row);
            }
        }
        Ok(rows)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied, self.membership.clone()))
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
        let (rows, touched_nodes) = {
            let mut state = self.state.write();
            let at_ms = now_ms();
            for (entry, responder) in batch {
                let log_id = entry.log_id();
                let revision = log_id.index();
                let result = match &entry.payload {
                    // KV writes make no events: the hot path stays as it was.
                    EntryPayload::Normal(command @ Command::Kv(_)) => {
                        let result = state.apply(command, &mut changes);
                        self.state.events.record(revision, Vec::new());
                        result
                    }
                    EntryPayload::Normal(command) => {
                        let mut touched = Changes::default();
                        let result = state.apply(command, &mut touched);
                        let made = events::of_changes(&state, &touched, revision, at_ms);
                        self.state.events.record(revision, made);
                        changes.absorb(touched);
                        result
                    }
                    EntryPayload::Membership(membership) => {
                        self.membership = StoredMembership::new(Some(log_id), membership.clone());
                        self.state.events.record(revision, Vec::new());
                        CommandResult::Done
                    }
                    EntryPayload::Blank => {
                        let leader_id = log_id.committed_leader_id();
                        let event = events::leader(
                            &state,
                            revision,
                            at_ms,
                            leader_id.term,
                            leader_id.node_id,
                        );
                        self.state.events.record(revision, vec![event]);
                        CommandResult::Done
                    }
                };
                self.last_applied = Some(entry.log_id());
                if let Some(responder) = responder {
                    replies.push((responder, result));
                }
            }
            let touched = state.tasks.take_touched_nodes();
            (RowWrites::from_changes(&state, &changes)?, touched)
        };
        let rows = self.rows_with_position(rows)?;
        self.writer.submit(Write::StateRows(rows), Done::Nobody)?;
        self.state.changed(&changes);
        self.state.assignments.bump(touched_nodes);
        for (responder, result) in replies {
            responder.send(result);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            writer: self.writer.clone(),
            meta: self.snapshot_meta(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        crate::failpoint::check("snapshot.install")?;
        let new_state = SnapshotPayload::decode(&snapshot)?;
        self.state.snapshot_made(snapshot.len());
        let rows = RowWrites::everything(&new_state)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let rows = self.rows_with_position(rows)?;
        self.writer.write(Write::StateRows(rows)).await?;
        *self.state.write() = new_state;
        self.state.replaced();
        // The entries the snapshot stands for made events this replica never saw.
        self.state
            .events
            .start_at(meta.last_log_id.map_or(0, |id| id.index()));
        tracing::info!(last_log_id = ?meta.last_log_id, "installed a snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        if self.last_applied.is_none() {
            return Ok(None);
        }
        // Under the read lock the state and the applied position belong together: apply takes
        // the write lock for a whole batch and updates `last_applied` on this same task.
        let data = SnapshotPayload::encode(&self.state.read())?;
        self.state.snapshot_made(data.len());
        Ok(Some(Snapshot {
            meta: self.snapshot_meta(),
            snapshot: data,
        }))
    }
}

/// openraft's compaction trigger. It makes the store's state durable up to (at least) the
/// position it was created at, after which openraft may purge the log up to there.
pub struct SnapshotBuilder {
    writer: Writer,
    meta: SnapshotMeta,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        crate::failpoint::check("snapshot.build")?;
        // A waited-for state write makes the writer commit every state row queued so far, which
        // covers every entry applied before this builder was created.
        self.writer
            .write(Write::StateRows(RowWrites::default()))
            .await?;
        tracing::debug!(last_log_id = ?self.meta.last_log_id, "state durable for compaction");
        // Openraft (=0.10.0-alpha.37) keeps only the meta of a built snapshot: it reads the
        // snapshot it sends through `get_current_snapshot`, which serialises the state then.
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: SnapshotData::new(),
        })
    }
}

/// This replica's wall clock, for events.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::AssignmentChanges;

    #[test]
    fn a_node_s_watch_wakes_for_its_own_assignments_only() {
        let changes = AssignmentChanges::default();
        let mut seven = changes.watch(7);
        changes.bump([8, 9]);
        assert!(!seven.has_changed().unwrap());
        changes.bump([8, 7]);
        assert!(seven.has_changed().unwrap());
        seven.mark_unchanged();
        changes.bump_all();
        assert!(seven.has_changed().unwrap());
        // A counter nobody watches any more is forgotten when the next watch is made.
        drop(seven);
        let _nine = changes.watch(9);
        assert_eq!(changes.lock().keys().copied().collect::<Vec<_>>(), [9]);
    }
}
