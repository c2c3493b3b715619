//! The async client for a node's control socket. The CLI, testnet and every test use it.
//!
//! One [`Client`] is one connection, multiplexed: calls may run concurrently on it (`&self`),
//! and streams (watch, logs, events) share it with plain calls.

use std::path::{Path, PathBuf};
use std::time::Duration;

use symphony_wire::{CallError, Dialer, Hello, HelloError, LocalHello, Mux, Protocol, Refusal};

use crate::proto::{
    CaStatusInfo, ClusterSettingsInfo, Ctl, CtlError, DiagnosticsInfo, DoneInfo, EventFilter,
    ExplainInfo, GossipKeysInfo, InitInfo, JoinInfo, KvDeleteResult, KvEntry, KvHistoryInfo,
    KvListing, KvWriteResult, NodeInfo, ReadConsistency, Request, Response, Role, ServiceInfo,
    ServicePatchView, ServiceSpecView, SnapshotInfo, StatusInfo, TaskInfo, TokenInfo,
};

/// How long connecting and the hello may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A wait in whole milliseconds, as the protocol carries it.
fn millis(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
}

/// Why a call failed. `Remote` is the agent's own typed answer; the rest are about reaching it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to the control socket at {path}: {source}; is symphony-agent running with that --config-dir? (an agent started without --config-dir serves {default}; for another, pass --config-dir DIR or --socket DIR/control.sock, or set SYMPHONY_CONFIG_DIR or SYMPHONY_SOCKET)",
        default = crate::DEFAULT_SOCKET
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The connection was made but the hello failed; nothing was sent.
    #[error("the agent at {path} did not complete the hello: {source}")]
    Handshake { path: PathBuf, source: HelloError },
    /// The request may or may not have reached the agent (see [`CallError`]).
    #[error("{0}")]
    Call(CallError<CtlError>),
    #[error("{0}")]
    Remote(CtlError),
    #[error("the agent answered {request} with an unexpected {got} reply")]
    UnexpectedReply {
        request: &'static str,
        got: &'static str,
    },
}

impl ClientError {
    /// The agent's error, if the agent answered with one.
    pub fn remote(&self) -> Option<&CtlError> {
        match self {
            ClientError::Remote(error) => Some(error),
            _ => None,
        }
    }

    /// Why the agent refused the connection in its hello, if it did.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ClientError::Handshake {
                source: HelloError::Refused(refusal),
                ..
            } => Some(refusal),
            _ => None,
        }
    }

    /// Whether the request certainly never reached the agent.
    pub fn never_sent(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Handshake { .. } => true,
            ClientError::Call(error) => error.never_sent(),
            ClientError::Remote(_) | ClientError::UnexpectedReply { .. } => false,
        }
    }
}

impl From<CallError<CtlError>> for ClientError {
    fn from(error: CallError<CtlError>) -> Self {
        match error {
            CallError::Remote(error) => ClientError::Remote(error),
            other => ClientError::Call(other),
        }
    }
}

/// The answers to one stream request (`ReplyStream::next` until `None`).
pub type ReplyStream = symphony_wire::ReplyStream<Ctl>;

/// One connection to a control socket; cheap to clone (clones share the connection).
#[derive(Debug, Clone)]
pub struct Client {
    mux: Mux<Ctl>,
}

impl Client {
    /// Connects to the socket at `path` and exchanges hellos.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let dialer = Dialer::new(
            Ctl::ID,
            LocalHello {
                node_id: 0,
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
            },
        );
        let connection = dialer
            .unix(path, CONNECT_TIMEOUT)
            .await
            .map_err(|error| dial_error(path, error))?;
        Ok(Client {
            mux: Mux::start(connection, path.display().to_string()),
        })
    }

    /// The agent's hello: its node id and version.
    pub fn server_hello(&self) -> &Hello {
        self.mux.peer_hello()
    }

    /// Sends one request and waits for its response.
    pub async fn call(&self, request: Request) -> Result<Response, ClientError> {
        Ok(self.mux.call(&request, None).await?)
    }

    /// Sends one stream request; its items come from the returned stream.
    pub async fn stream(&self, request: Request) -> Result<ReplyStream, ClientError> {
        Ok(self.mux.stream(&request).await?)
    }

    /// Sends `request` and takes the one kind of answer `pick` accepts.
    async fn expect<T>(
        &self,
        request: Request,
        pick: impl FnOnce(Response) -> Result<T, Response>,
    ) -> Result<T, ClientError> {
        let name = request.name();
        pick(self.call(request).await?).map_err(|other| ClientError::UnexpectedReply {
            request: name,
            got: other.kind(),
        })
    }

    pub async fn status(&self) -> Result<StatusInfo, ClientError> {
        self.expect(Request::Status, |r| match r {
            Response::Status(status) => Ok(*status),
            other => Err(other),
        })
        .await
    }

    /// Creates a one-manager cluster here.
    pub async fn init(&self) -> Result<InitInfo, ClientError> {
        self.init_with(Vec::new(), None).await
    }

    /// `init --cert-expiry`: a new cluster whose node certificates live `cert_expiry`.
    pub async fn init_with_cert_expiry(
        &self,
        cert_expiry: Duration,
    ) -> Result<InitInfo, ClientError> {
        self.init_request(Vec::new(), None, Some(millis(cert_expiry)))
            .await
    }

    /// `init --peers` (the peers' Raft addresses) or `init --join-addr` (a remote address).
    pub async fn init_with(
        &self,
        peers: Vec<String>,
        join_addr: Option<String>,
    ) -> Result<InitInfo, ClientError> {
        self.init_request(peers, join_addr, None).await
    }

    /// Any `init`, as the command line asks for it.
    pub async fn init_request(
        &self,
        peers: Vec<String>,
        join_addr: Option<String>,
        cert_expiry_ms: Option<u64>,
    ) -> Result<InitInfo, ClientError> {
        let request = Request::Init {
            peers,
            join_addr,
            cert_expiry_ms,
        };
        self.expect(request, |r| match r {
            Response::Init(info) => Ok(info),
            other => Err(other),
        })
        .await
    }

    /// `cluster update`: changes the settings given (`None`: unchanged).
    pub async fn cluster_update(
        &self,
        cert_expiry: Option<Duration>,
    ) -> Result<ClusterSettingsInfo, ClientError> {
        let request = Request::ClusterUpdate {
            cert_expiry_ms: cert_expiry.map(millis),
        };
        self.expect(request, |r| match r {
            Response::Cluster(info) => Ok(info),
            other => Err(other),
        })
        .await
    }

    /// `ca status`.
    pub async fn ca_status(
        &self,
        consistency: ReadConsistency,
    ) -> Result<CaStatusInfo, ClientError> {
        self.expect(Request::CaStatus { consistency }, |r| match r {
            Response::CaStatus(info) => Ok(*info),
            other => Err(other),
        })
        .await
    }

    /// `ca rotate`: starts a root rotation (or finds the one under way); returns at once.
    pub async fn ca_rotate(&self) -> Result<CaStatusInfo, ClientError> {
        self.expect(Request::CaRotate, |r| match r {
            Response::CaStatus(info) => Ok(*info),
            other => Err(other),
        })
        .await
    }

    /// Joins the cluster of the node whose remote address is `addr`.
    pub async fn join(
        &self,
        token: impl Into<String>,
        addr: impl Into<String>,
    ) -> Result<JoinInfo, ClientError> {
        let request = Request::Join {
            token: token.into(),
            addr: addr.into(),
        };
        self.expect(request, |r| match r {
            Response::Join(info) => Ok(info),
            other => Err(other),
        })
        .await
    }

    pub async fn leave(&self) -> Result<DoneInfo, ClientError> {
        self.done(Request::Leave).await
    }

    pub async fn node_promote(&self, node_id: u64) -> Result<DoneInfo, ClientError> {
        self.done(Request::NodePromote { node_id }).await
    }

    pub async fn node_demote(&self, node_id: u64) -> Result<DoneInfo, ClientError> {
        self.done(Request::NodeDemote { node_id }).await
    }

    pub async fn node_remove(&self, node_id: u64, force: bool) -> Result<DoneInfo, ClientError> {
        self.done(Request::NodeRemove { node_id, force }).await
    }

    pub async fn recover_force_new_cluster(&self) -> Result<DoneInfo, ClientError> {
        self.done(Request::RecoverForceNewCluster).await
    }

    /// Has the agent write a snapshot to `path` (on the agent's machine; make it absolute).
    pub async fn snapshot_save(
        &self,
        path: impl Into<String>,
    ) -> Result<SnapshotInfo, ClientError> {
        self.expect(Request::SnapshotSave { path: path.into() }, |r| match r {
            Response::SnapshotSaved(info) => Ok(info),
            other => Err(other),
        })
        .await
    }

    pub async fn node_inspect(
        &self,
        node_id: u64,
        consistency: ReadConsistency,
    ) -> Result<NodeInfo, ClientError> {
        let request = Request::NodeInspect {
            node_id,
            consistency,
        };
        self.node(request).await
    }

    /// Sets a node's availability and adds or removes labels; returns the node as it is now.
    pub async fn node_update(
        &self,
        node_id: u64,
        availability: Option<String>,
        label_add: std::collections::BTreeMap<String, String>,
        label_rm: Vec<String>,
    ) -> Result<NodeInfo, ClientError> {
        let request = Request::NodeUpdate {
            node_id,
            availability,
            label_add,
            label_rm,
        };
        self.node(request).await
    }

    async fn node(&self, request: Request) -> Result<NodeInfo, ClientError> {
        self.expect(request, |r| match r {
            Response::Node(node) => Ok(*node),
            other => Err(other),
        })
        .await
    }

    async fn done(&self, request: Request) -> Result<DoneInfo, ClientError> {
        self.expect(request, |r| match r {
            Response::Done(info) => Ok(info),
            other => Err(other),
        })
        .await
    }

    /// Puts `value` at `key`; with `if_revision`, only if the key's `mod_revision` is that
    /// (0: only if the key does not exist).
    pub async fn kv_put(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        if_revision: Option<u64>,
    ) -> Result<KvWriteResult, ClientError> {
        let request = Request::KvPut {
            key: key.into(),
            value: value.into(),
            if_revision,
        };
        self.expect(request, |r| match r {
            Response::KvPut(result) => Ok(result),
            other => Err(other),
        })
        .await
    }

    pub async fn kv_get(
        &self,
        key: impl Into<String>,
        consistency: ReadConsistency,
    ) -> Result<Option<KvEntry>, ClientError> {
        let request = Request::KvGet {
            key: key.into(),
            consistency,
            revision: None,
        };
        self.expect(request, |r| match r {
            Response::KvGet(entry) => Ok(entry),
            other => Err(other),
        })
        .await
    }

    /// `key` as it was at `revision` (one the history still keeps).
    pub async fn kv_get_at(
        &self,
        key: impl Into<String>,
        revision: u64,
        consistency: ReadConsistency,
    ) -> Result<Option<KvEntry>, ClientError> {
        let request = Request::KvGet {
            key: key.into(),
            consistency,
            revision: Some(revision),
        };
        self.expect(request, |r| match r {
            Response::KvGet(entry) => Ok(entry),
            other => Err(other),
        })
        .await
    }

    /// A stream of [`Response::KvEvents`]: every change to keys starting with `prefix`, from
    /// revision `from_revision` (default: from now).
    pub async fn kv_watch(
        &self,
        prefix: impl Into<String>,
        from_revision: Option<u64>,
    ) -> Result<ReplyStream, ClientError> {
        self.stream(Request::KvWatch {
            prefix: prefix.into(),
            from_revision,
        })
        .await
    }

    /// A node's diagnostics (this one's, or with `node_id` another's, through this manager).
    pub async fn diagnostics(&self, node_id: Option<u64>) -> Result<DiagnosticsInfo, ClientError> {
        self.expect(Request::Diagnostics { node_id }, |r| match r {
            Response::Diagnostics(info) => Ok(*info),
            other => Err(other),
        })
        .await
    }

    /// How much KV history is kept; with `keep`, keep that many revisions from now on.
    pub async fn kv_history(&self, keep: Option<u64>) -> Result<KvHistoryInfo, ClientError> {
        self.expect(Request::KvHistory { keep }, |r| match r {
            Response::KvHistory(info) => Ok(info),
            other => Err(other),
        })
        .await
    }

    pub async fn kv_list(
        &self,
        prefix: impl Into<String>,
        consistency: ReadConsistency,
    ) -> Result<KvListing, ClientError> {
        let request = Request::KvList {
            prefix: prefix.into(),
            consistency,
        };
        self.expect(request, |r| match r {
            Response::KvList(listing) => Ok(listing),
            other => Err(other),
        })
        .await
    }

    pub async fn kv_delete(
        &self,
        key: impl Into<String>,
        if_revision: Option<u64>,
    ) -> Result<KvDeleteResult, ClientError> {
        let request = Request::KvDelete {
            key: key.into(),
            if_revision,
        };
        self.expect(request, |r| match r {
            Response::KvDelete(result) => Ok(result),
            other => Err(other),
        })
        .await
    }

    pub async fn token_show(&self, role: Role) -> Result<TokenInfo, ClientError> {
        self.token(Request::TokenShow { role }).await
    }

    pub async fn token_rotate(&self, role: Role) -> Result<TokenInfo, ClientError> {
        self.token(Request::TokenRotate { role }).await
    }

    /// Installs a new random gossip key; waits up to `wait` for every ready node to hold it.
    pub async fn gossip_key_install(&self, wait: Duration) -> Result<GossipKeysInfo, ClientError> {
        self.gossip_keys(Request::GossipKeyInstall {
            wait_ms: millis(wait),
        })
        .await
    }

    /// Makes key `id` the primary, once every ready node holds it (within `wait`), or at once
    /// with `force`.
    pub async fn gossip_key_use(
        &self,
        id: u32,
        wait: Duration,
        force: bool,
    ) -> Result<GossipKeysInfo, ClientError> {
        self.gossip_keys(Request::GossipKeyUse {
            id,
            wait_ms: millis(wait),
            force,
        })
        .await
    }

    /// Uninstalls key `id`, once every ready node seals with the primary (within `wait`), or
    /// at once with `force`.
    pub async fn gossip_key_remove(
        &self,
        id: u32,
        wait: Duration,
        force: bool,
    ) -> Result<GossipKeysInfo, ClientError> {
        self.gossip_keys(Request::GossipKeyRemove {
            id,
            wait_ms: millis(wait),
            force,
        })
        .await
    }

    pub async fn gossip_key_list(&self) -> Result<GossipKeysInfo, ClientError> {
        self.gossip_keys(Request::GossipKeyList).await
    }

    async fn gossip_keys(&self, request: Request) -> Result<GossipKeysInfo, ClientError> {
        self.expect(request, |r| match r {
            Response::GossipKeys(keys) => Ok(keys),
            other => Err(other),
        })
        .await
    }

    async fn token(&self, request: Request) -> Result<TokenInfo, ClientError> {
        self.expect(request, |r| match r {
            Response::Token(token) => Ok(token),
            other => Err(other),
        })
        .await
    }

    /// Declares a service; returns it as created.
    pub async fn service_create(
        &self,
        name: impl Into<String>,
        spec: ServiceSpecView,
    ) -> Result<ServiceInfo, ClientError> {
        let request = Request::ServiceCreate {
            name: name.into(),
            spec: Box::new(spec),
        };
        self.service(request).await
    }

    pub async fn service_list(
        &self,
        consistency: ReadConsistency,
    ) -> Result<Vec<ServiceInfo>, ClientError> {
        self.expect(Request::ServiceList { consistency }, |r| match r {
            Response::Services(services) => Ok(services),
            other => Err(other),
        })
        .await
    }

    pub async fn service_inspect(
        &self,
        name: impl Into<String>,
        consistency: ReadConsistency,
    ) -> Result<ServiceInfo, ClientError> {
        let request = Request::ServiceInspect {
            name: name.into(),
            consistency,
        };
        self.service(request).await
    }

    pub async fn service_ps(
        &self,
        name: impl Into<String>,
        consistency: ReadConsistency,
    ) -> Result<Vec<TaskInfo>, ClientError> {
        let request = Request::ServicePs {
            name: name.into(),
            consistency,
        };
        self.expect(request, |r| match r {
            Response::Tasks(tasks) => Ok(tasks),
            other => Err(other),
        })
        .await
    }

    pub async fn service_explain(
        &self,
        name: impl Into<String>,
        consistency: ReadConsistency,
    ) -> Result<ExplainInfo, ClientError> {
        let request = Request::ServiceExplain {
            name: name.into(),
            consistency,
        };
        self.expect(request, |r| match r {
            Response::Explain(info) => Ok(*info),
            other => Err(other),
        })
        .await
    }

    pub async fn service_scale(
        &self,
        name: impl Into<String>,
        replicas: u32,
    ) -> Result<ServiceInfo, ClientError> {
        let request = Request::ServiceScale {
            name: name.into(),
            replicas,
        };
        self.service(request).await
    }

    /// Changes what `patch` names; a change of what tasks run starts a rolling update.
    pub async fn service_update(
        &self,
        name: impl Into<String>,
        patch: ServicePatchView,
    ) -> Result<ServiceInfo, ClientError> {
        let request = Request::ServiceUpdate {
            name: name.into(),
            patch: Box::new(patch),
        };
        self.service(request).await
    }

    /// Back to the spec the last update replaced, rolling.
    pub async fn service_rollback(
        &self,
        name: impl Into<String>,
    ) -> Result<ServiceInfo, ClientError> {
        self.service(Request::ServiceRollback { name: name.into() })
            .await
    }

    /// Spreads a replicated service's tasks evenly again over its nodes, start-first.
    pub async fn service_rebalance(
        &self,
        name: impl Into<String>,
    ) -> Result<ServiceInfo, ClientError> {
        self.service(Request::ServiceRebalance { name: name.into() })
            .await
    }

    pub async fn service_remove(&self, name: impl Into<String>) -> Result<DoneInfo, ClientError> {
        self.done(Request::ServiceRemove { name: name.into() })
            .await
    }

    /// A service's output; the items are `Response::Logs`.
    pub async fn service_logs(
        &self,
        name: impl Into<String>,
        tail: Option<u64>,
        follow: bool,
    ) -> Result<ReplyStream, ClientError> {
        let request = Request::ServiceLogs {
            name: name.into(),
            tail,
            follow,
        };
        self.stream(request).await
    }

    /// The cluster's events after revision `since` (default: from now), as a stream of
    /// `Response::Events` frames that ends only with an error or the connection.
    pub async fn events(
        &self,
        since: Option<u64>,
        filter: EventFilter,
    ) -> Result<ReplyStream, ClientError> {
        self.stream(Request::Events { since, filter }).await
    }

    async fn service(&self, request: Request) -> Result<ServiceInfo, ClientError> {
        self.expect(request, |r| match r {
            Response::Service(service) => Ok(*service),
            other => Err(other),
        })
        .await
    }

    pub async fn node_list(
        &self,
        consistency: ReadConsistency,
    ) -> Result<Vec<NodeInfo>, ClientError> {
        self.expect(Request::NodeList { consistency }, |r| match r {
            Response::NodeList(nodes) => Ok(nodes),
            other => Err(other),
        })
        .await
    }
}

fn dial_error(path: &Path, error: symphony_wire::DialError) -> ClientError {
    use symphony_wire::DialError;
    match error {
        DialError::Connect { source, .. } => ClientError::Connect {
            path: path.to_path_buf(),
            source,
        },
        DialError::Timeout { after, .. } => ClientError::Connect {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no hello within {after:?}"),
            ),
        },
        DialError::Hello { source, .. } => ClientError::Handshake {
            path: path.to_path_buf(),
            source,
        },
        // The control socket is not asked to be a particular node.
        DialError::WrongPeer { .. } => ClientError::Handshake {
            path: path.to_path_buf(),
            source: HelloError::Closed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newcomer who mistypes the socket (or runs the agent elsewhere) is told which socket was
    /// tried and where an agent started without flags puts its own.
    #[tokio::test]
    async fn a_missing_socket_is_named_with_the_agents_default() {
        let dir = tempfile::tempdir().unwrap();
        let tried = dir.path().join("nowhere.sock");
        let error = match Client::connect(&tried).await {
            Ok(_) => panic!("connected to a socket that does not exist"),
            Err(error) => error,
        };
        let ClientError::Connect { path, .. } = &error else {
            panic!("expected a connect error, got {error:?}");
        };
        assert_eq!(path, &tried);
        let sentence = error.to_string();
        assert!(
            sentence.contains(&tried.display().to_string()),
            "{sentence}"
        );
        assert!(sentence.contains(crate::DEFAULT_SOCKET), "{sentence}");
    }
}
