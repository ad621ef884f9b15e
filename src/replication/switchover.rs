//! What the engine does for a switch of the active cluster: wait until the
//! flows from the old cluster have caught up, sync group offsets one last
//! time, and report what was not replicated (RPO).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::Side;
use super::flow::FlowClusters;
use super::groups::{self, group_admin};
use super::state::{FlowState, PartitionLag};
use super::topics::Admin;
use super::Engine;
use crate::config::ClusterConfig;
use crate::kafka::groups::{GroupAdmin, Offsets};

/// How long past `proxy.switch_lag_timeout` the final group offset sync
/// of a planned switch may run while clients are held.
const SYNC_GRACE: Duration = Duration::from_secs(5);

/// The outcome of [`Engine::catch_up`].
#[derive(Clone, Debug, Default)]
pub struct CatchUp {
    /// Flows from the old to the new cluster that took part.
    pub flows: Vec<String>,
    /// Whether every partition reached the old cluster's log end in time.
    pub caught_up: bool,
    /// Partitions still behind when the bound expired (empty when caught
    /// up); `records` is -1 where the source log end could not be read.
    pub gaps: Vec<PartitionLag>,
    /// How long the wait took.
    pub waited: Duration,
}

/// Source log ends of the partitions a flow copies, read now, and the
/// partitions whose end could not be read.
#[derive(Debug, Default)]
struct Ends {
    /// Log end by (topic, partition).
    read: BTreeMap<(String, i32), i64>,
    /// Partitions whose end is unknown (the admin client or the request
    /// failed): they count as behind, never as caught up.
    unknown: Vec<(String, i32)>,
}

/// Every partition `st` copies.
fn partitions(st: &FlowState) -> Vec<(String, i32)> {
    st.lock()
        .keys()
        .map(|k| (k.topic.clone(), k.partition))
        .collect()
}

/// Reads the source log end of every partition `st` copies.
fn source_ends(st: &FlowState, source: &ClusterConfig, rt: tokio::runtime::Handle) -> Ends {
    let keys = partitions(st);
    let mut out = Ends::default();
    let admin = match Admin::new(st.cfg.source.as_str(), Side::Source, source, rt) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(flow = %st.cfg.id, error = %e, "log ends unknown");
            out.unknown = keys;
            return out;
        }
    };
    for (topic, partition) in keys {
        match admin.watermarks(&topic, partition) {
            Ok((_, high)) => {
                out.read.insert((topic, partition), high);
            }
            Err(e) => {
                tracing::warn!(flow = %st.cfg.id, error = %e, "log end unknown");
                out.unknown.push((topic, partition));
            }
        }
    }
    out
}

/// Partitions of `st` whose copies have not reached `ends`. A partition
/// whose end is unknown is behind by an unknown number of records
/// (`records` -1): an end that cannot be measured is not caught up.
fn behind(st: &FlowState, ends: &Ends) -> Vec<PartitionLag> {
    st.lag()
        .into_iter()
        .filter_map(|mut p| {
            let key = (p.topic.clone(), p.partition);
            if ends.unknown.contains(&key) {
                p.records = -1;
                return Some(p);
            }
            let end = *ends.read.get(&key)?;
            p.source_end = p.source_end.max(end);
            p.records = (end - p.replicated_to).max(0);
            (p.records > 0).then_some(p)
        })
        .collect()
}

/// Per target partition of `st`, the offset after its last copy.
fn copies_end(st: &FlowState) -> BTreeMap<(String, i32), i64> {
    st.lock()
        .iter()
        .filter_map(|(k, p)| {
            let end = p.map.runs().last()?.target_end().0;
            Some(((st.cfg.target_topic(&k.topic), k.partition), end))
        })
        .collect()
}

/// Partitions of `st` whose records below `ends` are not all handled.
fn unhandled(st: &FlowState, ends: &BTreeMap<(String, i32), i64>) -> Vec<(String, i32)> {
    let parts = st.lock();
    parts
        .iter()
        .filter(|(k, p)| {
            ends.get(&(k.topic.clone(), k.partition))
                .is_some_and(|&end| p.handled() < end)
        })
        .map(|(k, _)| (k.topic.clone(), k.partition))
        .collect()
}

impl Engine {
    /// Whether a flow from `from` to `to` is shared with other instances:
    /// this engine then copies only some of its partitions.
    pub fn shares(&self, from: &str, to: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|r| r.cfg.source.as_str() == from && r.cfg.target.as_str() == to && r.cfg.shared)
    }

    /// Flows from `from` to `to` that have started, with their clusters.
    fn flows_between(&self, from: &str, to: &str) -> Vec<(Arc<FlowState>, FlowClusters)> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .iter()
            .filter(|r| r.cfg.source.as_str() == from && r.cfg.target.as_str() == to)
            .filter_map(|r| {
                let st = r.slot.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
                Some((st, r.clusters.clone()))
            })
            .collect()
    }

    /// For a planned switch from `from` to `to` (clients already held):
    /// waits until every flow `from -> to` has copied up to the source log
    /// ends read now, at most `bound`, then syncs group offsets once and
    /// pushes `commits` (the last commits the proxy saw on `from`, by
    /// group). Returns what was still behind.
    pub async fn catch_up(
        &self,
        from: &str,
        to: &str,
        bound: Duration,
        commits: BTreeMap<String, BTreeMap<(String, i32), i64>>,
    ) -> CatchUp {
        let started = Instant::now();
        let deadline = started + bound;
        let flows = self.flows_between(from, to);
        let mut report = CatchUp {
            flows: flows.iter().map(|f| f.0.cfg.id.clone()).collect(),
            caught_up: true,
            ..CatchUp::default()
        };
        for (st, clusters) in &flows {
            // Read the ends until each is known or the bound expires.
            let mut ends = Ends::default();
            loop {
                let (s, source, rt) = (st.clone(), clusters.source.clone(), self.rt.clone());
                ends = match tokio::task::spawn_blocking(move || source_ends(&s, &source, rt)).await
                {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(flow = %st.cfg.id, error = %e, "reading log ends failed");
                        Ends {
                            unknown: partitions(st),
                            ..ends
                        }
                    }
                };
                if ends.unknown.is_empty() || Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut gaps = behind(st, &ends);
            while !gaps.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
                gaps = behind(st, &ends);
            }
            if !gaps.is_empty() {
                report.caught_up = false;
                report.gaps.extend(gaps);
            }
            if st.cfg.shared {
                super::remote::checkpoint_now(st, deadline).await;
            }
            // The flow back reads the copies just made (and skips them), so
            // that translation knows the new cluster holds nothing of its
            // own before their end; otherwise groups would resume early, at
            // the first copy the flow back had not read yet.
            if let Some(rev) = self.flows.reverse_of(st) {
                let copied = if st.cfg.shared {
                    // Another instance may copy forward a partition this
                    // one copies back: the copies end where the new
                    // cluster's logs end, as its clients are held.
                    let (r, target, rt) = (rev.clone(), clusters.target.clone(), self.rt.clone());
                    tokio::task::spawn_blocking(move || source_ends(&r, &target, rt))
                        .await
                        .map(|e| e.read)
                        .unwrap_or_default()
                } else {
                    copies_end(st)
                };
                while !unhandled(&rev, &copied).is_empty() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                if rev.cfg.shared {
                    super::remote::checkpoint_now(&rev, deadline).await;
                    self.await_reverse(st, &rev, deadline).await;
                }
                let left = unhandled(&rev, &copied);
                if !left.is_empty() {
                    tracing::warn!(flow = %rev.cfg.id, partitions = ?left, "the flow back has not read the new copies; groups may re-read records");
                }
            }
            // The group phase has a bound of its own, so the hold as a whole
            // ends within `bound` + SYNC_GRACE however many groups there
            // are. The commits the proxy observed go first: they are the
            // newest, and what held consumers resume from.
            let sync_until = tokio::time::Instant::from_std(deadline + SYNC_GRACE);
            let timeout = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(2))
                .min(SYNC_GRACE);
            let mut src = group_admin(&clusters.source, timeout);
            let mut tgt = group_admin(&clusters.target, timeout);
            let reverse = self.flows.reverse_of(st);
            let reverse = reverse.as_deref();
            let groups = async {
                push_observed(st, reverse, &mut tgt, &commits).await;
                if let Err(e) = groups::sync_once(st, reverse, &mut src, &mut tgt).await {
                    tracing::warn!(flow = %st.cfg.id, error = %e, "final group offset sync failed");
                }
            };
            if tokio::time::timeout_at(sync_until, groups).await.is_err() {
                report.caught_up = false;
                tracing::warn!(flow = %st.cfg.id, grace = ?SYNC_GRACE, "final group offset sync cut short by the switch's bound (proxy.switch_lag_timeout + grace); groups not reached resume at the last periodic sync");
            }
        }
        report.waited = started.elapsed();
        report
    }

    /// For a disaster switch away from `from`: every partition the flows
    /// `from -> to` copy, with what they had not copied as far as the engine
    /// knows (the source log ends are from the last statistics it received
    /// before `from` went away, or the last record it read).
    pub fn rpo(&self, from: &str, to: &str) -> Vec<PartitionLag> {
        self.flows_between(from, to)
            .iter()
            .flat_map(|(st, _)| st.lag())
            .collect()
    }

    /// Pushes the last commits the proxy saw on `from` to every flow from
    /// `from` to `to`, translated (used after a disaster switch).
    pub async fn push_commits(
        &self,
        from: &str,
        to: &str,
        commits: BTreeMap<String, BTreeMap<(String, i32), i64>>,
    ) {
        for (st, clusters) in self.flows_between(from, to) {
            let reverse = self.flows.reverse_of(&st);
            let mut tgt = group_admin(&clusters.target, Duration::from_secs(5));
            push_observed(&st, reverse.as_deref(), &mut tgt, &commits).await;
        }
    }
}

/// Pushes the commits the proxy observed (by group) through
/// [`groups::push_commits`], logging each failure.
async fn push_observed(
    st: &FlowState,
    reverse: Option<&FlowState>,
    tgt: &mut GroupAdmin,
    commits: &BTreeMap<String, Offsets>,
) {
    if commits.is_empty() {
        return;
    }
    match groups::push_commits(st, reverse, tgt, commits).await {
        Ok(failed) => {
            for (group, e) in failed {
                tracing::warn!(flow = %st.cfg.id, group, error = %e, "observed commit not translated");
            }
        }
        Err(e) => {
            tracing::warn!(flow = %st.cfg.id, groups = commits.len(), error = %e, "observed commits not translated");
            tgt.reset();
        }
    }
}

impl Engine {
    /// Translates a committed `offset` of `topic`/`partition` on `from` to
    /// the topic and offset on `to`, through the flow `from -> to`.
    pub fn translate(
        &self,
        from: &str,
        to: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<(String, i64)> {
        self.flows_between(from, to).iter().find_map(|(st, _)| {
            let reverse = self.flows.reverse_of(st);
            let t = st.translate_any(reverse.as_deref(), topic, partition, offset)?;
            Some((st.cfg.target_topic(topic), t))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::replication::state::{PartState, SourcePartition};

    fn flow(parts: &[(&str, i32, i64)]) -> FlowState {
        let cfg = Config::parse(
            "clusters:\n  dc1: { bootstrap: \"a:1\" }\n  dc2: { bootstrap: \"b:1\" }\n\
             replication:\n  flows:\n    - { source: dc1, target: dc2, topics: [t] }\n",
        )
        .expect("config");
        let flow = cfg.replication.expect("replication").flows.remove(0);
        let st = FlowState::new(flow, "src".into(), "dst".into());
        for &(topic, partition, copied) in parts {
            st.lock().insert(
                SourcePartition {
                    topic: topic.into(),
                    partition,
                },
                PartState {
                    read_next: copied,
                    ..Default::default()
                },
            );
        }
        st
    }

    #[test]
    fn an_unknown_end_is_never_caught_up() {
        let st = flow(&[("t", 0, 0), ("t", 1, 0)]);
        // The end of partition 1 could not be read: it is behind, by an
        // unknown number of records, even though partition 0 is done.
        let ends = Ends {
            read: [(("t".to_string(), 0), 0)].into_iter().collect(),
            unknown: vec![("t".to_string(), 1)],
        };
        let gaps = behind(&st, &ends);
        assert_eq!(gaps.len(), 1);
        assert_eq!((gaps[0].partition, gaps[0].records), (1, -1));
        // Nothing could be read at all: every partition is behind.
        let none = Ends {
            read: BTreeMap::new(),
            unknown: vec![("t".to_string(), 0), ("t".to_string(), 1)],
        };
        assert_eq!(behind(&st, &none).len(), 2);
        // Both read and at the copies' end: caught up.
        let all = Ends {
            read: [(("t".to_string(), 0), 0), (("t".to_string(), 1), 0)]
                .into_iter()
                .collect(),
            unknown: Vec::new(),
        };
        assert!(behind(&st, &all).is_empty());
    }
}
