//! A shared flow's partitions that other instances copy: their maps, read
//! from the checkpoints in the state topic, so any instance answers a
//! translation (a commit a proxy saw after a planned switch, `kflip offsets
//! translate`), not only the partition's owner. Group offset syncs stay
//! with the owners: a map read here may be older than its owner's, and a
//! sync through it could move a group back.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checkpoints::load_checkpoints;
use super::error::Side;
use super::runner::Runner;
use super::scan::Place;
use super::state::{FlowState, SourcePartition};
use super::topics::Admin;
use super::Engine;
use crate::config::ClusterConfig;
use crate::offsets::OffsetMap;

/// Keeps the maps of the partitions this instance does not copy.
fn keep_others(st: &FlowState, mut maps: HashMap<SourcePartition, OffsetMap>) {
    {
        let own = st.lock();
        maps.retain(|k, _| !own.contains_key(k));
    }
    *st.remote.lock().unwrap_or_else(|e| e.into_inner()) = maps;
}

/// Asks the flow's thread for a checkpoint now and waits (until
/// `deadline`) for the target to acknowledge it: a planned switch's
/// catch-up leaves the copied maps where the fleet reads them.
pub(super) async fn checkpoint_now(st: &FlowState, deadline: Instant) {
    st.checkpoint_asked.store(true, Ordering::Relaxed);
    while Instant::now() < deadline {
        if !st.checkpoint_asked.load(Ordering::Relaxed)
            && st.checkpoint_acks.load(Ordering::Relaxed)
                >= st.checkpoint_goal.load(Ordering::Relaxed)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tracing::warn!(flow = %st.cfg.id, "the checkpoint asked for the switch is not acknowledged yet; other instances translate through older maps");
}

impl Runner<'_> {
    /// Reads the other instances' maps again (every config sync).
    pub(super) fn refresh_remote(&self) {
        let st = &self.setup.state;
        if !st.cfg.shared {
            return;
        }
        match load_checkpoints(self.setup.target(), &self.setup.state_topic, &st.cfg.id) {
            Ok(saved) => keep_others(st, saved.maps),
            Err(e) => {
                tracing::debug!(flow = %st.cfg.id, error = %e, "cannot read the other instances' maps")
            }
        }
    }
}

impl Engine {
    /// Reads the maps of the shared flows `from -> to` and back from their
    /// state topics now (after the fleet's engines caught up for a switch).
    pub async fn refresh_remote(&self, from: &str, to: &str) {
        let flows: Vec<_> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            // The flow back too: its maps bound translations (see
            // `FlowState::translate`).
            .filter(|r| {
                let (s, t) = (r.cfg.source.as_str(), r.cfg.target.as_str());
                r.cfg.shared && ((s, t) == (from, to) || (s, t) == (to, from))
            })
            .filter_map(|r| {
                let st = r.slot.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
                Some((st, r.clusters.target.clone(), r.state_topic.clone()))
            })
            .collect();
        for (st, target, topic) in flows {
            let read = tokio::task::spawn_blocking({
                let st = st.clone();
                move || {
                    let place = Place {
                        side: Side::Target,
                        name: st.cfg.target.as_str(),
                        cluster: &target,
                    };
                    load_checkpoints(place, &topic, &st.cfg.id)
                }
            })
            .await;
            match read {
                Ok(Ok(saved)) => keep_others(&st, saved.maps),
                Ok(Err(e)) => {
                    tracing::warn!(flow = %st.cfg.id, error = %e, "cannot read the other instances' maps")
                }
                Err(e) => {
                    tracing::warn!(flow = %st.cfg.id, error = %e, "reading the other instances' maps failed")
                }
            }
        }
    }
}

impl Engine {
    /// A planned switch's catch-up of the shared flow `st`, whose flow back
    /// `rev` is shared too: a partition this instance copies forward may be
    /// copied back by another instance, whose map of it bounds the
    /// translation of its groups (see `FlowState::translate`). Waits (until
    /// `deadline`) until that instance's checkpoint of each such partition
    /// has read the copies up to the new cluster's log end (clients are
    /// held, so nothing else is written there), reading them into
    /// `rev.remote`.
    pub(super) async fn await_reverse(
        &self,
        st: &Arc<FlowState>,
        rev: &Arc<FlowState>,
        deadline: Instant,
    ) {
        let Some((target, rev_target, rev_topic)) = self.reverse_place(st, rev) else {
            return;
        };
        let wanted: Vec<(String, i32)> = {
            let back = rev.lock();
            st.lock()
                .keys()
                .map(|k| (st.cfg.target_topic(&k.topic), k.partition))
                .filter(|(t, p)| {
                    !back.contains_key(&SourcePartition {
                        topic: t.clone(),
                        partition: *p,
                    })
                })
                .collect()
        };
        if wanted.is_empty() {
            return;
        }
        let ends = {
            let (st, rt) = (st.clone(), self.rt.clone());
            let wanted = wanted.clone();
            tokio::task::spawn_blocking(move || {
                let admin = Admin::new(st.cfg.target.as_str(), Side::Target, &target, rt).ok()?;
                wanted
                    .into_iter()
                    .map(|(t, p)| Some(((t.clone(), p), admin.watermarks(&t, p).ok()?.1)))
                    .collect::<Option<Vec<_>>>()
            })
            .await
            .ok()
            .flatten()
        };
        let Some(ends) = ends else {
            tracing::warn!(flow = %rev.cfg.id, "log ends of the copies unknown; translation may use older maps of the flow back");
            return;
        };
        loop {
            let read = {
                let (rev, place_cluster, topic) =
                    (rev.clone(), rev_target.clone(), rev_topic.clone());
                tokio::task::spawn_blocking(move || {
                    let place = Place {
                        side: Side::Target,
                        name: rev.cfg.target.as_str(),
                        cluster: &place_cluster,
                    };
                    load_checkpoints(place, &topic, &rev.cfg.id).map(|s| keep_others(&rev, s.maps))
                })
                .await
            };
            let current = matches!(read, Ok(Ok(()))) && {
                let remote = rev.remote.lock().unwrap_or_else(|e| e.into_inner());
                ends.iter().all(|((t, p), end)| {
                    remote
                        .get(&SourcePartition {
                            topic: t.clone(),
                            partition: *p,
                        })
                        .is_some_and(|m| crate::replication::flow::resume_point(m) >= *end)
                })
            };
            if current {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(flow = %rev.cfg.id, "the other instances' maps of the flow back have not reached the copies; groups may re-read records");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `st`'s target, and where `rev` keeps its state topic.
    fn reverse_place(
        &self,
        st: &FlowState,
        rev: &FlowState,
    ) -> Option<(ClusterConfig, ClusterConfig, String)> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let fwd = running.iter().find(|r| r.cfg.id == st.cfg.id)?;
        let back = running.iter().find(|r| r.cfg.id == rev.cfg.id)?;
        Some((
            fwd.clusters.target.clone(),
            back.clusters.target.clone(),
            back.state_topic.clone(),
        ))
    }
}
