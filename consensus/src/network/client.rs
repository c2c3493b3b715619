//! The outgoing side: the [`RaftNetworkFactory`] openraft calls out with, and the [`PeerClient`]
//! it makes for each peer and purpose (replication, heartbeats, snapshots, votes).
//!
//! A client keeps one long-lived connection, opened on first use and dropped on any error or
//! cancelled call; the next call reconnects. Every call runs under a deadline: openraft's
//! `soft_ttl` for unary RPCs, a per-reply deadline for pipelined appends, a per-chunk deadline
//! for snapshots. A peer that cannot be reached is reported as `Unreachable`, and openraft then
//! waits [`peer_backoff`]'s growing delays before retrying it.

use std::future::Future;
use std::time::Duration;

use futures_util::Stream;
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{RPCError, ReplicationClosed, StreamingError};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{RaftNetworkFactory, RaftNetworkV2};
use symphony_wire::{DialError, Dialer, LocalHello, Transport};

use super::append_frames::encode_append;
use super::backoff::peer_backoff;
use super::connection::{CONNECT_TIMEOUT, Connection, Dial};
use super::error::CallError;
use super::pipeline::Pipeline;
use super::rpc::{PeerIdentity, RAFT_PROTOCOL, RaftReply, RaftRequest};
use super::snapshot_sender::{ChunkPlan, send_snapshot};
use crate::types::{ManagerNode, Snapshot, SnapshotData, TypeConfig, Vote};

/// The least time a unary call is given. openraft derives its timeouts from the heartbeat
/// interval, which tests and small clusters set to tens of milliseconds: less than one fsync on
/// a loaded disk.
const MIN_CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// Creates a [`PeerClient`] for each peer openraft talks to.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    dialer: Dialer,
}

impl NetworkFactory {
    /// Dials as Raft node `local_id` over `transport`.
    pub fn new(local_id: u64, transport: Transport) -> NetworkFactory {
        NetworkFactory {
            dialer: raft_dialer(local_id, transport),
        }
    }
}

/// How Raft node `local_id` dials its peers.
fn raft_dialer(local_id: u64, transport: Transport) -> Dialer {
    Dialer {
        protocol: RAFT_PROTOCOL,
        transport,
        local: LocalHello {
            node_id: local_id,
            agent_version: String::new(),
        },
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &ManagerNode) -> PeerClient {
        PeerClient::new(self.dialer.clone(), Some(target), &node.raft_addr)
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
pub async fn identify(
    local_id: u64,
    transport: Transport,
    addr: &str,
) -> Result<PeerIdentity, CallError> {
    let dialer = raft_dialer(local_id, transport);
    // A fresh peer starts its Raft node only when the first connection arrives, and answers
    // the hello after that, which can take longer than a connect may: a peer that accepted but
    // did not answer in time is asked again, a little longer.
    let deadline = tokio::time::Instant::now() + IDENTIFY_PATIENCE;
    loop {
        let mut peer = PeerClient::new(dialer.clone(), None, addr);
        match peer.call(&RaftRequest::Identify, CONNECT_TIMEOUT * 2).await {
            Ok(RaftReply::Identity(identity)) => return Ok(identity),
            Ok(other) => {
                return Err(CallError::UnexpectedReply(format!("{other:?} to identify")));
            }
            Err(CallError::Dial(DialError::Timeout { .. }) | CallError::Timeout(_))
                if tokio::time::Instant::now() < deadline => {}
            Err(error) => return Err(error),
        }
    }
}

/// How long [`identify`] keeps asking a peer that accepts but is slow to answer.
const IDENTIFY_PATIENCE: Duration = Duration::from_secs(10);

/// A connection to one peer, opened on first use and dropped on any error.
pub struct PeerClient {
    dialer: Dialer,
    /// The Raft id the peer must have; `None` when we are asking who it is.
    target: Option<u64>,
    addr: String,
    /// The idle connection. A call takes it out while it runs (see [`Connection`]).
    connection: Option<Connection>,
}

impl PeerClient {
    fn new(dialer: Dialer, target: Option<u64>, addr: &str) -> PeerClient {
        PeerClient {
            dialer,
            target,
            addr: strip_scheme(addr).to_string(),
            connection: None,
        }
    }

    fn dial(&self) -> Dial<'_> {
        Dial {
            addr: &self.addr,
            dialer: &self.dialer,
            target: self.target,
        }
    }

    /// The idle connection, or a new one opened within `timeout`.
    async fn take_connection(&mut self, timeout: Duration) -> Result<Connection, CallError> {
        match self.connection.take() {
            Some(connection) => Ok(connection),
            None => self.dial().open(timeout).await,
        }
    }

    /// Sends `request` and waits for its reply, all within `ttl`.
    async fn call(&mut self, request: &RaftRequest, ttl: Duration) -> Result<RaftReply, CallError> {
        let attempt = async {
            let mut connection = self.take_connection(ttl).await?;
            let reply = connection.call(request, ttl).await?;
            Ok::<_, CallError>((connection, reply))
        };
        let (connection, reply) = tokio::time::timeout(ttl, attempt)
            .await
            .map_err(|_| CallError::Timeout(ttl))??;
        // Only a call that read its reply leaves the connection reusable.
        self.connection = Some(connection);
        Ok(reply)
    }
}

/// The deadline of a unary call under `option`.
fn call_timeout(option: &RPCOption) -> Duration {
    option.soft_ttl().max(MIN_CALL_TIMEOUT)
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    /// One AppendEntries. A request too large for one frame is cut to the part that fits, and
    /// reported as a partial success, which openraft follows up with the rest.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = call_timeout(&option);
        let result = async {
            let mut frames = encode_append(&rpc)?;
            let split = frames.len() > 1;
            let first = frames.swap_remove(0);
            let attempt = async {
                let mut connection = self.take_connection(ttl).await?;
                connection.send_encoded(first.body).await?;
                let reply = connection.recv().await?;
                Ok::<_, CallError>((connection, reply))
            };
            let (connection, reply) = tokio::time::timeout(ttl, attempt)
                .await
                .map_err(|_| CallError::Timeout(ttl))??;
            self.connection = Some(connection);
            match reply {
                RaftReply::Append(AppendEntriesResponse::Success) if split => {
                    Ok(AppendEntriesResponse::PartialSuccess(first.last))
                }
                RaftReply::Append(response) => Ok(response),
                other => Err(CallError::UnexpectedReply(format!(
                    "{other:?} to an append"
                ))),
            }
        }
        .await;
        result.map_err(CallError::into_rpc_error)
    }

    /// Pipelined AppendEntries on this client's connection (see [`Pipeline`]).
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        Box::pin(async move {
            let dial = Dial {
                addr: &self.addr,
                dialer: &self.dialer,
                target: self.target,
            };
            let pipeline = Pipeline::new(&mut self.connection, dial, input, call_timeout(&option));
            let stream: BoxStream<'s, _> = Box::pin(pipeline.into_stream());
            Ok(stream)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(&RaftRequest::Vote(rpc), call_timeout(&option))
            .await
        {
            Ok(RaftReply::Vote(reply)) => Ok(reply),
            Ok(other) => {
                Err(CallError::UnexpectedReply(format!("{other:?} to a vote")).into_rpc_error())
            }
            Err(error) => Err(error.into_rpc_error()),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(&RaftRequest::PreVote(rpc), call_timeout(&option))
            .await
        {
            Ok(RaftReply::Vote(reply)) => Ok(reply),
            Ok(other) => {
                Err(CallError::UnexpectedReply(format!("{other:?} to a pre-vote")).into_rpc_error())
            }
            Err(error) => Err(error.into_rpc_error()),
        }
    }

    /// Streams the snapshot in acknowledged chunks (see
    /// [`snapshot_sender`](super::snapshot_sender)), giving up as soon as `cancel` fires.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let plan = ChunkPlan::new(option.snapshot_chunk_size(), option.soft_ttl());
        let transfer = async {
            let mut connection = self.take_connection(plan.chunk_timeout).await?;
            let response = send_snapshot(&mut connection, vote, snapshot, plan).await?;
            Ok::<_, CallError>((connection, response))
        };
        // Cancelling drops the transfer, and the half-used connection with it.
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = transfer => match result {
                Ok((connection, response)) => {
                    self.connection = Some(connection);
                    Ok(response)
                }
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
            .call(&RaftRequest::TransferLeader(req), call_timeout(&option))
            .await
        {
            Ok(RaftReply::TransferLeader(reply)) => Ok(reply),
            Ok(other) => Err(
                CallError::UnexpectedReply(format!("{other:?} to a leader transfer"))
                    .into_rpc_error(),
            ),
            Err(error) => Err(error.into_rpc_error()),
        }
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(peer_backoff())
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
