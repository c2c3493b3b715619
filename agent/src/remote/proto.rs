//! Messages of the node-to-node API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use symphony_ctl::proto::{CtlError, Request, Response, Role};
use symphony_gossip::MemberState;

pub use crate::worker::state::ManagerContact;

pub const PROTOCOL: &str = "symphony-remote";
pub const PROTOCOL_VERSION: u32 = 1;

/// The first frame each way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteHello {
    pub protocol: String,
    pub version: u32,
    pub node_id: u64,
    /// Set on the server's answer: why the connection is refused.
    pub refused: Option<CtlError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteRequestFrame {
    pub id: u64,
    pub request: RemoteRequest,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteResponseFrame {
    pub id: u64,
    pub result: Result<RemoteReply, CtlError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteRequest {
    /// A node asks to join (or re-register with) the cluster.
    Join(JoinRequest),
    /// A control request another manager forwards to the leader. The receiver answers it as
    /// leader or says it is not; it never forwards it again. `secret` is the cluster's manager
    /// secret: only managers may speak for an operator.
    Forward { secret: String, request: Request },
    /// A manager that is leaving asks the leader to take it out of the Raft group.
    Leaving { secret: String, node_id: u64 },
    /// A worker's session with a manager: it proves who it is and learns the managers and
    /// their leader. Liveness does not depend on it (that is gossip's job).
    Session {
        node_id: u64,
        secret: String,
        /// How many other members the worker's gossip sees; a manager that sees more sends
        /// its whole view back (`SessionReply::members`), so a newcomer or a worker back from
        /// a partition learns the pool in one step.
        #[serde(default)]
        members_seen: Option<u64>,
    },
    /// A worker that is leaving asks the leader to mark it `left`. A manager that is not the
    /// leader passes it on once (`forwarded` then set).
    WorkerLeaving {
        node_id: u64,
        secret: String,
        #[serde(default)]
        forwarded: bool,
    },
}

/// Everything the leader needs to admit a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// `None` for a manager named by `init --peers` (pre-authorised).
    pub token: Option<String>,
    pub node_id: u64,
    pub raft_node_id: u64,
    pub hostname: String,
    pub raft_addr: String,
    pub remote_addr: String,
    pub agent_version: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// The cluster the node already belongs to, if any: joining another one is refused.
    pub cluster_id: Option<String>,
    /// Set when a manager passes the join on to the leader; such a join is not passed on again.
    #[serde(default)]
    pub forwarded: bool,
    /// Where the node gossips (UDP).
    #[serde(default)]
    pub gossip_addr: Option<String>,
    /// Labels the node reports (`--label`); merged into an existing record's.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteReply {
    Joined(JoinReply),
    Forwarded(Response),
    Left,
    Session(SessionReply),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReply {
    pub cluster_id: String,
    pub role: Role,
    pub leader_raft_id: Option<u64>,
    /// For a worker: the secret its later sessions and leave notice carry.
    #[serde(default)]
    pub node_secret: Option<String>,
    /// The managers, whose gossip addresses are the new node's gossip seeds.
    #[serde(default)]
    pub managers: Vec<ManagerContact>,
}

/// What a manager tells a worker in its session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReply {
    pub cluster_id: String,
    /// The node id of the Raft leader, as this manager knows it.
    pub leader_node_id: Option<u64>,
    pub managers: Vec<ManagerContact>,
    /// The manager's gossip view, when it sees more members than the worker said it does.
    #[serde(default)]
    pub members: Vec<MemberState>,
}
