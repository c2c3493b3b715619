//! Framing shared by every Symphony connection: a 4-byte big-endian length prefix
//! (`LengthDelimitedCodec`) around a MessagePack body with named fields.
//!
//! The codec works over any async byte stream, so a TLS stream can replace a Unix or TCP
//! socket later without touching the protocol code above it.

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The largest frame either side accepts: 16 MiB.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// A byte stream wrapped in Symphony's length-delimited framing.
pub type FramedStream<S> = Framed<S, LengthDelimitedCodec>;

/// Wraps `stream` in the framing, refusing frames over `max_frame_len` bytes.
pub fn framed<S>(stream: S, max_frame_len: usize) -> FramedStream<S>
where
    S: AsyncRead + AsyncWrite,
{
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(max_frame_len)
        .new_codec();
    Framed::new(stream, codec)
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("could not encode a message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("could not decode a message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

/// Encodes a message as MessagePack with named fields, ready to be sent as one frame.
pub fn encode<T: Serialize + ?Sized>(message: &T) -> Result<Bytes, FrameError> {
    Ok(Bytes::from(rmp_serde::to_vec_named(message)?))
}

/// Decodes one frame's body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(rmp_serde::from_slice(body)?)
}

/// Encodes `message`; when the result is over `max_len` bytes (a peer would refuse it), encodes
/// the message `instead` builds from that size, typically a small error reply.
pub fn encode_within<T: Serialize>(
    message: &T,
    max_len: usize,
    instead: impl FnOnce(usize) -> T,
) -> Result<Bytes, FrameError> {
    let bytes = encode(message)?;
    if bytes.len() <= max_len {
        return Ok(bytes);
    }
    encode(&instead(bytes.len()))
}

/// Sends every encoded frame queued on `queue` through `sink` until the queue closes. Whatever
/// is queued at once goes out with one flush (one write system call), which is what keeps a
/// busy pipelined connection cheap.
pub async fn pump<S>(
    mut queue: tokio::sync::mpsc::Receiver<Bytes>,
    mut sink: S,
) -> std::io::Result<()>
where
    S: futures_util::Sink<Bytes, Error = std::io::Error> + Unpin,
{
    use futures_util::SinkExt;
    /// At most this many frames wait for one flush, so a flood still reaches the peer steadily.
    const MAX_COALESCED: usize = 64;
    while let Some(first) = queue.recv().await {
        sink.feed(first).await?;
        for _ in 1..MAX_COALESCED {
            match queue.try_recv() {
                Ok(next) => sink.feed(next).await?,
                Err(_) => break,
            }
        }
        sink.flush().await?;
    }
    Ok(())
}

/// True when `error` is the codec refusing a frame over the size limit.
pub fn is_frame_too_large(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::InvalidData
        && error
            .get_ref()
            .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Hello, ReadConsistency, Request, RequestFrame, RequestId};
    use futures_util::{SinkExt, StreamExt};

    #[test]
    fn request_round_trips_and_its_id_decodes_alone() {
        let frame = RequestFrame {
            id: 42,
            request: Request::KvGet {
                key: "greeting".into(),
                consistency: ReadConsistency::Stale,
            },
        };
        let bytes = encode(&frame).unwrap();
        let back: RequestFrame = decode(&bytes).unwrap();
        assert_eq!(back.id, 42);
        assert!(matches!(back.request, Request::KvGet { ref key, .. } if key == "greeting"));
        let id: RequestId = decode(&bytes).unwrap();
        assert_eq!(id.id, 42);
    }

    #[test]
    fn unknown_request_still_yields_its_id() {
        #[derive(serde::Serialize)]
        enum Future {
            Teleport { to: String },
        }
        #[derive(serde::Serialize)]
        struct NewerFrame {
            id: u64,
            request: Future,
        }
        let bytes = encode(&NewerFrame {
            id: 7,
            request: Future::Teleport { to: "mars".into() },
        })
        .unwrap();
        assert!(decode::<RequestFrame>(&bytes).is_err());
        assert_eq!(decode::<RequestId>(&bytes).unwrap().id, 7);
    }

    #[test]
    fn oversized_messages_are_replaced() {
        let big = vec![7u8; 1000];
        let bytes = encode_within(&big, 100, |size| {
            assert!(size > 1000);
            vec![1u8]
        })
        .unwrap();
        assert_eq!(decode::<Vec<u8>>(&bytes).unwrap(), vec![1u8]);
        let small = encode_within(&vec![2u8], 100, |_| unreachable!()).unwrap();
        assert_eq!(decode::<Vec<u8>>(&small).unwrap(), vec![2u8]);
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        for garbage in [
            &b""[..],
            b"\xc1",
            b"\xff\xff\xff",
            b"hello world",
            b"\x92\x01",
        ] {
            assert!(decode::<RequestFrame>(garbage).is_err());
            assert!(decode::<Hello>(garbage).is_err());
        }
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_by_the_codec() {
        let (client, server) = tokio::io::duplex(1024);
        let mut sender = framed(client, 1 << 20);
        let mut receiver = framed(server, 16);
        let writer = tokio::spawn(async move { sender.send(Bytes::from(vec![0u8; 64])).await });
        let error = receiver.next().await.unwrap().unwrap_err();
        assert!(is_frame_too_large(&error), "{error}");
        drop(receiver);
        let _ = writer.await;
    }
}
