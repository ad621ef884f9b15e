//! Failover and failback with clients that run across every switch and are
//! never restarted: for each client library an idempotent producer, a group
//! consumer with manual commits and an auto-commit consumer, all through
//! one `kflip run` (proxy plus flows in both directions).
//!
//! What each client saw is read from its event file (`ack`, `got` lines);
//! what each cluster holds is read directly. The assertions:
//! - every acknowledged record that was replicated is on the cluster that
//!   ends up active, exactly once (idempotent producers through switches);
//! - every consumer received every one of those records;
//! - in a planned switch, manual-commit consumers received none twice.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use support::clients::{self, create_topic};
use support::{repo, wait_for, Kflip, TwoClusters};

const FAST: &str = "discovery_interval: 500ms, group_sync_interval: 500ms, config_sync_interval: 1s, checkpoint_interval: 200ms, fetch_partition_bytes: 65536, fetch_wait: 10ms";

/// Client libraries in the matrix: librdkafka (in-process rdkafka, and
/// confluent-kafka), kafka-python, kafkajs, the Java client with the classic
/// group protocol and with KIP-848's (`java-848`, Apache Kafka only), and
/// franz-go.
const ALL_LIBS: [&str; 7] = [
    "rdkafka",
    "confluent",
    "kafka-python",
    "kafkajs",
    "java",
    "java-848",
    "franz-go",
];

/// The libraries this run's broker supports: tansu 0.6 has no KIP-848
/// consumer groups.
fn libs() -> Vec<&'static str> {
    ALL_LIBS
        .into_iter()
        .filter(|l| *l != "java-848" || support::kind() == support::Kind::Kafka)
        .collect()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Role {
    Producer,
    Manual,
    Auto,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Manual => "manual",
            Role::Auto => "auto",
        }
    }
}

/// One running client.
struct Client {
    lib: &'static str,
    role: Role,
    out: PathBuf,
    child: Option<Child>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a client's event file says.
#[derive(Default, Debug)]
struct Events {
    acked: Vec<String>,
    got: Vec<String>,
    errors: Vec<String>,
    /// The client library's own log lines (`log <level> ...`).
    logs: Vec<String>,
    done: bool,
}

fn events(path: &Path) -> Events {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut e = Events::default();
    for line in text.lines() {
        let mut words = line.split(' ');
        match words.next() {
            Some("ack") => e.acked.extend(words.next().map(String::from)),
            Some("got") => e.got.extend(words.next().map(String::from)),
            Some("err") => e.errors.push(line.to_string()),
            Some("log") => e.logs.push(line.to_string()),
            Some("done") => e.done = true,
            _ => {}
        }
    }
    e
}

fn append(out: &Mutex<std::fs::File>, line: String) {
    let mut f = out.lock().unwrap();
    let _ = writeln!(f, "{line}");
}

/// librdkafka's log lines into the event file, as `log ...` lines.
struct Logged(Arc<Mutex<std::fs::File>>);
impl ClientContext for Logged {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        append(&self.0, format!("log {level:?} {fac}: {msg}"));
    }
}
impl rdkafka::consumer::ConsumerContext for Logged {}

struct Acks(Arc<Mutex<std::fs::File>>);
impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => append(
                &self.0,
                format!(
                    "ack {} {} {}",
                    String::from_utf8_lossy(m.payload().unwrap_or_default()),
                    m.partition(),
                    m.offset()
                ),
            ),
            Err((e, m)) => append(
                &self.0,
                format!(
                    "err {} {e}",
                    String::from_utf8_lossy(m.payload().unwrap_or_default())
                ),
            ),
        }
    }
}

/// The rdkafka crate's clients run as threads of the test.
fn rdkafka_client(
    role: Role,
    bootstrap: String,
    topic: String,
    id: String,
    out: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let file = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .unwrap(),
    ));
    std::thread::spawn(move || match role {
        Role::Producer => {
            let p: ThreadedProducer<Acks> = clients::config(&bootstrap)
                .set("client.id", &id)
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .set("message.timeout.ms", "120000")
                .create_with_context(Acks(file.clone()))
                .unwrap();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = format!("{id}-{seq}");
                if p.send(BaseRecord::<str, str>::to(&topic).key(&v).payload(&v))
                    .is_ok()
                {
                    seq += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = p.flush(Duration::from_secs(60));
            append(&file, format!("done sent={seq}"));
        }
        Role::Manual | Role::Auto => {
            let mut cfg = clients::config(&bootstrap);
            cfg.set("client.id", &id)
                .set("group.id", &id)
                .set("auto.offset.reset", "earliest")
                .set("heartbeat.interval.ms", "500")
                .set("session.timeout.ms", "6000")
                .set(
                    "enable.auto.commit",
                    if role == Role::Auto { "true" } else { "false" },
                )
                .set("auto.commit.interval.ms", "1000");
            // KFLIP_TEST_RDKAFKA_DEBUG=consumer,cgrp,fetch puts librdkafka's
            // debug log into the event file, to see why a consumer waits.
            if let Ok(debug) = std::env::var("KFLIP_TEST_RDKAFKA_DEBUG") {
                cfg.set("debug", debug).set("log_level", "7");
            }
            let c: BaseConsumer<Logged> = cfg.create_with_context(Logged(file.clone())).unwrap();
            c.subscribe(&[&topic]).unwrap();
            while !stop.load(Ordering::Relaxed) {
                // A batch: the first record waits up to 100 ms, then what is
                // already fetched, as the other clients' polls return it.
                let mut batch = Vec::new();
                let mut wait = Duration::from_millis(100);
                while batch.len() < 500 {
                    match c.poll(wait) {
                        Some(Ok(m)) => batch.push(m),
                        Some(Err(e)) => {
                            append(&file, format!("cerr {e}"));
                            break;
                        }
                        None => break,
                    }
                    wait = Duration::ZERO;
                }
                if batch.is_empty() {
                    continue;
                }
                let mut next: BTreeMap<i32, i64> = BTreeMap::new();
                for m in &batch {
                    append(
                        &file,
                        format!(
                            "got {} {} {}",
                            String::from_utf8_lossy(m.payload().unwrap_or_default()),
                            m.partition(),
                            m.offset()
                        ),
                    );
                    next.insert(m.partition(), m.offset() + 1);
                }
                // Manual commits: each batch is committed, synchronously,
                // before the next one is polled. (A commit per record does
                // not keep up on a loaded 2-core machine.)
                if role == Role::Manual {
                    let mut tpl = rdkafka::TopicPartitionList::new();
                    for (&p, &o) in &next {
                        let _ = tpl.add_partition_offset(&topic, p, rdkafka::Offset::Offset(o));
                    }
                    match c.commit(&tpl, CommitMode::Sync) {
                        Ok(()) => append(&file, "commit ok".into()),
                        Err(e) => append(&file, format!("commit err {e}")),
                    }
                }
            }
            append(&file, "done".into());
        }
    })
}

/// Starts every role of `lib` on `topic` through `bootstrap`.
fn start_lib(
    lib: &'static str,
    bootstrap: &str,
    topic: &str,
    dir: &Path,
    stop_file: &Path,
    stops: &[Arc<AtomicBool>; 2],
) -> Vec<Client> {
    [Role::Producer, Role::Manual, Role::Auto]
        .into_iter()
        .map(|role| {
            let id = format!("{lib}-{}", role.name());
            let out = dir.join(format!("{id}.events"));
            let producer = role == Role::Producer;
            let stop_file =
                stop_file.with_extension(if producer { "producers" } else { "consumers" });
            let stop = &stops[usize::from(!producer)];
            let args: Vec<String> = [
                "--role",
                role.name(),
                "--bootstrap",
                bootstrap,
                "--topic",
                topic,
                "--client-id",
                &id,
                "--group",
                &id,
                "--out",
                out.to_str().unwrap(),
                "--stop",
                stop_file.to_str().unwrap(),
                "--rate",
                "20",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let scripts = repo().join("tests/clients");
            let (child, thread) = match lib {
                "rdkafka" => (
                    None,
                    Some(rdkafka_client(
                        role,
                        bootstrap.into(),
                        topic.into(),
                        id.clone(),
                        out.clone(),
                        stop.clone(),
                    )),
                ),
                "java" | "java-848" | "franz-go" => {
                    let mut cmd = if lib == "franz-go" {
                        clients::go_client()
                    } else {
                        clients::java_client()
                    };
                    cmd.args(&args);
                    if lib == "java-848" {
                        cmd.args(["--group-protocol", "consumer"]);
                    }
                    let log = std::fs::File::create(out.with_extension("stderr")).unwrap();
                    (
                        Some(
                            cmd.stdout(Stdio::null())
                                .stderr(log)
                                .spawn()
                                .expect("client"),
                        ),
                        None,
                    )
                }
                "kafkajs" => (
                    Some(
                        Command::new("node")
                            .arg(scripts.join("failover_client.js"))
                            .args(&args)
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .spawn()
                            .expect("node"),
                    ),
                    None,
                ),
                py => (
                    Some(
                        Command::new("python3")
                            .arg(scripts.join("failover_client.py"))
                            .arg("--lib")
                            .arg(py)
                            .args(&args)
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .spawn()
                            .expect("python3"),
                    ),
                    None,
                ),
            };
            Client {
                lib,
                role,
                out,
                child,
                thread,
            }
        })
        .collect()
}

/// The first lines of a broker log that tell what went wrong.
fn first_errors(log: String) -> String {
    log.lines()
        .filter(|l| l.contains("panick") || l.contains("ERROR") || l.contains("WARN"))
        .take(12)
        .collect::<Vec<_>>()
        .join("\n")
}

fn topic_of(lib: &str) -> String {
    format!("fo-{lib}")
}

/// The failover setup: two clusters, topics on dc1, `kflip run` with flows
/// both ways.
struct Setup {
    /// One setup at a time: each runs 20 clients (7 JVMs among them), two
    /// brokers and kflip, which two at once would starve on 2 cores.
    _one: std::sync::MutexGuard<'static, ()>,
    dcs: TwoClusters,
    kflip: Kflip,
    dir: tempfile::TempDir,
    stop_file: PathBuf,
    /// Stop flags of the rdkafka threads: producers, consumers.
    stops: [Arc<AtomicBool>; 2],
    clients: Vec<Client>,
    /// The engine's other instance, when it is spread.
    spread: Option<Spread>,
}

fn config(dcs: &TwoClusters, active: &str, spread: Option<&Spread>) -> String {
    let admin = spread
        .map(|s| format!("admin:\n  listen: \"{}\"\n", s.run_admin))
        .unwrap_or_default();
    format!(
        "{}  switch_lag_timeout: 10s\n{admin}{}",
        dcs.config(active, ""),
        flows(spread.is_some())
    )
}

fn flows(shared: bool) -> String {
    let shared = if shared {
        ", shared: true, session_timeout: 6s"
    } else {
        ""
    };
    format!(
        "replication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\"fo-.*\"], {FAST}{shared} }}\n    - {{ source: dc2, target: dc1, topics: [\"fo-.*\"], {FAST}{shared} }}\n"
    )
}

/// The engine spread over `kflip run` and a `kflip replicate` beside it
/// (shared flows), each with an admin listener so they form a fleet.
struct Spread {
    /// `kflip run`'s admin address.
    run_admin: String,
    /// The other instance.
    replicate: Kflip,
}

impl Spread {
    fn start(dcs: &TwoClusters) -> Spread {
        let yaml = format!(
            "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\n  dc2: {{ bootstrap: \"{}\" }}\nadmin:\n  listen: \"127.0.0.1:{}\"\n{}",
            dcs.dc1.addr(),
            dcs.dc2.addr(),
            support::free_port(),
            flows(true)
        );
        Spread {
            run_admin: format!("127.0.0.1:{}", support::free_port()),
            replicate: Kflip::spawn("replicate", &yaml, "kflip=info"),
        }
    }
}

impl Setup {
    /// With `spread`, the flows are shared by `kflip run` and a `kflip
    /// replicate`, and the setup waits until both copy partitions.
    fn start_with(spread: bool) -> Setup {
        static ONE: Mutex<()> = Mutex::new(());
        let one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let dcs = TwoClusters::start();
        for lib in libs() {
            create_topic(&dcs.dc1.addr(), &topic_of(lib), 3);
        }
        let spread = spread.then(|| Spread::start(&dcs));
        let kflip =
            Kflip::start_command("run", &config(&dcs, "dc1", spread.as_ref()), "kflip=info");
        if let Some(sp) = &spread {
            wait_for("both instances copy", Duration::from_secs(60), || {
                [&kflip, &sp.replicate]
                    .iter()
                    .all(|k| k.log().contains("taking over partitions"))
                    .then_some(())
            });
            // The proxy's planned switch asks the fleet's engines: it must
            // see the other instance's beacon first.
            wait_for("the fleet of two", Duration::from_secs(60), || {
                let (_, body) = support::http_get(&sp.run_admin, "/status");
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                (v["fleet"]["members"].as_array()?.len() >= 2).then_some(())
            });
        }
        for lib in libs() {
            wait_for("topics created on dc2", Duration::from_secs(30), || {
                clients::read_all(&dcs.dc2.addr(), &topic_of(lib))
                    .len()
                    .eq(&3)
                    .then_some(())
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("kflip-failover-")
            .tempdir()
            .unwrap();
        let stop_file = dir.path().join("stop");
        let stops = [
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        ];
        let mut clients = Vec::new();
        for lib in libs() {
            clients.extend(start_lib(
                lib,
                &kflip.addr(),
                &topic_of(lib),
                dir.path(),
                &stop_file,
                &stops,
            ));
        }
        Setup {
            _one: one,
            dcs,
            kflip,
            dir,
            stop_file,
            stops,
            clients,
            spread,
        }
    }

    fn events(&self) -> Vec<(&Client, Events)> {
        self.clients.iter().map(|c| (c, events(&c.out))).collect()
    }

    /// Waits until every producer acknowledged `more` records past what it
    /// had, and every consumer received every record acknowledged so far.
    fn progress(&self, what: &str, more: usize) {
        let before: HashMap<String, usize> = self
            .events()
            .into_iter()
            .filter(|(c, _)| c.role == Role::Producer)
            .map(|(c, e)| (c.lib.to_string(), e.acked.len()))
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while std::time::Instant::now() < deadline {
            if self.progressed(&before, more) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let summary: Vec<String> = self
            .events()
            .iter()
            .map(|(c, e)| {
                let tail = std::fs::read_to_string(&c.out).unwrap_or_default();
                let tail: Vec<&str> = tail
                    .lines()
                    .filter(|l| {
                        !l.starts_with("ack")
                            && !l.starts_with("got")
                            && !l.starts_with("commit ok")
                    })
                    .collect();
                let tail = &tail[tail.len().saturating_sub(8)..];
                format!(
                    "{} {}: acked {} got {} other: {:?}",
                    c.lib,
                    c.role.name(),
                    e.acked.len(),
                    e.got.len(),
                    tail
                )
            })
            .collect();
        let _ = std::fs::write("/tmp/kflip-failover-kflip.log", self.kflip.log());
        let _ = std::process::Command::new("cp")
            .arg("-r")
            .arg(self.dir.path())
            .arg("/tmp/kflip-failover-last")
            .status();
        panic!(
            "timed out waiting for {what}:\n{}\n--- kflip log ---\n{}\n--- dc1 ---\n{}\n--- dc2 ---\n{}",
            summary.join("\n"),
            first_errors(self.kflip.log()),
            first_errors(self.dcs.dc1.log()),
            first_errors(self.dcs.dc2.log())
        );
    }

    fn progressed(&self, before: &HashMap<String, usize>, more: usize) -> bool {
        let ok = (|| {
            let ev = self.events();
            let mut acked: HashMap<&str, HashSet<String>> = HashMap::new();
            for (c, e) in &ev {
                if c.role == Role::Producer {
                    if e.acked.len() < before[c.lib] + more {
                        return None;
                    }
                    acked.insert(c.lib, e.acked.iter().cloned().collect());
                }
            }
            // After a disaster, the records kflip reported as not replicated
            // (the RPO) are not on the new cluster: no consumer gets them.
            let log = self.kflip.log();
            for (c, e) in &ev {
                if c.role != Role::Producer {
                    let got: HashSet<&String> = e.got.iter().collect();
                    let want = &acked[c.lib];
                    let rpo = logged_records(
                        &log,
                        &format!(
                            "RPO: not replicated before the old cluster went away topic={} ",
                            topic_of(c.lib)
                        ),
                    );
                    // Records acknowledged in the last moments may still be
                    // on their way; everything before the newest 50 must be in.
                    let missing = want.iter().filter(|v| !got.contains(v)).count();
                    if missing > 50 + rpo {
                        return None;
                    }
                }
            }
            Some(())
        })();
        ok.is_some()
    }

    fn flip(&self, to: &str, epoch: u64) {
        self.kflip
            .write_config(&config(&self.dcs, to, self.spread.as_ref()));
        let needle = format!("epoch={epoch}");
        wait_for("the switch", Duration::from_secs(30), || {
            self.kflip
                .log()
                .lines()
                .any(|l| l.contains("switched active cluster") && l.contains(&needle))
                .then_some(())
        });
    }

    /// Stops the clients of `role` (producers or consumers) and waits for
    /// them to exit.
    fn stop(&mut self, producers: bool) {
        let file = self
            .stop_file
            .with_extension(if producers { "producers" } else { "consumers" });
        std::fs::write(file, b"stop").unwrap();
        self.stops[usize::from(!producers)].store(true, Ordering::Relaxed);
        for c in &mut self.clients {
            if (c.role == Role::Producer) != producers {
                continue;
            }
            if let Some(t) = c.thread.take() {
                let _ = t.join();
            }
            if let Some(mut child) = c.child.take() {
                let ok = wait_for("client exit", Duration::from_secs(120), || {
                    child.try_wait().ok().flatten()
                });
                assert!(
                    ok.success(),
                    "{} {} failed:\n{}",
                    c.lib,
                    c.role.name(),
                    std::fs::read_to_string(&c.out).unwrap_or_default()
                );
            }
        }
    }

    /// Every acknowledged record of each library on `bootstrap`, with
    /// counts (after replication settled).
    fn holdings(&self, bootstrap: &str) -> BTreeMap<&'static str, HashMap<String, usize>> {
        libs()
            .into_iter()
            .map(|lib| {
                let mut counts = HashMap::new();
                for v in clients::values(bootstrap, &topic_of(lib)) {
                    *counts.entry(v).or_insert(0) += 1;
                }
                (lib, counts)
            })
            .collect()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for (i, which) in ["producers", "consumers"].iter().enumerate() {
            let _ = std::fs::write(self.stop_file.with_extension(which), b"stop");
            self.stops[i].store(true, Ordering::Relaxed);
        }
        for c in &mut self.clients {
            if let Some(mut child) = c.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = &self.dir;
    }
}

/// Records of the old cluster a disaster left behind, by library.
#[derive(Default)]
struct Orphans {
    /// Values held back on the old cluster: never copied, never delivered.
    held: HashMap<&'static str, HashSet<String>>,
    /// Values the old cluster holds twice after its return: the orphan (a
    /// write the producer never saw acknowledged, so it sent it again
    /// through the new cluster) and the copy of that retry.
    doubled: HashMap<&'static str, HashSet<String>>,
    /// After a disaster: what each producer had seen acknowledged when the
    /// old cluster died. A batch in flight then may be on both clusters
    /// (written and replicated, its acknowledgement lost with the cluster)
    /// and is retried on the new one: a duplicate the disaster promise
    /// allows. Records acknowledged before are never duplicated.
    acked_before_disaster: Option<HashMap<&'static str, HashSet<String>>>,
}

impl Setup {
    /// What each producer has seen acknowledged so far.
    fn acked_now(&self) -> HashMap<&'static str, HashSet<String>> {
        self.events()
            .into_iter()
            .filter(|(c, _)| c.role == Role::Producer)
            .map(|(c, e)| (c.lib, e.acked.into_iter().collect()))
            .collect()
    }
}

/// Stops the producers, waits until the consumers have read what the final
/// cluster holds, stops them, and checks what the cluster holds and what
/// every client saw. In a planned switch every acknowledged record must be
/// on the final cluster; after a disaster, those not replicated before the
/// old cluster died are the RPO, and only the others are required; orphans
/// held back on a returned cluster are not delivered.
/// At most this many metadata warnings from one Java client over a whole
/// test (three switches at most); a metadata loop logs one per retry
/// backoff, hundreds a minute.
const METADATA_WARNINGS: usize = 40;

fn finish(s: &mut Setup, final_cluster: &str, planned: bool, orphans: &Orphans) {
    s.stop(true);
    let ev = s.events();
    // Wait for replication of the last records before reading the cluster.
    let acked: HashMap<&str, Vec<String>> = ev
        .iter()
        .filter(|(c, _)| c.role == Role::Producer)
        .map(|(c, e)| (c.lib, e.acked.clone()))
        .collect();
    let held = if planned {
        wait_for(
            "every acknowledged record on the final cluster",
            Duration::from_secs(60),
            || {
                let held = s.holdings(final_cluster);
                libs()
                    .into_iter()
                    .all(|lib| acked[lib].iter().all(|v| held[lib].contains_key(v)))
                    .then_some(held)
            },
        )
    } else {
        s.holdings(final_cluster)
    };
    // What must reach every consumer: acknowledged and on the final cluster.
    let expected: HashMap<&str, Vec<&String>> = libs()
        .iter()
        .map(|lib| {
            (
                *lib,
                acked[lib]
                    .iter()
                    .filter(|v| held[lib].contains_key(*v))
                    .filter(|v| !orphans.held.get(lib).is_some_and(|o| o.contains(*v)))
                    .collect(),
            )
        })
        .collect();
    let mut rpo = Vec::new();
    for lib in libs() {
        let missing = acked[lib].len() - expected[lib].len();
        if missing > 0 {
            rpo.push(format!(
                "{lib}: {missing} acknowledged records not replicated before the disaster"
            ));
        }
    }
    let caught_up = |s: &Setup| {
        s.events().iter().all(|(c, e)| {
            if c.role == Role::Producer {
                return true;
            }
            let got: HashSet<&String> = e.got.iter().collect();
            expected[c.lib].iter().all(|v| got.contains(v))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !caught_up(s) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    s.stop(false);
    let ev = s.events();
    let mut report = rpo;
    for (c, e) in &ev {
        // The Java client ignores metadata that looks older than what it
        // has (a lower leader epoch, another cluster id) and asks again: a
        // proxy that shows it such metadata after a switch makes it loop,
        // logging a warning per attempt. A few warnings around each switch
        // are normal (a connection closed, a coordinator moved).
        if c.lib.starts_with("java") {
            let metadata: Vec<&String> = e
                .logs
                .iter()
                .filter(|l| l.to_ascii_lowercase().contains("metadata"))
                .collect();
            report.push(format!(
                "{} {}: {} client warnings, {} about metadata",
                c.lib,
                c.role.name(),
                e.logs.len(),
                metadata.len()
            ));
            assert!(
                metadata.len() <= METADATA_WARNINGS,
                "{} {}: the Java client warned {} times about metadata (a loop?), e.g. {:?}",
                c.lib,
                c.role.name(),
                metadata.len(),
                &metadata[..metadata.len().min(5)]
            );
        }
        if c.role == Role::Producer {
            let doubled = orphans.doubled.get(c.lib);
            let before = orphans
                .acked_before_disaster
                .as_ref()
                .map(|b| b.get(c.lib).cloned().unwrap_or_default());
            let dups: Vec<_> = held[c.lib]
                .iter()
                .filter(|(v, n)| **n > 1 && !doubled.is_some_and(|d| d.contains(*v)))
                .filter(|(v, _)| before.as_ref().is_none_or(|b| b.contains(*v)))
                .collect();
            assert!(
                dups.is_empty(),
                "{}: duplicates on the cluster: {:?}",
                c.lib,
                &dups[..dups.len().min(5)]
            );
            assert!(
                e.errors.is_empty(),
                "{}: producer errors: {:?}",
                c.lib,
                &e.errors[..e.errors.len().min(5)]
            );
            report.push(format!("{} producer: {} acked", c.lib, e.acked.len()));
            continue;
        }
        let got: HashSet<&String> = e.got.iter().collect();
        let lost: Vec<_> = expected[c.lib]
            .iter()
            .filter(|v| !got.contains(*v))
            .collect();
        let dups = e.got.len() - got.len();
        report.push(format!(
            "{} {}: {} received, {} lost, {} duplicates",
            c.lib,
            c.role.name(),
            e.got.len(),
            lost.len(),
            dups
        ));
        if !lost.is_empty() {
            // Keep the event files for a look.
            let kept = s.dir.path().to_path_buf();
            std::mem::forget(std::fs::File::open(&kept));
            let _ = std::fs::write(kept.join("kflip.log"), s.kflip.log());
            eprintln!("events kept in {}", kept.display());
            std::process::Command::new("cp")
                .arg("-r")
                .arg(&kept)
                .arg("/tmp/kflip-failover-last")
                .status()
                .ok();
        }
        assert!(
            lost.is_empty(),
            "{} {}: lost {} records, e.g. {:?}",
            c.lib,
            c.role.name(),
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        if planned && c.role == Role::Manual {
            // Each duplicate with where it was received, first and again.
            let mut first = HashMap::new();
            let again: Vec<(&String, usize, usize)> = e
                .got
                .iter()
                .enumerate()
                .filter_map(|(i, v)| first.insert(v, i).map(|at| (v, at, i)))
                .collect();
            assert_eq!(
                dups,
                0,
                "{} manual: duplicates in a planned switch (value, first, again) of {}: {:?}",
                c.lib,
                e.got.len(),
                &again[..again.len().min(6)]
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// Switches to dc2 and back to dc1 while every client runs.
fn planned(spread: bool) {
    let mut s = Setup::start_with(spread);
    s.progress("clients running on dc1", 50);
    s.flip("dc2", 1);
    s.progress("clients running on dc2", 60);
    s.flip("dc1", 2);
    s.progress("clients running on dc1 again", 60);
    if spread {
        assert!(
            s.kflip
                .log()
                .contains("the fleet's engines caught up replication"),
            "the planned switch waited for the other instance too"
        );
    }
    let dc1 = s.dcs.dc1.addr();
    finish(&mut s, &dc1, true, &Orphans::default());
}

/// dc1's broker process dies while every client runs; the operator flips
/// to dc2.
fn disaster(spread: bool) {
    let mut s = Setup::start_with(spread);
    s.progress("clients running on dc1", 50);
    s.dcs.dc1.kill();
    let acked_before_disaster = Some(s.acked_now());
    s.flip("dc2", 1);
    assert!(
        s.kflip.log().contains("disaster switch"),
        "the switch was not treated as a disaster"
    );
    s.progress("clients running on dc2", 60);
    let dc2 = s.dcs.dc2.addr();
    let orphans = Orphans {
        acked_before_disaster,
        ..Orphans::default()
    };
    finish(&mut s, &dc2, false, &orphans);
}

#[test]
fn planned_switchover_and_failback_with_every_client() {
    planned(false);
}

#[test]
fn disaster_failover_with_every_client() {
    disaster(false);
}

#[test]
fn planned_switchover_and_failback_with_the_engine_spread_over_two_instances() {
    planned(true);
}

#[test]
fn disaster_failover_with_the_engine_spread_over_two_instances() {
    disaster(true);
}

/// Sum of `records=` over kflip's log lines containing `needle`.
fn logged_records(log: &str, needle: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let at = l.find(" records=")? + " records=".len();
            l[at..].split_whitespace().next()?.parse::<usize>().ok()
        })
        .sum()
}

#[test]
fn disaster_then_failback_holds_orphans_back() {
    let mut s = Setup::start_with(false);
    s.progress("clients running on dc1", 50);
    s.dcs.dc1.kill();
    let acked_before_disaster = Some(s.acked_now());
    s.flip("dc2", 1);
    s.progress("clients running on dc2", 60);
    // dc1 returns with its storage: the flow back copies the failover's
    // records to it, and the records dc1 acknowledged but never replicated
    // (orphans) stay there, held back from dc2.
    s.dcs.dc1.restart();
    let (dc1, dc2) = (s.dcs.dc1.addr(), s.dcs.dc2.addr());
    let acked: HashMap<&str, Vec<String>> = s
        .events()
        .iter()
        .filter(|(c, _)| c.role == Role::Producer)
        .map(|(c, e)| (c.lib, e.acked.clone()))
        .collect();
    let on_dc1 = wait_for(
        "dc1 to hold every record acknowledged so far",
        Duration::from_secs(90),
        || {
            let h = s.holdings(&dc1);
            libs()
                .into_iter()
                .all(|lib| acked[lib].iter().all(|v| h[lib].contains_key(v)))
                .then_some(h)
        },
    );
    let on_dc2 = s.holdings(&dc2);
    let mut orphans = Orphans {
        acked_before_disaster,
        ..Orphans::default()
    };
    for lib in libs() {
        let only_dc1 = on_dc1[lib]
            .keys()
            .filter(|v| !on_dc2[lib].contains_key(*v))
            .cloned()
            .collect();
        let doubled = on_dc1[lib]
            .iter()
            .filter(|(v, n)| **n > 1 && on_dc2[lib].get(*v).is_none_or(|m| *m <= 1))
            .map(|(v, _)| v.clone())
            .collect();
        orphans.held.insert(lib, only_dc1);
        orphans.doubled.insert(lib, doubled);
    }
    let held: usize = orphans.held.values().map(|o| o.len()).sum();
    // Every orphan that is a record dc2 lacks was found and reported; the
    // report also counts writes whose retry reached dc2.
    wait_for(
        "kflip to report the orphans",
        Duration::from_secs(60),
        || (logged_records(&s.kflip.log(), "orphans held back") >= held).then_some(()),
    );
    let log = s.kflip.log();
    let rpo = logged_records(&log, "RPO: not replicated");
    let acked_orphans: usize = libs()
        .iter()
        .map(|lib| {
            acked[lib]
                .iter()
                .filter(|v| orphans.held[lib].contains(*v))
                .count()
        })
        .sum();
    assert!(
        rpo >= acked_orphans,
        "the RPO report counted {rpo} records, but {acked_orphans} acknowledged records never reached dc2"
    );
    eprintln!("orphans held on dc1: {held} ({acked_orphans} acknowledged); RPO reported: {rpo}");
    s.flip("dc1", 2);
    assert!(
        s.kflip
            .log()
            .contains("planned switch: holding requests from=dc2 to=dc1"),
        "the failback was not planned"
    );
    s.progress("clients running on dc1 again", 60);
    finish(&mut s, &dc1, false, &orphans);
    let on_dc2 = s.holdings(&dc2);
    for lib in libs() {
        let leaked: Vec<_> = orphans.held[lib]
            .iter()
            .filter(|v| on_dc2[lib].contains_key(*v))
            .collect();
        assert!(
            leaked.is_empty(),
            "{lib}: orphans copied to dc2: {leaked:?}"
        );
    }
}
