//! The proxy: listeners, per-connection forwarding, and the reaction to
//! config changes (a new `proxy.active` moves every client).
//!
//! Layout:
//! - [`listeners`]: the bootstrap listener and one lazily bound listener per
//!   virtual broker, each with an accept loop and the connection cap;
//! - [`connection`]: one task per client connection, pumping frames to one
//!   upstream broker and rewriting responses;
//! - [`upstream`]: what kflip itself asks the clusters (API versions, brokers).

pub(crate) mod connection;
mod failover;
mod listeners;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ClusterName, Config, ConfigError, ProxyConfig};
use crate::protocol::versions::VersionTable;
use crate::replication::Engine;
use crate::routing::Topology;

pub use listeners::ListenerKind;

/// Which cluster clients go to, and how many times that changed.
#[derive(Clone, Debug, PartialEq)]
pub struct SwitchState {
    /// Bumped on every change of the active cluster. Sessions of an older
    /// epoch are drained and re-routed; clients' group members, fetch
    /// positions and producer ids from older epochs are fenced or remapped
    /// (see `failover`).
    pub epoch: u64,
    /// The cluster clients are forwarded to.
    pub active: ClusterName,
    /// A planned switch is under way: connections hold new requests while
    /// replication catches up.
    pub holding: bool,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The config has no usable proxy section.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A virtual broker's listener could not be bound: clients told to
    /// connect there would find nothing (or another program).
    #[error("cannot listen on {addr} for virtual broker {slot}: {source}; virtual broker n listens on proxy.broker_port_base + n (default: proxy.listen's port + 1 + n): free the port or set proxy.broker_port_base")]
    BrokerPort {
        /// The address.
        addr: String,
        /// The virtual broker.
        slot: i32,
        /// Why.
        source: std::io::Error,
    },
}

/// State shared by every listener and connection.
pub(crate) struct Shared {
    /// The latest valid config.
    config: watch::Receiver<Arc<Config>>,
    /// Proxy settings that need a restart to change (listeners); kept from
    /// startup so a reload cannot half-apply them.
    startup: ProxyConfig,
    /// Active cluster and switch epoch.
    switch: watch::Sender<SwitchState>,
    /// Virtual node slots per cluster.
    topology: Topology,
    /// Each cluster's real topic ids, for the virtual ids clients see.
    topic_ids: crate::routing::topic_ids::TopicIds,
    /// Virtual broker listeners by slot.
    listeners: listeners::BrokerListeners,
    /// When each cluster was last discovered on a connection's behalf.
    discovery: tokio::sync::Mutex<HashMap<ClusterName, std::time::Instant>>,
    /// ApiVersions of each cluster that answered.
    versions: Mutex<HashMap<ClusterName, Arc<VersionTable>>>,
    /// Client connections being served.
    connections: AtomicUsize,
    /// The bootstrap listener's bound port.
    bootstrap_port: AtomicU16,
    /// Cancelled on SIGTERM/SIGINT.
    shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    tasks: TaskTracker,
    /// Requests forwarded and not yet answered, over all connections.
    in_flight: AtomicUsize,
    /// The replication engine running in the same process, if any.
    engine: Option<Arc<Engine>>,
    /// Client state across switches.
    failover: failover::Tracker,
}

impl Shared {
    /// Requests forwarded and not yet answered.
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The current proxy settings (validation guarantees the section exists
    /// in every published snapshot; fall back to startup's if not).
    fn proxy_config(&self) -> ProxyConfig {
        self.config
            .borrow()
            .proxy
            .clone()
            .unwrap_or_else(|| self.startup.clone())
    }
}

/// A running proxy.
pub struct ProxyHandle {
    /// The bootstrap listener's bound address.
    pub bootstrap: SocketAddr,
    shared: Arc<Shared>,
}

impl ProxyHandle {
    /// The current switch state.
    pub fn switch_state(&self) -> SwitchState {
        self.shared.switch.borrow().clone()
    }

    /// Client connections open now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Waits until every connection has drained after `shutdown` was
    /// cancelled, at most `proxy.shutdown_grace` (plus a second).
    pub async fn drained(&self) {
        self.shared.tasks.close();
        let bound = self.shared.proxy_config().shutdown_grace + std::time::Duration::from_secs(1);
        if tokio::time::timeout(bound, self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.connections(),
                "shutdown grace expired; closing remaining connections"
            );
        }
    }
}

/// Starts the proxy on the config in `config`, following its changes until
/// `shutdown` is cancelled. With `engine` (the replication engine of the
/// same process), planned switches wait for replication to catch up and
/// observed commits are translated at once.
pub async fn start(
    config: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
    engine: Option<Arc<Engine>>,
) -> Result<ProxyHandle, ProxyError> {
    let cfg = config.borrow().clone();
    let p = cfg.require_proxy()?.clone();
    let (switch, _) = watch::channel(SwitchState {
        epoch: 0,
        active: p.active.clone(),
        holding: false,
    });
    let shared = Arc::new(Shared {
        config: config.clone(),
        topology: Topology::new(p.max_brokers as usize),
        topic_ids: Default::default(),
        listeners: listeners::BrokerListeners::new(&p),
        startup: p.clone(),
        switch,
        versions: Mutex::new(HashMap::new()),
        discovery: tokio::sync::Mutex::new(HashMap::new()),
        connections: AtomicUsize::new(0),
        bootstrap_port: AtomicU16::new(p.listen_port),
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
        in_flight: AtomicUsize::new(0),
        engine,
        failover: failover::Tracker::default(),
    });
    if let Some(engine) = &shared.engine {
        engine.set_active(p.active.as_str());
    }
    let bootstrap = listeners::bind_bootstrap(&shared).await?;
    tracing::info!(
        listen = %bootstrap,
        active = %p.active,
        advertised_host = %p.advertised_host,
        "proxy listening"
    );
    // One discovery of the active cluster before serving, so a virtual
    // broker port that is taken stops kflip here, with the port named,
    // instead of leaving clients to retry a broker that never answers. A
    // cluster that does not answer yet is discovered in the background.
    let first = tokio::time::timeout(
        p.connect_timeout,
        upstream::discover_once(&shared, &p.active),
    )
    .await;
    match first {
        Ok(Err(upstream::DiscoverError::Listen(e))) => return Err(e),
        Ok(Ok(n)) => tracing::debug!(cluster = %p.active, brokers = n, "cluster discovered"),
        _ => {
            tokio::spawn(upstream::discover(shared.clone(), p.active.clone()));
        }
    }
    tokio::spawn(follow_config(shared.clone(), config));
    tokio::spawn(failover::feed_engine(shared.clone()));
    Ok(ProxyHandle { bootstrap, shared })
}

/// Applies config changes: a new active cluster runs the switch (see
/// `failover::switch`), which bumps the switch epoch.
async fn follow_config(shared: Arc<Shared>, mut config: watch::Receiver<Arc<Config>>) {
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            changed = config.changed() => if changed.is_err() { return },
        }
        let cfg = config.borrow_and_update().clone();
        let Some(p) = cfg.proxy.as_ref() else {
            tracing::warn!("reloaded config has no proxy section; the proxy keeps its settings");
            continue;
        };
        warn_restart_needed(&shared.startup, p);
        let previous = shared.switch.borrow().clone();
        if p.active != previous.active {
            tracing::info!(
                from = %previous.active,
                to = %p.active,
                epoch = previous.epoch + 1,
                "switching active cluster"
            );
            tokio::spawn(upstream::discover(shared.clone(), p.active.clone()));
            failover::switch(&shared, previous, p.active.clone()).await;
        }
        // Clusters added or changed on reload are probed afresh.
        let known: Vec<ClusterName> = cfg.clusters.keys().cloned().collect();
        shared
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| known.contains(name));
    }
}

fn warn_restart_needed(startup: &ProxyConfig, now: &ProxyConfig) {
    let fields = [
        (
            "proxy.listen",
            startup.listen_host != now.listen_host || startup.listen_port != now.listen_port,
        ),
        (
            "proxy.advertised_host",
            startup.advertised_host != now.advertised_host,
        ),
        (
            "proxy.broker_port_base",
            startup.broker_port_base != now.broker_port_base,
        ),
        ("proxy.max_brokers", startup.max_brokers != now.max_brokers),
    ];
    for (key, changed) in fields {
        if changed {
            tracing::warn!(key, "changed in the config file; restart kflip to apply it");
        }
    }
}
