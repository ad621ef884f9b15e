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
    let admin: AdminClient<DefaultClientContext> =
        config(bootstrap).create().expect("admin client");
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
    read_matching(bootstrap, topic, |_| true)
}

/// Values of the records of `topic` written to this cluster by clients,
/// not copied there by kflip (no `kflip-origin` header).
#[allow(dead_code)]
pub fn natives(bootstrap: &str, topic: &str) -> Vec<String> {
    use rdkafka::message::Headers;
    read_matching(bootstrap, topic, |m| {
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
    keep: impl Fn(&rdkafka::message::BorrowedMessage<'_>) -> bool,
) -> BTreeMap<i32, Vec<String>> {
    let c: BaseConsumer = config(bootstrap)
        .set("group.id", "kflip-test-reader")
        .set("enable.auto.commit", "false")
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
        let (_, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
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
