#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};

use super::*;
use crate::dial::Dialer;
use crate::hello::{LocalHello, ProtocolId};
use crate::listen::Connection;
use crate::mux::{CallError, Mux};
use crate::transport::PeerAddr;

struct Toy;

#[derive(Debug, Clone, Serialize, Deserialize)]
enum ToyRequest {
    Echo { text: String },
    Count { upto: u32 },
    Forever,
    Big { bytes: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ToyError {
    kind: String,
    message: String,
}

impl From<Fault> for ToyError {
    fn from(fault: Fault) -> Self {
        ToyError {
            kind: format!("{:?}", fault.kind),
            message: fault.message,
        }
    }
}

impl Protocol for Toy {
    const ID: ProtocolId = ProtocolId {
        name: "toy",
        version: 1,
    };
    type Request = ToyRequest;
    type Response = String;
    type Error = ToyError;
}

async fn handle(_caller: Arc<Caller>, request: ToyRequest) -> Reply<Toy> {
    match request {
        ToyRequest::Echo { text } => Reply::One(Ok(text)),
        ToyRequest::Count { upto } => {
            let (items, receiver) = mpsc::channel(4);
            tokio::spawn(async move {
                for n in 0..upto {
                    if items.send(Ok(n.to_string())).await.is_err() {
                        return;
                    }
                }
            });
            Reply::Stream(receiver)
        }
        ToyRequest::Forever => {
            let (items, receiver) = mpsc::channel(4);
            tokio::spawn(async move {
                while items.send(Ok("tick".to_string())).await.is_ok() {}
                // The receiver is gone: the server stopped the stream.
                let _ = STOPPED.send(true);
            });
            Reply::Stream(receiver)
        }
        ToyRequest::Big { bytes } => Reply::One(Ok("x".repeat(bytes))),
    }
}

static STOPPED: std::sync::LazyLock<tokio::sync::watch::Sender<bool>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(false));

/// Serves the toy protocol on the server end of an in-memory pipe.
fn serve_pipe(server: tokio::io::DuplexStream) {
    tokio::spawn(async move {
        let mut framed = crate::frame::framed(Box::new(server) as crate::BoxStream, MAX_FRAME_LEN);
        let hello = crate::hello::exchange_as_server(&mut framed, Toy::ID, &LocalHello::default())
            .await
            .unwrap();
        let connection = Connection {
            framed,
            peer: PeerInfo {
                addr: PeerAddr::Local,
                identity: None,
            },
            hello,
        };
        serve::<Toy, _, _>(connection, 8, handle).await;
    });
}

/// A multiplexed client of a served in-memory pipe.
async fn connected() -> Mux<Toy> {
    let (client, server) = tokio::io::duplex(1 << 20);
    serve_pipe(server);
    let dialer = Dialer::new(Toy::ID, LocalHello::default());
    let connection = dialer
        .handshake(client, "pipe", PeerAddr::Local, None)
        .await
        .unwrap();
    Mux::start(connection, "pipe")
}

#[tokio::test]
async fn calls_and_streams_share_a_connection() {
    let mux = connected().await;
    let hi = ToyRequest::Echo { text: "hi".into() };
    let echo = mux.call(&hi, None);
    let mut count = mux.stream(&ToyRequest::Count { upto: 5 }).await.unwrap();
    assert_eq!(echo.await.unwrap(), "hi");
    let mut seen = Vec::new();
    while let Some(item) = count.next().await {
        seen.push(item.unwrap());
    }
    assert_eq!(seen, ["0", "1", "2", "3", "4"]);
    assert!(count.next().await.is_none(), "a stream stays ended");
}

#[tokio::test]
async fn a_dropped_stream_is_stopped_on_the_server() {
    let mux = connected().await;
    let mut forever = mux.stream(&ToyRequest::Forever).await.unwrap();
    assert_eq!(forever.next().await.unwrap().unwrap(), "tick");
    drop(forever);
    let mut stopped = STOPPED.subscribe();
    tokio::time::timeout(Duration::from_secs(5), stopped.wait_for(|stopped| *stopped))
        .await
        .expect("the server kept producing a cancelled stream")
        .unwrap();
    // The connection still serves.
    assert_eq!(
        mux.call(&ToyRequest::Echo { text: "on".into() }, None)
            .await
            .unwrap(),
        "on"
    );
}

#[tokio::test]
async fn an_answer_too_large_for_a_frame_becomes_an_error() {
    let mux = connected().await;
    let error = mux
        .call(
            &ToyRequest::Big {
                bytes: MAX_FRAME_LEN + 10,
            },
            None,
        )
        .await
        .unwrap_err();
    match error {
        CallError::Remote(error) => assert_eq!(error.kind, "ReplyTooLarge"),
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_and_malformed_requests_get_typed_errors_under_their_id() {
    let (client, server) = tokio::io::duplex(1 << 16);
    serve_pipe(server);
    let mut raw = crate::frame::framed(client, MAX_FRAME_LEN);
    crate::hello::exchange_as_client(&mut raw, Toy::ID, &LocalHello::default())
        .await
        .unwrap();

    #[derive(Serialize)]
    enum Newer {
        Teleport { to: String },
    }
    #[derive(Serialize)]
    struct WrongType {
        id: u64,
        request: bool,
    }
    let frames = [
        (
            5,
            crate::frame::encode(&RequestFrame::new(5, Newer::Teleport { to: "mars".into() }))
                .unwrap(),
            "UnknownRequest",
        ),
        (
            6,
            crate::frame::encode(&WrongType {
                id: 6,
                request: true,
            })
            .unwrap(),
            "Malformed",
        ),
        (0, Bytes::from_static(b"\xc1\xc1\xc1"), "Malformed"),
    ];
    for (id, bytes, kind) in frames {
        raw.send(bytes).await.unwrap();
        let reply: ResponseFrame<String, ToyError> =
            crate::frame::decode(&raw.next().await.unwrap().unwrap()).unwrap();
        assert_eq!(reply.id, id);
        match reply.body {
            Body::Error(error) => assert_eq!(error.kind, kind, "{}", error.message),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
