//! Proxy throughput as the number of concurrent producer connections
//! grows: direct to the broker and through kflip, in the same run.
//!
//! Run with `cargo bench --bench concurrency`. For each N of
//! `KFLIP_BENCH_PRODUCERS` (default `1,10,100`), N librdkafka producers,
//! one thread and one connection each (the settings of `benches/proxy.rs`:
//! acks=1, linger 5 ms, 1 MB batches), write `KFLIP_BENCH_RECORDS` (default
//! 200,000) 1 KiB records between them, producer i to partition i % 10 of
//! a fresh 10-partition topic. Every producer connects and sends a few
//! records first; the clock runs from a common start to the last producer's
//! flush (every record acked). Direct and kflip alternate, swapping which
//! goes first every round, `KFLIP_BENCH_ROUNDS` (3) rounds per path; the
//! table gives medians, the ratio, and kflip's CPU per GB and RSS. Each
//! round's topic is deleted after it, so the broker's disk holds about a
//! minute's worth of rounds (Kafka removes the files after 60 s).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{env_usize, median, payload, producer, status_kib, Cpus, RECORD};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use support::clients::{admin, block_on, config, create_topic};
use support::{Broker, Kflip, Storage};

/// Partitions of each round's topic.
const PARTITIONS: i32 = 10;

/// One timed round: seconds, and kflip's CPU seconds over it.
struct Round {
    secs: f64,
    kflip_cpu: f64,
}

/// `producers` connections write `n` records between them to `topic` via
/// `bootstrap`; returns the seconds from the common start to the last ack.
fn run(bootstrap: &str, topic: &str, producers: usize, n: usize, cpus: &Cpus) -> Round {
    let start = Arc::new(Barrier::new(producers + 1));
    let done = Arc::new(Barrier::new(producers + 1));
    let threads: Vec<_> = (0..producers)
        .map(|i| {
            let (start, done) = (start.clone(), done.clone());
            let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
            let share = n / producers + usize::from(i < n % producers);
            std::thread::spawn(move || {
                let p = producer(&config(&bootstrap));
                let value = payload();
                let part = (i as i32) % PARTITIONS;
                let send = |k: usize| {
                    for _ in 0..k {
                        let mut rec = BaseRecord::<(), [u8]>::to(&topic)
                            .partition(part)
                            .payload(&value);
                        loop {
                            match p.send(rec) {
                                Ok(()) => break,
                                Err((
                                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                    r,
                                )) => {
                                    rec = r;
                                    p.poll(Duration::from_millis(1));
                                }
                                Err((e, _)) => panic!("produce to {topic}: {e}"),
                            }
                        }
                    }
                    p.flush(Duration::from_secs(120)).expect("flush");
                };
                // Connected, metadata known and a first batch acked.
                send(5);
                let before = p.context().ok.load(std::sync::atomic::Ordering::Relaxed);
                start.wait();
                send(share);
                done.wait();
                let ok = p.context().ok.load(std::sync::atomic::Ordering::Relaxed) - before;
                let failed = p
                    .context()
                    .failed
                    .load(std::sync::atomic::Ordering::Relaxed);
                assert_eq!((ok, failed), (share as u64, 0), "every record acked");
            })
        })
        .collect();
    start.wait();
    let cpu = cpus.sample();
    let t = Instant::now();
    done.wait();
    let secs = t.elapsed().as_secs_f64();
    let kflip_cpu = cpus.since(&cpu)[0];
    for t in threads {
        t.join().expect("producer thread");
    }
    Round { secs, kflip_cpu }
}

/// Deletes `topic` (its files go after the broker's file.delete.delay.ms).
fn delete_topic(bootstrap: &str, topic: &str) {
    let opts = rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let res = block_on(admin(bootstrap).delete_topics(&[topic], &opts)).expect("delete_topics");
    for r in res {
        if let Err((t, e)) = r {
            panic!("delete topic {t}: {e}");
        }
    }
}

fn main() {
    let n = env_usize("KFLIP_BENCH_RECORDS", 200_000).max(1);
    let rounds = env_usize("KFLIP_BENCH_ROUNDS", 3).max(1);
    let counts: Vec<usize> = std::env::var("KFLIP_BENCH_PRODUCERS")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|c| *c > 0)
        .collect();
    if std::env::var_os("KFLIP_BROKER_JVM").is_none() {
        std::env::set_var("KFLIP_BROKER_JVM", "-Xms1g -Xmx1g -XX:+UseG1GC");
    }
    let started = Instant::now();
    let broker = Broker::start_with("bench", Storage::Memory);
    let direct = broker.addr();
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{direct}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n"
    );
    let kflip = Kflip::start_with_log(&yaml, "warn");
    let proxy = kflip.addr();
    let kpid = kflip.pid().expect("kflip pid");
    let cpus = Cpus::new(vec![kpid.to_string()]);
    let gb = (n * RECORD) as f64 / 1e9;
    let mut rows = Vec::new();
    for &producers in &counts {
        let (mut d, mut k, mut kcpu) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let paths = if round % 2 == 0 {
                [("direct", &direct), ("kflip", &proxy)]
            } else {
                [("kflip", &proxy), ("direct", &direct)]
            };
            for (name, addr) in paths {
                let topic = format!("conc-{producers}-{round}-{name}");
                create_topic(&direct, &topic, PARTITIONS);
                let r = run(addr, &topic, producers, n, &cpus);
                let mb = (n * RECORD) as f64 / r.secs / 1e6;
                eprintln!("{producers:>4} producers, round {round}, {name:>6}: {mb:7.1} MB/s");
                // Each round writes n KiB: deleted at once so the broker's
                // disk holds about one round's worth.
                delete_topic(&direct, &topic);
                if name == "direct" {
                    d.push(mb);
                } else {
                    k.push(mb);
                    kcpu.push(r.kflip_cpu / gb);
                }
            }
        }
        let rss = status_kib(kpid, "VmRSS").unwrap_or(0) as f64 / 1024.0;
        let (dm, km) = (median(d.clone()), median(k.clone()));
        rows.push(format!(
            "| {producers} | {dm:.1} ({:.0}-{:.0}) | {km:.1} ({:.0}-{:.0}) | **{:.3}** | {:.2} s | {rss:.1} MiB |",
            d.iter().copied().fold(f64::INFINITY, f64::min),
            d.iter().copied().fold(0.0, f64::max),
            k.iter().copied().fold(f64::INFINITY, f64::min),
            k.iter().copied().fold(0.0, f64::max),
            km / dm,
            median(kcpu),
        ));
    }
    println!(
        "\n## proxy produce throughput by concurrent connections: {n} x {RECORD} B records, \
         median of {rounds} rounds per path\n"
    );
    println!("| producer connections | direct MB/s (range) | kflip MB/s (range) | kflip / direct | kflip CPU per GB | kflip RSS after |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "\ntotal bench time: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    drop(kflip);
    drop(broker);
}
