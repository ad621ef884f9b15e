//! A source record as the copy loop sees it, from either reader; and the
//! walk of a fetched chunk: its batches, read_committed filtering, and
//! each record to `copy`.

use rdkafka::message::{BorrowedMessage, Headers, Message};

use super::fetcher::{Chunk, Fetcher};
use super::runner::Runner;
use super::state::SourcePartition;
use crate::codec::batches::{batches, records, Aborted, RawRecord};
use crate::codec::records::RecordsError;

/// A header: name and value.
pub(super) type HeaderRef<'a> = (&'a [u8], Option<&'a [u8]>);

/// One record read from the source.
pub(super) trait SourceRecord {
    fn source_topic(&self) -> &str;
    fn source_partition(&self) -> i32;
    fn source_offset(&self) -> i64;
    /// Milliseconds since the epoch, if the record has one.
    fn millis(&self) -> Option<i64>;
    fn key_bytes(&self) -> Option<&[u8]>;
    fn value_bytes(&self) -> Option<&[u8]>;
    fn header_refs(&self) -> impl Iterator<Item = HeaderRef<'_>> + Clone;
}

impl SourceRecord for BorrowedMessage<'_> {
    fn source_topic(&self) -> &str {
        self.topic()
    }
    fn source_partition(&self) -> i32 {
        self.partition()
    }
    fn source_offset(&self) -> i64 {
        self.offset()
    }
    fn millis(&self) -> Option<i64> {
        self.timestamp().to_millis()
    }
    fn key_bytes(&self) -> Option<&[u8]> {
        self.key()
    }
    fn value_bytes(&self) -> Option<&[u8]> {
        self.payload()
    }
    fn header_refs(&self) -> impl Iterator<Item = HeaderRef<'_>> + Clone {
        let headers = self.headers();
        let n = headers.map_or(0, |h| h.count());
        (0..n)
            .filter_map(move |i| headers.map(|h| h.get(i)))
            .map(|h| (h.key.as_bytes(), h.value))
    }
}

/// A record walked in a fetched batch.
pub(super) struct Raw<'a> {
    sp: &'a SourcePartition,
    r: RawRecord<'a>,
}

impl SourceRecord for Raw<'_> {
    fn source_topic(&self) -> &str {
        &self.sp.topic
    }
    fn source_partition(&self) -> i32 {
        self.sp.partition
    }
    fn source_offset(&self) -> i64 {
        self.r.offset
    }
    fn millis(&self) -> Option<i64> {
        (self.r.timestamp >= 0).then_some(self.r.timestamp)
    }
    fn key_bytes(&self) -> Option<&[u8]> {
        self.r.key
    }
    fn value_bytes(&self) -> Option<&[u8]> {
        self.r.value
    }
    fn header_refs(&self) -> impl Iterator<Item = HeaderRef<'_>> + Clone {
        self.r.headers.clone()
    }
}

impl Runner<'_> {
    /// Copies the records of `chunk` from its fetch position on, skipping
    /// markers and aborted transactions; then the partition counts as read
    /// past the chunk.
    pub(super) fn copy_chunk(&self, f: &Fetcher, chunk: Chunk) {
        let mut aborted = Aborted::new(chunk.aborted.iter().copied());
        let mut scratch = self.cache.scratch.borrow_mut();
        for b in batches(&chunk.records) {
            let (head, bytes) = match b {
                Ok(b) => b,
                Err(e) => return self.unreadable(f, &chunk.sp, self.read_next(&chunk), e),
            };
            if head.last_offset < chunk.from || aborted.skip(&head, bytes) {
                continue;
            }
            let walk = match records(&head, bytes, &mut scratch) {
                Ok(w) => w,
                Err(e) => return self.unreadable(f, &chunk.sp, head.base_offset, e),
            };
            for r in walk {
                let r = match r {
                    Ok(r) => r,
                    Err(e) => return self.unreadable(f, &chunk.sp, head.base_offset, e),
                };
                if r.offset >= chunk.from {
                    self.copy(&Raw { sp: &chunk.sp, r });
                }
            }
        }
        f.delivered(&chunk);
    }

    fn read_next(&self, chunk: &Chunk) -> i64 {
        self.setup
            .state
            .lock()
            .get(&chunk.sp)
            .map_or(chunk.from, |p| p.read_next)
    }

    /// A batch kflip cannot read (corrupt, or compressed past its bound):
    /// the partition stops before it, with an alarm, rather than skip it.
    fn unreadable(&self, f: &Fetcher, sp: &SourcePartition, at: i64, e: RecordsError) {
        f.stop(sp, at);
        self.setup.state.error(format!(
            "cannot read the source batch of {}[{}] at offset {at}: {e}; the partition is not copied past it until the flow starts again",
            sp.topic, sp.partition
        ));
    }
}
