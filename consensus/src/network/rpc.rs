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
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    Snapshot(SnapshotResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    /// The peer could not handle the request (it is shutting down, or the request was bad).
    Failed(String),
}
