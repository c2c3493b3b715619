//! One established Raft connection: TCP, the hello exchange, and framed requests and replies.
//!
//! A [`Connection`] is only ever owned by the call that uses it. A call takes it out of its
//! [`PeerClient`](super::client::PeerClient) and puts it back only after reading every reply it
//! asked for, so a call cut short (its deadline, openraft dropping the future, an error) drops
//! the connection with it and a late reply can never be taken for the answer to a later request.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use symphony_ctl::frame::{self, FramedStream, MAX_FRAME_LEN};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::error::CallError;
use super::rpc::{PROTOCOL, PROTOCOL_VERSION, RaftHello, RaftReply};

/// How long establishing a connection (TCP and hello) may take at most.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and whom to dial.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dial<'a> {
    pub addr: &'a str,
    pub local_id: u64,
    /// The Raft id the peer must have; `None` when we are asking who it is.
    pub target: Option<u64>,
}

impl Dial<'_> {
    pub(crate) async fn open(&self, timeout: Duration) -> Result<Connection, CallError> {
        Connection::open(self.addr, self.local_id, self.target, timeout).await
    }
}

/// A framed connection to a peer that has answered our hello.
pub(crate) struct Connection<S = TcpStream> {
    stream: FramedStream<S>,
}

impl Connection<TcpStream> {
    /// Connects to `addr` and exchanges hellos within `timeout` (capped at [`CONNECT_TIMEOUT`]).
    /// With `expected` set, the peer must be that Raft node.
    pub(crate) async fn open(
        addr: &str,
        local_id: u64,
        expected: Option<u64>,
        timeout: Duration,
    ) -> Result<Connection, CallError> {
        let timeout = timeout.min(CONNECT_TIMEOUT);
        let attempt = async {
            let socket = TcpStream::connect(addr)
                .await
                .map_err(|source| CallError::Connect {
                    addr: addr.to_string(),
                    source,
                })?;
            socket.set_nodelay(true)?;
            // Whatever answers here without a proper hello will not start to soon: report it as
            // unreachable, so openraft backs off instead of retrying at once.
            Connection::handshake(socket, addr, local_id, expected)
                .await
                .map_err(|error| match error {
                    error @ (CallError::Protocol { .. } | CallError::WrongPeer { .. }) => error,
                    other => CallError::Handshake {
                        addr: addr.to_string(),
                        reason: other.to_string(),
                    },
                })
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| CallError::ConnectTimeout {
                addr: addr.to_string(),
                timeout,
            })?
    }
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// The hello exchange over an already connected byte stream.
    pub(crate) async fn handshake(
        socket: S,
        addr: &str,
        local_id: u64,
        expected: Option<u64>,
    ) -> Result<Connection<S>, CallError> {
        let mut stream = frame::framed(socket, MAX_FRAME_LEN);
        let hello = RaftHello {
            protocol: PROTOCOL.to_string(),
            version: PROTOCOL_VERSION,
            node_id: local_id,
        };
        stream.send(frame::encode(&hello)?).await?;
        let reply: RaftHello = frame::decode(&stream.next().await.ok_or(CallError::Closed)??)?;
        if reply.protocol != PROTOCOL || reply.version != PROTOCOL_VERSION {
            return Err(CallError::Protocol {
                addr: addr.to_string(),
                protocol: reply.protocol,
                version: reply.version,
            });
        }
        if let Some(expected) = expected
            && reply.node_id != expected
        {
            return Err(CallError::WrongPeer {
                addr: addr.to_string(),
                expected,
                got: reply.node_id,
            });
        }
        Ok(Connection { stream })
    }

    /// Encodes and sends one request.
    pub(crate) async fn send<T: Serialize + ?Sized>(
        &mut self,
        request: &T,
    ) -> Result<(), CallError> {
        self.send_encoded(frame::encode(request)?).await
    }

    /// Sends one already encoded request.
    pub(crate) async fn send_encoded(&mut self, body: Bytes) -> Result<(), CallError> {
        self.stream.send(body).await?;
        Ok(())
    }

    /// Reads the next reply. Cancel-safe: dropping the future loses no bytes, which lets a
    /// pipelined sender wait for a reply and for its next request at the same time.
    pub(crate) async fn recv(&mut self) -> Result<RaftReply, CallError> {
        let body = self.stream.next().await.ok_or(CallError::Closed)??;
        match frame::decode(&body)? {
            RaftReply::Failed(message) => Err(CallError::Remote(message)),
            reply => Ok(reply),
        }
    }

    /// Sends `request` and reads its reply within `ttl`.
    pub(crate) async fn call<T: Serialize + ?Sized>(
        &mut self,
        request: &T,
        ttl: Duration,
    ) -> Result<RaftReply, CallError> {
        tokio::time::timeout(ttl, async {
            self.send(request).await?;
            self.recv().await
        })
        .await
        .map_err(|_| CallError::Timeout(ttl))?
    }
}
