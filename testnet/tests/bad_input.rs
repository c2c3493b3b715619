//! Hostile and broken clients on the control socket: whatever arrives, the agent answers with a
//! typed error or closes that one connection, and goes on serving everyone else with its state
//! intact. Every test starts its own agent, so they run in parallel.
//!
//! Needs the agent binary: `cargo build -p symphony-agent` (or set SYMPHONY_AGENT_BIN).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use symphony_ctl::frame::{self, FramedStream, MAX_FRAME_LEN};
use symphony_ctl::proto::{
    Ctl, ErrorCode, KvEntry, ReadConsistency, Request, RequestFrame, ResponseBody, ResponseFrame,
};
use symphony_testnet::harness::AgentProcess;
use symphony_testnet::splitmix::SplitMix64;
use symphony_wire::{Hello, LocalHello, Protocol, RefusalReason};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the agent may take to answer or to close a connection it gave up on.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// An initialised leader holding one known key, to check after each abuse.
struct Target {
    agent: AgentProcess,
    cluster_id: String,
    canary: KvEntry,
}

async fn target() -> Target {
    let agent = AgentProcess::start().await.unwrap();
    let client = agent.client().await.unwrap();
    let info = client.init().await.unwrap();
    agent.wait_leader(LEADER_TIMEOUT).await.unwrap();
    client
        .kv_put("canary", b"tweet".to_vec(), None)
        .await
        .unwrap();
    let canary = client
        .kv_get("canary", ReadConsistency::Linearizable)
        .await
        .unwrap()
        .unwrap();
    Target {
        agent,
        cluster_id: info.cluster_id,
        canary,
    }
}

impl Target {
    /// The agent is alive, answers a fresh client, and its state is what it was.
    async fn assert_intact(&mut self) {
        assert!(
            self.agent.is_running(),
            "the agent died; its log:\n{}",
            self.agent.log_tail()
        );
        let client = tokio::time::timeout(REPLY_TIMEOUT, self.agent.client())
            .await
            .expect("connecting took too long")
            .unwrap();
        let status = tokio::time::timeout(REPLY_TIMEOUT, client.status())
            .await
            .expect("status took too long")
            .unwrap();
        assert_eq!(status.cluster.unwrap().cluster_id, self.cluster_id);
        let canary = client
            .kv_get("canary", ReadConsistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(canary.as_ref(), Some(&self.canary));
    }

    async fn raw(&self) -> UnixStream {
        UnixStream::connect(self.agent.socket_path()).await.unwrap()
    }

    /// A framed connection that has exchanged a valid hello.
    async fn greeted(&self) -> FramedStream<UnixStream> {
        let mut stream = frame::framed(self.raw().await, MAX_FRAME_LEN);
        stream
            .send(frame::encode(&Hello::new(Ctl::ID, &LocalHello::default())).unwrap())
            .await
            .unwrap();
        let reply: Hello = frame::decode(&next_frame(&mut stream).await.unwrap()).unwrap();
        assert!(reply.refused.is_none(), "{:?}", reply.refused);
        stream
    }
}

/// The next frame, or `None` once the agent closed the connection. Panics if neither happens
/// within [`REPLY_TIMEOUT`].
async fn next_frame(stream: &mut FramedStream<UnixStream>) -> Option<Vec<u8>> {
    match tokio::time::timeout(REPLY_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(body))) => Some(body.to_vec()),
        // A reset is how a Unix socket reports a peer that closed with our bytes unread.
        Ok(Some(Err(_)) | None) => None,
        Err(_) => panic!("the agent neither answered nor closed within {REPLY_TIMEOUT:?}"),
    }
}

/// Reads until the agent closes the connection, returning the frames it sent before.
async fn frames_until_closed(stream: &mut FramedStream<UnixStream>) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Some(body) = next_frame(stream).await {
        frames.push(body);
        assert!(frames.len() < 100, "the agent keeps sending frames");
    }
    frames
}

fn length_prefixed(body: &[u8]) -> Vec<u8> {
    let mut bytes = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

fn error_of(body: &[u8]) -> (u64, ErrorCode) {
    let response: ResponseFrame = frame::decode(body).unwrap();
    match response.body {
        ResponseBody::Error(error) => (response.id, error.code),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Deterministic noise, so a failure reproduces.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    SplitMix64::new(seed).bytes(len)
}

#[tokio::test]
async fn garbage_instead_of_frames() {
    let mut target = target().await;
    let http = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    for garbage in [http, noise(4096, 1), noise(3, 2)] {
        let mut stream = target.raw().await;
        // The agent may hang up as soon as it has seen enough to know this is not a hello,
        // so the rest of the write (or the shutdown) can meet a closed socket.
        let _ = stream.write_all(&garbage).await;
        let _ = stream.shutdown().await;
        let mut framed = frame::framed(stream, MAX_FRAME_LEN);
        // Whatever the agent says, it must let go of the connection.
        frames_until_closed(&mut framed).await;
        target.assert_intact().await;
    }
}

#[tokio::test]
async fn oversized_frame_is_refused_and_the_connection_closed() {
    let mut target = target().await;
    for announced in [u32::MAX, 17 * 1024 * 1024] {
        let mut stream = target.greeted().await;
        let raw = stream.get_mut();
        raw.write_all(&announced.to_be_bytes()).await.unwrap();
        // The agent may already have answered and hung up on the prefix alone, so this write
        // can fail with a broken pipe; that is the behaviour under test, not an error.
        let _ = raw.write_all(&noise(64, 3)).await;
        let frames = frames_until_closed(&mut stream).await;
        let codes: Vec<ErrorCode> = frames.iter().map(|body| error_of(body).1).collect();
        assert_eq!(
            codes,
            [ErrorCode::FrameTooLarge],
            "a frame announcing {announced} bytes must get one frame_too_large error, then the connection closed"
        );
        target.assert_intact().await;
    }

    // Before the hello, too: the connection is closed and the agent carries on.
    let mut stream = target.raw().await;
    stream.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut framed = frame::framed(stream, MAX_FRAME_LEN);
    frames_until_closed(&mut framed).await;
    target.assert_intact().await;
}

#[tokio::test]
async fn truncated_frame_then_hang_up() {
    let mut target = target().await;
    // Before the hello.
    let mut stream = target.raw().await;
    stream.write_all(&100u32.to_be_bytes()).await.unwrap();
    stream.write_all(&noise(10, 4)).await.unwrap();
    drop(stream);
    target.assert_intact().await;

    // After the hello.
    let mut stream = target.greeted().await;
    let raw = stream.get_mut();
    raw.write_all(&100u32.to_be_bytes()).await.unwrap();
    raw.write_all(&noise(10, 5)).await.unwrap();
    drop(stream);
    target.assert_intact().await;

    // Half a frame, then the write side shut: the agent must close its side too.
    let mut stream = target.greeted().await;
    let raw = stream.get_mut();
    raw.write_all(&100u32.to_be_bytes()).await.unwrap();
    raw.write_all(&noise(10, 6)).await.unwrap();
    raw.shutdown().await.unwrap();
    frames_until_closed(&mut stream).await;
    target.assert_intact().await;
}

#[tokio::test]
async fn unknown_request_gets_unknown_request_under_its_id() {
    /// A request kind from some future protocol version.
    #[derive(Serialize)]
    enum FutureRequest {
        Teleport { to: String },
    }
    #[derive(Serialize)]
    struct FutureFrame {
        id: u64,
        request: FutureRequest,
    }

    let mut target = target().await;
    let mut stream = target.greeted().await;
    let unknown = FutureFrame {
        id: 5,
        request: FutureRequest::Teleport { to: "mars".into() },
    };
    stream.send(frame::encode(&unknown).unwrap()).await.unwrap();
    let body = next_frame(&mut stream)
        .await
        .expect("no reply to an unknown request");
    assert_eq!(error_of(&body), (5, ErrorCode::UnknownRequest));

    // The connection stays usable: a newer client may probe and fall back.
    let status = RequestFrame::new(6, Request::Status);
    stream.send(frame::encode(&status).unwrap()).await.unwrap();
    let body = next_frame(&mut stream)
        .await
        .expect("no reply to status after an unknown request");
    let response: ResponseFrame = frame::decode(&body).unwrap();
    assert_eq!(response.id, 6);
    assert!(
        matches!(response.body, ResponseBody::Reply(_)),
        "{:?}",
        response.body
    );
    target.assert_intact().await;
}

#[tokio::test]
async fn garbage_frame_after_hello_gets_bad_request() {
    #[derive(Serialize)]
    struct NoId {
        request: String,
    }

    let mut target = target().await;
    let not_a_request = frame::encode(&NoId {
        request: "Status".into(),
    })
    .unwrap()
    .to_vec();
    let string = frame::encode("just a string").unwrap().to_vec();
    for body in [
        b"\xc1\xff\x00garbage".to_vec(),
        noise(200, 7),
        not_a_request,
        string,
        Vec::new(),
    ] {
        let mut stream = target.greeted().await;
        stream
            .get_mut()
            .write_all(&length_prefixed(&body))
            .await
            .unwrap();
        let reply = next_frame(&mut stream)
            .await
            .unwrap_or_else(|| panic!("no reply to the malformed frame {body:?}"));
        let (_, code) = error_of(&reply);
        assert_eq!(
            code,
            ErrorCode::BadRequest,
            "reply to the malformed frame {body:?}"
        );
        target.assert_intact().await;
    }
}

#[tokio::test]
async fn wrong_hello_is_refused_with_protocol_mismatch() {
    let mut target = target().await;
    let hello = |protocol: &str, version| Hello {
        protocol: protocol.into(),
        version,
        ..Hello::new(Ctl::ID, &LocalHello::default())
    };
    let wrong = [
        hello("http", symphony_ctl::proto::PROTOCOL_VERSION),
        hello(symphony_ctl::proto::PROTOCOL, 999),
    ];
    for hello in wrong {
        let mut stream = frame::framed(target.raw().await, MAX_FRAME_LEN);
        stream.send(frame::encode(&hello).unwrap()).await.unwrap();
        let body = next_frame(&mut stream)
            .await
            .expect("no reply to a wrong hello");
        let reply: Hello = frame::decode(&body).unwrap();
        let error = reply
            .refused
            .clone()
            .expect("a wrong hello must be refused");
        assert_eq!(
            error.reason,
            RefusalReason::ProtocolMismatch,
            "reply to {hello:?}: {error:?}"
        );
        assert!(!error.message.is_empty());
        assert_eq!(reply.protocol, symphony_ctl::proto::PROTOCOL);
        assert_eq!(reply.version, symphony_ctl::proto::PROTOCOL_VERSION);
        // Then the agent hangs up.
        assert!(frames_until_closed(&mut stream).await.is_empty());
        target.assert_intact().await;
    }

    // A hello that is not a hello at all.
    let mut stream = target.raw().await;
    stream
        .write_all(&length_prefixed(b"\xc1garbage"))
        .await
        .unwrap();
    let mut framed = frame::framed(stream, MAX_FRAME_LEN);
    frames_until_closed(&mut framed).await;
    target.assert_intact().await;
}

#[tokio::test]
async fn many_silent_connections_do_not_lock_out_others() {
    let mut target = target().await;
    let mut silent = Vec::new();
    for _ in 0..500 {
        silent.push(target.raw().await);
    }
    // While all of them are held open, a fresh client is served.
    target.assert_intact().await;
    let client = target.agent.client().await.unwrap();
    client
        .kv_put("during", b"flood".to_vec(), None)
        .await
        .unwrap();
    drop(silent);
    target.assert_intact().await;
    let during = client
        .kv_get("during", ReadConsistency::Linearizable)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(during.value, b"flood");
}

/// A reply that would exceed the frame limit (a listing of 20 MiB) becomes an error under the
/// request's id instead of a frame the client would refuse, and the connection goes on.
#[tokio::test]
async fn an_answer_over_the_frame_limit_is_an_error_not_a_hang() {
    let mut target = target().await;
    let client = target.agent.client().await.unwrap();
    let value = vec![b'x'; 1024 * 1024];
    for n in 0..20 {
        client
            .kv_put(format!("big/{n:02}"), value.clone(), None)
            .await
            .unwrap();
    }
    let listing = tokio::time::timeout(
        REPLY_TIMEOUT,
        client.kv_list("big/", ReadConsistency::Linearizable),
    )
    .await
    .expect("the oversized listing must be answered, not left hanging");
    match listing {
        Err(symphony_ctl::ClientError::Remote(error)) => {
            assert_eq!(error.code, ErrorCode::BadRequest);
            assert!(error.message.contains("frame limit"), "{}", error.message);
        }
        other => panic!("expected a frame-limit error, got {other:?}"),
    }
    // The same connection still answers, and a narrower listing works.
    let some = client
        .kv_list("big/0", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(some.entries.len(), 10);
    // A value over the 1 MiB limit is refused before it reaches the log.
    let refused = client
        .kv_put("big/too", vec![0u8; 1024 * 1024 + 1], None)
        .await;
    assert!(
        matches!(refused, Err(symphony_ctl::ClientError::Remote(ref e)) if e.code == ErrorCode::BadRequest)
    );
    target.assert_intact().await;
}
