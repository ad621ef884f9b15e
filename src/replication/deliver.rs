//! librdkafka callbacks of a flow's clients: the producer's delivery
//! reports record acknowledged copies in the offset maps (only what the
//! target acknowledged is ever in a map, so checkpoints never run ahead of
//! it), and the source consumer's statistics give each partition's log end.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdkafka::consumer::ConsumerContext;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use super::state::{FlowState, SourcePartition};
use crate::offsets::{SourceOffset, TargetOffset};

/// Delivery opaque of checkpoint records (data records carry their source offset).
pub(super) const CHECKPOINT: usize = usize::MAX;
/// Delivery opaque of restored orphans (not recorded in the offset map).
pub(super) const RESTORED: usize = usize::MAX - 1;
/// Delivery opaque of a shared flow's owner records (see `super::txn`).
pub(super) const OWNER: usize = usize::MAX - 2;

/// Producer callbacks: record acknowledged copies in the offset maps.
pub(super) struct Deliver(pub(super) Arc<FlowState>);

impl ClientContext for Deliver {}

impl ProducerContext for Deliver {
    type DeliveryOpaque = usize;

    fn delivery(&self, r: &DeliveryResult<'_>, source_offset: usize) {
        let m = match r {
            Ok(m) => m,
            Err((e, m)) => {
                if source_offset == OWNER {
                    tracing::warn!(flow = %self.0.cfg.id, error = %e, "owner record write failed");
                    self.0.owner_failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if source_offset == CHECKPOINT {
                    tracing::warn!(flow = %self.0.cfg.id, error = %e, "checkpoint write failed; will retry");
                    self.0.retry_checkpoint(m.key());
                    self.0.checkpoint_acks.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if source_offset == RESTORED {
                    self.0.error(format!(
                        "copy of an orphan of {}[{}] failed: {e}; the range stays held",
                        m.topic(),
                        m.partition()
                    ));
                    self.0.restore_failed.store(true, Ordering::Relaxed);
                    return;
                }
                self.0.error(format!(
                    "copy of {}[{}] source offset {source_offset} failed permanently: {e}; rewinding the partition",
                    m.topic(),
                    m.partition()
                ));
                if let Some(topic) = self.0.cfg.source_topic(m.topic()) {
                    if let Some(p) = self.0.lock().get_mut(&SourcePartition {
                        topic,
                        partition: m.partition(),
                    }) {
                        p.in_flight = p.in_flight.saturating_sub(1);
                        p.failed = true;
                        self.0.failures.store(true, Ordering::Relaxed);
                    }
                }
                return;
            }
        };
        if source_offset == CHECKPOINT {
            self.0.checkpoint_acks.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if source_offset == OWNER {
            self.0.owner_acks.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let bytes = m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len);
        self.0.copied_records.fetch_add(1, Ordering::Relaxed);
        self.0
            .copied_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        if source_offset == RESTORED {
            return;
        }
        let Some(topic) = self.0.cfg.source_topic(m.topic()) else {
            return;
        };
        let mut parts = self.0.lock();
        let Some(p) = parts.get_mut(&SourcePartition {
            topic,
            partition: m.partition(),
        }) else {
            return;
        };
        if self.0.cfg.shared && !p.failed {
            // Counted as copied when its transaction commits.
            p.pending
                .push((source_offset as i64, m.offset(), m.timestamp().to_millis()));
            return;
        }
        p.in_flight = p.in_flight.saturating_sub(1);
        if p.failed {
            return;
        }
        match p
            .map
            .record(SourceOffset(source_offset as i64), TargetOffset(m.offset()))
        {
            Ok(()) => {
                p.dirty = true;
                if let Some(ts) = m.timestamp().to_millis() {
                    p.last_copied_ts = ts;
                }
            }
            Err(e) => {
                tracing::error!(flow = %self.0.cfg.id, error = %e, "offset map rejected an acknowledgement")
            }
        }
    }
}

/// Consumer callbacks: the source log end per partition, from statistics.
pub(super) struct SourceStats(pub(super) Arc<FlowState>);

impl ClientContext for SourceStats {
    fn stats(&self, s: Statistics) {
        let mut parts = self.0.lock();
        for (topic, t) in s.topics {
            for (pid, p) in t.partitions {
                if let Some(st) = parts.get_mut(&SourcePartition {
                    topic: topic.clone(),
                    partition: pid,
                }) {
                    if p.hi_offset >= 0 {
                        st.source_end = p.hi_offset;
                    }
                }
            }
        }
    }
}

impl ConsumerContext for SourceStats {}
