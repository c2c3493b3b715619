//! The length-prefixed codec under [`crate::frame`]: a 4-byte big-endian length, then the body.
//!
//! Unlike a codec that reserves a frame's announced length as soon as it reads the prefix, this
//! one lets the buffer grow only with the bytes that arrive, and counts every large frame still
//! arriving against one budget for the whole process: a peer that announces 16 MiB and sends
//! one byte a second holds one byte, and a thousand peers that do the same cannot make the
//! process hold more than the budget. A frame the budget cannot take is refused like one over
//! the size limit, and that one connection closes.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Frames up to this size are not counted against the budget (they are what a connection's
/// buffer holds anyway).
const SMALL_FRAME: usize = 64 * 1024;
/// How far ahead of what has arrived the buffer is grown for a frame still arriving.
const READ_AHEAD: usize = 64 * 1024;

/// What all connections' large frames still arriving may take together.
pub const FRAME_BUDGET: usize = 512 * 1024 * 1024;

/// Bytes of large frames announced and not complete yet, over every connection.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameRefused {
    #[error("a frame of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("a frame of {len} bytes is more than the memory left for frames still arriving")]
    OverBudget { len: usize },
}

/// The codec; one per connection.
#[derive(Debug)]
pub struct FrameCodec {
    max: usize,
    /// The length of the large frame being read, as counted against the budget.
    counted: usize,
}

impl FrameCodec {
    pub fn new(max: usize) -> FrameCodec {
        FrameCodec { max, counted: 0 }
    }

    fn release(&mut self) {
        if self.counted > 0 {
            IN_FLIGHT.fetch_sub(self.counted, Ordering::AcqRel);
            self.counted = 0;
        }
    }
}

impl Drop for FrameCodec {
    fn drop(&mut self) {
        self.release();
    }
}

/// How many bytes of large frames are arriving now (for tests and metrics).
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Acquire)
}

fn refused(refusal: FrameRefused) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, refusal)
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> std::io::Result<Option<BytesMut>> {
        if src.len() < 4 {
            return Ok(None);
        }
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(&src[..4]);
        let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
        if len > self.max {
            return Err(refused(FrameRefused::TooLarge { len, max: self.max }));
        }
        if len > SMALL_FRAME && self.counted == 0 {
            let before = IN_FLIGHT.fetch_add(len, Ordering::AcqRel);
            if before + len > FRAME_BUDGET {
                IN_FLIGHT.fetch_sub(len, Ordering::AcqRel);
                return Err(refused(FrameRefused::OverBudget { len }));
            }
            self.counted = len;
        }
        let total = 4 + len;
        if src.len() < total {
            // Room for what is likely to come next, not for what was announced.
            src.reserve((total - src.len()).min(READ_AHEAD));
            return Ok(None);
        }
        src.advance(4);
        let frame = src.split_to(len);
        self.release();
        Ok(Some(frame))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> std::io::Result<()> {
        if item.len() > self.max {
            return Err(refused(FrameRefused::TooLarge {
                len: item.len(),
                max: self.max,
            }));
        }
        let len = u32::try_from(item.len()).map_err(|_| {
            refused(FrameRefused::TooLarge {
                len: item.len(),
                max: self.max,
            })
        })?;
        dst.reserve(4 + item.len());
        dst.put_u32(len);
        dst.extend_from_slice(&item);
        Ok(())
    }
}

/// True when `error` is this codec refusing a frame (too large, or over the budget).
pub fn is_refused(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::InvalidData
        && error
            .get_ref()
            .is_some_and(|inner| inner.is::<FrameRefused>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_announced_large_takes_only_what_arrived() {
        let mut codec = FrameCodec::new(16 << 20);
        let mut buffer = BytesMut::new();
        buffer.put_u32(16 << 20);
        buffer.put_u8(7);
        assert!(codec.decode(&mut buffer).unwrap().is_none());
        assert!(
            buffer.capacity() <= 2 * READ_AHEAD,
            "reserved {} for a frame that sent one byte",
            buffer.capacity()
        );
        assert!(in_flight() >= 16 << 20);
        drop(codec);
    }

    #[test]
    fn frames_over_the_limit_or_the_budget_are_refused() {
        let mut codec = FrameCodec::new(1024);
        let mut buffer = BytesMut::new();
        buffer.put_u32(2048);
        assert!(is_refused(&codec.decode(&mut buffer).unwrap_err()));

        // Enough codecs each waiting for a large frame exhaust the budget; the next is refused,
        // and the budget comes back when they go.
        let frame = 256 << 20;
        let mut waiting = Vec::new();
        let mut refusals = 0;
        for _ in 0..(FRAME_BUDGET / frame + 2) {
            let mut codec = FrameCodec::new(512 << 20);
            let mut buffer = BytesMut::new();
            buffer.put_u32(u32::try_from(frame).unwrap());
            match codec.decode(&mut buffer) {
                Ok(None) => waiting.push(codec),
                Err(error) if is_refused(&error) => refusals += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(refusals >= 1);
        drop(waiting);
        let mut codec = FrameCodec::new(512 << 20);
        let mut buffer = BytesMut::new();
        buffer.put_u32(u32::try_from(frame).unwrap());
        assert!(
            codec.decode(&mut buffer).unwrap().is_none(),
            "the budget is back"
        );
    }

    #[test]
    fn frames_round_trip() {
        let mut codec = FrameCodec::new(1 << 20);
        let mut buffer = BytesMut::new();
        codec
            .encode(Bytes::from_static(b"hello"), &mut buffer)
            .unwrap();
        codec
            .encode(Bytes::from(vec![1u8; 100_000]), &mut buffer)
            .unwrap();
        assert_eq!(&codec.decode(&mut buffer).unwrap().unwrap()[..], b"hello");
        assert_eq!(codec.decode(&mut buffer).unwrap().unwrap().len(), 100_000);
        assert_eq!(
            codec.counted, 0,
            "a complete frame gives its share of the budget back"
        );
    }
}
