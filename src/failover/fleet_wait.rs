//! A planned switch waiting for the engines of its fleet: those of a
//! proxy without an engine, and those that share a flow with this
//! process's engine (see `crate::admin::fleet`).

use super::Switchboard;
use crate::config::ClusterName;

/// Asks the fleet's engines to catch up `from -> to` (see
/// `crate::admin::fleet`); false when no engine of the fleet has the flow.
pub(super) async fn fleet_catch_up(
    board: &Switchboard,
    cfg: &crate::config::ProxyConfig,
    from: &ClusterName,
    to: &ClusterName,
    gaps: &std::sync::Mutex<Vec<crate::replication::state::PartitionLag>>,
) -> bool {
    let remote = match board.remote() {
        Some(r) => r.catch_up(from, to, cfg.switch_lag_timeout).await,
        None => None,
    };
    match remote {
        Some(r) if r.caught_up.len() == r.engines.len() => {
            tracing::info!(%from, %to, engines = ?r.engines, "the fleet's engines caught up replication");
        }
        Some(r) => {
            tracing::warn!(%from, %to, engines = ?r.engines, answered = ?r.caught_up, behind = r.behind, "the fleet's engines did not all catch up in proxy.switch_lag_timeout; switching with records possibly not replicated");
            if r.behind > 0 {
                gaps.lock().unwrap_or_else(|e| e.into_inner()).push(
                    crate::replication::state::PartitionLag {
                        topic: "*".into(),
                        partition: -1,
                        records: r.behind,
                        seconds: 0.0,
                        source_end: -1,
                        replicated_to: -1,
                    },
                );
            }
        }
        None => return false,
    }
    true
}
