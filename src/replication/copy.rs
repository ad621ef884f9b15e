//! Copying one source record to the target, with its provenance header,
//! or skipping it when it would loop; and copying held orphans.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::chunk::{HeaderRef, SourceRecord};
use super::deliver::RESTORED;
use super::provenance::{self, Decision, Verdict};
use super::runner::Runner;
use super::scan::scan;
use super::state::{now_ms, FlowState, SourcePartition};
use super::writer::batch::Each;
use crate::offsets::SourceOffset;

impl Runner<'_> {
    /// Copies the orphan ranges held so far (the flow's policy is now
    /// `orphans: copy`): each record that is the source's own, with its
    /// provenance header, after whatever the target holds now. The copies
    /// are not in the offset map (their place in the target is out of
    /// order); a range counts as copied once every copy is acknowledged.
    pub(super) fn copy_held_orphans(&self) {
        let st = &self.setup.state;
        for range in self.setup.orphans.held(&st.cfg.id) {
            st.restore_failed.store(false, Ordering::Relaxed);
            let target_topic = st.cfg.target_topic(&range.topic);
            let mut sent = 0u64;
            let read = scan(
                self.setup.source(),
                &range.topic,
                range.partition,
                range.from,
                |m| {
                    if m.offset() >= range.to {
                        return;
                    }
                    let decision = decide(st, m, &target_topic, now_ms());
                    if decision == Decision::Skip {
                        return;
                    }
                    let mut rec: BaseRecord<'_, [u8], [u8], usize> =
                        BaseRecord::with_opaque_to(&target_topic, RESTORED)
                            .partition(range.partition)
                            .headers(copy_headers(m, &decision));
                    if let Some(ts) = m.timestamp().to_millis() {
                        rec = rec.timestamp(ts);
                    }
                    if let Some(k) = m.key() {
                        rec = rec.key(k);
                    }
                    if let Some(v) = m.payload() {
                        rec = rec.payload(v);
                    }
                    while let Err((e, back)) = self.producer.send(rec) {
                        if !matches!(
                            e,
                            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                        ) {
                            st.error(format!("cannot queue an orphan for the target: {e}"));
                            st.restore_failed.store(true, Ordering::Relaxed);
                            return;
                        }
                        rec = back;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    sent += 1;
                },
            );
            self.drain();
            match read {
                Ok(()) if !st.restore_failed.load(Ordering::Relaxed) => {
                    self.setup.orphans.copied(&range);
                    tracing::warn!(flow = %st.cfg.id, topic = %range.topic, partition = range.partition, from = range.from, to = range.to, records = sent, "held orphans copied to the target (after the records written there since)");
                }
                Ok(()) => {}
                Err(e) => st.error(format!(
                    "cannot read orphans of {}[{}] to copy them: {e}",
                    range.topic, range.partition
                )),
            }
        }
    }

    /// Copies one source record, or skips it if it would loop.
    pub(super) fn copy(&self, m: &impl SourceRecord) {
        let st = &self.setup.state;
        let topic = m.source_topic();
        let target_topic = self.cache.target(&st.cfg, topic);
        let (partition, offset) = (m.source_partition(), m.source_offset());
        let now = self.cache.now_ms();
        let ts = m.millis().unwrap_or(now);
        let verdict =
            provenance::verdict(origin_header(m), partition, (&st.target_id, &target_topic));
        {
            let key = self.cache.key(topic, partition);
            // Before the state lock: the first check after a disaster reads
            // the source log end.
            let hold = self.setup.orphans.check(
                &st.cfg.id,
                &key,
                (offset, ts),
                verdict != Verdict::Skip,
                st.cfg.copy_orphans,
                || {
                    self.source_admin
                        .watermarks(topic, partition)
                        .ok()
                        .map(|w| w.1)
                },
            );
            let mut parts = st.lock();
            if !parts.contains_key(&*key) {
                // A shared flow's partition that just left this instance.
                if st.cfg.shared {
                    return;
                }
                parts.insert(key.clone(), Default::default());
            }
            let Some(p) = parts.get_mut(&*key) else {
                return;
            };
            p.read_next = offset + 1;
            p.last_read_ts = ts;
            if verdict == Verdict::Skip || hold {
                if p.in_flight == 0 {
                    p.map.advance_frontier(SourceOffset(offset + 1));
                    p.dirty = true;
                }
                return;
            }
            if p.in_flight == 0 {
                p.last_copied_ts = ts;
            }
            p.in_flight += 1;
        }
        if let Some(w) = &self.writer {
            if !w.wait_for_room(|| self.stopping()) {
                self.unsend(topic, partition);
                return;
            }
            let mut buf = self.cache.origin.borrow_mut();
            let origin = match verdict {
                Verdict::New => {
                    buf.clear();
                    provenance::write_origin(
                        &mut buf,
                        (&st.source_id, topic, partition, offset),
                        now,
                    );
                    Some(buf.as_str())
                }
                _ => None,
            };
            let size = record_size(m, origin);
            let origin = origin.map(|o| (provenance::HEADER.as_bytes(), Some(o.as_bytes())));
            w.append_each(
                (&target_topic, partition),
                &[()],
                |_| size,
                |_, b| {
                    b.push(
                        offset,
                        ts,
                        m.key_bytes(),
                        m.value_bytes(),
                        Each(own_headers(m, origin.is_some())),
                        origin,
                    )
                },
            );
            return;
        }
        let decision = match verdict {
            Verdict::New => Decision::CopyNew(provenance::Origin {
                cluster: st.source_id.clone(),
                topic: topic.to_string(),
                partition,
                offset,
                first_copy_ms: now,
            }),
            Verdict::Keep => Decision::CopyKeep,
            Verdict::Skip => Decision::Skip,
        };
        let mut rec: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&target_topic, offset as usize)
                .partition(partition)
                .timestamp(ts)
                .headers(copy_headers(m, &decision));
        if let Some(k) = m.key_bytes() {
            rec = rec.key(k);
        }
        if let Some(v) = m.value_bytes() {
            rec = rec.payload(v);
        }
        loop {
            match self.producer.send(rec) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(2));
                    if self.stopping() {
                        self.unsend(topic, partition);
                        return;
                    }
                }
                Err((e, _)) => {
                    st.error(format!(
                        "cannot queue {topic}[{partition}]@{offset} for the target: {e}"
                    ));
                    self.unsend(topic, partition);
                    if let Some(p) = st.lock().get_mut(&SourcePartition {
                        topic: topic.to_string(),
                        partition,
                    }) {
                        p.failed = true;
                        st.failures
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    return;
                }
            }
        }
    }

    pub(super) fn unsend(&self, topic: &str, partition: i32) {
        self.unsend_n(topic, partition, 1);
    }

    /// `n` copies counted in flight were not sent after all.
    pub(super) fn unsend_n(&self, topic: &str, partition: i32, n: u64) {
        if let Some(p) = self.setup.state.lock().get_mut(&SourcePartition {
            topic: topic.to_string(),
            partition,
        }) {
            p.in_flight = p.in_flight.saturating_sub(n);
        }
    }
}

/// A copy's own headers: the record's, less a `kflip-origin` header the
/// copy's new origin replaces.
pub(super) fn own_headers(
    m: &impl SourceRecord,
    replacing: bool,
) -> impl Iterator<Item = HeaderRef<'_>> + Clone {
    m.header_refs()
        .filter(move |h| !(replacing && h.0 == provenance::HEADER.as_bytes()))
}

/// The size of `m`'s copy in a batch, with `origin` if given, within a
/// few bytes of varints.
pub(super) fn record_size(m: &impl SourceRecord, origin: Option<&str>) -> usize {
    let header = |(k, v): HeaderRef<'_>| 10 + k.len() + v.map_or(0, <[u8]>::len);
    32 + m.key_bytes().map_or(0, <[u8]>::len)
        + m.value_bytes().map_or(0, <[u8]>::len)
        + own_headers(m, origin.is_some()).map(header).sum::<usize>()
        + origin.map_or(0, |o| {
            header((provenance::HEADER.as_bytes(), Some(o.as_bytes())))
        })
}

/// The value of a record's `kflip-origin` header, if it has one.
fn origin_header(m: &impl SourceRecord) -> Option<&[u8]> {
    m.header_refs()
        .find(|h| h.0 == provenance::HEADER.as_bytes())
        .and_then(|h| h.1)
}

/// The provenance decision for a record read from the source.
fn decide(st: &FlowState, m: &impl SourceRecord, target_topic: &str, now: i64) -> Decision {
    provenance::decide(
        origin_header(m),
        (
            &st.source_id,
            m.source_topic(),
            m.source_partition(),
            m.source_offset(),
        ),
        (&st.target_id, target_topic),
        now,
    )
}

/// What the copy loop keeps between records instead of making it again for
/// each: the target name of the topic being read, the wall clock (read
/// every 64 records: provenance keeps the first copy's time to the
/// millisecond, not to the record), and the provenance value's buffer.
#[derive(Default)]
pub(super) struct CopyCache {
    topic: std::cell::RefCell<(String, std::sync::Arc<str>)>,
    /// The last record's source partition, the key of its state.
    key: std::cell::RefCell<SourcePartition>,
    clock: std::cell::Cell<(u32, i64)>,
    pub(super) origin: std::cell::RefCell<String>,
    /// Where a compressed source batch is decompressed.
    pub(super) scratch: std::cell::RefCell<Vec<u8>>,
}

impl CopyCache {
    pub(super) fn target(
        &self,
        cfg: &crate::config::FlowConfig,
        topic: &str,
    ) -> std::sync::Arc<str> {
        let mut c = self.topic.borrow_mut();
        if c.0 != topic || c.1.is_empty() {
            *c = (topic.to_string(), cfg.target_topic(topic).into());
        }
        c.1.clone()
    }

    /// `topic[partition]` as a state key, made again only when the
    /// partition changes.
    fn key(&self, topic: &str, partition: i32) -> std::cell::Ref<'_, SourcePartition> {
        {
            let mut k = self.key.borrow_mut();
            if k.partition != partition || k.topic != topic {
                k.topic.clear();
                k.topic.push_str(topic);
                k.partition = partition;
            }
        }
        self.key.borrow()
    }

    pub(super) fn now_ms(&self) -> i64 {
        let (n, t) = self.clock.get();
        let t = if n % 64 == 0 { now_ms() } else { t };
        self.clock.set((n.wrapping_add(1), t));
        t
    }
}

/// A copy's headers: the record's own, plus the provenance header when the
/// record had none.
fn copy_headers(m: &impl SourceRecord, decision: &Decision) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(m.header_refs().count() + 1);
    // A new origin replaces whatever `kflip-origin` the record carried (an
    // unparsable or forwarded one): a copy carries exactly one, or the
    // flow back would read the stale one first and copy it again.
    let replacing = matches!(decision, Decision::CopyNew(_));
    for (key, value) in m.header_refs() {
        if replacing && key == provenance::HEADER.as_bytes() {
            continue;
        }
        out = out.insert(Header {
            key: &String::from_utf8_lossy(key),
            value,
        });
    }
    if let Decision::CopyNew(o) = decision {
        let v = o.encode();
        out = out.insert(Header {
            key: provenance::HEADER,
            value: Some(v.as_bytes()),
        });
    }
    out
}
