//! `snapshot save`: a consistent snapshot of the cluster state, written on the agent's machine.
//! (`init`, `join`, `leave` and `recover` change what this node is and are carried out by its
//! supervisor, in [`crate::node`].)

use symphony_consensus::Consensus;
use symphony_consensus::store::snapshot;
use symphony_ctl::proto::{CtlError, ErrorCode, Response, SnapshotInfo};

use crate::errors::{consensus_error, internal};

pub async fn snapshot_save(consensus: &Consensus, path: &str) -> Result<Response, CtlError> {
    let snapshot = consensus
        .current_snapshot()
        .await
        .map_err(consensus_error)?
        .ok_or_else(|| CtlError::new(ErrorCode::Unavailable, "nothing has been applied yet"))?;
    let bytes = snapshot.snapshot.len() as u64;
    let last_log_index = snapshot.meta.last_log_id.map(|id| id.index());
    let target = std::path::PathBuf::from(path);
    tokio::task::spawn_blocking(move || snapshot::save(&target, &snapshot))
        .await
        .map_err(|error| internal(error.to_string()))?
        .map_err(|error| {
            CtlError::new(
                ErrorCode::BadRequest,
                format!("cannot write {path}: {error}"),
            )
        })?;
    Ok(Response::SnapshotSaved(SnapshotInfo {
        path: path.to_string(),
        last_log_index,
        bytes,
    }))
}
