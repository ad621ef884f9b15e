//! End-to-end replication benchmark: `kflip replicate` between two brokers
//! (Apache Kafka 4.4 by default, tansu with `KFLIP_BROKER=tansu`), against
//! the target broker's own produce throughput.
//!
//! Run with `cargo bench --bench replication`. For 1 KiB records it measures:
//! - **baseline**: an rdkafka producer writing straight to the target broker
//!   the same records as the copies (1 KiB, and a `kflip-origin` header)
//!   with the engine's producer settings (acks=all, idempotence on, linger
//!   0 ms, 1 MiB batches, 5 in flight);
//! - **replication throughput**: the same number of records pre-filled on
//!   the source, then `kflip replicate` started; the clock runs from the
//!   spawn of the process until the engine's checkpoint on the target (read
//!   from the state topic; `checkpoint_interval: 50ms`) says every record is
//!   acknowledged there (acks=all). A few flow tunings (`linger`,
//!   `batch_bytes`, `fetch_partition_bytes`) are tried; each run is
//!   afterwards checked by consuming the whole target topic and counting
//!   (never by watermarks: tansu's memory engine answers ListOffsets wrongly);
//! - **source read ceiling**: a consumer with the engine's source-consumer
//!   settings reading the pre-filled source alone, with the engine's
//!   fetch.wait.max.ms (100) and with 1 ms: what the engine's reading side
//!   can get from this broker;
//! - **replication latency** p50/p99 under a steady produce rate on the
//!   source (acks=all, idempotent, linger 5 ms): the send time travels in
//!   the value, and consumers on the source (the direct path, for
//!   reference) and on the target compute each record's end-to-end latency.
//!
//! Every measurement starts on empty brokers: a freshly formatted Apache
//! Kafka cluster (full JIT, 1 GiB heap; `KFLIP_BROKER_JVM` overrides), or a
//! restarted tansu on its memory engine (sqlite tops out near 60 MB/s; the
//! memory engine slows down as it fills and empties on a restart). Per-process CPU time (client, each broker, kflip) comes from
//! /proc. The bench prints a table with PASS/MISS against the 0.8x target and
//! never fails on a miss.
//!
//! Knobs: `KFLIP_BENCH_RECORDS` (default 200000), `KFLIP_BENCH_PARTITIONS`
//! (1), `KFLIP_BENCH_ROUNDS` (5; baseline and default tuning),
//! `KFLIP_BENCH_TUNINGS` (`linger/batch_bytes/fetch_partition_bytes`
//! triples separated by `;`, e.g. `5ms/1048576/1048576;20ms/4194304/16777216`),
//! `KFLIP_BENCH_RATE` (2000 records/s), `KFLIP_BENCH_LATENCY_SECS` (10) and
//! `KFLIP_BENCH_ONLY` (a comma-separated subset of baseline,replicate,latency)
//! and `KFLIP_BENCH_LOG` (kflip's log level; each replicate run then prints
//! its log).
//!
//! `KFLIP_BENCH_QUICK=1` is the CI regression guard (`scripts/test.sh`):
//! 100,000 records, 2 rounds of baseline and default-tuning replication,
//! then it exits 1 if the ratio is under its floor, or if a run did not
//! copy every record exactly once in order (`benches/common/guard.rs`).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::{clk_tck, cpu_ticks, env_usize, guard, median, payload};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kflip::offsets::OffsetMap;
use kflip::replication::flow::resume_point;
use kflip::replication::provenance;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use support::clients::{config, create_topic};
use support::{Broker, Kflip, Storage};

/// Bytes per record value.
const RECORD: usize = 1024;
/// Target from the issue: replication >= 0.9x the target's raw produce rate.
const TARGET_RATIO: f64 = 0.9;
/// The replicated topic, its name on both clusters.
const TOPIC: &str = "bench";
/// The engine's state topic (the default).
const STATE_TOPIC: &str = "_kflip_state";
/// Flow id of `src -> dst`.
const FLOW: &str = "src->dst";

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

// ---------------------------------------------------------------- /proc ---

/// CPU seconds of the client (this process), both brokers and kflip.
#[derive(Clone, Copy, Default, Debug)]
struct Cpu {
    client: f64,
    source: f64,
    target: f64,
    kflip: f64,
}

/// The processes to sample.
struct Procs {
    source: String,
    target: String,
    kflip: String,
    tck: f64,
}

impl Procs {
    fn new(source: &Broker, target: &Broker, kflip: Option<&Kflip>) -> Procs {
        Procs {
            source: source.pid().unwrap_or_else(|| "0".into()),
            target: target.pid().unwrap_or_else(|| "0".into()),
            kflip: kflip
                .and_then(|k| k.pid())
                .map_or("0".into(), |p| p.to_string()),
            tck: clk_tck(),
        }
    }

    fn sample(&self) -> Cpu {
        Cpu {
            client: cpu_ticks("self") as f64 / self.tck,
            source: cpu_ticks(&self.source) as f64 / self.tck,
            target: cpu_ticks(&self.target) as f64 / self.tck,
            kflip: cpu_ticks(&self.kflip) as f64 / self.tck,
        }
    }

    fn since(&self, before: Cpu) -> Cpu {
        let now = self.sample();
        Cpu {
            client: now.client - before.client,
            source: now.source - before.source,
            target: now.target - before.target,
            kflip: now.kflip - before.kflip,
        }
    }
}

// ------------------------------------------------------------- producing ---

/// Counts deliveries so every record is known to be acked.
#[derive(Default)]
struct Counting {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// A producer with the engine's settings towards the target (see
/// `src/replication/flow.rs`, with the flow defaults).
fn engine_like_producer(bootstrap: &str) -> BaseProducer<Counting> {
    config(bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "0")
        .set("batch.size", "1048576")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "100000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Counting::default())
        .expect("producer")
}

/// Sends `n` records round-robin over `partitions` and waits for every ack.
fn send_all(p: &BaseProducer<Counting>, topic: &str, partitions: i32, value: &[u8], n: usize) {
    send_records(p, topic, partitions, value, n, false)
}

/// The same, each record with a header as large as the one a copy carries
/// (`with_origin`): what the baseline writes, the same records as the
/// engine's copies.
fn send_records(
    p: &BaseProducer<Counting>,
    topic: &str,
    partitions: i32,
    value: &[u8],
    n: usize,
    with_origin: bool,
) {
    let started = now_us() / 1000;
    for i in 0..n {
        let partition = i as i32 % partitions;
        let origin = format!("AbCdEfGhIjKlMnOpQrStUv/{topic}/{partition}/{i}/{started}");
        let mut rec = BaseRecord::<(), [u8]>::to(topic)
            .payload(value)
            .partition(partition);
        if with_origin {
            rec = rec.headers(rdkafka::message::OwnedHeaders::new().insert(
                rdkafka::message::Header {
                    key: provenance::HEADER,
                    value: Some(origin.as_bytes()),
                },
            ));
        }
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    p.poll(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("produce to {topic}: {e}"),
            }
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
}

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
}

/// An empty broker for the next measurement: tansu's memory engine empties
/// on a restart (and slows down as it fills); Apache Kafka keeps its log
/// over a restart, so it gets a freshly formatted cluster instead.
fn fresh(b: &mut Broker, name: &str) {
    if b.kind() == support::Kind::Kafka {
        *b = Broker::start_with(name, Storage::Memory);
    } else {
        b.restart();
    }
}

/// Baseline: `n` records straight to the target broker with the engine's
/// producer settings; from the first send to the end of the flush.
fn baseline(target: &Broker, source: &Broker, n: usize, partitions: i32) -> Throughput {
    create_topic(&target.addr(), TOPIC, partitions);
    let value = payload();
    let p = engine_like_producer(&target.addr());
    send_all(&p, TOPIC, partitions, &value, 100);
    let ctx = p.context();
    let before = ctx.ok.load(Ordering::Relaxed);
    let procs = Procs::new(source, target, None);
    let cpu = procs.sample();
    let start = Instant::now();
    send_records(&p, TOPIC, partitions, &value, n, true);
    let secs = start.elapsed().as_secs_f64();
    let cpu = procs.since(cpu);
    let ok = ctx.ok.load(Ordering::Relaxed) - before;
    assert_eq!(
        (ok, ctx.failed.load(Ordering::Relaxed)),
        (n as u64, 0),
        "every baseline record must be acked"
    );
    Throughput {
        secs,
        records: n,
        cpu,
    }
}

// ----------------------------------------------------------- replicating ---

/// Flow tuning: the keys the bench varies.
#[derive(Clone, Debug)]
struct Tuning {
    linger: String,
    batch_bytes: u64,
    fetch_partition_bytes: u64,
}

impl Tuning {
    fn parse(s: &str) -> Option<Tuning> {
        let mut it = s.trim().split('/');
        let t = Tuning {
            linger: it.next()?.trim().to_string(),
            batch_bytes: it.next()?.trim().parse().ok()?,
            fetch_partition_bytes: it.next()?.trim().parse().ok()?,
        };
        it.next().is_none().then_some(t)
    }

    fn label(&self) -> String {
        let size = |b: u64| {
            if b >= 1 << 20 && b % (1 << 20) == 0 {
                format!("{}M", b >> 20)
            } else if b % 1024 == 0 {
                format!("{}K", b >> 10)
            } else {
                b.to_string()
            }
        };
        format!(
            "linger {} batch {} fetch {}",
            self.linger,
            size(self.batch_bytes),
            size(self.fetch_partition_bytes)
        )
    }

    fn yaml(&self) -> String {
        format!(
            "linger: {}, batch_bytes: {}, fetch_partition_bytes: {}",
            self.linger, self.batch_bytes, self.fetch_partition_bytes
        )
    }
}

/// The flow under test. Checkpoints every 50 ms time the copy (see
/// [`Checkpoints`]); everything else is the flow default unless tuned.
fn flow_yaml(source: &Broker, target: &Broker, tuning: &Tuning) -> String {
    format!(
        "clusters:\n  src: {{ bootstrap: \"{}\" }}\n  dst: {{ bootstrap: \"{}\" }}\n\
         replication:\n  flows:\n    - {{ source: src, target: dst, topics: [\"{TOPIC}\"], \
         checkpoint_interval: 50ms, fetch_wait: {}, {} }}\n",
        source.addr(),
        target.addr(),
        fetch_wait(),
        tuning.yaml()
    )
}

/// kflip's log level: `KFLIP_BENCH_LOG` (then each replicate run prints
/// its log), default warn.
fn log_level() -> String {
    std::env::var("KFLIP_BENCH_LOG").unwrap_or_else(|_| "warn".to_string())
}

/// The flow's `fetch_wait`: `KFLIP_BENCH_FETCH_WAIT`, default 5ms. tansu
/// holds every fetch for the whole wait even when data is ready, so the
/// engine's default (100ms) would cap reads near 50 MB/s here.
fn fetch_wait() -> String {
    std::env::var("KFLIP_BENCH_FETCH_WAIT").unwrap_or_else(|_| "5ms".to_string())
}

/// Tails the engine's state topic on the target and reports, per source
/// partition, how many records the latest checkpoint says are copied and
/// acknowledged (acks=all) on the target.
struct Checkpoints {
    c: BaseConsumer,
    assigned: bool,
    copied: BTreeMap<i32, i64>,
}

impl Checkpoints {
    fn new(target: &str) -> Checkpoints {
        let c: BaseConsumer = config(target)
            .set("group.id", "kflip-bench-state")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .create()
            .expect("state consumer");
        Checkpoints {
            c,
            assigned: false,
            copied: BTreeMap::new(),
        }
    }

    /// Reads what arrived; returns the total copied so far.
    fn poll(&mut self) -> i64 {
        if !self.assigned {
            // The engine creates the state topic at startup.
            let exists = self
                .c
                .fetch_metadata(Some(STATE_TOPIC), Duration::from_secs(2))
                .ok()
                .and_then(|md| {
                    md.topics()
                        .first()
                        .map(|t| t.error().is_none() && !t.partitions().is_empty())
                })
                .unwrap_or(false);
            if !exists {
                std::thread::sleep(Duration::from_millis(20));
                return 0;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(STATE_TOPIC, 0, Offset::Beginning)
                .unwrap();
            self.c.assign(&tpl).expect("assign state topic");
            self.assigned = true;
        }
        while let Some(m) = self.c.poll(Duration::from_millis(10)) {
            let Ok(m) = m else { continue };
            let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
            let Some(sp) = kflip::replication::state::parse_checkpoint_key(FLOW, &key) else {
                continue;
            };
            if let Some(Ok(map)) = m.payload().map(OffsetMap::decode) {
                self.copied.insert(sp.partition, resume_point(&map));
            }
        }
        self.copied.values().sum()
    }
}

/// What consuming the target topic found.
#[derive(Clone, Copy, Debug, Default)]
struct Verify {
    /// Records read.
    records: usize,
    /// Value bytes read.
    bytes: usize,
    /// Copies of a source record already seen (by the provenance header).
    duplicates: usize,
    /// Copies whose source offset is below an earlier copy's in the same
    /// partition: the target's order differs from the source's.
    out_of_order: usize,
}

/// Reads `topic` on `bootstrap` from the beginning until `n` records came
/// or nothing came for 10 s, checking each copy's provenance header.
fn count_by_consuming(bootstrap: &str, topic: &str, partitions: i32, n: usize) -> Verify {
    // `config` keeps max.partition.fetch.bytes at 64 KiB: tansu builds large
    // responses of records with headers (every copy has one) very slowly.
    let c: BaseConsumer = config(bootstrap)
        .set("group.id", "kflip-bench-count")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "1")
        .set("fetch.max.bytes", "52428800")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    let mut v = Verify::default();
    let mut seen: BTreeMap<i32, (i64, std::collections::HashSet<i64>)> = BTreeMap::new();
    let mut check = |v: &mut Verify, m: &rdkafka::message::BorrowedMessage<'_>| {
        v.records += 1;
        v.bytes += m.payload().map_or(0, |p| p.len());
        let origin = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == provenance::HEADER)
                .and_then(|h| h.value)
                .and_then(provenance::Origin::parse)
        });
        if let Some(o) = origin {
            let (last, offsets) = seen.entry(o.partition).or_insert((-1, Default::default()));
            if !offsets.insert(o.offset) {
                v.duplicates += 1;
            } else if o.offset < *last {
                v.out_of_order += 1;
            }
            *last = (*last).max(o.offset);
        }
    };
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(10) {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                check(&mut v, &m);
                last = Instant::now();
                if v.records >= n {
                    // Anything beyond n would be a duplicate: give it a moment.
                    let extra = Instant::now();
                    while extra.elapsed() < Duration::from_millis(300) {
                        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                            check(&mut v, &m);
                        }
                    }
                    break;
                }
            }
            Some(Err(e)) => eprintln!("  count {topic}: {e}"),
            None => {}
        }
    }
    // Which source offsets are missing, when some are: the first few runs.
    for (p, (last, offsets)) in &seen {
        let mut missing = Vec::new();
        let mut at = 0;
        while at <= *last && missing.len() < 5 {
            if !offsets.contains(&at) {
                let from = at;
                while at <= *last && !offsets.contains(&at) {
                    at += 1;
                }
                missing.push(format!("{from}..{at}"));
            }
            at += 1;
        }
        if !missing.is_empty() {
            eprintln!(
                "  {topic}[{p}]: source offsets missing: {}",
                missing.join(", ")
            );
        }
    }
    v
}

/// Reads the `n` records of the source topic with the engine's source
/// consumer settings (see `src/replication/flow.rs`) and the given fetch
/// wait, from `assign` to the last record: what the engine's reading side
/// can get from this broker, with nothing else running.
fn read_ceiling(
    source: &Broker,
    target: &Broker,
    n: usize,
    partitions: i32,
    wait_ms: u32,
) -> Throughput {
    let c: BaseConsumer = config(&source.addr())
        .set("group.id", "kflip-bench-read")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", wait_ms.to_string())
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "1048576")
        .set("queued.max.messages.kbytes", "262144")
        .create()
        .expect("consumer");
    c.fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    let procs = Procs::new(source, target, None);
    let cpu = procs.sample();
    let start = Instant::now();
    c.assign(&tpl).expect("assign");
    let mut got = 0;
    while got < n && start.elapsed() < Duration::from_secs(120) {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
            got += 1;
        }
    }
    Throughput {
        secs: start.elapsed().as_secs_f64(),
        records: got,
        cpu: procs.since(cpu),
    }
}

/// One replication run.
#[derive(Clone, Debug)]
struct Replicated {
    tuning: Tuning,
    t: Throughput,
    /// From spawn to the first checkpoint with copies.
    startup: f64,
    /// MB/s from the first checkpoint with copies to the last: the copy
    /// rate without the process's start (connecting, creating the topic).
    steady: f64,
    /// What consuming the target found.
    verified: Verify,
    verify_secs: f64,
    /// Errors kflip logged.
    errors: usize,
}

impl Replicated {
    /// "ok" when the target holds exactly the n records, in source order,
    /// and kflip logged no error; otherwise what was wrong.
    fn check(&self, n: usize) -> String {
        let v = &self.verified;
        let mut bad = Vec::new();
        if v.records != n || v.bytes != v.records * RECORD {
            bad.push(format!("{} recs", v.records));
        }
        if v.duplicates > 0 {
            bad.push(format!("{} dup", v.duplicates));
        }
        if v.out_of_order > 0 {
            bad.push(format!("{} reord", v.out_of_order));
        }
        if self.errors > 0 {
            bad.push(format!("{} err", self.errors));
        }
        if bad.is_empty() {
            "ok".into()
        } else {
            bad.join(" ")
        }
    }
}

fn replicate(
    source: &mut Broker,
    target: &mut Broker,
    n: usize,
    partitions: i32,
    tuning: &Tuning,
) -> Replicated {
    fresh(source, "src");
    fresh(target, "dst");
    create_topic(&source.addr(), TOPIC, partitions);
    {
        let p = engine_like_producer(&source.addr());
        send_all(&p, TOPIC, partitions, &payload(), n);
    }
    let mut cps = Checkpoints::new(&target.addr());
    let deadline = Duration::from_secs(180);
    let start = Instant::now();
    let kflip = Kflip::spawn(
        "replicate",
        &flow_yaml(source, target, tuning),
        &log_level(),
    );
    let procs = Procs::new(source, target, Some(&kflip));
    let cpu = procs.sample();
    let mut startup = f64::NAN;
    let mut at_startup = 0i64;
    let mut copied;
    loop {
        copied = cps.poll();
        if copied > 0 && startup.is_nan() {
            startup = start.elapsed().as_secs_f64();
            at_startup = copied;
        }
        if copied >= n as i64 {
            break;
        }
        if start.elapsed() > deadline {
            eprintln!(
                "  {}: only {copied} of {n} copied after {deadline:?}; kflip log:\n{}",
                tuning.label(),
                kflip.log()
            );
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = procs.since(cpu);
    let log = kflip.log();
    drop(kflip);
    if std::env::var_os("KFLIP_BENCH_LOG").is_some() {
        eprintln!("  kflip log:\n{log}");
    }
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    if !errors.is_empty() {
        eprintln!(
            "  kflip logged {} errors, the first: {}",
            errors.len(),
            errors[0]
        );
    }
    let errors = errors.len();
    let v = Instant::now();
    let verified = count_by_consuming(&target.addr(), TOPIC, partitions, n);
    Replicated {
        tuning: tuning.clone(),
        t: Throughput {
            secs,
            // Fewer than n only if the run timed out.
            records: (copied.max(0) as usize).min(n),
            cpu,
        },
        startup,
        steady: ((copied - at_startup).max(0) as usize * RECORD) as f64
            / (secs - startup).max(1e-3)
            / 1e6,
        verified,
        verify_secs: v.elapsed().as_secs_f64(),
        errors,
    }
}

// --------------------------------------------------------------- latency ---

/// End-to-end latencies, milliseconds.
#[derive(Clone, Debug, Default)]
struct Latencies {
    samples: Vec<f64>,
}

impl Latencies {
    fn pct(&self, p: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let mut s = self.samples.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        let i = ((s.len() as f64 * p).ceil() as usize).clamp(1, s.len()) - 1;
        s[i]
    }
}

/// A consumer tailing partition 0 of `topic` that records, for every value
/// carrying a send time, now minus that time.
fn tail(
    bootstrap: String,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicU64>,
    got: Arc<AtomicU64>,
) -> Latencies {
    let c: BaseConsumer = config(&bootstrap)
        .set("group.id", "kflip-bench-latency")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "1")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    let mut out = Latencies::default();
    let mut assigned = false;
    while !stop.load(Ordering::Relaxed) {
        if !assigned {
            // The target topic exists only once the engine created it.
            let ok = c
                .fetch_metadata(Some(TOPIC), Duration::from_secs(2))
                .ok()
                .and_then(|md| md.topics().first().map(|t| t.error().is_none()))
                .unwrap_or(false);
            if !ok {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            c.assign(&tpl).expect("assign");
            assigned = true;
        }
        if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
            let now = now_us();
            let v = m.payload().unwrap_or_default();
            if v.len() >= 9 && v[0] == b'T' {
                let sent = u64::from_be_bytes(v[1..9].try_into().unwrap());
                out.samples.push(now.saturating_sub(sent) as f64 / 1e3);
                got.fetch_add(1, Ordering::Relaxed);
            } else {
                ready.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    out
}

/// Steady load on the source; latency measured on the source (direct) and
/// on the target (replicated). Returns (direct, replicated, sent, cpu, secs).
fn latency(
    source: &mut Broker,
    target: &mut Broker,
    rate: usize,
    secs: usize,
    tuning: &Tuning,
) -> (Latencies, Latencies, usize, Cpu, f64) {
    fresh(source, "src");
    fresh(target, "dst");
    create_topic(&source.addr(), TOPIC, 1);
    let kflip = Kflip::spawn("replicate", &flow_yaml(source, target, tuning), "warn");
    let stop = Arc::new(AtomicBool::new(false));
    let ready_src = Arc::new(AtomicU64::new(0));
    let ready_dst = Arc::new(AtomicU64::new(0));
    let got_src = Arc::new(AtomicU64::new(0));
    let got_dst = Arc::new(AtomicU64::new(0));
    let spawn_tail = |addr: String, ready: &Arc<AtomicU64>, got: &Arc<AtomicU64>| {
        let (stop, ready, got) = (stop.clone(), ready.clone(), got.clone());
        std::thread::spawn(move || tail(addr, stop, ready, got))
    };
    let src_tail = spawn_tail(source.addr(), &ready_src, &got_src);
    let dst_tail = spawn_tail(target.addr(), &ready_dst, &got_dst);
    let p = config(&source.addr())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // At 2000 records/s, linger 0 sends one request per record and
        // tansu queues them (p99 over 100 ms on the direct path alone).
        .set("linger.ms", "5")
        .set("compression.type", "none")
        .create_with_context::<_, BaseProducer<Counting>>(Counting::default())
        .expect("producer");
    // Warm-up: a record that must cross before the clock starts.
    let warm = vec![b'W'; RECORD];
    send_all(&p, TOPIC, 1, &warm, 1);
    support::wait_for(
        "the warm-up record on the target",
        Duration::from_secs(60),
        || (ready_dst.load(Ordering::Relaxed) > 0).then_some(()),
    );
    let procs = Procs::new(source, target, Some(&kflip));
    let cpu = procs.sample();
    let mut value = payload();
    value[0] = b'T';
    let total = rate * secs;
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        // poll() takes whole milliseconds (a shorter wait spins): serve
        // delivery reports, then sleep to the send time.
        p.poll(Duration::ZERO);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        value[1..9].copy_from_slice(&now_us().to_be_bytes());
        let mut rec = BaseRecord::<(), [u8]>::to(TOPIC)
            .payload(&value)
            .partition(0);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    p.poll(Duration::from_millis(1));
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    let elapsed = start.elapsed().as_secs_f64();
    // Let the last records cross (or give up after 20 s and report fewer).
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until
        && (got_src.load(Ordering::Relaxed) < total as u64
            || got_dst.load(Ordering::Relaxed) < total as u64)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let cpu = procs.since(cpu);
    let direct = src_tail.join().expect("source tail");
    let replicated = dst_tail.join().expect("target tail");
    drop(kflip);
    (direct, replicated, total, cpu, elapsed)
}

// ---------------------------------------------------------------- report ---

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

fn main() {
    // 200k records (~0.2 GB) keep a replication run at several seconds even
    // at the engine's best, and small enough for tansu's memory engine.
    // The CI guard (KFLIP_BENCH_QUICK=1): 100k records, 2 rounds of
    // baseline and default-tuning replication, no read ceiling, no other
    // tuning, no latency; then the ratio against a loose floor.
    let quick = guard::quick();
    let n = env_usize("KFLIP_BENCH_RECORDS", if quick { 100_000 } else { 200_000 }).max(1);
    let partitions = env_usize("KFLIP_BENCH_PARTITIONS", 1).max(1) as i32;
    let rounds = env_usize("KFLIP_BENCH_ROUNDS", if quick { 2 } else { 5 }).max(1);
    let rate = env_usize("KFLIP_BENCH_RATE", 2000).max(1);
    let lat_secs = env_usize("KFLIP_BENCH_LATENCY_SECS", 10).max(1);
    let only = std::env::var("KFLIP_BENCH_ONLY")
        .unwrap_or_else(|_| if quick { "baseline,replicate" } else { "" }.to_string());
    let want = |phase: &str| only.is_empty() || only.split(',').any(|p| p.trim() == phase);
    // The flow defaults (src/config/replication.rs).
    let default_tuning = Tuning {
        linger: "0ms".into(),
        batch_bytes: 1 << 20,
        fetch_partition_bytes: 1 << 20,
    };
    let tunings: Vec<Tuning> = match std::env::var("KFLIP_BENCH_TUNINGS") {
        Ok(s) if !s.trim().is_empty() => s
            .split(';')
            .map(|t| Tuning::parse(t).unwrap_or_else(|| panic!("bad tuning {t:?}")))
            .collect(),
        _ if quick => Vec::new(),
        _ => vec![
            Tuning {
                linger: "0ms".into(),
                batch_bytes: 1 << 20,
                fetch_partition_bytes: 16 << 20,
            },
            Tuning {
                linger: "20ms".into(),
                batch_bytes: 4 << 20,
                fetch_partition_bytes: 16 << 20,
            },
            Tuning {
                linger: "20ms".into(),
                batch_bytes: 4 << 20,
                fetch_partition_bytes: 50 << 20,
            },
        ],
    };
    // Apache Kafka with its full JIT and room to work, as in the proxy
    // bench (the tests' brokers run C1-only with a small heap).
    if std::env::var_os("KFLIP_BROKER_JVM").is_none() {
        std::env::set_var("KFLIP_BROKER_JVM", "-Xms1g -Xmx1g -XX:+UseG1GC");
    }
    let started = Instant::now();
    eprintln!(
        "kflip replication bench: {n} x {RECORD} B records, {partitions} partition(s), {rounds} rounds"
    );
    let mut source = Broker::start_with("src", Storage::Memory);
    let mut target = Broker::start_with("dst", Storage::Memory);

    // Baseline and default-tuning replication alternate, so both see the
    // same machine state; then the other tunings run once each.
    let mut base: Vec<Throughput> = Vec::new();
    let mut runs: Vec<Replicated> = Vec::new();
    let mut ceilings: Vec<(u32, Throughput)> = Vec::new();
    let show = |r: &Replicated, what: &str| {
        eprintln!(
            "{what} [{}]: {:6.1} MB/s {:7.0} rec/s (startup {:.2} s, then {:.1} MB/s; check {}, read back in {:.1} s)",
            r.tuning.label(),
            r.t.mb_s(),
            r.t.rec_s(),
            r.startup,
            r.steady,
            r.check(n),
            r.verify_secs
        );
    };
    for round in 0..rounds {
        if want("baseline") {
            fresh(&mut target, "dst");
            let t = baseline(&target, &source, n, partitions);
            eprintln!(
                "baseline round {round}: {:6.1} MB/s {:7.0} rec/s",
                t.mb_s(),
                t.rec_s()
            );
            base.push(t);
        }
        if want("replicate") {
            let r = replicate(&mut source, &mut target, n, partitions, &default_tuning);
            show(&r, &format!("replicate round {round}"));
            runs.push(r);
            if round == 0 && !quick {
                // The source still holds the n records, and kflip is gone.
                for wait in [100, 1] {
                    let t = read_ceiling(&source, &target, n, partitions, wait);
                    eprintln!(
                        "source read, fetch.wait.max.ms={wait}: {:6.1} MB/s {:7.0} rec/s",
                        t.mb_s(),
                        t.rec_s()
                    );
                    ceilings.push((wait, t));
                }
            }
        }
    }
    if want("replicate") {
        for tuning in &tunings {
            let r = replicate(&mut source, &mut target, n, partitions, tuning);
            show(&r, "replicate");
            runs.push(r);
        }
    }
    let lat = want("latency").then(|| {
        let l = latency(&mut source, &mut target, rate, lat_secs, &default_tuning);
        eprintln!(
            "latency: direct p50 {:.1} ms p99 {:.1} ms; replicated p50 {:.1} ms p99 {:.1} ms",
            l.0.pct(0.5),
            l.0.pct(0.99),
            l.1.pct(0.5),
            l.1.pct(0.99)
        );
        l
    });
    drop(source);
    drop(target);

    // --- report ---
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## kflip replication benchmark: {n} x {RECORD} B records, {partitions} partition(s), {} cores\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let base_mb = median(base.iter().map(Throughput::mb_s).collect());
    let ratio = |mb: f64| mb / base_mb;
    let head = |out: &mut String| {
        let _ = writeln!(
            out,
            "| {:<56} | {:>6} | {:>9} | {:>6} | {:>7} | {:>8} | {:<13} |",
            "measurement", "MB/s", "records/s", "ratio", "startup", "check", "target"
        );
        let _ = writeln!(
            out,
            "|{}|{}:|{}:|{}:|{}:|{}:|{}|",
            "-".repeat(58),
            "-".repeat(7),
            "-".repeat(10),
            "-".repeat(7),
            "-".repeat(8),
            "-".repeat(9),
            "-".repeat(15)
        );
    };
    #[allow(clippy::too_many_arguments)]
    fn row(
        out: &mut String,
        name: &str,
        mb: f64,
        rec: f64,
        ratio: f64,
        startup: Option<f64>,
        verified: &str,
        target: &str,
    ) {
        let ratio = if ratio.is_finite() {
            format!("{ratio:.3}")
        } else {
            String::new()
        };
        let startup = startup.map_or(String::new(), |s| format!("{s:.2} s"));
        let _ = writeln!(
            out,
            "| {name:<56} | {mb:>6.1} | {rec:>9.0} | {ratio:>6} | {startup:>7} | {verified:>8} | {target:<13} |"
        );
    }
    head(&mut out);
    let of = |k: usize| {
        if k > 1 {
            format!(" (median of {k})")
        } else {
            String::new()
        }
    };
    if !base.is_empty() {
        row(
            &mut out,
            &format!("baseline: produce to target{}", of(base.len())),
            base_mb,
            median(base.iter().map(Throughput::rec_s).collect()),
            1.0,
            None,
            "",
            "",
        );
    }
    for (wait, t) in &ceilings {
        row(
            &mut out,
            &format!("source read, engine consumer, fetch.wait.max.ms={wait}"),
            t.mb_s(),
            t.rec_s(),
            ratio(t.mb_s()),
            None,
            if t.records == n { "" } else { "SHORT" },
            "",
        );
    }
    let mut labelled: Vec<(String, Vec<&Replicated>)> = Vec::new();
    for r in &runs {
        let l = r.tuning.label();
        match labelled.iter_mut().find(|(k, _)| *k == l) {
            Some((_, v)) => v.push(r),
            None => labelled.push((l, vec![r])),
        }
    }
    let mut best: Option<(String, f64, bool)> = None;
    for (label, rs) in &labelled {
        let mb = median(rs.iter().map(|r| r.t.mb_s()).collect());
        let checks: Vec<String> = rs.iter().map(|r| r.check(n)).collect();
        let ok = checks.iter().all(|c| c == "ok");
        let rr = ratio(mb);
        row(
            &mut out,
            &format!("replicate: {label}{}", of(rs.len())),
            mb,
            median(rs.iter().map(|r| r.t.rec_s()).collect()),
            rr,
            Some(median(rs.iter().map(|r| r.startup).collect())),
            &if ok {
                "ok".to_string()
            } else {
                let good = checks.iter().filter(|c| *c == "ok").count();
                let bad: Vec<&str> = checks
                    .iter()
                    .filter(|c| *c != "ok")
                    .map(String::as_str)
                    .collect();
                if checks.len() > 1 {
                    format!("{good}/{} ok; {}", checks.len(), bad.join("; "))
                } else {
                    bad.join("; ")
                }
            },
            &format!(">= {TARGET_RATIO}x: {}", verdict(rr >= TARGET_RATIO)),
        );
        let steady = median(rs.iter().map(|r| r.steady).collect());
        row(
            &mut out,
            &format!("  after startup (first checkpoint on){}", of(rs.len())),
            steady,
            steady * 1e6 / RECORD as f64,
            ratio(steady),
            None,
            "",
            &format!(
                ">= {TARGET_RATIO}x: {}",
                verdict(ratio(steady) >= TARGET_RATIO)
            ),
        );
        // The best among runs that copied everything exactly once.
        let complete = rs
            .iter()
            .all(|r| r.verified.records == n && r.verified.duplicates == 0);
        if complete && best.as_ref().is_none_or(|(_, b, _)| mb > *b) {
            best = Some((label.clone(), mb, ok));
        }
    }
    let spread = |v: Vec<f64>| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.1}-{hi:.1}")
    };
    if base.len() > 1 {
        let _ = writeln!(
            out,
            "\nspread over rounds (MB/s): baseline {}",
            spread(base.iter().map(Throughput::mb_s).collect())
        );
    }
    for (label, rs) in labelled.iter().filter(|(_, rs)| rs.len() > 1) {
        let _ = writeln!(
            out,
            "spread over rounds (MB/s): replicate {label} {}",
            spread(rs.iter().map(|r| r.t.mb_s()).collect())
        );
    }
    if let Some((label, mb, ok)) = &best {
        let rr = ratio(*mb);
        let _ = writeln!(
            out,
            "\nbest replication: {mb:.1} MB/s = {rr:.3}x the target's raw produce rate, with {label}: \
             target >= {TARGET_RATIO}x {}{}",
            verdict(rr >= TARGET_RATIO),
            if *ok {
                ""
            } else {
                " (but see its check column)"
            }
        );
    }
    let _ = writeln!(
        out,
        "\ncheck: \"ok\" = the target topic, read back, holds exactly the {n} records, in source \
         order (by their kflip-origin headers), and kflip logged no error; \"reord\" counts copies \
         that follow a copy of a later source record, \"err\" kflip's ERROR log lines"
    );
    if let Some((direct, replicated, sent, _, elapsed)) = &lat {
        let _ = writeln!(
            out,
            "\nlatency under steady load: {sent} records of {RECORD} B at {rate}/s ({:.0}/s achieved) on the source, flow {}\n",
            *sent as f64 / elapsed,
            default_tuning.label()
        );
        let _ = writeln!(
            out,
            "| {:<40} | {:>8} | {:>7} | {:>7} | {:>7} |",
            "path", "received", "p50 ms", "p99 ms", "max ms"
        );
        let _ = writeln!(
            out,
            "|{}|{}:|{}:|{}:|{}:|",
            "-".repeat(42),
            "-".repeat(9),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(8)
        );
        for (name, l) in [
            ("direct: producer -> source consumer", direct),
            ("replicated: producer -> target consumer", replicated),
        ] {
            let _ = writeln!(
                out,
                "| {:<40} | {:>8} | {:>7.1} | {:>7.1} | {:>7.1} |",
                name,
                l.samples.len(),
                l.pct(0.5),
                l.pct(0.99),
                l.pct(1.0)
            );
        }
    }

    let _ = writeln!(
        out,
        "\nCPU by process over each timed interval (median; cpu-s per GB of records, and % of one core):\n"
    );
    let _ = writeln!(
        out,
        "| {:<56} | {:>14} | {:>14} | {:>14} | {:>14} |",
        "measurement", "client", "source broker", "target broker", "kflip"
    );
    let _ = writeln!(
        out,
        "|{}|{}:|{}:|{}:|{}:|",
        "-".repeat(58),
        "-".repeat(15),
        "-".repeat(15),
        "-".repeat(15),
        "-".repeat(15)
    );
    let cpu_row = |out: &mut String, name: &str, ts: &[Throughput]| {
        let cell = |f: fn(&Cpu) -> f64| {
            let per_gb = median(
                ts.iter()
                    .map(|t| f(&t.cpu) / ((t.records * RECORD) as f64 / 1e9))
                    .collect(),
            );
            let share = median(ts.iter().map(|t| 100.0 * f(&t.cpu) / t.secs).collect());
            format!("{per_gb:.2} s/GB {share:3.0}%")
        };
        let _ = writeln!(
            out,
            "| {:<56} | {:>14} | {:>14} | {:>14} | {:>14} |",
            name,
            cell(|c| c.client),
            cell(|c| c.source),
            cell(|c| c.target),
            cell(|c| c.kflip)
        );
    };
    if !base.is_empty() {
        cpu_row(&mut out, "baseline", &base);
    }
    for (wait, t) in &ceilings {
        cpu_row(
            &mut out,
            &format!("source read, fetch.wait.max.ms={wait}"),
            std::slice::from_ref(t),
        );
    }
    for (label, rs) in &labelled {
        let ts: Vec<Throughput> = rs.iter().map(|r| r.t).collect();
        cpu_row(&mut out, &format!("replicate: {label}"), &ts);
    }
    if let Some((_, _, sent, cpu, elapsed)) = &lat {
        let _ = writeln!(
            out,
            "| {:<56} | {:>14} | {:>14} | {:>14} | {:>14} |",
            format!("latency ({sent} records)"),
            format!("{:.0}%", 100.0 * cpu.client / elapsed),
            format!("{:.0}%", 100.0 * cpu.source / elapsed),
            format!("{:.0}%", 100.0 * cpu.target / elapsed),
            format!("{:.0}%", 100.0 * cpu.kflip / elapsed)
        );
    }
    let _ = writeln!(
        out,
        "\ntotal bench time: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("{out}");
    if quick {
        let mut g = guard::Guard::default();
        let default_label = default_tuning.label();
        let rs: Vec<&Replicated> = runs
            .iter()
            .filter(|r| r.tuning.label() == default_label)
            .collect();
        let mb = median(rs.iter().map(|r| r.t.mb_s()).collect());
        let checks: Vec<String> = rs.iter().map(|r| r.check(n)).collect();
        g.check(
            "replication",
            ratio(mb),
            guard::floor("replication", 0.2, 0.1),
            &format!(
                "replicated {mb:.1} MB/s, baseline produce {base_mb:.1} MB/s, median of {rounds}; \
                 checks {}",
                checks.join(", ")
            ),
        );
        // A copy that lost or reordered records is a failure at any speed.
        let exact = !checks.is_empty() && checks.iter().all(|c| c == "ok");
        g.check(
            "replication exactly once, in order",
            if exact { 1.0 } else { 0.0 },
            1.0,
            &checks.join(", "),
        );
        g.finish("replication");
    }
}
