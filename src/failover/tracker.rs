//! What the proxy remembers about its clients across switches: group
//! members and consumers from before a switch (fenced, their fetches held),
//! the commits it observed, and the log ends clusters acknowledged. Every
//! table is keyed by what clients send and bounded ([`MAX_IDS`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{ClientKey, Commits, GroupOffsets};
use crate::config::ClusterName;
use crate::kafka::groups::Protocol;

/// How long after a switch fetches of not-yet-rejoined members are held.
/// A member that has not rejoined by then has left or died.
const REJOIN_WINDOW: Duration = Duration::from_secs(60);

/// Bound on remembered member and producer ids (oldest epochs go first).
pub(super) const MAX_IDS: usize = 100_000;

/// A producer id of the old cluster and what it became.
pub(super) struct Remap {
    pub(super) producer_id: i64,
    pub(super) producer_epoch: i16,
    /// First sequence the client used per partition after the switch.
    pub(super) base: HashMap<(String, i32), i32>,
    /// A transactional producer's transaction from before the switch is
    /// still open in the client (it has not aborted it yet): its requests
    /// are refused, not remapped.
    pub(super) old_txn_open: bool,
}

#[derive(Default)]
pub(super) struct Inner {
    /// The latest switch: its epoch and when.
    pub(super) switched: Option<(u64, Instant)>,
    /// The cluster that was active before the latest switch.
    pub(super) previous: Option<ClusterName>,
    /// Group member id -> epoch it was first seen in.
    pub(super) members: HashMap<String, u64>,
    /// Client -> group -> epoch its membership was last active in.
    pub(super) consumers: HashMap<ClientKey, HashMap<String, u64>>,
    /// (client, producer id) -> epoch the id belongs to.
    pub(super) producers: HashMap<(ClientKey, i64), u64>,
    /// (client, producer id, producer epoch, switch epoch) -> remap.
    pub(super) remaps: HashMap<(ClientKey, i64, i16, u64), Remap>,
    /// Cluster -> last commits observed on it.
    pub(super) commits: HashMap<ClusterName, Commits>,
    /// Groups with commits not yet pushed to the engine.
    pub(super) dirty: Vec<(ClusterName, String)>,
    /// Fenced member ids already removed from the old cluster's group.
    pub(super) left: std::collections::HashSet<String>,
    /// Fenced members whose cluster did not answer the LeaveGroup (it was
    /// down): (cluster, group, member), removed when kflip next switches
    /// to that cluster.
    pub(super) pending_leaves: Vec<(ClusterName, String, String, Protocol)>,
    /// (cluster, topic, partition) -> log ends the cluster acknowledged to
    /// producers, oldest first, with when (unix ms): what a disaster's RPO
    /// report knows beyond what the engine has read.
    pub(super) acked: HashMap<(ClusterName, String, i32), VecDeque<(i64, i64)>>,
    /// Transactions (producer id, epoch) kflip aborted on the old cluster.
    pub(super) aborted: std::collections::HashSet<(i64, i16)>,
}

/// Acknowledged log ends remembered per partition.
const ACKED_KEPT: usize = 128;

/// What the proxy remembers about clients across switches.
#[derive(Default)]
pub struct Tracker {
    inner: Mutex<Inner>,
    /// Serializes producer id requests to the new cluster.
    pub(super) init: tokio::sync::Mutex<()>,
    /// Wakes the task that feeds observed commits to the engine.
    pub commits_changed: tokio::sync::Notify,
}

/// Keeps an id table keyed by what clients send within [`MAX_IDS`]: ids of
/// older epochs go first; if the current epoch alone is over the bound (a
/// client inventing ids), the table starts again. Forgotten ids are no
/// longer fenced after a switch, which is what their owners then see; the
/// proxy's memory never grows with a client's inventiveness.
pub(super) fn prune<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, u64>, current: u64) {
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
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the epoch moved away from `from`.
    pub fn switched(&self, epoch: u64, from: &ClusterName) {
        let mut inner = self.lock();
        inner.switched = Some((epoch, Instant::now()));
        inner.previous = Some(from.clone());
    }

    /// The cluster that was active before the latest switch.
    pub fn previous_active(&self) -> Option<ClusterName> {
        self.lock().previous.clone()
    }

    /// A group request from `member` (generation `generation`) of `group`
    /// arrived from `key` on a connection of switch epoch `epoch`. Returns
    /// whether the member is from before the switch and must be fenced.
    pub fn group_request(
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
    pub fn consumer_heartbeat(
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
    pub fn fetch_held(&self, key: &ClientKey, epoch: u64) -> bool {
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
    pub fn left(&self, key: &ClientKey, group: &str) {
        let mut inner = self.lock();
        if let Some(groups) = inner.consumers.get_mut(key) {
            groups.remove(group);
        }
    }

    /// Records commits the cluster accepted.
    pub fn observe_commit(
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
    pub fn take_dirty(&self) -> Vec<(ClusterName, String, GroupOffsets)> {
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
    pub fn commits_on(&self, cluster: &ClusterName) -> Commits {
        self.lock()
            .commits
            .get(cluster)
            .cloned()
            .unwrap_or_default()
    }

    /// `cluster` acknowledged records up to (not including) these ends.
    pub fn acked(&self, cluster: &ClusterName, ends: Vec<(String, i32, i64)>) {
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
    pub fn acked_past(
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
}
