//! A shared flow copied by 1, 2 and 3 `kflip replicate` instances, against
//! the same flow unshared (one instance, no transactions).
//!
//! Run with `cargo bench --bench shared`. Two single-node Apache Kafka 4.4
//! clusters; per run a fresh 12-partition topic on the source, and the
//! instances on a flow of that topic alone. Once every instance copies its
//! partitions (and the group has settled), a producer writes
//! `KFLIP_BENCH_RECORDS` (default 200,000) 1 KiB records as fast as it can;
//! the clock runs from its first send until a read_committed consumer on
//! the target has counted every record (so a shared flow's copies count
//! once committed). The group's join (the broker's 3 s initial rebalance
//! delay, and a second cooperative round) is left out: it is paid once.
//! Reported per run: seconds, MB/s, the ratio to the unshared run, and the
//! instances' CPU seconds per GB copied (all instances together, and the
//! busiest). `KFLIP_BENCH_FLOW` adds flow keys to every run (e.g.
//! `commit_interval: 50ms`); `KFLIP_BENCH_INSTANCES` (default `1,2,3`).
//!
//! On one 2-core machine the instances, both brokers and the bench share
//! the cores, so the MB/s of several instances is bounded by the cores,
//! not by kflip: the CPU per GB is the figure to project from (see
//! docs/replication.md, "Sizing").

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::time::{Duration, Instant};

use common::{env_usize, payload, producer, send_all, Cpus, RECORD};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use support::clients::{config, create_topic};
use support::{wait_for, Broker, Kflip, Storage};

const PARTITIONS: i32 = 12;

/// Counts committed records of `topic` on `bootstrap` until `n`.
fn count_until(bootstrap: &str, topic: &str, n: usize) {
    let c: BaseConsumer = config(bootstrap)
        .set("group.id", "kflip-bench-count")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut got = 0;
    while got < n {
        assert!(Instant::now() < deadline, "copied only {got} of {n}");
        // The target topic appears once an instance created it.
        if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
            got += 1;
        }
    }
}

struct Run {
    label: String,
    secs: f64,
    cpu_total: f64,
    cpu_max: f64,
}

fn run(src: &Broker, dst: &Broker, n: usize, instances: usize, shared: bool, extra: &str) -> Run {
    let topic = format!("sh{instances}{}", if shared { "s" } else { "u" });
    create_topic(&src.addr(), &topic, PARTITIONS);
    let yaml = format!(
        "clusters:\n  src: {{ bootstrap: \"{}\" }}\n  dst: {{ bootstrap: \"{}\" }}\n\
         replication:\n  flows:\n    - {{ source: src, target: dst, topics: [\"{topic}\"], \
         shared: {shared}, discovery_interval: 500ms{extra} }}\n",
        src.addr(),
        dst.addr()
    );
    let ks: Vec<Kflip> = (0..instances)
        .map(|_| {
            Kflip::spawn(
                "replicate",
                &yaml,
                "warn,kflip::replication::handover=info,kflip::replication::assign=info",
            )
        })
        .collect();
    // Steady state: every instance copies partitions before the load (a
    // joiner gets its share in the group's last round).
    wait_for("the instances to copy", Duration::from_secs(120), || {
        ks.iter()
            .all(|k| {
                k.log().contains(if shared {
                    "taking over partitions"
                } else {
                    "replicating topic"
                })
            })
            .then_some(())
    });
    let cpus = Cpus::new(
        ks.iter()
            .filter_map(|k| k.pid())
            .map(|p| p.to_string())
            .collect(),
    );
    let before = cpus.sample();
    let start = Instant::now();
    let p = producer(&config(&src.addr()));
    send_all(&p, &topic, &payload(), n);
    count_until(&dst.addr(), &topic, n);
    let secs = start.elapsed().as_secs_f64();
    let used = cpus.since(&before);
    let gb = (n * RECORD) as f64 / 1e9;
    Run {
        label: format!("{instances} {}", if shared { "shared" } else { "unshared" }),
        secs,
        cpu_total: used.iter().sum::<f64>() / gb,
        cpu_max: used.iter().cloned().fold(0.0, f64::max) / gb,
    }
}

fn main() {
    if support::kind() != support::Kind::Kafka {
        eprintln!("shared flows need transactions: Apache Kafka only");
        return;
    }
    let n = env_usize("KFLIP_BENCH_RECORDS", 200_000);
    let extra = std::env::var("KFLIP_BENCH_FLOW")
        .map(|e| format!(", {e}"))
        .unwrap_or_default();
    let counts: Vec<usize> = std::env::var("KFLIP_BENCH_INSTANCES")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let src = Broker::start_with("src", Storage::Memory);
    let dst = Broker::start_with("dst", Storage::Memory);
    let mut runs = vec![run(&src, &dst, n, 1, false, &extra)];
    for &i in &counts {
        runs.push(run(&src, &dst, n, i, true, &extra));
    }
    let base = runs[0].secs;
    println!("\n{n} records of {RECORD} B over {PARTITIONS} partitions{extra}");
    println!("| instances | seconds | MB/s | vs unshared | kflip CPU s/GB (all) | busiest instance CPU s/GB |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &runs {
        println!(
            "| {} | {:.1} | {:.0} | {:.2}x | {:.2} | {:.2} |",
            r.label,
            r.secs,
            (n * RECORD) as f64 / r.secs / 1e6,
            base / r.secs,
            r.cpu_total,
            r.cpu_max
        );
    }
}
