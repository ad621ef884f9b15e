//! End-to-end benchmark: the same workloads straight to a broker (Apache
//! Kafka 4.4 by default, tansu with `KFLIP_BROKER=tansu`) and through kflip,
//! alternated in one run so both see the same machine state.
//!
//! Run with `cargo bench --bench proxy`. It measures, for 1 KiB records:
//! - produce throughput (librdkafka, acks=1, linger.ms=5, 1 MB batches);
//! - consume throughput (librdkafka, assign from the beginning);
//! - produce latency p50/p99 (raw blocking client, one request in flight);
//! - kflip's idle RSS after startup and after the workloads.
//!
//! Each workload runs `rounds` times per path, direct and kflip alternating
//! (and swapping which goes first every round); the table shows medians.
//! Apache Kafka runs with its full JIT and a 1 GiB heap
//! (`KFLIP_BROKER_JVM` overrides). On tansu the broker uses its memory
//! engine (sqlite would hide kflip's cost) and is restarted before every
//! produce round, because that engine gets slower as it holds more data. Per-process CPU time (client, broker, kflip) is
//! read from /proc to show where the two cores went.
//!
//! It prints a table, the proxy/direct ratios and PASS/MISS against the
//! targets, and never fails on a miss: benchmarks report, they do not assert
//! timings. Knobs: `KFLIP_BENCH_RECORDS` (default 500000),
//! `KFLIP_BENCH_ROUNDS` (5), `KFLIP_BENCH_LATENCY_REQUESTS` (3000),
//! `KFLIP_BENCH_WARM_SECS` (20: produce through both paths first, so the
//! broker's JIT has compiled its hot paths before anything is measured) and
//! `KFLIP_BENCH_ONLY` (a comma-separated subset of produce,consume,latency,
//! handy when profiling one workload with `perf record -p <kflip pid>`).
//!
//! `KFLIP_BENCH_QUICK=1` is the CI regression guard (`scripts/test.sh`):
//! 100,000 records, 3 rounds, produce and consume only, then it exits 1 if
//! a kflip/direct ratio is under its floor (`benches/common/guard.rs`).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseProducer;
use rdkafka::producer::Producer;
use rdkafka::TopicPartitionList;

use common::{
    clk_tck, cpu_ticks, env_usize, guard, median, payload, resident_pages, send_all, status_kib,
    Counting,
};
use support::clients::{config, create_topic};
use support::raw::Raw;
use support::{Broker, Kflip, Storage};

/// Bytes per record value.
const RECORD: usize = 1024;

/// Targets from the performance issue; a miss is reported, not failed.
const TARGET_THROUGHPUT_RATIO: f64 = 0.95;
const TARGET_ADDED_P99_MS: f64 = 0.1;
const TARGET_IDLE_RSS_MIB: f64 = 10.0;

const LATENCY_WARMUP: usize = 200;

/// Which path a measurement took.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    Direct,
    Proxy,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Proxy => "kflip",
        }
    }
}

/// Round `r` runs direct first when even, kflip first when odd, so neither
/// side always gets the warmer (or more fragmented) broker.
fn order(round: usize) -> [Path; 2] {
    if round % 2 == 0 {
        [Path::Direct, Path::Proxy]
    } else {
        [Path::Proxy, Path::Direct]
    }
}

// ---------------------------------------------------------------- /proc ---

/// A process's TCP sockets: (listening, any other state).
fn tcp_sockets(pid: u32) -> (usize, usize) {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let l = std::fs::read_link(e.path()).ok()?;
                    let l = l.to_string_lossy();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let (mut listening, mut other) = (0, 0);
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && inodes.iter().any(|i| i == f[9]) {
                // st 0A is LISTEN.
                if f[3] == "0A" {
                    listening += 1;
                } else {
                    other += 1;
                }
            }
        }
    }
    (listening, other)
}

/// CPU seconds used by the client (this process), the broker and kflip.
#[derive(Clone, Copy, Default, Debug)]
struct Cpu {
    client: f64,
    broker: f64,
    kflip: f64,
}

struct Procs {
    kflip: String,
    /// The broker's pid (tansu is restarted between rounds: looked up again).
    broker: String,
    tck: f64,
}

impl Procs {
    fn sample(&self) -> Cpu {
        // Looked up each time: the broker is restarted between rounds.
        let broker = self.broker.clone();
        Cpu {
            client: cpu_ticks("self") as f64 / self.tck,
            broker: cpu_ticks(&broker) as f64 / self.tck,
            kflip: cpu_ticks(&self.kflip) as f64 / self.tck,
        }
    }

    fn since(&self, before: Cpu) -> Cpu {
        let now = self.sample();
        Cpu {
            client: now.client - before.client,
            broker: now.broker - before.broker,
            kflip: now.kflip - before.kflip,
        }
    }
}

/// How many of `hot-code.txt`'s exact names the kflip binary under test
/// defines: the idle RSS depends on the list matching the build (DEVELOPERS.md,
/// "Release layout"), and an edit to the crate renames some functions. `None`
/// for a debug build, which does not use the list, or without `nm`.
fn hot_code_coverage() -> Option<String> {
    if cfg!(debug_assertions) {
        return None;
    }
    let list =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/hot-code.txt")).ok()?;
    let nm = std::process::Command::new("nm")
        .args(["--defined-only", env!("CARGO_BIN_EXE_kflip")])
        .output()
        .ok()?;
    let defined: std::collections::HashSet<&str> = std::str::from_utf8(&nm.stdout)
        .ok()?
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let exact: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('*'))
        .collect();
    let found = exact.iter().filter(|n| defined.contains(*n)).count();
    Some(format!(
        "hot-code.txt: {found} of its {} exact names are in this kflip build{}",
        exact.len(),
        if found * 10 < exact.len() * 9 {
            " (stale: the idle RSS is higher; run scripts/hot-code.sh)"
        } else {
            ""
        }
    ))
}

// ------------------------------------------------------------ workloads ---

/// One throughput measurement.
#[derive(Clone, Copy, Debug)]
struct Throughput {
    secs: f64,
    records: usize,
    cpu: Cpu,
}

impl Throughput {
    fn mb_s(&self) -> f64 {
        (self.records * RECORD) as f64 / self.secs / 1e6
    }
    fn rec_s(&self) -> f64 {
        self.records as f64 / self.secs
    }
    /// CPU seconds per GB and share of a core, per process, for the
    /// progress lines: a slow round shows whether the broker worked more
    /// or waited more.
    fn cpu_note(&self) -> String {
        let gb = (self.records * RECORD) as f64 / 1e9;
        let one =
            |name: &str, s: f64| format!("{name} {:.2} s/GB {:.0}%", s / gb, 100.0 * s / self.secs);
        format!(
            "{}, {}, {}",
            one("client", self.cpu.client),
            one("broker", self.cpu.broker),
            one("kflip", self.cpu.kflip)
        )
    }
}

fn producer(bootstrap: &str) -> BaseProducer<Counting> {
    config(bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Counting::default())
        .expect("producer")
}

/// Produces `n` records; the clock runs from the first send to the end of
/// the flush (every record acked). Connections are set up beforehand.
fn produce(bootstrap: &str, topic: &str, n: usize, procs: &Procs) -> Throughput {
    let value = payload();
    let p = producer(bootstrap);
    send_all(&p, topic, &value, 100);
    let ctx = p.context();
    let before_ok = ctx.ok.load(Ordering::Relaxed);
    let cpu = procs.sample();
    let start = Instant::now();
    send_all(&p, topic, &value, n);
    let secs = start.elapsed().as_secs_f64();
    let cpu = procs.since(cpu);
    let ok = ctx.ok.load(Ordering::Relaxed) - before_ok;
    let failed = ctx.failed.load(Ordering::Relaxed);
    assert_eq!(
        (ok, failed),
        (n as u64, 0),
        "every record of {topic} via {bootstrap} must be acked"
    );
    Throughput {
        secs,
        records: n,
        cpu,
    }
}

/// Reads the first `n` records of partition 0 of `topic`; the clock runs
/// from `assign` to the `n`th record.
fn consume(bootstrap: &str, topic: &str, n: usize, procs: &Procs) -> Throughput {
    let c: BaseConsumer = config(bootstrap)
        .set("group.id", "kflip-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        // tansu 0.6 holds every Fetch for the full max wait even when data
        // is ready; a long wait would measure that sleep, not the data path.
        .set("fetch.wait.max.ms", "1")
        .create()
        .expect("consumer");
    c.fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let cpu = procs.sample();
    let start = Instant::now();
    c.assign(&tpl).expect("assign");
    let mut got = 0usize;
    let mut bytes = 0usize;
    while got < n {
        assert!(
            Instant::now() < deadline,
            "consumed only {got} of {n} from {topic} via {bootstrap}"
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            bytes += m.payload().map_or(0, |p| p.len());
            got += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = procs.since(cpu);
    assert_eq!(bytes, n * RECORD, "record sizes");
    Throughput {
        secs,
        records: n,
        cpu,
    }
}

/// A whole Produce request frame (length prefix included) carrying one
/// 1 KiB record; the correlation id sits at bytes 8..12.
fn produce_frame(topic: &str, version: i16) -> Vec<u8> {
    let batch = support::raw::one_record_batch(None, Some(Bytes::from(payload())));
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(0)
        .with_client_id(Some(StrBytes::from_static_str("kflip-bench")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, ProduceRequest::header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let mut framed = (buf.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&buf);
    framed
}

/// Latency percentiles of one round, in milliseconds.
#[derive(Clone, Copy, Debug)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    cpu: Cpu,
}

/// `requests` sequential single-record produce requests, one in flight,
/// after a warm-up; each timed from the write to the whole response read.
fn latency(addr: &str, topic: &str, version: i16, requests: usize, procs: &Procs) -> Latency {
    let mut c = Raw::connect(addr);
    let mut frame = produce_frame(topic, version);
    let mut corr = 0i32;
    let mut one = |c: &mut Raw, frame: &mut Vec<u8>, check: bool| {
        corr += 1;
        frame[8..12].copy_from_slice(&corr.to_be_bytes());
        let t = Instant::now();
        c.send_bytes(frame).expect("send produce");
        let resp = c.recv().expect("produce response");
        let dt = t.elapsed();
        let mut b = Bytes::from(resp);
        let h = ResponseHeader::decode(&mut b, ProduceResponse::header_version(version)).unwrap();
        assert_eq!(h.correlation_id, corr, "correlation id");
        if check {
            let r = ProduceResponse::decode(&mut b, version).unwrap();
            let code = r.responses[0].partition_responses[0].error_code;
            assert_eq!(code, 0, "produce error via {addr}");
        }
        dt
    };
    for i in 0..LATENCY_WARMUP {
        one(&mut c, &mut frame, i == 0);
    }
    let cpu = procs.sample();
    let mut samples: Vec<Duration> = (0..requests)
        .map(|_| one(&mut c, &mut frame, false))
        .collect();
    let cpu = procs.since(cpu);
    samples.sort();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    Latency {
        p50: pct(0.50),
        p99: pct(0.99),
        max: samples.last().unwrap().as_secs_f64() * 1e3,
        cpu,
    }
}

/// The median over the rounds of one path.
fn med<T>(v: &[(Path, T)], p: Path, f: impl Fn(&T) -> f64) -> f64 {
    median(
        v.iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, t)| f(t))
            .collect(),
    )
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// One row of the results table.
fn row(out: &mut String, metric: &str, direct: String, kflip: String, ratio: f64, target: &str) {
    let ratio = if ratio.is_finite() {
        format!("{ratio:.3}")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "| {metric:<28} | {direct:>10} | {kflip:>10} | {ratio:>12} | {target:<22} |"
    );
}

fn main() {
    // 500k records (~0.5 GB) keep each measurement around a second, long
    // enough that scheduling noise on 2 shared cores averages out.
    // The CI guard (KFLIP_BENCH_QUICK=1): 100k records, 3 rounds,
    // throughput only, then the ratios against loose floors.
    let quick = guard::quick();
    let n = env_usize("KFLIP_BENCH_RECORDS", if quick { 100_000 } else { 500_000 }).max(1);
    let rounds = env_usize("KFLIP_BENCH_ROUNDS", if quick { 3 } else { 5 }).max(1);
    let lat_requests = env_usize("KFLIP_BENCH_LATENCY_REQUESTS", 3000).max(1);
    // Comma-separated subset of produce,consume,latency (for profiling).
    let only = std::env::var("KFLIP_BENCH_ONLY")
        .unwrap_or_else(|_| if quick { "produce,consume" } else { "" }.to_string());
    let want = |phase: &str| only.is_empty() || only.split(',').any(|p| p.trim() == phase);
    let started = Instant::now();

    eprintln!("kflip proxy bench: {n} x {RECORD} B records, {rounds} rounds per path");
    if std::env::var_os("KFLIP_BROKER_JVM").is_none() {
        std::env::set_var("KFLIP_BROKER_JVM", "-Xms1g -Xmx1g -XX:+UseG1GC");
    }
    let mut broker = Broker::start_with("bench", Storage::Memory);
    let direct = broker.addr();
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{direct}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n"
    );
    let kflip = Kflip::start_with_log(&yaml, "warn");
    let proxy = kflip.addr();
    let kpid = kflip.pid().expect("kflip pid");
    // Let startup discovery finish before reading the idle RSS.
    std::thread::sleep(Duration::from_millis(500));
    let rss_start = status_kib(kpid, "VmRSS").unwrap_or(0);
    let mut procs = Procs {
        kflip: kpid.to_string(),
        broker: broker.pid().unwrap_or_else(|| "0".into()),
        tck: clk_tck(),
    };
    let addr = |p: Path| match p {
        Path::Direct => direct.as_str(),
        Path::Proxy => proxy.as_str(),
    };

    // --- warm-up: the broker's JIT compiles its produce path under load ---
    // Without it the first rounds measure the compiler (direct rose from
    // 210 to 400 MB/s over three rounds, and C2 took a fifth of the
    // machine in some rounds and not in others).
    // tansu has no JIT to warm.
    let jit = broker.kind() == support::Kind::Kafka;
    let warm = env_usize("KFLIP_BENCH_WARM_SECS", if quick || !jit { 0 } else { 20 });
    if warm > 0 && (want("produce") || want("consume")) {
        create_topic(&direct, "bench-warm", 1);
        let until = Instant::now() + Duration::from_secs(warm as u64);
        let mut sent = 0;
        for round in 0.. {
            if Instant::now() >= until {
                break;
            }
            for path in order(round) {
                produce(addr(path), "bench-warm", n / 5, &procs);
                sent += n / 5;
            }
        }
        eprintln!("warm-up: {sent} records in {warm} s, both paths");
    }

    // --- produce throughput ---
    let mut prod: Vec<(Path, Throughput)> = Vec::new();
    if want("produce") {
        for round in 0..rounds {
            for path in order(round) {
                // A fresh topic each time, so no round appends to a longer
                // log than another.
                // tansu's memory engine slows down as it holds more data,
                // so every round starts on a fresh broker (same address;
                // kflip reconnects like any client).
                if broker.kind() == support::Kind::Tansu {
                    broker.restart();
                    procs.broker = broker.pid().unwrap_or_else(|| "0".into());
                }
                let topic = format!("bench-produce-{round}-{}", path.name());
                create_topic(&direct, &topic, 1);
                let t = produce(addr(path), &topic, n, &procs);
                eprintln!(
                    "produce round {round} {:>6}: {:7.1} MB/s {:9.0} rec/s, {}",
                    path.name(),
                    t.mb_s(),
                    t.rec_s(),
                    t.cpu_note()
                );
                prod.push((path, t));
            }
        }
    }

    // --- consume throughput: one topic filled once, read by every round ---
    let mut cons: Vec<(Path, Throughput)> = Vec::new();
    if want("consume") {
        create_topic(&direct, "bench-consume", 1);
        {
            let p = producer(&direct);
            send_all(&p, "bench-consume", &payload(), n);
        }
        for round in 0..rounds {
            for path in order(round) {
                let t = consume(addr(path), "bench-consume", n, &procs);
                eprintln!(
                    "consume round {round} {:>6}: {:7.1} MB/s {:9.0} rec/s, {}",
                    path.name(),
                    t.mb_s(),
                    t.rec_s(),
                    t.cpu_note()
                );
                cons.push((path, t));
            }
        }
    }

    // --- produce latency ---
    let mut lat: Vec<(Path, Latency)> = Vec::new();
    let mut version = 0;
    if want("latency") {
        create_topic(&direct, "bench-latency", 1);
        let max = |a: &str| {
            Raw::connect(a)
                .versions()
                .into_iter()
                .find(|(k, _)| *k == ApiKey::Produce)
                .map(|(_, r)| r.max)
                .expect("Produce advertised")
        };
        // v13 names topics by id; this client names them.
        version = max(&direct).min(max(&proxy)).min(12);
        for round in 0..rounds {
            for path in order(round) {
                let l = latency(addr(path), "bench-latency", version, lat_requests, &procs);
                eprintln!(
                    "latency round {round} {:>6}: p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
                    path.name(),
                    l.p50,
                    l.p99,
                    l.max
                );
                lat.push((path, l));
            }
        }
    }

    // --- idle RSS after the run, with every client connection closed ---
    // kflip gives its free heap back after a second without traffic
    // (`kflip::memory`): 3 s is idle.
    std::thread::sleep(Duration::from_secs(3));
    let rss_end = status_kib(kpid, "VmRSS").unwrap_or(0);
    // Heap and stacks against the mapped binary and libraries.
    let rss_anon = status_kib(kpid, "RssAnon").unwrap_or(0);
    let rss_file = status_kib(kpid, "RssFile").unwrap_or(0);
    let hwm = status_kib(kpid, "VmHWM").unwrap_or(0);
    // `KFLIP_BENCH_SMAPS=<file>` keeps kflip's memory map at this point,
    // to see which mappings the idle RSS is made of.
    if let Ok(to) = std::env::var("KFLIP_BENCH_SMAPS") {
        if let Err(e) = std::fs::copy(format!("/proc/{kpid}/smaps"), &to) {
            eprintln!("cannot keep kflip's smaps in {to}: {e}");
        }
        let pages = format!("{to}.pages");
        if let Err(e) = resident_pages(kpid, &pages) {
            eprintln!("cannot keep kflip's resident pages in {pages}: {e}");
        }
    }
    let (listening, connected) = tcp_sockets(kpid);

    // --- report ---
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## kflip proxy benchmark: {n} x {RECORD} B records, median of {rounds} rounds, {} cores\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        out,
        "| {:<28} | {:>10} | {:>10} | {:>12} | {:<22} |",
        "metric", "direct", "kflip", "kflip/direct", "target"
    );
    let _ = writeln!(
        out,
        "|{}|{}:|{}:|{}:|{}|",
        "-".repeat(30),
        "-".repeat(11),
        "-".repeat(11),
        "-".repeat(13),
        "-".repeat(24)
    );
    for (name, v) in [("produce", &prod), ("consume", &cons)] {
        if v.is_empty() {
            continue;
        }
        let (d, k) = (
            med(v, Path::Direct, Throughput::mb_s),
            med(v, Path::Proxy, Throughput::mb_s),
        );
        let r = k / d;
        row(
            &mut out,
            &format!("{name} MB/s"),
            format!("{d:.1}"),
            format!("{k:.1}"),
            r,
            &format!(
                ">= {TARGET_THROUGHPUT_RATIO}x: {}",
                verdict(r >= TARGET_THROUGHPUT_RATIO)
            ),
        );
        let (d, k) = (
            med(v, Path::Direct, Throughput::rec_s),
            med(v, Path::Proxy, Throughput::rec_s),
        );
        row(
            &mut out,
            &format!("{name} records/s"),
            format!("{d:.0}"),
            format!("{k:.0}"),
            k / d,
            "",
        );
    }
    if !lat.is_empty() {
        let (d50, k50) = (
            med(&lat, Path::Direct, |l| l.p50),
            med(&lat, Path::Proxy, |l| l.p50),
        );
        let (d99, k99) = (
            med(&lat, Path::Direct, |l| l.p99),
            med(&lat, Path::Proxy, |l| l.p99),
        );
        row(
            &mut out,
            "produce latency p50 ms",
            format!("{d50:.3}"),
            format!("{k50:.3}"),
            k50 / d50,
            "",
        );
        row(
            &mut out,
            "produce latency p99 ms",
            format!("{d99:.3}"),
            format!("{k99:.3}"),
            k99 / d99,
            "",
        );
        let added = k99 - d99;
        row(
            &mut out,
            "added p99 ms (kflip-direct)",
            String::new(),
            format!("{added:.3}"),
            f64::NAN,
            &format!(
                "<= {TARGET_ADDED_P99_MS} ms: {}",
                verdict(added <= TARGET_ADDED_P99_MS)
            ),
        );
    }
    let mib = |k: u64| k as f64 / 1024.0;
    for (name, kib) in [
        ("kflip idle RSS MiB, start", rss_start),
        ("kflip idle RSS MiB, end", rss_end),
    ] {
        row(
            &mut out,
            name,
            String::new(),
            format!("{:.1}", mib(kib)),
            f64::NAN,
            &format!(
                "<= {TARGET_IDLE_RSS_MIB} MiB: {}",
                verdict(mib(kib) <= TARGET_IDLE_RSS_MIB)
            ),
        );
    }
    row(
        &mut out,
        "kflip idle RSS MiB, end: anon / file",
        String::new(),
        format!("{:.1} / {:.1}", mib(rss_anon), mib(rss_file)),
        f64::NAN,
        "",
    );
    row(
        &mut out,
        "kflip peak RSS MiB (VmHWM)",
        String::new(),
        format!("{:.1}", mib(hwm)),
        f64::NAN,
        "",
    );

    // Where the CPU went: CPU seconds per GB of records moved, and the
    // share of one core over the measured interval (medians over rounds).
    let _ = writeln!(
        out,
        "\nCPU by process (median; cpu-s per GB of records, and % of one core):\n"
    );
    let _ = writeln!(
        out,
        "| {:<16} | {:>16} | {:>16} | {:>16} |",
        "phase", "client", "broker", "kflip"
    );
    let _ = writeln!(
        out,
        "|{}|{}:|{}:|{}:|",
        "-".repeat(18),
        "-".repeat(17),
        "-".repeat(17),
        "-".repeat(17)
    );
    let gb = (n * RECORD) as f64 / 1e9;
    for (name, v) in [("produce", &prod), ("consume", &cons)] {
        if v.is_empty() {
            continue;
        }
        for p in [Path::Direct, Path::Proxy] {
            let cell = |f: fn(&Cpu) -> f64| {
                let per_gb = med(v, p, |t| f(&t.cpu) / gb);
                let share = med(v, p, |t| 100.0 * f(&t.cpu) / t.secs);
                format!("{per_gb:.2} s/GB {share:3.0}%")
            };
            let _ = writeln!(
                out,
                "| {:<16} | {:>16} | {:>16} | {:>16} |",
                format!("{name} {}", p.name()),
                cell(|c| c.client),
                cell(|c| c.broker),
                cell(|c| c.kflip)
            );
        }
    }
    if !lat.is_empty() {
        for p in [Path::Direct, Path::Proxy] {
            let us = |f: fn(&Cpu) -> f64| {
                let v = med(&lat, p, |l| 1e6 * f(&l.cpu) / lat_requests as f64);
                format!("{v:.0} us/request")
            };
            let _ = writeln!(
                out,
                "| {:<16} | {:>16} | {:>16} | {:>16} |",
                format!("latency {}", p.name()),
                us(|c| c.client),
                us(|c| c.broker),
                us(|c| c.kflip)
            );
        }
        let _ = writeln!(
            out,
            "\nproduce latency: {lat_requests} sequential 1-record requests per round \
             (Produce v{version}, acks=1, one in flight) after {LATENCY_WARMUP} warm-up"
        );
    }
    let _ = writeln!(
        out,
        "kflip TCP sockets at the end: {listening} listening, {connected} connections"
    );
    if let Some(line) = hot_code_coverage() {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "total bench time: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("{out}");
    drop(kflip);
    drop(broker);
    if quick {
        let mut g = guard::Guard::default();
        for (name, v, release, debug) in
            [("produce", &prod, 0.5, 0.3), ("consume", &cons, 0.5, 0.3)]
        {
            let (d, k) = (
                med(v, Path::Direct, Throughput::mb_s),
                med(v, Path::Proxy, Throughput::mb_s),
            );
            g.check(
                &format!("proxy {name}"),
                k / d,
                guard::floor(&format!("proxy_{name}"), release, debug),
                &format!("kflip {k:.1} MB/s, direct {d:.1} MB/s, median of {rounds}"),
            );
        }
        g.finish("proxy");
    }
}
