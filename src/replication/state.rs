//! A flow's shared state: per-partition offset maps and progress, and their
//! checkpoints in the state topic on the target cluster.
//!
//! Progress lives on the target, next to the data it describes. A checkpoint
//! record is keyed `FLOW|TOPIC|PARTITION` and holds the partition's encoded
//! [`OffsetMap`] (whose frontier is where copying resumes). The last record
//! per key wins, so the topic is created compacted. A checkpoint is only
//! written for what the target has acknowledged (acks=all), so it never
//! claims more than is there; after a crash, the records copied since the
//! last checkpoint are found again by their provenance headers (see
//! [`super::flow`]), so a restart neither loses nor duplicates them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::FlowConfig;
use crate::offsets::{OffsetMap, SourceOffset};

/// A partition of a source topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourcePartition {
    /// Source topic.
    pub topic: String,
    /// Partition index (the same on the target).
    pub partition: i32,
}

/// Replication state of one partition.
#[derive(Debug, Default)]
pub struct PartState {
    /// Source -> target offsets of every acknowledged copy.
    pub map: OffsetMap,
    /// Records sent to the target and not yet acknowledged.
    pub in_flight: u64,
    /// Source offset after the last record read.
    pub read_next: i64,
    /// Source log end, from the consumer's statistics.
    pub source_end: i64,
    /// Source timestamp of the oldest record read but not yet acknowledged,
    /// or of the last acknowledged one when nothing is pending.
    pub last_copied_ts: i64,
    /// Timestamp of the last record read.
    pub last_read_ts: i64,
    /// Changed since the last checkpoint.
    pub dirty: bool,
    /// A permanent produce error happened; the flow rewinds the partition
    /// to its frontier once nothing is in flight.
    pub failed: bool,
    /// The source topic's id when the map was started (`None`: not known,
    /// from an old checkpoint or a broker without topic ids). A shrunk log
    /// under the same id is a truncation; another id is a new topic.
    pub topic_id: Option<uuid::Uuid>,
    /// `topic_id` changed since the last checkpoint.
    pub topic_id_dirty: bool,
    /// A shared flow's copies acknowledged in the open transaction:
    /// (source offset, target offset, timestamp). They still count as in
    /// flight, and reach the map only once the transaction commits.
    pub pending: Vec<(i64, i64, Option<i64>)>,
}

impl PartState {
    /// The source offset below which every record was copied (and
    /// acknowledged) or skipped.
    pub fn handled(&self) -> i64 {
        let frontier = self.map.frontier().0;
        if self.in_flight == 0 && !self.failed {
            frontier.max(self.read_next)
        } else {
            frontier
        }
    }
}

/// Lag of one partition, as [`FlowState::lag`] reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionLag {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Source records not yet copied and acknowledged.
    pub records: i64,
    /// Age of the oldest such record, in seconds (0 when caught up).
    pub seconds: f64,
    /// Source log end.
    pub source_end: i64,
    /// Next source offset whose copy is not yet acknowledged.
    pub replicated_to: i64,
}

/// State shared between a flow's copy thread, its producer's delivery
/// callback, group sync and status queries.
#[derive(Debug)]
pub struct FlowState {
    /// The flow's config.
    pub cfg: FlowConfig,
    /// Every partition being copied.
    pub parts: Mutex<HashMap<SourcePartition, PartState>>,
    /// The source cluster's id, for provenance headers.
    pub source_id: String,
    /// The target cluster's id, for the loop check.
    pub target_id: String,
    /// Most recent error an operator should see, if any.
    pub last_error: Mutex<Option<String>>,
    /// A copy of held orphans failed (see `super::orphans`).
    pub restore_failed: std::sync::atomic::AtomicBool,
    /// Records the target acknowledged since the flow started.
    pub copied_records: std::sync::atomic::AtomicU64,
    /// Their key and value bytes.
    pub copied_bytes: std::sync::atomic::AtomicU64,
    /// Produce requests, batches and request bytes the batch writer sent.
    pub produce_sent: [std::sync::atomic::AtomicU64; 3],
    /// An operator asked for the held orphans to be copied now (`kflip
    /// orphans restore`); the flow's thread does it and clears this.
    pub restore_requested: std::sync::atomic::AtomicBool,
    /// A partition was marked `failed` since the copy loop last looked:
    /// the loop scans the partitions for rewinds only then, not once per
    /// record (a scan per record made each record cost O(partitions)).
    pub failures: std::sync::atomic::AtomicBool,
    /// Checkpoint records the target answered (acknowledged or refused),
    /// for a handover that waits for its checkpoint.
    pub checkpoint_acks: std::sync::atomic::AtomicU64,
    /// A shared flow's owner records acknowledged, and refused.
    pub owner_acks: std::sync::atomic::AtomicU64,
    /// See `owner_acks`.
    pub owner_failures: std::sync::atomic::AtomicU64,
    /// A shared flow's transactions committed.
    pub commits: std::sync::atomic::AtomicU64,
    /// A shared flow's maps of the partitions other instances copy, as
    /// their last checkpoints in the state topic say (see `super::remote`).
    pub remote: Mutex<HashMap<SourcePartition, OffsetMap>>,
    /// A checkpoint is asked for now (a planned switch's catch-up).
    pub checkpoint_asked: std::sync::atomic::AtomicBool,
    /// The `checkpoint_acks` that answer the last asked checkpoint.
    pub checkpoint_goal: std::sync::atomic::AtomicU64,
}

impl FlowState {
    /// New state for a flow between two clusters with these ids.
    pub fn new(cfg: FlowConfig, source_id: String, target_id: String) -> FlowState {
        FlowState {
            cfg,
            parts: Mutex::new(HashMap::new()),
            source_id,
            target_id,
            last_error: Mutex::new(None),
            restore_failed: Default::default(),
            copied_records: Default::default(),
            copied_bytes: Default::default(),
            produce_sent: Default::default(),
            restore_requested: Default::default(),
            failures: Default::default(),
            checkpoint_acks: Default::default(),
            owner_acks: Default::default(),
            owner_failures: Default::default(),
            commits: Default::default(),
            remote: Default::default(),
            checkpoint_asked: Default::default(),
            checkpoint_goal: Default::default(),
        }
    }

    /// Marks the partition whose checkpoint (or topic id) record with this
    /// state-topic key failed to be written, so the next checkpoint pass
    /// writes it again.
    pub fn retry_checkpoint(&self, key: Option<&[u8]>) {
        let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            return;
        };
        if let Some(sp) = parse_checkpoint_key(&self.cfg.id, key) {
            if let Some(p) = self.lock().get_mut(&sp) {
                p.dirty = true;
            }
        } else if let Some(sp) = parse_topic_id_key(&self.cfg.id, key) {
            if let Some(p) = self.lock().get_mut(&sp) {
                p.topic_id_dirty = true;
            }
        }
    }

    /// A shared flow's transaction committed: its acknowledged copies are
    /// copies now.
    pub fn promote(&self) {
        for p in self.lock().values_mut() {
            if p.pending.is_empty() {
                continue;
            }
            p.in_flight = p.in_flight.saturating_sub(p.pending.len() as u64);
            p.dirty = true;
            for (source, target, ts) in std::mem::take(&mut p.pending) {
                if let Err(e) = p
                    .map
                    .record(SourceOffset(source), crate::offsets::TargetOffset(target))
                {
                    tracing::error!(flow = %self.cfg.id, error = %e, "offset map rejected a committed copy");
                }
                if let Some(ts) = ts {
                    p.last_copied_ts = ts;
                }
            }
        }
    }

    /// Locks the partition table.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SourcePartition, PartState>> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an error for status and logs it.
    pub fn error(&self, message: String) {
        tracing::error!(flow = %self.cfg.id, "{message}");
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }

    /// Translates a committed source offset of `topic`/`partition` to the
    /// target offset to resume from. With `reverse`, the flow from this
    /// flow's target back to its source, records written on the target
    /// (during a failover) count too: see [`crate::offsets::translate_both`].
    /// A reverse flow that renames the topic differently, or has not read
    /// the partition yet, is left out. Only a partition this instance copies
    /// is translated (group syncs); the reverse flow's map may come from
    /// another instance of a shared flow.
    pub fn translate(
        &self,
        reverse: Option<&FlowState>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<i64> {
        self.translate_in(reverse, topic, partition, offset, false)
    }

    /// Like [`FlowState::translate`], also through the maps other instances
    /// of a shared flow checkpointed (a lower bound: such a map may be older
    /// than its owner's).
    pub fn translate_any(
        &self,
        reverse: Option<&FlowState>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<i64> {
        self.translate_in(reverse, topic, partition, offset, true)
    }

    fn translate_in(
        &self,
        reverse: Option<&FlowState>,
        topic: &str,
        partition: i32,
        offset: i64,
        others: bool,
    ) -> Option<i64> {
        let committed = SourceOffset(offset);
        let target_topic = self.cfg.target_topic(topic);
        let back = reverse
            .filter(|r| r.cfg.target_topic(&target_topic) == topic)
            .and_then(|r| {
                let key = SourcePartition {
                    topic: target_topic,
                    partition,
                };
                if let Some(p) = r.lock().get(&key) {
                    return crate::offsets::reverse_bound(
                        &p.map,
                        SourceOffset(p.handled()),
                        committed,
                    );
                }
                let remote = r.remote.lock().unwrap_or_else(|e| e.into_inner());
                let map = remote.get(&key)?;
                let handled = SourceOffset(crate::replication::flow::resume_point(map));
                crate::offsets::reverse_bound(map, handled, committed)
            });
        let key = SourcePartition {
            topic: topic.to_string(),
            partition,
        };
        let through = |map: &OffsetMap| -> Option<i64> {
            let t = match back {
                Some(b) => {
                    let b = crate::offsets::past_copies(map, b);
                    match crate::offsets::forward_bound(map, committed) {
                        Some(f) => f.min(b),
                        None => b,
                    }
                }
                None => map.translate(committed)?,
            };
            Some(t.0)
        };
        if let Some(p) = self.lock().get(&key) {
            return through(&p.map);
        }
        if !others {
            return None;
        }
        let remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        through(remote.get(&key)?)
    }

    /// Per-partition lag, sorted by topic and partition.
    pub fn lag(&self) -> Vec<PartitionLag> {
        let now = now_ms();
        let mut out: Vec<PartitionLag> = self
            .lock()
            .iter()
            .map(|(k, p)| {
                // Skipped records (transaction markers, aborted records)
                // count as handled once nothing is in flight.
                let replicated_to = p
                    .handled()
                    .max(p.map.runs().last().map(|r| r.source_end().0).unwrap_or(0));
                // Records read but not yet acknowledged count even when
                // the statistics' log end is older than the last read.
                let records = (p.source_end.max(p.read_next) - replicated_to).max(0);
                let seconds = if records == 0 || p.last_read_ts <= 0 {
                    0.0
                } else {
                    // A partition that never copied anything (every record
                    // skipped so far) has no copy time to count from.
                    let since = if p.last_copied_ts > 0 {
                        p.last_copied_ts.min(p.last_read_ts)
                    } else {
                        p.last_read_ts
                    };
                    ((now - since).max(0) as f64) / 1000.0
                };
                PartitionLag {
                    topic: k.topic.clone(),
                    partition: k.partition,
                    records,
                    seconds,
                    source_end: p.source_end.max(p.read_next),
                    replicated_to,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

/// The state topic key of a partition's checkpoint.
pub fn checkpoint_key(flow: &str, sp: &SourcePartition) -> String {
    format!("{flow}|{}|{}", sp.topic, sp.partition)
}

/// Parses a checkpoint key back; `None` for another flow's or a foreign key.
pub fn parse_checkpoint_key(flow: &str, key: &str) -> Option<SourcePartition> {
    let rest = key.strip_prefix(flow)?.strip_prefix('|')?;
    let (topic, partition) = rest.rsplit_once('|')?;
    Some(SourcePartition {
        topic: topic.to_string(),
        partition: partition.parse().ok()?,
    })
}

/// The state topic key of the source topic id a partition's map belongs
/// to. A key of its own, so checkpoints written before ids were kept, and
/// kflips that do not know it, read the same.
pub fn topic_id_key(flow: &str, sp: &SourcePartition) -> String {
    format!("topic-id|{}", checkpoint_key(flow, sp))
}

/// Parses a topic id key back; `None` for another flow's or a foreign key.
pub fn parse_topic_id_key(flow: &str, key: &str) -> Option<SourcePartition> {
    parse_checkpoint_key(flow, key.strip_prefix("topic-id|")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_keys_round_trip_and_ignore_other_flows() {
        let sp = SourcePartition {
            topic: "orders.eu".into(),
            partition: 4,
        };
        let k = checkpoint_key("dc1->dc2", &sp);
        assert_eq!(parse_checkpoint_key("dc1->dc2", &k), Some(sp.clone()));
        assert_eq!(parse_checkpoint_key("dc2->dc1", &k), None);
        assert_eq!(parse_checkpoint_key("dc1->dc2", "dc1->dc2|t|x"), None);
        let id = topic_id_key("dc1->dc2", &sp);
        assert_eq!(parse_topic_id_key("dc1->dc2", &id), Some(sp.clone()));
        assert_eq!(parse_checkpoint_key("dc1->dc2", &id), None);
        assert_eq!(parse_topic_id_key("dc1->dc2", &k), None);
    }
}
