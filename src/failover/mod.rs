//! Failover: the switch choreography and what the proxy remembers about
//! its clients so that they cross a switch without losing their place.
//!
//! This module alone owns the switch. A switch of `proxy.active` runs in
//! [`switch::run`], as one state machine with one overall deadline for the
//! hold ([`Switchboard::hold_deadline`]):
//! - **planned** (the old cluster answers): every connection holds new
//!   requests and in-flight ones finish; the co-located engine waits until
//!   the flows from the old cluster have copied everything (bounded by
//!   `proxy.switch_lag_timeout`), syncs group offsets once more and pushes
//!   the last commits this proxy saw; then the epoch moves and connections
//!   are re-routed;
//! - **disaster** (the old cluster does not answer): the last observed
//!   commits are pushed, the epoch moves at once, and the engine's view of
//!   what was not copied is logged as the RPO per partition.
//!
//! After the epoch moved, clients still hold state from the old cluster,
//! and [`Tracker`] keeps it from leaking into the new one:
//! - **consumers**: a group member from before the switch is fenced (its
//!   Heartbeat and SyncGroup are answered `UNKNOWN_MEMBER_ID`), so it
//!   rejoins and reads committed offsets, which are already translated.
//!   Until it has rejoined, its Fetch requests are answered empty: its
//!   positions are in the old cluster's offset space and must never be
//!   fetched from the new one. An OffsetCommit it sends meanwhile carries
//!   old-space offsets; they are translated and committed as a simple
//!   commit, so nothing it processed is read twice;
//! - **idempotent producers**: a producer id from the old cluster is
//!   remapped onto one kflip obtains from the new cluster, with sequences
//!   rebased per partition (the record batch CRC is recomputed), so the
//!   producer goes on without an error and without duplicates.
//!
//! Clients are told apart by client id and address (one pod, one client
//! id, in the usual sidecar); two consumers that share both share their
//! fence.
//!
//! Layout:
//! - [`gate`]: the gate every connection passes when it starts a session;
//! - [`switch`]: the switch's state machine, the RPO report, and the
//!   removal of fenced members from the old cluster's groups;
//! - [`tracker`] and [`producers`]: what is remembered about clients;
//! - [`engine`]: the one narrow interface to the replication engine.

pub mod engine;
mod fleet_wait;
pub mod gate;
pub mod producers;
pub mod switch;
pub mod tracker;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConfig, ClusterName, Config, ProxyConfig};

pub use engine::EngineLink;
pub use producers::ProducerIdError;
pub use tracker::Tracker;

/// A client: its client id and address.
pub type ClientKey = (String, IpAddr);

/// One group's commits: (topic, partition) -> offset.
pub type GroupOffsets = BTreeMap<(String, i32), i64>;

/// Last commits seen per group.
pub type Commits = BTreeMap<String, GroupOffsets>;

/// A producer of the old cluster: producer id, producer epoch, and the
/// switch epoch it is remapped in.
pub type OldProducer = (i64, i16, u64);

/// Which cluster clients go to, and how many times that changed.
#[derive(Clone, Debug, PartialEq)]
pub struct SwitchState {
    /// Bumped on every change of the active cluster. Sessions of an older
    /// epoch are drained and re-routed; clients' group members, fetch
    /// positions and producer ids from older epochs are fenced or remapped.
    pub epoch: u64,
    /// The cluster clients are forwarded to.
    pub active: ClusterName,
    /// A planned switch is under way: connections hold new requests while
    /// replication catches up.
    pub holding: bool,
}

/// How long the final group offset sync of a planned switch may run past
/// `proxy.switch_lag_timeout`.
pub const SYNC_GRACE: Duration = Duration::from_secs(5);

/// The switch and everything that follows it: the published state every
/// connection watches, the requests in flight a switch drains, what is
/// remembered about clients, and the link to the engine.
pub struct Switchboard {
    config: watch::Receiver<Arc<Config>>,
    /// Proxy settings from startup, used if a snapshot lacks the section.
    startup: ProxyConfig,
    switch: watch::Sender<SwitchState>,
    in_flight: AtomicUsize,
    /// The replication engine of this process, if any.
    pub engine: EngineLink,
    /// Client state across switches.
    pub tracker: Tracker,
    shutdown: CancellationToken,
    /// What the last switch did, and how many of each kind ran.
    switches: std::sync::Mutex<Switches>,
    /// The fleet's engines, for a proxy with no engine of its own.
    remote: std::sync::OnceLock<std::sync::Arc<dyn RemoteEngines>>,
    /// The cluster most of the fleet's live proxies forward to, when it is
    /// not this proxy's (`crate::protocol::filters::fleet`).
    fleet_elsewhere: std::sync::Mutex<Option<ClusterName>>,
    /// What every client has been seen doing (`crate::inventory`).
    pub inventory: crate::inventory::Inventory,
}

/// What the fleet's engines (other processes) did for one planned switch.
#[derive(Clone, Debug)]
pub struct RemoteCatchUp {
    /// The engines that have a flow between the two clusters.
    pub engines: Vec<String>,
    /// Those that answered that every record was copied.
    pub caught_up: Vec<String>,
    /// Records still behind, summed over the engines that answered.
    pub behind: i64,
}

/// The replication engines of other kflips, reached through the fleet
/// (the state topics): a sidecar proxy's planned switch waits for them.
pub trait RemoteEngines: Send + Sync {
    /// Asks every live engine with a flow `from -> to` to catch up, and
    /// waits at most `bound` for their answers; `None` if no live engine
    /// has such a flow.
    fn catch_up<'a>(
        &'a self,
        from: &'a ClusterName,
        to: &'a ClusterName,
        bound: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<RemoteCatchUp>> + Send + 'a>>;
}

/// The switches this process ran.
#[derive(Clone, Debug, Default)]
pub struct Switches {
    /// The last one.
    pub last: Option<switch::SwitchFigures>,
    /// Planned switches so far.
    pub planned: u64,
    /// Disaster switches so far.
    pub disaster: u64,
}

impl Switchboard {
    /// A switchboard whose first active cluster is `startup.active`.
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        startup: ProxyConfig,
        shutdown: CancellationToken,
        engine: EngineLink,
    ) -> Switchboard {
        let (switch, _) = watch::channel(SwitchState {
            epoch: 0,
            active: startup.active.clone(),
            holding: false,
        });
        engine.set_active(&startup.active);
        Switchboard {
            config,
            startup,
            switch,
            in_flight: AtomicUsize::new(0),
            engine,
            tracker: Tracker::default(),
            shutdown,
            switches: Default::default(),
            remote: Default::default(),
            fleet_elsewhere: Default::default(),
            inventory: Default::default(),
        }
    }

    /// The DR policy rules of the current config.
    pub fn policy(&self) -> Arc<crate::config::policy::Policy> {
        self.config.borrow().policy.clone()
    }

    /// The state now.
    pub fn state(&self) -> SwitchState {
        self.switch.borrow().clone()
    }

    /// Every change of the state from now on.
    pub fn subscribe(&self) -> watch::Receiver<SwitchState> {
        self.switch.subscribe()
    }

    /// The current proxy settings.
    pub fn proxy_config(&self) -> ProxyConfig {
        self.config
            .borrow()
            .proxy
            .clone()
            .unwrap_or_else(|| self.startup.clone())
    }

    /// How to reach `cluster` in the current config (no addresses if it
    /// is no longer configured).
    pub fn cluster(&self, cluster: &ClusterName) -> ClusterConfig {
        self.config
            .borrow()
            .cluster(cluster)
            .cloned()
            .unwrap_or_default()
    }

    /// Lets planned switches wait for the fleet's engines (once).
    pub fn set_remote(&self, remote: std::sync::Arc<dyn RemoteEngines>) {
        let _ = self.remote.set(remote);
    }

    /// The fleet's engines, if known.
    pub fn remote(&self) -> Option<&std::sync::Arc<dyn RemoteEngines>> {
        self.remote.get()
    }

    /// Where most of the fleet forwards, if not where this proxy does.
    pub fn fleet_elsewhere(&self) -> Option<ClusterName> {
        self.fleet_elsewhere
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Set by the fleet view on every look.
    pub fn set_fleet_elsewhere(&self, cluster: Option<ClusterName>) {
        *self
            .fleet_elsewhere
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = cluster;
    }

    /// The switches this process ran.
    pub fn switches(&self) -> Switches {
        self.switches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record_switch(&self, figures: switch::SwitchFigures) {
        let mut s = self.switches.lock().unwrap_or_else(|e| e.into_inner());
        if figures.planned {
            s.planned += 1;
        } else {
            s.disaster += 1;
        }
        s.last = Some(figures);
    }

    /// Requests forwarded and not yet answered, over all connections.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one forwarded request until the returned guard drops.
    pub fn forwarded(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The one deadline for a planned switch's hold, from its start: the
    /// drain (`proxy.switch_drain`), the wait for replication
    /// (`proxy.switch_lag_timeout`) and the final offset sync
    /// ([`SYNC_GRACE`]) together. With the defaults, 20 s.
    pub fn hold_deadline(cfg: &ProxyConfig) -> Duration {
        cfg.switch_drain + cfg.switch_lag_timeout + SYNC_GRACE
    }
}

/// One forwarded request not yet answered (see [`Switchboard::in_flight`]).
pub struct InFlight(Arc<Switchboard>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
