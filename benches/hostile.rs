//! End-to-end benchmark: a healthy producer through kflip alone, and the
//! same producer while hostile clients hammer the same kflip, alternating
//! in one run. kflip runs with `proxy.sasl` (SCRAM-SHA-512 and PLAIN
//! against a users file) in front of one Apache Kafka 4.4 broker; the
//! healthy producer logs in with SCRAM-SHA-512 (SASL_PLAINTEXT).
//!
//! The hostile clients run in a separate process (this binary again, with
//! `KFLIP_BENCH_HOSTILE_ADDR` set), so their CPU is counted apart from the
//! healthy client's. By default:
//! - 200 slow-loris connections that open and send nothing; kflip cuts
//!   them at `proxy.handshake_timeout`/`auth_timeout` (both 3 s here) and
//!   they reconnect at once (first connects spread over 3 s);
//! - 20 connections sending a 64-byte frame of random bytes, in a loop
//!   (reconnecting after each close, 10 ms pause);
//! - 20 sending a 2 GiB frame header (`7f ff ff ff`), in a loop;
//! - 20 that send SaslHandshake SCRAM-SHA-512 and the client-first message,
//!   read kflip's challenge and stall until cut, in a loop.
//!
//! Run with `cargo bench --bench hostile`. It prints the healthy producer's
//! throughput alone and with hostiles (medians), their ratio against a
//! 0.9x target (PASS/MISS, never a failure), kflip's CPU and RSS in both,
//! and what the hostiles achieved. Knobs: `KFLIP_BENCH_RECORDS` (300000),
//! `KFLIP_BENCH_ROUNDS` (5), `KFLIP_BENCH_LORIS` (200),
//! `KFLIP_BENCH_HOSTILES` (20 of each other kind),
//! `KFLIP_BENCH_HOSTILE_PAUSE_MS` (10).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_usize, mb_s, median, produce, status_kib, Cpus, RECORD};
use support::clients::{config, create_topic};
use support::{Broker, Kflip, Storage};

const TARGET_RATIO: f64 = 0.9;
const USER: &str = "app";
const PASSWORD: &str = "app-bench-secret";

/// One measured round of the healthy producer.
#[derive(Clone, Debug, Default)]
struct Round {
    /// Seconds for the records.
    secs: f64,
    /// CPU seconds of [this process, the broker, kflip, the hostiles].
    cpu: Vec<f64>,
    /// kflip's largest RSS seen during the round, MiB.
    rss_max: f64,
    /// What the hostile process reported (empty when alone).
    hostile: Vec<(String, f64)>,
}

/// The hostile process, running until its stdin closes.
struct Hostiles {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Hostiles {
    /// Starts it against `addr` and waits until every slow loris is
    /// connected.
    fn start(addr: &str) -> Hostiles {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .env("KFLIP_BENCH_HOSTILE_ADDR", addr)
            .env("KFLIP_BENCH_HOSTILE_USER", USER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the hostile process");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("hostile process output");
        assert_eq!(line.trim(), "ready", "hostile process: {line}");
        Hostiles { child, out }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Stops it and returns its counters.
    fn stop(mut self) -> Vec<(String, f64)> {
        drop(self.child.stdin.take());
        let mut line = String::new();
        self.out.read_line(&mut line).expect("hostile stats");
        let _ = self.child.wait();
        line.split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }
}

/// Samples kflip's RSS every 50 ms until dropped; keeps the largest, KiB.
struct RssWatch {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(status_kib(pid, "VmRSS").unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssWatch {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("RSS sampler");
        }
        self.max.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

fn users_file(dir: &std::path::Path) -> std::path::PathBuf {
    let entry = kflip::auth::users::entry(USER, &kflip::auth::Secret::new(PASSWORD), 4096)
        .expect("users entry");
    let p = dir.join("users.yaml");
    std::fs::write(&p, format!("users:\n{entry}")).expect("users file");
    p
}

/// One round of the healthy producer, with hostiles or not.
fn round(
    kflip: &Kflip,
    healthy: &rdkafka::ClientConfig,
    broker: &str,
    broker_pid: &str,
    topic: &str,
    n: usize,
    hostile: bool,
) -> Round {
    create_topic(broker, topic, 1);
    let kpid = kflip.pid().expect("kflip pid");
    let h = hostile.then(|| {
        let h = Hostiles::start(&kflip.addr());
        // One cut-and-reconnect cycle, so the round sees steady churn.
        std::thread::sleep(Duration::from_millis(3500));
        h
    });
    let hpid = h.as_ref().map_or_else(|| "0".to_string(), Hostiles::pid);
    let cpus = Cpus::new(vec![
        "self".into(),
        broker_pid.to_string(),
        kpid.to_string(),
        hpid,
    ]);
    let watch = RssWatch::start(kpid);
    let mut cpu = Vec::new();
    let secs = produce(healthy, topic, n, || cpu = cpus.sample());
    let cpu = cpus.since(&cpu);
    let rss_max = watch.finish();
    let hostile = h.map(Hostiles::stop).unwrap_or_default();
    Round {
        secs,
        cpu,
        rss_max,
        hostile,
    }
}

fn main() {
    if let Ok(addr) = std::env::var("KFLIP_BENCH_HOSTILE_ADDR") {
        common::hostiles::run(&addr);
        return;
    }
    let n = env_usize("KFLIP_BENCH_RECORDS", 300_000).max(1);
    let rounds = env_usize("KFLIP_BENCH_ROUNDS", 5).max(1);
    let started = Instant::now();
    eprintln!("kflip hostile bench: {n} x {RECORD} B records, {rounds} rounds each way");
    if std::env::var_os("KFLIP_BROKER_JVM").is_none() {
        std::env::set_var("KFLIP_BROKER_JVM", "-Xms1g -Xmx1g -XX:+UseG1GC");
    }
    let broker = Broker::start_with("hostile-bench", Storage::Memory);
    let direct = broker.addr();
    let broker_pid = broker.pid().unwrap_or_else(|| "0".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let users = users_file(dir.path());
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{direct}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n  handshake_timeout: 3s\n  auth_timeout: 3s\n  sasl:\n    mechanisms: [SCRAM-SHA-512, PLAIN]\n    users_file: \"{}\"\n",
        users.display()
    );
    let kflip = Kflip::start_with_log(&yaml, "warn");
    let kpid = kflip.pid().expect("kflip pid");
    std::thread::sleep(Duration::from_millis(500));
    let rss_start = status_kib(kpid, "VmRSS").unwrap_or(0) as f64 / 1024.0;
    let mut healthy = config(&kflip.addr());
    healthy
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", USER)
        .set("sasl.password", PASSWORD);

    let (mut alone, mut with) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for hostile in order {
            let name = if hostile { "hostiles" } else { "alone" };
            let topic = format!("hostile-bench-{r}-{name}");
            let res = round(&kflip, &healthy, &direct, &broker_pid, &topic, n, hostile);
            eprintln!(
                "round {r} {name:>8}: {:7.1} MB/s, kflip {:.2} cpu-s, RSS max {:.1} MiB {}",
                mb_s(n, res.secs),
                res.cpu[2],
                res.rss_max,
                res.hostile
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            if hostile {
                with.push(res);
            } else {
                alone.push(res);
            }
        }
    }
    let rss_end = status_kib(kpid, "VmRSS").unwrap_or(0) as f64 / 1024.0;
    let hwm = status_kib(kpid, "VmHWM").unwrap_or(0) as f64 / 1024.0;
    let log = kflip.log();
    print!(
        "{}",
        report(n, rounds, &alone, &with, [rss_start, rss_end, hwm], &log)
    );
    let _ = writeln!(
        std::io::stdout(),
        "total bench time: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    drop(kflip);
    drop(broker);
}

fn report(
    n: usize,
    rounds: usize,
    alone: &[Round],
    with: &[Round],
    rss: [f64; 3],
    log: &str,
) -> String {
    let med = |v: &[Round], f: &dyn Fn(&Round) -> f64| median(v.iter().map(f).collect());
    let gb = (n * RECORD) as f64 / 1e9;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## kflip with hostile clients: {n} x {RECORD} B records, median of {rounds} rounds, {} cores\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        out,
        "| {:<36} | {:>10} | {:>13} | {:>8} |",
        "metric", "alone", "with hostiles", "ratio"
    );
    let _ = writeln!(
        out,
        "|{}|{}:|{}:|{}:|",
        "-".repeat(38),
        "-".repeat(11),
        "-".repeat(14),
        "-".repeat(9)
    );
    let mut row = |metric: &str, a: f64, w: f64, prec: usize, ratio: bool| {
        let r = if ratio {
            format!("{:.3}", w / a)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {metric:<36} | {a:>10.prec$} | {w:>13.prec$} | {r:>8} |"
        );
    };
    let both = |f: &dyn Fn(&Round) -> f64| (med(alone, f), med(with, f));
    let worst = |v: &[Round]| {
        v.iter()
            .map(|r| mb_s(n, r.secs))
            .fold(f64::INFINITY, f64::min)
    };
    let (a, w) = both(&|r| mb_s(n, r.secs));
    row("healthy produce MB/s", a, w, 1, true);
    row(
        "healthy produce MB/s, worst round",
        worst(alone),
        worst(with),
        1,
        true,
    );
    let (a, w) = both(&|r| r.cpu[2] / gb);
    row("kflip CPU s/GB", a, w, 2, true);
    let (a, w) = both(&|r| 100.0 * r.cpu[2] / r.secs);
    row("kflip CPU % of one core", a, w, 0, true);
    let (a, w) = both(&|r| 100.0 * r.cpu[0] / r.secs);
    row("healthy client CPU % of one core", a, w, 0, true);
    let (a, w) = both(&|r| 100.0 * r.cpu[1] / r.secs);
    row("broker CPU % of one core", a, w, 0, true);
    let (a, w) = both(&|r| 100.0 * r.cpu[3] / r.secs);
    row("hostile process CPU % of one core", a, w, 0, false);
    let (a, w) = both(&|r| r.rss_max);
    row("kflip max RSS MiB during the round", a, w, 1, true);
    let ratio = med(with, &|r| mb_s(n, r.secs)) / med(alone, &|r| mb_s(n, r.secs));
    let _ =
        writeln!(
        out,
        "\nhealthy throughput with hostiles / alone: {ratio:.3} (target >= {TARGET_RATIO}x: {})",
        if ratio >= TARGET_RATIO { "PASS" } else { "MISS" }
    );
    let _ = writeln!(
        out,
        "kflip RSS: {:.1} MiB idle at start, {:.1} MiB at the end, {:.1} MiB peak (VmHWM)",
        rss[0], rss[1], rss[2]
    );
    // Hostile activity per second of the whole hostile process lifetime.
    let mut keys: Vec<String> = with
        .iter()
        .flat_map(|r| r.hostile.iter().map(|(k, _)| k.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let stats: Vec<String> = keys
        .iter()
        .map(|k| {
            let v = median(
                with.iter()
                    .filter_map(|r| r.hostile.iter().find(|(q, _)| q == k).map(|(_, v)| *v))
                    .collect(),
            );
            format!("{k}={v:.1}")
        })
        .collect();
    let _ = writeln!(out, "hostiles per round (median): {}", stats.join(" "));
    let warns = log.lines().filter(|l| l.contains("WARN")).count();
    let _ = writeln!(
        out,
        "kflip log: {warns} WARN lines, {}",
        if log.contains("panicked") {
            "a PANIC"
        } else {
            "no panic"
        }
    );
    out
}
