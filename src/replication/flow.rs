//! One flow's copy loop, on its own thread.
//!
//! A librdkafka consumer reads the source (read_committed, manual
//! assignment, no group); an idempotent librdkafka producer writes the
//! target with acks=all, batching and several requests in flight, and never
//! gives up on a record (`message.timeout.ms=0`), so records of a partition
//! land in order with no gaps. Each delivery report records the record's
//! (source offset, target offset) in the partition's [`OffsetMap`]; only
//! acknowledged copies are in a map, and only maps are checkpointed, so
//! progress never runs ahead of the target.
//!
//! On start (and on restart after a crash or `kill -9`), a partition's map
//! comes from its last checkpoint, then the target partition is read from
//! where the checkpoint ends: every record whose provenance header names
//! this source partition extends the map. Copying resumes right after the
//! last record found, so records written after the last checkpoint are
//! neither lost nor copied twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::provenance::{self, Decision, Origin};
use super::state::{now_ms, parse_checkpoint_key, FlowState, SourcePartition};
use super::topics::Admin;
use crate::cluster::rdkafka::client_config;
use crate::config::ClusterConfig;
use crate::offsets::{OffsetMap, SourceOffset, TargetOffset};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Delivery opaque of checkpoint records (data records carry their source offset).
pub(super) const CHECKPOINT: usize = usize::MAX;
/// Delivery opaque of restored orphans (not recorded in the offset map).
const RESTORED: usize = usize::MAX - 1;

/// What a flow thread needs to start.
pub struct FlowStart {
    /// The flow.
    pub cfg: crate::config::FlowConfig,
    /// How to reach its source and target.
    pub clusters: FlowClusters,
    /// Name of the state topic.
    pub state_topic: String,
    /// Set to stop the thread.
    pub stop: Arc<AtomicBool>,
    /// Runtime for admin futures.
    pub rt: tokio::runtime::Handle,
    /// Where the flow publishes its state once the cluster ids are known.
    pub slot: Arc<std::sync::Mutex<Option<Arc<FlowState>>>>,
    /// The engine's orphan watch.
    pub orphans: super::orphans::Orphans,
}

/// How to reach the two clusters of a flow, as the config said when the
/// flow started. A reload that changes any of it restarts the flow.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowClusters {
    /// The cluster records are read from.
    pub source: ClusterConfig,
    /// The cluster records are written to.
    pub target: ClusterConfig,
}

/// A flow whose clusters answered.
pub(super) struct FlowSetup {
    pub(super) state: Arc<FlowState>,
    pub(super) clusters: FlowClusters,
    pub(super) state_topic: String,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) orphans: super::orphans::Orphans,
}

/// Asks both clusters for their ids and publishes the flow's state.
fn resolve(start: &FlowStart) -> Result<FlowSetup, String> {
    let id = |cluster: &ClusterConfig, name: &str| -> Result<String, String> {
        let admin = Admin::new(name, cluster, start.rt.clone())?;
        admin.brokers()?;
        Ok(admin.cluster_id().unwrap_or_else(|| name.to_string()))
    };
    let source_id = id(&start.clusters.source, start.cfg.source.as_str())?;
    let target_id = id(&start.clusters.target, start.cfg.target.as_str())?;
    let existing = start.slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let state = match existing {
        Some(s) if s.source_id == source_id && s.target_id == target_id => s,
        _ => {
            let s = Arc::new(FlowState::new(start.cfg.clone(), source_id, target_id));
            *start.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
            s
        }
    };
    Ok(FlowSetup {
        state,
        clusters: start.clusters.clone(),
        state_topic: start.state_topic.clone(),
        stop: start.stop.clone(),
        rt: start.rt.clone(),
        orphans: start.orphans.clone(),
    })
}

/// Producer callbacks: record acknowledged copies in the offset maps.
pub(super) struct Deliver(Arc<FlowState>);

impl ClientContext for Deliver {}

impl ProducerContext for Deliver {
    type DeliveryOpaque = usize;

    fn delivery(&self, r: &DeliveryResult<'_>, source_offset: usize) {
        let m = match r {
            Ok(m) => m,
            Err((e, m)) => {
                if source_offset == CHECKPOINT {
                    tracing::warn!(flow = %self.0.cfg.id, error = %e, "checkpoint write failed; will retry");
                    self.0.retry_checkpoint(m.key());
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
                    }
                }
                return;
            }
        };
        if source_offset == CHECKPOINT || source_offset == RESTORED {
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
pub(super) struct SourceStats(Arc<FlowState>);

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

/// Runs a flow until `stop` is set; returns when drained. Unreachable
/// clusters are retried with backoff.
pub fn run(start: FlowStart) {
    let mut delay = Duration::from_millis(500);
    while !start.stop.load(Ordering::Relaxed) {
        let attempt = resolve(&start).and_then(|setup| {
            let mut r = Runner::new(&setup)?;
            r.run();
            Ok(())
        });
        match attempt {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(flow = %start.cfg.id, error = %e, "flow cannot start; retrying");
                let until = Instant::now() + delay;
                while Instant::now() < until && !start.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// A started flow: its clients and what it has assigned.
pub(super) struct Runner<'a> {
    pub(super) setup: &'a FlowSetup,
    pub(super) source: BaseConsumer<SourceStats>,
    pub(super) producer: ThreadedProducer<Deliver>,
    pub(super) source_admin: Admin,
    pub(super) target_admin: Admin,
    /// Source topics assigned, with their partition counts.
    pub(super) assigned: BTreeMap<String, i32>,
    /// Checkpointed maps not yet claimed by an assignment.
    pub(super) checkpoints: HashMap<SourcePartition, OffsetMap>,
    /// The source topic ids saved with those maps.
    pub(super) checkpoint_ids: HashMap<SourcePartition, uuid::Uuid>,
}

impl<'a> Runner<'a> {
    fn new(setup: &'a FlowSetup) -> Result<Runner<'a>, String> {
        let st = &setup.state;
        let cfg = &st.cfg;
        let source: BaseConsumer<SourceStats> =
            client_config(&setup.clusters.source, "kflip-engine")
                .set("group.id", format!("_kflip-engine-{}", cfg.id))
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("isolation.level", "read_committed")
                .set("auto.offset.reset", "error")
                .set("statistics.interval.ms", "1000")
                // Brokers answer a fetch as soon as data is there; the wait only
                // matters when the source is idle, and on brokers that hold
                // every fetch for the whole wait (tansu 0.6).
                .set(
                    "fetch.wait.max.ms",
                    cfg.fetch_wait.as_millis().max(1).to_string(),
                )
                .set("fetch.max.bytes", "52428800")
                .set(
                    "max.partition.fetch.bytes",
                    cfg.fetch_partition_bytes.to_string(),
                )
                .set("queued.max.messages.kbytes", "262144")
                .create_with_context(SourceStats(st.clone()))
                .map_err(|e| format!("source consumer: {e}"))?;
        let producer: ThreadedProducer<Deliver> =
            client_config(&setup.clusters.target, "kflip-engine")
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("max.in.flight.requests.per.connection", "5")
                .set("message.timeout.ms", "0")
                .set("linger.ms", cfg.linger.as_millis().to_string())
                .set("batch.size", cfg.batch_bytes.to_string())
                .set(
                    "queue.buffering.max.messages",
                    cfg.max_buffered_records.to_string(),
                )
                .set("queue.buffering.max.kbytes", "1048576")
                .set("compression.type", "none")
                .create_with_context(Deliver(st.clone()))
                .map_err(|e| format!("target producer: {e}"))?;
        let source_admin = Admin::new(
            st.cfg.source.as_str(),
            &setup.clusters.source,
            setup.rt.clone(),
        )?;
        let target_admin = Admin::new(
            st.cfg.target.as_str(),
            &setup.clusters.target,
            setup.rt.clone(),
        )?;
        ensure_state_topic(&target_admin, &setup.state_topic)?;
        let saved = load_checkpoints(&setup.clusters.target, &setup.state_topic, &cfg.id)?;
        let checkpoints = saved.maps;
        setup.orphans.resume(&cfg.id, saved.watches);
        tracing::info!(flow = %cfg.id, checkpoints = checkpoints.len(), "flow started");
        Ok(Runner {
            setup,
            source,
            producer,
            source_admin,
            target_admin,
            assigned: BTreeMap::new(),
            checkpoints,
            checkpoint_ids: saved.ids,
        })
    }

    fn stopping(&self) -> bool {
        self.setup.stop.load(Ordering::Relaxed)
    }

    fn run(&mut self) {
        let cfg = self.setup.state.cfg.clone();
        let mut next_discovery = Instant::now();
        let mut next_config_sync = Instant::now() + cfg.config_sync_interval;
        let mut next_checkpoint = Instant::now() + cfg.checkpoint_interval;
        if cfg.copy_orphans {
            self.copy_held_orphans();
        }
        while !self.stopping() {
            let now = Instant::now();
            if now >= next_discovery {
                if let Err(e) = self.discover() {
                    self.setup.state.error(format!("topic discovery: {e}"));
                }
                next_discovery = now + cfg.discovery_interval;
            }
            if now >= next_config_sync {
                self.check_shrunk();
                self.sync_configs();
                next_config_sync = now + cfg.config_sync_interval;
            }
            if now >= next_checkpoint {
                self.checkpoint();
                next_checkpoint = now + cfg.checkpoint_interval;
            }
            self.rewind_failed();
            match self.source.poll(Duration::from_millis(50)) {
                None => self.skip_markers(),
                Some(Ok(m)) => self.copy(&m),
                Some(Err(e)) => self.source_error(e),
            }
        }
        self.drain();
        self.checkpoint();
        self.drain();
        tracing::info!(flow = %cfg.id, "flow stopped");
    }

    /// With nothing to read, moves each partition's read position past
    /// what the consumer skipped without delivering: transaction markers
    /// and aborted records (read_committed). A partition whose log ends in
    /// a marker would otherwise look one record behind for good, and a
    /// planned switch would wait out `proxy.switch_lag_timeout` for it.
    fn skip_markers(&self) {
        let Ok(positions) = self.source.position() else {
            return;
        };
        let st = &self.setup.state;
        let mut parts = st.lock();
        for e in positions.elements() {
            let Offset::Offset(at) = e.offset() else {
                continue;
            };
            let key = SourcePartition {
                topic: e.topic().to_string(),
                partition: e.partition(),
            };
            if let Some(p) = parts.get_mut(&key) {
                if at > p.read_next && p.in_flight == 0 && !p.failed {
                    p.read_next = at;
                }
            }
        }
    }

    /// Copies the orphan ranges held so far (the flow's policy is now
    /// `orphans: copy`): each record that is the source's own, with its
    /// provenance header, after whatever the target holds now. The copies
    /// are not in the offset map (their place in the target is out of
    /// order); a range counts as copied once every copy is acknowledged.
    fn copy_held_orphans(&self) {
        let st = &self.setup.state;
        for range in self.setup.orphans.held(&st.cfg.id) {
            st.restore_failed.store(false, Ordering::Relaxed);
            let target_topic = st.cfg.target_topic(&range.topic);
            let mut sent = 0u64;
            let read = scan(
                &self.setup.clusters.source,
                &range.topic,
                range.partition,
                range.from,
                |m| {
                    if m.offset() >= range.to {
                        return;
                    }
                    let decision = decide(st, m, &target_topic);
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

    /// Waits (bounded) until the producer has nothing in flight. Delivery
    /// reports are served only by the producer's own thread: serving them
    /// here too (`flush`, `poll`) would let two threads record the
    /// acknowledgements of one partition out of order.
    pub(super) fn drain(&self) {
        let deadline = Instant::now() + TIMEOUT;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Copies one source record, or skips it if it would loop.
    fn copy(&self, m: &BorrowedMessage<'_>) {
        let st = &self.setup.state;
        let topic = m.topic();
        let target_topic = st.cfg.target_topic(topic);
        let (partition, offset) = (m.partition(), m.offset());
        let ts = m.timestamp().to_millis().unwrap_or_else(now_ms);
        let decision = decide(st, m, &target_topic);
        {
            let key = SourcePartition {
                topic: topic.to_string(),
                partition,
            };
            // Before the state lock: the first check after a disaster reads
            // the source log end.
            let hold = self.setup.orphans.check(
                &st.cfg.id,
                &key,
                (offset, ts),
                decision != Decision::Skip,
                st.cfg.copy_orphans,
                || {
                    self.source_admin
                        .watermarks(topic, partition)
                        .ok()
                        .map(|w| w.1)
                },
            );
            let mut parts = st.lock();
            let p = parts.entry(key).or_default();
            p.read_next = offset + 1;
            p.last_read_ts = ts;
            if decision == Decision::Skip || hold {
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
        let mut rec: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&target_topic, offset as usize)
                .partition(partition)
                .timestamp(ts)
                .headers(copy_headers(m, &decision));
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Some(v) = m.payload() {
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
                    }
                    return;
                }
            }
        }
    }

    fn unsend(&self, topic: &str, partition: i32) {
        if let Some(p) = self.setup.state.lock().get_mut(&SourcePartition {
            topic: topic.to_string(),
            partition,
        }) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }

    /// Re-reads failed partitions from their last acknowledged copy.
    fn rewind_failed(&self) {
        let ready: Vec<(SourcePartition, i64)> = self
            .setup
            .state
            .lock()
            .iter_mut()
            .filter(|(_, p)| p.failed && p.in_flight == 0)
            .map(|(k, p)| {
                p.failed = false;
                let at = resume_point(&p.map);
                p.read_next = at;
                (k.clone(), at)
            })
            .collect();
        for (k, at) in ready {
            tracing::warn!(flow = %self.setup.state.cfg.id, topic = %k.topic, partition = k.partition, offset = at, "rewinding partition");
            if let Err(e) = self
                .source
                .seek(&k.topic, k.partition, Offset::Offset(at), TIMEOUT)
            {
                self.setup
                    .state
                    .error(format!("cannot rewind {}[{}]: {e}", k.topic, k.partition));
            }
        }
    }

    fn source_error(&self, e: KafkaError) {
        let (what, truncation) = match e {
            // librdkafka reports an out-of-range fetch as AutoOffsetReset,
            // as `auto.offset.reset=error` gives it nowhere to go.
            KafkaError::MessageConsumption(
                RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset,
            ) => ("a source offset is out of range", false),
            // librdkafka's leader-epoch check after a leader change (KIP-320).
            KafkaError::MessageConsumption(RDKafkaErrorCode::LogTruncation) => {
                ("the source consumer found a log truncated under it", true)
            }
            e => {
                tracing::warn!(flow = %self.setup.state.cfg.id, error = %e, "source consumer");
                return;
            }
        };
        // The error does not name its partition: check each one.
        tracing::warn!(flow = %self.setup.state.cfg.id, "{what}; checking each partition");
        let parts: Vec<(SourcePartition, i64)> = self
            .setup
            .state
            .lock()
            .iter()
            .map(|(k, p)| (k.clone(), p.read_next))
            .collect();
        let ids = self.source_topic_ids();
        let mut moved = false;
        for (sp, read) in parts {
            let at = self.check_range(&sp, read, &ids);
            moved |= at != read;
            self.seek(&sp, at);
        }
        if truncation && !moved {
            self.setup.state.error(format!(
                "{what}, but no partition's log now ends before what was copied, nor has another topic id: \
                 a truncated log may have grown past the copied offset again, and records written at the reused \
                 offsets below it were then not copied"
            ));
        }
    }
}

/// The provenance decision for a record read from the source.
fn decide(st: &FlowState, m: &BorrowedMessage<'_>, target_topic: &str) -> Decision {
    let existing = m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == provenance::HEADER)
            .and_then(|h| h.value)
    });
    provenance::decide(
        existing,
        (&st.source_id, m.topic(), m.partition(), m.offset()),
        (&st.target_id, target_topic),
        now_ms(),
    )
}

/// A copy's headers: the record's own, plus the provenance header when the
/// record had none.
fn copy_headers(m: &BorrowedMessage<'_>, decision: &Decision) -> OwnedHeaders {
    let headers = m.headers();
    let n = headers.map(|h| h.count()).unwrap_or(0);
    let mut out = OwnedHeaders::new_with_capacity(n + 1);
    // A new origin replaces whatever `kflip-origin` the record carried (an
    // unparsable or forwarded one): a copy carries exactly one, or the
    // flow back would read the stale one first and copy it again.
    let replacing = matches!(decision, Decision::CopyNew(_));
    if let Some(h) = headers {
        for hdr in h.iter() {
            if replacing && hdr.key == provenance::HEADER {
                continue;
            }
            out = out.insert(Header {
                key: hdr.key,
                value: hdr.value,
            });
        }
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

/// Where copying of a partition resumes: after the last acknowledged copy
/// or skipped record.
pub fn resume_point(map: &OffsetMap) -> i64 {
    let last = map.runs().last().map(|r| r.source_end().0).unwrap_or(0);
    last.max(map.frontier().0)
}

fn ensure_state_topic(admin: &Admin, topic: &str) -> Result<(), String> {
    let brokers = admin.brokers()?.max(1);
    let rf = brokers.min(3) as i16;
    let mut cfg = BTreeMap::new();
    cfg.insert("cleanup.policy".to_string(), "compact".to_string());
    match admin.create_topic(topic, 1, rf, &cfg) {
        Ok(_) => Ok(()),
        // Some brokers (tansu 0.6) refuse the config; a plain topic works
        // the same, but keeps every checkpoint ever written.
        Err(e) => {
            admin.create_topic(topic, 1, rf, &BTreeMap::new())?;
            tracing::error!(topic, error = %e, "the state topic was created without cleanup.policy=compact (the broker refused it): it keeps every checkpoint and grows without bound; set the policy on it by hand");
            Ok(())
        }
    }
}

/// What the state topic holds for a flow.
struct Saved {
    /// The latest checkpoint of each partition.
    maps: HashMap<SourcePartition, OffsetMap>,
    /// The orphan watches still open (see `super::orphans`).
    watches: Vec<(SourcePartition, i64)>,
    /// The source topic id each partition's map was started under.
    ids: HashMap<SourcePartition, uuid::Uuid>,
}

/// Reads the state topic: what it holds for `flow`.
fn load_checkpoints(
    target: &ClusterConfig,
    state_topic: &str,
    flow: &str,
) -> Result<Saved, String> {
    let mut out = HashMap::new();
    let mut ids = HashMap::new();
    let mut watches: HashMap<SourcePartition, Option<i64>> = HashMap::new();
    for (key, value) in read_partition(target, state_topic, 0, 0)? {
        let Some(key) = key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
            continue;
        };
        let text = || value.as_deref().and_then(|v| std::str::from_utf8(v).ok());
        if let Some(sp) = super::orphans::parse_watch_key(flow, key) {
            watches.insert(sp, text().and_then(|v| v.parse().ok()));
            continue;
        }
        if let Some(sp) = super::state::parse_topic_id_key(flow, key) {
            match text().map(uuid::Uuid::parse_str) {
                Some(Ok(id)) => {
                    ids.insert(sp, id);
                }
                Some(Err(e)) => {
                    tracing::warn!(%flow, topic = %sp.topic, partition = sp.partition, error = %e, "ignoring a bad saved topic id")
                }
                None => {
                    ids.remove(&sp);
                }
            }
            continue;
        }
        let Some(sp) = parse_checkpoint_key(flow, key) else {
            continue;
        };
        match value.as_deref().map(OffsetMap::decode) {
            Some(Ok(map)) => {
                out.insert(sp, map);
            }
            Some(Err(e)) => {
                tracing::warn!(%flow, topic = %sp.topic, partition = sp.partition, error = %e, "ignoring a bad checkpoint")
            }
            None => {}
        }
    }
    let watches = watches
        .into_iter()
        .filter_map(|(sp, from)| Some((sp, from?)))
        .collect();
    Ok(Saved {
        maps: out,
        watches,
        ids,
    })
}

/// A record's key and value.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Reads a partition from `from` to its current end; returns (key, value)
/// pairs. Used for the state topic.
fn read_partition(
    cluster: &ClusterConfig,
    topic: &str,
    partition: i32,
    from: i64,
) -> Result<Vec<KeyValue>, String> {
    let mut out = Vec::new();
    scan(cluster, topic, partition, from, |m| {
        out.push((m.key().map(|k| k.to_vec()), m.payload().map(|v| v.to_vec())));
    })?;
    Ok(out)
}

/// Calls `f` for every record of a partition from `from` to the end it has now.
pub(crate) fn scan(
    cluster: &ClusterConfig,
    topic: &str,
    partition: i32,
    from: i64,
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), String> {
    let c: BaseConsumer = client_config(cluster, "kflip-engine")
        .set("group.id", "_kflip-engine-scan")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        // Small fetches: some brokers (tansu 0.6) slow down badly building
        // large responses of records with headers, which this scan reads.
        .set("max.partition.fetch.bytes", "262144")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| format!("scan consumer: {e}"))?;
    let (low, high) = c
        .fetch_watermarks(topic, partition, TIMEOUT)
        .map_err(|e| format!("watermarks of {topic}[{partition}]: {e}"))?;
    let start = from.max(low);
    if start >= high {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))
        .map_err(|e| e.to_string())?;
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if Instant::now() > deadline {
            return Err(format!(
                "reading {topic}[{partition}] up to {high} timed out"
            ));
        }
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let done = m.offset() + 1 >= high;
                f(&m);
                if done {
                    return Ok(());
                }
            }
            Some(Err(e)) => return Err(format!("reading {topic}[{partition}]: {e}")),
            None => {}
        }
    }
}

/// Extends `map` with the copies of `sp` found on the target partition after
/// the map's end, using their provenance headers.
pub(crate) fn recover_from_target(
    target: &ClusterConfig,
    target_topic: &str,
    source_id: &str,
    sp: &SourcePartition,
    map: &mut OffsetMap,
) -> Result<usize, String> {
    let from = map.runs().last().map(|r| r.target_end().0).unwrap_or(0);
    let mut found = 0;
    scan(target, target_topic, sp.partition, from, |m| {
        let Some(o) = m
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == provenance::HEADER)
                    .and_then(|h| h.value)
            })
            .and_then(Origin::parse)
        else {
            return;
        };
        let ours = o.cluster == source_id && o.topic == sp.topic && o.partition == sp.partition;
        if ours
            && o.offset >= resume_point(map)
            && map
                .record(SourceOffset(o.offset), TargetOffset(m.offset()))
                .is_ok()
        {
            found += 1;
        }
    })?;
    Ok(found)
}
