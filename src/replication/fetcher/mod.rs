//! The source reader of an unshared flow: kflip's own Fetch requests
//! (read_committed), whose records the copy thread walks in place.
//!
//! One task per source leader (`task::broker`) keeps one Fetch in flight
//! for the partitions it leads and hands each partition's records section
//! over as the broker sent it: a slice of the response, not copied, not
//! parsed into messages. The copy thread walks its batches and records
//! (`crate::codec::batches`), drops the batches of aborted transactions and
//! the markers, and appends each record to the writer. Fetching runs ahead
//! of copying by at most [`AHEAD`] bytes.
//!
//! Each partition has a fetch position (the task's: past what it handed
//! over) and a delivered position (the copy thread's: past what it
//! walked, markers and aborted records included). A seek moves both and
//! starts a new generation: whatever was fetched before it, in flight or
//! waiting, is dropped. What the flow must judge (an offset out of range;
//! a log that no longer holds what was read, KIP-320) stops the
//! partition's fetching and reaches the copy thread in order with its
//! records; a seek starts it again.

mod buffers;
mod request;
mod session;
mod task;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::state::{FlowState, SourcePartition};
use crate::config::ClusterConfig;

/// Bytes fetched and not yet walked by the copy thread, at most (one
/// response more may be in flight).
pub(super) const AHEAD: usize = 64 << 20;

/// A flow's reader of its source cluster.
pub(super) struct Fetcher {
    inner: Arc<Inner>,
    dispatcher: tokio::task::JoinHandle<()>,
}

/// What the copy thread and the fetch tasks share.
struct Inner {
    state: Arc<FlowState>,
    source: ClusterConfig,
    parts: Mutex<Parts>,
    /// Wakes the dispatcher: a partition's leader must be looked up.
    lookup: Notify,
    /// What the tasks fetched, in order, for the copy thread.
    queue: Mutex<VecDeque<Event>>,
    ready: Condvar,
    /// [`AHEAD`] bytes of permits; each chunk holds its size.
    room: Arc<Semaphore>,
    /// The highest Fetch version used: lowered once for a broker whose
    /// responses cannot be decoded (see `compat::FETCH_UNTAGGED`).
    version_cap: std::sync::atomic::AtomicI16,
    rt: tokio::runtime::Handle,
}

#[derive(Default)]
struct Parts {
    map: HashMap<SourcePartition, Part>,
    leaders: HashMap<i32, Leader>,
}

struct Leader {
    wake: Arc<Notify>,
    task: tokio::task::AbortHandle,
}

/// One assigned source partition.
struct Part {
    /// Where the next fetch starts.
    fetch: i64,
    /// Past what the copy thread has walked.
    delivered: i64,
    /// The leader's epoch, as the last lookup gave it (-1: unknown).
    epoch: i32,
    /// The epoch of the last batch fetched (-1: none since the last seek).
    last_epoch: i32,
    leader: Option<i32>,
    generation: u64,
    /// Not fetched until the next seek.
    stopped: bool,
}

/// What a fetch gives the copy thread.
pub(super) enum Event {
    Records(Chunk),
    /// The fetch position is outside the partition's log.
    OutOfRange(SourcePartition, u64),
    /// The partition's log no longer holds the last batch read at its
    /// offset (KIP-320): it ends at the offset given, in that epoch.
    Diverged(SourcePartition, u64, i64),
}

/// One partition's records from one Fetch response.
pub(super) struct Chunk {
    pub(super) sp: SourcePartition,
    generation: u64,
    /// The fetch position: records before it (the start of a batch that
    /// holds it) were copied already.
    pub(super) from: i64,
    /// Past the last complete batch.
    pub(super) next: i64,
    pub(super) records: Bytes,
    /// The aborted transactions (producer id, first offset) in range.
    pub(super) aborted: Vec<(i64, i64)>,
    /// Its share of [`AHEAD`], given back when the chunk is dropped.
    room: Option<OwnedSemaphorePermit>,
}

impl Event {
    fn key(&self) -> (&SourcePartition, u64) {
        match self {
            Event::Records(c) => (&c.sp, c.generation),
            Event::OutOfRange(sp, g) | Event::Diverged(sp, g, _) => (sp, *g),
        }
    }
}

impl Fetcher {
    pub(super) fn start(
        state: Arc<FlowState>,
        source: ClusterConfig,
        rt: tokio::runtime::Handle,
    ) -> Fetcher {
        let inner = Arc::new(Inner {
            state,
            source,
            parts: Mutex::new(Parts::default()),
            lookup: Notify::new(),
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            room: Arc::new(Semaphore::new(AHEAD)),
            version_cap: std::sync::atomic::AtomicI16::new(task::FETCH_MAX),
            rt: rt.clone(),
        });
        let dispatcher = rt.spawn(task::dispatch(inner.clone()));
        Fetcher { inner, dispatcher }
    }

    /// Starts reading `parts` at the offsets given.
    pub(super) fn assign(&self, parts: Vec<(SourcePartition, i64)>) {
        for (sp, at) in parts {
            self.seek(&sp, at);
        }
    }

    /// Reads `sp` from `at` on, dropping whatever was fetched before.
    pub(super) fn seek(&self, sp: &SourcePartition, at: i64) {
        let mut q = self.inner.lock();
        let p = q.map.entry(sp.clone()).or_insert(Part {
            fetch: at,
            delivered: at,
            epoch: -1,
            last_epoch: -1,
            leader: None,
            generation: 0,
            stopped: false,
        });
        p.fetch = at;
        p.delivered = at;
        p.last_epoch = -1;
        p.generation += 1;
        p.stopped = false;
        match p.leader.and_then(|l| q.leaders.get(&l)) {
            Some(l) => l.wake.notify_one(),
            None => self.inner.lookup.notify_one(),
        }
    }

    /// Stops reading `sp`, at `at`, until the next seek.
    pub(super) fn stop(&self, sp: &SourcePartition, at: i64) {
        self.seek(sp, at);
        if let Some(p) = self.inner.lock().map.get_mut(sp) {
            p.stopped = true;
        }
    }

    /// The next event of a partition still read from where it was fetched,
    /// waiting up to `timeout`.
    pub(super) fn poll(&self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let mut queue = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let Some(ev) = queue.pop_front() else {
                let left = deadline.checked_duration_since(Instant::now())?;
                queue = self
                    .inner
                    .ready
                    .wait_timeout(queue, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            };
            let (sp, generation) = ev.key();
            let current = self
                .inner
                .lock()
                .map
                .get(sp)
                .is_some_and(|p| p.generation == generation);
            if current {
                return Some(ev);
            }
        }
    }

    /// `chunk` is walked: its partition's delivered position moves past it.
    pub(super) fn delivered(&self, chunk: &Chunk) {
        if let Some(p) = self.inner.lock().map.get_mut(&chunk.sp) {
            if p.generation == chunk.generation {
                p.delivered = p.delivered.max(chunk.next);
            }
        }
    }

    /// Each partition's delivered position.
    pub(super) fn positions(&self) -> Vec<(SourcePartition, i64)> {
        let q = self.inner.lock();
        q.map
            .iter()
            .filter(|(_, p)| !p.stopped)
            .map(|(sp, p)| (sp.clone(), p.delivered))
            .collect()
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.dispatcher.abort();
        for l in self.inner.lock().leaders.values() {
            l.task.abort();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Parts> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `ev` to the copy thread.
    fn push(&self, ev: Event) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(ev);
        self.ready.notify_one();
    }
}
