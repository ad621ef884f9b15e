//! What the proxy asks the clusters itself: their API versions and brokers,
//! and where a client connection should be forwarded.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{ClusterConfig, ClusterName};
use crate::error::Fault;
use crate::kafka::KafkaConn;
use crate::protocol::versions::{advertised, VersionTable};
use crate::routing::{BrokerAddr, RealNodeId};

use super::{listeners, ListenerKind, Shared};

/// Learns a cluster's versions and brokers and binds a virtual listener for
/// each broker, so clients that reconnect straight to a broker port after a
/// restart or switch find it. Retries until it succeeds or the cluster is no
/// longer active.
pub(crate) async fn discover(shared: Arc<Shared>, cluster: ClusterName) {
    let mut delay = Duration::from_millis(200);
    loop {
        match discover_once(&shared, &cluster).await {
            Ok(n) => {
                tracing::debug!(%cluster, brokers = n, "cluster discovered");
                return;
            }
            Err(e) => tracing::warn!(%cluster, error = %e, "cannot discover cluster; retrying"),
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
        if shared.board.state().active != cluster {
            return;
        }
    }
}

/// Why a discovery failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoverError {
    /// The cluster did not answer, or answered nothing usable.
    #[error(transparent)]
    Cluster(#[from] Fault),
    /// A virtual broker's listener could not be bound.
    #[error(transparent)]
    Listen(super::ProxyError),
}

pub(crate) async fn discover_once(
    shared: &Arc<Shared>,
    cluster: &ClusterName,
) -> Result<usize, DiscoverError> {
    let versions = cluster_versions(shared, cluster).await?;
    let settings = cluster_of(shared, cluster)?;
    let timeout = shared.proxy_config().connect_timeout;
    let mut conn = KafkaConn::connect_any(&settings, timeout)
        .await
        .map_err(|e| Fault::upstream(cluster, e))?;
    let md = conn
        .brokers(&versions)
        .await
        .map_err(|e| Fault::upstream(cluster, e))?;
    let brokers: Vec<(RealNodeId, BrokerAddr)> = md
        .brokers
        .iter()
        .map(|b| {
            (
                RealNodeId(b.node_id.0),
                BrokerAddr {
                    host: b.host.as_str().to_string(),
                    port: b.port,
                },
            )
        })
        .collect();
    for slot in shared.topology.learn(cluster, &brokers) {
        let slot = slot.map_err(Fault::internal)?;
        listeners::ensure(shared, slot)
            .await
            .map_err(DiscoverError::Listen)?;
    }
    Ok(brokers.len())
}

/// Makes sure the slot a broker connection needs is known in `cluster`,
/// discovering the cluster once if not (serialised, so a switch that moves
/// many connections at once sends one Metadata request, not one each).
pub(crate) async fn ensure_discovered(
    shared: &Arc<Shared>,
    cluster: &ClusterName,
    kind: ListenerKind,
) {
    let ListenerKind::Broker(slot) = kind else {
        return;
    };
    if shared.topology.address(cluster, slot).is_some() {
        return;
    }
    let mut recent = shared.discovery.lock().await;
    let fresh = recent
        .get(cluster)
        .is_some_and(|at| at.elapsed() < Duration::from_secs(10));
    if fresh || shared.topology.address(cluster, slot).is_some() {
        return;
    }
    let bound = shared.proxy_config().connect_timeout;
    match tokio::time::timeout(bound, discover_once(shared, cluster)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!(%cluster, error = %e, "discovery failed"),
        Err(_) => tracing::debug!(%cluster, "discovery timed out"),
    }
    recent.insert(cluster.clone(), std::time::Instant::now());
}

fn cluster_of(shared: &Shared, cluster: &ClusterName) -> Result<ClusterConfig, Fault> {
    shared
        .config
        .borrow()
        .cluster(cluster)
        .cloned()
        .ok_or_else(|| Fault::upstream(cluster, "no longer configured"))
}

/// The ApiVersions table of `cluster`, probing it if not known yet.
pub(crate) async fn cluster_versions(
    shared: &Shared,
    cluster: &ClusterName,
) -> Result<Arc<VersionTable>, Fault> {
    if let Some(t) = lock(shared).get(cluster) {
        return Ok(t.clone());
    }
    let settings = cluster_of(shared, cluster)?;
    let timeout = shared.proxy_config().connect_timeout;
    let mut conn = KafkaConn::connect_any(&settings, timeout)
        .await
        .map_err(|e| Fault::upstream(cluster, e))?;
    let table = Arc::new(
        conn.api_versions()
            .await
            .map_err(|e| Fault::upstream(cluster, e))?,
    );
    lock(shared).insert(cluster.clone(), table.clone());
    Ok(table)
}

fn lock(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<ClusterName, Arc<VersionTable>>> {
    shared.versions.lock().unwrap_or_else(|e| e.into_inner())
}

/// The versions kflip advertises now: its own policy intersected with the
/// active cluster (probed if needed) and every other cluster that answered.
/// A cluster that has not answered yet cannot narrow the set; clients
/// renegotiate on every switch, because a switch reconnects them.
pub(crate) async fn advertised_versions(
    shared: &Shared,
    active: &ClusterName,
) -> Result<VersionTable, Fault> {
    cluster_versions(shared, active).await?;
    let known: Vec<Arc<VersionTable>> = lock(shared).values().cloned().collect();
    let refs: Vec<&VersionTable> = known.iter().map(|t| t.as_ref()).collect();
    Ok(advertised(&refs))
}

/// Where a connection on `kind` should go in `cluster`, in order of
/// preference. A virtual broker whose slot the cluster does not fill (it has
/// fewer brokers, or it was not discovered yet) falls back to bootstrap; the
/// client then learns the real leaders from the next Metadata.
pub(crate) fn targets(
    shared: &Shared,
    cluster: &ClusterName,
    kind: ListenerKind,
) -> Result<Vec<String>, Fault> {
    let mut out = Vec::new();
    if let ListenerKind::Broker(slot) = kind {
        if let Some(addr) = shared.topology.address(cluster, slot) {
            out.push(addr.to_string());
        } else {
            tracing::debug!(%cluster, slot = slot.0, "slot unknown in active cluster; using bootstrap");
        }
    }
    out.extend(cluster_of(shared, cluster)?.bootstrap);
    Ok(out)
}
