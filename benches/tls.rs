//! End-to-end benchmark: what TLS costs through kflip, as ratios measured in
//! one run. Three kflip processes side by side in front of one Apache Kafka
//! 4.4 broker that has a PLAINTEXT and an SSL client listener:
//! - `plain`: client -> kflip -> broker, no TLS anywhere;
//! - `client-tls`: client -> kflip with `proxy.tls` -> the same PLAINTEXT
//!   listener (the client-side TLS cost);
//! - `both-tls`: client -> kflip with `proxy.tls` -> the SSL listener
//!   (`clusters.dc1.tls`), TLS on both sides.
//!
//! Run with `cargo bench --bench tls`. For 1 KiB records it measures
//! produce throughput (librdkafka, acks=1, linger.ms=5, 1 MB batches),
//! consume throughput (librdkafka, assign from the beginning), produce
//! latency p50/p99 with one request in flight (a raw client, rustls on the
//! TLS paths; the three paths take turns request by request) and CPU
//! seconds per GB of the client (this process), the broker and the path's
//! kflip, read from /proc.
//!
//! Every workload runs `rounds` times per path, the three paths rotating
//! which goes first; the table shows medians and ratios against `plain`.
//! It reports and never fails on timings. Knobs: `KFLIP_BENCH_RECORDS`
//! (default 300000), `KFLIP_BENCH_ROUNDS` (5), `KFLIP_BENCH_LATENCY_REQUESTS`
//! (10000: p99 then rests on 100 samples).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ProduceResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, HeaderVersion};
use rdkafka::config::ClientConfig;

use common::wire::{self, Conn};
use common::{consume, env_usize, mb_s, median, payload, produce, quantile, Cpus, RECORD};
use support::clients::{config, create_topic};
use support::secure::{Protocol, Security};
use support::{Broker, Kflip};

const LATENCY_WARMUP: usize = 200;

/// One way through kflip to the broker.
struct Route {
    /// `plain`, `client-tls` or `both-tls`.
    name: &'static str,
    /// Its own kflip process.
    kflip: Kflip,
    /// librdkafka settings to reach it.
    client: ClientConfig,
    /// rustls settings for the raw latency client, on TLS paths.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// CPU of [this process, the broker, this kflip].
    cpus: Cpus,
}

/// One measurement: seconds (or latency quantiles) and CPU seconds of
/// [client, broker, kflip].
#[derive(Clone, Debug)]
struct Sample {
    secs: f64,
    p50: f64,
    p99: f64,
    cpu: Vec<f64>,
}

/// Route indices in the order round `r` runs them.
fn order(r: usize, n: usize) -> Vec<usize> {
    (0..n).map(|i| (i + r) % n).collect()
}

/// One connection per route, one Produce in flight on each, with the
/// routes taking turns request by request (in `order`), so a burst of
/// load on the shared machine hits every path alike. Returns one sample
/// per route: latency quantiles and its kflip's CPU (the client and the
/// broker are shared, so their CPU is not split).
fn latency(
    routes: &[Route],
    order: &[usize],
    topic: &str,
    version: i16,
    requests: usize,
) -> Vec<Sample> {
    let mut conns: Vec<Conn> = routes
        .iter()
        .map(|r| Conn::connect(&r.kflip.addr(), r.tls.as_ref()))
        .collect();
    let mut frame = wire::produce_frame(topic, version, payload());
    let mut corr = 0i32;
    let mut one = |c: &mut Conn, check: bool| {
        corr += 1;
        frame[8..12].copy_from_slice(&corr.to_be_bytes());
        let t = Instant::now();
        c.send(&frame).expect("send produce");
        let resp = c.recv().expect("produce response");
        let dt = t.elapsed().as_secs_f64() * 1e3;
        let mut b = Bytes::from(resp);
        let h = ResponseHeader::decode(&mut b, ProduceResponse::header_version(version)).unwrap();
        assert_eq!(h.correlation_id, corr, "correlation id");
        if check {
            let r = ProduceResponse::decode(&mut b, version).unwrap();
            let code = r.responses[0].partition_responses[0].error_code;
            assert_eq!(code, 0, "produce error");
        }
        dt
    };
    for i in 0..LATENCY_WARMUP {
        for c in conns.iter_mut() {
            one(c, i == 0);
        }
    }
    let cpu: Vec<Vec<f64>> = routes.iter().map(|r| r.cpus.sample()).collect();
    let mut ms: Vec<Vec<f64>> = vec![Vec::with_capacity(requests); routes.len()];
    for _ in 0..requests {
        for &i in order {
            ms[i].push(one(&mut conns[i], false));
        }
    }
    routes
        .iter()
        .zip(cpu)
        .zip(ms)
        .map(|((r, cpu), mut ms)| {
            ms.sort_by(|a, b| a.total_cmp(b));
            Sample {
                secs: 0.0,
                p50: quantile(&ms, 0.50),
                p99: quantile(&ms, 0.99),
                cpu: r.cpus.since(&cpu),
            }
        })
        .collect()
}

fn main() {
    let n = env_usize("KFLIP_BENCH_RECORDS", 300_000).max(1);
    let rounds = env_usize("KFLIP_BENCH_ROUNDS", 5).max(1);
    let lat_requests = env_usize("KFLIP_BENCH_LATENCY_REQUESTS", 10_000).max(1);
    let started = Instant::now();
    eprintln!("kflip TLS bench: {n} x {RECORD} B records, {rounds} rounds per path");
    if std::env::var_os("KFLIP_BROKER_JVM").is_none() {
        std::env::set_var("KFLIP_BROKER_JVM", "-Xms1g -Xmx1g -XX:+UseG1GC");
    }
    let Some(broker) = Broker::start_secure("tls-bench", &Security::new(Protocol::Ssl)) else {
        return;
    };
    let plaintext = broker.plaintext_addr();
    let ssl = broker.bootstrap();
    let ca = broker.ca_pem().to_path_buf();
    let server = &broker.certs().server;
    let proxy_tls = format!(
        "  tls: {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
        server.cert.display(),
        server.key.display()
    );
    let upstream_tls = format!(", tls: {{ ca_file: \"{}\" }}", ca.display());
    let rustls_cfg = wire::tls_config(&ca);
    let broker_pid = broker.pid().unwrap_or_else(|| "0".into());

    let mut routes: Vec<Route> = Vec::new();
    for (name, upstream, client_tls) in [
        ("plain", format!("bootstrap: \"{plaintext}\""), false),
        ("client-tls", format!("bootstrap: \"{plaintext}\""), true),
        (
            "both-tls",
            format!("bootstrap: \"{ssl}\"{upstream_tls}"),
            true,
        ),
    ] {
        let yaml = format!(
            "clusters:\n  dc1: {{ {upstream} }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n{}",
            if client_tls { proxy_tls.as_str() } else { "" }
        );
        let kflip = Kflip::start_with_log(&yaml, "warn");
        let mut client = config(&kflip.addr());
        if client_tls {
            client
                .set("security.protocol", "SSL")
                .set("ssl.ca.location", ca.display().to_string());
        }
        let pid = kflip.pid().expect("kflip pid").to_string();
        routes.push(Route {
            name,
            kflip,
            client,
            tls: client_tls.then(|| rustls_cfg.clone()),
            cpus: Cpus::new(vec!["self".into(), broker_pid.clone(), pid]),
        });
    }
    std::thread::sleep(Duration::from_millis(500));

    let k = routes.len();
    let mut prod: Vec<Vec<Sample>> = vec![Vec::new(); k];
    let mut cons: Vec<Vec<Sample>> = vec![Vec::new(); k];
    let mut lat: Vec<Vec<Sample>> = vec![Vec::new(); k];

    for round in 0..rounds {
        for i in order(round, k) {
            let r = &routes[i];
            let topic = format!("tls-produce-{round}-{}", r.name);
            create_topic(&plaintext, &topic, 1);
            let mut cpu = Vec::new();
            let secs = produce(&r.client, &topic, n, || cpu = r.cpus.sample());
            let cpu = r.cpus.since(&cpu);
            eprintln!(
                "produce round {round} {:>10}: {:7.1} MB/s",
                r.name,
                mb_s(n, secs)
            );
            prod[i].push(Sample {
                secs,
                p50: 0.0,
                p99: 0.0,
                cpu,
            });
        }
    }

    create_topic(&plaintext, "tls-consume", 1);
    {
        let p = common::producer(&config(&plaintext));
        common::send_all(&p, "tls-consume", &payload(), n);
    }
    for round in 0..rounds {
        for i in order(round, k) {
            let r = &routes[i];
            let cpu = r.cpus.sample();
            let secs = consume(&r.client, "tls-consume", n);
            let cpu = r.cpus.since(&cpu);
            eprintln!(
                "consume round {round} {:>10}: {:7.1} MB/s",
                r.name,
                mb_s(n, secs)
            );
            cons[i].push(Sample {
                secs,
                p50: 0.0,
                p99: 0.0,
                cpu,
            });
        }
    }

    create_topic(&plaintext, "tls-latency", 1);
    let version = routes
        .iter()
        .map(|r| Conn::connect(&r.kflip.addr(), r.tls.as_ref()).produce_version())
        .min()
        .unwrap();
    for round in 0..rounds {
        let samples = latency(
            &routes,
            &order(round, k),
            "tls-latency",
            version,
            lat_requests,
        );
        for (i, s) in samples.into_iter().enumerate() {
            eprintln!(
                "latency round {round} {:>10}: p50 {:.3} ms p99 {:.3} ms",
                routes[i].name, s.p50, s.p99
            );
            lat[i].push(s);
        }
    }

    // --- report ---
    let med = |v: &[Sample], f: &dyn Fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let gb = (n * RECORD) as f64 / 1e9;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## kflip TLS cost: {n} x {RECORD} B records, median of {rounds} rounds, {} cores\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        out,
        "| {:<34} | {:>10} | {:>10} | {:>10} | {:>11} | {:>11} |",
        "metric", "plain", "client-tls", "both-tls", "c-tls/plain", "both/plain"
    );
    let _ = writeln!(
        out,
        "|{}|{}:|{}:|{}:|{}:|{}:|",
        "-".repeat(36),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(12),
        "-".repeat(12)
    );
    let mut line = |metric: &str, v: [f64; 3], prec: usize, ratios: bool| {
        let cell = |x: f64| format!("{x:.prec$}");
        let ratio = |x: f64| {
            if ratios {
                format!("{:.3}", x / v[0])
            } else {
                String::new()
            }
        };
        let _ = writeln!(
            out,
            "| {metric:<34} | {:>10} | {:>10} | {:>10} | {:>11} | {:>11} |",
            cell(v[0]),
            cell(v[1]),
            cell(v[2]),
            ratio(v[1]),
            ratio(v[2])
        );
    };
    let per = |v: &[Vec<Sample>], f: &dyn Fn(&Sample) -> f64| -> [f64; 3] {
        [med(&v[0], f), med(&v[1], f), med(&v[2], f)]
    };
    line("produce MB/s", per(&prod, &|s| mb_s(n, s.secs)), 1, true);
    line("consume MB/s", per(&cons, &|s| mb_s(n, s.secs)), 1, true);
    let p50 = per(&lat, &|s| s.p50);
    let p99 = per(&lat, &|s| s.p99);
    line("produce latency p50 ms", p50, 3, true);
    line("produce latency p99 ms", p99, 3, true);
    line(
        "added p99 ms vs plain",
        [0.0, p99[1] - p99[0], p99[2] - p99[0]],
        3,
        false,
    );
    for (phase, v) in [("produce", &prod), ("consume", &cons)] {
        for (who, j) in [("client", 0), ("broker", 1), ("kflip", 2)] {
            line(
                &format!("{phase} {who} CPU s/GB"),
                per(v, &|s| s.cpu[j] / gb),
                2,
                true,
            );
        }
    }
    line(
        "latency kflip CPU us/request",
        per(&lat, &|s| 1e6 * s.cpu[2] / lat_requests as f64),
        0,
        true,
    );
    let rss: Vec<f64> = routes
        .iter()
        .map(|r| {
            let pid = r.kflip.pid().unwrap_or(0);
            common::status_kib(pid, "VmHWM").unwrap_or(0) as f64 / 1024.0
        })
        .collect();
    line(
        "kflip peak RSS MiB (VmHWM)",
        [rss[0], rss[1], rss[2]],
        1,
        false,
    );
    let _ = writeln!(
        out,
        "\nproduce latency: {lat_requests} sequential 1-record Produce v{version} requests \
         per path and round (acks=1, one in flight, paths taking turns) after \
         {LATENCY_WARMUP} warm-up; one broker \
         (PLAINTEXT and SSL listeners), three kflip processes"
    );
    let _ = writeln!(
        out,
        "total bench time: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("{out}");
    drop(routes);
    drop(broker);
}
