//! The bootstrap listener and the virtual broker listeners.
//!
//! Virtual broker listeners are bound lazily, the first time a response
//! announces a broker in a new slot, and stay bound for the process's life.
//! Slot `n` listens on `broker_port_base + n` (by default the port after the
//! bootstrap port), or on a free port when the bootstrap port is 0.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use super::{ProxyError, Shared};
use crate::admin::metrics::Rejected;
use crate::config::ProxyConfig;
use crate::routing::VirtualNodeId;

/// Which listener a client connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// The bootstrap listener: forwarded to any broker of the active cluster.
    Bootstrap,
    /// A virtual broker: forwarded to the active cluster's broker in the slot.
    Broker(VirtualNodeId),
}

/// The virtual broker listeners bound so far.
pub(crate) struct BrokerListeners {
    /// Slot -> bound port.
    ports: Mutex<HashMap<i32, u16>>,
    /// Serialises binding so two connections cannot bind one slot twice.
    bind: tokio::sync::Mutex<()>,
    /// Host to bind.
    host: String,
    /// Port of slot 0, or `None` for free ports.
    base: Option<u16>,
}

impl BrokerListeners {
    pub(crate) fn new(p: &ProxyConfig) -> Self {
        let base = match (p.broker_port_base, p.listen_port) {
            (Some(b), _) => Some(b),
            (None, 0) => None,
            (None, l) => Some(l + 1),
        };
        BrokerListeners {
            ports: Mutex::new(HashMap::new()),
            bind: tokio::sync::Mutex::new(()),
            host: p.listen_host.clone(),
            base,
        }
    }

    /// The port of a bound slot.
    pub(crate) fn port(&self, slot: VirtualNodeId) -> Option<u16> {
        self.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&slot.0)
            .copied()
    }
}

/// Binds the bootstrap listener and starts accepting on it.
pub(crate) async fn bind_bootstrap(shared: &Arc<Shared>) -> Result<SocketAddr, ProxyError> {
    let p = &shared.startup;
    let addr = format!("{}:{}", bracket(&p.listen_host), p.listen_port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| ProxyError::Bind {
        addr: p.listen_host.clone(),
        source,
    })?;
    shared.bootstrap_port.store(local.port(), Ordering::Relaxed);
    tokio::spawn(accept_loop(
        shared.clone(),
        listener,
        ListenerKind::Bootstrap,
    ));
    Ok(local)
}

/// Makes sure the listener for `slot` is bound; returns its port.
pub(crate) async fn ensure(shared: &Arc<Shared>, slot: VirtualNodeId) -> Result<u16, ProxyError> {
    let l = &shared.listeners;
    if let Some(port) = l.port(slot) {
        return Ok(port);
    }
    let _guard = l.bind.lock().await;
    if let Some(port) = l.port(slot) {
        return Ok(port);
    }
    let port = l.base.map(|b| b + slot.0 as u16).unwrap_or(0);
    let addr = format!("{}:{}", bracket(&l.host), port);
    let refused = |addr: String, source| {
        let e = ProxyError::BrokerPort {
            addr,
            slot: slot.0,
            source,
        };
        tracing::error!(error = %e, "virtual broker listener");
        e
    };
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| refused(addr.clone(), source))?;
    let port = listener
        .local_addr()
        .map_err(|source| refused(addr, source))?
        .port();
    tracing::debug!(slot = slot.0, port, "virtual broker listener bound");
    l.ports
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(slot.0, port);
    tokio::spawn(accept_loop(
        shared.clone(),
        listener,
        ListenerKind::Broker(slot),
    ));
    Ok(port)
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, kind: ListenerKind) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        admit(&shared, stream, peer, kind);
    }
}

/// Starts serving a connection, or refuses it at the connection cap or at
/// `proxy.max_connections_per_address`.
fn admit(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr, kind: ListenerKind) {
    let cfg = shared.proxy_config();
    let max = cfg.max_connections;
    let open = shared.connections.fetch_add(1, Ordering::AcqRel);
    if open >= max {
        shared.connections.fetch_sub(1, Ordering::AcqRel);
        shared.metrics.rejected(Rejected::Limit);
        crate::error::log_closing(
            &crate::error::Fault::client(format!("{peer}: proxy.max_connections reached ({max})")),
            "connection refused",
        );
        return;
    }
    let ip = peer.ip();
    {
        let mut by_ip = shared.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let n = by_ip.entry(ip).or_insert(0);
        let per = cfg.max_connections_per_address;
        if per > 0 && *n >= per {
            drop(by_ip);
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            shared.metrics.rejected(Rejected::PerAddress);
            crate::error::log_closing(
                &crate::error::Fault::client(format!(
                    "{peer}: proxy.max_connections_per_address reached ({per})"
                )),
                "connection refused",
            );
            return;
        }
        *n += 1;
    }
    shared.metrics.accepted();
    let _ = stream.set_nodelay(true);
    let span = tracing::info_span!("conn", client.addr = %peer, listener = ?kind);
    let guard = OpenConnection(shared.clone(), ip);
    shared.tasks.spawn(
        async move {
            (guard.0.serve)(guard.0.clone(), stream, kind).await;
            drop(guard);
        }
        .instrument(span),
    );
}

/// Counts a connection as open (overall and for its address) until
/// dropped, even if its task panics.
struct OpenConnection(Arc<Shared>, std::net::IpAddr);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
        let mut by_ip = self.0.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_ip.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.1);
            }
        }
    }
}
