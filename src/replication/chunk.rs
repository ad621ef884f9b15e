//! A source record as the copy loop sees it, from either reader; and the
//! walk of a fetched chunk: its batches, read_committed filtering, and
//! each record to `copy`.

use rdkafka::message::{BorrowedMessage, Headers, Message};

use super::copy::{own_headers, record_size};
use super::fetcher::{Chunk, Fetcher};
use super::provenance::{self, Verdict};
use super::runner::Runner;
use super::state::SourcePartition;
use super::writer::batch::{Each, Encoded};
use super::writer::Writer;
use crate::codec::batches::{batches, records, Aborted, RawRecord, Records};
use crate::codec::records::RecordsError;
use crate::offsets::SourceOffset;

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
            // Every batch goes through the read_committed filter, in order,
            // even one before the fetch position: its markers close
            // transactions the filter would otherwise count as open.
            if aborted.skip(&head, bytes) || head.last_offset < chunk.from {
                continue;
            }
            let walk = match records(&head, bytes, &mut scratch) {
                Ok(w) => w,
                Err(e) => return self.unreadable(f, &chunk.sp, head.base_offset, e),
            };
            if let Some(w) = self
                .writer
                .as_ref()
                .filter(|_| !self.setup.orphans.watching())
            {
                if let Err(e) = self.copy_batch(w, &chunk.sp, chunk.from, walk) {
                    return self.unreadable(f, &chunk.sp, head.base_offset, e);
                }
                continue;
            }
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

    /// Copies the records of one batch from `from` on through the writer,
    /// as `copy` does one by one, with no orphan watch running: the flow's
    /// state is locked once for the batch and the writer's queue once,
    /// instead of both for each record. Records before an unreadable one
    /// are copied.
    fn copy_batch(
        &self,
        w: &Writer,
        sp: &SourcePartition,
        from: i64,
        walk: Records<'_>,
    ) -> Result<(), RecordsError> {
        let st = &self.setup.state;
        let target_topic = self.cache.target(&st.cfg, &sp.topic);
        let now = self.cache.now_ms();
        let mut recs = Vec::with_capacity(walk.size_hint().1.unwrap_or(0).min(4096));
        let mut failed = Ok(());
        for r in walk {
            match r {
                Ok(r) if r.offset >= from => {
                    let r = Raw { sp, r };
                    let found = r
                        .header_refs()
                        .find(|h| h.0 == provenance::HEADER.as_bytes());
                    let verdict = provenance::verdict(
                        found.and_then(|h| h.1),
                        sp.partition,
                        (&st.target_id, &target_topic),
                    );
                    let ts = r.millis().unwrap_or(now);
                    // A new origin replaces a `kflip-origin` header: then
                    // the headers are copied one by one, without it.
                    let as_read = !(verdict == Verdict::New && found.is_some());
                    recs.push((r, verdict, ts, as_read));
                }
                Ok(_) => {}
                Err(e) => {
                    failed = Err(e);
                    break;
                }
            }
        }
        let mut copies = 0u64;
        {
            let mut parts = st.lock();
            let p = match parts.get_mut(sp) {
                Some(p) => p,
                // A shared flow's partition that just left this instance.
                None if st.cfg.shared => return failed,
                None => parts.entry(sp.clone()).or_default(),
            };
            for (r, verdict, ts, _) in &recs {
                p.read_next = r.r.offset + 1;
                p.last_read_ts = *ts;
                if *verdict == Verdict::Skip {
                    if p.in_flight == 0 {
                        p.map.advance_frontier(SourceOffset(r.r.offset + 1));
                        p.dirty = true;
                    }
                    continue;
                }
                if p.in_flight == 0 {
                    p.last_copied_ts = *ts;
                }
                p.in_flight += 1;
                copies += 1;
            }
        }
        if copies == 0 {
            return failed;
        }
        if !w.wait_for_room(|| self.stopping()) {
            self.unsend_n(&sp.topic, sp.partition, copies);
            return failed;
        }
        recs.retain(|x| x.1 != Verdict::Skip);
        let mut buf = self.cache.origin.borrow_mut();
        let origin_max = 10 + provenance::HEADER.len() + st.source_id.len() + sp.topic.len() + 64;
        let template = provenance::OriginTemplate::new(
            (st.source_id.as_str(), sp.topic.as_str(), sp.partition),
            now,
        );
        let origin = |buf: &mut String, r: &Raw<'_>| template.write(buf, r.r.offset);
        w.append_each(
            (&target_topic, sp.partition),
            &recs,
            // A new origin's size, at most: a few bytes more than the
            // record takes seal its batch a little early, never too late.
            |(r, verdict, _, as_read)| {
                let own = match as_read {
                    true => {
                        32 + r.key_bytes().map_or(0, <[u8]>::len)
                            + r.value_bytes().map_or(0, <[u8]>::len)
                            + r.r.headers.raw().len()
                    }
                    false => record_size(r, None),
                };
                own + if *verdict == Verdict::New {
                    origin_max
                } else {
                    0
                }
            },
            |(r, verdict, ts, as_read), batch| {
                let new = *verdict == Verdict::New;
                if new {
                    origin(&mut buf, r);
                }
                let o = new.then_some((provenance::HEADER.as_bytes(), Some(buf.as_bytes())));
                let (key, value) = (r.key_bytes(), r.value_bytes());
                if *as_read {
                    let h = &r.r.headers;
                    batch.push(r.r.offset, *ts, key, value, Encoded(h.raw(), h.len()), o);
                } else {
                    batch.push(r.r.offset, *ts, key, value, Each(own_headers(r, new)), o);
                }
            },
        );
        failed
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
