//! Length-prefixed Kafka frames, read with the size checked before allocating.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Memory is reserved in steps of at most this size, so a peer that announces
/// a large frame and then stalls holds little memory.
const ALLOC_STEP: usize = 1 << 20;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is negative or above the limit.
    #[error("frame length {len} is outside 0..={max} bytes (proxy.max_frame_bytes)")]
    Size {
        /// The announced length.
        len: i64,
        /// The limit in force.
        max: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a {len}-byte frame")]
    Truncated {
        /// The announced length.
        len: usize,
    },
    /// A socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A whole frame including its 4-byte length prefix, so it can be forwarded
/// with a single write.
#[derive(Debug, Clone)]
pub struct Frame(pub BytesMut);

impl Frame {
    /// The frame without its length prefix.
    pub fn payload(&self) -> &[u8] {
        &self.0[4..]
    }

    /// The frame without its length prefix, to patch fixed-size fields in
    /// place.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.0[4..]
    }

    /// Builds a frame from a payload.
    pub fn from_payload(payload: &[u8]) -> Frame {
        let mut buf = BytesMut::with_capacity(payload.len() + 4);
        buf.put_i32(payload.len() as i32);
        buf.put_slice(payload);
        Frame(buf)
    }
}

/// Reads one frame. `Ok(None)` is a clean close between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Frame>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated { len: 4 });
        }
        got += n;
    }
    let len = frame_len(prefix, max)?;
    let mut buf = BytesMut::with_capacity(4 + len.min(ALLOC_STEP));
    buf.put_slice(&prefix);
    while buf.len() < 4 + len {
        let want = 4 + len - buf.len();
        if buf.capacity() == buf.len() {
            buf.reserve(want.min(ALLOC_STEP));
        }
        let spare = (buf.capacity() - buf.len()).min(want);
        let n = (&mut *r).take(spare as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(FrameError::Truncated { len });
        }
    }
    Ok(Some(Frame(buf)))
}

/// Reads one frame from a peer trusted with its size (a broker answering
/// kflip's own request, bounded by `max`) into `buf` (cleared first; a
/// buffer kept from an earlier frame saves the kernel zeroing fresh
/// pages): the whole frame is reserved at once, so a large response is
/// read straight into place instead of being copied each time
/// [`read_frame`]'s buffer grows.
pub async fn read_frame_whole<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    mut buf: BytesMut,
) -> Result<Option<Frame>, FrameError> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut prefix[1..])
        .await
        .map_err(|_| FrameError::Truncated { len: 4 })?;
    let len = frame_len(prefix, max)?;
    buf.clear();
    buf.reserve(4 + len);
    buf.put_slice(&prefix);
    while buf.len() < 4 + len {
        let want = (4 + len - buf.len()) as u64;
        if (&mut *r).take(want).read_buf(&mut buf).await? == 0 {
            return Err(FrameError::Truncated { len });
        }
    }
    Ok(Some(Frame(buf)))
}

/// The payload length a frame's prefix announces, if at most `max`.
fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = i32::from_be_bytes(prefix);
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(FrameError::Size {
            len: len.into(),
            max,
        }),
    }
}

/// Writes a whole frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> std::io::Result<()> {
    w.write_all(&frame.0).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_clean_eof() {
        let mut data = Vec::new();
        data.extend_from_slice(&Frame::from_payload(b"hello").0);
        data.extend_from_slice(&Frame::from_payload(b"").0);
        let mut r = &data[..];
        assert_eq!(
            read_frame(&mut r, 100).await.unwrap().unwrap().payload(),
            b"hello"
        );
        assert_eq!(
            read_frame(&mut r, 100).await.unwrap().unwrap().payload(),
            b""
        );
        assert!(read_frame(&mut r, 100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversize_and_negative_lengths_are_refused_before_reading() {
        let mut r = &[0x7f, 0xff, 0xff, 0xff][..];
        let e = read_frame(&mut r, 1024).await.unwrap_err();
        assert!(e.to_string().contains("2147483647"), "{e}");
        let mut r = &[0xff, 0xff, 0xff, 0xfe][..];
        assert!(matches!(
            read_frame(&mut r, 1024).await,
            Err(FrameError::Size { len: -2, .. })
        ));
    }

    #[tokio::test]
    async fn truncated_frames_are_errors() {
        let mut r = &[0, 0, 0, 9, 1, 2][..];
        assert!(matches!(
            read_frame(&mut r, 100).await,
            Err(FrameError::Truncated { len: 9 })
        ));
        let mut r = &[0, 0][..];
        assert!(read_frame(&mut r, 100).await.is_err());
    }

    #[tokio::test]
    async fn large_frames_grow_in_steps() {
        let payload = vec![7u8; 3 * ALLOC_STEP + 5];
        let data = Frame::from_payload(&payload).0;
        let mut r = &data[..];
        let f = read_frame(&mut r, usize::MAX >> 1).await.unwrap().unwrap();
        assert_eq!(f.payload(), &payload[..]);
    }

    #[tokio::test]
    async fn whole_frames_read_like_stepped_ones() {
        let payload = vec![7u8; 3 * ALLOC_STEP + 5];
        let mut data = Frame::from_payload(&payload).0.to_vec();
        data.extend_from_slice(&Frame::from_payload(b"").0);
        let mut r = &data[..];
        let f = read_frame_whole(&mut r, 4 << 20, BytesMut::new())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.payload(), &payload[..]);
        let f = read_frame_whole(&mut r, 4 << 20, BytesMut::new())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.payload(), b"");
        assert!(read_frame_whole(&mut r, 100, BytesMut::new())
            .await
            .unwrap()
            .is_none());
        let mut r = &[0, 0, 0, 9, 1, 2][..];
        assert!(matches!(
            read_frame_whole(&mut r, 100, BytesMut::new()).await,
            Err(FrameError::Truncated { len: 9 })
        ));
        let mut r = &[0, 0][..];
        assert!(matches!(
            read_frame_whole(&mut r, 100, BytesMut::new()).await,
            Err(FrameError::Truncated { len: 4 })
        ));
        let mut r = &[0x7f, 0xff, 0xff, 0xff][..];
        assert!(matches!(
            read_frame_whole(&mut r, 1024, BytesMut::new()).await,
            Err(FrameError::Size { .. })
        ));
    }
}
