//! librdkafka clients that report failures instead of panicking, for
//! tests of logins, TLS handshakes and ACLs: each takes a ready
//! [`ClientConfig`] (see [`super::Broker::client_config`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer, ProducerContext};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::clients::block_on;
use super::wait_for;

/// A client context that keeps every error librdkafka reports with its
/// reason (a failed login, a failed TLS handshake), which a consumer's
/// poll or a producer's delivery report would reduce to an error code.
#[derive(Default)]
struct Errors {
    /// `error: reason`, in order.
    seen: Mutex<Vec<String>>,
}

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.seen
            .lock()
            .expect("errors")
            .push(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Errors {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

impl ConsumerContext for Errors {}

/// Connects with `config` and waits up to `limit` for librdkafka to report
/// an error containing `needle`; returns that error. Panics with every
/// error seen if none matches in time.
pub fn wait_error(config: &ClientConfig, needle: &str, limit: Duration) -> String {
    let p: BaseProducer<Errors> = config
        .create_with_context(Errors::default())
        .expect("client");
    let deadline = Instant::now() + limit;
    loop {
        // A metadata request makes librdkafka connect (and log in).
        let _ = p.client().fetch_metadata(None, Duration::from_millis(200));
        p.poll(Duration::from_millis(50));
        let seen = p.context().seen.lock().expect("errors").clone();
        if let Some(e) = seen.iter().find(|e| e.contains(needle)) {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no error containing {needle:?} within {limit:?}; errors seen: {seen:#?}"
        );
    }
}

/// Produces `values` (key = value) with `config` and acks=all; the first
/// failed delivery's error, if any. A delivery fails after `limit` at most.
pub fn try_produce(
    config: &ClientConfig,
    topic: &str,
    values: &[&str],
    limit: Duration,
) -> Result<(), KafkaError> {
    let p: FutureProducer = config
        .clone()
        .set("acks", "all")
        .set("message.timeout.ms", limit.as_millis().to_string())
        .create()?;
    block_on(async {
        for v in values {
            p.send(
                FutureRecord::to(topic).key(*v).payload(*v),
                Timeout::After(limit),
            )
            .await
            .map_err(|(e, _)| e)?;
        }
        Ok(())
    })
}

/// The group [`try_read`] names: librdkafka wants a `group.id` even to
/// read assigned partitions (with ACLs, a principal needs Read on it).
pub const READER_GROUP: &str = "kflip-test-reader";

/// Reads `count` values of `topic` from the beginning of every partition
/// with `config`, assigned, in [`READER_GROUP`] but committing nothing;
/// the first error librdkafka reports (an authorization failure, say)
/// instead.
pub fn try_read(
    config: &ClientConfig,
    topic: &str,
    count: usize,
    limit: Duration,
) -> Result<Vec<String>, KafkaError> {
    let c: BaseConsumer = config
        .clone()
        .set("group.id", READER_GROUP)
        .set("enable.auto.commit", "false")
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        if let Some(e) = t.error() {
            return Err(KafkaError::MetadataFetch(e.into()));
        }
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    c.assign(&tpl)?;
    poll_values(&c, topic, count, limit)
}

/// Reads `count` values of `topic` as a member of `group` (subscribe,
/// from the earliest offset, committing); the first error instead.
pub fn try_read_group(
    config: &ClientConfig,
    topic: &str,
    group: &str,
    count: usize,
    limit: Duration,
) -> Result<Vec<String>, KafkaError> {
    let c: BaseConsumer = config
        .clone()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()?;
    c.subscribe(&[topic])?;
    let values = poll_values(&c, topic, count, limit)?;
    c.commit_consumer_state(rdkafka::consumer::CommitMode::Sync)?;
    Ok(values)
}

fn poll_values(
    c: &BaseConsumer,
    topic: &str,
    count: usize,
    limit: Duration,
) -> Result<Vec<String>, KafkaError> {
    let mut out = Vec::new();
    let mut failed = None;
    wait_for(&format!("{count} values of {topic}"), limit, || {
        while out.len() < count {
            match c.poll(Duration::from_millis(100))? {
                Ok(m) => out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into()),
                Err(e) => {
                    failed = Some(e);
                    return Some(());
                }
            }
        }
        Some(())
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
