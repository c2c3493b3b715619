//! Seeding a store as a one-voter cluster from a given state: how `recover
//! --force-new-cluster` turns a surviving manager into a cluster of its own, and how `snapshot
//! restore` starts a new manager from a snapshot file.
//!
//! The new store holds the state machine at log id `at`, an empty log purged up to `at`, and a
//! membership of this node alone; on start the node elects itself and carries on from `at`. It
//! is written to a temporary file and renamed over the old one, so a crash leaves either store
//! whole.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use openraft::entry::RaftEntry;
use openraft::{EntryPayload, Membership, RaftLogReader};
use redb::Database;

use super::log::VOTE_KEY;
use super::writer::{LAST_PURGED_KEY, write_rows};
use super::{DB_FILE, LOG_META, StoreOptions, create_tables, encode, io_error};
use crate::state::{Changes, ClusterState};
use crate::types::{LogId, ManagerNode, StoredMembership, Vote};

/// Everything a node's store holds that a new cluster keeps: the state after every entry of
/// its log, and the id of that last entry.
pub struct Recovered {
    pub state: ClusterState,
    pub last_log_id: Option<LogId>,
}

/// Reads the store in `dir` and applies every entry of its log on top of its state machine,
/// including entries this node never learned were committed: after a quorum loss they may have
/// been acknowledged to clients, so a recovered cluster keeps them (as etcd does).
pub async fn recover_state(dir: &Path) -> io::Result<Recovered> {
    let (mut log, state_machine) = super::open(&StoreOptions {
        dir: dir.to_path_buf(),
    })
    .map_err(io::Error::other)?;
    let shared = state_machine.shared_state();
    let (applied, _) = state_machine.applied();
    let mut state = shared.read().clone();
    let from = applied.map_or(0, |id| id.index() + 1);
    let entries = log.try_get_log_entries(from..).await?;
    let mut last_log_id = applied;
    let mut changes = Changes::default();
    for entry in entries {
        if let EntryPayload::Normal(command) = &entry.payload {
            state.apply(command, &mut changes);
        }
        last_log_id = Some(entry.log_id());
    }
    Ok(Recovered { state, last_log_id })
}

/// Replaces the store in `dir` with one that holds `state` at `at`, whose only member is this
/// node (`raft_node_id` at `node`).
pub async fn seed_single_voter(
    dir: &Path,
    raft_node_id: u64,
    node: ManagerNode,
    state: &ClusterState,
    at: Option<LogId>,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let final_path = dir.join(DB_FILE);
    let tmp_path = dir.join(format!("{DB_FILE}.seed"));
    let _ = std::fs::remove_file(&tmp_path);
    {
        let db = Database::create(&tmp_path).map_err(io_error)?;
        create_tables(&db)?;
        let membership = Membership::new(
            vec![BTreeSet::from([raft_node_id])],
            BTreeMap::from([(raft_node_id, node)]),
        )
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error.to_string()))?;
        let membership = StoredMembership::new(at, membership);
        let mut rows = super::state_machine::rows_for_everything(state)?;
        rows.last_applied = at.as_ref().map(encode).transpose()?;
        rows.membership = Some(encode(&membership)?);
        let term = at.map_or(0, |id| id.committed_leader_id().term);
        let vote = Vote::new(term, raft_node_id);
        // The log goes in the database's log tables (empty, purged up to `at`, and the vote):
        // the store moves it into a log file of its own when it is opened, and removes the
        // old store's log file then (see `open_log`).
        let mut txn = db.begin_write().map_err(io_error)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| io::Error::other(e.to_string()))?;
        {
            let mut meta = txn.open_table(LOG_META).map_err(io_error)?;
            if let Some(at) = at {
                meta.insert(LAST_PURGED_KEY, encode(&at)?.as_slice())
                    .map_err(io_error)?;
            }
            meta.insert(VOTE_KEY, encode(&vote)?.as_slice())
                .map_err(io_error)?;
        }
        write_rows(&txn, &rows)?;
        txn.commit().map_err(io_error)?;
    }
    std::fs::rename(&tmp_path, &final_path)?;
    std::fs::File::open(dir)?.sync_all()
}
