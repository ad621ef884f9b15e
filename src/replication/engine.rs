//! The engine: starts, stops and restarts flows to match the config, and
//! answers the proxy (lag, observed commits, a disaster). Its lock is held
//! only to read or swap the table of running flows, never across a join
//! or I/O: the proxy's async side takes it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::flow::{self, FlowClusters};
use super::state::{FlowState, PartitionLag};
use super::{acls, groups, orphans, Registry, Slot};
use crate::config::{Config, FlowConfig};

/// A running flow.
pub(super) struct Running {
    /// The flow as configured when it started.
    pub(super) cfg: FlowConfig,
    /// Its clusters' settings when it started.
    pub(super) clusters: FlowClusters,
    /// Set to stop the copy thread.
    stop: Arc<AtomicBool>,
    /// The copy thread (`None` if it could not be spawned).
    thread: Option<std::thread::JoinHandle<()>>,
    /// Where the flow's state appears once its clusters answered.
    pub(super) slot: Slot,
    /// The state topic it checkpoints to.
    pub(super) state_topic: String,
    /// Stops the group offset sync task.
    groups_stop: CancellationToken,
    /// What the last group offset sync did.
    last_sync: Arc<Mutex<groups::SyncReport>>,
    /// What the ACL and user sync did, if the flow has one.
    acls: Option<acls::SharedReport>,
}

/// Lag of one flow, for status.
#[derive(Clone, Debug)]
pub struct FlowLag {
    /// `source->target`.
    pub flow: String,
    /// Per partition.
    pub partitions: Vec<PartitionLag>,
    /// Seconds since the last completed group offset sync, if any.
    pub offset_sync_age: Option<f64>,
    /// The flow's last error, if any.
    pub last_error: Option<String>,
    /// Records copied (acknowledged by the target) since the flow started.
    pub records: u64,
    /// Their key and value bytes.
    pub bytes: u64,
    /// Produce requests, batches and request bytes the batch writer sent.
    pub produced: [u64; 3],
    /// The ACL and user sync, if the flow has one.
    pub acls: Option<acls::AclReport>,
}

/// The engine: every configured flow.
pub struct Engine {
    /// The flows started, each with what stops it.
    pub(super) running: Mutex<Vec<Running>>,
    /// The flows' state slots, for the flows themselves.
    pub(super) flows: Registry,
    /// Ranges a disaster left uncopied, per flow.
    orphans: orphans::Orphans,
    /// The runtime of admin futures and group sync tasks.
    pub(super) rt: tokio::runtime::Handle,
}

impl Engine {
    /// An engine with no flows; call [`Engine::apply`].
    pub fn new(rt: tokio::runtime::Handle) -> Engine {
        Engine {
            running: Mutex::new(Vec::new()),
            flows: Registry::default(),
            orphans: orphans::Orphans::default(),
            rt,
        }
    }

    /// Starts, stops and restarts flows to match `cfg`.
    pub fn apply(&self, cfg: &Config) {
        let wanted: Vec<FlowConfig> = cfg
            .replication
            .as_ref()
            .map(|r| r.flows.clone())
            .unwrap_or_default();
        let state_topic = cfg
            .replication
            .as_ref()
            .map(|r| r.state_topic.clone())
            .unwrap_or_else(|| "_kflip_state".into());
        let clusters_of = |w: &FlowConfig| flow_clusters(cfg, w);
        // Flows to stop leave the table under the lock and are stopped
        // outside it: a stop joins the flow's thread (a final checkpoint,
        // seconds at worst), and the proxy's async paths (commits, lag, a
        // switch) take this lock.
        let stopping: Vec<Running> = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let (keep, stopping): (Vec<Running>, Vec<Running>) = running.drain(..).partition(|r| {
                wanted
                    .iter()
                    .any(|w| *w == r.cfg && clusters_of(w).as_ref() == Some(&r.clusters))
            });
            *running = keep;
            self.flows
                .set(running.iter().map(|r| r.slot.clone()).collect());
            stopping
        };
        for r in stopping {
            tracing::info!(flow = %r.cfg.id, "stopping flow (removed or changed)");
            stop(r);
        }
        // Started only once the flows they replace have stopped, so two
        // threads never copy one flow.
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for w in wanted {
            if running.iter().any(|r| r.cfg.id == w.id) {
                continue;
            }
            let Some(clusters) = clusters_of(&w) else {
                tracing::error!(flow = %w.id, "the flow names a cluster the config does not have; not started");
                continue;
            };
            let started = self.start(w, clusters, state_topic.clone());
            running.push(started);
        }
        self.flows
            .set(running.iter().map(|r| r.slot.clone()).collect());
    }

    fn start(&self, cfg: FlowConfig, clusters: FlowClusters, state_topic: String) -> Running {
        tracing::info!(flow = %cfg.id, "starting flow");
        let stop = Arc::new(AtomicBool::new(false));
        let slot = Arc::new(Mutex::new(None));
        // Stops the group sync and the ACL sync.
        let groups_stop = CancellationToken::new();
        let acls = acls::spawn(
            &self.rt,
            &cfg,
            &clusters,
            state_topic.clone(),
            self.flows.clone(),
            groups_stop.clone(),
        );
        let start = flow::FlowStart {
            cfg: cfg.clone(),
            clusters: clusters.clone(),
            state_topic: state_topic.clone(),
            stop: stop.clone(),
            rt: self.rt.clone(),
            slot: slot.clone(),
            orphans: self.orphans.clone(),
        };
        let thread = match std::thread::Builder::new()
            .name(format!("kflip-flow-{}", cfg.id))
            .spawn(move || flow::run(start))
        {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(flow = %cfg.id, error = %e, "cannot start the flow's thread: nothing is copied for this flow; retried at the next config reload");
                None
            }
        };
        let last_sync = Arc::new(Mutex::new(groups::SyncReport::default()));
        self.rt.spawn(groups::sync_loop(
            slot.clone(),
            self.flows.clone(),
            clusters.clone(),
            last_sync.clone(),
            groups_stop.clone(),
        ));
        Running {
            cfg,
            clusters,
            stop,
            thread,
            slot,
            state_topic,
            groups_stop,
            last_sync,
            acls,
        }
    }

    /// Stops every flow, each after a final checkpoint.
    pub fn shutdown(&self) {
        let stopping: Vec<Running> = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            self.flows.set(Vec::new());
            running.drain(..).collect()
        };
        for r in stopping {
            stop(r);
        }
    }

    /// Per-flow, per-partition lag and offset-sync staleness.
    pub fn lag(&self) -> Vec<FlowLag> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .iter()
            .map(|r| {
                let st = r.slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
                FlowLag {
                    flow: r.cfg.id.clone(),
                    partitions: st.as_ref().map(|s| s.lag()).unwrap_or_default(),
                    offset_sync_age: r
                        .last_sync
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .at
                        .map(|t| t.elapsed().as_secs_f64()),
                    records: st.as_ref().map_or(0, |s| {
                        s.copied_records.load(std::sync::atomic::Ordering::Relaxed)
                    }),
                    bytes: st.as_ref().map_or(0, |s| {
                        s.copied_bytes.load(std::sync::atomic::Ordering::Relaxed)
                    }),
                    produced: st.as_ref().map_or([0; 3], |s| {
                        s.produce_sent
                            .each_ref()
                            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                    }),
                    acls: r
                        .acls
                        .as_ref()
                        .map(|a| a.lock().unwrap_or_else(|e| e.into_inner()).clone()),
                    last_error: st.and_then(|s| {
                        s.last_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone()
                    }),
                }
            })
            .collect()
    }

    /// Clients are now on `cluster` (set by a co-located proxy at start and
    /// at every switch). The periodic group sync no longer writes to it:
    /// its consumers commit there themselves, and a sync from the passive
    /// side would only race them (tansu 0.6 even accepts a commit from
    /// outside a group with members, and rebalances it).
    pub fn set_active(&self, cluster: &str) {
        self.flows.set_active(cluster);
    }

    /// A disaster switch left `from` for `to`: records of `from` the flows
    /// to `to` have not copied yet are orphans (see [`orphans`]).
    pub fn disaster(&self, from: &str, to: &str) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for r in running
            .iter()
            .filter(|r| r.cfg.source.as_str() == from && r.cfg.target.as_str() == to)
        {
            let Some(st) = r.slot.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
                continue;
            };
            let parts: Vec<_> = st
                .lock()
                .iter()
                .map(|(k, p)| (k.clone(), p.handled()))
                .collect();
            self.orphans.watch(&r.cfg.id, parts);
        }
    }

    /// Asks `flow` to copy the orphan ranges it holds now, once, whatever
    /// its `orphans` policy (the operator's restore). Returns how many
    /// ranges are held, or why nothing can be done.
    pub fn restore_orphans(&self, flow: &str) -> Result<usize, String> {
        let st = self.flow(flow).ok_or_else(|| {
            let known: Vec<String> = self.lag().into_iter().map(|l| l.flow).collect();
            format!(
                "no running flow {flow:?} (running: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })?;
        let held = self.orphans.held(flow).len();
        if held > 0 {
            st.restore_requested
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(held)
    }

    /// Every orphan range found since kflip started.
    pub fn orphans(&self) -> Vec<orphans::OrphanRange> {
        self.orphans.all()
    }

    /// The state of a flow, by id, once it has started.
    pub fn flow(&self, id: &str) -> Option<Arc<FlowState>> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let r = running.iter().find(|r| r.cfg.id == id)?;
        let st = r.slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        st
    }

    /// Feeds a commit the proxy observed on `source` (a cluster name) to
    /// every flow from that cluster: translated and committed on the target
    /// at once, under the same rules as the periodic sync.
    pub async fn observe_commit(
        &self,
        source: &str,
        group: &str,
        offsets: BTreeMap<(String, i32), i64>,
    ) {
        let flows: Vec<(Arc<FlowState>, crate::config::ClusterConfig)> = {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running
                .iter()
                .filter(|r| r.cfg.source.as_str() == source)
                .filter_map(|r| {
                    Some((
                        r.slot.lock().unwrap_or_else(|e| e.into_inner()).clone()?,
                        r.clusters.target.clone(),
                    ))
                })
                .collect()
        };
        for (st, target) in flows {
            let reverse = self.flows.reverse_of(&st);
            let mut tgt = groups::group_admin(&target, Duration::from_secs(10));
            if let Err(e) =
                groups::push_commit(&st, reverse.as_deref(), &mut tgt, group, &offsets).await
            {
                tracing::warn!(flow = %st.cfg.id, group, error = %e, "pushed commit not translated");
            }
        }
    }
}

/// How `cfg` reaches the clusters of `flow` (`None` if it names one the
/// config lacks, which validation rules out). The whole of each
/// [`crate::config::ClusterConfig`] is kept, so a reload that changes any
/// of a cluster's settings restarts the flows that use it.
fn flow_clusters(cfg: &Config, flow: &FlowConfig) -> Option<FlowClusters> {
    Some(FlowClusters {
        source: cfg.cluster(&flow.source)?.clone(),
        target: cfg.cluster(&flow.target)?.clone(),
    })
}

/// Stops a flow and waits for its thread (which checkpoints last). Never
/// call it with `Engine::running` locked.
fn stop(mut r: Running) {
    r.stop.store(true, Ordering::Relaxed);
    r.groups_stop.cancel();
    if let Some(t) = r.thread.take() {
        if let Err(panic) = t.join() {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(flow = %r.cfg.id, panic = %why, "the flow's thread panicked; its last progress may not be checkpointed (a restart recovers it from the target)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_follows_every_setting_of_its_clusters() {
        let cfg = |dc2: &str| {
            Config::parse(&format!(
                "clusters:\n  dc1: {{ bootstrap: \"a:1\" }}\n  dc2: {{ bootstrap: \"{dc2}\" }}\n\
                 replication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [t] }}\n"
            ))
            .expect("config")
        };
        let (before, after) = (cfg("b:1"), cfg("b:1,c:1"));
        let flow = &before.replication.as_ref().expect("replication").flows[0];
        let was = flow_clusters(&before, flow).expect("clusters");
        assert_eq!(was.source.bootstrap, ["a:1"]);
        assert_eq!(flow_clusters(&cfg("b:1"), flow), Some(was.clone()));
        assert_ne!(flow_clusters(&after, flow), Some(was));
    }
}
