//! Response buffers of one fetch connection.

use bytes::BytesMut;

/// Response buffers of one connection, used again once the copy thread is
/// done with every chunk of theirs: a fresh buffer of a few MiB per
/// response cost kflip as much CPU in the kernel zeroing its pages as the
/// socket copy did. At most [`Buffers::KEEP`] are kept.
#[derive(Default)]
pub(super) struct Buffers {
    /// Responses whose chunks may still be with the copy thread.
    lent: std::collections::VecDeque<bytes::Bytes>,
    free: Vec<BytesMut>,
}

impl Buffers {
    const KEEP: usize = 2;

    pub(super) fn lend(&mut self, whole: bytes::Bytes) {
        self.lent.push_back(whole);
        // A response still held when more are lent is left to be freed by
        // its last chunk.
        while self.lent.len() > 4 * Self::KEEP {
            self.lent.pop_front();
        }
    }

    /// A buffer for the next response: one the copy thread is done with,
    /// or a new one.
    pub(super) fn take(&mut self) -> BytesMut {
        for _ in 0..self.lent.len() {
            let Some(b) = self.lent.pop_front() else {
                break;
            };
            match b.try_into_mut() {
                Ok(m) if self.free.len() < Self::KEEP => self.free.push(m),
                Ok(_) => {}
                Err(b) => self.lent.push_back(b),
            }
        }
        self.free.pop().unwrap_or_default()
    }
}
