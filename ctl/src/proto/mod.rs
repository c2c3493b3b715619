//! The control protocol: every message that crosses a node's control socket.
//!
//! A connection opens with the [`symphony_wire::hello`] exchange (protocol [`Ctl::ID`]); then
//! the client sends [`RequestFrame`]s and the agent answers each with [`ResponseFrame`]s under
//! the same id. Requests on one connection may be pipelined, and the agent answers them as they
//! complete, so replies can arrive out of order: the id is what pairs them up.
//!
//! Everything is MessagePack with named fields (see [`symphony_wire::frame`]), so a newer peer
//! can add a field without breaking an older one.
//!
//! - this file: the [`Request`]s, where each is answered ([`Route`], declared once in
//!   [`Request::spec`]), and the [`Response`]s;
//! - [`views`]: what the responses carry;
//! - [`services`]: the service spec as operators write it, and what `service ls`, `ps`,
//!   `inspect`, `explain` and `logs` show;
//! - [`events`]: what `events` streams, and its filter;
//! - [`error`]: [`CtlError`], the typed error with its structured fields.

mod error;
mod events;
mod services;
mod views;

pub use error::{Applied, Compacted, CompareFailure, CtlError, ErrorCode, LeaderHint};
pub use events::*;
pub use services::*;
pub use views::*;

use serde::{Deserialize, Serialize};
use symphony_wire::ProtocolId;

/// The control protocol, as the wire crate knows it.
#[derive(Debug, Clone, Copy)]
pub struct Ctl;

impl symphony_wire::Protocol for Ctl {
    /// v2: one hello for every Symphony protocol, streams, typed error fields.
    const ID: ProtocolId = ProtocolId {
        name: "symphony-ctl",
        version: 2,
    };
    type Request = Request;
    type Response = Response;
    type Error = CtlError;
}

/// The protocol name in the hello; a peer that speaks anything else is refused.
pub const PROTOCOL: &str = <Ctl as symphony_wire::Protocol>::ID.name;
/// Bumped on any change an older peer cannot ignore.
pub const PROTOCOL_VERSION: u32 = <Ctl as symphony_wire::Protocol>::ID.version;

/// One request with the id its responses will carry.
pub type RequestFrame = symphony_wire::RequestFrame<Request>;
/// One response frame.
pub type ResponseFrame = symphony_wire::ResponseFrame<Response, CtlError>;
/// What a response frame carries.
pub type ResponseBody = symphony_wire::Body<Response, CtlError>;

/// Where a request is answered. Declared once, beside the request, in [`Request::spec`]: the
/// agent routes by it and by nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// By the node that receives it, whatever its role (`status`).
    Local,
    /// By the node that receives it, and about that node's own membership (`init`, `join`,
    /// `leave`, `recover`): a worker answers these too.
    Membership,
    /// By the receiving manager from its own replica or Raft node, never forwarded (stale
    /// reads, `snapshot save`). A worker refuses it.
    Manager,
    /// By the leader: a manager that does not lead forwards it to the leader, once. A worker
    /// refuses it.
    Leader,
}

/// A request's name (for logs and errors), its route, and whether it is answered with a
/// stream of frames (until the client hangs up) rather than one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSpec {
    pub name: &'static str,
    pub route: Route,
    pub stream: bool,
}

const fn spec(name: &'static str, route: Route) -> RequestSpec {
    RequestSpec {
        name,
        route,
        stream: false,
    }
}

const fn stream(name: &'static str, route: Route) -> RequestSpec {
    RequestSpec {
        name,
        route,
        stream: true,
    }
}

/// Reads go to the leader unless a stale read of the local replica was asked for.
const fn read(name: &'static str, consistency: ReadConsistency) -> RequestSpec {
    match consistency {
        ReadConsistency::Linearizable => spec(name, Route::Leader),
        ReadConsistency::Stale => spec(name, Route::Manager),
    }
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
        /// How long node certificates are valid (`--cert-expiry`); default 90 days.
        #[serde(default)]
        cert_expiry_ms: Option<u64>,
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
        /// As of this revision (still kept in the history) instead of now.
        #[serde(default)]
        revision: Option<u64>,
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
    /// A stream: every put and delete of the keys starting with `prefix` (a whole key is its
    /// own prefix), in revision order, from revision `from_revision` on (default: after now),
    /// as this manager's replica applies them; never ends by itself.
    KvWatch {
        prefix: String,
        from_revision: Option<u64>,
    },
    /// How much KV history is kept; with `keep`, keep that many revisions from now on.
    KvHistory {
        keep: Option<u64>,
    },
    TokenShow {
        role: Role,
    },
    TokenRotate {
        role: Role,
    },
    /// Changes cluster-wide settings; `None` leaves a setting as it is. Answers with the
    /// settings as they are after.
    ClusterUpdate {
        /// How long node certificates issued from now on are valid.
        cert_expiry_ms: Option<u64>,
    },
    /// The cluster CA and the certificates issued from it: how many nodes hold one from each
    /// root, and when each node's ends.
    CaStatus {
        consistency: ReadConsistency,
    },
    /// Starts a rotation of the cluster's root (a new root, cross-signed by the old, while
    /// nodes renew onto it; the leader ends it once every node did), or, with one under way,
    /// changes nothing. Answers with the CA's status at once: `ca rotate` waits on `CaStatus`.
    CaRotate,
    /// Adds a new random gossip key, accepted at once by every node and sealed with only once
    /// it is used; answers once every ready node holds it or `wait_ms` has passed.
    GossipKeyInstall {
        wait_ms: u64,
    },
    /// Makes key `id` the one every node seals with. Refused, nothing written, unless every
    /// ready node holds it within `wait_ms` (`force` skips the check).
    GossipKeyUse {
        id: u32,
        wait_ms: u64,
        force: bool,
    },
    /// Uninstalls key `id`, which must not be the primary. Refused, nothing written, unless
    /// every ready node seals with the primary within `wait_ms` (`force` skips the check).
    GossipKeyRemove {
        id: u32,
        wait_ms: u64,
        force: bool,
    },
    /// The installed key ids and how many nodes hold and seal with each.
    GossipKeyList,
    NodeList {
        consistency: ReadConsistency,
    },
    /// Declares a service; refused (nothing written) when the name is taken or the spec is
    /// invalid.
    ServiceCreate {
        name: String,
        spec: Box<ServiceSpecView>,
    },
    ServiceList {
        consistency: ReadConsistency,
    },
    ServiceInspect {
        name: String,
        consistency: ReadConsistency,
    },
    /// A service's tasks, newest last per slot.
    ServicePs {
        name: String,
        consistency: ReadConsistency,
    },
    /// Why each pending task of a service is pending: every node, every filter it fails.
    ServiceExplain {
        name: String,
        consistency: ReadConsistency,
    },
    ServiceScale {
        name: String,
        replicas: u32,
    },
    /// Changes the fields the patch names (merged on the leader into the spec as it is then);
    /// a change of what tasks run starts a rolling update; an empty patch resumes a paused one.
    ServiceUpdate {
        name: String,
        patch: Box<ServicePatchView>,
    },
    /// Back to the spec the last update replaced, rolling.
    ServiceRollback {
        name: String,
    },
    /// Spreads a replicated service's tasks evenly again, start-first.
    ServiceRebalance {
        name: String,
    },
    ServiceRemove {
        name: String,
    },
    /// A stream: the service's task output from every node, each line with its task and node.
    ServiceLogs {
        name: String,
        tail: Option<u64>,
        follow: bool,
    },
    /// What a support bundle holds of one node: its command line, recent log lines, Raft
    /// state and metrics, with secrets removed. `node_id`: another node's, fetched by this
    /// manager over the node-to-node API; `None`: this node's.
    Diagnostics {
        node_id: Option<u64>,
    },
    /// A stream: the cluster's events after revision `since` (default: from now), as this
    /// manager's replica applies them; never ends by itself.
    Events {
        since: Option<u64>,
        filter: EventFilter,
    },
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
    /// Items of a `kv watch` stream: the changes of one or more revisions.
    KvEvents(Vec<KvEvent>),
    KvHistory(KvHistoryInfo),
    Token(TokenInfo),
    /// `cluster update`: the settings as they are now.
    Cluster(ClusterSettingsInfo),
    CaStatus(Box<CaStatusInfo>),
    /// Every `gossip key` request: the keyring as it is now, ids only.
    GossipKeys(GossipKeysInfo),
    NodeList(Vec<NodeInfo>),
    Join(JoinInfo),
    /// A membership change or `leave` done; the sentence says what happened.
    Done(DoneInfo),
    SnapshotSaved(SnapshotInfo),
    /// `node inspect`, and `node update` with the node as it is now.
    Node(Box<NodeInfo>),
    /// `service create`, `inspect` and `scale`: the service as it is now.
    Service(Box<ServiceInfo>),
    Services(Vec<ServiceInfo>),
    Tasks(Vec<TaskInfo>),
    Explain(Box<ExplainInfo>),
    /// Items of a `service logs` stream.
    Logs(Vec<ServiceLogLine>),
    /// Items of an `events` stream: the events of one or more revisions, whole.
    Events(Vec<EventView>),
    Diagnostics(Box<DiagnosticsInfo>),
}

impl Request {
    /// The request's name and route: the one place that says where a request is answered.
    pub fn spec(&self) -> RequestSpec {
        use Route::{Leader, Local, Manager, Membership};
        match self {
            Request::Status => spec("status", Local),
            Request::Init { .. } => spec("init", Membership),
            Request::Join { .. } => spec("join", Membership),
            Request::Leave => spec("leave", Membership),
            Request::RecoverForceNewCluster => spec("recover", Membership),
            Request::SnapshotSave { .. } => spec("snapshot save", Manager),
            Request::NodePromote { .. } => spec("node promote", Leader),
            Request::NodeDemote { .. } => spec("node demote", Leader),
            Request::NodeRemove { .. } => spec("node rm", Leader),
            Request::NodeUpdate { .. } => spec("node update", Leader),
            Request::NodeInspect { consistency, .. } => read("node inspect", *consistency),
            Request::NodeList { consistency } => read("node ls", *consistency),
            Request::KvPut { .. } => spec("kv put", Leader),
            Request::KvDelete { .. } => spec("kv rm", Leader),
            Request::KvGet { consistency, .. } => read("kv get", *consistency),
            Request::KvList { consistency, .. } => read("kv ls", *consistency),
            // Any manager streams its replica's history: revisions are the same on all.
            Request::KvWatch { .. } => stream("kv watch", Manager),
            Request::KvHistory { .. } => spec("kv history", Leader),
            // Tokens are secrets: only the leader's (current) view of them is shown.
            Request::TokenShow { .. } => spec("token show", Leader),
            Request::TokenRotate { .. } => spec("token rotate", Leader),
            Request::ClusterUpdate { .. } => spec("cluster update", Leader),
            Request::CaStatus { consistency } => read("ca status", *consistency),
            Request::CaRotate => spec("ca rotate", Leader),
            // The keyring is the leader's; it asks every node what it holds.
            Request::GossipKeyInstall { .. } => spec("gossip key install", Leader),
            Request::GossipKeyUse { .. } => spec("gossip key use", Leader),
            Request::GossipKeyRemove { .. } => spec("gossip key remove", Leader),
            Request::GossipKeyList => spec("gossip key list", Leader),
            Request::ServiceCreate { .. } => spec("service create", Leader),
            Request::ServiceScale { .. } => spec("service scale", Leader),
            Request::ServiceRemove { .. } => spec("service rm", Leader),
            Request::ServiceUpdate { .. } => spec("service update", Leader),
            Request::ServiceRollback { .. } => spec("service rollback", Leader),
            Request::ServiceRebalance { .. } => spec("service rebalance", Leader),
            Request::ServiceList { consistency } => read("service ls", *consistency),
            Request::ServiceInspect { consistency, .. } => read("service inspect", *consistency),
            Request::ServicePs { consistency, .. } => read("service ps", *consistency),
            Request::ServiceExplain { consistency, .. } => read("service explain", *consistency),
            // Any manager gathers the logs from the nodes; nothing is written.
            Request::ServiceLogs { .. } => stream("service logs", Manager),
            // Any manager streams its replica's events.
            Request::Events { .. } => stream("events", Manager),
            Request::Diagnostics { node_id: None } => spec("diagnostics", Local),
            // Another node's: a manager knows its address and secret.
            Request::Diagnostics { node_id: Some(_) } => spec("diagnostics", Manager),
        }
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        self.spec().name
    }
}

impl Response {
    /// The kind of answer, for an error about an unexpected one.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Status(_) => "status",
            Response::Init(_) => "init",
            Response::KvPut(_) => "kv put",
            Response::KvGet(_) => "kv get",
            Response::KvList(_) => "kv ls",
            Response::KvDelete(_) => "kv rm",
            Response::KvEvents(_) => "kv events",
            Response::KvHistory(_) => "kv history",
            Response::Token(_) => "token",
            Response::Cluster(_) => "cluster",
            Response::CaStatus(_) => "ca status",
            Response::GossipKeys(_) => "gossip keys",
            Response::NodeList(_) => "node ls",
            Response::Join(_) => "join",
            Response::Done(_) => "done",
            Response::SnapshotSaved(_) => "snapshot saved",
            Response::Node(_) => "node",
            Response::Service(_) => "service",
            Response::Services(_) => "services",
            Response::Tasks(_) => "tasks",
            Response::Explain(_) => "explain",
            Response::Logs(_) => "logs",
            Response::Events(_) => "events",
            Response::Diagnostics(_) => "diagnostics",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn only_leader_work_is_forwarded() {
        let put = Request::KvPut {
            key: "k".into(),
            value: vec![],
            if_revision: None,
        };
        assert_eq!(put.spec().route, Route::Leader);
        let get = |consistency| Request::KvGet {
            key: "k".into(),
            consistency,
            revision: None,
        };
        assert_eq!(
            get(ReadConsistency::Linearizable).spec().route,
            Route::Leader
        );
        assert_eq!(get(ReadConsistency::Stale).spec().route, Route::Manager);
        assert_eq!(Request::Status.spec().route, Route::Local);
        // Streams are declared as such, and only they.
        assert!(
            Request::Events {
                since: None,
                filter: EventFilter::default(),
            }
            .spec()
            .stream
        );
        assert!(!Request::Status.spec().stream && !get(ReadConsistency::Stale).spec().stream);
        assert_eq!(Request::Leave.spec().route, Route::Membership);
        assert_eq!(get(ReadConsistency::Stale).name(), "kv get");
    }

    /// `service update --no-healthcheck` sends `health: Some(None)`; it once arrived as `None`
    /// (MessagePack's one nil), and the health check stayed.
    #[test]
    fn a_patch_that_clears_fields_arrives_as_sent() {
        let patch = ServicePatchView {
            health: Some(None),
            workdir: Some(None),
            restart_max_attempts: Some(None),
            restart_window_ms: Some(Some(5)),
            ..ServicePatchView::default()
        };
        let request = Request::ServiceUpdate {
            name: "web".into(),
            patch: Box::new(patch.clone()),
        };
        let frame = symphony_wire::frame::encode(&RequestFrame::new(1, request)).unwrap();
        let back: RequestFrame = symphony_wire::frame::decode(&frame).unwrap();
        match back.request {
            Some(Request::ServiceUpdate { patch: back, .. }) => assert_eq!(*back, patch),
            other => panic!("decoded {other:?}"),
        }
    }
}
