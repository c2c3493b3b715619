//! How a client turns what happened to one operation into an [`Outcome`]: `Ok`, `Failed`
//! (certainly not applied) or `Indeterminate` (may have been applied, now or later).
//!
//! Calling an operation `Failed` when it was in fact applied makes the checker report a
//! violation that is not there; calling it `Indeterminate` when it was not applied only makes the
//! check more lenient. So an error counts as definite only where the agent says so, in the
//! error's structured fields — never by reading its sentence:
//!
//! - the connection or the hello failed, or the request could not be encoded: the request was
//!   never sent — `Failed`;
//! - a compare-and-set the state machine refused carries the revisions it compared
//!   (`CtlError::compare`) — a normal `Ok(Mismatch)` result;
//! - any other error of the agent's says whether it may have been applied
//!   (`CtlError::applied`): `No` (refused before anything was proposed, or applied as a no-op)
//!   is `Failed`, `Unknown` is `Indeterminate`. The agent marks `No` only where its code shows
//!   nothing was proposed (see agent/src/errors.rs and agent/src/remote/forward.rs); an error
//!   that does not say is `Unknown`;
//! - our own timeout, a dropped connection, an unreadable reply: the request may have arrived —
//!   `Indeterminate`.
//!
//! A read changes nothing, so for the checker a failed read and an indeterminate one are the
//! same (both are dropped); they are still told apart for the counts.

use symphony_ctl::ClientError;
use symphony_ctl::proto::{Applied, CtlError};

use super::history::{OpResult, Outcome};

/// The outcome of a write (put or compare-and-set) that ended with `error`.
pub fn write_error(error: &ClientError) -> Outcome {
    match error {
        ClientError::Remote(remote) => remote_write_error(remote),
        _ if error.never_sent() => failed(error),
        _ => indeterminate(error),
    }
}

/// The outcome of an operation whose connection (or hello) failed: nothing was sent.
pub fn connect_error(error: &ClientError) -> Outcome {
    failed(error)
}

/// The outcome of a write the agent refused with `error`.
pub fn remote_write_error(error: &CtlError) -> Outcome {
    if error.compare.is_some() {
        return Outcome::Ok(OpResult::Mismatch);
    }
    match error.applied {
        Applied::No => failed(&coded(error)),
        Applied::Unknown => indeterminate(&coded(error)),
    }
}

/// The outcome of a read that ended with `error`.
pub fn read_error(error: &ClientError) -> Outcome {
    match error {
        ClientError::Remote(remote) => failed(&coded(remote)),
        _ if error.never_sent() => failed(error),
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
    use symphony_ctl::proto::{ErrorCode, LeaderHint};
    use symphony_wire::CallError;

    use super::*;

    /// An agent error with these fields; the sentence is deliberately meaningless, since the
    /// classifier must not read it.
    fn remote(code: ErrorCode, applied: Applied) -> ClientError {
        let mut error = CtlError::new(code, "words the classifier must not read");
        error.applied = applied;
        ClientError::Remote(error)
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
            Applied::No
        ))));
        assert!(is_failed(&write_error(&remote(
            ErrorCode::NotInitialised,
            Applied::No
        ))));
        // No leader, and the agent says it proposed nothing (it gave up waiting for an
        // election, or openraft refused before appending): definite, whoever leads.
        let mut refused = CtlError::new(ErrorCode::NoLeader, "x").not_applied();
        assert!(is_failed(&remote_write_error(&refused)));
        refused = refused.with_leader(Some(LeaderHint {
            raft_id: 3,
            remote_addr: Some("127.0.0.1:1".into()),
        }));
        assert!(is_failed(&remote_write_error(&refused)));
        let unsent = ClientError::Call(CallError::TooLarge { size: 1 << 30 });
        assert!(is_failed(&write_error(&unsent)));
    }

    #[test]
    fn anything_that_may_have_been_proposed_is_indeterminate() {
        // The same codes, marked as possibly applied (a discarded entry, a lost forward).
        assert!(is_indeterminate(&write_error(&remote(
            ErrorCode::NoLeader,
            Applied::Unknown
        ))));
        assert!(is_indeterminate(&write_error(&remote(
            ErrorCode::Unavailable,
            Applied::Unknown
        ))));
        assert!(is_indeterminate(&write_error(&remote(
            ErrorCode::Internal,
            Applied::Unknown
        ))));
        // A code that is usually a refusal still counts as unknown when the agent says so.
        assert!(is_indeterminate(&write_error(&remote(
            ErrorCode::BadRequest,
            Applied::Unknown
        ))));
        let closed = ClientError::Call(CallError::Closed {
            peer: "agent".into(),
        });
        assert!(is_indeterminate(&write_error(&closed)));
        assert!(is_indeterminate(&timed_out(
            std::time::Duration::from_secs(2)
        )));
    }

    #[test]
    fn a_refused_compare_is_a_result() {
        let error = CtlError::compare_failed("k", 3, 4);
        assert_eq!(
            write_error(&ClientError::Remote(error)),
            Outcome::Ok(OpResult::Mismatch)
        );
    }

    #[test]
    fn reads_refused_by_the_agent_failed() {
        assert!(is_failed(&read_error(&remote(
            ErrorCode::Unavailable,
            Applied::Unknown
        ))));
        let closed = ClientError::Call(CallError::Closed {
            peer: "agent".into(),
        });
        assert!(is_indeterminate(&read_error(&closed)));
    }
}
