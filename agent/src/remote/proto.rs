//! Messages of the node-to-node API.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use symphony_consensus::{DesiredState, GossipKeyring, TaskReport, TaskSpec};
use symphony_ctl::proto::{CtlError, Request, Response, Role};
use symphony_gossip::MemberState;
use symphony_wire::ProtocolId;

pub use crate::keyring::AppliedKeys;
pub use crate::worker::state::ManagerContact;

/// The node-to-node API, as the wire crate knows it.
#[derive(Debug, Clone, Copy)]
pub struct Remote;

impl symphony_wire::Protocol for Remote {
    /// v2: the shared hello, and "passed on once" marked on the call, not inside requests.
    const ID: ProtocolId = ProtocolId {
        name: "symphony-remote",
        version: 2,
    };
    type Request = RemoteCall;
    type Response = RemoteReply;
    type Error = CtlError;
}

/// One call of the node-to-node API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteCall {
    pub request: RemoteRequest,
    /// Set by a manager that passes the call to the node it believes leads: that node answers
    /// it as leader or refuses it, and never passes it on again, so a stale view cannot make a
    /// loop. The one representation of "forward only once".
    #[serde(default)]
    pub forwarded: bool,
}

/// Where a remote request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteRoute {
    /// By the leader: another manager passes it on once.
    Leader,
    /// By the manager that receives it.
    Local,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteRequest {
    /// A node asks to join (or re-register with) the cluster; a worker that receives it relays
    /// it to a manager.
    Join(JoinRequest),
    /// A control request another manager forwards to the leader. `secret` is the cluster's
    /// manager secret: only managers may speak for an operator.
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
        /// The version of the gossip keyring the worker holds; a manager with a newer one
        /// sends it back (`SessionReply::gossip_keys`).
        #[serde(default)]
        keyring_version: Option<u64>,
    },
    /// A worker that is leaving asks the leader to mark it `left`.
    WorkerLeaving { node_id: u64, secret: String },
    /// A stream: the tasks assigned to a worker, the whole set first and then what changes,
    /// numbered so a gap is seen; served by any manager from its replica.
    Assignments {
        node_id: u64,
        secret: String,
        /// How often the node wants a quiet stream to beat (a quarter of its own isolation
        /// lease); absent from older agents, whose stream beats by the manager's lease.
        #[serde(default)]
        heartbeat_ms: Option<u64>,
    },
    /// What happened to a node's tasks, for the leader to record. `secret` is the worker's
    /// own, or the manager secret when a manager reports on its own tasks.
    TaskReports {
        node_id: u64,
        secret: String,
        reports: Vec<TaskReport>,
    },
    /// A node reports its resources as it found them at its start (a Docker engine that came
    /// or went since it joined).
    NodeResources {
        node_id: u64,
        secret: String,
        resources: symphony_consensus::Resources,
        agent_version: String,
    },
    /// Who leads, as this manager knows it: asked by a manager whose own Raft node has stopped
    /// (its store failed) and still forwards what it cannot answer.
    WhoLeads,
    /// Which gossip keys this node's driver holds and seals with (ids and the keyring's
    /// version, never keys): asked of every node by the leader before a key is used or
    /// removed. Answered by any node, worker or manager.
    GossipKeysHeld,
    /// The CA bundle this node trusts (certificates only, no key): what a joining node asks
    /// first, to check it against its token's digest before it sends the token. Answered by
    /// any node, worker or manager.
    CaBundle,
    /// A stream, to the node a task runs on: the task's output lines, the last `tail` first,
    /// then (with `follow`) new ones as they come. `secret` is that node's own secret, which
    /// only it and the managers hold.
    TaskLogs {
        task_id: u64,
        secret: String,
        tail: Option<u64>,
        follow: bool,
    },
    /// To any node: its diagnostics for a support bundle (no secret in them). `secret` is that
    /// node's own secret, which only it and the managers hold.
    Diagnostics { secret: String },
    /// To a fresh node named by `init --peers`, before the new cluster's Raft group starts: a
    /// certificate request for its key. Answered only by a node that belongs to no cluster and
    /// holds no certificate.
    CertificateRequest,
    /// To the same fresh node: the certificate issued for that request (naming it a manager of
    /// `cluster_id`) and the CA bundle it checks out against. Kept only by a fresh node that
    /// holds no certificate yet, and only if it names that node.
    Enrol {
        cluster_id: String,
        certificate: String,
        bundle: String,
    },
    /// To a manager, over the caller's mutual TLS: a new certificate for the caller's key
    /// (`csr`), for the node its current certificate names, with the role the cluster state
    /// gives that node and the cluster's current lifetime. Answered by the manager that
    /// receives it (every manager holds the CA); never passed on, since the caller's
    /// certificate is what names the node.
    RenewCertificate { csr: String },
    /// From the manager that issued a renewal to the leader: what to record of it in the
    /// node's record. `secret` is the manager secret.
    CertificateIssued {
        secret: String,
        node_id: u64,
        certificate: symphony_consensus::NodeCertificate,
    },
}

impl RemoteRequest {
    /// The request's name (for logs) and where it is answered: declared once, here.
    pub fn spec(&self) -> (&'static str, RemoteRoute) {
        match self {
            RemoteRequest::Join(_) => ("join", RemoteRoute::Leader),
            RemoteRequest::Forward { request, .. } => (request.name(), RemoteRoute::Leader),
            RemoteRequest::Leaving { .. } => ("manager leaving", RemoteRoute::Leader),
            RemoteRequest::WorkerLeaving { .. } => ("worker leaving", RemoteRoute::Leader),
            RemoteRequest::Session { .. } => ("session", RemoteRoute::Local),
            RemoteRequest::Assignments { .. } => ("assignments", RemoteRoute::Local),
            RemoteRequest::TaskReports { .. } => ("task reports", RemoteRoute::Leader),
            RemoteRequest::NodeResources { .. } => ("node resources", RemoteRoute::Leader),
            RemoteRequest::TaskLogs { .. } => ("task logs", RemoteRoute::Local),
            RemoteRequest::WhoLeads => ("who leads", RemoteRoute::Local),
            RemoteRequest::GossipKeysHeld => ("gossip keys held", RemoteRoute::Local),
            RemoteRequest::CaBundle => ("CA bundle", RemoteRoute::Local),
            RemoteRequest::Diagnostics { .. } => ("diagnostics", RemoteRoute::Local),
            RemoteRequest::CertificateRequest => ("certificate request", RemoteRoute::Local),
            RemoteRequest::Enrol { .. } => ("enrol", RemoteRoute::Local),
            RemoteRequest::RenewCertificate { .. } => ("renew certificate", RemoteRoute::Local),
            RemoteRequest::CertificateIssued { .. } => ("certificate issued", RemoteRoute::Leader),
        }
    }
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
    /// The node's Docker engine version, when it has one.
    #[serde(default)]
    pub docker: Option<String>,
    /// The cluster the node already belongs to, if any: joining another one is refused.
    pub cluster_id: Option<String>,
    /// Where the node gossips (UDP).
    #[serde(default)]
    pub gossip_addr: Option<String>,
    /// Labels the node reports (`--label`); merged into an existing record's.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A certificate request for the node's own key (PEM). The leader issues a certificate
    /// naming the node id, the role it admits the node as and the cluster, whatever the
    /// request asks for.
    #[serde(default)]
    pub csr: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteReply {
    Joined(JoinReply),
    Forwarded(Response),
    Left,
    Session(SessionReply),
    /// One message of an assignments stream.
    Assignments(AssignmentUpdate),
    /// Reports recorded.
    Recorded,
    /// Lines of a task's output.
    LogLines(Vec<LogLine>),
    /// The leader's node-to-node address, when this manager knows one.
    Leader(Option<String>),
    /// What this node's gossip seals with; `None` while it does not gossip.
    GossipKeysHeld(Option<AppliedKeys>),
    /// The CA bundle (PEM certificates); `None` while the node belongs to no cluster.
    CaBundle(Option<String>),
    Diagnostics(Box<symphony_ctl::proto::DiagnosticsInfo>),
    /// A fresh node's certificate request (PEM), for its `node_id`.
    CertificateRequest {
        node_id: u64,
        csr: String,
    },
    /// The certificate was checked and kept.
    Enrolled,
    /// A renewed certificate (PEM) and the CA bundle it checks out against.
    Renewed {
        certificate: String,
        bundle: String,
    },
}

/// One message of a worker's assignments stream. `seq` counts the messages that change the
/// set: the full set is 0, each increment one more; a worker that sees a gap opens the stream
/// again and starts from a full set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignmentUpdate {
    Full {
        seq: u64,
        tasks: Vec<Assignment>,
        node_ready: bool,
    },
    Increment {
        seq: u64,
        changed: Vec<Assignment>,
        removed: Vec<u64>,
        node_ready: bool,
    },
    /// Nothing changed; the manager is there, and says whether the cluster thinks the node is
    /// ready (a worker the cluster marked down is as good as cut off).
    Heartbeat { seq: u64, node_ready: bool },
    /// What the worker's TLS takes from the cluster, after the first full set and whenever
    /// it changes: the CA bundle the cluster trusts (PEM; during a root rotation, both roots:
    /// the worker renews onto the first if its certificate is of another) and the nodes
    /// `node rm` removed, whose certificates the worker refuses too. Not numbered: it
    /// changes no assignment.
    Trust {
        bundle: String,
        #[serde(default)]
        removed: BTreeSet<u64>,
    },
}

/// A task, as its worker needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub task_id: u64,
    pub service: String,
    pub slot: Option<u32>,
    pub spec: TaskSpec,
    pub desired: DesiredState,
}

/// One line of a task's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub at_ms: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub text: String,
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
    /// The cluster's gossip keyring, for a worker (a manager gets it from its replica). A
    /// secret: the node-to-node API is where it may travel, and nowhere else.
    #[serde(default)]
    pub gossip_keys: Option<GossipKeyring>,
    /// The certificate issued for the request's CSR (PEM), if it carried one.
    #[serde(default)]
    pub certificate: Option<String>,
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
    /// The gossip keyring, when it is newer than the one the worker said it holds.
    #[serde(default)]
    pub gossip_keys: Option<GossipKeyring>,
}
