//! Real clients: librdkafka in-process (rdkafka crate), and Python
//! (confluent-kafka, kafka-python) and kcat as subprocesses.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::TopicPartitionList;

use super::{repo, wait_for};

/// A librdkafka config pointing at `bootstrap`.
pub fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        // tansu 0.6 holds every Fetch for the whole wait, even with data ready.
        .set("fetch.wait.max.ms", "10")
        // ...and takes very long to build large fetch responses of records
        // with headers, so tests fetch in small steps.
        .set("max.partition.fetch.bytes", "65536")
        .set("topic.metadata.refresh.interval.ms", "2000");
    c
}

/// Creates `topic` with `partitions` on the broker at `bootstrap`.
///
/// tansu lacks CreatePartitions, so tests create topics with their final
/// partition count up front.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    create_topic_as(config(bootstrap), topic, partitions);
}

/// Creates `topic` with `partitions` through an admin client made from
/// `config` (a secure broker's login, say).
pub fn create_topic_as(config: ClientConfig, topic: &str, partitions: i32) {
    let bootstrap = config.get("bootstrap.servers").unwrap_or("?").to_string();
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let res = rt
        .block_on(admin.create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create_topics");
    for r in res {
        if let Err((t, e)) = r {
            if e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                panic!("create topic {t} on {bootstrap}: {e}");
            }
        }
    }
}

/// Runs a future to completion on a one-off runtime (for the admin client).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// An admin client for the cluster at `bootstrap`.
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    config(bootstrap).create().expect("admin client")
}

fn admin_opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

/// Creates `topic` with `partitions`, replication factor `rf` and config
/// overrides `configs` on the cluster at `bootstrap`.
pub fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rf: i32,
    configs: &[(&str, &str)],
) {
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(rf));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let res =
        block_on(admin(bootstrap).create_topics([&new], &admin_opts())).expect("create_topics");
    for r in res {
        if let Err((t, e)) = r {
            panic!("create topic {t} on {bootstrap}: {e}");
        }
    }
}

/// The config values of `topic` (every config, defaults included).
pub fn topic_configs(bootstrap: &str, topic: &str) -> BTreeMap<String, String> {
    use rdkafka::admin::ResourceSpecifier;
    let res = block_on(
        admin(bootstrap).describe_configs([&ResourceSpecifier::Topic(topic)], &admin_opts()),
    )
    .expect("describe_configs");
    let mut out = BTreeMap::new();
    for r in res.into_iter().flatten() {
        for e in r.entries {
            if let Some(v) = e.value {
                out.insert(e.name, v);
            }
        }
    }
    out
}

/// Sets one config of `topic` (IncrementalAlterConfigs is not in the
/// rdkafka crate: AlterConfigs with the overrides kept).
pub fn alter_topic_config(bootstrap: &str, topic: &str, key: &str, value: &str) {
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    let res = block_on(
        admin(bootstrap).describe_configs([&ResourceSpecifier::Topic(topic)], &admin_opts()),
    )
    .expect("describe_configs");
    let mut keep: BTreeMap<String, String> = BTreeMap::new();
    for r in res.into_iter().flatten() {
        for e in r.entries {
            if e.source == rdkafka::admin::ConfigSource::DynamicTopic {
                if let Some(v) = e.value {
                    keep.insert(e.name, v);
                }
            }
        }
    }
    keep.insert(key.to_string(), value.to_string());
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in &keep {
        alter = alter.set(k, v);
    }
    let res =
        block_on(admin(bootstrap).alter_configs([&alter], &admin_opts())).expect("alter_configs");
    for r in res {
        if let Err((_, e)) = r {
            panic!("alter {topic} {key}={value} on {bootstrap}: {e}");
        }
    }
}

/// Grows `topic` to `total` partitions.
pub fn add_partitions(bootstrap: &str, topic: &str, total: usize) {
    use rdkafka::admin::NewPartitions;
    let res = block_on(
        admin(bootstrap).create_partitions([&NewPartitions::new(topic, total)], &admin_opts()),
    )
    .expect("create_partitions");
    for r in res {
        if let Err((_, e)) = r {
            panic!("grow {topic} to {total} on {bootstrap}: {e}");
        }
    }
}

/// The partition count of `topic` (0 if it does not exist).
pub fn partitions(bootstrap: &str, topic: &str) -> usize {
    let c: BaseConsumer = config(bootstrap).create().expect("consumer");
    c.fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()
        .and_then(|md| {
            md.topics()
                .first()
                .filter(|t| t.error().is_none())
                .map(|t| t.partitions().len())
        })
        .unwrap_or(0)
}

/// Produces `values` (key = value) with acks=all and waits for every delivery.
pub fn produce(bootstrap: &str, topic: &str, values: &[String]) {
    let p: ThreadedProducer<DefaultProducerContext> = config(bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for v in values {
        loop {
            match p.send(BaseRecord::to(topic).key(v.as_str()).payload(v.as_str())) {
                Ok(()) => break,
                Err((e, _)) if e.to_string().contains("Queue full") => {
                    p.poll(Duration::from_millis(10))
                }
                Err((e, _)) => panic!("produce to {topic} via {bootstrap}: {e}"),
            }
        }
    }
    p.flush(Duration::from_secs(30))
        .expect("all records delivered");
}

/// Reads every record of `topic` from the beginning to the end the broker
/// reports now, bypassing any group. Returns values by partition, in order.
pub fn read_all(bootstrap: &str, topic: &str) -> BTreeMap<i32, Vec<String>> {
    read_matching(bootstrap, topic, "read_committed", |_| true)
}

/// Every value of `topic`, aborted transactions' records included
/// (`isolation.level=read_uncommitted`), flattened.
pub fn values_uncommitted(bootstrap: &str, topic: &str) -> Vec<String> {
    read_matching(bootstrap, topic, "read_uncommitted", |_| true)
        .into_values()
        .flatten()
        .collect()
}

/// Values of the records of `topic` written to this cluster by clients,
/// not copied there by kflip (no `kflip-origin` header).
#[allow(dead_code)]
pub fn natives(bootstrap: &str, topic: &str) -> Vec<String> {
    use rdkafka::message::Headers;
    read_matching(bootstrap, topic, "read_committed", |m| {
        !m.headers()
            .is_some_and(|h| h.iter().any(|h| h.key == "kflip-origin"))
    })
    .into_values()
    .flatten()
    .collect()
}

/// Values of the records of `topic` that `keep` accepts, per partition.
fn read_matching(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    keep: impl Fn(&rdkafka::message::BorrowedMessage<'_>) -> bool,
) -> BTreeMap<i32, Vec<String>> {
    let c: BaseConsumer = config(bootstrap)
        .set("group.id", "kflip-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut out = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    let mut highs = BTreeMap::new();
    for &p in &parts {
        // A partition just created or just moved answers
        // NOT_LEADER_OR_FOLLOWER for a moment: ask until it answers.
        let (_, high) = wait_for("watermarks", Duration::from_secs(30), || {
            c.fetch_watermarks(topic, p, Duration::from_secs(10)).ok()
        });
        highs.insert(p, high);
        out.insert(p, Vec::new());
        if high > 0 {
            tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .unwrap();
        }
    }
    if tpl.count() == 0 {
        return out;
    }
    c.assign(&tpl).expect("assign");
    let mut done: BTreeMap<i32, bool> = highs.iter().map(|(&p, &h)| (p, h == 0)).collect();
    wait_for(
        &format!("reading {topic} from {bootstrap}"),
        Duration::from_secs(30),
        || {
            // Records written meanwhile keep coming: stop at the ends read
            // first, not when the topic goes quiet.
            while !done.values().all(|&d| d) {
                let Some(m) = c.poll(Duration::from_millis(100)) else {
                    break;
                };
                let m = m.expect("consume");
                let p = m.partition();
                if m.offset() >= highs[&p] {
                    done.insert(p, true);
                    continue;
                }
                if keep(&m) {
                    let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                    out.get_mut(&p).unwrap().push(v);
                }
                if m.offset() + 1 >= highs[&p] {
                    done.insert(p, true);
                }
            }
            // A partition that ends in transaction markers (or aborted
            // records, read_committed) delivers no record at its end: its
            // position tells it was read.
            if let Ok(pos) = c.position() {
                for e in pos.elements() {
                    if let rdkafka::Offset::Offset(o) = e.offset() {
                        if highs.get(&e.partition()).is_some_and(|&h| o >= h) {
                            done.insert(e.partition(), true);
                        }
                    }
                }
            }
            done.values().all(|&d| d).then_some(())
        },
    );
    out
}

/// All values of `topic` on a cluster, flattened.
pub fn values(bootstrap: &str, topic: &str) -> Vec<String> {
    read_all(bootstrap, topic).into_values().flatten().collect()
}

/// Output of a client subprocess.
pub struct Run {
    /// Whether it exited 0.
    pub ok: bool,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

/// Runs `python3 tests/clients/<script> args...`.
pub fn python(script: &str, args: &[&str]) -> Run {
    let out = Command::new("python3")
        .arg(repo().join("tests/clients").join(script))
        .args(args)
        .output()
        .expect("run python3");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// Runs an install script of `scripts/` once per test process and returns
/// the path it prints (the script is idempotent and cached).
fn installed(script: &str, env: &str) -> String {
    if let Ok(p) = std::env::var(env) {
        return p;
    }
    let out = Command::new(repo().join("scripts").join(script))
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A command running kflip's Java test client (kafka-clients 4.4, built by
/// scripts/install-java-clients.sh; `$KFLIP_JAVA_CLIENTS` names the build).
pub fn java_client() -> Command {
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| installed("install-java-clients.sh", "KFLIP_JAVA_CLIENTS"));
    let mut c = Command::new("java");
    c.args([
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:-UsePerfData",
        "-cp",
    ])
    .arg(format!("{dir}/kflip-test-clients.jar:{dir}/lib/*"))
    .arg("dev.kflip.test.FailoverClient");
    c
}

/// A command running kflip's Go test client (franz-go, built by
/// scripts/install-go-clients.sh; `$KFLIP_GO_CLIENT` names the binary).
pub fn go_client() -> Command {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    Command::new(BIN.get_or_init(|| installed("install-go-clients.sh", "KFLIP_GO_CLIENT")))
}

/// Runs a client command to completion.
pub fn run(mut cmd: Command) -> Run {
    let out = cmd.output().expect("run a client");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}
