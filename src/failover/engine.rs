//! The one narrow interface between the proxy and the replication engine of
//! the same process. The proxy asks for nothing else: the switch waits for
//! replication and reports the RPO through it, observed commits reach the
//! engine through it, and old-space commits are translated through it.
//! Every call is a no-op (or "unknown") when the process runs no engine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Commits;
use crate::config::ClusterName;
use crate::replication::state::PartitionLag;
use crate::replication::switchover::CatchUp;
use crate::replication::Engine;

/// The replication engine of this process, if any.
#[derive(Clone, Default)]
pub struct EngineLink(Option<Arc<Engine>>);

impl EngineLink {
    /// A link to `engine` (or to none).
    pub fn new(engine: Option<Arc<Engine>>) -> EngineLink {
        EngineLink(engine)
    }

    /// Whether an engine runs in this process.
    pub fn present(&self) -> bool {
        self.0.is_some()
    }

    /// Tells the engine which cluster clients use now.
    pub fn set_active(&self, cluster: &ClusterName) {
        if let Some(e) = &self.0 {
            e.set_active(cluster.as_str());
        }
    }

    /// Waits (at most `bound`) until the flows `from -> to` copied what the
    /// old cluster holds, then syncs offsets; `None` without an engine.
    pub async fn catch_up(
        &self,
        from: &ClusterName,
        to: &ClusterName,
        bound: Duration,
        commits: Commits,
    ) -> Option<CatchUp> {
        let e = self.0.as_ref()?;
        Some(e.catch_up(from.as_str(), to.as_str(), bound, commits).await)
    }

    /// Whether a flow `from -> to` of this process's engine is shared with
    /// other instances (the fleet's engines copy the rest).
    pub fn shares(&self, from: &ClusterName, to: &ClusterName) -> bool {
        self.0
            .as_ref()
            .is_some_and(|e| e.shares(from.as_str(), to.as_str()))
    }

    /// Reads the maps the fleet's engines checkpointed for the shared flows
    /// `from -> to`, so commits of their partitions translate here too.
    pub async fn refresh_remote(&self, from: &ClusterName, to: &ClusterName) {
        if let Some(e) = &self.0 {
            e.refresh_remote(from.as_str(), to.as_str()).await;
        }
    }

    /// A disaster switch away from `from`: the engine stops waiting on it
    /// and the last observed commits are pushed to `to`.
    pub async fn disaster(&self, from: &ClusterName, to: &ClusterName, commits: Commits) {
        if let Some(e) = &self.0 {
            e.disaster(from.as_str(), to.as_str());
            e.push_commits(from.as_str(), to.as_str(), commits).await;
        }
    }

    /// What the flows `from -> to` had not copied, per partition.
    pub fn rpo(&self, from: &ClusterName, to: &ClusterName) -> Vec<PartitionLag> {
        self.0
            .as_ref()
            .map(|e| e.rpo(from.as_str(), to.as_str()))
            .unwrap_or_default()
    }

    /// A commit the proxy observed on `cluster`.
    pub async fn observe_commit(
        &self,
        cluster: &ClusterName,
        group: &str,
        offsets: BTreeMap<(String, i32), i64>,
    ) {
        if let Some(e) = &self.0 {
            e.observe_commit(cluster.as_str(), group, offsets).await;
        }
    }

    /// `offset` of `topic`/`partition` on `from`, translated onto `to`.
    pub fn translate(
        &self,
        from: &ClusterName,
        to: &ClusterName,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<(String, i64)> {
        self.0
            .as_ref()?
            .translate(from.as_str(), to.as_str(), topic, partition, offset)
    }
}
