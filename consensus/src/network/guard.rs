//! What a Raft RPC must pass before openraft sees it.
//!
//! openraft trusts its peers; a peer that lies can make it panic or give up its leadership. So
//! every incoming request is checked here first, and one that fails gets a `Failed` reply:
//! - a term or log id beyond [`MAX_TERM`] is refused: openraft increments terms, and one near
//!   `u64::MAX` overflows into a panic that, once the vote is durable, repeats at every restart;
//! - a vote, an append or a snapshot must come from the Raft id the caller named in its hello;
//! - a vote must come from a member of this node's Raft group (while this node has none — a
//!   fresh node named by `init --peers` — anyone may start it). Appends and snapshots are not
//!   held to this node's view of the group: that view comes from its own log, which lags while
//!   it catches up, and a node that was away while the group changed (or a manager joining
//!   again, which replays the log from the group's first configuration) would refuse the very
//!   leader that brings it up to date, for good. A chaos run found exactly that. Who may call
//!   at all is the business of the link's authentication (the cluster certificates), not of
//!   this view;
//! - a vote that claims to be part of a leadership transfer (which lets it override the
//!   leader's lease) counts as one only if the current leader announced that transfer to this
//!   node, to that candidate, moments ago; otherwise it is an ordinary vote, which the lease
//!   refuses while the leader lives.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::entry::RaftEntry;
use openraft::raft::{TransferLeaderRequest, VoteRequest};

use symphony_wire::frame::{self, FrameError};

use super::rpc::RaftRequest;
use crate::types::{LogId, TypeConfig, Vote};

/// The highest term accepted: at an election a second, 2^48 terms last millions of years, and
/// a term this far from `u64::MAX` cannot overflow.
pub const MAX_TERM: u64 = 1 << 48;
/// How long an announced leadership transfer lets its target's vote override the lease.
const TRANSFER_WINDOW: Duration = Duration::from_secs(3);

/// What the guard needs to know about this node's Raft state.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// Voters and learners; empty while this node belongs to no group.
    pub members: BTreeSet<u64>,
    /// This node's current vote.
    pub vote: Option<Vote>,
}

/// Why a frame received on the Raft port does not reach openraft.
#[derive(Debug, thiserror::Error)]
pub enum Unread {
    #[error("undecodable request: {0}")]
    Undecodable(#[from] FrameError),
    /// The guard refused it; the sentence says why.
    #[error("{0}")]
    Refused(String),
}

/// Decodes one frame received on the Raft port from `caller` (the Raft id of its hello) and
/// checks it: the one path from a peer's bytes to a request openraft may see. The session's
/// reader calls it on every frame; the fuzz target `raft` feeds it arbitrary bytes.
pub fn read(body: &[u8], guard: &Guard, caller: u64, local: &Local) -> Result<RaftRequest, Unread> {
    let mut request: RaftRequest = frame::decode(body)?;
    guard
        .check(&mut request, caller, local)
        .map_err(Unread::Refused)?;
    Ok(request)
}

/// Leadership transfers announced to this node; shared by its connections.
#[derive(Debug, Default)]
pub struct Guard {
    announced: Mutex<Option<Announced>>,
}

#[derive(Debug, Clone, Copy)]
struct Announced {
    leader: u64,
    target: u64,
    at: Instant,
}

impl Guard {
    /// Checks `request` from `caller` (the Raft id of its hello); may clear a vote's transfer
    /// flag. `Err` says why the request is refused.
    pub fn check(
        &self,
        request: &mut RaftRequest,
        caller: u64,
        local: &Local,
    ) -> Result<(), String> {
        match request {
            RaftRequest::Vote(vote) | RaftRequest::PreVote(vote) => {
                check_vote(&vote.vote)?;
                check_log_id(vote.last_log_id.as_ref())?;
                let candidate = vote.vote.leader_id.node_id;
                member(candidate, caller, &local.members, "vote")?;
                if vote.leadership_transfer && !self.transfer_announced(candidate) {
                    tracing::warn!(
                        candidate,
                        "a vote claimed a leadership transfer nobody announced; treating it as an ordinary vote"
                    );
                    strip_transfer(vote);
                }
            }
            RaftRequest::Append(append) => {
                check_vote(&append.vote)?;
                check_log_id(append.prev_log_id.as_ref())?;
                check_log_id(append.leader_commit.as_ref())?;
                for entry in &append.entries {
                    check_log_id(Some(&entry.log_id()))?;
                }
                as_itself(append.vote.leader_id.node_id, caller, "append")?;
            }
            RaftRequest::SnapshotBegin { vote, meta, .. } => {
                check_vote(vote)?;
                check_log_id(meta.last_log_id.as_ref())?;
                as_itself(vote.leader_id.node_id, caller, "snapshot")?;
            }
            RaftRequest::TransferLeader(transfer) => {
                check_vote(transfer.from_leader())?;
                self.announce(transfer, caller, local)?;
            }
            RaftRequest::SnapshotChunk { .. }
            | RaftRequest::SnapshotEnd
            | RaftRequest::Identify => {}
        }
        Ok(())
    }

    /// Records a transfer the current leader announces.
    fn announce(
        &self,
        transfer: &TransferLeaderRequest<TypeConfig>,
        caller: u64,
        local: &Local,
    ) -> Result<(), String> {
        let leader = transfer.from_leader().leader_id.node_id;
        if leader != caller {
            return Err(format!(
                "raft node {caller} announced a leadership transfer on behalf of {leader}"
            ));
        }
        let current = local.vote.as_ref();
        if current.is_none_or(|vote| {
            !vote.committed || vote.leader_id != transfer.from_leader().leader_id
        }) {
            return Err(format!(
                "raft node {leader} announced a leadership transfer but is not the leader this node follows"
            ));
        }
        *self.lock() = Some(Announced {
            leader,
            target: *transfer.to_node_id(),
            at: Instant::now(),
        });
        Ok(())
    }

    fn transfer_announced(&self, candidate: u64) -> bool {
        self.lock().is_some_and(|announced| {
            announced.target == candidate
                && announced.leader != candidate
                && announced.at.elapsed() < TRANSFER_WINDOW
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Announced>> {
        self.announced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn strip_transfer(vote: &mut VoteRequest<TypeConfig>) {
    vote.leadership_transfer = false;
}

fn check_vote(vote: &Vote) -> Result<(), String> {
    if vote.leader_id.term > MAX_TERM {
        return Err(format!(
            "a term of {} is beyond any this cluster can reach",
            vote.leader_id.term
        ));
    }
    Ok(())
}

fn check_log_id(log_id: Option<&LogId>) -> Result<(), String> {
    match log_id {
        Some(id) if id.committed_leader_id().term > MAX_TERM => Err(format!(
            "a log id of term {} is beyond any this cluster can reach",
            id.committed_leader_id().term
        )),
        _ => Ok(()),
    }
}

/// `claimed` must be `caller`.
fn as_itself(claimed: u64, caller: u64, what: &str) -> Result<(), String> {
    if claimed != caller {
        return Err(format!(
            "raft node {caller} sent a {what} in the name of raft node {claimed}"
        ));
    }
    Ok(())
}

/// `claimed` must be `caller` and, once this node has a group, one of `members`.
fn member(claimed: u64, caller: u64, members: &BTreeSet<u64>, what: &str) -> Result<(), String> {
    as_itself(claimed, caller, what)?;
    if !members.is_empty() && !members.contains(&claimed) {
        return Err(format!(
            "raft node {claimed} is not a member of this node's Raft group; its {what} is refused"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use openraft::raft::{AppendEntriesRequest, VoteRequest};

    use super::*;

    fn vote(term: u64, node: u64, transfer: bool) -> RaftRequest {
        RaftRequest::Vote(VoteRequest {
            vote: Vote::new(term, node),
            last_log_id: None,
            leadership_transfer: transfer,
        })
    }

    fn local() -> Local {
        Local {
            members: BTreeSet::from([1, 2, 3]),
            vote: Some(Vote::new_committed(5, 1)),
        }
    }

    #[test]
    fn absurd_terms_are_refused_before_openraft_sees_them() {
        let guard = Guard::default();
        assert!(
            guard
                .check(&mut vote(u64::MAX, 2, false), 2, &local())
                .is_err()
        );
        assert!(
            guard
                .check(&mut vote(MAX_TERM + 1, 2, false), 2, &local())
                .is_err()
        );
        assert!(guard.check(&mut vote(6, 2, false), 2, &local()).is_ok());
        let mut append = RaftRequest::Append(AppendEntriesRequest {
            vote: Vote::new_committed(u64::MAX - 1, 1),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        });
        assert!(guard.check(&mut append, 1, &local()).is_err());
    }

    #[test]
    fn only_members_vote_and_everyone_calls_only_as_itself() {
        let guard = Guard::default();
        assert!(
            guard.check(&mut vote(6, 9, false), 9, &local()).is_err(),
            "not a member"
        );
        assert!(
            guard.check(&mut vote(6, 2, false), 3, &local()).is_err(),
            "in another's name"
        );
        // A fresh node (no group yet) is started by whoever names it.
        assert!(
            guard
                .check(&mut vote(1, 9, false), 9, &Local::default())
                .is_ok()
        );
        let mut learner_append = RaftRequest::Append(AppendEntriesRequest {
            vote: Vote::new_committed(6, 4),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        });
        // A leader this node's lagging log does not know yet still brings it up to date.
        assert!(guard.check(&mut learner_append, 4, &local()).is_ok());
        assert!(
            guard.check(&mut learner_append, 5, &local()).is_err(),
            "an append in another's name"
        );
    }

    #[test]
    fn a_transfer_counts_only_when_the_leader_announced_it() {
        let guard = Guard::default();
        let mut forged = vote(6, 2, true);
        assert!(guard.check(&mut forged, 2, &local()).is_ok());
        let RaftRequest::Vote(forged) = forged else {
            unreachable!()
        };
        assert!(
            !forged.leadership_transfer,
            "an unannounced transfer is an ordinary vote"
        );

        // Someone other than the leader cannot announce one.
        let mut fake = RaftRequest::TransferLeader(TransferLeaderRequest::new(
            Vote::new_committed(5, 3),
            2,
            None,
        ));
        assert!(guard.check(&mut fake, 3, &local()).is_err());
        let mut announced = RaftRequest::TransferLeader(TransferLeaderRequest::new(
            Vote::new_committed(5, 1),
            2,
            None,
        ));
        assert!(guard.check(&mut announced, 1, &local()).is_ok());
        let mut real = vote(6, 2, true);
        guard.check(&mut real, 2, &local()).unwrap();
        let RaftRequest::Vote(real) = real else {
            unreachable!()
        };
        assert!(real.leadership_transfer);
        // ... and only for its target.
        let mut other = vote(6, 3, true);
        guard.check(&mut other, 3, &local()).unwrap();
        let RaftRequest::Vote(other) = other else {
            unreachable!()
        };
        assert!(!other.leadership_transfer);
    }
}
