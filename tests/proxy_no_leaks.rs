//! No real broker address, port or cluster id reaches a client: every
//! rewritten API is called at every version kflip advertises, and every
//! response byte is scanned.

mod support;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, FetchRequest, MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::time::Duration;
use support::clients::create_topic;
use support::raw::Raw;

use support::{wait_for, Broker, Kflip};

struct Leak {
    port: u16,
    cluster_id: String,
}

impl Leak {
    fn check(&self, what: &str, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        assert!(
            !text.contains(&self.cluster_id),
            "{what}: real cluster id leaked"
        );
        assert!(
            !text.contains(&self.port.to_string()),
            "{what}: real port leaked as text"
        );
        let be = i32::from(self.port).to_be_bytes();
        assert!(!raw.windows(4).any(|w| w == be), "{what}: real port leaked");
    }
}

fn batch() -> bytes::Bytes {
    support::raw::one_record_batch(
        Some(bytes::Bytes::from_static(b"k")),
        Some(bytes::Bytes::from_static(b"v")),
    )
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

#[test]
fn every_rewritten_response_is_free_of_real_addresses() {
    let b = Broker::start("real-cluster-7f3a");
    create_topic(&b.addr(), "leaks", 2);
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n",
        b.addr()
    );
    let k = Kflip::start(&yaml);
    let leak = Leak {
        port: b.port,
        cluster_id: b.cluster_id.clone(),
    };
    let mut c = Raw::connect(&k.addr());
    let versions = c.versions();
    let range = |key: ApiKey| versions.iter().find(|(k, _)| *k == key).map(|(_, r)| *r);
    let mut checked = Vec::new();

    let md = range(ApiKey::Metadata).expect("Metadata advertised");
    for v in md.min.max(1)..=md.max {
        let req = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s("leaks")))),
        ]));
        let (resp, raw) = c.call(&req, v);
        leak.check(&format!("Metadata v{v}"), &raw);
        assert!(!resp.brokers.is_empty());
        for broker in &resp.brokers {
            assert_ne!(broker.port, i32::from(b.port));
        }
        if v >= 2 {
            assert_eq!(resp.cluster_id.as_ref().map(|c| c.as_str()), Some("kflip"));
        }
        checked.push(format!("Metadata v{v}"));
    }

    let fc = range(ApiKey::FindCoordinator).expect("FindCoordinator advertised");
    for v in fc.min..=fc.max {
        let req = if v < 4 {
            FindCoordinatorRequest::default().with_key(s("group-leaks"))
        } else {
            FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![s("group-leaks"), s("other")])
        };
        // Apache Kafka answers COORDINATOR_NOT_AVAILABLE until it has
        // created its offsets topic: ask until it names the coordinators.
        let resp = wait_for(
            &format!("FindCoordinator v{v} to find the coordinators"),
            Duration::from_secs(30),
            || {
                let (resp, raw) = c.call(&req, v);
                leak.check(&format!("FindCoordinator v{v}"), &raw);
                let found = if v < 4 {
                    resp.error_code == 0
                } else {
                    resp.coordinators.iter().all(|c| c.error_code == 0)
                };
                found.then_some(resp)
            },
        );
        if v >= 4 {
            assert_eq!(resp.coordinators.len(), 2);
        }
        checked.push(format!("FindCoordinator v{v}"));
    }

    let dc = range(ApiKey::DescribeCluster).expect("DescribeCluster advertised");
    {
        for v in dc.min..=dc.max {
            let (_, raw) = c.call(&DescribeClusterRequest::default(), v);
            leak.check(&format!("DescribeCluster v{v}"), &raw);
            checked.push(format!("DescribeCluster v{v}"));
        }
    }

    let pr = range(ApiKey::Produce).expect("Produce advertised");
    for v in pr.min..=pr.max {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s("leaks")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch())),
                    // A partition that does not exist draws an error, and with
                    // KIP-951 a leader hint.
                    PartitionProduceData::default()
                        .with_index(9)
                        .with_records(Some(batch())),
                ])]);
        let (_, raw) = c.call(&req, v);
        leak.check(&format!("Produce v{v}"), &raw);
        checked.push(format!("Produce v{v}"));
    }

    let fe = range(ApiKey::Fetch).expect("Fetch advertised");
    for v in fe.min..=fe.max {
        let req = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(10)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(s("leaks")))
                .with_partitions(vec![
                    // Only an existing partition: tansu 0.6's sqlite engine
                    // panics on a Fetch for one that does not exist.
                    FetchPartition::default()
                        .with_partition(0)
                        .with_partition_max_bytes(1 << 20),
                ])]);
        let corr = c.send(&req, v);
        let raw = c
            .recv()
            .unwrap_or_else(|| panic!("no Fetch v{v} response; broker log:\n{}", b.log()));
        assert_eq!(i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]), corr);
        leak.check(&format!("Fetch v{v}"), &raw);
        checked.push(format!("Fetch v{v}"));
    }
    assert!(checked.len() > 20, "too few responses checked: {checked:?}");
    eprintln!(
        "checked {} responses: {}",
        checked.len(),
        checked.join(", ")
    );
}
