//! The proxy: listeners, per-connection forwarding, and the reaction to
//! config changes (a new `proxy.active` moves every client).
//!
//! Layout:
//! - [`listeners`]: the bootstrap listener and one lazily bound listener per
//!   virtual broker, each with an accept loop and the connection cap;
//! - [`connection`]: one task per client connection, pumping frames to one
//!   upstream broker and rewriting responses ([`loops`] reads requests,
//!   [`responses`] answers them; [`lazy_buf`] buffers both sides only while
//!   data moves);
//! - [`upstream`]: what kflip itself asks the clusters (API versions, brokers).

mod addresses;
mod auth;
mod auth_files;
mod connection;
mod lazy_buf;
mod listeners;
mod loops;
mod responses;
mod session;
mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ClusterName, Config, ConfigError, ProxyConfig};
use crate::failover::{EngineLink, Switchboard};
use crate::protocol::versions::VersionTable;
use crate::replication::Engine;
use crate::routing::Topology;

pub use listeners::ListenerKind;

pub use crate::failover::SwitchState;

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
    /// Virtual node slots per cluster.
    topology: Topology,
    /// Each cluster's real topic ids, for the virtual ids clients see.
    topic_ids: Arc<crate::routing::topic_ids::TopicIds>,
    /// Virtual broker listeners by slot.
    listeners: listeners::BrokerListeners,
    /// When each cluster was last discovered on a connection's behalf.
    discovery: tokio::sync::Mutex<HashMap<ClusterName, std::time::Instant>>,
    /// ApiVersions of each cluster that answered.
    versions: Mutex<HashMap<ClusterName, Arc<VersionTable>>>,
    /// Client connections being served.
    connections: AtomicUsize,
    /// Client connections being served, by client address.
    per_address: Mutex<HashMap<std::net::IpAddr, usize>>,
    /// The bootstrap listener's bound port.
    bootstrap_port: AtomicU16,
    /// Cancelled on SIGTERM/SIGINT.
    shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    tasks: TaskTracker,
    /// The switch, what is remembered about clients across it, and the
    /// link to the engine: [`crate::failover`] owns all of it.
    board: Arc<Switchboard>,
    /// Serves one accepted connection (`connection::serve`); the listeners
    /// call it without depending on the connection module.
    serve: Serve,
    /// Users, JWKS and principals files, re-read when they change.
    auth: auth_files::AuthFiles,
    /// Per-request counters for `/metrics`.
    metrics: Arc<crate::admin::metrics::ProxyMetrics>,
}

/// The future that serves one client connection.
type Serve = fn(Arc<Shared>, TcpStream, ListenerKind) -> Pin<Box<dyn Future<Output = ()> + Send>>;

fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    kind: ListenerKind,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(connection::serve(shared, stream, kind))
}

impl Shared {
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
#[derive(Clone)]
pub struct ProxyHandle {
    /// The bootstrap listener's bound address.
    pub bootstrap: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl ProxyHandle {
    /// The switch, for status and metrics.
    pub fn board(&self) -> &Arc<Switchboard> {
        &self.shared.board
    }

    /// The per-request counters.
    pub fn metrics(&self) -> &crate::admin::metrics::ProxyMetrics {
        &self.shared.metrics
    }

    /// The current switch state.
    pub fn switch_state(&self) -> SwitchState {
        self.shared.board.state()
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
    let board = Arc::new(Switchboard::new(
        config.clone(),
        p.clone(),
        shutdown.clone(),
        EngineLink::new(engine),
    ));
    let shared = Arc::new(Shared {
        config: config.clone(),
        topology: Topology::new(p.max_brokers as usize),
        topic_ids: Default::default(),
        listeners: listeners::BrokerListeners::new(&p),
        startup: p.clone(),
        versions: Mutex::new(HashMap::new()),
        discovery: tokio::sync::Mutex::new(HashMap::new()),
        connections: AtomicUsize::new(0),
        per_address: Mutex::new(HashMap::new()),
        bootstrap_port: AtomicU16::new(p.listen_port),
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
        board,
        serve,
        auth: Default::default(),
        metrics: Default::default(),
    });
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
    let metrics = shared.metrics.clone();
    tokio::spawn(crate::memory::trim_when_idle(
        move || metrics.moved(),
        shutdown.clone(),
    ));
    tokio::spawn(crate::failover::switch::feed_engine(shared.board.clone()));
    Ok(ProxyHandle { bootstrap, shared })
}

/// Applies config changes: a new active cluster runs the switch (see
/// `failover::switch::run`), which bumps the switch epoch.
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
        let previous = shared.board.state();
        if p.active != previous.active {
            tracing::info!(
                from = %previous.active,
                to = %p.active,
                epoch = previous.epoch + 1,
                "switching active cluster"
            );
            tokio::spawn(upstream::discover(shared.clone(), p.active.clone()));
            crate::failover::switch::run(&shared.board, previous, p.active.clone()).await;
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
