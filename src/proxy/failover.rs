//! Failover: the switch choreography and what the proxy remembers about
//! its clients so that they cross a switch without losing their place.
//!
//! A switch of `proxy.active` runs in [`switch`]:
//! - **planned** (the old cluster answers): every connection holds new
//!   requests and in-flight ones finish; the co-located engine waits until
//!   the flows from the old cluster have copied everything (bounded by
//!   `proxy.switch_lag_timeout`), syncs group offsets once more and pushes
//!   the last commits this proxy saw; then the epoch moves and connections
//!   are re-routed;
//! - **disaster** (the old cluster does not answer): the last observed
//!   commits are pushed, the epoch moves at once, and the engine's view of
//!   what was not copied is logged as the RPO per partition.
//!
//! After the epoch moved, clients still hold state from the old cluster,
//! and [`Tracker`] keeps it from leaking into the new one:
//! - **consumers**: a group member from before the switch is fenced (its
//!   Heartbeat and SyncGroup are answered `UNKNOWN_MEMBER_ID`), so it
//!   rejoins and reads committed offsets, which are already translated.
//!   Until it has rejoined, its Fetch requests are answered empty: its
//!   positions are in the old cluster's offset space and must never be
//!   fetched from the new one. An OffsetCommit it sends meanwhile carries
//!   old-space offsets; they are translated and committed as a simple
//!   commit, so nothing it processed is read twice;
//! - **idempotent producers**: a producer id from the old cluster is
//!   remapped onto one kflip obtains from the new cluster, with sequences
//!   rebased per partition (the record batch CRC is recomputed), so the
//!   producer goes on without an error and without duplicates.
//!
//! Clients are told apart by client id and address (one pod, one client
//! id, in the usual sidecar); two consumers that share both share their
//! fence.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Shared, SwitchState};
use crate::config::ClusterName;
use crate::kafka::groups::Protocol;
use crate::kafka::KafkaConn;

/// How long after a switch fetches of not-yet-rejoined members are held.
/// A member that has not rejoined by then has left or died.
const REJOIN_WINDOW: Duration = Duration::from_secs(60);

/// Bound on remembered member and producer ids (oldest epochs go first).
const MAX_IDS: usize = 100_000;

/// A client: its client id and address.
pub(crate) type ClientKey = (String, IpAddr);

/// One group's commits: (topic, partition) -> offset.
pub(crate) type GroupOffsets = BTreeMap<(String, i32), i64>;

/// Last commits seen per group.
pub(crate) type Commits = BTreeMap<String, GroupOffsets>;

/// A producer of the old cluster: producer id, producer epoch, and the
/// switch epoch it is remapped in.
pub(crate) type OldProducer = (i64, i16, u64);

/// A producer id of the old cluster and what it became.
struct Remap {
    producer_id: i64,
    producer_epoch: i16,
    /// First sequence the client used per partition after the switch.
    base: HashMap<(String, i32), i32>,
    /// A transactional producer's transaction from before the switch is
    /// still open in the client (it has not aborted it yet): its requests
    /// are refused, not remapped.
    old_txn_open: bool,
}

#[derive(Default)]
struct Inner {
    /// The latest switch: its epoch and when.
    switched: Option<(u64, Instant)>,
    /// The cluster that was active before the latest switch.
    previous: Option<ClusterName>,
    /// Group member id -> epoch it was first seen in.
    members: HashMap<String, u64>,
    /// Client -> group -> epoch its membership was last active in.
    consumers: HashMap<ClientKey, HashMap<String, u64>>,
    /// (client, producer id) -> epoch the id belongs to.
    producers: HashMap<(ClientKey, i64), u64>,
    /// (client, producer id, producer epoch, switch epoch) -> remap.
    remaps: HashMap<(ClientKey, i64, i16, u64), Remap>,
    /// Cluster -> last commits observed on it.
    commits: HashMap<ClusterName, Commits>,
    /// Groups with commits not yet pushed to the engine.
    dirty: Vec<(ClusterName, String)>,
    /// Fenced member ids already removed from the old cluster's group.
    left: std::collections::HashSet<String>,
    /// Fenced members whose cluster did not answer the LeaveGroup (it was
    /// down): (cluster, group, member), removed when kflip next switches
    /// to that cluster.
    pending_leaves: Vec<(ClusterName, String, String, Protocol)>,
    /// (cluster, topic, partition) -> log ends the cluster acknowledged to
    /// producers, oldest first, with when (unix ms): what a disaster's RPO
    /// report knows beyond what the engine has read.
    acked: HashMap<(ClusterName, String, i32), VecDeque<(i64, i64)>>,
    /// Transactions (producer id, epoch) kflip aborted on the old cluster.
    aborted: std::collections::HashSet<(i64, i16)>,
}

/// Acknowledged log ends remembered per partition.
const ACKED_KEPT: usize = 128;

/// What the proxy remembers about clients across switches.
#[derive(Default)]
pub(crate) struct Tracker {
    inner: Mutex<Inner>,
    /// Serializes producer id requests to the new cluster.
    init: tokio::sync::Mutex<()>,
    /// Wakes the task that feeds observed commits to the engine.
    pub(crate) commits_changed: tokio::sync::Notify,
}

/// Keeps an id table keyed by what clients send within [`MAX_IDS`]: ids of
/// older epochs go first; if the current epoch alone is over the bound (a
/// client inventing ids), the table starts again. Forgotten ids are no
/// longer fenced after a switch, which is what their owners then see; the
/// proxy's memory never grows with a client's inventiveness.
fn prune<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, u64>, current: u64) {
    if map.len() > MAX_IDS {
        map.retain(|_, e| *e >= current);
    }
    if map.len() > MAX_IDS {
        tracing::warn!(
            ids = map.len(),
            "more member or producer ids in one switch epoch than kflip tracks; forgetting them"
        );
        map.clear();
    }
}

/// The same bound for the consumers table: clients whose groups are all
/// from older epochs go first, then everything.
fn prune_consumers(map: &mut HashMap<ClientKey, HashMap<String, u64>>, current: u64) {
    if map.len() > MAX_IDS {
        map.retain(|_, groups| groups.values().any(|&e| e >= current));
    }
    if map.len() > MAX_IDS {
        tracing::warn!(
            clients = map.len(),
            "more group clients in one switch epoch than kflip tracks; forgetting them"
        );
        map.clear();
    }
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the epoch moved away from `from`.
    pub(crate) fn switched(&self, epoch: u64, from: &ClusterName) {
        let mut inner = self.lock();
        inner.switched = Some((epoch, Instant::now()));
        inner.previous = Some(from.clone());
    }

    /// The cluster that was active before the latest switch.
    pub(crate) fn previous_active(&self) -> Option<ClusterName> {
        self.lock().previous.clone()
    }

    /// A group request from `member` (generation `generation`) of `group`
    /// arrived from `key` on a connection of switch epoch `epoch`. Returns
    /// whether the member is from before the switch and must be fenced.
    pub(crate) fn group_request(
        &self,
        key: &ClientKey,
        group: &str,
        member: &str,
        generation: i32,
        epoch: u64,
    ) -> bool {
        if member.is_empty() || generation < 0 {
            return false;
        }
        let mut inner = self.lock();
        prune(&mut inner.members, epoch);
        let first = *inner.members.entry(member.to_string()).or_insert(epoch);
        if first < epoch {
            return true;
        }
        prune_consumers(&mut inner.consumers, epoch);
        inner
            .consumers
            .entry(key.clone())
            .or_default()
            .insert(group.to_string(), epoch);
        false
    }

    /// A KIP-848 heartbeat from `member` of `group` with `member_epoch`
    /// arrived from `key` on a connection of switch epoch `epoch`. Returns
    /// whether the member is from before the switch and must be fenced.
    /// Members keep their id when they rejoin (KIP-1082), so a join (epoch
    /// 0) starts the member afresh in this epoch.
    pub(crate) fn consumer_heartbeat(
        &self,
        key: &ClientKey,
        group: &str,
        member: &str,
        member_epoch: i32,
        epoch: u64,
    ) -> bool {
        if member.is_empty() {
            return false;
        }
        match member_epoch {
            0 => {
                let mut inner = self.lock();
                prune(&mut inner.members, epoch);
                inner.members.insert(member.to_string(), epoch);
                prune_consumers(&mut inner.consumers, epoch);
                inner
                    .consumers
                    .entry(key.clone())
                    .or_default()
                    .insert(group.to_string(), epoch);
                false
            }
            e if e < 0 => {
                self.lock().members.remove(member);
                self.left(key, group);
                false
            }
            e => self.group_request(key, group, member, e, epoch),
        }
    }

    /// Whether fetches from `key` must be held: it is a group member that
    /// has not rejoined since the switch to `epoch`.
    pub(crate) fn fetch_held(&self, key: &ClientKey, epoch: u64) -> bool {
        let inner = self.lock();
        let recent =
            matches!(inner.switched, Some((e, at)) if e == epoch && at.elapsed() < REJOIN_WINDOW);
        recent
            && inner
                .consumers
                .get(key)
                .is_some_and(|groups| groups.values().any(|&e| e < epoch))
    }

    /// A LeaveGroup from `key` for `group` went through.
    pub(crate) fn left(&self, key: &ClientKey, group: &str) {
        let mut inner = self.lock();
        if let Some(groups) = inner.consumers.get_mut(key) {
            groups.remove(group);
        }
    }

    /// Records commits the cluster accepted.
    pub(crate) fn observe_commit(
        &self,
        cluster: &ClusterName,
        group: &str,
        offsets: impl IntoIterator<Item = ((String, i32), i64)>,
    ) {
        let mut inner = self.lock();
        let slot = inner
            .commits
            .entry(cluster.clone())
            .or_default()
            .entry(group.to_string())
            .or_default();
        slot.extend(offsets);
        let key = (cluster.clone(), group.to_string());
        if !inner.dirty.contains(&key) {
            inner.dirty.push(key);
        }
        drop(inner);
        self.commits_changed.notify_one();
    }

    /// Groups whose commits changed since the last call, with their commits.
    pub(crate) fn take_dirty(&self) -> Vec<(ClusterName, String, GroupOffsets)> {
        let mut inner = self.lock();
        let dirty = std::mem::take(&mut inner.dirty);
        dirty
            .into_iter()
            .filter_map(|(c, g)| {
                let offsets = inner.commits.get(&c)?.get(&g)?.clone();
                Some((c, g, offsets))
            })
            .collect()
    }

    /// Every commit observed on `cluster`.
    pub(crate) fn commits_on(&self, cluster: &ClusterName) -> Commits {
        self.lock()
            .commits
            .get(cluster)
            .cloned()
            .unwrap_or_default()
    }

    /// `cluster` acknowledged records up to (not including) these ends.
    pub(crate) fn acked(&self, cluster: &ClusterName, ends: Vec<(String, i32, i64)>) {
        let now = crate::replication::state::now_ms();
        let mut inner = self.lock();
        for (topic, partition, end) in ends {
            let q = inner
                .acked
                .entry((cluster.clone(), topic, partition))
                .or_default();
            if q.back().is_some_and(|&(e, _)| e >= end) {
                continue;
            }
            if q.len() >= ACKED_KEPT {
                q.pop_front();
            }
            q.push_back((end, now));
        }
    }

    /// For each partition `cluster` acknowledged writes on: its newest
    /// acknowledged end, and when the oldest acknowledgement past
    /// `replicated(topic, partition)` came (unix ms), if any.
    pub(crate) fn acked_past(
        &self,
        cluster: &ClusterName,
        replicated: impl Fn(&str, i32) -> Option<i64>,
    ) -> Vec<(String, i32, i64, Option<i64>)> {
        let inner = self.lock();
        inner
            .acked
            .iter()
            .filter(|((c, _, _), _)| c == cluster)
            .filter_map(|((_, topic, partition), q)| {
                let &(end, _) = q.back()?;
                let done = replicated(topic, *partition)?;
                let since = q.iter().find(|&&(e, _)| e > done).map(|&(_, at)| at);
                Some((topic.clone(), *partition, end, since))
            })
            .collect()
    }

    /// Whether this is the first abort of the transaction of
    /// `(producer_id, producer_epoch)` on the old cluster.
    pub(crate) fn first_abort(&self, producer_id: i64, producer_epoch: i16) -> bool {
        let mut inner = self.lock();
        if inner.aborted.len() > MAX_IDS {
            inner.aborted.clear();
        }
        inner.aborted.insert((producer_id, producer_epoch))
    }

    /// The new cluster issued `producer_id` to `key` under `epoch`.
    pub(crate) fn producer_issued(&self, key: &ClientKey, producer_id: i64, epoch: u64) {
        let mut inner = self.lock();
        prune(&mut inner.producers, epoch);
        inner.producers.insert((key.clone(), producer_id), epoch);
    }

    /// Whether `producer_id` from `key` belongs to an older epoch than
    /// `epoch` (first sight counts as the current epoch).
    pub(crate) fn producer_is_old(&self, key: &ClientKey, producer_id: i64, epoch: u64) -> bool {
        let mut inner = self.lock();
        prune(&mut inner.producers, epoch);
        *inner
            .producers
            .entry((key.clone(), producer_id))
            .or_insert(epoch)
            < epoch
    }

    /// The producer id and epoch on `cluster` that stand for the old
    /// cluster's `(producer_id, producer_epoch)` of `key` in `epoch`;
    /// obtained from `cluster` on first use.
    pub(crate) async fn remap(
        &self,
        shared: &Shared,
        cluster: &ClusterName,
        key: &ClientKey,
        producer_id: i64,
        producer_epoch: i16,
        epoch: u64,
    ) -> Result<(i64, i16), String> {
        let id = (key.clone(), producer_id, producer_epoch, epoch);
        if let Some(r) = self.lock().remaps.get(&id) {
            return Ok((r.producer_id, r.producer_epoch));
        }
        let _one = self.init.lock().await;
        if let Some(r) = self.lock().remaps.get(&id) {
            return Ok((r.producer_id, r.producer_epoch));
        }
        let (pid, pepoch) = init_producer_id(shared, cluster)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            client = %key.0,
            old_producer_id = producer_id,
            producer_id = pid,
            "idempotent producer from the old cluster remapped"
        );
        let mut inner = self.lock();
        if inner.remaps.len() > MAX_IDS {
            inner.remaps.retain(|k, _| k.3 >= epoch);
        }
        inner.remaps.insert(
            id,
            Remap {
                producer_id: pid,
                producer_epoch: pepoch,
                base: HashMap::new(),
                old_txn_open: false,
            },
        );
        Ok((pid, pepoch))
    }

    /// The id and epoch a transactional producer's old `(producer_id,
    /// producer_epoch)` stands for after its transaction from before the
    /// switch was aborted, if it was.
    pub(crate) fn remapped(
        &self,
        key: &ClientKey,
        producer_id: i64,
        producer_epoch: i16,
        epoch: u64,
    ) -> Option<(i64, i16)> {
        self.lock()
            .remaps
            .get(&(key.clone(), producer_id, producer_epoch, epoch))
            .map(|r| (r.producer_id, r.producer_epoch))
    }

    /// Records that a transactional producer's old `(producer_id,
    /// producer_epoch)` goes on as `fresh`, an id the active cluster issued
    /// for its transactional id.
    pub(crate) fn remap_transactional(
        &self,
        key: &ClientKey,
        (producer_id, producer_epoch, epoch): OldProducer,
        fresh: (i64, i16),
    ) {
        let mut inner = self.lock();
        if inner.remaps.len() > MAX_IDS {
            inner.remaps.retain(|k, _| k.3 >= epoch);
        }
        inner.remaps.insert(
            (key.clone(), producer_id, producer_epoch, epoch),
            Remap {
                producer_id: fresh.0,
                producer_epoch: fresh.1,
                base: HashMap::new(),
                old_txn_open: true,
            },
        );
    }

    /// Whether the remapped transactional producer's transaction from
    /// before the switch is still open in the client.
    pub(crate) fn old_txn_open(&self, key: &ClientKey, old: OldProducer) -> bool {
        self.lock()
            .remaps
            .get(&(key.clone(), old.0, old.1, old.2))
            .is_some_and(|r| r.old_txn_open)
    }

    /// The client ended its transaction from before the switch (it aborted
    /// it, or began another).
    pub(crate) fn close_old_txn(&self, key: &ClientKey, old: OldProducer) {
        if let Some(r) = self
            .lock()
            .remaps
            .get_mut(&(key.clone(), old.0, old.1, old.2))
        {
            r.old_txn_open = false;
        }
    }

    /// The sequence to send for `sequence` of a remapped producer on
    /// `topic`/`partition`: rebased so the first one after the switch is 0.
    pub(crate) fn rebase(
        &self,
        key: &ClientKey,
        (producer_id, producer_epoch, epoch): OldProducer,
        topic: &str,
        partition: i32,
        sequence: i32,
    ) -> i32 {
        let mut inner = self.lock();
        let Some(r) = inner
            .remaps
            .get_mut(&(key.clone(), producer_id, producer_epoch, epoch))
        else {
            return sequence;
        };
        let base = *r
            .base
            .entry((topic.to_string(), partition))
            .or_insert(sequence);
        // Sequences wrap from i32::MAX to 0.
        (i64::from(sequence) - i64::from(base)).rem_euclid(i64::from(i32::MAX) + 1) as i32
    }
}

/// Removes a fenced member from its group on the cluster it came from, once,
/// in the background: the member rejoins on the new cluster and never comes
/// back, and without this the old group keeps it (and its partitions) until
/// its session expires, which would stall a failback.
pub(crate) fn leave_old_group(shared: &Arc<Shared>, group: &str, member: &str, protocol: Protocol) {
    let Some(from) = shared.failover.previous_active() else {
        return;
    };
    {
        let mut inner = shared.failover.lock();
        if inner.left.len() > MAX_IDS {
            inner.left.clear();
        }
        if !inner.left.insert(member.to_string()) {
            return;
        }
    }
    let boot = bootstrap(shared, &from);
    let (group, member) = (group.to_string(), member.to_string());
    let timeout = shared.proxy_config().connect_timeout;
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut admin = crate::kafka::groups::GroupAdmin::new(boot, timeout);
        match admin.leave(&group, &member, protocol).await {
            Ok(()) => {
                tracing::info!(%from, group, member, "fenced member removed from its group on the old cluster")
            }
            Err(e) => {
                tracing::info!(%from, group, member, error = %e, "fenced member not removed from the old cluster; retried when kflip switches back to it");
                let mut inner = shared.failover.lock();
                if inner.pending_leaves.len() < MAX_IDS {
                    inner.pending_leaves.push((from, group, member, protocol));
                }
            }
        }
    });
}

/// Removes the fenced members that `to` could not be told about when they
/// were fenced (it was down), before clients are sent back to it: a group
/// that still lists a member from before a disaster would give it
/// partitions (no tansu 0.6 group expires members), and the member never
/// comes back to fetch them.
async fn leave_pending(shared: &Shared, to: &ClusterName) {
    let pending: Vec<(String, String, Protocol)> = {
        let mut inner = shared.failover.lock();
        let (mine, rest) = std::mem::take(&mut inner.pending_leaves)
            .into_iter()
            .partition(|(c, _, _, _)| c == to);
        inner.pending_leaves = rest;
        mine.into_iter().map(|(_, g, m, p)| (g, m, p)).collect()
    };
    if pending.is_empty() {
        return;
    }
    let timeout = shared.proxy_config().connect_timeout;
    let mut admin = crate::kafka::groups::GroupAdmin::new(bootstrap(shared, to), timeout);
    for (group, member, protocol) in pending {
        match admin.leave(&group, &member, protocol).await {
            Ok(()) => {
                tracing::info!(cluster = %to, group, member, "member fenced while this cluster was down removed from its group")
            }
            Err(e) => {
                tracing::warn!(cluster = %to, group, member, error = %e, "member fenced while this cluster was down not removed; it may hold partitions until it expires");
                admin.reset();
            }
        }
    }
}

/// The bootstrap addresses of `cluster` in the current config.
pub(crate) fn bootstrap(shared: &Shared, cluster: &ClusterName) -> Vec<String> {
    shared
        .config
        .borrow()
        .cluster(cluster)
        .map(|c| c.bootstrap.clone())
        .unwrap_or_default()
}

/// Why kflip could not get a producer id from a cluster.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProducerIdError {
    /// No broker of the cluster answered.
    #[error("cannot reach {cluster} for a producer id: {message}")]
    Unreachable {
        /// The cluster.
        cluster: ClusterName,
        /// What failed.
        message: String,
    },
    /// The broker answered with an error code.
    #[error("{cluster} refused a producer id: error {code}")]
    Refused {
        /// The cluster.
        cluster: ClusterName,
        /// Its Kafka error code.
        code: i16,
    },
}

impl ProducerIdError {
    /// The error code to give the client: the broker's own (a broker that
    /// has just started answers COORDINATOR_LOAD_IN_PROGRESS, which every
    /// client retries), or COORDINATOR_LOAD_IN_PROGRESS when no broker
    /// answered. Not COORDINATOR_NOT_AVAILABLE: kafka-python answers that
    /// by looking up a transaction coordinator for a null transactional
    /// id, a request Apache Kafka refuses by closing the connection.
    pub(crate) fn client_code(&self) -> i16 {
        match self {
            ProducerIdError::Refused { code, .. } => *code,
            ProducerIdError::Unreachable { .. } => 14,
        }
    }
}

/// Asks `cluster` for a fresh idempotent producer id.
pub(crate) async fn init_producer_id(
    shared: &Shared,
    cluster: &ClusterName,
) -> Result<(i64, i16), ProducerIdError> {
    use kafka_protocol::messages::InitProducerIdRequest;
    let unreachable = |e: crate::kafka::ClientError| ProducerIdError::Unreachable {
        cluster: cluster.clone(),
        message: e.to_string(),
    };
    let boot = bootstrap(shared, cluster);
    let timeout = shared.proxy_config().connect_timeout;
    let mut conn = KafkaConn::connect_any(&boot, timeout)
        .await
        .map_err(unreachable)?;
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    // v3: the first with producer id and epoch fields, which tansu 0.6 needs.
    let resp = conn.send(&req, 3).await.map_err(unreachable)?;
    if resp.error_code != 0 {
        return Err(ProducerIdError::Refused {
            cluster: cluster.clone(),
            code: resp.error_code,
        });
    }
    Ok((resp.producer_id.0, resp.producer_epoch))
}

/// Whether any broker of `cluster` accepts a TCP connection within `bound`.
async fn reachable(shared: &Shared, cluster: &ClusterName, bound: Duration) -> bool {
    crate::cluster::connect_any(&bootstrap(shared, cluster), bound)
        .await
        .is_ok()
}

/// Runs the switch from `previous.active` to `to`.
pub(crate) async fn switch(shared: &Arc<Shared>, previous: SwitchState, to: ClusterName) {
    let cfg = shared.proxy_config();
    let from = previous.active.clone();
    let started = Instant::now();
    let probe = cfg.connect_timeout.min(Duration::from_secs(1));
    let planned = reachable(shared, &from, probe).await;
    if planned {
        shared.switch.send_replace(SwitchState {
            holding: true,
            ..previous.clone()
        });
        // Logged once the hold is in place: from this line on, no session
        // starts on the old cluster.
        tracing::info!(%from, %to, "planned switch: holding requests");
        let drain_until = Instant::now() + cfg.switch_drain;
        while shared.in_flight() > 0 && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let Some(engine) = &shared.engine {
            let commits = shared.failover.commits_on(&from);
            let report = engine
                .catch_up(from.as_str(), to.as_str(), cfg.switch_lag_timeout, commits)
                .await;
            if report.caught_up {
                tracing::info!(%from, %to, flows = ?report.flows, waited_ms = report.waited.as_millis() as u64, "replication caught up; group offsets synced");
            } else {
                for g in &report.gaps {
                    if g.records < 0 {
                        tracing::warn!(topic = %g.topic, partition = g.partition, replicated_to = g.replicated_to, "switching without knowing whether records are not replicated: the old cluster's log end could not be read (proxy.switch_lag_timeout expired)");
                    } else {
                        tracing::warn!(topic = %g.topic, partition = g.partition, records = g.records, replicated_to = g.replicated_to, source_end = g.source_end, "switching with records not replicated (proxy.switch_lag_timeout expired)");
                    }
                }
            }
        } else {
            tracing::warn!(%from, %to, "no replication engine in this process: not waiting for replication; consumers resume at offsets the engine synced");
        }
    } else {
        tracing::warn!(%from, %to, "disaster switch: the old cluster does not answer; switching at once");
        if let Some(engine) = &shared.engine {
            engine.disaster(from.as_str(), to.as_str());
            engine
                .push_commits(
                    from.as_str(),
                    to.as_str(),
                    shared.failover.commits_on(&from),
                )
                .await;
        }
    }
    leave_pending(shared, &to).await;
    let next = SwitchState {
        epoch: previous.epoch + 1,
        active: to.clone(),
        holding: false,
    };
    shared.failover.switched(next.epoch, &from);
    shared.switch.send_replace(next.clone());
    if let Some(engine) = &shared.engine {
        engine.set_active(to.as_str());
    }
    tracing::info!(%from, %to, epoch = next.epoch, planned, took_ms = started.elapsed().as_millis() as u64, "switched active cluster");
    if !planned {
        if let Some(engine) = &shared.engine {
            report_rpo(shared, engine, &from, &to);
        }
    }
}

/// Logs, per partition, what the old cluster acknowledged that the flows to
/// the new one had not copied: the engine's view (records it read), raised
/// to the log ends this proxy saw acknowledged to producers, which can be
/// newer than anything the engine read.
fn report_rpo(
    shared: &Shared,
    engine: &crate::replication::Engine,
    from: &ClusterName,
    to: &ClusterName,
) {
    let mut lag: BTreeMap<(String, i32), crate::replication::state::PartitionLag> = engine
        .rpo(from.as_str(), to.as_str())
        .into_iter()
        .map(|p| ((p.topic.clone(), p.partition), p))
        .collect();
    let now = crate::replication::state::now_ms();
    let acked = shared.failover.acked_past(from, |t, p| {
        lag.get(&(t.to_string(), p)).map(|l| l.replicated_to)
    });
    for (topic, partition, end, since) in acked {
        if let Some(l) = lag.get_mut(&(topic, partition)) {
            l.source_end = l.source_end.max(end);
            l.records = l.records.max(end - l.replicated_to);
            if let Some(at) = since {
                l.seconds = l.seconds.max((now - at).max(0) as f64 / 1000.0);
            }
        }
    }
    let lost: Vec<_> = lag.into_values().filter(|p| p.records > 0).collect();
    if lost.is_empty() {
        tracing::info!(%from, %to, "RPO: every record the old cluster acknowledged through this proxy, and every record the engine read, was replicated");
    }
    for p in lost {
        tracing::warn!(topic = %p.topic, partition = p.partition, records = p.records, seconds = p.seconds, replicated_to = p.replicated_to, source_end = p.source_end, "RPO: not replicated before the old cluster went away");
    }
}

/// Feeds commits the proxy observed to the engine, coalesced per group.
pub(crate) async fn feed_engine(shared: Arc<Shared>) {
    let Some(engine) = shared.engine.clone() else {
        return;
    };
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = shared.failover.commits_changed.notified() => {}
        }
        // Coalesce a burst of commits into one push per group.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (cluster, group, offsets) in shared.failover.take_dirty() {
            engine
                .observe_commit(cluster.as_str(), &group, offsets)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> ClientKey {
        (id.to_string(), IpAddr::from([127, 0, 0, 1]))
    }

    #[test]
    fn members_from_before_a_switch_are_fenced_and_their_fetches_held() {
        let t = Tracker::default();
        let c = key("c1");
        assert!(!t.group_request(&c, "g", "m-old", 3, 0));
        assert!(!t.fetch_held(&c, 0));
        t.switched(1, &ClusterName::from("dc1"));
        assert!(t.fetch_held(&c, 1), "positions are old-space until rejoin");
        assert!(t.group_request(&c, "g", "m-old", 3, 1), "old member fenced");
        assert!(
            !t.group_request(&c, "g", "", -1, 1),
            "joining is not fenced"
        );
        assert!(!t.group_request(&c, "g", "m-new", 1, 1));
        assert!(!t.fetch_held(&c, 1), "rejoined");
        assert!(!t.fetch_held(&key("other"), 1), "non-members are not held");
    }

    #[test]
    fn producers_from_before_a_switch_are_old_and_sequences_rebase() {
        let t = Tracker::default();
        let p = key("p");
        assert!(!t.producer_is_old(&p, 7, 0));
        assert!(t.producer_is_old(&p, 7, 1));
        t.producer_issued(&p, 9, 1);
        assert!(!t.producer_is_old(&p, 9, 1), "issued by the new cluster");
        t.lock().remaps.insert(
            (p.clone(), 7, 0, 1),
            Remap {
                producer_id: 100,
                producer_epoch: 0,
                base: HashMap::new(),
                old_txn_open: false,
            },
        );
        assert_eq!(t.rebase(&p, (7, 0, 1), "t", 0, 40), 0);
        assert_eq!(t.rebase(&p, (7, 0, 1), "t", 0, 45), 5);
        assert_eq!(t.rebase(&p, (7, 0, 1), "t", 1, 3), 0);
        t.lock()
            .remaps
            .get_mut(&(p.clone(), 7, 0, 1))
            .unwrap()
            .base
            .insert(("t".into(), 2), i32::MAX - 1);
        assert_eq!(t.rebase(&p, (7, 0, 1), "t", 2, 1), 3, "wraps");
    }

    #[test]
    fn observed_commits_are_kept_per_cluster_and_coalesced() {
        let t = Tracker::default();
        let dc1 = ClusterName::from("dc1");
        t.observe_commit(&dc1, "g", [(("t".into(), 0), 5)]);
        t.observe_commit(&dc1, "g", [(("t".into(), 0), 9), (("t".into(), 1), 2)]);
        let dirty = t.take_dirty();
        assert_eq!(dirty.len(), 1);
        assert_eq!(dirty[0].2[&("t".into(), 0)], 9);
        assert!(t.take_dirty().is_empty());
        assert_eq!(t.commits_on(&dc1)["g"].len(), 2);
    }

    #[test]
    fn invented_member_ids_never_grow_the_tables_past_the_bound() {
        let t = Tracker::default();
        for i in 0..(MAX_IDS + 10) {
            let key: ClientKey = (format!("c{i}"), IpAddr::from([127, 0, 0, 1]));
            t.group_request(&key, "g", &format!("m{i}"), 1, 0);
        }
        let inner = t.lock();
        assert!(
            inner.members.len() <= MAX_IDS + 1,
            "{}",
            inner.members.len()
        );
        assert!(
            inner.consumers.len() <= MAX_IDS + 1,
            "{}",
            inner.consumers.len()
        );
    }
}
