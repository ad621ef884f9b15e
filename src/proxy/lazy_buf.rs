//! A buffered reader whose buffer exists only while data moves.
//!
//! A proxy holds thousands of connections that are idle most of the time.
//! With a `tokio::io::BufReader` each of them keeps its whole buffer (64 KiB
//! on the client side, 256 KiB upstream) for its lifetime: about 94 KiB of
//! RSS per idle connection (`benches/connections.rs`). Here a wait for data
//! on an empty buffer reads into a small probe on the stack, so a pending
//! read holds no heap memory. What the probe got is kept in a buffer of
//! exactly that size; only when the probe comes back full (more is on its
//! way) does the reader take its large buffer, which then serves every read
//! until the owner calls [`LazyBufReader::release`] at a point where the
//! connection goes quiet (between requests, between responses). Large reads
//! while data flows are what make the proxy fast, so a busy connection keeps
//! its large buffer for as long as it is busy.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

/// Bytes read on the stack when the reader has no buffer. Small requests
/// and responses (Metadata, heartbeats, acks) fit whole.
const PROBE: usize = 4 * 1024;

/// A buffered reader that holds no buffer while idle.
pub(crate) struct LazyBufReader<R> {
    /// The reader underneath.
    inner: R,
    /// Read-ahead: `buf[pos..filled]` is not consumed yet. Empty (no
    /// allocation) when released.
    buf: Vec<u8>,
    /// The first unconsumed byte of `buf`.
    pos: usize,
    /// The end of the bytes read into `buf`.
    filled: usize,
    /// The size of the buffer while data moves.
    cap: usize,
    /// A probe came back full: the next read takes the large buffer. Not
    /// taken at once, as a Fetch response's records may then go around the
    /// buffer (spliced between the sockets), and zeroing a buffer no read
    /// uses cost ~2% of kflip's CPU while proxying consumers.
    busy: bool,
}

impl<R: AsyncRead + Unpin> LazyBufReader<R> {
    /// A reader over `inner` that buffers up to `cap` bytes while data
    /// moves, and nothing while idle.
    pub(crate) fn new(inner: R, cap: usize) -> Self {
        LazyBufReader {
            inner,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            cap: cap.max(PROBE),
            busy: false,
        }
    }

    /// Frees the buffer unless it holds unread bytes. Call it where the
    /// connection goes quiet; the next read starts with the probe again.
    pub(crate) fn release(&mut self) {
        if self.pos >= self.filled {
            self.buf = Vec::new();
            self.pos = 0;
            self.filled = 0;
            self.busy = false;
        }
    }

    /// Bytes of heap the reader holds now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.buf.capacity()
    }
}

impl<R: AsyncRead + Unpin> AsyncBufRead for LazyBufReader<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let me = self.get_mut();
        if me.pos >= me.filled {
            me.pos = 0;
            me.filled = 0;
            if me.buf.len() < me.cap && !me.busy {
                // No large buffer: wait on the stack, so a connection
                // waiting for its next message holds no heap memory.
                let mut probe = [0u8; PROBE];
                let mut rb = ReadBuf::new(&mut probe);
                ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                // A full probe: more is coming, and the next read takes
                // the large buffer (once per busy period; it stays until
                // released).
                me.busy = n == PROBE;
                me.buf = rb.filled().to_vec();
                me.filled = n;
            } else {
                if me.buf.len() < me.cap {
                    me.buf = vec![0; me.cap];
                }
                let mut rb = ReadBuf::new(&mut me.buf);
                ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
                me.filled = rb.filled().len();
            }
        }
        Poll::Ready(Ok(&me.buf[me.pos..me.filled]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let me = self.get_mut();
        me.pos = (me.pos + amt).min(me.filled);
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LazyBufReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        // Nothing buffered and a large destination: read straight into it
        // (a large frame's body), as tokio's BufReader does.
        if me.pos >= me.filled && dst.remaining() >= me.cap {
            return Pin::new(&mut me.inner).poll_read(cx, dst);
        }
        let got = ready!(Pin::new(&mut *me).poll_fill_buf(cx))?;
        let n = got.len().min(dst.remaining());
        dst.put_slice(&got[..n]);
        Pin::new(me).consume(n);
        Poll::Ready(Ok(()))
    }
}

impl crate::cluster::splice::SpliceFrom for LazyBufReader<crate::cluster::stream::ReadHalf> {
    fn splice_source(&self) -> Option<(&[u8], &tokio::net::TcpStream)> {
        match &self.inner {
            crate::cluster::stream::ReadHalf::Plain(r) => {
                Some((&self.buf[self.pos..self.filled], r.as_ref()))
            }
            crate::cluster::stream::ReadHalf::Tls(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_waiting_reader_holds_nothing_and_small_reads_stay_small() {
        let (mut w, r) = tokio::io::duplex(1 << 20);
        let mut r = LazyBufReader::new(r, 64 * 1024);
        // Waiting: the read is pending and no buffer exists.
        let mut one = [0u8; 1];
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), r.read(&mut one))
                .await
                .is_err()
        );
        assert_eq!(r.held(), 0);
        w.write_all(b"hello").await.unwrap();
        assert_eq!(r.fill_buf().await.unwrap(), b"hello");
        assert!(r.held() < PROBE, "{}", r.held());
        r.consume(5);
        r.release();
        assert_eq!(r.held(), 0);
    }

    #[tokio::test]
    async fn a_full_probe_then_a_read_takes_the_large_buffer_until_released() {
        let (mut w, r) = tokio::io::duplex(1 << 20);
        let mut r = LazyBufReader::new(r, 64 * 1024);
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        w.write_all(&data).await.unwrap();
        drop(w);
        let first = r.fill_buf().await.unwrap().len();
        assert_eq!(first, PROBE);
        assert_eq!(r.held(), PROBE);
        r.consume(first);
        assert_eq!(r.fill_buf().await.unwrap().len(), 64 * 1024);
        assert_eq!(r.held(), 64 * 1024);
        // A release with unread bytes keeps them.
        r.release();
        assert_eq!(r.held(), 64 * 1024);
        let mut got = data[..first].to_vec();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
        r.release();
        assert_eq!(r.held(), 0);
    }

    #[tokio::test]
    async fn mixed_reads_keep_the_byte_order() {
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let mut r = LazyBufReader::new(r, 8 * 1024);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let writer = tokio::spawn(async move {
            for chunk in data.chunks(3001) {
                w.write_all(chunk).await.unwrap();
            }
            data
        });
        let mut got = Vec::new();
        let mut step = 1;
        loop {
            let mut b = vec![0u8; step];
            let n = r.read(&mut b).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
            step = step * 3 % 20_011 + 1;
            if step % 5 == 0 {
                r.release();
            }
        }
        assert_eq!(got, writer.await.unwrap());
    }
}
