//! The outgoing side: one connection per peer and purpose, reconnected on failure, every call
//! under the deadline openraft gives.

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{RaftNetworkFactory, RaftNetworkV2};
use symphony_ctl::frame::{self, FramedStream, MAX_FRAME_LEN};
use tokio::net::TcpStream;

use super::rpc::{PROTOCOL, PROTOCOL_VERSION, PeerIdentity, RaftHello, RaftReply, RaftRequest};
use crate::types::{ManagerNode, Snapshot, SnapshotData, TypeConfig, Vote};

/// How long establishing a connection (TCP and hello) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call did not get a reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out")]
    ConnectTimeout { addr: String },
    #[error("{addr} is Raft node {got}, not {expected}")]
    WrongPeer {
        addr: String,
        expected: u64,
        got: u64,
    },
    #[error("{addr} speaks {protocol} v{version}, not {PROTOCOL} v{PROTOCOL_VERSION}")]
    Protocol {
        addr: String,
        protocol: String,
        version: u32,
    },
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] frame::FrameError),
    #[error("the peer closed the connection")]
    Closed,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("the peer failed the request: {0}")]
    Remote(String),
    #[error("the peer sent an unexpected reply")]
    UnexpectedReply,
}

impl CallError {
    /// Whether the peer is unreachable (back off) rather than flaky (retry at once).
    fn is_unreachable(&self) -> bool {
        matches!(
            self,
            CallError::Connect { .. }
                | CallError::ConnectTimeout { .. }
                | CallError::WrongPeer { .. }
                | CallError::Protocol { .. }
                | CallError::Remote(_)
        )
    }

    fn into_rpc_error(self) -> RPCError<TypeConfig> {
        if self.is_unreachable() {
            RPCError::Unreachable(Unreachable::new(&self))
        } else {
            RPCError::Network(NetworkError::new(&self))
        }
    }

    fn into_streaming_error(self) -> StreamingError<TypeConfig> {
        if self.is_unreachable() {
            StreamingError::Unreachable(Unreachable::new(&self))
        } else {
            StreamingError::Network(NetworkError::new(&self))
        }
    }
}

/// Creates a [`PeerClient`] for each peer openraft talks to.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    local_id: u64,
}

impl NetworkFactory {
    pub fn new(local_id: u64) -> NetworkFactory {
        NetworkFactory { local_id }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &ManagerNode) -> PeerClient {
        PeerClient {
            local_id: self.local_id,
            target: Some(target),
            addr: strip_scheme(&node.raft_addr).to_string(),
            connection: None,
        }
    }
}

/// Accepts `http://host:port` (what `init --peers` and the seed write) as well as `host:port`.
pub fn strip_scheme(addr: &str) -> &str {
    addr.strip_prefix("http://")
        .or_else(|| addr.strip_prefix("tcp://"))
        .unwrap_or(addr)
        .trim_end_matches('/')
}

/// Asks the manager whose Raft RPCs listen at `addr` who it is (`init --peers` learns each
/// peer's id this way, so operators never type ids).
pub async fn identify(local_id: u64, addr: &str) -> Result<PeerIdentity, CallError> {
    let mut peer = PeerClient {
        local_id,
        target: None,
        addr: strip_scheme(addr).to_string(),
        connection: None,
    };
    match peer
        .call(&RaftRequest::Identify, CONNECT_TIMEOUT * 2)
        .await?
    {
        RaftReply::Identity(identity) => Ok(identity),
        _ => Err(CallError::UnexpectedReply),
    }
}

/// A connection to one peer, opened on first use and dropped on any error.
pub struct PeerClient {
    local_id: u64,
    /// The Raft id the peer must have; `None` when we are asking who it is.
    target: Option<u64>,
    addr: String,
    connection: Option<FramedStream<TcpStream>>,
}

impl PeerClient {
    async fn connect(&self) -> Result<FramedStream<TcpStream>, CallError> {
        let addr = self.addr.clone();
        let attempt = async {
            let socket = TcpStream::connect(&addr)
                .await
                .map_err(|source| CallError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
            socket.set_nodelay(true)?;
            let mut stream = frame::framed(socket, MAX_FRAME_LEN);
            let hello = RaftHello {
                protocol: PROTOCOL.to_string(),
                version: PROTOCOL_VERSION,
                node_id: self.local_id,
            };
            stream.send(frame::encode(&hello)?).await?;
            let reply: RaftHello = frame::decode(&stream.next().await.ok_or(CallError::Closed)??)?;
            if reply.protocol != PROTOCOL || reply.version != PROTOCOL_VERSION {
                return Err(CallError::Protocol {
                    addr: addr.clone(),
                    protocol: reply.protocol,
                    version: reply.version,
                });
            }
            if let Some(expected) = self.target
                && reply.node_id != expected
            {
                return Err(CallError::WrongPeer {
                    addr: addr.clone(),
                    expected,
                    got: reply.node_id,
                });
            }
            Ok(stream)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| CallError::ConnectTimeout {
                addr: self.addr.clone(),
            })?
    }

    /// Sends `request` and waits for the reply within `ttl`. Any failure drops the connection,
    /// so a reply that arrives late can never be taken for the answer to a later request.
    async fn call(&mut self, request: &RaftRequest, ttl: Duration) -> Result<RaftReply, CallError> {
        let result = tokio::time::timeout(ttl, self.call_inner(request))
            .await
            .unwrap_or(Err(CallError::Timeout(ttl)));
        if result.is_err() {
            self.connection = None;
        }
        match result? {
            RaftReply::Failed(message) => Err(CallError::Remote(message)),
            reply => Ok(reply),
        }
    }

    async fn call_inner(&mut self, request: &RaftRequest) -> Result<RaftReply, CallError> {
        if self.connection.is_none() {
            self.connection = Some(self.connect().await?);
        }
        let Some(stream) = self.connection.as_mut() else {
            return Err(CallError::Closed);
        };
        stream.send(frame::encode(request)?).await?;
        let body = stream.next().await.ok_or(CallError::Closed)??;
        Ok(frame::decode(&body)?)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(&RaftRequest::Append(rpc), option.hard_ttl())
            .await
        {
            Ok(RaftReply::Append(reply)) => Ok(reply),
            Ok(_) => Err(CallError::UnexpectedReply.into_rpc_error()),
            Err(error) => Err(error.into_rpc_error()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(&RaftRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(RaftReply::Vote(reply)) => Ok(reply),
            Ok(_) => Err(CallError::UnexpectedReply.into_rpc_error()),
            Err(error) => Err(error.into_rpc_error()),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(&RaftRequest::PreVote(rpc), option.hard_ttl())
            .await
        {
            Ok(RaftReply::Vote(reply)) => Ok(reply),
            Ok(_) => Err(CallError::UnexpectedReply.into_rpc_error()),
            Err(error) => Err(error.into_rpc_error()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let request = RaftRequest::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        // A snapshot is bigger than an append: give it a generous deadline, scaled by size.
        let bytes = match &request {
            RaftRequest::Snapshot { data, .. } => data.len() as u64,
            _ => 0,
        };
        let ttl =
            option.hard_ttl().max(Duration::from_secs(10)) + Duration::from_millis(bytes / 1024);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = self.call(&request, ttl) => match result {
                Ok(RaftReply::Snapshot(reply)) => Ok(reply),
                Ok(_) => Err(CallError::UnexpectedReply.into_streaming_error()),
                Err(error) => Err(error.into_streaming_error()),
            },
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(&RaftRequest::TransferLeader(req), option.hard_ttl())
            .await
        {
            Ok(RaftReply::TransferLeader(reply)) => Ok(reply),
            Ok(_) => Err(CallError::UnexpectedReply.into_rpc_error()),
            Err(error) => Err(error.into_rpc_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::strip_scheme;

    #[test]
    fn peer_addresses_accept_urls() {
        assert_eq!(strip_scheme("http://127.0.0.1:15761"), "127.0.0.1:15761");
        assert_eq!(strip_scheme("127.0.0.1:15761"), "127.0.0.1:15761");
        assert_eq!(strip_scheme("http://host:1/"), "host:1");
    }
}
