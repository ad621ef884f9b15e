//! A started flow: its clients, and the loop that reads the source until
//! the flow is stopped, then drains and checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::Offset;

use super::checkpoints::{ensure_state_topic, load_checkpoints};
use super::deliver::{Deliver, SourceStats};
use super::error::{Error, Side};
use super::flow::FlowSetup;
use super::membership::{Member, Release};
use super::scan::resume_point;
use super::state::{FlowState, SourcePartition};
use super::topics::Admin;
use crate::cluster::rdkafka::client_config;
use crate::offsets::OffsetMap;

/// Bound of each wait of a flow on its clients.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

/// A started flow: its clients and what it has assigned.
pub(super) struct Runner<'a> {
    pub(super) setup: &'a FlowSetup,
    pub(super) source: Arc<BaseConsumer<SourceStats>>,
    pub(super) producer: Arc<ThreadedProducer<Deliver>>,
    pub(super) source_admin: Admin,
    pub(super) target_admin: Admin,
    /// Source topics assigned, with their partition counts.
    pub(super) assigned: BTreeMap<String, i32>,
    /// Checkpointed maps not yet claimed by an assignment.
    pub(super) checkpoints: HashMap<SourcePartition, OffsetMap>,
    /// The source topic ids saved with those maps.
    pub(super) checkpoint_ids: HashMap<SourcePartition, uuid::Uuid>,
    /// A shared flow's membership in its group (`None`: this instance
    /// copies every partition).
    pub(super) member: Option<Member>,
}

impl<'a> Runner<'a> {
    pub(super) fn new(setup: &'a FlowSetup) -> Result<Runner<'a>, Error> {
        let st = &setup.state;
        let cfg = &st.cfg;
        let source: BaseConsumer<SourceStats> =
            client_config(&setup.clusters.source, "kflip-engine")
                .map_err(|e| {
                    Error::cluster(Side::Source, cfg.source.as_str(), "set up the login", e)
                })?
                .set("group.id", format!("_kflip-engine-{}", cfg.id))
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("isolation.level", "read_committed")
                .set("auto.offset.reset", "error")
                .set("statistics.interval.ms", "1000")
                // Brokers answer a fetch as soon as data is there; the wait only
                // matters when the source is idle, and on brokers that hold
                // every fetch for the whole wait (see `compat`).
                .set(
                    "fetch.wait.max.ms",
                    cfg.fetch_wait.as_millis().max(1).to_string(),
                )
                .set("fetch.max.bytes", "52428800")
                .set(
                    "max.partition.fetch.bytes",
                    cfg.fetch_partition_bytes.to_string(),
                )
                .set("fetch.min.bytes", cfg.fetch_min_bytes.to_string())
                .set("queued.max.messages.kbytes", "262144")
                .create_with_context(SourceStats(st.clone()))
                .map_err(|e| {
                    Error::cluster(
                        Side::Source,
                        cfg.source.as_str(),
                        "create the source consumer",
                        e,
                    )
                })?;
        let producer: ThreadedProducer<Deliver> =
            client_config(&setup.clusters.target, "kflip-engine")
                .map_err(|e| {
                    Error::cluster(Side::Target, cfg.target.as_str(), "set up the login", e)
                })?
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
                .map_err(|e| {
                    Error::cluster(
                        Side::Target,
                        cfg.target.as_str(),
                        "create the target producer",
                        e,
                    )
                })?;
        let source_admin = Admin::new(
            st.cfg.source.as_str(),
            Side::Source,
            &setup.clusters.source,
            setup.rt.clone(),
        )?;
        let target_admin = Admin::new(
            st.cfg.target.as_str(),
            Side::Target,
            &setup.clusters.target,
            setup.rt.clone(),
        )?;
        ensure_state_topic(&target_admin, &setup.state_topic)?;
        let source = Arc::new(source);
        let producer = Arc::new(producer);
        let member = if cfg.shared {
            // Partitions of an earlier start are this instance's only once
            // the group says so again.
            st.lock().clear();
            Some(Member::new(
                cfg,
                &setup.clusters.source,
                release(
                    st.clone(),
                    source.clone(),
                    producer.clone(),
                    setup.state_topic.clone(),
                ),
            )?)
        } else {
            None
        };
        let saved = load_checkpoints(setup.target(), &setup.state_topic, &cfg.id)?;
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
            member,
        })
    }

    pub(super) fn stopping(&self) -> bool {
        self.setup.stop.load(Ordering::Relaxed)
    }

    pub(super) fn run(&mut self) {
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
            if let Some(m) = &self.member {
                m.serve();
                if m.take_gained() {
                    // The previous owner's last checkpoint, then discovery
                    // starts the partitions at once.
                    self.reload_checkpoints();
                    next_discovery = Instant::now();
                }
            }
            self.rewind_failed();
            if self
                .setup
                .state
                .restore_requested
                .swap(false, Ordering::Relaxed)
            {
                self.copy_held_orphans();
            }
            match self.source.poll(Duration::from_millis(50)) {
                None => self.skip_markers(),
                Some(Ok(m)) => self.copy(&m),
                Some(Err(e)) => self.source_error(e),
            }
        }
        if let Some(m) = &self.member {
            // Hands every partition over, checkpointed.
            m.leave();
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
    pub(super) fn skip_markers(&self) {
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

    /// Re-reads failed partitions from their last acknowledged copy.
    pub(super) fn rewind_failed(&self) {
        let st = &self.setup.state;
        if !st.failures.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut waiting = false;
        let ready: Vec<(SourcePartition, i64)> = st
            .lock()
            .iter_mut()
            .filter(|(_, p)| p.failed)
            .filter(|(_, p)| {
                // Rewound once its copies in flight have all come back.
                waiting |= p.in_flight > 0;
                p.in_flight == 0
            })
            .map(|(k, p)| {
                p.failed = false;
                let at = resume_point(&p.map);
                p.read_next = at;
                (k.clone(), at)
            })
            .collect();
        if waiting {
            st.failures.store(true, Ordering::Relaxed);
        }
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

    pub(super) fn source_error(&self, e: KafkaError) {
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

/// How long a handover waits for the partition's copies and checkpoint.
const RELEASE_BOUND: Duration = Duration::from_secs(30);

/// What a shared flow does with partitions that leave this instance: stop
/// reading them, let their copies in flight land, checkpoint them (unless
/// the group already gave them away: the new owner's progress must not be
/// overwritten), and forget them.
fn release(
    st: Arc<FlowState>,
    source: Arc<BaseConsumer<SourceStats>>,
    producer: Arc<ThreadedProducer<Deliver>>,
    state_topic: String,
) -> Release {
    Box::new(move |parts, lost| {
        let held: Vec<SourcePartition> = {
            let g = st.lock();
            parts
                .iter()
                .filter(|p| g.contains_key(p))
                .cloned()
                .collect()
        };
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in &held {
            tpl.add_partition(&p.topic, p.partition);
        }
        if tpl.count() > 0 {
            if let Err(e) = source.incremental_unassign(&tpl) {
                tracing::warn!(flow = %st.cfg.id, error = %e, "cannot stop reading released partitions");
            }
        }
        let deadline = Instant::now() + RELEASE_BOUND;
        let busy = |st: &FlowState| {
            st.lock()
                .iter()
                .any(|(k, p)| p.in_flight > 0 && held.contains(k))
        };
        while busy(&st) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !lost {
            for (k, p) in st.lock().iter_mut() {
                if held.contains(k) {
                    p.dirty = true;
                }
            }
            let before = st.checkpoint_acks.load(Ordering::Relaxed);
            let queued = super::checkpoints::write_maps(&st, &producer, &state_topic, Some(&held));
            while st.checkpoint_acks.load(Ordering::Relaxed) < before + queued
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let mut g = st.lock();
        for p in &held {
            g.remove(p);
        }
        tracing::info!(flow = %st.cfg.id, partitions = held.len(), lost, "partitions released");
    })
}
