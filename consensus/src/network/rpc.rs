//! The Raft RPC messages. A connection opens with [`RaftHello`] both ways, then carries one
//! request and one reply at a time (openraft keeps one connection per peer and purpose:
//! replication, heartbeats, snapshots).

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::types::{SnapshotMeta, TypeConfig, Vote};

pub const PROTOCOL: &str = "symphony-raft";
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RaftHello {
    pub protocol: String,
    pub version: u32,
    /// The sender's Raft node id (the client's on the way in, the server's on the way back).
    pub node_id: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// Who are you? Asked by `init --peers` before it names the peer a voter.
    Identify,
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
    Snapshot(SnapshotResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    Identity(PeerIdentity),
    /// The peer could not handle the request (it is shutting down, or the request was bad).
    Failed(String),
}
