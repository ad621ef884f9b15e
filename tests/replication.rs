//! The replication engine against two real tansu clusters.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use support::clients::{self, create_topic};
use support::{wait_for, Kflip, TwoClusters};

/// A record as read back, with what replication must preserve.
#[derive(Clone, Debug, PartialEq)]
struct Rec {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    ts: Option<i64>,
    headers: Vec<(String, Vec<u8>)>,
}

fn read(bootstrap: &str, topic: &str) -> Vec<Rec> {
    let c: BaseConsumer = clients::config(bootstrap)
        .set("group.id", "t-reader")
        .create()
        .unwrap();
    let md = match c.fetch_metadata(Some(topic), Duration::from_secs(5)) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    let Some(t) = md.topics().first() else {
        return Vec::new();
    };
    if t.error().is_some() {
        return Vec::new();
    }
    let mut tpl = TopicPartitionList::new();
    let mut highs = HashMap::new();
    for p in t.partitions() {
        let (_, high) = c
            .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
            .unwrap_or((0, 0));
        if high > 0 {
            highs.insert(p.id(), high);
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    let mut out = Vec::new();
    if highs.is_empty() {
        return out;
    }
    c.assign(&tpl).unwrap();
    let mut done: HashMap<i32, bool> = highs.keys().map(|&p| (p, false)).collect();
    wait_for(
        &format!("read {topic} on {bootstrap}"),
        Duration::from_secs(30),
        || {
            while let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                out.push(Rec {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| k.to_vec()),
                    value: m.payload().map(|v| v.to_vec()),
                    ts: m.timestamp().to_millis(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                });
                if m.offset() + 1 >= highs[&m.partition()] {
                    done.insert(m.partition(), true);
                }
            }
            done.values().all(|&d| d).then_some(())
        },
    );
    out
}

fn count(bootstrap: &str, topic: &str) -> i64 {
    let c: BaseConsumer = clients::config(bootstrap).create().unwrap();
    let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return 0;
    };
    let Some(t) = md.topics().first() else {
        return 0;
    };
    t.partitions()
        .iter()
        .map(|p| {
            c.fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                .map(|w| w.1)
                .unwrap_or(0)
        })
        .sum()
}

/// Produces `n` records to `topic` directly: key `k{i}`, value `{prefix}{i}`,
/// a header, and CreateTime an hour ago plus `i` ms.
fn produce(bootstrap: &str, topic: &str, prefix: &str, n: usize, partitions: i32) {
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    let p: ThreadedProducer<DefaultProducerContext> = clients::config(bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in 0..n {
        let key = format!("k{i}");
        let value = format!("{prefix}{i}");
        let h = OwnedHeaders::new().insert(Header {
            key: "app",
            value: Some(b"demo".as_slice()),
        });
        let mut rec = BaseRecord::to(topic)
            .key(&key)
            .payload(&value)
            .headers(h)
            .partition((i as i32) % partitions)
            .timestamp(base + i as i64);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn flows(dcs: &TwoClusters, flows: &str) -> String {
    format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\n  dc2: {{ bootstrap: \"{}\" }}\nreplication:\n  flows:\n{flows}",
        dcs.dc1.addr(),
        dcs.dc2.addr()
    )
}

const FAST: &str = "discovery_interval: 500ms, group_sync_interval: 500ms, config_sync_interval: 1s, checkpoint_interval: 200ms";

#[test]
fn white_paper_group_resumes_on_dc2_exactly_where_it_left_dc1() {
    let dcs = TwoClusters::start();
    create_topic(&dcs.dc1.addr(), "orders", 3);
    let k = Kflip::replicate(&flows(
        &dcs,
        &format!("    - {{ source: dc1, target: dc2, topics: [\"orders\"], {FAST} }}\n"),
    ));
    produce(&dcs.dc1.addr(), "orders", "v", 10_000, 3);

    // A group on dc1 consumes 8000 records and commits exactly those.
    let c: BaseConsumer = clients::config(&dcs.dc1.addr())
        .set("group.id", "wp")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&["orders"]).unwrap();
    let mut seen = Vec::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    wait_for("8000 records on dc1", Duration::from_secs(60), || {
        while let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            seen.push(String::from_utf8_lossy(m.payload().unwrap()).to_string());
            next.insert(m.partition(), m.offset() + 1);
            if seen.len() >= 8000 {
                break;
            }
        }
        (seen.len() >= 8000).then_some(())
    });
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in &next {
        tpl.add_partition_offset("orders", p, Offset::Offset(o))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
    drop(c);

    // Everything reaches dc2 with partition, key, value, headers and timestamp.
    wait_for("10000 records on dc2", Duration::from_secs(60), || {
        (count(&dcs.dc2.addr(), "orders") >= 10_000).then_some(())
    });
    let src = read(&dcs.dc1.addr(), "orders");
    let dst = read(&dcs.dc2.addr(), "orders");
    assert_eq!(dst.len(), 10_000, "no duplicates on dc2");
    let by_value: HashMap<_, _> = dst.iter().map(|r| (r.value.clone(), r)).collect();
    for s in &src {
        let d = by_value.get(&s.value).expect("every record copied");
        assert_eq!((d.partition, &d.key, d.ts), (s.partition, &s.key, s.ts));
        assert!(d.headers.contains(&("app".into(), b"demo".to_vec())));
        let origin = d
            .headers
            .iter()
            .find(|(k, _)| k == "kflip-origin")
            .expect("provenance header");
        let text = String::from_utf8_lossy(&origin.1);
        assert!(
            text.starts_with(&format!("dc1/orders/{}/{}/", s.partition, s.offset)),
            "{text}"
        );
    }

    // The group's offsets are translated onto dc2 (no members there).
    let target: BaseConsumer = clients::config(&dcs.dc2.addr())
        .set("group.id", "wp")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut want = TopicPartitionList::new();
    for p in 0..3 {
        want.add_partition("orders", p);
    }
    wait_for("translated offsets on dc2", Duration::from_secs(30), || {
        let got = target
            .committed_offsets(want.clone(), Duration::from_secs(5))
            .ok()?;
        let total: i64 = got
            .elements()
            .iter()
            .filter_map(|e| e.offset().to_raw())
            .filter(|&o| o >= 0)
            .sum();
        (total == 8000).then_some(())
    });
    // The same group on dc2 reads exactly the 2000 it had not read.
    target.subscribe(&["orders"]).unwrap();
    let mut rest = Vec::new();
    wait_for("the remaining 2000 on dc2", Duration::from_secs(60), || {
        while let Some(Ok(m)) = target.poll(Duration::from_millis(100)) {
            rest.push(String::from_utf8_lossy(m.payload().unwrap()).to_string());
        }
        (rest.len() >= 2000).then_some(())
    });
    let mut all: Vec<String> = seen.iter().chain(rest.iter()).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 10_000, "no record lost and none read twice");
    assert_eq!(rest.len(), 2000);
    assert!(k.log().contains("flow started"));
}
