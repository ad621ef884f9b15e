//! The batch writer: kflip's own idempotent producer for a flow's copies.
//!
//! The copy thread encodes each record straight into its partition's open
//! batch ([`batch::OpenBatch`]). One task per target leader
//! (`send::broker`) takes, whenever its connection has room for another
//! request (at most [`IN_FLIGHT`]), one batch from every partition that has
//! records, seals it with the producer id and the partition's next
//! sequence, and sends them in one Produce request (acks=all). While the
//! connection is busy, batches grow up to `batch_bytes`: the target gets
//! few, large batches under load and every record at once when idle.
//!
//! Exactness: a batch keeps its producer id and sequence for good, so a
//! batch sent again after a lost connection or a leader change is
//! recognised by the broker and written once. Acknowledgements of one
//! partition come back in order on one connection and go into the offset
//! map as they come. Anything the writer cannot retry (an authorization
//! error, a record the target refuses, a lost producer id) stops the
//! flow's run with the reason; the flow starts again from its checkpoint
//! and finds its copies on the target by their provenance headers, as after
//! a restart.

pub(crate) mod batch;
mod leaders;
mod request;
mod send;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use self::batch::{OpenBatch, Sealed};
use super::error::{Cause, Error, Side};
use super::state::{FlowState, SourcePartition};
use crate::config::ClusterConfig;
use crate::offsets::{SourceOffset, TargetOffset};

/// Produce requests in flight on one connection: as many as an idempotent
/// producer may have per partition and still be deduplicated.
pub(crate) const IN_FLIGHT: usize = 5;

/// A flow's writer to its target cluster.
pub(super) struct Writer {
    inner: Arc<Inner>,
    dispatcher: tokio::task::JoinHandle<()>,
}

/// What the copy thread and the send tasks share.
struct Inner {
    state: Arc<FlowState>,
    target: ClusterConfig,
    target_name: String,
    producer_id: i64,
    epoch: i16,
    batch_bytes: usize,
    max_records: u64,
    queues: Mutex<Queues>,
    spare: batch::Spare,
    /// Signalled when acknowledgements free room for the copy thread.
    room: Condvar,
    /// Records appended and not yet acknowledged.
    unacked: AtomicU64,
    /// Why the writer stopped for good.
    fatal: Mutex<Option<String>>,
    /// `fatal` is set: checked once per record, without a lock.
    stopped: std::sync::atomic::AtomicBool,
    /// Wakes the dispatcher: a partition's leader must be looked up.
    lookup: Notify,
    rt: tokio::runtime::Handle,
}

/// Every partition written to, and which leader sends each.
#[derive(Default)]
struct Queues {
    parts: Vec<PartQueue>,
    /// Target topic -> partition index -> index in `parts`.
    index: HashMap<String, Vec<Option<usize>>>,
    /// Per leader: its wake-up, and the partitions with records to send.
    leaders: HashMap<i32, Leader>,
    /// Target topics whose max.message.bytes is below the writer's batch
    /// size.
    limits: HashMap<String, usize>,
}

#[derive(Default)]
struct Leader {
    wake: Arc<Notify>,
    ready: VecDeque<usize>,
    /// Its task, while it runs.
    task: Option<tokio::task::AbortHandle>,
}

/// One target partition's batches.
struct PartQueue {
    topic: Arc<str>,
    partition: i32,
    /// The flow's source topic of these copies.
    source_topic: Option<String>,
    open: Option<OpenBatch>,
    /// Sealed and not sent (or to be sent again), in sequence order.
    sealed: VecDeque<Sealed>,
    /// Sent and not yet answered, in sequence order.
    sent: VecDeque<Sealed>,
    next_sequence: i32,
    /// The target acknowledged a batch of this producer here. Until it
    /// has, one batch at a time: a broker without state for a producer
    /// accepts any first sequence, so a second batch in flight behind a
    /// refused first one would be written, leaving a gap before it.
    acked_once: bool,
    leader: Option<i32>,
    /// In its leader's `ready` list.
    queued: bool,
    /// The largest batch the topic takes.
    limit: usize,
}

impl PartQueue {
    fn has_records(&self) -> bool {
        !self.sealed.is_empty() || self.open.as_ref().is_some_and(|b| b.count() > 0)
    }
}

impl Writer {
    /// Asks the target for the writer's idempotent producer id, in the
    /// background while the flow reads its checkpoints.
    pub(super) fn request_id(
        target: &ClusterConfig,
        rt: &tokio::runtime::Handle,
    ) -> tokio::task::JoinHandle<Result<(i64, i16), crate::kafka::ClientError>> {
        let target = target.clone();
        rt.spawn(async move { leaders::init_producer_id(&target).await })
    }

    /// Starts a writer to the flow's target with the producer id that
    /// `request_id` asked for.
    pub(super) fn start(
        state: Arc<FlowState>,
        target: ClusterConfig,
        rt: tokio::runtime::Handle,
        id: tokio::task::JoinHandle<Result<(i64, i16), crate::kafka::ClientError>>,
    ) -> Result<Writer, Error> {
        let target_name = state.cfg.target.as_str().to_string();
        let (producer_id, epoch) = rt
            .block_on(id)
            .unwrap_or_else(|e| {
                Err(crate::kafka::ClientError::Exchange {
                    addr: target_name.clone(),
                    message: format!("InitProducerId task: {e}"),
                })
            })
            .map_err(|e| Error::cluster(Side::Target, &target_name, "get a producer id", e))?;
        let inner = Arc::new(Inner {
            // At most 1 MiB: what every Kafka topic takes by default
            // (max.message.bytes 1048588), as librdkafka's batches were.
            batch_bytes: state.cfg.batch_bytes.clamp(1024, 1 << 20) as usize,
            max_records: state.cfg.max_buffered_records.max(1),
            state,
            target,
            target_name,
            producer_id,
            epoch,
            queues: Mutex::new(Queues::default()),
            spare: Default::default(),
            room: Condvar::new(),
            unacked: AtomicU64::new(0),
            fatal: Mutex::new(None),
            stopped: std::sync::atomic::AtomicBool::new(false),
            lookup: Notify::new(),
            rt: rt.clone(),
        });
        let dispatcher = rt.spawn(leaders::dispatch(inner.clone()));
        Ok(Writer { inner, dispatcher })
    }

    /// Records appended and not yet acknowledged.
    pub(super) fn unacked(&self) -> u64 {
        self.inner.unacked.load(Ordering::Acquire)
    }

    /// Why the writer stopped, if it did: the flow must start again.
    pub(super) fn failed(&self) -> Option<Error> {
        if !self.inner.stopped.load(Ordering::Acquire) {
            return None;
        }
        let why = self.inner.fatal.lock().unwrap_or_else(|e| e.into_inner());
        why.as_ref().map(|m| {
            Error::cluster(
                Side::Target,
                &self.inner.target_name,
                "write copies",
                Cause::Writer(m.clone()),
            )
        })
    }

    /// Waits (bounded) while more records than the flow buffers are
    /// unacknowledged. False: the writer failed or `stop` said so.
    pub(super) fn wait_for_room(&self, stop: impl Fn() -> bool) -> bool {
        let inner = &self.inner;
        if inner.unacked.load(Ordering::Acquire) < inner.max_records {
            return true;
        }
        let mut q = inner.lock();
        while inner.unacked.load(Ordering::Acquire) >= inner.max_records {
            if stop() || inner.stopped.load(Ordering::Acquire) {
                return false;
            }
            q = inner
                .room
                .wait_timeout(q, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Sets the largest batch written to target `topic`: its
    /// max.message.bytes, when set on the topic (`None`: the writer's
    /// own size).
    pub(super) fn limit_topic(&self, topic: &str, max_message_bytes: Option<&String>) {
        let inner = &self.inner;
        let limit = max_message_bytes
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(inner.batch_bytes, |m| m.clamp(1024, inner.batch_bytes));
        let mut q = inner.lock();
        if q.limits.get(topic).copied().unwrap_or(inner.batch_bytes) == limit {
            return;
        }
        q.limits.insert(topic.to_string(), limit);
        let idxs: Vec<usize> = q
            .index
            .get(topic)
            .into_iter()
            .flatten()
            .flatten()
            .copied()
            .collect();
        for i in idxs {
            q.parts[i].limit = limit;
        }
    }

    /// Appends one record per item to `topic[partition]`'s open batch:
    /// `size` gives its size in the batch (about), `push` encodes it.
    pub(super) fn append_each<T>(
        &self,
        (topic, partition): (&str, i32),
        items: &[T],
        size: impl Fn(&T) -> usize,
        mut push: impl FnMut(&T, &mut OpenBatch),
    ) {
        let inner = &self.inner;
        let mut q = inner.lock();
        let idx = q.part(topic, partition, &inner.state, inner.batch_bytes);
        let p = &mut q.parts[idx];
        let batch_bytes = p.limit;
        for item in items {
            // A batch never grows past `batch_bytes` (the target refuses a
            // batch larger than its topic's max.message.bytes): it is
            // sealed before the record that would take it past, which then
            // starts the next one.
            let size = size(item);
            if p.open
                .as_ref()
                .is_some_and(|b| b.bytes() + size > batch_bytes)
            {
                inner.seal_open(p);
            }
            let open = p.open.get_or_insert_with(|| {
                OpenBatch::new_in(inner.spare.take(), batch_bytes.min(64 << 10))
            });
            push(item, open);
        }
        inner
            .unacked
            .fetch_add(items.len() as u64, Ordering::AcqRel);
        q.mark_ready(idx, &inner.lookup);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.dispatcher.abort();
        leaders::abort_all(&self.inner);
    }
}

impl Queues {
    /// The index of `topic[partition]`, added on first use.
    fn part(&mut self, topic: &str, partition: i32, state: &FlowState, batch: usize) -> usize {
        let p = partition.max(0) as usize;
        if let Some(Some(i)) = self.index.get(topic).and_then(|v| v.get(p)) {
            return *i;
        }
        let idx = self.parts.len();
        self.parts.push(PartQueue {
            topic: Arc::from(topic),
            partition,
            source_topic: state.cfg.source_topic(topic),
            open: None,
            sealed: VecDeque::new(),
            sent: VecDeque::new(),
            next_sequence: 0,
            acked_once: false,
            leader: None,
            queued: false,
            limit: self.limits.get(topic).copied().unwrap_or(batch),
        });
        let slots = self.index.entry(topic.to_string()).or_default();
        if slots.len() <= p {
            slots.resize(p + 1, None);
        }
        slots[p] = Some(idx);
        idx
    }

    /// Puts partition `idx` on its leader's ready list (once), and wakes
    /// the leader's task; a partition whose leader is not known yet waits
    /// for the dispatcher's lookup.
    fn mark_ready(&mut self, idx: usize, lookup: &Notify) {
        let p = &mut self.parts[idx];
        if p.queued {
            return;
        }
        let Some(leader) = p.leader else {
            lookup.notify_one();
            return;
        };
        p.queued = true;
        let l = self.leaders.entry(leader).or_default();
        l.ready.push_back(idx);
        l.wake.notify_one();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, why: String) {
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            tracing::warn!(flow = %self.state.cfg.id, error = %why, "batch writer stopped; the flow starts again from its checkpoint");
            *f = Some(why);
        }
        self.stopped.store(true, Ordering::Release);
        self.room.notify_all();
    }

    /// Seals `p`'s open batch with the next sequence numbers.
    fn seal_open(&self, p: &mut PartQueue) {
        let Some(open) = p.open.take().filter(|b| b.count() > 0) else {
            return;
        };
        let n = open.count() as i64;
        let sealed = open.seal(self.producer_id, self.epoch, p.next_sequence);
        p.next_sequence = ((p.next_sequence as i64 + n) % (i32::MAX as i64 + 1)) as i32;
        p.sealed.push_back(sealed);
    }

    /// Records `batch` of partition `idx` as acknowledged at `base` on the
    /// target: each copy into the offset map.
    fn acked(
        &self,
        topic: &str,
        source_topic: Option<&str>,
        partition: i32,
        batch: &Sealed,
        base: i64,
    ) {
        let n = batch.sources.len() as u64;
        let st = &self.state;
        st.copied_records.fetch_add(n, Ordering::Relaxed);
        st.copied_bytes.fetch_add(batch.payload, Ordering::Relaxed);
        if let Some(source) = source_topic {
            let mut parts = st.lock();
            if let Some(p) = parts.get_mut(&SourcePartition {
                topic: source.to_string(),
                partition,
            }) {
                p.in_flight = p.in_flight.saturating_sub(n);
                let mut failed = None;
                for (i, &src) in batch.sources.iter().enumerate() {
                    if let Err(e) = p
                        .map
                        .record(SourceOffset(src), TargetOffset(base + i as i64))
                    {
                        failed = Some(e);
                    }
                }
                p.dirty = true;
                p.last_copied_ts = batch.last_ts;
                if let Some(e) = failed {
                    tracing::error!(flow = %st.cfg.id, %topic, partition, error = %e, "offset map rejected an acknowledgement");
                }
            }
        }
        self.unacked.fetch_sub(n, Ordering::AcqRel);
        self.room.notify_all();
    }
}
