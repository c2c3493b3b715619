//! Target `raft`: the bytes after the hello on a Raft connection, as a manager's session
//! reads them.
//!
//! Every frame goes through [`guard::read`] — the decoding and the guard the session runs
//! before openraft sees anything — as a voter of a three-manager group led by raft node 1
//! would (on a connection from the leader, then on one from voter 2, sharing the node's
//! guard) and as a fresh node named by `init --peers` would (caller 9, no group yet). What the
//! guard lets through must keep its promises: no term or log id beyond [`MAX_TERM`], nothing in
//! another node's name, no vote from outside the group, no leadership transfer nobody
//! announced. Snapshot requests go on to the connection's [`SnapshotSlot`], and a snapshot it
//! completes is decoded as installing it would ([`SnapshotPayload::decode`]); a state that
//! decodes must also write as rows and snapshot again.
//!
//! Each frame is also read as a Raft client reads a reply (`RaftReply`, the `Identify`
//! answer among them), which must then pass on unchanged.

use std::collections::BTreeSet;

use openraft::entry::RaftEntry;
use symphony_consensus::network::guard::{self, Guard, Local, MAX_TERM};
use symphony_consensus::network::rpc::{RaftReply, RaftRequest};
use symphony_consensus::network::snapshot_receiver::{SnapshotSlot, SnapshotStep};
use symphony_consensus::store::SnapshotPayload;
use symphony_consensus::types::{LogId, Vote};
use symphony_wire::frame::{self, MAX_FRAME_LEN};

use crate::frame::cut;
use crate::passes_on;

pub fn run(data: &[u8]) {
    let (frames, _) = cut(data, MAX_FRAME_LEN, data.len());
    // A voter of a group led by raft node 1: the leader's connection first (it may announce a
    // leadership transfer), then another voter's, on one guard as on one node.
    let member = Local {
        members: BTreeSet::from([1, 2, 3]),
        vote: Some(Vote::new_committed(5, 1)),
    };
    let guard = Guard::default();
    let announced = session(&frames, 1, &member, &guard, None);
    session(&frames, 2, &member, &guard, announced);
    // A fresh node, in no group yet.
    session(&frames, 9, &Local::default(), &Guard::default(), None);
    for body in &frames {
        if let Ok(reply) = frame::decode::<RaftReply>(body) {
            passes_on(&reply);
        }
    }
}

/// One connection from `caller` to a node whose Raft state is `local`, after the leader
/// announced a transfer to `announced` (if it did); returns the last transfer this connection
/// announced.
fn session(
    frames: &[Vec<u8>],
    caller: u64,
    local: &Local,
    guard: &Guard,
    mut announced: Option<u64>,
) -> Option<u64> {
    let mut slot = SnapshotSlot::default();
    for body in frames {
        let Ok(request) = guard::read(body, guard, caller, local) else {
            continue;
        };
        kept_promises(&request, caller, local, announced);
        match request {
            RaftRequest::TransferLeader(transfer) => announced = Some(*transfer.to_node_id()),
            request @ (RaftRequest::SnapshotBegin { .. }
            | RaftRequest::SnapshotChunk { .. }
            | RaftRequest::SnapshotEnd) => {
                if let Ok(SnapshotStep::Install(_, snapshot)) = slot.handle(request) {
                    install(&snapshot.snapshot);
                }
            }
            _ => {}
        }
    }
    announced
}

fn sane(log_id: Option<&LogId>) -> bool {
    log_id.is_none_or(|id| id.committed_leader_id().term <= MAX_TERM)
}

/// What the guard promises about a request it let through.
fn kept_promises(request: &RaftRequest, caller: u64, local: &Local, announced: Option<u64>) {
    match request {
        RaftRequest::Vote(vote) | RaftRequest::PreVote(vote) => {
            assert!(vote.vote.leader_id.term <= MAX_TERM);
            assert!(sane(vote.last_log_id.as_ref()));
            let candidate = vote.vote.leader_id.node_id;
            assert_eq!(candidate, caller);
            assert!(local.members.is_empty() || local.members.contains(&candidate));
            // A transfer only to the node the leader announced, and never by the leader.
            let leader = local.vote.as_ref().map(|vote| vote.leader_id.node_id);
            assert!(
                !vote.leadership_transfer
                    || (announced == Some(candidate) && leader != Some(candidate))
            );
        }
        RaftRequest::Append(append) => {
            assert!(append.vote.leader_id.term <= MAX_TERM);
            assert!(sane(append.prev_log_id.as_ref()));
            assert!(sane(append.leader_commit.as_ref()));
            assert!(
                append
                    .entries
                    .iter()
                    .all(|entry| sane(Some(&entry.log_id())))
            );
            assert_eq!(append.vote.leader_id.node_id, caller);
        }
        RaftRequest::SnapshotBegin { vote, meta, .. } => {
            assert!(vote.leader_id.term <= MAX_TERM);
            assert!(sane(meta.last_log_id.as_ref()));
            assert_eq!(vote.leader_id.node_id, caller);
        }
        RaftRequest::TransferLeader(transfer) => {
            // Only the leader this node follows may announce one.
            assert_eq!(transfer.from_leader().leader_id.node_id, caller);
            assert_eq!(
                local.vote.as_ref().map(|vote| vote.leader_id.node_id),
                Some(caller)
            );
        }
        RaftRequest::SnapshotChunk { .. } | RaftRequest::SnapshotEnd | RaftRequest::Identify => {}
    }
}

/// What installing a received snapshot does with its bytes before it writes them.
fn install(data: &[u8]) {
    let Ok(state) = SnapshotPayload::decode(data) else {
        return;
    };
    for table in state.tables() {
        for key in table.row_keys() {
            table
                .encode_row(&key)
                .expect("a decoded state's rows encode");
        }
    }
    let again = SnapshotPayload::encode(&state).expect("a decoded state encodes");
    let back = SnapshotPayload::decode(&again).expect("a snapshot written decodes");
    assert_eq!(back, state, "a snapshot changed on its way back");
}
