//! Framing shared by every Symphony connection: a 4-byte big-endian length prefix (see
//! [`crate::codec`]) around a MessagePack body with named fields, so a newer peer can add a
//! field without breaking an older one.
//!
//! The codec works over any async byte stream: [`crate::transport`] decides what that stream is
//! (a Unix socket, TCP, TLS over TCP), and nothing here changes with it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::codec::FrameCodec;

/// The largest frame either side accepts: 16 MiB.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Frames up to this size leave the connection's buffers as they are; after a larger one (a
/// gossip view, a Raft batch) the buffer it grew is given back once it is empty. Otherwise one
/// large frame would pin its size for the connection's life, and a manager holds a connection
/// per worker: at 10,000 workers, one 1 MB view each would keep 10 GB.
const LARGE_FRAME: usize = 16 * 1024;
/// What a buffer starts again with (tokio-util's own initial capacity).
const FRESH_BUFFER: usize = 8 * 1024;

/// A byte stream wrapped in Symphony's length-delimited framing: a [`Stream`] of frames and a
/// [`Sink`] of encoded messages.
///
/// [`Stream`]: futures_util::Stream
/// [`Sink`]: futures_util::Sink
#[derive(Debug)]
pub struct FramedStream<S> {
    inner: Framed<S, FrameCodec>,
    /// A large frame went into the write buffer since it was last replaced.
    wrote_large: bool,
}

/// Wraps `stream` in the framing, refusing frames over `max_frame_len` bytes.
pub fn framed<S>(stream: S, max_frame_len: usize) -> FramedStream<S>
where
    S: AsyncRead + AsyncWrite,
{
    FramedStream {
        inner: Framed::new(stream, FrameCodec::new(max_frame_len)),
        wrote_large: false,
    }
}

impl<S> FramedStream<S> {
    /// The byte stream underneath, e.g. to write raw bytes past the framing (tests do).
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut()
    }
}

impl<S: AsyncRead + Unpin> futures_util::Stream for FramedStream<S> {
    type Item = std::io::Result<BytesMut>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = futures_util::Stream::poll_next(Pin::new(&mut this.inner), cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.len() > LARGE_FRAME
            && this.inner.read_buffer().is_empty()
        {
            // The frame was split off the buffer and shares its allocation; a fresh buffer
            // lets that allocation go with the frame.
            *this.inner.read_buffer_mut() = BytesMut::with_capacity(FRESH_BUFFER);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> futures_util::Sink<Bytes> for FramedStream<S> {
    type Error = std::io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures_util::Sink::<Bytes>::poll_ready(Pin::new(&mut self.get_mut().inner), cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> std::io::Result<()> {
        let this = self.get_mut();
        this.wrote_large |= item.len() > LARGE_FRAME;
        futures_util::Sink::<Bytes>::start_send(Pin::new(&mut this.inner), item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let flushed = futures_util::Sink::<Bytes>::poll_flush(Pin::new(&mut this.inner), cx);
        if let Poll::Ready(Ok(())) = flushed
            && this.wrote_large
            && this.inner.write_buffer().is_empty()
        {
            *this.inner.write_buffer_mut() = BytesMut::with_capacity(FRESH_BUFFER);
            this.wrote_large = false;
        }
        flushed
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures_util::Sink::<Bytes>::poll_close(Pin::new(&mut self.get_mut().inner), cx)
    }
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

/// True when `error` is the codec refusing a frame: over the size limit, or more than the
/// memory left for frames still arriving.
pub fn is_frame_too_large(error: &std::io::Error) -> bool {
    crate::codec::is_refused(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};

    #[test]
    fn messages_round_trip_with_named_fields() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Message {
            id: u64,
            text: String,
        }
        let message = Message {
            id: 42,
            text: "greeting".into(),
        };
        let back: Message = decode(&encode(&message).unwrap()).unwrap();
        assert_eq!(back, message);
        // An older reader that knows fewer fields still reads what it knows.
        #[derive(serde::Deserialize)]
        struct Older {
            id: u64,
        }
        assert_eq!(decode::<Older>(&encode(&message).unwrap()).unwrap().id, 42);
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
            assert!(decode::<crate::hello::Hello>(garbage).is_err());
            assert!(decode::<crate::envelope::RequestFrame<String>>(garbage).is_err());
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

    #[tokio::test]
    async fn a_large_frame_does_not_keep_its_buffers_grown() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut sender = framed(client, 1 << 20);
        let mut receiver = framed(server, 1 << 20);
        let large = Bytes::from(vec![7u8; 300 * 1024]);
        let writer = tokio::spawn(async move {
            sender.send(large).await.unwrap();
            sender
        });
        let frame = receiver.next().await.unwrap().unwrap();
        assert_eq!(frame.len(), 300 * 1024);
        let sender = writer.await.unwrap();
        // Both sides have a fresh buffer, not the tail of one the size of the frame (whose
        // allocation it would keep alive).
        assert_eq!(sender.inner.write_buffer().capacity(), FRESH_BUFFER);
        assert!(!sender.wrote_large);
        assert_eq!(receiver.inner.read_buffer().capacity(), FRESH_BUFFER);

        // Small frames leave the buffers alone.
        let (client, server) = tokio::io::duplex(1024);
        let mut sender = framed(client, 1 << 20);
        let mut receiver = framed(server, 1 << 20);
        sender.send(Bytes::from_static(b"small")).await.unwrap();
        assert_eq!(&receiver.next().await.unwrap().unwrap()[..], b"small");
        assert!(!sender.wrote_large);
    }
}
