//! The admin HTTP listener (`admin.listen`): what an operator, Kubernetes
//! and Prometheus ask a running kflip.
//!
//! - `GET /metrics`: Prometheus text format ([`metrics`]);
//! - `GET /status`: JSON, everything `kflip status` shows ([`status`]);
//! - `GET /healthz`: 200 while the process serves HTTP at all (liveness);
//! - `GET /readyz`: 200 when it can serve clients (config loaded, active
//!   cluster reachable, not shutting down), else 503 with the reason;
//! - `GET /offsets/translate?group=G[&from=A&to=B]`: a group's committed
//!   offsets on one cluster and their translation onto the other;
//! - `POST /orphans/restore?flow=A->B`: copy the orphans a flow holds.
//!
//! Nothing here returns a secret: cluster errors come from
//! [`crate::kafka::ClientError`], which never carries one.

mod clients;
pub mod fleet;
pub mod metrics;
pub mod probe;
mod status;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::watch::ReloadStatus;
use crate::config::{ClusterName, Config};
use crate::proxy::ProxyHandle;
use crate::replication::Engine;

/// Most admin HTTP connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 32;

/// Everything the admin API reads, each from the part that owns it.
pub struct Sources {
    /// The config file's path.
    pub config_path: PathBuf,
    /// The running config.
    pub config: watch::Receiver<Arc<Config>>,
    /// The outcome of the latest reload.
    pub reload: Arc<ReloadStatus>,
    /// The proxy, when this process runs one.
    pub proxy: Option<ProxyHandle>,
    /// The replication engine, when this process runs one.
    pub engine: Option<Arc<Engine>>,
    /// Cancelled when kflip starts shutting down.
    pub shutdown: CancellationToken,
    /// When the process started.
    pub started: Instant,
    /// Every cluster's last probe.
    pub probes: Arc<probe::Reachability>,
    /// This process's name in the fleet ([`fleet::instance`]).
    pub instance: String,
    /// The other kflips seen through the state topics.
    pub fleet: fleet::Fleet,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("config_path", &self.config_path)
            .field("proxy", &self.proxy)
            .field("engine", &self.engine.is_some())
            .finish_non_exhaustive()
    }
}

impl Sources {
    /// Whether this process can serve: `Err` names why not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.shutdown.is_cancelled() {
            return Err("shutting down: draining connections".into());
        }
        let Some(proxy) = &self.proxy else {
            return Ok(());
        };
        let active = proxy.switch_state().active;
        match self.probes.get(&active) {
            Some(p) if p.up => Ok(()),
            Some(p) => Err(format!(
                "the active cluster {active} is unreachable: {}",
                p.error.unwrap_or_default()
            )),
            None => Err(format!("the active cluster {active} was not probed yet")),
        }
    }
}

/// Binds `admin.listen`, probes the clusters once, and serves until the
/// process exits (it keeps answering while kflip drains, so `/readyz`
/// can say so).
pub async fn start(sources: Arc<Sources>, listen: &str) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("admin.listen: cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(listen = %addr, "admin API listening (/metrics, /status, /healthz, /readyz)");
    let cfg = sources.config.borrow().clone();
    probe::probe_all(&sources.probes, &cfg, Duration::from_secs(2)).await;
    tokio::spawn(probe::run(
        sources.probes.clone(),
        sources.config.clone(),
        sources.shutdown.clone(),
    ));
    // A proxy without an engine asks the fleet's engines to catch up in a
    // planned switch; one with an engine does too for its shared flows.
    if let Some(p) = &sources.proxy {
        p.board()
            .set_remote(Arc::new(fleet::FleetEngines(sources.clone())));
    }
    let (s, rt) = (sources.clone(), tokio::runtime::Handle::current());
    if let Err(e) = std::thread::Builder::new()
        .name("kflip-fleet".into())
        .spawn(move || fleet::run(s, rt))
    {
        tracing::warn!(error = %e, "cannot start the fleet thread; /status shows no fleet");
    }
    tokio::spawn(serve(listener, sources));
    Ok(addr)
}

async fn serve(listener: TcpListener, sources: Arc<Sources>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let sources = sources.clone();
                async move { Ok::<_, Infallible>(handle(&sources, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            // A slow or idle admin client holds its slot for a minute at
            // most.
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn reply(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn text(code: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut body = body.into();
    body.push('\n');
    reply(code, "text/plain; charset=utf-8", body)
}

fn json(code: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    reply(code, "application/json", body)
}

async fn handle(sources: &Arc<Sources>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = query(req.uri().query().unwrap_or(""));
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match (path.as_str(), get, req.method() == Method::POST) {
        ("/healthz", true, _) => text(StatusCode::OK, "ok"),
        ("/readyz", true, _) => match sources.readiness() {
            Ok(()) => text(StatusCode::OK, "ready"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
        },
        ("/metrics", true, _) => {
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(metrics::Scrape(sources.clone())));
            let mut out = String::new();
            match prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
                Ok(()) => reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    out,
                ),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics"),
            }
        }
        ("/status", true, _) => json(StatusCode::OK, &status::status(sources)),
        ("/clients", true, _) => json(StatusCode::OK, &clients::clients(sources)),
        ("/offsets/translate", true, _) => match translate(sources, &query).await {
            Ok(v) => json(StatusCode::OK, &v),
            Err((code, why)) => json(code, &serde_json::json!({ "error": why })),
        },
        ("/orphans/restore", _, true) => {
            let Some(engine) = &sources.engine else {
                return json(
                    StatusCode::CONFLICT,
                    &serde_json::json!({"error": "this kflip runs no replication engine"}),
                );
            };
            let Some(flow) = query.get("flow") else {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"error": "name the flow: ?flow=SOURCE->TARGET"}),
                );
            };
            match engine.restore_orphans(flow) {
                Ok(held) => json(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({"flow": flow, "ranges": held}),
                ),
                Err(why) => json(StatusCode::NOT_FOUND, &serde_json::json!({ "error": why })),
            }
        }
        (
            "/healthz" | "/readyz" | "/metrics" | "/status" | "/clients" | "/offsets/translate",
            false,
            _,
        )
        | ("/orphans/restore", _, false) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /status, /healthz or /readyz",
        ),
    }
}

/// Parses `a=b&c=d`, percent-decoded; bad escapes are kept as written.
fn query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 2;
            }
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Failure = (StatusCode, String);

/// A group's committed offsets on `from`, translated onto `to` through
/// the offset maps of the flow between them.
async fn translate(
    sources: &Sources,
    q: &BTreeMap<String, String>,
) -> Result<serde_json::Value, Failure> {
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let engine = sources.engine.as_ref().ok_or((
        StatusCode::CONFLICT,
        "this kflip runs no replication engine; ask the one that replicates".to_string(),
    ))?;
    let group = q
        .get("group")
        .filter(|g| !g.is_empty())
        .ok_or_else(|| bad("name the group: ?group=G".into()))?;
    let cfg = sources.config.borrow().clone();
    let active = sources.proxy.as_ref().map(|p| p.switch_state().active);
    let names: Vec<ClusterName> = cfg.clusters.keys().cloned().collect();
    let from = match (q.get("from"), &active) {
        (Some(f), _) => ClusterName::from(f.as_str()),
        (None, Some(a)) => a.clone(),
        (None, None) => names
            .first()
            .cloned()
            .ok_or_else(|| bad("no clusters".into()))?,
    };
    let to = match q.get("to") {
        Some(t) => ClusterName::from(t.as_str()),
        None => names
            .iter()
            .find(|n| **n != from)
            .cloned()
            .ok_or_else(|| bad("name the target cluster: &to=B".into()))?,
    };
    for c in [&from, &to] {
        if !cfg.clusters.contains_key(c) {
            return Err(bad(format!(
                "no cluster {c} in the config (clusters: {})",
                names
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let flow = format!("{from}->{to}");
    let lag = engine
        .lag()
        .into_iter()
        .find(|l| l.flow == flow)
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("no running flow {flow}: offsets are translated along a flow"),
            )
        })?;
    let mut topics: BTreeMap<String, i32> = BTreeMap::new();
    for p in &lag.partitions {
        let n = topics.entry(p.topic.clone()).or_default();
        *n = (*n).max(p.partition + 1);
    }
    let timeout = Duration::from_secs(10);
    let upstream = |e: crate::kafka::ClientError| (StatusCode::BAD_GATEWAY, e.to_string());
    let mut src = crate::kafka::groups::GroupAdmin::new(cfg.clusters[&from].clone(), timeout);
    let committed = src.committed(group, &topics).await.map_err(upstream)?;
    let mut target_topics: BTreeMap<String, i32> = BTreeMap::new();
    let mut rows = Vec::new();
    for ((topic, partition), offset) in &committed {
        let translated = engine.translate(from.as_str(), to.as_str(), topic, *partition, *offset);
        if let Some((t, _)) = &translated {
            let n = target_topics.entry(t.clone()).or_default();
            *n = (*n).max(partition + 1);
        }
        rows.push((topic.clone(), *partition, *offset, translated));
    }
    let mut dst = crate::kafka::groups::GroupAdmin::new(cfg.clusters[&to].clone(), timeout);
    let there = if target_topics.is_empty() {
        Default::default()
    } else {
        dst.committed(group, &target_topics)
            .await
            .map_err(upstream)?
    };
    let partitions: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(topic, partition, offset, translated)| {
            let (target_topic, target_offset) = match &translated {
                Some((t, o)) => (Some(t.clone()), Some(*o)),
                None => (None, None),
            };
            let committed_there = target_topic
                .as_ref()
                .and_then(|t| there.get(&(t.clone(), partition)).copied());
            serde_json::json!({
                "topic": topic,
                "partition": partition,
                "committed": offset,
                "target_topic": target_topic,
                "translated": target_offset,
                "committed_on_target": committed_there,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "group": group,
        "from": from.as_str(),
        "to": to.as_str(),
        "flow": flow,
        "partitions": partitions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_split_and_percent_decoded() {
        let q = query("group=my%20app&flow=dc1-%3Edc2&x&bad=%zz&tail=%4");
        assert_eq!(q["group"], "my app");
        assert_eq!(q["flow"], "dc1->dc2");
        assert_eq!(q["x"], "");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["tail"], "%4");
    }
}
