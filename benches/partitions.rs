//! Replication engine cost as the number of replicated partitions grows,
//! and the time to discover and start copying a new topic while they flow.
//!
//! Run with `cargo bench --bench partitions`. For each point P of
//! `KFLIP_BENCH_POINTS` (default `10,100,500,2000`) two freshly formatted
//! single-node Apache Kafka 4.4 clusters (1 GiB heap) get P/10 topics of 10
//! partitions (`scale-000`...) on the source, one record in each partition,
//! and `kflip replicate` one flow `scale-.*` (discovery_interval
//! `KFLIP_BENCH_DISCOVERY`, default 2s). Measured:
//! - **startup**: from the spawn of kflip until a consumer on the target has
//!   the first record of every partition;
//! - **steady load**: a producer writes `KFLIP_BENCH_RATE` (default 200)
//!   1 KiB records/s round robin over all P partitions; after
//!   `KFLIP_BENCH_WARMUP` (15) s of warm-up, kflip's CPU over `KFLIP_BENCH_WINDOW` (20) s and its RSS
//!   (VmRSS at the end, VmHWM), and whether the target kept up;
//! - **discovery**: with the load still on, `KFLIP_BENCH_NEW_TOPICS` (3)
//!   times a new one-partition topic `scale-new-K` is created on the
//!   source and one record written to it; the time from the topic's
//!   creation to that record on the target, against the interval.
//!
//! `KFLIP_BENCH_FLOW` adds flow keys (e.g. `linger: 50ms`);
//! `KFLIP_BENCH_SHOW_LOG=1` prints what kflip logged about each new topic
//! (run with `KFLIP_TEST_LOG=kflip=info`).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_usize, median, payload, producer, status_kib, Cpus};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use support::clients::{admin, block_on, config, create_topic};
use support::{wait_for, Broker, Kflip, Storage};

/// Partitions per topic.
const PER_TOPIC: usize = 10;

/// The (topic, partition) pairs of a point.
fn layout(p: usize) -> Vec<(String, i32)> {
    let topics = p.div_ceil(PER_TOPIC);
    (0..p)
        .map(|i| {
            (
                format!("scale-{:03}", i / PER_TOPIC),
                (i % PER_TOPIC) as i32,
            )
        })
        .take(topics * PER_TOPIC)
        .collect()
}

/// Creates the point's topics on `bootstrap` in one admin request.
fn create_all(bootstrap: &str, p: usize) {
    let topics: Vec<String> = (0..p.div_ceil(PER_TOPIC))
        .map(|t| format!("scale-{t:03}"))
        .collect();
    let per = p.min(PER_TOPIC) as i32;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, per, TopicReplication::Fixed(1)))
        .collect();
    let opts = rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    for r in block_on(admin(bootstrap).create_topics(&new, &opts)).expect("create_topics") {
        if let Err((t, e)) = r {
            panic!("create topic {t} on {bootstrap}: {e}");
        }
    }
}

/// Counts the records that arrive on the target for `parts`, in a thread.
struct Counter {
    got: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Counter {
    /// `refresh_ms`: how often librdkafka looks for a topic it does not
    /// know yet (the target's topics appear during the run).
    fn start(bootstrap: &str, parts: &[(String, i32)], refresh_ms: u64) -> Counter {
        let c: BaseConsumer = config(bootstrap)
            .set("group.id", "kflip-bench-scale")
            .set("topic.metadata.refresh.interval.ms", refresh_ms.to_string())
            .set("enable.auto.commit", "false")
            .set("max.partition.fetch.bytes", "1048576")
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for (t, p) in parts {
            tpl.add_partition_offset(t, *p, Offset::Beginning).unwrap();
        }
        c.assign(&tpl).expect("assign");
        let got = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(Ok(_)) = c.poll(Duration::from_millis(50)) {
                    g.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Counter {
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn get(&self) -> u64 {
        self.got.load(Ordering::Relaxed)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes `rate` records/s round robin over `parts` until stopped; counts
/// what the source acknowledged.
fn load(
    bootstrap: String,
    parts: Vec<(String, i32)>,
    rate: usize,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let p = producer(&config(&bootstrap));
        let value = payload();
        let start = Instant::now();
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as usize;
            while i < due {
                let (t, part) = &parts[i % parts.len()];
                let rec = BaseRecord::<(), [u8]>::to(t)
                    .partition(*part)
                    .payload(&value);
                if p.send(rec).is_err() {
                    eprintln!("the load's producer queue is full");
                }
                i += 1;
            }
            p.poll(Duration::from_millis(5));
            sent.store(p.context().ok.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        p.flush(Duration::from_secs(30)).expect("flush the load");
        sent.store(p.context().ok.load(Ordering::Relaxed), Ordering::Relaxed);
    })
}

/// Creates `scale-new-K`, writes one record, and returns the seconds until
/// it is on the target.
fn discover(source: &str, target: &str, k: usize) -> f64 {
    let topic = format!("scale-new-{k}");
    let t0 = Instant::now();
    create_topic(source, &topic, 1);
    let p = producer(&config(source));
    p.send(
        BaseRecord::<(), [u8]>::to(&topic)
            .partition(0)
            .payload(b"new"),
    )
    .map_err(|(e, _)| e)
    .expect("send to the new topic");
    p.flush(Duration::from_secs(30)).expect("flush");
    eprintln!(
        "  {topic}: created and its record acked {:.2} s after the create call",
        t0.elapsed().as_secs_f64()
    );
    let c = Counter::start(target, &[(topic.clone(), 0)], 50);
    wait_for(&format!("{topic} copied"), Duration::from_secs(120), || {
        (c.get() > 0).then_some(())
    });
    t0.elapsed().as_secs_f64()
}

fn main() {
    let points: Vec<usize> = std::env::var("KFLIP_BENCH_POINTS")
        .unwrap_or_else(|_| "10,100,500,2000".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|c| *c > 0)
        .collect();
    let rate = env_usize("KFLIP_BENCH_RATE", 200).max(1);
    let window = env_usize("KFLIP_BENCH_WINDOW", 20).max(1) as f64;
    let new_topics = env_usize("KFLIP_BENCH_NEW_TOPICS", 3);
    let warmup = env_usize("KFLIP_BENCH_WARMUP", 15) as u64;
    // More flow keys, e.g. `linger: 50ms` (KFLIP_BENCH_FLOW).
    let flow_extra = std::env::var("KFLIP_BENCH_FLOW")
        .map(|f| format!(", {f}"))
        .unwrap_or_default();
    let interval = std::env::var("KFLIP_BENCH_DISCOVERY").unwrap_or_else(|_| "2s".into());
    let interval_s = humantime::parse_duration(&interval)
        .expect("KFLIP_BENCH_DISCOVERY")
        .as_secs_f64();
    if std::env::var_os("KFLIP_BROKER_JVM").is_none() {
        std::env::set_var("KFLIP_BROKER_JVM", "-Xms1g -Xmx1g -XX:+UseG1GC");
    }
    let started = Instant::now();
    let mut rows = Vec::new();
    for &p in &points {
        let parts = layout(p);
        let source = Broker::start_with("src", Storage::Memory);
        let target = Broker::start_with("dst", Storage::Memory);
        let t = Instant::now();
        create_all(&source.addr(), p);
        eprintln!(
            "{p} partitions: topics created in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        {
            let prod = producer(&config(&source.addr()));
            let value = payload();
            for (t, part) in &parts {
                prod.send(
                    BaseRecord::<(), [u8]>::to(t)
                        .partition(*part)
                        .payload(&value),
                )
                .map_err(|(e, _)| e)
                .expect("prefill");
            }
            prod.flush(Duration::from_secs(60)).expect("prefill flush");
        }
        let admin_addr = format!("127.0.0.1:{}", support::free_port());
        let yaml = format!(
            "admin: {{ listen: \"{admin_addr}\" }}\n\
             clusters:\n  src: {{ bootstrap: \"{}\" }}\n  dst: {{ bootstrap: \"{}\" }}\n\
             replication:\n  flows:\n    - {{ source: src, target: dst, topics: [\"scale-.*\"], \
             discovery_interval: {interval}{flow_extra} }}\n",
            source.addr(),
            target.addr()
        );
        let t0 = Instant::now();
        let kflip = Kflip::spawn("replicate", &yaml, "warn");
        let kpid = kflip.pid().expect("kflip pid");
        let pid = |b: &Broker| b.pid().unwrap_or_else(|| "0".into());
        let cpus = Cpus::new(vec![
            kpid.to_string(),
            pid(&source),
            pid(&target),
            "self".into(),
        ]);
        let counter = Counter::start(&target.addr(), &parts, 1000);
        wait_for(
            &format!("the first record of all {p} partitions on the target"),
            Duration::from_secs(600),
            || (counter.get() >= p as u64).then_some(()),
        );
        let startup = t0.elapsed().as_secs_f64();
        let rss_idle = status_kib(kpid, "VmRSS").unwrap_or(0) as f64 / 1024.0;
        // Not reading the target during the load: every fetch of a
        // consumer with P partitions costs the broker O(P), and the
        // engine's own metrics say what it copied.
        drop(counter);
        eprintln!("{p} partitions: all copying {startup:.1} s after spawn, RSS {rss_idle:.1} MiB");

        let (sent, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let loader = load(
            source.addr(),
            parts.clone(),
            rate,
            sent.clone(),
            stop.clone(),
        );
        // The brokers are fresh: their JIT compiles the produce and fetch
        // paths during the first seconds of load.
        std::thread::sleep(Duration::from_secs(warmup));
        let cpu = cpus.sample();
        let sent0 = sent.load(Ordering::Relaxed);
        let (copied0, _) = engine_metrics(&admin_addr);
        std::thread::sleep(Duration::from_secs_f64(window));
        let used = cpus.since(&cpu);
        let kcpu = used[0];
        let sent1 = sent.load(Ordering::Relaxed);
        let (copied1, lag) = engine_metrics(&admin_addr);
        let engine_rate = (copied1 - copied0) / window;
        let rss = status_kib(kpid, "VmRSS").unwrap_or(0) as f64 / 1024.0;
        let hwm = status_kib(kpid, "VmHWM").unwrap_or(0) as f64 / 1024.0;
        let sent_rate = (sent1 - sent0) as f64 / window;
        eprintln!(
            "{p} partitions: kflip {:.1}% of a core, RSS {rss:.1} MiB (peak {hwm:.1}), \
             sent {sent_rate:.0}/s, engine copied {engine_rate:.0}/s (lag {lag:.0} records); \
             % of a core: source broker {:.0}, \
             target broker {:.0}, this bench {:.0}",
            100.0 * kcpu / window,
            100.0 * used[1] / window,
            100.0 * used[2] / window,
            100.0 * used[3] / window
        );
        let disc: Vec<f64> = (0..new_topics)
            .map(|k| {
                let s = discover(&source.addr(), &target.addr(), k);
                if std::env::var_os("KFLIP_BENCH_SHOW_LOG").is_some() {
                    let needle = format!("scale-new-{k}");
                    for l in kflip.log().lines().filter(|l| l.contains(&needle)) {
                        eprintln!("  kflip: {l}");
                    }
                }
                eprintln!("{p} partitions: new topic {k} copied {s:.2} s after its creation");
                s
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        loader.join().expect("load thread");
        let total = sent.load(Ordering::Relaxed) + p as u64;
        let counter = Counter::start(&target.addr(), &parts, 1000);
        let caught_up = wait_for_count(&counter, total, Duration::from_secs(120));
        rows.push(format!(
            "| {p} ({} topics) | {startup:.1} s | {:.1}% | {:.2} ms | {rss_idle:.1} / {rss:.1} / {hwm:.1} | \
             {sent_rate:.0} / {engine_rate:.0} | {lag:.0} | {:.0} / {:.0} | {} | {} |",
            p.div_ceil(PER_TOPIC),
            100.0 * kcpu / window,
            1000.0 * kcpu / window / p as f64,
            100.0 * used[1] / window,
            100.0 * used[2] / window,
            if disc.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{:.2} s = {:.2}x (max {:.2} s)",
                    median(disc.clone()),
                    median(disc.clone()) / interval_s,
                    disc.iter().copied().fold(0.0, f64::max)
                )
            },
            if caught_up { "yes" } else { "NO" }
        ));
        drop(counter);
        drop(kflip);
    }
    println!(
        "\n## replication cost by partitions: load {rate} x 1 KiB records/s, {window:.0} s window, \
         discovery_interval {interval}\n"
    );
    println!(
        "| partitions | startup: all copying | kflip CPU, % of a core | CPU ms/s per partition | \
         kflip RSS MiB: started / under load / peak | records/s acked by the source / copied by kflip | kflip lag, records | source / target broker CPU % | new topic copied after (x interval) | every record copied |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "\ntotal bench time: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// The engine's (records copied, records behind) from its /metrics.
fn engine_metrics(admin: &str) -> (f64, f64) {
    let (_, body) = support::http_get(admin, "/metrics");
    let sum = |name: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("kflip_replication_records_total{"),
        sum("kflip_replication_lag_records{"),
    )
}

/// Waits until `counter` reaches `n`; whether it did within `limit`.
fn wait_for_count(counter: &Counter, n: u64, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if counter.get() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("target has {} of {n} records", counter.get());
    false
}
