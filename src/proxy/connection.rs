//! One client connection: the upstream session it forwards to, re-routed
//! across switches.
//!
//! Two loops run per session ([`super::loops`]): one reads client frames
//! and forwards them, one reads upstream responses and writes them back.
//!
//! Each upstream session belongs to the cluster that was active when it
//! started, and starts only through the failover gate
//! ([`crate::failover::gate`]). When the active cluster changes, the
//! request loop stops reading, in-flight requests get a bounded time to
//! finish, and the client connection is re-routed to the new cluster (see
//! [`serve`]). An upstream SASL session that expires (KIP-368) is renewed
//! the same way, to the same cluster ([`Renewal`]). On shutdown the same
//! drain happens and the connection closes.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::lazy_buf::LazyBufReader;
use super::loops::{request_loop, Stop, CLIENT_BUFFER, MAX_IN_FLIGHT};
use super::responses::response_loop;
use super::session::{Ctx, Renewal};
use super::{upstream, ListenerKind, Shared, SwitchState};
use crate::admin::metrics::Rejected;
use crate::cluster::stream::{ReadHalf, WriteHalf};
use crate::cluster::Stream;
use crate::config::{ClusterName, ProxyConfig};
use crate::error::Fault;
use crate::failover::gate;
use crate::protocol::filters::ConnCtx;

/// What a connection does after one upstream session ends.
enum Next {
    /// Close the client connection.
    Close,
    /// Re-route to the new active cluster and go on.
    Switch(SwitchState),
    /// Log in again to the same cluster (the upstream SASL session is
    /// about to expire) and go on.
    Renew,
}

/// A logged-in upstream connection of a session.
struct Upstream {
    /// The connection.
    stream: Stream,
    /// When its SASL session must be renewed, if it expires.
    renewal: Option<Renewal>,
}

/// Serves one client connection until it closes.
///
/// This future lives as long as the connection, so the steps that run
/// only at its start or at a switch (TLS, login, discovery, connecting
/// upstream) are boxed: their state is allocated while they run instead of
/// enlarging every idle connection's task.
///
/// The client connection outlives switches: when the active cluster
/// changes, new requests are held, in-flight ones finish (bounded by
/// `proxy.switch_drain`), and the connection is re-routed to the same
/// virtual broker of the new cluster. To the client this looks like
/// leadership moving inside one cluster, not like every broker going down
/// (which makes librdkafka re-bootstrap and costs seconds).
pub(crate) async fn serve(shared: Arc<Shared>, client: TcpStream, kind: ListenerKind) {
    let peer = client
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let client = match Box::pin(accept_tls(&shared, client)).await {
        Ok(c) => c,
        Err(e) => {
            shared.metrics.rejected(Rejected::Tls);
            crate::error::log_closing(&e, "closing client connection");
            return;
        }
    };
    let (cr, mut cw) = client.split();
    let mut cr = LazyBufReader::new(cr, CLIENT_BUFFER);
    let conn = Arc::new(crate::inventory::Conn::new(peer));
    // Scoped: the startup snapshot is not kept for the connection's life.
    let principal = {
        let startup = shared.proxy_config();
        match &startup.sasl {
            None => None,
            Some(_) => match Box::pin(super::auth::authenticate(
                &shared, &startup, &conn, &mut cr, &mut cw,
            ))
            .await
            {
                Ok(p) => Some(p),
                Err(e) => {
                    shared.metrics.rejected(Rejected::Auth);
                    crate::error::log_closing(&e, "closing client connection");
                    return;
                }
            },
        }
    };
    // Subscribe before reading the state, and keep this one receiver for
    // the connection's life: a switch that happens while a session is being
    // set up (discovery, connect) is then seen, never missed.
    let mut switches = shared.board.subscribe();
    let mut state = switches.borrow_and_update().clone();
    let mut first = true;
    // Whether the last session ended for a renewal of its SASL session.
    let mut renewing = false;
    loop {
        // The gate: no session starts while a planned switch holds, so a
        // connection opened (or re-routed) during the hold waits for the
        // switch and then goes to the new cluster, never the old one.
        state = match gate::outside_hold(&shared.shutdown, &mut switches, state).await {
            Some(s) => s,
            None => return,
        };
        let cfg = shared.proxy_config();
        let cluster = state.active.clone();
        Box::pin(upstream::ensure_discovered(&shared, &cluster, kind)).await;
        let upstream = match Box::pin(connect(
            &shared,
            &cluster,
            kind,
            cfg.connect_timeout,
            principal.as_deref(),
        ))
        .await
        {
            Ok(u) => u,
            Err(e) if e.retriable() => {
                match Box::pin(hold_unreachable(
                    &shared,
                    &state,
                    kind,
                    &cfg,
                    principal.as_deref(),
                ))
                .await
                {
                    Held::Connected(u) => u,
                    Held::Switched(next) => {
                        state = next;
                        continue;
                    }
                    Held::GaveUp => {
                        tracing::warn!(%cluster, error = %e, "closing client: no upstream broker reachable");
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%cluster, error = %e, "closing client: cannot log in upstream");
                return;
            }
        };
        // A hold or a switch that began while connecting: this upstream is
        // for a cluster being left; start over from the new state.
        if let Some(now) = gate::switched_while_connecting(&mut switches, &state) {
            state = now;
            continue;
        }
        if first {
            tracing::debug!(%cluster, epoch = state.epoch, "connection open");
        } else if renewing {
            tracing::debug!(%cluster, epoch = state.epoch, "upstream SASL session renewed");
        } else {
            tracing::debug!(%cluster, epoch = state.epoch, "connection re-routed");
        }
        renewing = false;
        let Upstream { stream, renewal } = upstream;
        if let Some(r) = &renewal {
            tracing::debug!(%cluster, renew_in = ?r.at.saturating_duration_since(tokio::time::Instant::now()), "upstream SASL session expires; renewal planned");
        }
        let ctx = Ctx {
            filters: ConnCtx::new(
                shared.board.clone(),
                shared.topic_ids.clone(),
                cluster.clone(),
                state.epoch,
                conn.clone(),
            ),
            shared: shared.clone(),
            cluster,
            epoch: state.epoch,
            cfg,
            first,
            principal: principal.clone(),
            renewal,
        };
        // Every line a session logs names the cluster and epoch it serves
        // (the connection's span adds the client address).
        let span = tracing::info_span!("session", cluster = %ctx.cluster, epoch = ctx.epoch);
        let next = session(&ctx, &mut cr, &mut cw, stream, &mut switches)
            .instrument(span)
            .await;
        match next {
            Next::Close => break,
            Next::Switch(next) => {
                state = next;
                first = false;
            }
            // The same cluster and state; the gate still applies, so a
            // switch that began meanwhile is seen.
            Next::Renew => {
                first = false;
                renewing = true;
            }
        }
    }
    tracing::debug!("connection closed");
}

/// How a connection waiting for an unreachable cluster ended.
enum Held {
    /// The cluster answered.
    Connected(Upstream),
    /// The active cluster changed (a disaster switch): try the new one.
    Switched(SwitchState),
    /// Neither within the bound, or shutdown.
    GaveUp,
}

/// A client connected while the active cluster does not answer (the
/// moments of a disaster before the operator flips): it is held, and the
/// connect retried, until the cluster answers, a switch names another
/// one, or 10x `proxy.connect_timeout` (at most 30 s) passed. Closing at
/// once would end the connection before its first response, which some
/// clients take for a broker that wants TLS and do not retry (franz-go
/// fails the producer's records); a real broker that is down refuses the
/// connect instead.
async fn hold_unreachable(
    shared: &Shared,
    state: &SwitchState,
    kind: ListenerKind,
    cfg: &ProxyConfig,
    principal: Option<&str>,
) -> Held {
    // Subscribe before looking at the state, so no switch is missed.
    let mut switches = shared.board.subscribe();
    let bound = (cfg.connect_timeout * 10).min(Duration::from_secs(30));
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let now = switches.borrow_and_update().clone();
        if now.epoch != state.epoch {
            return Held::Switched(now);
        }
        if tokio::time::Instant::now() >= deadline {
            return Held::GaveUp;
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => return Held::GaveUp,
            _ = switches.changed() => continue,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if let Ok(u) = connect(shared, &state.active, kind, cfg.connect_timeout, principal).await {
            return Held::Connected(u);
        }
    }
}

/// Completes the TLS handshake of a client connection when `proxy.tls` is
/// set, within `proxy.auth_timeout`.
async fn accept_tls(shared: &Shared, client: TcpStream) -> Result<Stream, Fault> {
    let cfg = shared.proxy_config();
    let Some(tls) = &cfg.tls else {
        return Ok(Stream::Plain(client));
    };
    let config = crate::cluster::tls::server_config(tls)
        .map_err(|e| Fault::internal(format!("proxy.tls: {e}")))?;
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(client);
    match tokio::time::timeout(cfg.auth_timeout, accept).await {
        Ok(Ok(s)) => Ok(Stream::Server(Box::new(s))),
        Ok(Err(e)) => Err(Fault::client(format!("TLS handshake failed: {e}"))),
        Err(_) => Err(Fault::client(format!(
            "no TLS handshake within proxy.auth_timeout ({:?})",
            cfg.auth_timeout
        ))),
    }
}

/// Runs one upstream session: both loops until the client closes, an error,
/// shutdown, or a switch.
async fn session(
    ctx: &Ctx,
    client_in: &mut LazyBufReader<ReadHalf>,
    client_out: &mut WriteHalf,
    upstream: Stream,
    switches: &mut watch::Receiver<SwitchState>,
) -> Next {
    // The write half outlives the request loop: dropping a plain TCP
    // write half sends FIN, and a broker that reads it closes the
    // connection without answering the requests in flight.
    let (ur, mut uw) = upstream.split();
    let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
    let mut requests = std::pin::pin!(request_loop(ctx, client_in, &mut uw, tx, switches));
    let mut responses = std::pin::pin!(response_loop(ctx, ur, client_out, rx));
    tokio::select! {
        stop = &mut requests => {
            let (drain, next) = match stop {
                Ok(Stop::ClientClosed) => (ctx.cfg.switch_drain, Next::Close),
                Ok(Stop::Switched(next)) => {
                    tracing::debug!(to = %next.active, epoch = next.epoch, "holding requests; draining in-flight ones for the switch");
                    (ctx.cfg.switch_drain, Next::Switch(next))
                }
                Ok(Stop::Renew) => {
                    let now = tokio::time::Instant::now();
                    let drain = ctx
                        .renewal
                        .map_or(ctx.cfg.switch_drain, |r| r.drain(now, ctx.cfg.switch_drain));
                    tracing::debug!(cluster = %ctx.cluster, bound = ?drain, "renewing the upstream SASL session; draining in-flight requests");
                    (drain, Next::Renew)
                }
                Ok(Stop::Shutdown) => (ctx.cfg.shutdown_grace, Next::Close),
                Err(e) => {
                    crate::error::log_closing(&e, "closing client connection");
                    (Duration::ZERO, Next::Close)
                }
            };
            match tokio::time::timeout(drain, &mut responses).await {
                Ok(Ok(())) => next,
                Ok(Err(e)) => {
                    crate::error::log_closing(&e, "closing client connection");
                    Next::Close
                }
                Err(_) => {
                    tracing::warn!(bound = ?drain, "in-flight requests did not finish in time; closing");
                    Next::Close
                }
            }
        }
        done = &mut responses => {
            if let Err(e) = done {
                crate::error::log_closing(&e, "closing client connection");
            }
            Next::Close
        }
    }
}

/// Connects a session to `cluster` (the virtual broker's real broker, or
/// bootstrap), with the cluster's TLS, logged in as `principal` (its own
/// login for the cluster, or the cluster's). A refused login is not
/// retriable: the same credentials would be refused again.
async fn connect(
    shared: &Shared,
    cluster: &ClusterName,
    kind: ListenerKind,
    timeout: Duration,
    principal: Option<&str>,
) -> Result<Upstream, Fault> {
    let targets = upstream::targets(shared, cluster, kind)?;
    let settings = shared.board.cluster(cluster);
    let login = shared
        .login_for(principal, cluster)
        .map_err(Fault::client)?;
    // The broker counts the lifetime from its end of the login, a little
    // later than this: renewing from here is on the safe side.
    let start = tokio::time::Instant::now();
    match crate::kafka::KafkaConn::open(&settings, &targets, timeout, login.as_ref()).await {
        Ok(c) => {
            let (stream, lifetime) = c.into_parts();
            Ok(Upstream {
                stream,
                renewal: lifetime.map(|l| Renewal::after_login(start, l)),
            })
        }
        Err(e) if e.is_refused_login() => Err(Fault::client(e.to_string())),
        Err(e) => Err(Fault::upstream(cluster, e)),
    }
}
