//! One client connection: frames in, frames out, responses rewritten.
//!
//! Two loops run per connection. The request loop reads client frames,
//! answers ApiVersions itself, refuses what kflip does not serve, records
//! each request that expects a response in a FIFO, and forwards the frame.
//! The response loop takes the FIFO in order (Kafka answers requests on one
//! connection in order), reads the matching upstream response, checks its
//! correlation id, rewrites it if its API carries addresses, and writes it.
//!
//! Each upstream session belongs to the cluster that was active when it
//! started. When the active cluster changes, the request loop stops reading,
//! in-flight requests get a bounded time to finish, and the client
//! connection is re-routed to the new cluster (see [`serve`]). On shutdown
//! the same drain happens and the connection closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::failover::ClientKey;
use super::{listeners, upstream, ListenerKind, Shared, SwitchState};
use crate::config::{ClusterName, ProxyConfig};
use crate::kafka::api_name;
use crate::protocol::frame::{read_frame, Frame};
use crate::protocol::header::{client_id, parse_request_head, produce_acks};
use crate::protocol::rewrite::{NodeMap, Rewritable};
use crate::protocol::versions::{policy, Handling, VersionTable};
use crate::protocol::{api_versions, fetch};
use crate::routing::RealNodeId;

#[path = "intercept.rs"]
pub(crate) mod intercept;
use intercept::{intercept, learn, Intercept};

/// Most requests a client may have in flight on one connection; the request
/// loop stops reading when this many are waiting for responses.
const MAX_IN_FLIGHT: usize = 1024;

/// What the response loop must send next, in request order.
enum Pending {
    /// Read the response to this request from upstream.
    Upstream {
        correlation_id: i32,
        api: ApiKey,
        version: i16,
        handling: Handling,
        /// What kflip learns from the response.
        observe: Observe,
        /// Counts the request as in flight until it is answered or dropped.
        _counted: InFlight,
    },
    /// A response kflip made itself.
    Local(Frame),
    /// A response kflip made itself, sent after a pause (an empty Fetch
    /// answer waits like a broker's long poll would).
    Delayed(Bytes, Duration),
}

/// What kflip records from a response.
enum Observe {
    Nothing,
    /// An OffsetCommit of `group` on this connection's cluster, with the
    /// offsets it asked for.
    Commit {
        group: String,
        offsets: Vec<((String, i32), i64)>,
    },
    /// An InitProducerId from this client: the producer id belongs to this
    /// epoch.
    ProducerId(super::failover::ClientKey),
    /// A Produce with this many records per partition.
    Produced(Vec<((String, i32), i64)>),
}

/// One forwarded request not yet answered (see `Shared::in_flight`).
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: &Arc<Shared>) -> InFlight {
        shared
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Why the request loop stopped reading.
enum Stop {
    /// The client closed its side.
    ClientClosed,
    /// The active cluster changed.
    Switched(SwitchState),
    /// kflip is shutting down.
    Shutdown,
}

/// What a connection does after one upstream session ends.
enum Next {
    /// Close the client connection.
    Close,
    /// Re-route to the new active cluster and go on.
    Switch(SwitchState),
}

/// Serves one client connection until it closes.
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
    let (cr, mut cw) = client.into_split();
    let mut cr = BufReader::with_capacity(64 * 1024, cr);
    // Subscribe before reading the state, and keep this one receiver for
    // the connection's life: a switch that happens while a session is being
    // set up (discovery, connect) is then seen, never missed.
    let mut switches = shared.switch.subscribe();
    let mut state = switches.borrow_and_update().clone();
    let mut first = true;
    loop {
        // The gate: no session starts while a planned switch holds, so a
        // connection opened (or re-routed) during the hold waits for the
        // switch and then goes to the new cluster, never the old one.
        state = match outside_hold(&shared, &mut switches, state).await {
            Some(s) => s,
            None => return,
        };
        let cfg = shared.proxy_config();
        let cluster = state.active.clone();
        upstream::ensure_discovered(&shared, &cluster, kind).await;
        let upstream = match connect(&shared, &cluster, kind, cfg.connect_timeout).await {
            Ok(u) => u,
            Err(e) => match hold_unreachable(&shared, &state, kind, &cfg).await {
                Held::Connected(u) => u,
                Held::Switched(next) => {
                    state = next;
                    continue;
                }
                Held::GaveUp => {
                    tracing::warn!(%cluster, error = %e, "closing client: no upstream broker reachable");
                    return;
                }
            },
        };
        // A hold or a switch that began while connecting: this upstream is
        // for a cluster being left; start over from the new state.
        if switches.has_changed().unwrap_or(false) {
            let now = switches.borrow_and_update().clone();
            if now.holding || now.epoch != state.epoch {
                state = now;
                continue;
            }
        }
        if first {
            tracing::debug!(%cluster, epoch = state.epoch, "connection open");
        } else {
            tracing::debug!(%cluster, epoch = state.epoch, "connection re-routed");
        }
        let ctx = Ctx {
            shared: shared.clone(),
            cluster,
            epoch: state.epoch,
            cfg,
            first,
            peer,
            client_id: std::sync::Mutex::new(None),
        };
        match session(&ctx, &mut cr, &mut cw, upstream, &mut switches).await {
            Next::Close => break,
            Next::Switch(next) => {
                state = next;
                first = false;
            }
        }
    }
    tracing::debug!("connection closed");
}

/// Waits until no planned switch holds and returns the state then; `None`
/// on shutdown. The switch bounds its own hold (`proxy.switch_drain` and
/// `proxy.switch_lag_timeout`).
async fn outside_hold(
    shared: &Shared,
    switches: &mut watch::Receiver<SwitchState>,
    mut state: SwitchState,
) -> Option<SwitchState> {
    while state.holding {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return None,
            changed = switches.changed() => if changed.is_err() { return None },
        }
        state = switches.borrow_and_update().clone();
    }
    Some(state)
}

/// How a connection waiting for an unreachable cluster ended.
enum Held {
    /// The cluster answered.
    Connected(TcpStream),
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
) -> Held {
    // Subscribe before looking at the state, so no switch is missed.
    let mut switches = shared.switch.subscribe();
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
        if let Ok(u) = connect(shared, &state.active, kind, cfg.connect_timeout).await {
            return Held::Connected(u);
        }
    }
}

/// Runs one upstream session: both loops until the client closes, an error,
/// shutdown, or a switch.
async fn session(
    ctx: &Ctx,
    client_in: &mut BufReader<OwnedReadHalf>,
    client_out: &mut OwnedWriteHalf,
    upstream: TcpStream,
    switches: &mut watch::Receiver<SwitchState>,
) -> Next {
    let (ur, uw) = upstream.into_split();
    let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
    let mut requests = std::pin::pin!(request_loop(ctx, client_in, uw, tx, switches));
    let mut responses = std::pin::pin!(response_loop(ctx, ur, client_out, rx));
    tokio::select! {
        stop = &mut requests => {
            let (drain, next) = match stop {
                Ok(Stop::ClientClosed) => (ctx.cfg.switch_drain, Next::Close),
                Ok(Stop::Switched(next)) => {
                    tracing::debug!(to = %next.active, epoch = next.epoch, "holding requests; draining in-flight ones for the switch");
                    (ctx.cfg.switch_drain, Next::Switch(next))
                }
                Ok(Stop::Shutdown) => (ctx.cfg.shutdown_grace, Next::Close),
                Err(e) => {
                    tracing::warn!(error = %e, "closing client connection");
                    (Duration::ZERO, Next::Close)
                }
            };
            match tokio::time::timeout(drain, &mut responses).await {
                Ok(Ok(())) => next,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "closing client connection");
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
                tracing::warn!(error = %e, "closing client connection");
            }
            Next::Close
        }
    }
}

async fn connect(
    shared: &Shared,
    cluster: &ClusterName,
    kind: ListenerKind,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let targets = upstream::targets(shared, cluster, kind)?;
    crate::cluster::connect_any(&targets, timeout)
        .await
        .map(|(s, _)| s)
        .map_err(|e| e.to_string())
}

/// Per-connection context shared by both loops.
struct Ctx {
    shared: Arc<Shared>,
    /// The cluster this connection forwards to.
    cluster: ClusterName,
    /// The switch epoch it was opened under.
    epoch: u64,
    /// Proxy settings when it opened.
    cfg: ProxyConfig,
    /// Whether this is the connection's first session (the handshake
    /// timeout applies to its first request).
    first: bool,
    /// The client's address.
    peer: std::net::IpAddr,
    /// The client id it sent, once known.
    client_id: std::sync::Mutex<Option<String>>,
}

impl Ctx {
    /// Who the client is, for failover state.
    fn key(&self, payload: &[u8]) -> ClientKey {
        let mut id = self.client_id.lock().unwrap_or_else(|e| e.into_inner());
        if id.is_none() {
            *id = client_id(payload);
        }
        (id.clone().unwrap_or_default(), self.peer)
    }
}

async fn request_loop(
    ctx: &Ctx,
    client: &mut BufReader<OwnedReadHalf>,
    mut upstream: OwnedWriteHalf,
    tx: mpsc::Sender<Pending>,
    switch: &mut watch::Receiver<SwitchState>,
) -> Result<Stop, String> {
    let mut versions: Option<VersionTable> = None;
    let mut first = ctx.first;
    loop {
        let wait = if first {
            ctx.cfg.handshake_timeout
        } else {
            ctx.cfg.idle_timeout
        };
        let frame = tokio::select! {
            biased;
            _ = ctx.shared.shutdown.cancelled() => return Ok(Stop::Shutdown),
            changed = switch.changed() => {
                if changed.is_err() {
                    continue;
                }
                let mut next = switch.borrow_and_update().clone();
                // A planned switch first holds requests while replication
                // catches up; in-flight ones go on meanwhile.
                while next.holding && next.epoch == ctx.epoch {
                    tokio::select! {
                        _ = ctx.shared.shutdown.cancelled() => return Ok(Stop::Shutdown),
                        changed = switch.changed() => if changed.is_err() { break },
                    }
                    next = switch.borrow_and_update().clone();
                }
                if next.epoch != ctx.epoch && next.active != ctx.cluster {
                    return Ok(Stop::Switched(next));
                }
                continue;
            }
            read = tokio::time::timeout(wait, read_frame(client, ctx.cfg.max_frame_bytes)) => match read {
                Err(_) if first => return Err(format!("no request within proxy.handshake_timeout ({wait:?})")),
                Err(_) => return Err(format!("idle for proxy.idle_timeout ({wait:?})")),
                Ok(Err(e)) => return Err(format!("bad frame from client: {e}")),
                Ok(Ok(None)) => return Ok(Stop::ClientClosed),
                Ok(Ok(Some(f))) => f,
            },
        };
        first = false;
        let head =
            parse_request_head(frame.payload()).map_err(|e| format!("bad request header: {e}"))?;
        let span = tracing::debug_span!(
            "request",
            api_key = head.api_key,
            correlation_id = head.correlation_id
        );
        let _enter = span.enter();
        let api = ApiKey::try_from(head.api_key).map_err(|()| {
            format!(
                "unknown API key {} (kflip refuses keys it cannot decode)",
                head.api_key
            )
        })?;
        let (handling, _) = policy(api).ok_or_else(|| {
            format!(
                "{} (key {}) is not served through kflip",
                api_name(head.api_key),
                head.api_key
            )
        })?;
        if handling == Handling::Local {
            if versions.is_none() {
                versions = Some(upstream::advertised_versions(&ctx.shared, &ctx.cluster).await?);
            }
            let table = versions.as_ref().expect("set above");
            let answer = api_versions::answer(head.api_version, head.correlation_id, table);
            tx.send(Pending::Local(answer))
                .await
                .map_err(|_| "response loop ended".to_string())?;
            continue;
        }
        if versions.is_none() {
            versions = Some(upstream::advertised_versions(&ctx.shared, &ctx.cluster).await?);
        }
        let range = versions
            .as_ref()
            .and_then(|t| t.get(&head.api_key).copied());
        match range {
            Some(r) if (r.min..=r.max).contains(&head.api_version) => {}
            _ => {
                return Err(format!(
                    "{:?} v{} is not among the versions kflip advertised ({})",
                    api,
                    head.api_version,
                    range
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "none".into())
                ))
            }
        }
        let expects_response = if api == ApiKey::Produce {
            let body = &frame.payload()[head.body_offset.unwrap_or(0)..];
            produce_acks(body, head.api_version).map_err(|e| format!("bad Produce request: {e}"))?
                != 0
        } else {
            true
        };
        let body_offset = head.body_offset.unwrap_or(0);
        let (frame, observe) = match intercept(
            ctx,
            api,
            head.api_version,
            head.correlation_id,
            body_offset,
            frame,
        )
        .await?
        {
            Intercept::Forward(frame, observe) => (frame, observe),
            Intercept::Answer(pending) => {
                tx.send(pending)
                    .await
                    .map_err(|_| "response loop ended".to_string())?;
                continue;
            }
        };
        if expects_response {
            let pending = Pending::Upstream {
                correlation_id: head.correlation_id,
                api,
                version: head.api_version,
                handling,
                observe,
                _counted: InFlight::new(&ctx.shared),
            };
            tx.send(pending)
                .await
                .map_err(|_| "response loop ended".to_string())?;
        }
        upstream
            .write_all(&frame.0)
            .await
            .map_err(|e| format!("upstream write failed: {e}"))?;
    }
}

async fn response_loop(
    ctx: &Ctx,
    upstream: OwnedReadHalf,
    client: &mut OwnedWriteHalf,
    mut rx: mpsc::Receiver<Pending>,
) -> Result<(), String> {
    let mut upstream = BufReader::with_capacity(256 * 1024, upstream);
    while let Some(pending) = rx.recv().await {
        let out = match pending {
            Pending::Local(frame) => frame.0.freeze(),
            Pending::Delayed(frame, pause) => {
                tokio::time::sleep(pause).await;
                frame
            }
            Pending::Upstream {
                correlation_id,
                api: ApiKey::Fetch,
                version,
                handling: Handling::Rewrite,
                ..
            } => {
                // Streamed: the records go to the client as they arrive.
                let len = read_len(&mut upstream, ctx).await?;
                client
                    .write_all(&(len as i32).to_be_bytes())
                    .await
                    .map_err(|e| format!("client write failed: {e}"))?;
                let map = ConnMap::new(ctx);
                fetch::stream_fetch(&mut upstream, client, len, version, correlation_id, &map)
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
            Pending::Upstream {
                correlation_id,
                api,
                version,
                handling,
                observe,
                ..
            } => {
                // Fetch responses are streamed; every other response is
                // read whole, so it is held to the same bound as requests.
                let frame = read_frame(&mut upstream, ctx.cfg.max_frame_bytes)
                    .await
                    .map_err(|e| format!("upstream {}: {e}", ctx.cluster))?
                    .ok_or_else(|| closed(ctx))?;
                let got = frame
                    .payload()
                    .get(..4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if got != Some(correlation_id) {
                    return Err(format!(
                        "upstream response correlation id {got:?} does not match request {correlation_id}"
                    ));
                }
                learn(ctx, observe, version, frame.payload());
                match handling {
                    Handling::Rewrite => rewrite(ctx, api, version, frame.0.freeze()).await?,
                    _ => frame.0.freeze(),
                }
            }
        };
        client
            .write_all(&out)
            .await
            .map_err(|e| format!("client write failed: {e}"))?;
    }
    Ok(())
}

fn closed(ctx: &Ctx) -> String {
    format!(
        "upstream {} closed the connection with requests in flight",
        ctx.cluster
    )
}

/// Reads a response's length prefix.
async fn read_len(upstream: &mut BufReader<OwnedReadHalf>, ctx: &Ctx) -> Result<usize, String> {
    use tokio::io::AsyncReadExt;
    let mut prefix = [0u8; 4];
    upstream
        .read_exact(&mut prefix)
        .await
        .map_err(|_| closed(ctx))?;
    let len = i32::from_be_bytes(prefix);
    usize::try_from(len).map_err(|_| {
        format!(
            "upstream {} sent a negative frame length {len}",
            ctx.cluster
        )
    })
}

/// Rewrites a response frame (with its length prefix).
async fn rewrite(ctx: &Ctx, api: ApiKey, version: i16, frame: Bytes) -> Result<Bytes, String> {
    let decoded = Rewritable::decode(api, version, frame.slice(4..)).map_err(|e| e.to_string())?;
    let Some(mut msg) = decoded else {
        return Ok(frame);
    };
    let announced = msg.brokers();
    if !announced.is_empty() {
        let brokers: Vec<_> = announced
            .iter()
            .map(|a| {
                (
                    RealNodeId(a.node_id),
                    crate::routing::BrokerAddr {
                        host: a.host.clone(),
                        port: a.port,
                    },
                )
            })
            .collect();
        for slot in ctx.shared.topology.learn(&ctx.cluster, &brokers) {
            match slot {
                Ok(slot) => {
                    listeners::ensure(&ctx.shared, slot)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Err(e) => tracing::error!(error = %e, "broker not exposed"),
            }
        }
    }
    let unknown = msg
        .unnamed_topic_ids()
        .into_iter()
        .any(|id| ctx.shared.topic_ids.virtual_of(&ctx.cluster, id).is_none());
    if unknown {
        learn_topic_ids(&ctx.shared, &ctx.cluster).await;
    }
    let map = ConnMap::new(ctx);
    if !msg.rewrite(&map) {
        return Ok(frame);
    }
    Ok(msg.encode().map_err(|e| e.to_string())?.freeze())
}

/// Learns every topic id of `cluster` (one Metadata request for all
/// topics), for a KIP-848 assignment or an owned partition that names a
/// topic kflip has not seen in a Metadata response yet.
pub(super) async fn learn_topic_ids(shared: &Shared, cluster: &ClusterName) {
    let boot = super::failover::bootstrap(shared, cluster);
    let timeout = shared.proxy_config().connect_timeout;
    let topics = match crate::kafka::KafkaConn::connect_any(&boot, timeout).await {
        Ok(mut conn) => conn.topic_ids().await,
        Err(e) => Err(e),
    };
    match topics {
        Ok(topics) => {
            for (name, id) in topics {
                shared.topic_ids.learn(cluster, &name, id);
            }
        }
        Err(e) => tracing::warn!(%cluster, error = %e, "cannot learn the cluster's topic ids"),
    }
}

/// Maps one cluster's node ids onto kflip's virtual brokers.
struct ConnMap<'a> {
    ctx: &'a Ctx,
    host: StrBytes,
}

impl<'a> ConnMap<'a> {
    fn new(ctx: &'a Ctx) -> Self {
        ConnMap {
            ctx,
            host: StrBytes::from_string(ctx.cfg.advertised_host.clone()),
        }
    }
}

impl NodeMap for ConnMap<'_> {
    fn node(&self, real: i32) -> i32 {
        match self
            .ctx
            .shared
            .topology
            .virtual_id(&self.ctx.cluster, RealNodeId(real))
        {
            Ok(v) => v.0,
            Err(e) => {
                tracing::error!(error = %e, "broker not exposed");
                -1
            }
        }
    }

    fn endpoint(&self, real: i32) -> (StrBytes, i32) {
        let slot = self
            .ctx
            .shared
            .topology
            .virtual_id(&self.ctx.cluster, RealNodeId(real));
        // Every announced broker had its listener bound before rewriting; an
        // unannounced one is pointed at the bootstrap listener, never at a
        // real address.
        let port = slot
            .ok()
            .and_then(|s| self.ctx.shared.listeners.port(s))
            .unwrap_or_else(|| {
                self.ctx
                    .shared
                    .bootstrap_port
                    .load(std::sync::atomic::Ordering::Relaxed)
            });
        (self.host.clone(), i32::from(port))
    }

    fn cluster_id(&self) -> StrBytes {
        StrBytes::from_string(self.ctx.cfg.cluster_id.clone())
    }

    fn topic_id(&self, name: &str, real: uuid::Uuid) -> uuid::Uuid {
        self.ctx
            .shared
            .topic_ids
            .learn(&self.ctx.cluster, name, real)
    }

    fn topic_id_of_real(&self, real: uuid::Uuid) -> Option<uuid::Uuid> {
        self.ctx
            .shared
            .topic_ids
            .virtual_of(&self.ctx.cluster, real)
    }
}
