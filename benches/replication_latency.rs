//! Replication latency: from the source's acknowledgement of a record to
//! the moment its copy is readable on the target, under a steady load.
//!
//! Run with `cargo bench --bench replication_latency` (about 90 s). Two
//! single-node Apache Kafka 4.4 clusters (memory-backed logs, as
//! `benches/replication.rs`) and one `kflip replicate` copying `lat-.*`
//! with the flow defaults (plus `KFLIP_BENCH_FLOW`, a YAML fragment such as
//! `linger: 0ms, fetch_wait: 10ms`, to try other settings).
//!
//! A producer on the source (acks=all, idempotent, linger 5 ms, 1 KiB
//! records) writes a sequence number into each value and notes when the
//! source acknowledged it (its delivery report, on librdkafka's own
//! thread). A consumer on the target notes when each copy arrives, keyed by
//! the sequence number; the latency of a record is the difference. The
//! engine's producer uses acks=all, so a copy is readable on the target
//! only once the target has acknowledged it: the figure is the target's ack
//! plus the reading consumer's fetch turnaround. That turnaround is shown
//! as the "floor": the same measurement with a consumer on the source
//! (ack to readable on the source itself, no copy involved).
//!
//! Phases, each on its own topic: a warm-up at full speed
//! (`KFLIP_BENCH_WARM_SECS`, 30 s; 0 for 2 s at 1,000/s); the maximum
//! throughput (the producer as fast as it can for `KFLIP_BENCH_MAX_SECS`
//! (10) s, throughput = records / (last copy seen - first send)); then
//! `KFLIP_BENCH_LATENCY_SECS` (10) s at 1,000 records/s and at half that
//! maximum (`KFLIP_BENCH_RATES` replaces the list: records/s, or `half`).
//! It prints p50/p90/p99/max, and each broker's and kflip's CPU while the
//! producer ran (share of one core), and asserts nothing about time.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{clk_tck, cpu_ticks, env_usize, RECORD};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use support::clients::{config, create_topic};
use support::{Broker, Kflip, Storage};

/// Microseconds since `base` at each sequence number (-1: not yet).
#[derive(Clone)]
struct Times {
    base: Instant,
    at: Arc<Mutex<Vec<i64>>>,
}

impl Times {
    fn new(base: Instant) -> Times {
        Times {
            base,
            at: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Notes now for the sequence number at the start of `value`.
    fn note(&self, value: Option<&[u8]>) {
        let Some(seq) = value.and_then(seq_of) else {
            return;
        };
        let now = self.base.elapsed().as_micros() as i64;
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        if at.len() <= seq {
            at.resize(seq + 1, -1);
        }
        at[seq] = now;
    }

    fn snapshot(&self) -> Vec<i64> {
        self.at.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn seq_of(v: &[u8]) -> Option<usize> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?) as usize)
}

/// Notes the source's acknowledgement of each record.
struct Acks(Times);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = r {
            self.0.note(m.payload());
        }
    }
}

/// A consumer on `bootstrap` noting when each record of `topic` arrives,
/// until `stop`; `seen` counts them.
fn watch(
    bootstrap: String,
    topic: String,
    times: Times,
    seen: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let c: BaseConsumer = config(&bootstrap)
            .set("group.id", "kflip-bench-latency")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("consumer");
        // The copy of the topic exists once the engine created it.
        support::wait_for(
            &format!("{topic} on {bootstrap}"),
            Duration::from_secs(60),
            || {
                let md = c
                    .fetch_metadata(Some(&topic), Duration::from_secs(2))
                    .ok()?;
                md.topics()
                    .first()
                    .filter(|t| t.error().is_none())
                    .map(|_| ())
            },
        );
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .expect("partition");
        c.assign(&tpl).expect("assign");
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                times.note(m.payload());
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// What one phase measured.
struct Phase {
    label: String,
    sent: usize,
    /// Records per second the producer achieved.
    produced: f64,
    /// Records per second from the first send to the last copy seen.
    end_to_end: f64,
    /// Source ack to copy readable on the target, ms.
    copy: Vec<f64>,
    /// Source ack to readable on the source, ms (the measurement's floor).
    floor: Vec<f64>,
    /// Share of one core used while producing, per process of `pids`.
    cpu: Vec<f64>,
}

/// `later - earlier` in ms for each record both saw.
fn diffs(earlier: &[i64], later: &[i64]) -> Vec<f64> {
    let mut d: Vec<f64> = earlier
        .iter()
        .zip(later)
        .filter(|(a, b)| **a >= 0 && **b >= 0)
        .map(|(a, b)| (b - a) as f64 / 1e3)
        .collect();
    d.sort_by(|a, b| a.total_cmp(b));
    d
}

/// `KFLIP_BENCH_LATENCY_DUMP=<dir>`: each record's source ack (Unix ms)
/// and its copy latency (ms) in `<dir>/<topic>.tsv`, to line up the slow
/// ones with what else happened then (the brokers' GC log, for one).
fn dump(dir: &str, topic: &str, base: std::time::SystemTime, acked: &[i64], copied: &[i64]) {
    let at = base
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let mut out = String::new();
    for (a, c) in acked.iter().zip(copied) {
        if *a >= 0 && *c >= 0 {
            let _ = writeln!(
                out,
                "{:.3}\t{:.3}",
                at + *a as f64 / 1e3,
                (c - a) as f64 / 1e3
            );
        }
    }
    if let Err(e) = std::fs::write(format!("{dir}/{topic}.tsv"), out) {
        eprintln!("cannot write the latency dump in {dir}: {e}");
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Produces to `topic` on the source at `rate` records/s (`None`: as fast
/// as the producer goes) for `secs`, and measures every record.
/// `pids`: the processes whose CPU share is reported (source broker, target
/// broker, kflip).
fn phase(
    src: &Broker,
    dst: &Broker,
    pids: &[String],
    topic: &str,
    rate: Option<f64>,
    secs: f64,
) -> Phase {
    let base = Instant::now();
    let base_wall = std::time::SystemTime::now();
    let (acks, on_src, on_dst) = (Times::new(base), Times::new(base), Times::new(base));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen_src, seen_dst) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let watchers = [
        watch(
            src.addr(),
            topic.into(),
            on_src.clone(),
            seen_src.clone(),
            stop.clone(),
        ),
        watch(
            dst.addr(),
            topic.into(),
            on_dst.clone(),
            seen_dst.clone(),
            stop.clone(),
        ),
    ];
    let p: ThreadedProducer<Acks> = config(&src.addr())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "none")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Acks(acks.clone()))
        .expect("producer");
    let mut value = vec![b'x'; RECORD];
    let ticks: Vec<u64> = pids.iter().map(|p| cpu_ticks(p)).collect();
    let start = Instant::now();
    let mut sent = 0usize;
    while start.elapsed().as_secs_f64() < secs {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        value[..8].copy_from_slice(&(sent as u64).to_be_bytes());
        let mut rec = BaseRecord::<(), [u8]>::to(topic)
            .payload(&value)
            .partition(0);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => panic!("produce to {topic}: {e}"),
            }
        }
        sent += 1;
    }
    let busy = start.elapsed().as_secs_f64() * clk_tck();
    let cpu = pids
        .iter()
        .zip(ticks)
        .map(|(p, t)| cpu_ticks(p).saturating_sub(t) as f64 / busy)
        .collect();
    p.flush(Duration::from_secs(60)).expect("flush");
    let produced = sent as f64 / start.elapsed().as_secs_f64();
    // Let every copy arrive (or give up after 60 s and report fewer).
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until
        && (seen_dst.load(Ordering::Relaxed) < sent || seen_src.load(Ordering::Relaxed) < sent)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for w in watchers {
        w.join().expect("watcher");
    }
    let (acked, dst_at) = (acks.snapshot(), on_dst.snapshot());
    let first_send = (start - base).as_micros() as i64;
    let last_copy = dst_at.iter().copied().max().unwrap_or(first_send);
    if let Ok(dir) = std::env::var("KFLIP_BENCH_LATENCY_DUMP") {
        dump(&dir, topic, base_wall, &acked, &dst_at);
    }
    let copy = diffs(&acked, &dst_at);
    Phase {
        label: String::new(),
        sent,
        produced,
        end_to_end: copy.len() as f64 / ((last_copy - first_send).max(1) as f64 / 1e6),
        copy,
        floor: diffs(&acked, &on_src.snapshot()),
        cpu,
    }
}

fn main() {
    // Brokers as users run them (G1, a 1 GiB heap, the full JIT), as the
    // other benches do; the tests' quick-start JVM (serial GC, a 512 MiB
    // heap, C1 only) pauses for long enough to dominate the p99.
    if std::env::var_os("KFLIP_BROKER_JVM").is_none() {
        std::env::set_var("KFLIP_BROKER_JVM", "-Xms1g -Xmx1g -XX:+UseG1GC");
    }
    let max_secs = env_usize("KFLIP_BENCH_MAX_SECS", 10).max(1) as f64;
    let secs = env_usize("KFLIP_BENCH_LATENCY_SECS", 10).max(1) as f64;
    let rates: Vec<String> = std::env::var("KFLIP_BENCH_RATES")
        .unwrap_or_else(|_| "1000,half".into())
        .split(',')
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    let extra = std::env::var("KFLIP_BENCH_FLOW").unwrap_or_default();
    let started = Instant::now();
    let src = Broker::start_with("src", Storage::Memory);
    let dst = Broker::start_with("dst", Storage::Memory);
    let topics: Vec<String> = ["warm", "max"]
        .iter()
        .map(|t| t.to_string())
        .chain(rates.iter().map(|r| format!("r{r}")))
        .map(|t| format!("lat-{t}"))
        .collect();
    for t in &topics {
        create_topic(&src.addr(), t, 1);
    }
    let extra_yaml = if extra.trim().is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    let yaml = format!(
        "clusters:\n  src: {{ bootstrap: \"{}\" }}\n  dst: {{ bootstrap: \"{}\" }}\n\
         replication:\n  flows:\n    - {{ source: src, target: dst, topics: [\"lat-.*\"]{extra_yaml} }}\n",
        src.addr(),
        dst.addr()
    );
    let kflip = Kflip::spawn("replicate", &yaml, "warn");
    let pids: Vec<String> = [src.pid(), dst.pid(), kflip.pid().map(|p| p.to_string())]
        .into_iter()
        .map(|p| p.unwrap_or_else(|| "0".into()))
        .collect();
    let mut rows = Vec::new();
    // The brokers' JIT compiles their hot paths under load: 30 s at full
    // speed first (`KFLIP_BENCH_WARM_SECS`; 0 is the earlier 2 s at
    // 1,000 records/s).
    let warm = match env_usize("KFLIP_BENCH_WARM_SECS", 30) {
        0 => phase(&src, &dst, &pids, "lat-warm", Some(1000.0), 2.0),
        secs => phase(&src, &dst, &pids, "lat-warm", None, secs as f64),
    };
    eprintln!(
        "warm-up: {} records, p99 {:.1} ms",
        warm.sent,
        pct(&warm.copy, 0.99)
    );
    let mut max = phase(&src, &dst, &pids, "lat-max", None, max_secs);
    max.label = "max (as fast as the producer goes)".into();
    let ceiling = max.end_to_end;
    eprintln!(
        "max: produced {:.0}/s, copied end to end {ceiling:.0}/s ({:.1} MB/s)",
        max.produced,
        ceiling * RECORD as f64 / 1e6
    );
    rows.push(max);
    for r in &rates {
        let rate = if r == "half" {
            (ceiling / 2.0).max(1.0)
        } else {
            r.parse().expect("KFLIP_BENCH_RATES: numbers or `half`")
        };
        let mut ph = phase(&src, &dst, &pids, &format!("lat-r{r}"), Some(rate), secs);
        ph.label = if r == "half" {
            format!("half of max: {rate:.0}/s")
        } else {
            format!("{rate:.0}/s")
        };
        eprintln!(
            "{}: p50 {:.1} p99 {:.1} ms",
            ph.label,
            pct(&ph.copy, 0.5),
            pct(&ph.copy, 0.99)
        );
        rows.push(ph);
    }
    let flow = if extra.is_empty() {
        "defaults"
    } else {
        extra.as_str()
    };
    println!(
        "\n## replication latency, source ack -> copy readable on the target (flow: {flow})\n"
    );
    println!("| load | sent | produced/s | copied/s end to end | p50 ms | p90 ms | p99 ms | max ms | floor p50 / p99 ms | CPU source / target / kflip |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for ph in &rows {
        println!(
            "| {} | {} ({} copies seen) | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} / {:.2} | {} |",
            ph.label,
            ph.sent,
            ph.copy.len(),
            ph.produced,
            ph.end_to_end,
            pct(&ph.copy, 0.5),
            pct(&ph.copy, 0.9),
            pct(&ph.copy, 0.99),
            pct(&ph.copy, 1.0),
            pct(&ph.floor, 0.5),
            pct(&ph.floor, 0.99),
            ph.cpu
                .iter()
                .map(|c| format!("{:.0}%", c * 100.0))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    println!(
        "\ntotal bench time: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
