//! Proposing commands and reading the cluster state, with the errors operators see.

use symphony_consensus::{ClusterInfo, ClusterState, Command, CommandResult, Consensus};
use symphony_ctl::proto::{CtlError, ErrorCode, ReadConsistency};

use crate::errors::{consensus_error, not_initialised};

/// Proposes `command` and waits until it is applied. A refused compare-and-set and a command
/// the state machine rejected become typed errors that say nothing was written.
pub async fn propose(consensus: &Consensus, command: Command) -> Result<CommandResult, CtlError> {
    match consensus.propose(command).await.map_err(consensus_error)? {
        CommandResult::CompareFailed {
            key,
            expected,
            actual,
        } => Err(CtlError::compare_failed(&key, expected, actual)),
        CommandResult::Rejected { reason } => {
            Err(CtlError::new(ErrorCode::BadRequest, reason).not_applied())
        }
        result => Ok(result),
    }
}

/// Proposes a command an operator or a node asked for: refused with `no_space`, nothing
/// proposed, while the store's disk is below its floor (see [`crate::system::space_floor`]), so
/// the room left serves the Raft node's own writes and the node never stops for a full disk on
/// the leader's account. etcd's NOSPACE alarm is the same idea.
pub async fn propose_client(
    consensus: &Consensus,
    command: Command,
) -> Result<CommandResult, CtlError> {
    check_room(consensus.data_dir())?;
    propose(consensus, command).await
}

/// `Err(no_space)` when the disk of `dir` has less free than its floor.
pub fn check_room(dir: &std::path::Path) -> Result<(), CtlError> {
    let Some((free, total)) = crate::system::disk_space(dir) else {
        return Ok(());
    };
    let floor = crate::system::space_floor(total);
    if free < floor {
        return Err(CtlError::new(
            ErrorCode::NoSpace,
            format!(
                "this manager's disk has {} free, under the {} it keeps for the cluster's own writes; free some space (writes resume by themselves), or send writes to another manager",
                crate::manager::scheduler::filters::bytes(free),
                crate::manager::scheduler::filters::bytes(floor)
            ),
        )
        .not_applied());
    }
    Ok(())
}

/// Reads the state as `consistency` asks: after a quorum confirmed this node leads (read
/// index), or from the local replica as applied so far.
pub async fn read<T>(
    consensus: &Consensus,
    consistency: ReadConsistency,
    read: impl FnOnce(&ClusterState) -> T,
) -> Result<T, CtlError> {
    match consistency {
        ReadConsistency::Linearizable => consensus
            .read_linearizable(read)
            .await
            .map_err(consensus_error),
        ReadConsistency::Stale => Ok(consensus.read_stale(read)),
    }
}

/// The cluster this replica holds, or the error that says it holds none.
pub fn require_cluster(consensus: &Consensus) -> Result<ClusterInfo, CtlError> {
    consensus
        .read_stale(|state| state.cluster.clone())
        .ok_or_else(not_initialised)
}
