//! Editing `proxy.active` moves a running producer to the other cluster
//! without restarting it.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use support::clients::{self, create_topic};
use support::{wait_for, Kflip, TwoClusters};

#[derive(Default, Clone)]
struct Deliveries {
    ok: Arc<Mutex<Vec<String>>>,
    failed: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => self
                .ok
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(m.payload().unwrap()).into()),
            Err((e, m)) => self.failed.lock().unwrap().push(format!(
                "{}: {e}",
                String::from_utf8_lossy(m.payload().unwrap())
            )),
        }
    }
}

fn high_watermark(bootstrap: &str, topic: &str) -> i64 {
    let c: BaseConsumer = clients::config(bootstrap).create().unwrap();
    (0..2)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|w| w.1)
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn flipping_active_moves_a_running_producer_to_dc2() {
    let dcs = TwoClusters::start();
    for b in [&dcs.dc1, &dcs.dc2] {
        create_topic(&b.addr(), "flip", 2);
    }
    let k = Kflip::start(&dcs.config("dc1", ""));

    let ctx = Deliveries::default();
    let producer: ThreadedProducer<Deliveries> = clients::config(&k.addr())
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .create_with_context(ctx.clone())
        .unwrap();
    let producer = Arc::new(producer);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (producer, stop) = (producer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = format!("m-{i}");
                if producer
                    .send(BaseRecord::to("flip").key(&v).payload(&v))
                    .is_ok()
                {
                    i += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            i
        })
    };

    wait_for("deliveries to dc1", Duration::from_secs(30), || {
        (ctx.ok.lock().unwrap().len() >= 100).then_some(())
    });
    assert_eq!(
        high_watermark(&dcs.dc2.addr(), "flip"),
        0,
        "nothing on dc2 before the flip"
    );

    k.write_config(&dcs.config("dc2", ""));
    k.wait_log("switching active cluster", Duration::from_secs(10));
    let before = ctx.ok.lock().unwrap().len();
    wait_for("deliveries to land on dc2", Duration::from_secs(30), || {
        (high_watermark(&dcs.dc2.addr(), "flip") >= 100).then_some(())
    });
    wait_for(
        "more deliveries after the flip",
        Duration::from_secs(30),
        || (ctx.ok.lock().unwrap().len() >= before + 100).then_some(()),
    );

    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    producer.flush(Duration::from_secs(30)).expect("flush");
    let failed = ctx.failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "the producer saw errors across the flip: {:?}",
        &failed[..failed.len().min(5)]
    );

    let dc1: HashSet<String> = clients::values(&dcs.dc1.addr(), "flip")
        .into_iter()
        .collect();
    let dc2: HashSet<String> = clients::values(&dcs.dc2.addr(), "flip")
        .into_iter()
        .collect();
    let delivered = ctx.ok.lock().unwrap().clone();
    assert_eq!(
        delivered.len() as u64,
        sent,
        "every record was acknowledged"
    );
    let lost: Vec<&String> = delivered
        .iter()
        .filter(|v| !dc1.contains(*v) && !dc2.contains(*v))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records are on neither cluster",
        lost.len()
    );
    assert!(!dc2.is_empty() && !dc1.is_empty());
    // The flip is one-way: once records reach dc2, later ones do not go back.
    let last_dc1 = dc1
        .iter()
        .map(|v| v[2..].parse::<u64>().unwrap())
        .max()
        .unwrap();
    let first_dc2 = dc2
        .iter()
        .map(|v| v[2..].parse::<u64>().unwrap())
        .min()
        .unwrap();
    assert!(
        first_dc2 <= last_dc1 + 1000,
        "gap between clusters is implausibly large"
    );
    assert!(
        dc2.iter()
            .map(|v| v[2..].parse::<u64>().unwrap())
            .max()
            .unwrap()
            > last_dc1,
        "the newest records are on dc2"
    );
    assert!(k.log().contains("epoch=1"));
}

/// Produces one record `value` to partition 0 of `topic` on a connection of
/// its own, opened now; returns whether it was acknowledged.
fn produce_on_new_connection(addr: &str, topic: &str, value: &str) -> bool {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut raw = support::raw::Raw::connect(addr);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(support::raw::one_record_batch(
                    None,
                    Some(bytes::Bytes::from(value.to_string())),
                )))])]);
    let (resp, _) = raw.call(&req, 9);
    resp.responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .all(|p| p.error_code == 0)
}

/// The session gate: a connection opened while a planned switch holds
/// waits for the switch and then writes to the new cluster. A long-poll
/// Fetch in flight on dc1 keeps the hold open for a few seconds (the switch
/// drains in-flight requests), long enough to open connections inside it.
#[test]
fn connections_opened_during_the_hold_never_reach_the_old_cluster() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let dcs = TwoClusters::start();
    for b in [&dcs.dc1, &dcs.dc2] {
        create_topic(&b.addr(), "gate", 1);
        create_topic(&b.addr(), "gate-idle", 1);
    }
    let k = Kflip::start(&dcs.config("dc1", "  switch_drain: 20s\n"));
    assert!(produce_on_new_connection(&k.addr(), "gate", "before"));

    // A consumer's long poll on an empty partition, in flight on dc1.
    let mut poller = support::raw::Raw::connect(&k.addr());
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(6_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("gate-idle")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    poller.send(&fetch, 11);

    k.write_config(&dcs.config("dc2", "  switch_drain: 20s\n"));
    k.wait_log("planned switch: holding requests", Duration::from_secs(20));
    // Connections opened now, while the switch holds; each records whether
    // the switch had finished by the time it connected.
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let (addr, log) = (k.addr(), k.path("kflip.log"));
            std::thread::spawn(move || {
                let during_hold = !std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("switched active cluster");
                let ok = produce_on_new_connection(&addr, "gate", &format!("held-{i}"));
                (during_hold, ok)
            })
        })
        .collect();
    let results: Vec<(bool, bool)> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        results.iter().all(|&(_, ok)| ok),
        "every held record is acknowledged: {results:?}"
    );
    assert!(
        results.iter().any(|&(during, _)| during),
        "at least one connection opened while the switch held"
    );
    k.wait_log("switched active cluster", Duration::from_secs(30));
    let dc1 = clients::values(&dcs.dc1.addr(), "gate");
    let dc2 = clients::values(&dcs.dc2.addr(), "gate");
    assert_eq!(
        dc1,
        vec!["before".to_string()],
        "nothing written to dc1 during the hold"
    );
    assert_eq!(dc2.len(), 6, "every held record went to dc2: {dc2:?}");
}
