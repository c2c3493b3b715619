//! The Raft RPC messages. A connection opens with the hello of [`RAFT_PROTOCOL`] both ways, then
//! carries requests answered strictly in order: a client may send several before reading a reply (pipelined
//! append-entries, snapshot chunks), and matches replies to requests by position.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use symphony_wire::ProtocolId;

use crate::types::{SnapshotMeta, TypeConfig, Vote};

/// The Raft protocol in the hello. v3: the one hello every Symphony link shares (the ids in it
/// are Raft ids). v2 had snapshots travel as `SnapshotBegin`, `SnapshotChunk`s and
/// `SnapshotEnd`, and replies matched to requests by position, so a client may pipeline.
pub const RAFT_PROTOCOL: ProtocolId = ProtocolId {
    name: "symphony-raft",
    version: 3,
};

#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    /// Opens a snapshot transfer on this connection, replacing any unfinished one.
    SnapshotBegin {
        vote: Vote,
        meta: SnapshotMeta,
        /// The exact length of the snapshot data; the receiver refuses absurd values up front.
        total_len: u64,
    },
    /// The next piece of the snapshot; `offset` must be what the receiver holds so far.
    SnapshotChunk {
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// All the data was sent: install the snapshot and answer with the receiver's vote.
    SnapshotEnd,
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// Who are you? Asked by `init --peers` before it names the peer a voter.
    Identify,
}

/// The borrowed twin of the [`RaftRequest`] variants that carry bulk data, so a sender can
/// encode them without first copying entries or snapshot bytes into an owned request. It
/// encodes to exactly the bytes of the owned variant (MessagePack does not record the enum's
/// name, only the variant's).
#[derive(Serialize)]
pub(crate) enum RaftRequestRef<'a> {
    Append(&'a AppendEntriesRequest<TypeConfig>),
    SnapshotChunk {
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: &'a [u8],
    },
}

/// A manager's answer to [`RaftRequest::Identify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerIdentity {
    pub raft_node_id: u64,
    pub node_id: u64,
    /// Where the peer serves the node-to-node API.
    pub remote_addr: String,
    /// Whether the peer's Raft store already belongs to a group.
    pub initialised: bool,
}

/// What this node says about itself to [`RaftRequest::Identify`].
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    pub node_id: u64,
    pub remote_addr: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    /// The answer to [`RaftRequest::SnapshotEnd`]: the snapshot was installed (or refused for a
    /// stale vote, which the vote inside says).
    Snapshot(SnapshotResponse<TypeConfig>),
    /// The answer to [`RaftRequest::SnapshotBegin`] and each [`RaftRequest::SnapshotChunk`]:
    /// how many bytes the receiver holds.
    SnapshotAck {
        received: u64,
    },
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    Identity(PeerIdentity),
    /// The peer could not handle the request (it is shutting down, or the request was bad).
    Failed(String),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use openraft::Vote as RaftVote;
    use symphony_wire::frame;

    use super::*;

    #[test]
    fn borrowed_requests_decode_as_owned_ones() {
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: RaftVote::new_committed(3, 1),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        };
        let bytes = frame::encode(&RaftRequestRef::Append(&append)).unwrap();
        match frame::decode::<RaftRequest>(&bytes).unwrap() {
            RaftRequest::Append(back) => assert_eq!(back.vote, append.vote),
            other => panic!("decoded {other:?}"),
        }
        let bytes = frame::encode(&RaftRequestRef::SnapshotChunk {
            offset: 7,
            data: b"abc",
        })
        .unwrap();
        match frame::decode::<RaftRequest>(&bytes).unwrap() {
            RaftRequest::SnapshotChunk { offset, data } => {
                assert_eq!(offset, 7);
                assert_eq!(data, b"abc");
            }
            other => panic!("decoded {other:?}"),
        }
    }
}
