//! The hello: the first frame each way on every connection.
//!
//! The client (the side that dialled) sends its [`Hello`] first; the server answers with its
//! own. A server that cannot accept the client — another protocol, another version, a first
//! frame that is no hello at all — answers with a hello that carries a [`Refusal`] and closes
//! the connection, so the client can say exactly why instead of reporting a hang-up.
//!
//! The same type serves every protocol; what differs is the [`ProtocolId`] each side expects
//! and what the ids mean (a node id on the node-to-node API, a Raft id on Raft links, the
//! agent's node id to a control client).

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::frame::{self, FrameError, FramedStream};

/// A protocol's name and version, as hellos carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolId {
    pub name: &'static str,
    /// Bumped on any change an older peer cannot ignore.
    pub version: u32,
}

impl std::fmt::Display for ProtocolId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
    }
}

/// The first frame each way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: String,
    pub version: u32,
    /// Who is speaking: a node id, or a Raft id on Raft links; 0 from a command-line client.
    #[serde(default)]
    pub node_id: u64,
    /// The speaker's agent version, for operators (informational).
    #[serde(default)]
    pub agent_version: String,
    /// Set only on a server's answer: why it will not serve this connection.
    #[serde(default)]
    pub refused: Option<Refusal>,
}

impl Hello {
    /// The hello `local` sends for `protocol`.
    pub fn new(protocol: ProtocolId, local: &LocalHello) -> Hello {
        Hello {
            protocol: protocol.name.to_string(),
            version: protocol.version,
            node_id: local.node_id,
            agent_version: local.agent_version.clone(),
            refused: None,
        }
    }

    /// Whether this hello speaks `protocol`.
    pub fn speaks(&self, protocol: ProtocolId) -> bool {
        self.protocol == protocol.name && self.version == protocol.version
    }
}

/// What this side says about itself in its hello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalHello {
    pub node_id: u64,
    pub agent_version: String,
}

/// Why a server refused a connection in its hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub reason: RefusalReason,
    pub message: String,
}

/// The kinds of refusal, for code to act on; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The client speaks another protocol or version.
    ProtocolMismatch,
    /// The first frame was not a hello.
    NotAHello,
    /// The first frame was over the size limit.
    FrameTooLarge,
}

/// Why a hello exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the connection during the hello")]
    Closed,
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// The server refused us; it says why.
    #[error("the peer refused the connection: {0}")]
    Refused(Refusal),
    /// The peer answered, but in another protocol or version.
    #[error("the peer speaks {protocol} v{version}, not {expected}")]
    Mismatch {
        expected: ProtocolId,
        protocol: String,
        version: u32,
    },
    /// We refused the client (it was told why).
    #[error("refused the client: {0}")]
    RefusedPeer(Refusal),
}

/// The client's side: sends our hello and reads the server's, which must speak `protocol` and
/// not refuse us. Returns the server's hello.
pub async fn exchange_as_client<S>(
    framed: &mut FramedStream<S>,
    protocol: ProtocolId,
    local: &LocalHello,
) -> Result<Hello, HelloError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    framed
        .send(frame::encode(&Hello::new(protocol, local))?)
        .await?;
    let body = framed.next().await.ok_or(HelloError::Closed)??;
    let reply: Hello = frame::decode(&body)?;
    if let Some(refusal) = reply.refused {
        return Err(HelloError::Refused(refusal));
    }
    if !reply.speaks(protocol) {
        return Err(HelloError::Mismatch {
            expected: protocol,
            protocol: reply.protocol,
            version: reply.version,
        });
    }
    Ok(reply)
}

/// The server's side: reads the client's hello and answers with ours, or with a refusal (and
/// then the caller closes the connection). Returns the client's hello.
pub async fn exchange_as_server<S>(
    framed: &mut FramedStream<S>,
    protocol: ProtocolId,
    local: &LocalHello,
) -> Result<Hello, HelloError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = framed.next().await.ok_or(HelloError::Closed)?;
    let refusal = match &first {
        Ok(body) => match frame::decode::<Hello>(body) {
            Ok(hello) if hello.speaks(protocol) => None,
            Ok(hello) => Some(Refusal {
                reason: RefusalReason::ProtocolMismatch,
                message: format!(
                    "this node speaks {protocol}, the peer {} v{}; run the same Symphony version on both sides",
                    hello.protocol, hello.version
                ),
            }),
            Err(_) => Some(Refusal {
                reason: RefusalReason::NotAHello,
                message: format!("the first frame was not a {} hello", protocol.name),
            }),
        },
        Err(error) if frame::is_frame_too_large(error) => Some(Refusal {
            reason: RefusalReason::FrameTooLarge,
            message: format!(
                "the first frame was larger than {} bytes; the connection is closed",
                frame::MAX_FRAME_LEN
            ),
        }),
        Err(_) => None,
    };
    let body = match first {
        Ok(body) => body,
        Err(error) if refusal.is_none() => return Err(HelloError::Io(error)),
        Err(_) => Default::default(),
    };
    let mut reply = Hello::new(protocol, local);
    reply.refused.clone_from(&refusal);
    framed.send(frame::encode(&reply)?).await?;
    if let Some(refusal) = refusal {
        return Err(HelloError::RefusedPeer(refusal));
    }
    Ok(frame::decode(&body)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::frame::{MAX_FRAME_LEN, framed};

    const PROTOCOL: ProtocolId = ProtocolId {
        name: "symphony-test",
        version: 3,
    };

    fn local(node_id: u64) -> LocalHello {
        LocalHello {
            node_id,
            agent_version: "0.1.0".into(),
        }
    }

    #[tokio::test]
    async fn matching_hellos_tell_each_side_who_the_other_is() {
        let (client, server) = tokio::io::duplex(4096);
        let mut client = framed(client, MAX_FRAME_LEN);
        let mut server = framed(server, MAX_FRAME_LEN);
        let served =
            tokio::spawn(async move { exchange_as_server(&mut server, PROTOCOL, &local(7)).await });
        let theirs = exchange_as_client(&mut client, PROTOCOL, &local(5))
            .await
            .unwrap();
        assert_eq!(theirs.node_id, 7);
        assert_eq!(served.await.unwrap().unwrap().node_id, 5);
    }

    #[tokio::test]
    async fn another_version_is_refused_with_a_reason() {
        let (client, server) = tokio::io::duplex(4096);
        let mut client = framed(client, MAX_FRAME_LEN);
        let mut server = framed(server, MAX_FRAME_LEN);
        let served =
            tokio::spawn(async move { exchange_as_server(&mut server, PROTOCOL, &local(7)).await });
        let newer = ProtocolId {
            name: PROTOCOL.name,
            version: 4,
        };
        match exchange_as_client(&mut client, newer, &local(5)).await {
            Err(HelloError::Refused(refusal)) => {
                assert_eq!(refusal.reason, RefusalReason::ProtocolMismatch);
                assert!(refusal.message.contains("v3"), "{refusal}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(matches!(
            served.await.unwrap(),
            Err(HelloError::RefusedPeer(_))
        ));
    }

    #[tokio::test]
    async fn garbage_instead_of_a_hello_is_refused() {
        let (client, server) = tokio::io::duplex(4096);
        let mut client = framed(client, MAX_FRAME_LEN);
        let mut server = framed(server, MAX_FRAME_LEN);
        let served =
            tokio::spawn(async move { exchange_as_server(&mut server, PROTOCOL, &local(7)).await });
        client
            .send(bytes::Bytes::from_static(b"\xc1garbage"))
            .await
            .unwrap();
        let reply: Hello = frame::decode(&client.next().await.unwrap().unwrap()).unwrap();
        assert_eq!(reply.refused.unwrap().reason, RefusalReason::NotAHello);
        assert!(served.await.unwrap().is_err());
    }
}
