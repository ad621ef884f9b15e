//! Cluster reachability: every cluster in the config is probed on
//! `admin.probe_interval` the way kflip reaches it for real (TCP, TLS,
//! SASL login), so "up" means "kflip could serve clients there now".

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterName, Config};
use crate::kafka::KafkaConn;

/// The last probe of one cluster.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Probe {
    /// The cluster answered and kflip logged in.
    pub up: bool,
    /// Why not, if it did not (never carries a secret).
    pub error: Option<String>,
    /// When the probe finished (Unix ms).
    pub at_unix_ms: i64,
    /// How long the probe took.
    pub took_ms: u64,
}

/// The last probe of every cluster, shared with `/status`, `/readyz` and
/// `/metrics`.
#[derive(Debug, Default)]
pub struct Reachability(Mutex<BTreeMap<ClusterName, Probe>>);

impl Reachability {
    /// The last probe of each cluster.
    pub fn snapshot(&self) -> BTreeMap<ClusterName, Probe> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last probe of `cluster`, if it was probed.
    pub fn get(&self, cluster: &ClusterName) -> Option<Probe> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(cluster)
            .cloned()
    }

    fn set(&self, cluster: ClusterName, probe: Probe) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cluster, probe);
    }

    fn keep(&self, clusters: &[ClusterName]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c, _| clusters.contains(c));
    }
}

/// Probes every cluster of the current config now, concurrently.
pub async fn probe_all(reach: &Reachability, config: &Config, timeout: Duration) {
    let clusters: Vec<_> = config
        .clusters
        .iter()
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    reach.keep(&clusters.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
    let probes = clusters.into_iter().map(|(name, cluster)| async move {
        let started = std::time::Instant::now();
        let result = KafkaConn::connect_any(&cluster, timeout).await;
        let probe = Probe {
            up: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
            at_unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            took_ms: started.elapsed().as_millis() as u64,
        };
        (name, probe)
    });
    for (name, probe) in futures_join(probes).await {
        if let Some(old) = reach.get(&name) {
            if old.up != probe.up {
                match &probe.error {
                    None => tracing::info!(cluster = %name, "cluster reachable again"),
                    Some(e) => tracing::warn!(cluster = %name, error = %e, "cluster unreachable"),
                }
            }
        }
        reach.set(name, probe);
    }
}

async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(v) = r {
            out.push(v);
        }
    }
    out
}

/// Probes every cluster on `admin.probe_interval` until `stop`.
pub async fn run(
    reach: Arc<Reachability>,
    mut config: watch::Receiver<Arc<Config>>,
    stop: CancellationToken,
) {
    loop {
        let cfg = config.borrow_and_update().clone();
        let interval = cfg
            .admin
            .as_ref()
            .map(|a| a.probe_interval)
            .unwrap_or(Duration::from_secs(5));
        let timeout = cfg
            .proxy
            .as_ref()
            .map(|p| p.connect_timeout)
            .unwrap_or(Duration::from_secs(5))
            .min(interval.max(Duration::from_secs(1)));
        probe_all(&reach, &cfg, timeout).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            // A reloaded config (a new cluster, a new active one) is probed
            // at once.
            changed = config.changed() => if changed.is_err() { return },
        }
    }
}
