//! A flow that stops while clients use the proxy must not hold them up.
//!
//! `kflip run` shares one process between the proxy and the engine, and the
//! proxy's async side calls the engine (observed OffsetCommits, lag, a
//! switch), while a reload stops flows by joining their threads. A stop is
//! slow when the target does not answer: the flow drains its copies in
//! flight and writes a last checkpoint, each bounded. This test makes such
//! a stop happen and checks, by the order of events, that the proxy
//! answers a Produce and an OffsetCommit (of a group the flow translated)
//! while the stop is still going on.

mod support;

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use support::clients::{self, create_topic};
use support::{wait_for, Kflip, TwoClusters};

/// Logged by the engine when a reload stops a flow, before the stop.
const STOPPING: &str = "stopping flow (removed or changed)";
/// Logged by the flow's thread once it has drained and checkpointed.
const STOPPED: &str = "flow stopped";

fn config(dcs: &TwoClusters, flows: &str) -> String {
    format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\n  dc2: {{ bootstrap: \"{}\" }}\n\
         proxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n\
         replication:\n  flows:\n{flows}",
        dcs.dc1.addr(),
        dcs.dc2.addr()
    )
}

/// Produces `n` records through `p` and waits until each is acknowledged.
fn produce(p: &ThreadedProducer<DefaultProducerContext>, prefix: &str, n: usize) {
    for i in 0..n {
        let v = format!("{prefix}-{i}");
        p.send(BaseRecord::to("es-orders").key(&v).payload(&v))
            .map_err(|(e, _)| e)
            .expect("queue a record");
    }
    p.flush(Duration::from_secs(30))
        .expect("the proxy acknowledged every record");
}

/// Commits `offset` for es-orders[0] through `c`; the first commit of a
/// group may meet a coordinator that is still loading, so it asks again.
fn commit(c: &BaseConsumer, offset: i64) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("es-orders", 0, Offset::Offset(offset))
        .expect("offset");
    wait_for(
        "the proxy to answer an OffsetCommit",
        Duration::from_secs(30),
        || c.commit(&tpl, CommitMode::Sync).ok(),
    );
}

#[test]
fn a_flow_stopping_slowly_does_not_hold_up_the_proxy() {
    if !support::require_kafka("a_flow_stopping_slowly_does_not_hold_up_the_proxy") {
        return;
    }
    let mut dcs = TwoClusters::start();
    create_topic(&dcs.dc1.addr(), "es-orders", 1);
    // No checkpoint before the stop (1h): the stop's last checkpoint then
    // always has something to write to the target.
    let flow = "    - { source: dc1, target: dc2, topics: [\"es-.*\"], groups: [\"es-app\"], \
                discovery_interval: 200ms, group_sync_interval: 1h, checkpoint_interval: 1h, fetch_wait: 10ms }\n";
    let k = Kflip::start_command("run", &config(&dcs, flow), "kflip=debug,info");
    k.wait_log("replicating topic", Duration::from_secs(60));

    // Clients of the proxy, connected before the target goes away.
    let producer: ThreadedProducer<DefaultProducerContext> = clients::config(&k.addr())
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    let consumer: BaseConsumer = clients::config(&k.addr())
        .set("group.id", "es-app")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    produce(&producer, "before", 10);
    let copied = clients::config(&dcs.dc2.addr())
        .set("group.id", "es-reader")
        .create::<BaseConsumer>()
        .expect("reader");
    wait_for("the copies on dc2", Duration::from_secs(60), || {
        let (_, high) = copied
            .fetch_watermarks("es-orders", 0, Duration::from_secs(5))
            .ok()?;
        (high >= 10).then_some(())
    });
    drop(copied);
    commit(&consumer, 5);

    // The target goes away: copies of what is produced now stay in flight,
    // and the flow's stop waits (bounded) for them and its last checkpoint.
    dcs.dc2.kill();
    produce(&producer, "during", 10);
    k.write_config(&config(&dcs, ""));
    k.wait_log(STOPPING, Duration::from_secs(30));

    // The proxy answers while the stop is in progress.
    produce(&producer, "stopping", 3);
    commit(&consumer, 12);
    let md = consumer
        .fetch_metadata(Some("es-orders"), Duration::from_secs(10))
        .expect("the proxy answers Metadata");
    assert_eq!(md.topics().len(), 1);
    let log = k.log();
    assert!(
        !log.contains(STOPPED),
        "the flow finished stopping before the proxy answered, so this run shows nothing; \
         its stop was expected to wait for the unreachable target"
    );

    // And the stop does end.
    k.wait_log(STOPPED, Duration::from_secs(120));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("es-orders", 0);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets through the proxy");
    assert_eq!(committed.elements()[0].offset(), Offset::Offset(12));
}
