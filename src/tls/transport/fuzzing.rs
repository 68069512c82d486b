//! The `tls_records` fuzz target's entry: what a client may send once its keys are the
//! record layer's. The fuzzer's bytes are a script of records, sealed with the client's
//! keys or raw, cut into reads at chosen places; the server side reads them through
//! [`OwnRecords`] with a reader buffer of a chosen size.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::super::record_layer::{Direction, Secret, Suite, CONTENT_APPLICATION_DATA};
use super::OwnRecords;

/// Reads go through the script's chunks, then the end of the stream; writes are kept.
struct Script {
    chunks: VecDeque<Vec<u8>>,
    written: Vec<u8>,
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(chunk) = self.chunks.front_mut() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.chunks.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn keys(suite: Suite, seed: u8) -> Option<Direction> {
    Direction::new(suite, Secret::new(&[seed; 32])?).ok()
}

/// Runs one script and returns what the reader got. Panics (the fuzzer's finding) if
/// that is not a prefix of the application data the script sealed, in order.
pub fn client_records(input: &[u8]) -> Vec<u8> {
    let suite = Suite::Chacha20Poly1305Sha256;
    let (Some(mut client), Some(rx), Some(tx)) = (keys(suite, 1), keys(suite, 1), keys(suite, 2))
    else {
        return Vec::new();
    };
    let Some((&reader_size, mut script)) = input.split_first() else {
        return Vec::new();
    };
    let mut chunks = VecDeque::new();
    let mut current = Vec::new();
    let mut sealed_data = Vec::new();
    while let Some((&op, rest)) = script.split_first() {
        let len = usize::from(rest.first().copied().unwrap_or(0));
        let body = rest.get(1..1 + len).unwrap_or(&[]);
        script = rest.get(1 + len..).unwrap_or(&[]);
        match op % 8 {
            // A record as a client would seal it: data, an alert, a handshake message,
            // or any other content type.
            0..=2 => {
                if client
                    .seal(CONTENT_APPLICATION_DATA, body, &mut current)
                    .is_ok()
                {
                    sealed_data.extend_from_slice(body);
                }
            }
            3 => {
                let _ = client.seal(21, body, &mut current);
            }
            4 => {
                let _ = client.seal(22, body, &mut current);
                if body == [24, 0, 0, 1, 0] || body == [24, 0, 0, 1, 1] {
                    let _ = client.update();
                }
            }
            5 => {
                let _ = client.seal(op, body, &mut current);
            }
            // Raw bytes.
            6 => current.extend_from_slice(body),
            // The end of one read.
            _ if current.is_empty() => {}
            _ => chunks.push_back(std::mem::take(&mut current)),
        }
    }
    if !current.is_empty() {
        chunks.push_back(current);
    }
    let mut records = OwnRecords {
        io: Script {
            chunks,
            written: Vec::new(),
        },
        rx,
        tx,
        unopened: Vec::new(),
        unread: Vec::new(),
        unread_at: 0,
        unsent: Vec::new(),
        unsent_at: 0,
        unsent_untried: false,
        owe_key_update: false,
        fruitless: 0,
        read_closed: false,
        close_notify_sent: false,
        failed: false,
    };
    let mut cx = Context::from_waker(Waker::noop());
    let mut delivered = Vec::new();
    let mut buf = vec![0u8; usize::from(reader_size) + 1];
    loop {
        let mut read_buf = ReadBuf::new(&mut buf);
        match records.poll_read(&mut cx, &mut read_buf) {
            Poll::Ready(Ok(())) if read_buf.filled().is_empty() => break,
            Poll::Ready(Ok(())) => delivered.extend_from_slice(read_buf.filled()),
            Poll::Ready(Err(_)) | Poll::Pending => break,
        }
    }
    assert!(
        sealed_data.starts_with(&delivered),
        "the reader got bytes the client did not send, or out of order"
    );
    // Whatever ended the reading, the connection can still be written to or closed
    // without a panic.
    let _ = records.poll_write(&mut cx, b"</stream:stream>");
    let _ = records.poll_shutdown(&mut cx);
    delivered
}
