//! The views a node answers with: what `status`, `node ls`, the KV requests and the membership
//! requests return. They are for operators and scripts, not the agent's internal records: the
//! agent converts its state into them.

use serde::{Deserialize, Serialize};

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
    /// The same drops by reason, and the gossip key this node seals with.
    #[serde(default)]
    pub gossip_drops: Option<GossipDrops>,
    /// Why this manager's Raft store stopped writing, while it is stopped (it starts again by
    /// itself once the cause is gone).
    #[serde(default)]
    pub store_error: Option<String>,
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

/// One put or delete, as `kv watch` delivers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEvent {
    /// The revision the change made.
    pub revision: u64,
    /// The key written or deleted.
    pub key: String,
    /// The key as the put left it; `None` for a delete.
    pub entry: Option<KvEntry>,
}

/// How much KV history is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvHistoryInfo {
    /// Revisions kept at most (also bounded by bytes: `max_bytes`).
    pub keep: u64,
    pub max_bytes: u64,
    /// The oldest revision a watch can start from or a read be made at.
    pub oldest: u64,
    /// The current revision.
    pub revision: u64,
    /// Changes kept now.
    pub kept: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvDeleteResult {
    /// Whether the key existed.
    pub deleted: bool,
    /// The cluster revision after the delete (unchanged when nothing was deleted).
    pub revision: u64,
}

/// Gossip packets a node dropped, by reason, and how it seals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipDrops {
    /// The id of the key this node seals with; `None` when it gossips in the clear.
    pub sealing_key: Option<u32>,
    pub too_short: u64,
    pub bad_magic: u64,
    pub wrong_version: u64,
    pub foreign_cluster: u64,
    pub bad_checksum: u64,
    /// Plain packets, where only sealed ones are accepted.
    pub unsealed: u64,
    /// Sealed with a key id this node does not hold.
    pub unknown_key: u64,
    /// Forged, sealed with a foreign key, or corrupted.
    pub unauthenticated: u64,
    /// Received before, or from an earlier life of their sender.
    pub replayed: u64,
    /// Rejected by foca itself.
    pub by_foca: u64,
}

/// The cluster's gossip keyring as operators see it: ids, never keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipKeysInfo {
    /// Bumped by every install, use and remove.
    pub version: u64,
    pub primary: Option<u32>,
    pub keys: Vec<GossipKeyInfo>,
    /// Ready nodes asked which keys they hold.
    pub nodes: u64,
    /// Ready nodes that did not answer.
    pub unreachable: Vec<u64>,
    /// The key the request installed, used or removed.
    #[serde(default)]
    pub changed: Option<u32>,
}

/// One installed key: its id and how far the cluster has taken it up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipKeyInfo {
    pub id: u32,
    pub primary: bool,
    pub installed_at_ms: u64,
    /// Ready nodes that accept packets sealed with it.
    pub installed_on: u64,
    /// Ready nodes that seal with it.
    pub sealing_on: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub role: Role,
    pub token: String,
}

/// Cluster-wide settings, as `cluster update` leaves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettingsInfo {
    pub cluster_id: String,
    /// How long node certificates issued now are valid.
    pub cert_expiry_ms: u64,
}

/// `ca status`: the root, and the certificates the cluster issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaStatusInfo {
    pub cluster_id: String,
    /// The digest of the CA bundle new certificates are issued from (what join tokens pin).
    pub root_digest: String,
    /// How long node certificates issued now are valid.
    pub cert_expiry_ms: u64,
    /// How many nodes hold a certificate from each root, by the root's digest; nodes whose
    /// certificate was not recorded (admitted by an older agent) are under `None`.
    pub roots: Vec<CaRootCount>,
    pub nodes: Vec<NodeCertInfo>,
    /// A root rotation under way; `None` when none is.
    #[serde(default)]
    pub rotation: Option<CaRotationInfo>,
}

/// A root rotation under way (`ca rotate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRotationInfo {
    /// When it started, in milliseconds since the epoch.
    pub started_ms: u64,
    /// The root being replaced, still trusted until every node moved.
    pub old_root_digest: String,
    /// The nodes (not left) that hold no certificate of the new root yet: the rotation ends
    /// when none does. A node that is down holds it up until it is back or removed.
    pub waiting_for: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRootCount {
    pub root_digest: Option<String>,
    pub nodes: u64,
}

/// One node's certificate, as the cluster recorded it when it issued it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCertInfo {
    pub node_id: u64,
    pub hostname: String,
    pub role: Role,
    pub status: String,
    pub root_digest: Option<String>,
    /// When the certificate ends, in milliseconds since the epoch.
    pub not_after_ms: Option<u64>,
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
    /// The node's Docker engine version; `None`: no engine, no docker tasks.
    #[serde(default)]
    pub docker: Option<String>,
    /// Tasks placed on the node that it should run.
    #[serde(default)]
    pub tasks: u32,
}

/// One node's diagnostics, for a support bundle. Nothing secret: flag values that look like
/// secrets and join tokens in log lines are replaced by `<removed>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DiagnosticsInfo {
    pub node_id: u64,
    pub agent_version: String,
    /// The agent's command line.
    pub argv: Vec<String>,
    /// Its last log lines, oldest first.
    pub recent_log: Vec<String>,
    /// Its Raft node's state (a manager's), as openraft reports it.
    pub raft: Option<String>,
    /// A scrape of its metrics, when it serves them.
    pub metrics: Option<String>,
}
