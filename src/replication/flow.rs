//! One flow: what its thread needs, how it starts, and its retry loop.
//!
//! A flow's copy runs on its own thread ([`run`]), split by what each part
//! does:
//! - here: the clusters a flow reaches, asking them for their ids, and
//!   retrying (with backoff) until they answer;
//! - `runner`: the started flow's clients and its loop: discovery, config
//!   sync, checkpoints, and reading the source;
//! - `copy`: one source record to the target, with provenance, and held
//!   orphans;
//! - `deliver`: librdkafka callbacks: acknowledged copies into the offset
//!   maps, and the source log end from statistics;
//! - `checkpoints`: the state topic: creating it, writing progress, and
//!   reading it back at start;
//! - `scan`: reading a partition to its end, and recovering from the
//!   target the copies made after the last checkpoint.
//!
//! A librdkafka consumer reads the source (read_committed, manual
//! assignment, no group); an idempotent librdkafka producer writes the
//! target with acks=all, batching and several requests in flight, and never
//! gives up on a record (`message.timeout.ms=0`), so records of a partition
//! land in order with no gaps. Each delivery report records the record's
//! (source offset, target offset) in the partition's
//! [`crate::offsets::OffsetMap`]; only acknowledged copies are in a map,
//! and only maps are checkpointed, so progress never runs ahead of the
//! target.
//!
//! On start (and on restart after a crash or `kill -9`), a partition's map
//! comes from its last checkpoint, then the target partition is read from
//! where the checkpoint ends: every record whose provenance header names
//! this source partition extends the map. Copying resumes right after the
//! last record found, so records written after the last checkpoint are
//! neither lost nor copied twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::{Error, Side};
use super::orphans::Orphans;
use super::runner::Runner;
use super::scan::Place;
use super::state::FlowState;
use super::topics::Admin;
use crate::config::{ClusterConfig, FlowConfig};

pub use super::scan::resume_point;

/// What a flow thread needs to start.
pub struct FlowStart {
    /// The flow.
    pub cfg: FlowConfig,
    /// How to reach its source and target.
    pub clusters: FlowClusters,
    /// Name of the state topic.
    pub state_topic: String,
    /// Set to stop the thread.
    pub stop: Arc<AtomicBool>,
    /// Runtime for admin futures.
    pub rt: tokio::runtime::Handle,
    /// Where the flow publishes its state once the cluster ids are known.
    pub slot: Arc<std::sync::Mutex<Option<Arc<FlowState>>>>,
    /// The engine's orphan watch.
    pub orphans: Orphans,
}

/// How to reach the two clusters of a flow, as the config said when the
/// flow started. A reload that changes any of it restarts the flow.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowClusters {
    /// The cluster records are read from.
    pub source: ClusterConfig,
    /// The cluster records are written to.
    pub target: ClusterConfig,
}

/// A flow whose clusters answered.
pub(super) struct FlowSetup {
    pub(super) state: Arc<FlowState>,
    /// The source's and the target's admin clients, until the runner
    /// takes them.
    pub(super) admins: Mutex<Option<(Admin, Admin)>>,
    pub(super) clusters: FlowClusters,
    pub(super) state_topic: String,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) orphans: Orphans,
}

impl FlowSetup {
    /// The flow's source, for scans.
    pub(super) fn source(&self) -> Place<'_> {
        Place {
            side: Side::Source,
            name: self.state.cfg.source.as_str(),
            cluster: &self.clusters.source,
        }
    }

    /// The source's and the target's admin clients: those `resolve` made,
    /// or new ones.
    pub(super) fn take_admins(&self) -> Result<(Admin, Admin), Error> {
        let taken = self.admins.lock().unwrap_or_else(|e| e.into_inner()).take();
        match taken {
            Some(admins) => Ok(admins),
            None => {
                let admin = |p: Place<'_>| Admin::new(p.name, p.side, p.cluster, self.rt.clone());
                Ok((admin(self.source())?, admin(self.target())?))
            }
        }
    }

    /// The flow's target, for scans.
    pub(super) fn target(&self) -> Place<'_> {
        Place {
            side: Side::Target,
            name: self.state.cfg.target.as_str(),
            cluster: &self.clusters.target,
        }
    }
}

/// Asks both clusters for their ids (at once: each is a new client's
/// first round trips) and publishes the flow's state. The admin clients
/// made for it serve the flow's run.
fn resolve(start: &FlowStart) -> Result<FlowSetup, Error> {
    let id = |cluster: &ClusterConfig, name: &str, side: Side| -> Result<(Admin, String), Error> {
        let admin = Admin::new(name, side, cluster, start.rt.clone())?;
        admin.brokers()?;
        let id = admin.cluster_id().unwrap_or_else(|| name.to_string());
        Ok((admin, id))
    };
    let (source, target) = std::thread::scope(|s| {
        let source = s.spawn(|| {
            id(
                &start.clusters.source,
                start.cfg.source.as_str(),
                Side::Source,
            )
        });
        let target = id(
            &start.clusters.target,
            start.cfg.target.as_str(),
            Side::Target,
        );
        let source = source
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (source, target)
    });
    let (source_admin, source_id) = source?;
    let (target_admin, target_id) = target?;
    let existing = start.slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let state = match existing {
        Some(s) if s.source_id == source_id && s.target_id == target_id => s,
        _ => {
            let s = Arc::new(FlowState::new(start.cfg.clone(), source_id, target_id));
            *start.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
            s
        }
    };
    Ok(FlowSetup {
        state,
        admins: Mutex::new(Some((source_admin, target_admin))),
        clusters: start.clusters.clone(),
        state_topic: start.state_topic.clone(),
        stop: start.stop.clone(),
        rt: start.rt.clone(),
        orphans: start.orphans.clone(),
    })
}

/// Runs a flow until `stop` is set; returns when drained. A flow that
/// cannot start is retried with backoff: at warn while a retry can help
/// (a cluster that does not answer yet), at error when an operator must
/// act (a refused login, a bad client setting), since a fix on the cluster
/// side needs no config reload.
pub fn run(start: FlowStart) {
    let mut delay = Duration::from_millis(500);
    while !start.stop.load(Ordering::Relaxed) {
        let attempt = resolve(&start).and_then(|setup| {
            let mut r = Runner::new(&setup)?;
            r.run()
        });
        match attempt {
            Ok(()) => return,
            Err(e) => {
                if e.retriable() {
                    tracing::warn!(flow = %start.cfg.id, side = %e.side(), error = %e, "flow cannot start yet; retrying");
                } else {
                    tracing::error!(flow = %start.cfg.id, side = %e.side(), error = %e, "flow cannot start until this is fixed; retrying");
                }
                let until = Instant::now() + delay;
                while Instant::now() < until && !start.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
