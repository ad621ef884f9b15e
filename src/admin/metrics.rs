//! Metrics: the proxy's hot-path counters, and everything else read from
//! its owner when `/metrics` is scraped.
//!
//! The proxy counts per request with relaxed atomics in fixed arrays
//! indexed by API key ([`ProxyMetrics`]): no lock, no map lookup, no
//! allocation. Everything else (switch state and figures, reloads, cluster
//! reachability, replication progress and lag, orphans) already lives in
//! the structure that owns it and is read once per scrape by [`Scrape`],
//! so a metric can never disagree with `/status`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::Sources;
use crate::replication::state::PartitionLag;

/// One past the largest Kafka API key counted separately; larger keys are
/// refused before they are counted.
const API_KEYS: usize = 96;

/// Upper bounds of the request latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 10_000_000,
];

/// Why a client connection was turned away.
#[derive(Clone, Copy, Debug)]
pub enum Rejected {
    /// `proxy.max_connections` reached.
    Limit = 0,
    /// `proxy.max_connections_per_address` reached.
    PerAddress = 1,
    /// The TLS handshake failed or timed out.
    Tls = 2,
    /// SASL authentication failed or timed out.
    Auth = 3,
}

const REJECTED: [&str; 4] = ["limit", "per_address", "tls", "auth"];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, us: u64) {
        if let Some(i) = BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The proxy's own counters, updated on the hot path.
pub struct ProxyMetrics {
    requests: Box<[AtomicU64]>,
    errors: Box<[AtomicU64]>,
    latency: Box<[Histogram]>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    accepted: AtomicU64,
    rejected: [AtomicU64; 4],
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        ProxyMetrics {
            requests: (0..API_KEYS).map(|_| AtomicU64::new(0)).collect(),
            errors: (0..API_KEYS).map(|_| AtomicU64::new(0)).collect(),
            latency: (0..API_KEYS).map(|_| Histogram::default()).collect(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: Default::default(),
        }
    }
}

fn slot(api_key: i16) -> Option<usize> {
    usize::try_from(api_key).ok().filter(|k| *k < API_KEYS)
}

impl ProxyMetrics {
    /// A request of `api_key` arrived (`bytes` with its length prefix).
    pub fn request(&self, api_key: i16, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        if let Some(i) = slot(api_key) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request of `api_key` failed: kflip refused it, or it was never
    /// answered because its session failed.
    pub fn error(&self, api_key: i16) {
        if let Some(i) = slot(api_key) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A response went to the client.
    pub fn sent(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A forwarded request of `api_key` was answered, `since` it arrived.
    pub fn answered(&self, api_key: i16, since: Instant) {
        if let Some(i) = slot(api_key) {
            self.latency[i].observe(since.elapsed().as_micros() as u64);
        }
    }

    /// Bytes of requests and responses so far.
    pub fn moved(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed) + self.bytes_out.load(Ordering::Relaxed)
    }

    /// A client connection was accepted.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A client connection was turned away.
    pub fn rejected(&self, why: Rejected) {
        self.rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A forwarded request waiting for its response: records its latency when
/// answered, and counts it as an error if it never is.
pub struct Timed<'a> {
    metrics: &'a ProxyMetrics,
    api_key: i16,
    since: Instant,
    done: bool,
}

impl<'a> Timed<'a> {
    /// Starts timing a request of `api_key` that arrived `since`.
    pub fn new(metrics: &'a ProxyMetrics, api_key: i16, since: Instant) -> Self {
        Timed {
            metrics,
            api_key,
            since,
            done: false,
        }
    }

    /// The response was written to the client.
    pub fn answered(mut self) {
        self.done = true;
        self.metrics.answered(self.api_key, self.since);
    }
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.error(self.api_key);
        }
    }
}

/// Encodes every metric for one scrape.
#[derive(Debug)]
pub(super) struct Scrape(pub(super) std::sync::Arc<Sources>);

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Labels<'a>, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in rows {
        let e = m.encode_family(&labels)?;
        value(e, kind, v)?;
    }
    Ok(())
}

fn value(e: MetricEncoder, kind: MetricType, v: f64) -> Result<(), std::fmt::Error> {
    match kind {
        MetricType::Counter => ConstCounter::new(v).encode(e),
        _ => ConstGauge::new(v).encode(e),
    }
}

fn single(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, kind)?;
    value(m, kind, v)
}

fn bool_f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let s = &self.0;
        let version = env!("CARGO_PKG_VERSION");
        family(
            &mut enc,
            "kflip_build_info",
            "kflip's version.",
            Gauge,
            [(vec![("version", version)], 1.0)],
        )?;
        single(
            &mut enc,
            "kflip_ready",
            "1 when /readyz answers 200.",
            Gauge,
            bool_f(s.readiness().is_ok()),
        )?;
        // Config reloads.
        let reloads = s.reload.reloads.load(Ordering::Relaxed);
        let rejected = s.reload.rejected.load(Ordering::Relaxed);
        let failing = s
            .reload
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        single(
            &mut enc,
            "kflip_config_reloads",
            "Config snapshots published after the first.",
            Counter,
            reloads as f64,
        )?;
        single(
            &mut enc,
            "kflip_config_reload_errors",
            "Config files rejected on reload (the old config kept running).",
            Counter,
            rejected as f64,
        )?;
        single(
            &mut enc,
            "kflip_config_last_reload_failed",
            "1 while the newest config file is rejected and the previous one runs.",
            Gauge,
            bool_f(failing),
        )?;
        // Cluster reachability.
        let probes = s.probes.snapshot();
        family(
            &mut enc,
            "kflip_cluster_up",
            "1 if the cluster answered kflip's last probe (connect, TLS, SASL login).",
            Gauge,
            probes
                .iter()
                .map(|(c, p)| (vec![("cluster", c.as_str())], bool_f(p.up))),
        )?;
        let members = s.fleet.members();
        let live = members
            .iter()
            .filter(|m| super::fleet::age(&m.beacon) < super::fleet::STALE_AFTER)
            .count();
        single(
            &mut enc,
            "kflip_fleet_members",
            "kflips seen through the state topics in the last 10 s, this one included.",
            Gauge,
            live as f64,
        )?;
        single(
            &mut enc,
            "kflip_fleet_disagreeing",
            "Live proxies of the fleet that forward to another cluster than this one.",
            Gauge,
            super::fleet::disagreements(&members, &super::fleet::current(s)).len() as f64,
        )?;
        if let Some(proxy) = &s.proxy {
            single(
                &mut enc,
                "kflip_fleet_behind",
                "1 while most of the fleet's live proxies forward to another cluster: this proxy refuses writes.",
                Gauge,
                bool_f(proxy.board().fleet_elsewhere().is_some()),
            )?;
            self.proxy(&mut enc, proxy)?;
        }
        if let Some(engine) = &s.engine {
            engine_metrics(&mut enc, engine)?;
        }
        Ok(())
    }
}

impl Scrape {
    fn proxy(
        &self,
        enc: &mut DescriptorEncoder,
        proxy: &crate::proxy::ProxyHandle,
    ) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge, Histogram as Hist};
        let m = proxy.metrics();
        let board = proxy.board();
        let state = board.state();
        let cfg = self.0.config.borrow().clone();
        family(
            enc,
            "kflip_active_cluster",
            "1 for the cluster clients are forwarded to, 0 for the others.",
            Gauge,
            cfg.clusters
                .keys()
                .map(|c| (vec![("cluster", c.as_str())], bool_f(*c == state.active))),
        )?;
        single(
            enc,
            "kflip_switch_epoch",
            "Switches of the active cluster since this process started.",
            Gauge,
            state.epoch as f64,
        )?;
        single(
            enc,
            "kflip_switch_holding",
            "1 while a planned switch holds new requests.",
            Gauge,
            bool_f(state.holding),
        )?;
        let switches = board.switches();
        family(
            enc,
            "kflip_switches",
            "Switches run, by kind (planned: the old cluster answered; disaster: it did not).",
            Counter,
            [
                (vec![("kind", "planned")], switches.planned as f64),
                (vec![("kind", "disaster")], switches.disaster as f64),
            ],
        )?;
        if let Some(last) = &switches.last {
            let figures = [
                (
                    "kflip_last_switch_hold_seconds",
                    "How long the last switch held new requests.",
                    last.hold_ms as f64 / 1000.0,
                ),
                (
                    "kflip_last_switch_duration_seconds",
                    "From the last config change seen to clients on the new cluster (the proxy's RTO).",
                    last.duration_ms as f64 / 1000.0,
                ),
                (
                    "kflip_last_switch_rpo_records",
                    "Records the old cluster acknowledged that were not replicated at the last switch (-1: unknown).",
                    last.rpo_records as f64,
                ),
                (
                    "kflip_last_switch_rpo_seconds",
                    "Age of the oldest record not replicated at the last switch.",
                    last.rpo_seconds,
                ),
                (
                    "kflip_last_switch_timestamp_seconds",
                    "When the last switch moved clients (Unix time).",
                    last.at_unix_ms as f64 / 1000.0,
                ),
            ];
            for (name, help, v) in figures {
                single(enc, name, help, Gauge, v)?;
            }
        }
        single(
            enc,
            "kflip_proxy_connections",
            "Client connections open.",
            Gauge,
            proxy.connections() as f64,
        )?;
        single(
            enc,
            "kflip_proxy_connections",
            "Client connections accepted.",
            Counter,
            m.accepted.load(Ordering::Relaxed) as f64,
        )?;
        family(
            enc,
            "kflip_proxy_connections_rejected",
            "Client connections turned away, by reason.",
            Counter,
            REJECTED
                .iter()
                .zip(&m.rejected)
                .map(|(r, n)| (vec![("reason", *r)], n.load(Ordering::Relaxed) as f64)),
        )?;
        single(
            enc,
            "kflip_proxy_in_flight_requests",
            "Requests forwarded and not yet answered.",
            Gauge,
            board.in_flight() as f64,
        )?;
        single(
            enc,
            "kflip_proxy_bytes_received",
            "Bytes of requests received from clients.",
            Counter,
            m.bytes_in.load(Ordering::Relaxed) as f64,
        )?;
        single(
            enc,
            "kflip_proxy_bytes_sent",
            "Bytes of responses sent to clients.",
            Counter,
            m.bytes_out.load(Ordering::Relaxed) as f64,
        )?;
        let names: Vec<(usize, String)> = (0..API_KEYS)
            .filter(|i| {
                m.requests[*i].load(Ordering::Relaxed) > 0
                    || m.latency[*i].count.load(Ordering::Relaxed) > 0
            })
            .map(|i| (i, crate::kafka::api_name(i as i16)))
            .collect();
        let per_api = [
            ("kflip_proxy_requests", "Client requests, by API.", &m.requests),
            (
                "kflip_proxy_request_errors",
                "Client requests kflip refused or that were never answered (their session failed), by API.",
                &m.errors,
            ),
        ];
        for (name, help, counts) in per_api {
            family(
                enc,
                name,
                help,
                Counter,
                names.iter().map(|(i, n)| {
                    (
                        vec![("api", n.as_str())],
                        counts[*i].load(Ordering::Relaxed) as f64,
                    )
                }),
            )?;
        }
        let mut h = enc.encode_descriptor(
            "kflip_proxy_request_duration_seconds",
            "Time from a forwarded request's arrival to its response written to the client, by API.",
            None,
            Hist,
        )?;
        for (i, n) in &names {
            let hist = &m.latency[*i];
            // Per-bucket counts: the encoder makes them cumulative and adds
            // the +Inf bucket from `count`.
            let buckets: Vec<(f64, u64)> = BUCKETS_US
                .iter()
                .zip(&hist.buckets)
                .map(|(b, c)| (*b as f64 / 1e6, c.load(Ordering::Relaxed)))
                .collect();
            let in_buckets: u64 = buckets.iter().map(|(_, c)| c).sum();
            // A scrape racing an observation may see the bucket before the
            // count; the +Inf bucket must never be below the others.
            let count = hist.count.load(Ordering::Relaxed).max(in_buckets);
            let labels = vec![("api", n.as_str())];
            h.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                hist.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
                count,
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}

/// One lag figure of a partition.
type LagValue = fn(&PartitionLag) -> f64;

fn engine_metrics(
    enc: &mut DescriptorEncoder,
    engine: &crate::replication::Engine,
) -> Result<(), std::fmt::Error> {
    use MetricType::{Counter, Gauge};
    let flows = engine.lag();
    let per_flow =
        |name: &str, help: &str, kind, f: &dyn Fn(&crate::replication::FlowLag) -> f64| {
            (
                name.to_string(),
                help.to_string(),
                kind,
                flows
                    .iter()
                    .map(|l| (l.flow.clone(), f(l)))
                    .collect::<Vec<_>>(),
            )
        };
    let rows = [
        per_flow(
            "kflip_replication_records",
            "Records copied and acknowledged by the target, by flow.",
            Counter,
            &|l| l.records as f64,
        ),
        per_flow(
            "kflip_replication_bytes",
            "Key and value bytes copied and acknowledged by the target, by flow.",
            Counter,
            &|l| l.bytes as f64,
        ),
        per_flow(
            "kflip_replication_produce_requests",
            "Produce requests the flow's batch writer sent to the target (resends included).",
            Counter,
            &|l| l.produced[0] as f64,
        ),
        per_flow(
            "kflip_replication_produce_batches",
            "Record batches in those requests.",
            Counter,
            &|l| l.produced[1] as f64,
        ),
        per_flow(
            "kflip_replication_produce_bytes",
            "Bytes of those requests; divided by the batches, the average batch size.",
            Counter,
            &|l| l.produced[2] as f64,
        ),
        per_flow(
            "kflip_replication_flow_error",
            "1 while the flow reports an error (see /status).",
            Gauge,
            &|l| bool_f(l.last_error.is_some()),
        ),
        per_flow(
            "kflip_replication_partitions",
            "Source partitions the flow copies.",
            Gauge,
            &|l| l.partitions.len() as f64,
        ),
    ];
    for (name, help, kind, values) in &rows {
        family(
            enc,
            name,
            help,
            *kind,
            values.iter().map(|(f, v)| (vec![("flow", f.as_str())], *v)),
        )?;
    }
    family(
        enc,
        "kflip_offset_sync_age_seconds",
        "Seconds since the flow last synced consumer-group offsets.",
        Gauge,
        flows.iter().filter_map(|l| {
            l.offset_sync_age
                .map(|a| (vec![("flow", l.flow.as_str())], a))
        }),
    )?;
    let parts = || {
        flows
            .iter()
            .flat_map(|l| l.partitions.iter().map(move |p| (l.flow.as_str(), p)))
    };
    let mut partitions: Vec<(String, &str, &PartitionLag)> = parts()
        .map(|(f, p)| (p.partition.to_string(), f, p))
        .collect();
    partitions
        .sort_by(|a, b| (a.1, &a.2.topic, a.2.partition).cmp(&(b.1, &b.2.topic, b.2.partition)));
    let lag: [(&str, &str, LagValue); 2] = [
        (
            "kflip_replication_lag_records",
            "Source records not yet copied and acknowledged, by flow, topic and partition.",
            |p| p.records.max(0) as f64,
        ),
        (
            "kflip_replication_lag_seconds",
            "Age of the oldest source record not yet copied, by flow, topic and partition.",
            |p| p.seconds,
        ),
    ];
    for (name, help, value) in lag {
        family(
            enc,
            name,
            help,
            Gauge,
            partitions.iter().map(|(n, f, p)| {
                (
                    vec![
                        ("flow", *f),
                        ("topic", p.topic.as_str()),
                        ("partition", n.as_str()),
                    ],
                    value(p),
                )
            }),
        )?;
    }
    let held: Vec<_> = engine
        .orphans()
        .into_iter()
        .filter(|o| !o.copied)
        .map(|o| (o.partition.to_string(), o))
        .collect();
    family(
        enc,
        "kflip_orphans_held_records",
        "Records a disaster switch left on the old cluster, held back (not copied), by flow, topic and partition.",
        Gauge,
        held.iter().map(|(n, o)| {
            (
                vec![("flow", o.flow.as_str()), ("topic", o.topic.as_str()), ("partition", n.as_str())],
                o.records as f64,
            )
        }),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_is_never_answered_counts_as_an_error() {
        let m = ProxyMetrics::default();
        m.request(0, 100);
        drop(Timed::new(&m, 0, Instant::now()));
        Timed::new(&m, 1, Instant::now()).answered();
        assert_eq!(m.errors[0].load(Ordering::Relaxed), 1);
        assert_eq!(m.errors[1].load(Ordering::Relaxed), 0);
        assert_eq!(m.latency[1].count.load(Ordering::Relaxed), 1);
        assert_eq!(m.bytes_in.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn keys_out_of_range_are_ignored_not_panicking() {
        let m = ProxyMetrics::default();
        m.request(-1, 1);
        m.request(i16::MAX, 1);
        m.error(500);
        m.answered(-7, Instant::now());
    }

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let h = Histogram::default();
        h.observe(10);
        h.observe(600);
        h.observe(u64::MAX / 4);
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[2].load(Ordering::Relaxed), 1);
        assert_eq!(h.count.load(Ordering::Relaxed), 3);
    }
}
