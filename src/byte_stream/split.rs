//! One connection read by one task and written by another (the session's reader and its
//! writer), with an ending that sends the last bytes and the stream's end together,
//! which a split of tokio's cannot ask of the stream inside it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::BoxStream;

/// Each half locks the stream for one poll, which never waits: the lock is only ever
/// contended for the length of a non-blocking system call.
type Shared = Arc<Mutex<BoxStream>>;

pub(crate) fn split(stream: BoxStream) -> (ReadHalf, WriteHalf) {
    let shared = Arc::new(Mutex::new(stream));
    (ReadHalf(shared.clone()), WriteHalf(shared))
}

fn lock(shared: &Shared) -> MutexGuard<'_, BoxStream> {
    // A poll that panicked left the stream as it was between two system calls; the
    // other half may still use it (at worst it sees the connection broken).
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) struct ReadHalf(Shared);

pub(crate) struct WriteHalf(Shared);

impl WriteHalf {
    /// Writes `data` as the stream's last bytes and ends it (see
    /// [`super::ByteStream::poll_end_with`]).
    pub(crate) async fn end_with(&mut self, data: &[u8]) -> io::Result<()> {
        let mut taken = 0;
        // Locked per poll, not for the whole ending: a client that does not read keeps
        // the ending pending, and the reader's polls must not wait on it.
        std::future::poll_fn(|cx| lock(&self.0).poll_end_with(cx, data, &mut taken)).await
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *lock(&self.0)).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_shutdown(cx)
    }
}
