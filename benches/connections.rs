//! Memory per idle client connection: kflip's RSS with N client
//! connections open and idle, against its RSS before they opened.
//!
//! Each connection goes through kflip's bootstrap listener to one Apache
//! Kafka 4.4 broker (KRaft, 1 GiB heap), sends ApiVersions and Metadata (so
//! its upstream session exists and has carried a response), and then stays
//! idle. With all N open, the bench reads kflip's and the broker's VmRSS,
//! checks that one connection in 100 still answers a Metadata, closes them
//! all and reads kflip's RSS again. Rounds run for N = 100, 1,000 and
//! 10,000, each from a state with no client connection.
//!
//! kflip holds two descriptors per connection (the client's and its
//! upstream's), so N is capped at what the open-files limit allows, read
//! from /proc/self/limits (kflip inherits it); the report says when the
//! cap bit.
//!
//! Run with `cargo bench --bench connections`. Knobs: `KFLIP_BENCH_CONNS`
//! (comma-separated N, default `100,1000,10000`),
//! `KFLIP_BENCH_CONN_THREADS` (threads opening connections, 4) and
//! `KFLIP_BENCH_TLS` (`1`: TLS on both sides, clients to kflip and kflip
//! to an SSL listener of the broker; `client`: clients to kflip only).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;

use common::wire::{frame, tls_config, Conn};
use common::{env_usize, status_kib};
use support::secure::{Protocol, Security};
use support::{Broker, Kflip, Storage};

/// The client side's TLS config, when the bench runs with TLS.
type Tls = Option<Arc<rustls::ClientConfig>>;

/// Descriptors kept aside for everything but client connections (kflip's
/// listeners, its log, the admin listener, probes).
const SPARE_FDS: usize = 200;

/// Opens a connection through kflip, gets its ApiVersions and Metadata
/// answered, and returns it idle.
fn open(addr: &str, tls: &Tls) -> Conn {
    let mut c = Conn::connect(addr, tls.as_ref());
    let versions = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("kflip-bench"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    c.send(&frame(&versions, 3, 1)).expect("send ApiVersions");
    c.recv().expect("ApiVersions response");
    metadata(&mut c);
    c
}

/// One Metadata (v12, no topics) answered on `c`.
fn metadata(c: &mut Conn) {
    let req = MetadataRequest::default().with_topics(Some(vec![]));
    c.send(&frame(&req, 12, 2)).expect("send Metadata");
    let r = c.recv().expect("Metadata response");
    assert!(r.len() > 8, "Metadata response of {} bytes", r.len());
}

/// The soft open-files limit of this process (kflip and the broker
/// inherit it).
fn nofile() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

/// Open descriptors of a process.
fn fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `status_kib` for a pid given as text.
fn rss(pid: &str) -> u64 {
    pid.parse()
        .ok()
        .and_then(|p| status_kib(p, "VmRSS"))
        .unwrap_or(0)
}

/// Waits until kflip's RSS stops moving (two readings 500 ms apart within
/// 64 KiB), at most 5 s; returns it.
fn settled(pid: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = rss(pid);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = rss(pid);
        if now.abs_diff(last) < 64 || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// One round's readings, KiB.
struct Round {
    n: usize,
    /// kflip's RSS before the connections opened, with them open and idle,
    /// and after they closed.
    before: u64,
    open: u64,
    after: u64,
    /// The broker's RSS before and with them open.
    broker_before: u64,
    broker_open: u64,
    /// Seconds to open all N.
    open_secs: f64,
    /// kflip's descriptors with them open, and after they closed.
    kflip_fds: usize,
    fds_after: usize,
    /// Connections checked after idling, and how many answered.
    checked: usize,
    answered: usize,
}

fn round(proxy: &str, tls: &Tls, kpid: &str, bpid: &str, n: usize, threads: usize) -> Round {
    let before = settled(kpid);
    let broker_before = rss(bpid);
    let start = Instant::now();
    let mut conns: Vec<Conn> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let count = n / threads + usize::from(t < n % threads);
                s.spawn(move || (0..count).map(|_| open(proxy, tls)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("opener"))
            .collect()
    });
    let open_secs = start.elapsed().as_secs_f64();
    let open = settled(kpid);
    let broker_open = rss(bpid);
    let kflip_fds = fds(kpid);
    let (mut checked, mut answered) = (0, 0);
    for c in conns.iter_mut().step_by(100) {
        checked += 1;
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| metadata(c))).is_ok();
        answered += usize::from(ok);
    }
    drop(conns);
    let after = settled(kpid);
    let fds_after = fds(kpid);
    Round {
        n,
        before,
        open,
        after,
        broker_before,
        broker_open,
        open_secs,
        kflip_fds,
        fds_after,
        checked,
        answered,
    }
}

fn main() {
    let wanted: Vec<usize> = std::env::var("KFLIP_BENCH_CONNS")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let threads = env_usize("KFLIP_BENCH_CONN_THREADS", 4).max(1);
    let limit = nofile();
    let cap = limit.saturating_sub(SPARE_FDS) / 2;
    if std::env::var_os("KFLIP_BROKER_JVM").is_none() {
        std::env::set_var("KFLIP_BROKER_JVM", "-Xms1g -Xmx1g -XX:+UseG1GC");
    }
    let tls_mode = std::env::var("KFLIP_BENCH_TLS").unwrap_or_default();
    let with_tls = tls_mode == "1" || tls_mode == "client";
    let (broker, cluster, proxy_tls, tls) = if with_tls {
        let Some(b) = Broker::start_secure("conns-tls", &Security::new(Protocol::Ssl)) else {
            return;
        };
        let ca = b.ca_pem().to_path_buf();
        let server = &b.certs().server;
        let cluster = if tls_mode == "client" {
            format!("bootstrap: \"{}\"", b.plaintext_addr())
        } else {
            format!(
                "bootstrap: \"{}\", tls: {{ ca_file: \"{}\" }}",
                b.bootstrap(),
                ca.display()
            )
        };
        let proxy_tls = format!(
            "  tls: {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
            server.cert.display(),
            server.key.display()
        );
        (b, cluster, proxy_tls, Some(tls_config(&ca)))
    } else {
        let b = Broker::start_with("conns", Storage::Memory);
        let cluster = format!("bootstrap: \"{}\"", b.addr());
        (b, cluster, String::new(), None)
    };
    let yaml = format!(
        "clusters:\n  dc1: {{ {cluster} }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n  max_connections: 100000\n{proxy_tls}"
    );
    let kflip = Kflip::start_with_log(&yaml, "warn");
    let proxy = kflip.addr();
    let kpid = kflip.pid().expect("kflip pid").to_string();
    let bpid = broker.pid().unwrap_or_else(|| "0".into());
    // A first connection warms what every connection shares (the version
    // table, the broker's metadata) so round one measures connections only.
    drop(open(&proxy, &tls));

    let mut rounds = Vec::new();
    for &want in &wanted {
        let n = want.min(cap);
        if n < want {
            eprintln!(
                "N = {want} capped to {n}: open files limit {limit}, kflip needs 2 per connection"
            );
        }
        let r = round(&proxy, &tls, &kpid, &bpid, n, threads);
        eprintln!(
            "N = {n}: kflip {} -> {} KiB ({:.1} KiB each), after close {} KiB; broker {} -> {} KiB",
            r.before,
            r.open,
            r.open.saturating_sub(r.before) as f64 / n as f64,
            r.after,
            r.broker_before,
            r.broker_open
        );
        rounds.push((want, r));
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## kflip memory per idle client connection ({}, open files limit {limit})\n",
        match tls_mode.as_str() {
            "1" => "TLS on both sides",
            "client" => "TLS from clients to kflip",
            _ => "plain",
        }
    );
    let _ = writeln!(
        out,
        "| N | kflip RSS before / open / after close, MiB | KiB per idle connection | kflip fds open / after close | broker RSS before / open, MiB | broker KiB per connection | open s | idle ones answering |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let mib = |k: u64| k as f64 / 1024.0;
    for (want, r) in &rounds {
        let n = if r.n < *want {
            format!("{} (of {want})", r.n)
        } else {
            r.n.to_string()
        };
        let _ = writeln!(
            out,
            "| {n} | {:.1} / {:.1} / {:.1} | **{:.1}** | {} / {} | {:.0} / {:.0} | {:.1} | {:.1} | {}/{} |",
            mib(r.before),
            mib(r.open),
            mib(r.after),
            r.open.saturating_sub(r.before) as f64 / r.n.max(1) as f64,
            r.kflip_fds,
            r.fds_after,
            mib(r.broker_before),
            mib(r.broker_open),
            r.broker_open.saturating_sub(r.broker_before) as f64 / r.n.max(1) as f64,
            r.open_secs,
            r.answered,
            r.checked
        );
    }
    println!("{out}");
}
