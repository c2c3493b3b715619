//! The errors many handlers share, as operators read them: each a typed [`CtlError`] whose
//! fields say whether anything may have been applied and where the leader is.

use symphony_consensus::{CommandResult, ConsensusError};
use symphony_ctl::proto::{CtlError, ErrorCode, LeaderHint};

pub fn not_initialised() -> CtlError {
    CtlError::new(
        ErrorCode::NotInitialised,
        "this node is not part of a cluster yet; run `symphony-ctl init` to create one",
    )
}

pub fn already_in(cluster_id: &str) -> CtlError {
    CtlError::new(
        ErrorCode::AlreadyInitialised,
        format!(
            "this node already belongs to cluster {cluster_id}; a node can only be initialised once"
        ),
    )
}

pub fn no_such_node(node_id: u64) -> CtlError {
    CtlError::new(
        ErrorCode::NotFound,
        format!("no node {node_id} in this cluster; `symphony-ctl node ls` lists them"),
    )
}

pub fn internal(message: impl Into<String>) -> CtlError {
    CtlError::new(ErrorCode::Internal, message)
}

pub fn bad_request(message: impl Into<String>) -> CtlError {
    CtlError::new(ErrorCode::BadRequest, message)
}

/// The state machine answered with a result the caller did not expect.
pub fn unexpected_result(result: CommandResult) -> CtlError {
    internal(format!(
        "the state machine answered with an unexpected result: {result:?}"
    ))
}

/// This manager does not lead; `leader` is the one it knows, if any. Nothing was proposed.
pub fn not_leader(leader: Option<LeaderHint>) -> CtlError {
    let where_ = match &leader {
        Some(LeaderHint {
            raft_id,
            remote_addr: Some(addr),
        }) => format!("; the leader is {raft_id} at {addr}"),
        Some(LeaderHint { raft_id, .. }) => format!("; the leader is {raft_id}"),
        None => "; no leader is known right now".to_string(),
    };
    CtlError::new(
        ErrorCode::NoLeader,
        format!("this manager is not the leader{where_}"),
    )
    .not_applied()
    .with_leader(leader)
}

/// Consensus failures as operators read them, with what the failure says about the write.
pub fn consensus_error(error: ConsensusError) -> CtlError {
    match error {
        // openraft refuses before appending anything.
        ConsensusError::NotLeader { leader_id, leader } => {
            not_leader(leader_id.map(|raft_id| LeaderHint {
                raft_id,
                remote_addr: leader.map(|node| node.remote_addr),
            }))
        }
        // The append was not durable here, but it may have reached a follower: unknown.
        ConsensusError::NoSpace(_) => CtlError::new(ErrorCode::NoSpace, error.to_string()),
        ConsensusError::AlreadyInitialised => {
            CtlError::new(ErrorCode::AlreadyInitialised, error.to_string())
        }
        ConsensusError::MembershipBusy(_) => {
            CtlError::new(ErrorCode::Unavailable, error.to_string()).not_applied()
        }
        // The entry may be in the log: the outcome is not known.
        ConsensusError::NoQuorum(_) | ConsensusError::Stopped(_) => {
            CtlError::new(ErrorCode::Unavailable, error.to_string())
        }
        ConsensusError::Config(_) | ConsensusError::Store(_) | ConsensusError::Other(_) => {
            CtlError::new(ErrorCode::Internal, error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use symphony_consensus::ManagerNode;
    use symphony_ctl::proto::Applied;

    use super::*;

    #[test]
    fn a_refused_write_says_it_was_not_applied_and_where_the_leader_is() {
        let error = consensus_error(ConsensusError::NotLeader {
            leader_id: Some(3),
            leader: Some(ManagerNode {
                raft_addr: "127.0.0.1:1".into(),
                remote_addr: "127.0.0.1:2".into(),
            }),
        });
        assert_eq!(error.code, ErrorCode::NoLeader);
        assert_eq!(error.applied, Applied::No);
        assert_eq!(
            error.leader,
            Some(LeaderHint {
                raft_id: 3,
                remote_addr: Some("127.0.0.1:2".into())
            })
        );
        let lost = consensus_error(ConsensusError::NoQuorum("discarded".into()));
        assert_eq!(lost.applied, Applied::Unknown);
    }
}
