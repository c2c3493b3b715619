//! One established Raft connection (dialled through `symphony-wire`): framed requests and
//! replies, answered in order.
//!
//! A [`Connection`] is only ever owned by the call that uses it. A call takes it out of its
//! [`PeerClient`](super::client::PeerClient) and puts it back only after reading every reply it
//! asked for, so a call cut short (its deadline, openraft dropping the future, an error) drops
//! the connection with it and a late reply can never be taken for the answer to a later request.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use symphony_wire::frame::{self, FramedStream};
use symphony_wire::{BoxStream, Dialer};

use super::error::CallError;
use super::rpc::RaftReply;

/// How long establishing a connection (TCP, transport and hello) may take at most.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and whom to dial.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dial<'a> {
    pub addr: &'a str,
    pub dialer: &'a Dialer,
    /// The Raft id the peer must have; `None` when we are asking who it is.
    pub target: Option<u64>,
}

impl Dial<'_> {
    /// Connects and exchanges hellos within `timeout` (capped at [`CONNECT_TIMEOUT`]).
    pub(crate) async fn open(&self, timeout: Duration) -> Result<Connection, CallError> {
        let connection = self
            .dialer
            .tcp(self.addr, self.target, timeout.min(CONNECT_TIMEOUT))
            .await?;
        Ok(Connection {
            stream: connection.framed,
        })
    }
}

/// A framed connection to a peer that has answered our hello.
pub(crate) struct Connection {
    stream: FramedStream<BoxStream>,
}

impl Connection {
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
