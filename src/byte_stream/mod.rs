//! The byte streams a client connection runs over (TCP, or TLS over TCP), and how one
//! ends.
//!
//! A stream's last bytes and its end go out together where the transport allows: a TLS
//! stream seals its close_notify behind the last records, and TCP holds them back
//! (`MSG_MORE`) so that its FIN leaves in the same segment. Sent one after the other,
//! the last stanzas, the close_notify and the FIN were three sends; on loopback each send
//! also runs the receiver's side of TCP and wakes it.

mod split;
mod tcp;

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

pub(crate) use split::{split, ReadHalf, WriteHalf};

/// Any byte stream a session can run over.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Writes `data[*taken..]` as the stream's last bytes, then ends the writing side
    /// (TLS close_notify, TCP FIN). `*taken` counts what is done, so that a `Pending`
    /// poll resumes where it stopped.
    fn poll_end_with(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
        taken: &mut usize,
    ) -> Poll<io::Result<()>> {
        poll_write_then_shutdown(self, cx, data, taken)
    }
}

pub(crate) type BoxStream = Box<dyn ByteStream>;

impl ByteStream for BoxStream {
    fn poll_end_with(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
        taken: &mut usize,
    ) -> Poll<io::Result<()>> {
        (**self).poll_end_with(cx, data, taken)
    }
}

/// In-memory pipes: tests, and the placeholder while a STARTTLS handshake owns the
/// socket.
impl ByteStream for tokio::io::DuplexStream {}

/// Writes `data` as `stream`'s last bytes and ends it (see [`ByteStream::poll_end_with`]).
pub(crate) async fn end_with<S: ByteStream + ?Sized>(
    stream: &mut S,
    data: &[u8],
) -> io::Result<()> {
    let mut taken = 0;
    std::future::poll_fn(|cx| stream.poll_end_with(cx, data, &mut taken)).await
}

/// The ending any stream can do: write, flush, shut down, each its own step.
pub(crate) fn poll_write_then_shutdown<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    cx: &mut Context<'_>,
    data: &[u8],
    taken: &mut usize,
) -> Poll<io::Result<()>> {
    while *taken < data.len() {
        match ready!(Pin::new(&mut *stream).poll_write(cx, &data[*taken..]))? {
            0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            n => *taken += n,
        }
    }
    ready!(Pin::new(&mut *stream).poll_flush(cx))?;
    Pin::new(stream).poll_shutdown(cx)
}
