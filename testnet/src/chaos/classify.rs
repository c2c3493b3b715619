//! How a client turns what happened to one operation into an [`Outcome`]: `Ok`, `Failed`
//! (certainly not applied) or `Indeterminate` (may have been applied, now or later).
//!
//! Calling an operation `Failed` when it was in fact applied makes the checker report a
//! violation that is not there; calling it `Indeterminate` when it was not applied only makes the
//! check more lenient. So an error counts as definite only where the agent's code shows that
//! nothing was proposed to Raft — and everything else is indeterminate. What the agent does
//! (agent/src/node/mod.rs, data.rs; consensus/src/handle.rs) and so how each error reads:
//!
//! - connecting or the hello failed: the request was never sent — `Failed`;
//! - `compare_failed`: the state machine applied the compare-and-set and refused it — a normal
//!   `Ok(Mismatch)` result;
//! - `bad_request`, `not_initialised`, `not_manager`, `invalid_token`, `wrong_cluster`, ...:
//!   refused before proposing (or, `bad_request` from `CommandResult::Rejected`, applied as a
//!   no-op) — `Failed`;
//! - `no_leader` comes from three places. "no manager is leader right now" is the receiving
//!   manager giving up before it forwarded or proposed anything — `Failed`. "this manager is not
//!   the leader; the leader is N ..." is openraft's `ForwardToLeader`, returned before the entry
//!   is appended — `Failed`. "this manager is not the leader; no leader is known right now" may
//!   also be openraft's `LogEntryDiscarded`, which the consensus crate maps to the same error;
//!   openraft sends that both for a truncated entry (never committed) and for a *purged* one
//!   whose fate it says is unknown — `Indeterminate`;
//! - `unavailable` (no quorum in time, a forward that timed out or lost its connection, the
//!   Raft node stopping) and `internal`: the entry may be in the log — `Indeterminate`;
//! - our own timeout, a dropped connection, an unreadable reply: the request may have arrived —
//!   `Indeterminate`.
//!
//! A read changes nothing, so for the checker a failed read and an indeterminate one are the
//! same (both are dropped); they are still told apart for the counts.

use symphony_ctl::ClientError;
use symphony_ctl::proto::{CtlError, ErrorCode};

use super::history::{OpResult, Outcome};

/// The leading words of the agent's "gave up waiting for a leader before forwarding" error.
const NO_LEADER_BEFORE_FORWARD: &str = "no manager is leader right now";
/// What openraft's `ForwardToLeader` with a known leader reads like once mapped.
const FORWARD_TO_KNOWN_LEADER: &str = "; the leader is ";

/// The outcome of a write (put or compare-and-set) that ended with `error`.
pub fn write_error(error: &ClientError) -> Outcome {
    match error {
        ClientError::Connect { .. } | ClientError::Handshake(_) => failed(error),
        ClientError::Remote(remote) => remote_write_error(remote),
        ClientError::Io(_)
        | ClientError::Closed
        | ClientError::Frame(_)
        | ClientError::WrongId { .. }
        | ClientError::UnexpectedReply { .. } => indeterminate(error),
    }
}

/// The outcome of an operation whose connection (or hello) failed: nothing was sent.
pub fn connect_error(error: &ClientError) -> Outcome {
    failed(error)
}

/// The outcome of a write the agent refused with `error`.
pub fn remote_write_error(error: &CtlError) -> Outcome {
    match error.code {
        ErrorCode::CompareFailed => Outcome::Ok(OpResult::Mismatch),
        ErrorCode::BadRequest
        | ErrorCode::UnknownRequest
        | ErrorCode::FrameTooLarge
        | ErrorCode::ProtocolMismatch
        | ErrorCode::NotInitialised
        | ErrorCode::AlreadyInitialised
        | ErrorCode::InvalidToken
        | ErrorCode::WrongCluster
        | ErrorCode::WouldLoseQuorum
        | ErrorCode::NotFound
        | ErrorCode::NotManager => failed(&coded(error)),
        ErrorCode::NoLeader if definitely_not_proposed(&error.message) => failed(&coded(error)),
        ErrorCode::NoLeader | ErrorCode::Unavailable | ErrorCode::Internal => {
            indeterminate(&coded(error))
        }
    }
}

/// The outcome of a read that ended with `error`.
pub fn read_error(error: &ClientError) -> Outcome {
    match error {
        ClientError::Connect { .. } | ClientError::Handshake(_) | ClientError::Remote(_) => {
            failed(&match error.remote() {
                Some(remote) => coded(remote),
                None => error.to_string(),
            })
        }
        _ => indeterminate(error),
    }
}

/// An operation that got no answer within the client's deadline.
pub fn timed_out(after: std::time::Duration) -> Outcome {
    Outcome::Indeterminate {
        reason: format!("no answer within {after:?}"),
    }
}

/// A connection (with its hello) that could not be made within the deadline: nothing was sent.
pub fn connect_timed_out(after: std::time::Duration) -> Outcome {
    Outcome::Failed {
        reason: format!("could not connect within {after:?}"),
    }
}

fn definitely_not_proposed(message: &str) -> bool {
    message.starts_with(NO_LEADER_BEFORE_FORWARD) || message.contains(FORWARD_TO_KNOWN_LEADER)
}

fn coded(error: &CtlError) -> String {
    format!("{}: {}", error.code, error.message)
}

fn failed(reason: &dyn std::fmt::Display) -> Outcome {
    Outcome::Failed {
        reason: reason.to_string(),
    }
}

fn indeterminate(reason: &dyn std::fmt::Display) -> Outcome {
    Outcome::Indeterminate {
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(code: ErrorCode, message: &str) -> ClientError {
        ClientError::Remote(CtlError::new(code, message))
    }

    fn is_failed(outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Failed { .. })
    }

    fn is_indeterminate(outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Indeterminate { .. })
    }

    #[test]
    fn refusals_before_proposing_are_definite() {
        let connect = ClientError::Connect {
            path: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(is_failed(&write_error(&connect)));
        assert!(is_failed(&write_error(&remote(
            ErrorCode::BadRequest,
            "too big"
        ))));
        assert!(is_failed(&write_error(&remote(
            ErrorCode::NotInitialised,
            "not part of a cluster"
        ))));
        assert!(is_failed(&write_error(&remote(
            ErrorCode::NoLeader,
            "no manager is leader right now (an election may be under way)"
        ))));
        assert!(is_failed(&write_error(&remote(
            ErrorCode::NoLeader,
            "this manager is not the leader; the leader is 3 at 127.0.0.1:1"
        ))));
    }

    #[test]
    fn anything_after_sending_is_indeterminate() {
        assert!(is_indeterminate(&write_error(&remote(
            ErrorCode::NoLeader,
            "this manager is not the leader; no leader is known right now"
        ))));
        assert!(is_indeterminate(&write_error(&remote(
            ErrorCode::Unavailable,
            "the node at x did not answer"
        ))));
        assert!(is_indeterminate(&write_error(&remote(
            ErrorCode::Internal,
            "oops"
        ))));
        assert!(is_indeterminate(&write_error(&ClientError::Closed)));
        assert!(is_indeterminate(&timed_out(
            std::time::Duration::from_secs(2)
        )));
    }

    #[test]
    fn a_refused_compare_is_a_result() {
        assert_eq!(
            write_error(&remote(ErrorCode::CompareFailed, "expected revision 3")),
            Outcome::Ok(OpResult::Mismatch)
        );
    }

    #[test]
    fn reads_refused_by_the_agent_failed() {
        assert!(is_failed(&read_error(&remote(
            ErrorCode::Unavailable,
            "no quorum"
        ))));
        assert!(is_indeterminate(&read_error(&ClientError::Closed)));
    }
}
