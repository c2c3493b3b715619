//! The control protocol: every message that crosses a node's control socket.
//!
//! A connection opens with [`Hello`] from the client and [`HelloReply`] from the agent. After
//! that the client sends [`RequestFrame`]s and the agent answers each with one
//! [`ResponseFrame`] carrying the same `id`. Requests on one connection may be pipelined: the
//! agent answers them as they complete, so replies can arrive out of order and the id is what
//! pairs them up.
//!
//! Everything is MessagePack with named fields (see [`crate::frame`]), so a newer peer can add a
//! field without breaking an older one. Types here are views for operators and scripts, not the
//! agent's internal records: the agent converts its state into them.

use serde::{Deserialize, Serialize};

/// The protocol name sent in [`Hello`]; a peer that speaks anything else is refused.
pub const PROTOCOL: &str = "symphony-ctl";

/// Bumped on any change an older peer cannot ignore.
pub const PROTOCOL_VERSION: u32 = 1;

/// The first frame on a connection, from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: String,
    pub version: u32,
}

impl Hello {
    /// The hello this build of the client sends.
    pub fn current() -> Self {
        Hello {
            protocol: PROTOCOL.to_string(),
            version: PROTOCOL_VERSION,
        }
    }
}

/// The agent's answer to [`Hello`]. On a mismatch `accepted` is an error and the agent closes
/// the connection after sending it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloReply {
    pub protocol: String,
    pub version: u32,
    /// The agent's node id, so a client knows whom it is talking to.
    pub node_id: u64,
    pub agent_version: String,
    pub accepted: Result<(), CtlError>,
}

/// One request with the id its response will carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestFrame {
    pub id: u64,
    pub request: Request,
}

/// Just the id of a request frame. The agent decodes this first, so that a frame whose request
/// it does not understand still gets an error under the right id.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RequestId {
    pub id: u64,
}

/// One response: the id of the request it answers, and the outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseFrame {
    pub id: u64,
    pub body: ResponseBody,
}

/// What a response frame carries. Streams (later: watch, logs, events) send several `Item`s
/// under one id and finish with `End`; plain requests get exactly one `Reply` or `Error`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ResponseBody {
    Reply(Response),
    Error(CtlError),
}

/// The cluster roles a node can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Manager,
    Worker,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        })
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    /// Confirmed with a quorum (Raft read index) before the local replica answers.
    #[default]
    Linearizable,
    /// Whatever the local replica has applied; may be behind the leader.
    Stale,
}

/// Everything an operator can ask of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// The node's view of itself and its cluster.
    Status,
    /// Bootstrap a new cluster with this node as its first manager (`peers` empty and no
    /// `join_addr`); with `peers` (Raft addresses), a cluster whose first voters are this node
    /// and those peers; with `join_addr`, join a cluster whose `init --peers` named this node.
    Init {
        peers: Vec<String>,
        join_addr: Option<String>,
    },
    /// Join the cluster of the node at `addr` (its remote address) with a join token; the
    /// token decides the role.
    Join {
        token: String,
        addr: String,
    },
    /// Leave the cluster gracefully (a leader hands over leadership first).
    Leave,
    /// Make a manager that is a Raft learner a voter.
    NodePromote {
        node_id: u64,
    },
    /// Make a voting manager a learner.
    NodeDemote {
        node_id: u64,
    },
    /// Remove a node from the cluster; refused when it would lose quorum unless `force`.
    NodeRemove {
        node_id: u64,
        force: bool,
    },
    /// After quorum loss: make this manager a one-voter cluster with all its state.
    RecoverForceNewCluster,
    /// Write a consistent snapshot of the cluster state to `path` on the agent's machine.
    SnapshotSave {
        path: String,
    },
    /// One node in detail.
    NodeInspect {
        node_id: u64,
        consistency: ReadConsistency,
    },
    /// Change a node's availability (`active`, `pause`, `drain`) and labels.
    NodeUpdate {
        node_id: u64,
        availability: Option<String>,
        label_add: std::collections::BTreeMap<String, String>,
        label_rm: Vec<String>,
    },
    KvPut {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Compare-and-set: the key's current `mod_revision` must equal this; 0 means the key
        /// must not exist.
        if_revision: Option<u64>,
    },
    KvGet {
        key: String,
        consistency: ReadConsistency,
    },
    KvList {
        prefix: String,
        consistency: ReadConsistency,
    },
    KvDelete {
        key: String,
        /// Compare-and-delete, as for `KvPut`.
        if_revision: Option<u64>,
    },
    TokenShow {
        role: Role,
    },
    TokenRotate {
        role: Role,
    },
    NodeList {
        consistency: ReadConsistency,
    },
}

impl Request {
    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Init { .. } => "init",
            Request::Join { .. } => "join",
            Request::Leave => "leave",
            Request::NodePromote { .. } => "node promote",
            Request::NodeDemote { .. } => "node demote",
            Request::NodeRemove { .. } => "node rm",
            Request::RecoverForceNewCluster => "recover",
            Request::SnapshotSave { .. } => "snapshot save",
            Request::NodeInspect { .. } => "node inspect",
            Request::NodeUpdate { .. } => "node update",
            Request::KvPut { .. } => "kv put",
            Request::KvGet { .. } => "kv get",
            Request::KvList { .. } => "kv ls",
            Request::KvDelete { .. } => "kv rm",
            Request::TokenShow { .. } => "token show",
            Request::TokenRotate { .. } => "token rotate",
            Request::NodeList { .. } => "node ls",
        }
    }
}

/// The successful answers, one variant per request kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Status(Box<StatusInfo>),
    Init(InitInfo),
    KvPut(KvWriteResult),
    KvGet(Option<KvEntry>),
    KvList(KvListing),
    KvDelete(KvDeleteResult),
    Token(TokenInfo),
    NodeList(Vec<NodeInfo>),
    Join(JoinInfo),
    /// A membership change or `leave` done; the sentence says what happened.
    Done(DoneInfo),
    SnapshotSaved(SnapshotInfo),
    /// `node inspect`, and `node update` with the node as it is now.
    Node(Box<NodeInfo>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinInfo {
    pub cluster_id: String,
    pub node_id: u64,
    pub role: Role,
    /// The Raft id of the leader that admitted this node.
    pub leader_raft_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneInfo {
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub path: String,
    /// The log index the snapshot's state is at.
    pub last_log_index: Option<u64>,
    pub bytes: u64,
}

/// A node's answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub node_id: u64,
    pub raft_node_id: u64,
    pub agent_version: String,
    /// `None` until the node is part of a cluster: the node is "not initialised".
    pub cluster: Option<ClusterStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub role: Role,
    /// This node's Raft state: leader, follower, candidate, learner.
    pub raft_state: String,
    /// The Raft node id of the current leader, if one is known.
    pub leader_raft_id: Option<u64>,
    pub leader_remote_addr: Option<String>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub kv_revision: u64,
    pub nodes: usize,
    /// The managers this node knows; on a worker, from its session and gossip.
    #[serde(default)]
    pub managers: Vec<ManagerStatus>,
    /// The node id of the leading manager, when known.
    #[serde(default)]
    pub leader_node_id: Option<u64>,
    /// Members this node's gossip sees alive, itself included; `None` when it is not
    /// gossiping.
    #[serde(default)]
    pub gossip_members: Option<usize>,
    /// On a worker: how long ago its manager last answered its session.
    #[serde(default)]
    pub session_age_ms: Option<u64>,
    /// Gossip packets this node dropped (malformed, another cluster's, bad checksum) since
    /// it started gossiping.
    #[serde(default)]
    pub gossip_dropped: Option<u64>,
}

/// One manager, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerStatus {
    pub node_id: u64,
    pub remote_addr: String,
    pub leader: bool,
    /// Whether gossip sees it alive (`None`: this node does not gossip).
    pub alive: Option<bool>,
    /// On a worker: the manager its session is with.
    pub session: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitInfo {
    pub cluster_id: String,
    pub node_id: u64,
    pub raft_node_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// The cluster revision at which the key was created (since its last deletion).
    pub create_revision: u64,
    /// The cluster revision of the key's last change.
    pub mod_revision: u64,
    /// How many times the key was written since it was created.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvWriteResult {
    /// The cluster revision of this write, which is now the key's `mod_revision`.
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvListing {
    pub entries: Vec<KvEntry>,
    /// The cluster revision the listing was read at.
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvDeleteResult {
    /// Whether the key existed.
    pub deleted: bool,
    /// The cluster revision after the delete (unchanged when nothing was deleted).
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub role: Role,
    pub token: String,
}

/// One node as `node ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: u64,
    pub raft_node_id: Option<u64>,
    pub hostname: String,
    pub role: Role,
    /// `ready`, `down` or `left`, as the leader last decided.
    pub status: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    pub raft_addr: Option<String>,
    pub remote_addr: String,
    /// For managers: `leader`, `follower`, `learner`, `removed`, or `pending` (named by
    /// `init --peers` but not joined yet).
    pub raft_role: Option<String>,
    /// For managers: whether it votes in Raft.
    pub voter: Option<bool>,
    /// For managers, as the leader sees them: the last log index known to be replicated there.
    pub matched_index: Option<u64>,
    /// For managers: how many entries behind the leader's last log it is.
    pub lag: Option<u64>,
    /// For managers: whether the leader heard from it recently (`None` when not asked of the
    /// leader).
    pub reachable: Option<bool>,
    pub agent_version: String,
    pub joined_at_ms: u64,
    /// When the status last changed.
    #[serde(default)]
    pub status_changed_at_ms: u64,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub memory_bytes: u64,
}

/// A typed error: a stable machine-readable code and one human sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CtlError {
    pub code: ErrorCode,
    pub message: String,
}

impl CtlError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CtlError {
            code,
            message: message.into(),
        }
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
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
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
        };
        f.write_str(name)
    }
}
