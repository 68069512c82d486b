//! TCP's ending: the last bytes are sent with `MSG_MORE`, so the kernel holds them
//! until the shutdown right after puts the FIN on the same segment.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;

use super::ByteStream;

impl ByteStream for TcpStream {
    fn poll_end_with(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
        taken: &mut usize,
    ) -> Poll<io::Result<()>> {
        let fd = self.as_raw_fd();
        while *taken < data.len() {
            ready!(self.poll_write_ready(cx))?;
            match self.try_io(Interest::WRITABLE, || send_more(fd, &data[*taken..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *taken += n,
                // The readiness was stale: `try_io` cleared it, and the next
                // `poll_write_ready` waits for the socket.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        Pin::new(self).poll_shutdown(cx)
    }
}

/// `send(2)` with `MSG_MORE`: more follows (here, the FIN), so a segment smaller than
/// the MSS waits for it. `MSG_NOSIGNAL`, as every socket write of the runtime: a peer
/// that went away is an error, not a signal.
fn send_more(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes for the call's duration,
    // and `fd` is the socket `TcpStream` owns, open while it is borrowed.
    let sent = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_MORE | libc::MSG_NOSIGNAL,
        )
    };
    // A negative return is the one failure `send` reports, with the cause in errno.
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Segments the kernel has sent on `stream` (`TCP_INFO`).
    fn segments_out(stream: &TcpStream) -> u32 {
        let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` has room for `len` bytes, and the kernel writes at most that.
        let status = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        assert_eq!(status, 0, "TCP_INFO: {}", io::Error::last_os_error());
        // SAFETY: zeroed, then filled by the kernel; every field is an integer.
        unsafe { info.assume_init() }.tcpi_segs_out
    }

    #[tokio::test]
    async fn the_last_bytes_and_the_fin_leave_in_one_segment() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        let mut client = client.expect("connect");
        let (mut server, _) = accepted.expect("accept");
        let before = segments_out(&server);
        crate::byte_stream::end_with(&mut server, b"</stream:stream>")
            .await
            .expect("end");
        assert_eq!(
            segments_out(&server) - before,
            1,
            "the last bytes and the FIN went out in separate segments"
        );
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"</stream:stream>");
    }
}
