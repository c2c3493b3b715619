//! A multiplexed connection to another node's remote API, and a pool of them.
//!
//! Many requests share one connection: a writer task sends frames as they are submitted, a
//! reader task hands each reply to whoever waits for its id. Forwarded writes from many control
//! clients therefore pipeline to the leader instead of queueing behind each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use symphony_ctl::frame::{self, MAX_FRAME_LEN};
use symphony_ctl::proto::{CtlError, ErrorCode};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::proto::{
    PROTOCOL, PROTOCOL_VERSION, RemoteHello, RemoteReply, RemoteRequest, RemoteRequestFrame,
    RemoteResponseFrame,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<RemoteReply, CtlError>>>>>;

/// One connection to a node's remote API.
#[derive(Clone)]
pub struct RemoteClient {
    addr: String,
    outgoing: mpsc::Sender<Bytes>,
    waiters: Waiters,
    next_id: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
}

fn unreachable(addr: &str, why: impl std::fmt::Display) -> CtlError {
    CtlError::new(
        ErrorCode::Unavailable,
        format!("cannot reach the node at {addr}: {why}"),
    )
}

impl RemoteClient {
    /// Connects to `addr` and exchanges hellos.
    pub async fn connect(addr: &str, local_node_id: u64) -> Result<RemoteClient, CtlError> {
        let attempt = async {
            let socket = TcpStream::connect(addr)
                .await
                .map_err(|error| unreachable(addr, error))?;
            let _ = socket.set_nodelay(true);
            let mut stream = frame::framed(socket, MAX_FRAME_LEN);
            let hello = RemoteHello {
                protocol: PROTOCOL.to_string(),
                version: PROTOCOL_VERSION,
                node_id: local_node_id,
                refused: None,
            };
            let bytes = frame::encode(&hello).map_err(|error| unreachable(addr, error))?;
            stream
                .send(bytes)
                .await
                .map_err(|error| unreachable(addr, error))?;
            let reply = stream
                .next()
                .await
                .ok_or_else(|| unreachable(addr, "it closed the connection"))?
                .map_err(|error| unreachable(addr, error))?;
            let reply: RemoteHello =
                frame::decode(&reply).map_err(|error| unreachable(addr, error))?;
            if let Some(refused) = reply.refused {
                return Err(refused);
            }
            Ok(stream)
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| unreachable(addr, "connecting timed out"))??;

        let (mut sink, mut replies) = stream.split();
        let (outgoing, to_send) = mpsc::channel::<Bytes>(1024);
        let waiters: Waiters = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let client = RemoteClient {
            addr: addr.to_string(),
            outgoing,
            waiters: waiters.clone(),
            next_id: Arc::new(AtomicU64::new(1)),
            closed: closed.clone(),
        };

        let writer_closed = closed.clone();
        tokio::spawn(async move {
            let _ = frame::pump(to_send, &mut sink).await;
            writer_closed.store(true, Ordering::SeqCst);
        });
        let reader_addr = addr.to_string();
        tokio::spawn(async move {
            while let Some(Ok(body)) = replies.next().await {
                let Ok(response) = frame::decode::<RemoteResponseFrame>(&body) else {
                    break;
                };
                let waiter = lock(&waiters).remove(&response.id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(response.result);
                }
            }
            closed.store(true, Ordering::SeqCst);
            // Whoever still waits learns the connection is gone instead of hanging.
            for (_, waiter) in lock(&waiters).drain() {
                let _ = waiter.send(Err(unreachable(&reader_addr, "the connection closed")));
            }
        });
        Ok(client)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) || self.outgoing.is_closed()
    }

    /// Sends `request` and waits for its reply, at most `timeout`.
    pub async fn call(
        &self,
        request: RemoteRequest,
        timeout: Duration,
    ) -> Result<RemoteReply, CtlError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, wait) = oneshot::channel();
        let bytes = match frame::encode(&RemoteRequestFrame { id, request }) {
            Ok(bytes) if bytes.len() <= MAX_FRAME_LEN => bytes,
            Ok(bytes) => {
                return Err(CtlError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "the request is {} bytes, over the {MAX_FRAME_LEN}-byte frame limit",
                        bytes.len()
                    ),
                ));
            }
            Err(error) => return Err(CtlError::new(ErrorCode::Internal, error.to_string())),
        };
        lock(&self.waiters).insert(id, reply);
        if self.is_closed() || self.outgoing.send(bytes).await.is_err() {
            lock(&self.waiters).remove(&id);
            return Err(unreachable(&self.addr, "the connection closed"));
        }
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(unreachable(&self.addr, "the connection closed")),
            Err(_) => {
                lock(&self.waiters).remove(&id);
                Err(CtlError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the node at {} did not answer within {timeout:?}",
                        self.addr
                    ),
                ))
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Connections to other nodes by address, opened on first use and replaced when they break.
#[derive(Default)]
pub struct RemotePool {
    local_node_id: u64,
    clients: tokio::sync::Mutex<HashMap<String, RemoteClient>>,
}

impl RemotePool {
    pub fn new(local_node_id: u64) -> RemotePool {
        RemotePool {
            local_node_id,
            clients: tokio::sync::Mutex::default(),
        }
    }

    /// A live connection to `addr`.
    pub async fn client(&self, addr: &str) -> Result<RemoteClient, CtlError> {
        if let Some(client) = self.clients.lock().await.get(addr)
            && !client.is_closed()
        {
            return Ok(client.clone());
        }
        // Connect without holding the pool: a node that does not answer (paused, cut off)
        // must not hold up calls to every other node for the connect timeout.
        let client = RemoteClient::connect(addr, self.local_node_id).await?;
        let mut clients = self.clients.lock().await;
        match clients.get(addr) {
            // Another call connected meanwhile: keep one connection per node.
            Some(existing) if !existing.is_closed() => Ok(existing.clone()),
            _ => {
                clients.insert(addr.to_string(), client.clone());
                Ok(client)
            }
        }
    }

    /// Sends one request to `addr` over the pooled connection.
    pub async fn call(
        &self,
        addr: &str,
        request: RemoteRequest,
        timeout: Duration,
    ) -> Result<RemoteReply, CtlError> {
        self.client(addr).await?.call(request, timeout).await
    }
}
