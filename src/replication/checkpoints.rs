//! The state topic on the target: creating it, writing a flow's progress
//! to it, and reading that back when the flow starts (see
//! [`super::state`] for the keys).

use std::collections::{BTreeMap, HashMap};

use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use super::compat;
use super::deliver::{Deliver, CHECKPOINT};
use super::error::Error;
use super::runner::Runner;
use super::scan::{scan, Place};
use super::state::{
    checkpoint_key, parse_checkpoint_key, topic_id_key, FlowState, SourcePartition,
};
use super::topics::Admin;
use crate::offsets::OffsetMap;

/// Maps with more runs than this are pruned from the oldest end before they
/// are checkpointed (about 3 bytes a run on disk).
const MAX_RUNS: usize = 50_000;

/// Creates the state topic (compacted, one partition) if it is missing.
pub(super) fn ensure_state_topic(admin: &Admin, topic: &str) -> Result<(), Error> {
    let brokers = admin.brokers().map_err(Error::on_state_topic)?.max(1);
    let rf = brokers.min(3) as i16;
    let mut cfg = BTreeMap::new();
    cfg.insert("cleanup.policy".to_string(), "compact".to_string());
    match admin.create_topic(topic, 1, rf, &cfg) {
        Ok(true) => {
            wait_readable(admin, topic);
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => compat::state_topic_without_compaction(admin, topic, rf, &e)
            .map_err(Error::on_state_topic),
    }
}

/// Waits (bounded) until a topic just created has a leader for its
/// partition: the flow reads it next, and a read that comes before the
/// cluster knows the partition fails and restarts the flow half a second
/// later.
fn wait_readable(admin: &Admin, topic: &str) {
    let deadline = std::time::Instant::now() + super::runner::TIMEOUT;
    while !admin.has_leaders(topic) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What the state topic holds for a flow.
pub(super) struct Saved {
    /// The latest checkpoint of each partition.
    pub(super) maps: HashMap<SourcePartition, OffsetMap>,
    /// The orphan watches still open (see `super::orphans`).
    pub(super) watches: Vec<(SourcePartition, i64)>,
    /// The source topic id each partition's map was started under.
    pub(super) ids: HashMap<SourcePartition, uuid::Uuid>,
    /// A shared flow's partition owners (see `super::txn`).
    pub(super) owners: HashMap<SourcePartition, super::txn::Owner>,
}

/// Reads the state topic: what it holds for `flow`.
pub(super) fn load_checkpoints(
    target: Place<'_>,
    state_topic: &str,
    flow: &str,
) -> Result<Saved, Error> {
    let mut out = HashMap::new();
    let mut ids = HashMap::new();
    let mut watches: HashMap<SourcePartition, Option<i64>> = HashMap::new();
    let mut owners = HashMap::new();
    for (key, value) in read_partition(target, state_topic, 0, 0).map_err(Error::on_state_topic)? {
        let Some(key) = key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
            continue;
        };
        let text = || value.as_deref().and_then(|v| std::str::from_utf8(v).ok());
        if let Some(sp) = super::orphans::parse_watch_key(flow, key) {
            watches.insert(sp, text().and_then(|v| v.parse().ok()));
            continue;
        }
        if let Some(sp) = super::txn::parse_owner_key(flow, key) {
            match text().and_then(super::txn::Owner::parse) {
                Some(o) => owners.insert(sp, o),
                None => owners.remove(&sp),
            };
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
        owners,
    })
}

/// A record's key and value.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Reads a partition from `from` to its current end; returns (key, value)
/// pairs. Used for the state topic.
fn read_partition(
    at: Place<'_>,
    topic: &str,
    partition: i32,
    from: i64,
) -> Result<Vec<KeyValue>, Error> {
    let mut out = Vec::new();
    scan(at, topic, partition, from, |m| {
        out.push((m.key().map(|k| k.to_vec()), m.payload().map(|v| v.to_vec())));
    })?;
    Ok(out)
}

impl Runner<'_> {
    /// Reads the state topic again (a shared flow's partitions just came
    /// from another instance, whose last checkpoint is newer than what
    /// this one read at start).
    pub(super) fn reload_checkpoints(&mut self) {
        let st = &self.setup.state;
        match load_checkpoints(self.setup.target(), &self.setup.state_topic, &st.cfg.id) {
            Ok(saved) => {
                self.checkpoints = saved.maps;
                self.checkpoint_ids = saved.ids;
                if let Some(s) = &mut self.shared {
                    s.owners = saved.owners;
                }
            }
            Err(e) => st.error(format!("cannot read the checkpoints of partitions handed over: {e}; their copies are found on the target instead")),
        }
    }

    /// Writes the maps of partitions that changed to the state topic.
    pub(super) fn checkpoint(&self) {
        let st = &self.setup.state;
        let asked = st
            .checkpoint_asked
            .load(std::sync::atomic::Ordering::Relaxed);
        let before = st
            .checkpoint_acks
            .load(std::sync::atomic::Ordering::Relaxed);
        let queued = write_maps(st, self.state_producer(), &self.setup.state_topic, None);
        if asked {
            // What answers a checkpoint asked for (see `super::remote`).
            st.checkpoint_goal
                .store(before + queued, std::sync::atomic::Ordering::Relaxed);
            st.checkpoint_asked
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        for (sp, from) in self.setup.orphans.take_changes(&st.cfg.id) {
            let key = super::orphans::watch_key(&st.cfg.id, &sp);
            let value = from.map(|f| f.to_string());
            let mut rec: BaseRecord<'_, String, String, usize> =
                BaseRecord::with_opaque_to(&self.setup.state_topic, CHECKPOINT).key(&key);
            if let Some(v) = &value {
                rec = rec.payload(v);
            }
            if let Err((e, _)) = self.state_producer().send(rec) {
                tracing::warn!(flow = %st.cfg.id, error = %e, "cannot record the orphan watch in the state topic");
            }
        }
    }
}

/// Queues the changed maps (and topic ids) of the flow's partitions, or of
/// `only` these, to the state topic.
pub(super) fn write_maps(
    st: &FlowState,
    producer: &ThreadedProducer<Deliver>,
    state_topic: &str,
    only: Option<&[SourcePartition]>,
) -> u64 {
    let queued = std::sync::atomic::AtomicU64::new(0);
    let chosen = |k: &SourcePartition| only.is_none_or(|o| o.contains(k));
    // Ids before maps: a map is never saved under an older id than its
    // own, or a restart would take it for a recreated topic's.
    let ids: Vec<(String, String)> = st
        .lock()
        .iter_mut()
        .filter(|(k, p)| p.topic_id_dirty && chosen(k))
        .filter_map(|(k, p)| {
            p.topic_id_dirty = false;
            Some((topic_id_key(&st.cfg.id, k), p.topic_id?.to_string()))
        })
        .collect();
    // A record that cannot be queued marks its partition again, so the
    // next pass writes it (as a failed delivery does, see `Deliver`).
    let queue = |key: &str, value: &[u8], what: &str| {
        let rec = BaseRecord::with_opaque_to(state_topic, CHECKPOINT)
            .key(key)
            .payload(value);
        match producer.send(rec) {
            Ok(()) => {
                queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err((e, _)) => {
                tracing::warn!(flow = %st.cfg.id, error = %e, "cannot queue {what}; will retry");
                st.retry_checkpoint(Some(key.as_bytes()));
            }
        }
    };
    for (key, value) in ids {
        queue(&key, value.as_bytes(), "a topic id");
    }
    let dirty: Vec<(String, Vec<u8>)> = st
        .lock()
        .iter_mut()
        .filter(|(k, p)| p.dirty && chosen(k))
        .map(|(k, p)| {
            p.dirty = false;
            if p.map.len() > MAX_RUNS {
                let cut = p.map.runs()[p.map.len() - MAX_RUNS].source;
                p.map.prune_before(cut);
            }
            (checkpoint_key(&st.cfg.id, k), p.map.encode())
        })
        .collect();
    for (key, value) in dirty {
        queue(&key, &value, "a checkpoint");
    }
    queued.into_inner()
}
