//! The async client for a node's control socket. The CLI, testnet and every test use it.

use std::path::{Path, PathBuf};

use futures_util::{SinkExt, StreamExt};
use tokio::net::UnixStream;

use crate::frame::{self, FrameError, FramedStream, MAX_FRAME_LEN};
use crate::proto::{
    CtlError, DoneInfo, Hello, HelloReply, InitInfo, JoinInfo, KvDeleteResult, KvEntry, KvListing,
    KvWriteResult, NodeInfo, ReadConsistency, Request, RequestFrame, Response, ResponseBody,
    ResponseFrame, Role, SnapshotInfo, StatusInfo, TokenInfo,
};

/// Why a call failed. `Remote` is the agent's own typed answer; the rest are about reaching it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to the control socket at {path}: {source}; is symphony-agent running with that --config-dir?"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the connection to the agent failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the agent closed the connection")]
    Closed,
    #[error("the agent sent something this client cannot read: {0}")]
    Frame(#[from] FrameError),
    #[error("the agent answered request {got} while {expected} was awaited")]
    WrongId { expected: u64, got: u64 },
    #[error("the agent refused the connection: {0}")]
    Handshake(CtlError),
    #[error("the agent answered {request} with an unexpected {got} reply")]
    UnexpectedReply {
        request: &'static str,
        got: &'static str,
    },
    #[error("{0}")]
    Remote(#[from] CtlError),
}

impl ClientError {
    /// The agent's error, if the agent answered with one.
    pub fn remote(&self) -> Option<&CtlError> {
        match self {
            ClientError::Remote(error) | ClientError::Handshake(error) => Some(error),
            _ => None,
        }
    }
}

/// One connection to a control socket. Calls are sequential on a connection; open several
/// clients for concurrency (each is cheap: one Unix socket).
pub struct Client {
    stream: FramedStream<UnixStream>,
    next_id: u64,
    hello: HelloReply,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("node_id", &self.hello.node_id)
            .field("next_id", &self.next_id)
            .finish()
    }
}

impl Client {
    /// Connects to the socket at `path` and exchanges hellos.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let socket = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let mut stream = frame::framed(socket, MAX_FRAME_LEN);
        stream.send(frame::encode(&Hello::current())?).await?;
        let body = stream.next().await.ok_or(ClientError::Closed)??;
        let hello: HelloReply = frame::decode(&body)?;
        if let Err(error) = &hello.accepted {
            return Err(ClientError::Handshake(error.clone()));
        }
        Ok(Client {
            stream,
            next_id: 1,
            hello,
        })
    }

    /// The agent's answer to our hello: its node id and version.
    pub fn server_hello(&self) -> &HelloReply {
        &self.hello
    }

    /// Sends one request and waits for its response.
    pub async fn call(&mut self, request: Request) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = RequestFrame { id, request };
        self.stream.send(frame::encode(&frame)?).await?;
        let body = self.stream.next().await.ok_or(ClientError::Closed)??;
        let response: ResponseFrame = frame::decode(&body)?;
        if response.id != id {
            return Err(ClientError::WrongId {
                expected: id,
                got: response.id,
            });
        }
        match response.body {
            ResponseBody::Reply(response) => Ok(response),
            ResponseBody::Error(error) => Err(ClientError::Remote(error)),
        }
    }

    pub async fn status(&mut self) -> Result<StatusInfo, ClientError> {
        match self.call(Request::Status).await? {
            Response::Status(status) => Ok(*status),
            other => Err(unexpected("status", &other)),
        }
    }

    /// Creates a one-manager cluster here.
    pub async fn init(&mut self) -> Result<InitInfo, ClientError> {
        self.init_with(Vec::new(), None).await
    }

    /// `init --peers` (the peers' Raft addresses) or `init --join-addr` (a remote address).
    pub async fn init_with(
        &mut self,
        peers: Vec<String>,
        join_addr: Option<String>,
    ) -> Result<InitInfo, ClientError> {
        match self.call(Request::Init { peers, join_addr }).await? {
            Response::Init(info) => Ok(info),
            other => Err(unexpected("init", &other)),
        }
    }

    /// Joins the cluster of the node whose remote address is `addr`.
    pub async fn join(
        &mut self,
        token: impl Into<String>,
        addr: impl Into<String>,
    ) -> Result<JoinInfo, ClientError> {
        let request = Request::Join {
            token: token.into(),
            addr: addr.into(),
        };
        match self.call(request).await? {
            Response::Join(info) => Ok(info),
            other => Err(unexpected("join", &other)),
        }
    }

    pub async fn leave(&mut self) -> Result<DoneInfo, ClientError> {
        self.done("leave", Request::Leave).await
    }

    pub async fn node_promote(&mut self, node_id: u64) -> Result<DoneInfo, ClientError> {
        self.done("node promote", Request::NodePromote { node_id })
            .await
    }

    pub async fn node_demote(&mut self, node_id: u64) -> Result<DoneInfo, ClientError> {
        self.done("node demote", Request::NodeDemote { node_id })
            .await
    }

    pub async fn node_remove(
        &mut self,
        node_id: u64,
        force: bool,
    ) -> Result<DoneInfo, ClientError> {
        self.done("node rm", Request::NodeRemove { node_id, force })
            .await
    }

    pub async fn recover_force_new_cluster(&mut self) -> Result<DoneInfo, ClientError> {
        self.done("recover", Request::RecoverForceNewCluster).await
    }

    /// Has the agent write a snapshot to `path` (on the agent's machine; make it absolute).
    pub async fn snapshot_save(
        &mut self,
        path: impl Into<String>,
    ) -> Result<SnapshotInfo, ClientError> {
        match self
            .call(Request::SnapshotSave { path: path.into() })
            .await?
        {
            Response::SnapshotSaved(info) => Ok(info),
            other => Err(unexpected("snapshot save", &other)),
        }
    }

    pub async fn node_inspect(
        &mut self,
        node_id: u64,
        consistency: ReadConsistency,
    ) -> Result<NodeInfo, ClientError> {
        match self
            .call(Request::NodeInspect {
                node_id,
                consistency,
            })
            .await?
        {
            Response::Node(node) => Ok(*node),
            other => Err(unexpected("node inspect", &other)),
        }
    }

    /// Sets a node's availability and adds or removes labels; returns the node as it is now.
    pub async fn node_update(
        &mut self,
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
        match self.call(request).await? {
            Response::Node(node) => Ok(*node),
            other => Err(unexpected("node update", &other)),
        }
    }

    async fn done(
        &mut self,
        name: &'static str,
        request: Request,
    ) -> Result<DoneInfo, ClientError> {
        match self.call(request).await? {
            Response::Done(info) => Ok(info),
            other => Err(unexpected(name, &other)),
        }
    }

    /// Puts `value` at `key`; with `if_revision`, only if the key's `mod_revision` is that
    /// (0: only if the key does not exist).
    pub async fn kv_put(
        &mut self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        if_revision: Option<u64>,
    ) -> Result<KvWriteResult, ClientError> {
        let request = Request::KvPut {
            key: key.into(),
            value: value.into(),
            if_revision,
        };
        match self.call(request).await? {
            Response::KvPut(result) => Ok(result),
            other => Err(unexpected("kv put", &other)),
        }
    }

    pub async fn kv_get(
        &mut self,
        key: impl Into<String>,
        consistency: ReadConsistency,
    ) -> Result<Option<KvEntry>, ClientError> {
        let request = Request::KvGet {
            key: key.into(),
            consistency,
        };
        match self.call(request).await? {
            Response::KvGet(entry) => Ok(entry),
            other => Err(unexpected("kv get", &other)),
        }
    }

    pub async fn kv_list(
        &mut self,
        prefix: impl Into<String>,
        consistency: ReadConsistency,
    ) -> Result<KvListing, ClientError> {
        let request = Request::KvList {
            prefix: prefix.into(),
            consistency,
        };
        match self.call(request).await? {
            Response::KvList(listing) => Ok(listing),
            other => Err(unexpected("kv ls", &other)),
        }
    }

    pub async fn kv_delete(
        &mut self,
        key: impl Into<String>,
        if_revision: Option<u64>,
    ) -> Result<KvDeleteResult, ClientError> {
        let request = Request::KvDelete {
            key: key.into(),
            if_revision,
        };
        match self.call(request).await? {
            Response::KvDelete(result) => Ok(result),
            other => Err(unexpected("kv rm", &other)),
        }
    }

    pub async fn token_show(&mut self, role: Role) -> Result<TokenInfo, ClientError> {
        match self.call(Request::TokenShow { role }).await? {
            Response::Token(token) => Ok(token),
            other => Err(unexpected("token show", &other)),
        }
    }

    pub async fn token_rotate(&mut self, role: Role) -> Result<TokenInfo, ClientError> {
        match self.call(Request::TokenRotate { role }).await? {
            Response::Token(token) => Ok(token),
            other => Err(unexpected("token rotate", &other)),
        }
    }

    pub async fn node_list(
        &mut self,
        consistency: ReadConsistency,
    ) -> Result<Vec<NodeInfo>, ClientError> {
        match self.call(Request::NodeList { consistency }).await? {
            Response::NodeList(nodes) => Ok(nodes),
            other => Err(unexpected("node ls", &other)),
        }
    }
}

fn unexpected(request: &'static str, got: &Response) -> ClientError {
    let got = match got {
        Response::Status(_) => "status",
        Response::Init(_) => "init",
        Response::KvPut(_) => "kv put",
        Response::KvGet(_) => "kv get",
        Response::KvList(_) => "kv ls",
        Response::KvDelete(_) => "kv rm",
        Response::Token(_) => "token",
        Response::NodeList(_) => "node ls",
        Response::Join(_) => "join",
        Response::Done(_) => "done",
        Response::SnapshotSaved(_) => "snapshot saved",
        Response::Node(_) => "node",
    };
    ClientError::UnexpectedReply { request, got }
}
