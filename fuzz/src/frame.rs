//! Target `frame`: the bytes a peer sends on a framed link (the control socket here; the
//! node-to-node API and Raft links share every layer below the messages).
//!
//! Two things are checked:
//! - the codec ([`symphony_wire::codec::FrameCodec`]) cuts the same frames out of the stream
//!   however the stream is split into reads, each frame is exactly the bytes its length prefix
//!   announced, a refusal is a prefix over the limit, and no frame still arriving keeps any of
//!   the process's memory budget once the codec is gone;
//! - a server that reads the stream (the hello, [`symphony_wire::hello::exchange_as_server`],
//!   then the serve loop, [`symphony_wire::serve::serve`]) writes only frames the client can
//!   read: a hello first, then responses, and every request frame — malformed, unknown or
//!   fine — gets an answer under its id.

use std::collections::BTreeSet;

use bytes::BytesMut;
use symphony_ctl::proto::{Ctl, CtlError, ErrorCode, Request, Response};
use symphony_wire::codec::{self, FrameCodec};
use symphony_wire::frame::{self, MAX_FRAME_LEN};
use symphony_wire::hello::{self, Hello, LocalHello};
use symphony_wire::{BoxStream, Connection, PeerAddr, PeerInfo, Protocol, Reply, mux, serve};
use tokio_util::codec::Decoder;

use crate::script::{Script, block_on, lock};

pub fn run(data: &[u8]) {
    for max in [MAX_FRAME_LEN, 64] {
        codec_properties(data, max);
    }
    connection(data);
}

/// How a stream ended for the codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every byte was part of a whole frame.
    Clean,
    /// This many bytes of a frame never completed.
    Partial(usize),
    /// A length prefix was refused (over the limit or the budget).
    Refused,
}

/// The frames `codec` cuts out of `input` fed in reads of `step` bytes, as a framed stream
/// reads them, and how the stream ended.
pub fn cut(input: &[u8], max: usize, step: usize) -> (Vec<Vec<u8>>, End) {
    let mut codec = FrameCodec::new(max);
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in input.chunks(step.max(1)) {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => frames.push(frame.to_vec()),
                Ok(None) => break,
                Err(error) => {
                    assert!(codec::is_refused(&error), "not a refusal: {error}");
                    return (frames, End::Refused);
                }
            }
        }
    }
    match codec.decode_eof(&mut buffer) {
        Ok(None) => (frames, End::Clean),
        Ok(Some(_)) => panic!("a frame appeared at the end that was not there before"),
        Err(error) if codec::is_refused(&error) => (frames, End::Refused),
        Err(_) => (frames, End::Partial(buffer.len())),
    }
}

fn codec_properties(data: &[u8], max: usize) {
    let budget_before = codec::in_flight();
    let whole = cut(data, max, data.len());
    for step in [1, 3, 4096] {
        assert_eq!(cut(data, max, step), whole, "reads of {step} bytes");
    }
    assert_eq!(
        codec::in_flight(),
        budget_before,
        "a codec kept some of the budget"
    );

    let (frames, end) = whole;
    let mut at = 0;
    for body in &frames {
        let announced = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"));
        assert_eq!(announced as usize, body.len());
        assert!(body.len() <= max);
        assert_eq!(&data[at + 4..at + 4 + body.len()], &body[..]);
        at += 4 + body.len();
    }
    let rest = &data[at..];
    match end {
        End::Clean => assert!(rest.is_empty()),
        End::Partial(left) => {
            assert_eq!(left, rest.len());
            assert!(!rest.is_empty());
        }
        End::Refused => {
            let announced = u32::from_be_bytes(rest[..4].try_into().expect("a whole prefix"));
            assert!(announced as usize > max, "{announced} refused under {max}");
        }
    }
}

/// The control socket's server reading `data` as a client's bytes.
fn connection(data: &[u8]) {
    let (script, written) = Script::new(data, 512);
    let stream: BoxStream = Box::new(script);
    let local = LocalHello {
        node_id: 1,
        agent_version: "fuzz".into(),
    };
    block_on(async move {
        let mut framed = frame::framed(stream, MAX_FRAME_LEN);
        let Ok(hello) = hello::exchange_as_server(&mut framed, Ctl::ID, &local).await else {
            return;
        };
        let connection = Connection {
            framed,
            peer: PeerInfo {
                addr: PeerAddr::Local,
                identity: None,
            },
            hello,
        };
        serve::serve::<Ctl, _, _>(connection, 8, |_caller, request| async move {
            Reply::One(answer(&request))
        })
        .await;
    });
    let written = lock(&written).clone();
    check_answers(data, &written);
}

/// What the handler answers: a reply or an error, by the request alone.
fn answer(request: &Request) -> Result<Response, CtlError> {
    match request {
        Request::Status | Request::KvWatch { .. } => Ok(Response::KvEvents(Vec::new())),
        other => Err(CtlError::new(ErrorCode::Unavailable, other.spec().name)),
    }
}

/// Everything the server wrote is a frame the client reads, and every request was answered.
fn check_answers(sent: &[u8], written: &[u8]) {
    let (replies, end) = cut(written, MAX_FRAME_LEN, written.len());
    assert_eq!(end, End::Clean, "the server wrote a broken frame");
    let Some((hello, responses)) = replies.split_first() else {
        // Nothing is written only when the client sent no whole frame.
        let (requests, _) = cut(sent, MAX_FRAME_LEN, sent.len());
        assert!(requests.is_empty(), "a hello went unanswered");
        return;
    };
    let hello: Hello = frame::decode(hello).expect("the server's hello decodes");
    assert!(hello.speaks(Ctl::ID));
    if hello.refused.is_some() {
        assert!(responses.is_empty(), "frames after a refusal");
        return;
    }
    let mut answered = BTreeSet::new();
    for body in responses {
        let response = mux::decode_response::<Ctl>(body).expect("the client reads every response");
        answered.insert(response.id);
    }
    let (requests, end) = cut(sent, MAX_FRAME_LEN, sent.len());
    if end == End::Refused {
        // The frame too large is answered under id 0 and the connection closed.
        assert!(answered.contains(&0), "a frame too large went unanswered");
    }
    for body in requests.iter().skip(1) {
        let id = match serve::decode_request::<Ctl>(body) {
            Ok(frame) if frame.request.is_none() => continue,
            Ok(frame) => frame.id,
            Err((id, _)) => id,
        };
        assert!(answered.contains(&id), "request {id} went unanswered");
    }
}
