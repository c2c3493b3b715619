//! The control protocol's typed error: a stable code, one sentence for people, and the fields
//! code acts on — whether a write may have taken effect, where the leader is, a compare's
//! revisions — so that nothing has to read the sentence to decide anything.

use serde::{Deserialize, Serialize};

/// A typed error: a stable machine-readable code, one human sentence, and structured fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CtlError {
    pub code: ErrorCode,
    pub message: String,
    /// Whether the request this error answers may have changed the cluster state. A client
    /// retrying a write, and the chaos checker, decide on this field alone.
    #[serde(default)]
    pub applied: Applied,
    /// Where the leader is, when the error is about not being it and one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderHint>,
    /// For [`ErrorCode::CompareFailed`]: the revision the compare asked for (0: the key must
    /// not exist) and the key's revision now (0: it does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareFailure>,
    /// For `compacted`: where a watcher can resume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted: Option<Compacted>,
}

/// What a reader that asked for history no longer kept can do: resume after `oldest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compacted {
    pub requested_revision: u64,
    pub oldest_revision: u64,
}

/// Whether a failed request may have taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// Certainly not: it was refused before anything was proposed, or applied as a no-op.
    No,
    /// Perhaps: it may be in the log, and may yet be applied. Retrying a non-idempotent write
    /// blindly could apply it twice. The default, so that an error from a peer that does not
    /// say is never taken for a clean refusal.
    #[default]
    Unknown,
}

/// Who leads, as the node that answered knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    /// The leader's Raft id.
    pub raft_id: u64,
    /// Where it serves the node-to-node API, when known.
    #[serde(default)]
    pub remote_addr: Option<String>,
}

/// What a failed compare-and-set compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareFailure {
    pub expected_revision: u64,
    pub current_revision: u64,
}

impl CtlError {
    /// An error with `code`; whether it may have taken effect follows from the code (see
    /// [`ErrorCode::may_follow_a_proposal`]) until [`CtlError::not_applied`] says otherwise.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CtlError {
            code,
            message: message.into(),
            applied: if code.may_follow_a_proposal() {
                Applied::Unknown
            } else {
                Applied::No
            },
            leader: None,
            compare: None,
            compacted: None,
        }
    }

    /// History after `requested` is no longer all kept; resume after `oldest`.
    pub fn compacted(what: &str, requested: u64, oldest: u64) -> Self {
        CtlError::history_gone(
            format!(
                "{what} after revision {requested} are no longer all kept here; resume from revision {oldest} (--since {oldest}) and read the current state for what came before"
            ),
            requested,
            oldest,
        )
    }

    /// A KV watch or read as of a revision the history no longer keeps.
    pub fn kv_compacted(requested: u64, oldest: u64, keep: u64) -> Self {
        CtlError::history_gone(
            format!(
                "revision {requested} of the KV store was compacted; the oldest revision still kept is {oldest} (watch with --from-revision {oldest} after reading the current values with kv ls). The cluster keeps the last {keep} revisions: change it with `symphony-ctl kv history --keep N`"
            ),
            requested,
            oldest,
        )
    }

    fn history_gone(message: String, requested: u64, oldest: u64) -> Self {
        let mut error = CtlError::new(ErrorCode::Compacted, message);
        error.compacted = Some(Compacted {
            requested_revision: requested,
            oldest_revision: oldest,
        });
        error
    }

    /// Marks the error as certainly not applied: it was raised before anything was proposed.
    pub fn not_applied(mut self) -> Self {
        self.applied = Applied::No;
        self
    }

    pub fn with_leader(mut self, leader: Option<LeaderHint>) -> Self {
        self.leader = leader;
        self
    }

    /// A compare-and-set on `key` that found `current` where `expected` was asked for.
    pub fn compare_failed(key: &str, expected: u64, current: u64) -> Self {
        let found = if current == 0 {
            "the key does not exist".to_string()
        } else {
            format!("the key is at revision {current}")
        };
        let wanted = if expected == 0 {
            "it must not exist".to_string()
        } else {
            format!("expected revision {expected}")
        };
        let mut error = CtlError::new(
            ErrorCode::CompareFailed,
            format!("key '{key}' was not changed: {wanted}, but {found}"),
        );
        error.compare = Some(CompareFailure {
            expected_revision: expected,
            current_revision: current,
        });
        error
    }
}

impl From<symphony_wire::Fault> for CtlError {
    fn from(fault: symphony_wire::Fault) -> Self {
        use symphony_wire::FaultKind;
        let (code, message) = match fault.kind {
            FaultKind::Malformed => (ErrorCode::BadRequest, fault.message),
            FaultKind::UnknownRequest => (
                ErrorCode::UnknownRequest,
                format!(
                    "this agent does not know that request ({}); is symphony-ctl newer than the agent?",
                    fault.message
                ),
            ),
            FaultKind::FrameTooLarge => (ErrorCode::FrameTooLarge, fault.message),
            FaultKind::ReplyTooLarge => (
                ErrorCode::BadRequest,
                format!("{} (for `kv ls`, a longer prefix)", fault.message),
            ),
        };
        CtlError::new(code, message)
    }
}

/// Stable error codes. Scripts match on these; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be decoded, or a field is invalid.
    BadRequest,
    /// The request kind is not known to this agent (a newer client?).
    UnknownRequest,
    /// The frame is over the size limit; the connection is closed.
    FrameTooLarge,
    /// The peer speaks another protocol or version.
    ProtocolMismatch,
    /// The node is not part of a cluster yet: run `init` (or `join`).
    NotInitialised,
    /// The node already belongs to a cluster.
    AlreadyInitialised,
    /// A join token is wrong or was rotated.
    InvalidToken,
    /// The node belongs to, or asked to join, another cluster.
    WrongCluster,
    /// The change would leave the cluster without a quorum; `--force` overrides.
    WouldLoseQuorum,
    /// No node with that id.
    NotFound,
    /// A compare-and-set found another revision.
    CompareFailed,
    /// There is no leader right now, or it cannot be reached.
    NoLeader,
    /// The node cannot serve the request right now; retrying may help.
    Unavailable,
    /// Only a manager can do this.
    NotManager,
    /// Something went wrong inside the agent; its log has the details.
    Internal,
    /// The manager's disk is full: it takes no more writes until there is room (reads and
    /// forwarding go on).
    NoSpace,
    /// A stream asked for history that is no longer kept (see the error's `compacted`).
    Compacted,
    /// The CA bundle the cluster presented does not match the digest the join token pins:
    /// the address may not be this cluster's (or the token is another cluster's). Nothing
    /// secret was sent.
    UntrustedCa,
    /// The caller's certificate does not allow the call: its role (a worker calling what only
    /// managers may), the node it names (acting for another node), or none shown.
    Forbidden,
    /// The node was removed from the cluster (`node rm`): its certificate is refused and its
    /// id admits no join again (a fresh config dir makes a new node).
    NodeRemoved,
}

impl ErrorCode {
    /// Whether an error with this code can come after a proposal reached the Raft log (so the
    /// write may have been applied), unless the error says otherwise. Every other code is a
    /// refusal made before anything was proposed, or a no-op the state machine applied.
    pub fn may_follow_a_proposal(self) -> bool {
        matches!(
            self,
            ErrorCode::NoLeader | ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::NoSpace
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorCode {
    /// The code as scripts see it (`no_leader`), from a fixed list: also a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownRequest => "unknown_request",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::ProtocolMismatch => "protocol_mismatch",
            ErrorCode::NotInitialised => "not_initialised",
            ErrorCode::AlreadyInitialised => "already_initialised",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::WrongCluster => "wrong_cluster",
            ErrorCode::WouldLoseQuorum => "would_lose_quorum",
            ErrorCode::NotFound => "not_found",
            ErrorCode::CompareFailed => "compare_failed",
            ErrorCode::NoLeader => "no_leader",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotManager => "not_manager",
            ErrorCode::Internal => "internal",
            ErrorCode::NoSpace => "no_space",
            ErrorCode::Compacted => "compacted",
            ErrorCode::UntrustedCa => "untrusted_ca",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NodeRemoved => "node_removed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compare_failure_carries_both_revisions_and_says_so() {
        let error = CtlError::compare_failed("k", 0, 4);
        assert_eq!(error.code, ErrorCode::CompareFailed);
        assert_eq!(
            error.compare,
            Some(CompareFailure {
                expected_revision: 0,
                current_revision: 4
            })
        );
        assert_eq!(
            error.message,
            "key 'k' was not changed: it must not exist, but the key is at revision 4"
        );
        assert_eq!(error.applied, Applied::No);
        let error = CtlError::compare_failed("k", 3, 0);
        assert_eq!(
            error.message,
            "key 'k' was not changed: expected revision 3, but the key does not exist"
        );
    }

    #[test]
    fn whether_an_error_may_have_been_applied_follows_the_code_until_told() {
        assert_eq!(
            CtlError::new(ErrorCode::BadRequest, "x").applied,
            Applied::No
        );
        assert_eq!(
            CtlError::new(ErrorCode::NoLeader, "x").applied,
            Applied::Unknown
        );
        assert_eq!(
            CtlError::new(ErrorCode::NoLeader, "x")
                .not_applied()
                .applied,
            Applied::No
        );
        // An error from a peer that does not say is taken as possibly applied.
        #[derive(serde::Serialize)]
        struct Older {
            code: ErrorCode,
            message: String,
        }
        let bytes = rmp_serde::to_vec_named(&Older {
            code: ErrorCode::BadRequest,
            message: "x".into(),
        })
        .unwrap_or_default();
        let decoded: CtlError = rmp_serde::from_slice(&bytes)
            .unwrap_or_else(|_| CtlError::new(ErrorCode::Internal, ""));
        assert_eq!(decoded.code, ErrorCode::BadRequest);
        assert_eq!(decoded.applied, Applied::Unknown);
    }
}
