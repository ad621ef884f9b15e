//! A started flow: its clients, and the loop that reads the source until
//! the flow is stopped, then drains and checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};

use super::checkpoints::{ensure_state_topic, load_checkpoints};
use super::clients;
use super::deliver::Deliver;
use super::error::Error;
use super::fetcher::{Event, Fetcher};
use super::flow::FlowSetup;
use super::handover::Shared;
use super::scan::resume_point;
use super::source::{Source, POLL};
use super::state::SourcePartition;
use super::topics::Admin;
use super::writer::Writer;
use crate::offsets::OffsetMap;

/// Bound of each wait of a flow on its clients.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

/// A started flow: its clients and what it has assigned.
pub(super) struct Runner<'a> {
    pub(super) setup: &'a FlowSetup,
    pub(super) source: Source,
    /// Writes the copies (transactional in a shared flow).
    pub(super) producer: Arc<ThreadedProducer<Deliver>>,
    pub(super) source_admin: Admin,
    pub(super) target_admin: Admin,
    /// Source topics assigned, with their partition counts.
    pub(super) assigned: BTreeMap<String, i32>,
    /// Checkpointed maps not yet claimed by an assignment.
    pub(super) checkpoints: HashMap<SourcePartition, OffsetMap>,
    /// The source topic ids saved with those maps.
    pub(super) checkpoint_ids: HashMap<SourcePartition, uuid::Uuid>,
    /// A shared flow's membership and fencing (`None`: this instance
    /// copies every partition).
    pub(super) shared: Option<Shared>,
    /// Writes the copies of an unshared flow (`None`: `producer` does).
    pub(super) writer: Option<Writer>,
    pub(super) cache: super::copy::CopyCache,
}

impl<'a> Runner<'a> {
    pub(super) fn new(setup: &'a FlowSetup) -> Result<Runner<'a>, Error> {
        let st = &setup.state;
        let cfg = &st.cfg;
        let t0 = Instant::now();
        let (source_admin, target_admin) = setup.take_admins()?;
        ensure_state_topic(&target_admin, &setup.state_topic)?;
        let incarnation = cfg.shared.then(|| super::txn::incarnation(&cfg.id));
        // A shared flow's partitions follow its group, through librdkafka's
        // consumer; `KFLIP_ENGINE_SOURCE=librdkafka` reads an unshared
        // flow's source with it too (the fetcher's fallback).
        let source = if incarnation.is_some()
            || std::env::var("KFLIP_ENGINE_SOURCE").is_ok_and(|v| v == "librdkafka")
        {
            Source::Consumer(Arc::new(clients::source_consumer(setup)?))
        } else {
            Source::Fetcher(Fetcher::start(
                st.clone(),
                setup.clusters.source.clone(),
                setup.rt.clone(),
            ))
        };
        let producer = Arc::new(clients::target_producer(setup, incarnation.as_deref())?);
        // The writer's producer id, asked for while the checkpoints load.
        let writer_id = incarnation
            .is_none()
            .then(|| Writer::request_id(&setup.clusters.target, &setup.rt));
        let saved = load_checkpoints(setup.target(), &setup.state_topic, &cfg.id)?;
        let shared = match incarnation {
            Some(id) => {
                let consumer = source
                    .consumer()
                    .ok_or_else(|| Error::Internal("a shared flow reads with a consumer".into()))?;
                Some(Shared::start(setup, id, consumer, &producer, saved.owners)?)
            }
            None => None,
        };
        // Copies of a shared flow go through the transactional producer.
        let writer = match writer_id {
            Some(id) => Some(Writer::start(
                st.clone(),
                setup.clusters.target.clone(),
                setup.rt.clone(),
                id,
            )?),
            None => None,
        };
        let checkpoints = saved.maps;
        setup.orphans.resume(&cfg.id, saved.watches);
        tracing::info!(flow = %cfg.id, checkpoints = checkpoints.len(), shared = cfg.shared, setup_ms = t0.elapsed().as_millis() as u64, "flow started");
        Ok(Runner {
            setup,
            source,
            producer,
            source_admin,
            target_admin,
            assigned: BTreeMap::new(),
            checkpoints,
            checkpoint_ids: saved.ids,
            shared,
            writer,
            cache: Default::default(),
        })
    }

    /// Where progress is written: a shared flow's checkpoints and owner
    /// records go outside its transactions.
    pub(super) fn state_producer(&self) -> &ThreadedProducer<Deliver> {
        match &self.shared {
            Some(s) => &s.state_producer,
            None => &self.producer,
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.setup.stop.load(Ordering::Relaxed)
    }

    /// Copies until the flow is stopped; an error is a shared flow's
    /// incarnation that was fenced or whose transaction failed: the flow
    /// starts again from what was committed.
    pub(super) fn run(&mut self) -> Result<(), Error> {
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
                self.refresh_remote();
                next_config_sync = now + cfg.config_sync_interval;
            }
            if now >= next_checkpoint || self.setup.state.checkpoint_asked.load(Ordering::Relaxed) {
                self.checkpoint();
                next_checkpoint = now + cfg.checkpoint_interval;
            }
            if let Some(e) = self.writer.as_ref().and_then(Writer::failed) {
                return Err(e);
            }
            if self.serve_group()? {
                next_discovery = Instant::now();
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
            match &self.source {
                Source::Consumer(c) => match c.poll(POLL) {
                    None => self.skip_markers(),
                    Some(Ok(m)) => self.copy(&m),
                    Some(Err(e)) => self.source_error(e),
                },
                Source::Fetcher(f) => match f.poll(POLL) {
                    None => self.skip_markers(),
                    Some(Event::Records(c)) => self.copy_chunk(f, c),
                    Some(Event::OutOfRange(sp, _)) => {
                        self.recheck("a source offset is out of range", false, Some(sp))
                    }
                    Some(Event::Diverged(sp, _, end)) => {
                        tracing::warn!(flow = %cfg.id, topic = %sp.topic, partition = sp.partition, log_end = end, "the source log diverged from what was read (KIP-320)");
                        self.diverged(&sp, end)
                    }
                },
            }
        }
        // Hands every partition over, committed and checkpointed.
        self.finish_shared();
        self.drain();
        self.checkpoint();
        self.drain();
        tracing::info!(flow = %cfg.id, "flow stopped");
        Ok(())
    }

    /// With nothing to read, moves each partition's read position past
    /// what the consumer skipped without delivering: transaction markers
    /// and aborted records (read_committed). A partition whose log ends in
    /// a marker would otherwise look one record behind for good, and a
    /// planned switch would wait out `proxy.switch_lag_timeout` for it.
    pub(super) fn skip_markers(&self) {
        let positions = self.source.positions();
        let st = &self.setup.state;
        let mut parts = st.lock();
        for (key, at) in positions {
            if let Some(p) = parts.get_mut(&key) {
                if at > p.read_next && p.in_flight == 0 && !p.failed {
                    p.read_next = at;
                    // Checkpointed too: another instance of a shared flow
                    // reads from the map how far this one has handled.
                    if p.map.frontier().0 < at {
                        p.map.advance_frontier(crate::offsets::SourceOffset(at));
                        p.dirty = true;
                    }
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
        let busy = || {
            self.producer.in_flight_count() > 0
                || self
                    .writer
                    .as_ref()
                    .is_some_and(|w| w.unacked() > 0 && w.failed().is_none())
        };
        while busy() && Instant::now() < deadline {
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
            self.seek(&k, at);
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
        self.recheck(what, truncation, None);
    }

    /// Checks where partition `only` (or each partition) is read against
    /// its source log, and reads it from where the check says.
    fn recheck(&self, what: &str, truncation: bool, only: Option<SourcePartition>) {
        let parts: Vec<(SourcePartition, i64)> = self
            .setup
            .state
            .lock()
            .iter()
            .filter(|(k, _)| only.as_ref().is_none_or(|o| o == *k))
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
