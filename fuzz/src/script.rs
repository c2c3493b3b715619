//! An in-memory byte stream for the connection harness: it reads a fixed input, in reads of a
//! fixed size and then end of file, and keeps everything written to it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a [`Script`] was sent.
pub(crate) type Written = Arc<Mutex<Vec<u8>>>;

pub(crate) struct Script {
    input: Vec<u8>,
    at: usize,
    /// The most one read returns, as a socket hands over what has arrived.
    read_size: usize,
    written: Written,
}

impl Script {
    pub(crate) fn new(input: &[u8], read_size: usize) -> (Script, Written) {
        let written = Written::default();
        let script = Script {
            input: input.to_vec(),
            at: 0,
            read_size: read_size.max(1),
            written: Arc::clone(&written),
        };
        (script, written)
    }
}

impl AsyncRead for Script {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let rest = &this.input[this.at..];
        let len = rest.len().min(this.read_size).min(buf.remaining());
        buf.put_slice(&rest[..len]);
        this.at += len;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.written).extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

pub(crate) fn lock(written: &Written) -> std::sync::MutexGuard<'_, Vec<u8>> {
    written
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `future` on this thread's single-threaded runtime (one per fuzzing process).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime builds");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}
