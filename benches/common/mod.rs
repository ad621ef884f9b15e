//! What `benches/tls.rs` and `benches/hostile.rs` share: process CPU and
//! memory read from /proc, the librdkafka produce and consume workloads
//! (1 KiB records, the settings of `benches/proxy.rs`) and medians.
#![allow(dead_code)]

pub mod guard;
pub mod hostiles;
pub mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

/// Bytes per record value.
pub const RECORD: usize = 1024;

/// A number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------- /proc ---

/// Clock ticks per second for /proc/<pid>/stat times.
pub fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process (`"self"` or a pid), in ticks; 0 once it is
/// gone.
pub fn cpu_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name is in parentheses and may contain spaces; utime and
    // stime are fields 14 and 15, the 12th and 13th after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// A `Vm*` line of /proc/<pid>/status, in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Writes, for every file-backed mapping of a process, the file offset of
/// each page that is resident in it (`<path> <offset>` per line), read
/// from `/proc/<pid>/pagemap` (bit 63: present). Which code and data pages
/// a process holds, to attribute its file-backed RSS to symbols.
pub fn resident_pages(pid: u32, to: &str) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap"))?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(range), Some(off), Some(path)) = (f.first(), f.get(2), f.get(5)) else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b), Ok(off)) = (
            u64::from_str_radix(a, 16),
            u64::from_str_radix(b, 16),
            u64::from_str_radix(off, 16),
        ) else {
            continue;
        };
        let pages = ((b - a) / 4096) as usize;
        let mut buf = vec![0u8; pages * 8];
        pagemap.seek(SeekFrom::Start(a / 4096 * 8))?;
        pagemap.read_exact(&mut buf)?;
        for (i, e) in buf.chunks_exact(8).enumerate() {
            let e = u64::from_le_bytes(e.try_into().expect("8 bytes"));
            if e >> 63 == 1 {
                writeln!(out, "{path} {:x}", off + i as u64 * 4096)?;
            }
        }
    }
    out.flush()
}

/// CPU seconds of a set of processes, sampled together.
pub struct Cpus {
    /// `"self"` or a pid, per process.
    pids: Vec<String>,
    /// Ticks per second.
    tck: f64,
}

impl Cpus {
    /// Watches `pids` (in the order of the values [`Cpus::sample`] returns).
    pub fn new(pids: Vec<String>) -> Cpus {
        Cpus {
            pids,
            tck: clk_tck(),
        }
    }

    /// CPU seconds so far, per process.
    pub fn sample(&self) -> Vec<f64> {
        self.pids
            .iter()
            .map(|p| cpu_ticks(p) as f64 / self.tck)
            .collect()
    }

    /// CPU seconds since `before`, per process.
    pub fn since(&self, before: &[f64]) -> Vec<f64> {
        self.sample()
            .iter()
            .zip(before)
            .map(|(now, then)| now - then)
            .collect()
    }
}

// ------------------------------------------------------------ workloads ---

/// A payload that does not look compressible (compression is off anyway).
pub fn payload() -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..RECORD)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Counts deliveries so a run can check that every record was acked.
#[derive(Default)]
pub struct Counting {
    /// Records acked.
    pub ok: AtomicU64,
    /// Records that failed.
    pub failed: AtomicU64,
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

/// A throughput producer on top of `base` (which names the bootstrap and
/// the security settings): acks=1, linger 5 ms, 1 MB batches.
pub fn producer(base: &ClientConfig) -> BaseProducer<Counting> {
    base.clone()
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Counting::default())
        .expect("producer")
}

/// Sends `n` copies of `value` to `topic` and waits until all are acked.
pub fn send_all(p: &BaseProducer<Counting>, topic: &str, value: &[u8], n: usize) {
    for _ in 0..n {
        let mut rec = BaseRecord::<(), [u8]>::to(topic).payload(value);
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

/// Produces `n` records with a producer made beforehand (connections set
/// up by a first small batch); returns the seconds from the first send to
/// the last ack; `at_start` runs just before the clock starts (to sample
/// CPU). Panics unless every record was acked.
pub fn produce(base: &ClientConfig, topic: &str, n: usize, mut at_start: impl FnMut()) -> f64 {
    let value = payload();
    let p = producer(base);
    send_all(&p, topic, &value, 100);
    let ctx = p.context();
    let before = ctx.ok.load(Ordering::Relaxed);
    at_start();
    let start = Instant::now();
    send_all(&p, topic, &value, n);
    let secs = start.elapsed().as_secs_f64();
    let ok = ctx.ok.load(Ordering::Relaxed) - before;
    let failed = ctx.failed.load(Ordering::Relaxed);
    assert_eq!((ok, failed), (n as u64, 0), "every record of {topic} acked");
    secs
}

/// Reads the first `n` records of partition 0 of `topic`; returns the
/// seconds from `assign` to the `n`th record.
pub fn consume(base: &ClientConfig, topic: &str, n: usize) -> f64 {
    let c: BaseConsumer = base
        .clone()
        .set("group.id", "kflip-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("fetch.wait.max.ms", "1")
        .create()
        .expect("consumer");
    c.fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let start = Instant::now();
    c.assign(&tpl).expect("assign");
    let (mut got, mut bytes) = (0usize, 0usize);
    while got < n {
        assert!(Instant::now() < deadline, "consumed only {got} of {n}");
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            bytes += m.payload().map_or(0, |p| p.len());
            got += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(bytes, n * RECORD, "record sizes");
    secs
}

/// MB/s of `n` records in `secs`.
pub fn mb_s(n: usize, secs: f64) -> f64 {
    (n * RECORD) as f64 / secs / 1e6
}

/// The median; NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `p` quantile (0..=1) of sorted millisecond samples.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
