//! Rewrite filters: round trips at every version, and no real address or id
//! survives.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{
    self, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse,
    MetadataResponse, ProduceResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use uuid::Uuid;

use super::fetch::stream_fetch;
use super::rewrite::{NodeMap, Rewritable};
use crate::codec::varint::put_uvarint;

const REAL_HOST: &str = "real-broker.internal";
const REAL_CLUSTER: &str = "real-cluster-id";

/// Real ids 100, 101, 102 map to 0, 1, 2; ports 9100 + virtual id.
struct Fake;

impl NodeMap for Fake {
    fn node(&self, real: i32) -> i32 {
        if real < 0 {
            real
        } else {
            real - 100
        }
    }
    fn endpoint(&self, real: i32) -> (StrBytes, i32) {
        (
            StrBytes::from_static_str("proxy.local"),
            9100 + self.node(real),
        )
    }
    fn cluster_id(&self) -> StrBytes {
        StrBytes::from_static_str("kflip")
    }
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn frame<M: Encodable>(api: ApiKey, version: i16, body: &M) -> Bytes {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(77)
        .encode(&mut buf, api.response_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.freeze()
}

/// Rewrites a payload and returns the re-encoded frame (without prefix).
fn run(api: ApiKey, version: i16, payload: Bytes) -> (Rewritable, Bytes) {
    let mut r = Rewritable::decode(api, version, payload).unwrap().unwrap();
    r.rewrite(&Fake);
    let out = r.encode().unwrap().freeze();
    let len = i32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
    assert_eq!(len, out.len() - 4);
    let again = Rewritable::decode(api, version, out.slice(4..))
        .unwrap()
        .unwrap();
    (again, out.slice(4..))
}

fn assert_clean(bytes: &[u8]) {
    let hay = String::from_utf8_lossy(bytes);
    assert!(!hay.contains(REAL_HOST), "real host leaked");
    assert!(!hay.contains(REAL_CLUSTER), "real cluster id leaked");
    let mut port = BytesMut::new();
    port.put_i32(19092);
    assert!(
        !bytes.windows(4).any(|w| w == &port[..]),
        "real port leaked"
    );
}

fn metadata() -> MetadataResponse {
    let brokers = (100..103)
        .map(|id| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(s(REAL_HOST))
                .with_port(19092)
        })
        .collect();
    let partition = MetadataResponsePartition::default()
        .with_leader_id(BrokerId(101))
        .with_leader_epoch(17)
        .with_replica_nodes(vec![BrokerId(101), BrokerId(102)])
        .with_isr_nodes(vec![BrokerId(101)])
        .with_offline_replicas(vec![BrokerId(102)]);
    let topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(s("orders"))))
        .with_topic_id(Uuid::from_u128(0xfeed))
        .with_partitions(vec![partition]);
    let mut m = MetadataResponse::default()
        .with_brokers(brokers)
        .with_controller_id(BrokerId(102))
        .with_topics(vec![topic]);
    m.cluster_id = Some(s(REAL_CLUSTER));
    m.unknown_tagged_fields
        .insert(99, Bytes::from_static(b"keep"));
    m
}

#[test]
fn metadata_every_version() {
    for v in 1..=13 {
        let mut body = metadata();
        if v < 2 {
            body.cluster_id = None;
        }
        if v < 9 {
            body.unknown_tagged_fields.clear();
        }
        if !(8..=10).contains(&v) {
            body.cluster_authorized_operations = i32::MIN;
        }
        let (r, out) = run(ApiKey::Metadata, v, frame(ApiKey::Metadata, v, &body));
        assert_clean(&out);
        let super::rewrite::Body::Metadata(m) = r.body() else {
            panic!()
        };
        assert_eq!(
            m.brokers.iter().map(|b| b.node_id.0).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(m.brokers.iter().all(|b| b.host.as_str() == "proxy.local"));
        assert_eq!(m.brokers[1].port, 9101);
        assert_eq!(m.controller_id.0, 2, "v{v}");
        let p = &m.topics[0].partitions[0];
        assert_eq!(p.leader_id.0, 1);
        assert_eq!(p.replica_nodes, [BrokerId(1), BrokerId(2)]);
        assert_eq!(p.isr_nodes, [BrokerId(1)]);
        assert_eq!(p.leader_epoch, -1);
        if v >= 10 {
            // The upstream's id never reaches the client: kflip's virtual
            // id for the name does, the same on every cluster.
            let name = m.topics[0].name.as_ref().unwrap().as_str();
            assert_eq!(
                m.topics[0].topic_id,
                crate::routing::topic_ids::virtual_topic_id(name)
            );
        }
        if v >= 5 {
            assert_eq!(p.offline_replicas, [BrokerId(2)]);
        }
        if v >= 2 {
            assert_eq!(m.cluster_id.as_ref().unwrap().as_str(), "kflip");
        }
        if v >= 9 {
            assert_eq!(m.unknown_tagged_fields[&99], Bytes::from_static(b"keep"));
        }
    }
}

#[test]
fn find_coordinator_single_and_batched() {
    for v in 0..=6 {
        let body = if v < 4 {
            FindCoordinatorResponse::default()
                .with_node_id(BrokerId(101))
                .with_host(s(REAL_HOST))
                .with_port(19092)
        } else {
            FindCoordinatorResponse::default().with_coordinators(vec![
                Coordinator::default()
                    .with_key(s("group-a"))
                    .with_node_id(BrokerId(100))
                    .with_host(s(REAL_HOST))
                    .with_port(19092),
                Coordinator::default()
                    .with_key(s("group-b"))
                    .with_node_id(BrokerId(-1))
                    .with_error_code(15),
            ])
        };
        let (r, out) = run(
            ApiKey::FindCoordinator,
            v,
            frame(ApiKey::FindCoordinator, v, &body),
        );
        assert_clean(&out);
        let super::rewrite::Body::FindCoordinator(m) = r.body() else {
            panic!()
        };
        if v < 4 {
            assert_eq!((m.node_id.0, m.port), (1, 9101));
        } else {
            assert_eq!(
                (m.coordinators[0].node_id.0, m.coordinators[0].port),
                (0, 9100)
            );
            assert_eq!(m.coordinators[1].node_id.0, -1);
        }
    }
}

#[test]
fn describe_cluster_every_version() {
    for v in 0..=2 {
        let body = DescribeClusterResponse::default()
            .with_cluster_id(s(REAL_CLUSTER))
            .with_controller_id(BrokerId(100))
            .with_brokers(vec![DescribeClusterBroker::default()
                .with_broker_id(BrokerId(102))
                .with_host(s(REAL_HOST))
                .with_port(19092)]);
        let (r, out) = run(
            ApiKey::DescribeCluster,
            v,
            frame(ApiKey::DescribeCluster, v, &body),
        );
        assert_clean(&out);
        let super::rewrite::Body::DescribeCluster(m) = r.body() else {
            panic!()
        };
        assert_eq!(m.cluster_id.as_str(), "kflip");
        assert_eq!((m.controller_id.0, m.brokers[0].broker_id.0), (0, 2));
    }
}

#[test]
fn produce_leader_hints_and_node_endpoints() {
    for v in 3..=12 {
        let mut part = PartitionProduceResponse::default()
            .with_index(0)
            .with_base_offset(5);
        let mut body = ProduceResponse::default();
        if v >= 10 {
            part = part.with_error_code(6).with_current_leader(
                produce_response::LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(102))
                    .with_leader_epoch(3),
            );
            body = body.with_node_endpoints(vec![produce_response::NodeEndpoint::default()
                .with_node_id(BrokerId(102))
                .with_host(s(REAL_HOST))
                .with_port(19092)]);
        }
        let body = body.with_responses(vec![TopicProduceResponse::default()
            .with_name(TopicName(s("orders")))
            .with_partition_responses(vec![part])]);
        let payload = frame(ApiKey::Produce, v, &body);
        let mut r = Rewritable::decode(ApiKey::Produce, v, payload.clone())
            .unwrap()
            .unwrap();
        // Before KIP-951 nothing needs rewriting: the original bytes go out.
        assert_eq!(r.rewrite(&Fake), v >= 10, "v{v}");
        let (r, out) = run(ApiKey::Produce, v, payload);
        assert_clean(&out);
        let super::rewrite::Body::Produce(m) = r.body() else {
            panic!()
        };
        if v >= 10 {
            assert_eq!(m.node_endpoints[0].node_id.0, 2);
            let l = &m.responses[0].partition_responses[0].current_leader;
            assert_eq!((l.leader_id.0, l.leader_epoch), (2, -1));
        }
    }
}

fn fetch_frame(v: i16) -> BytesMut {
    let mut part = PartitionData::default()
        .with_partition_index(0)
        .with_records(Some(Bytes::from_static(b"opaque-record-batch")));
    if v >= 11 {
        part = part.with_preferred_read_replica(BrokerId(101));
    }
    if v >= 12 {
        part = part.with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(100))
                .with_leader_epoch(9),
        );
    }
    let mut topic = FetchableTopicResponse::default().with_partitions(vec![part.clone(), part]);
    if v >= 13 {
        topic = topic.with_topic_id(Uuid::from_u128(0xbeef));
    } else {
        topic = topic.with_topic(TopicName(s("orders")));
    }
    let mut body = FetchResponse::default().with_responses(vec![topic]);
    if v >= 16 {
        body = body.with_node_endpoints(vec![NodeEndpoint::default()
            .with_node_id(BrokerId(100))
            .with_host(s(REAL_HOST))
            .with_port(19092)]);
    }
    let payload = frame(ApiKey::Fetch, v, &body);
    let mut out = BytesMut::new();
    out.put_i32(payload.len() as i32);
    out.put_slice(&payload);
    out
}

fn decode_fetch(v: i16, frame: &BytesMut) -> FetchResponse {
    let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(len, frame.len() - 4);
    let mut b = Bytes::copy_from_slice(&frame[4..]);
    ResponseHeader::decode(&mut b, ApiKey::Fetch.response_header_version(v)).unwrap();
    let m = FetchResponse::decode(&mut b, v).unwrap();
    assert!(b.is_empty());
    m
}

/// Streams a whole Fetch frame through [`stream_fetch`], reading it a few
/// bytes at a time, and returns the frame the client would get.
async fn stream(
    frame: &[u8],
    v: i16,
    map: &(dyn NodeMap + Sync),
) -> Result<BytesMut, super::rewrite::RewriteError> {
    let corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let mut up = tokio::io::BufReader::with_capacity(7, &frame[4..]);
    let mut out = Vec::new();
    out.extend_from_slice(&frame[..4]);
    stream_fetch(&mut up, &mut out, frame.len() - 4, v, corr, map).await?;
    Ok(BytesMut::from(&out[..]))
}

#[tokio::test]
async fn fetch_is_patched_while_streaming_at_every_version() {
    for v in 4..=17 {
        let f = fetch_frame(v);
        let out = stream(&f, v, &Fake).await.unwrap();
        assert_eq!(out.len(), f.len(), "v{v}: length kept");
        assert_clean(&out);
        let m = decode_fetch(v, &out);
        for p in &m.responses[0].partitions {
            assert_eq!(p.records.as_deref(), Some(&b"opaque-record-batch"[..]));
            if v >= 11 {
                assert_eq!(p.preferred_read_replica.0, 1);
            }
            if v >= 12 {
                assert_eq!(
                    (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
                    (0, -1)
                );
            }
        }
        if v >= 13 {
            assert!(m.responses[0].topic_id.is_nil());
        }
        if v >= 16 {
            assert_eq!(
                (m.node_endpoints[0].node_id.0, m.node_endpoints[0].port),
                (0, 9100)
            );
            assert_eq!(m.node_endpoints[0].host.as_str(), "proxy.local");
        }
    }
}

/// A map whose advertised host is longer than the real one.
struct LongHost;

impl NodeMap for LongHost {
    fn node(&self, real: i32) -> i32 {
        Fake.node(real)
    }
    fn endpoint(&self, real: i32) -> (StrBytes, i32) {
        (
            StrBytes::from_static_str("a-much-longer-proxy-host-name.example.internal"),
            9100 + Fake.node(real),
        )
    }
    fn cluster_id(&self) -> StrBytes {
        Fake.cluster_id()
    }
}

/// Some brokers (tansu 0.6) send `node_endpoints` in Fetch v12, before the
/// version that defines it. It must be rewritten all the same, at the same
/// length; endpoints that do not fit are dropped rather than leaked.
#[tokio::test]
async fn fetch_endpoints_in_an_early_version_are_rewritten_too() {
    let mut f = fetch_frame(12);
    assert_eq!(f[f.len() - 1], 0, "no top-level tags yet");
    f.truncate(f.len() - 1);
    let mut ep = BytesMut::new();
    put_uvarint(&mut ep, 2); // one endpoint
    ep.put_i32(102);
    put_uvarint(&mut ep, REAL_HOST.len() as u32 + 1);
    ep.put_slice(REAL_HOST.as_bytes());
    ep.put_i32(19092);
    put_uvarint(&mut ep, 0); // null rack
    put_uvarint(&mut ep, 0); // no tags
    put_uvarint(&mut f, 1);
    put_uvarint(&mut f, 0);
    put_uvarint(&mut f, ep.len() as u32);
    f.put_slice(&ep);
    let len = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&len.to_be_bytes());
    let out = stream(&f, 12, &Fake).await.unwrap();
    assert_eq!(out.len(), f.len());
    assert_clean(&out);
    assert!(String::from_utf8_lossy(&out).contains("proxy.local"));
    // Still a valid v16-style tagged section: decodable as v16 would be, so
    // check with our own reader that the tail parses.
    let long = stream(&f, 12, &LongHost).await.unwrap();
    assert_eq!(long.len(), f.len());
    assert_clean(&long);
    assert!(
        !String::from_utf8_lossy(&long).contains("a-much-longer"),
        "did not fit, so dropped"
    );
}

#[tokio::test]
async fn fetch_garbage_is_an_error_not_a_panic() {
    let good = fetch_frame(12);
    for cut in 8..good.len() {
        let mut f = BytesMut::from(&good[..cut]);
        let len = (cut - 4) as i32;
        f[..4].copy_from_slice(&len.to_be_bytes());
        assert!(stream(&f, 12, &Fake).await.is_err(), "cut at {cut}");
    }
    for seed in 0u32..300 {
        let mut f: Vec<u8> = (0..80)
            .map(|i| (seed.wrapping_mul(2654435761).rotate_left(i) & 0xff) as u8)
            .collect();
        f[..4].copy_from_slice(&76i32.to_be_bytes());
        for v in [4, 11, 12, 16] {
            let _ = stream(&f, v, &Fake).await;
        }
    }
}

/// Knows one upstream topic id: 0xabc is "orders".
struct WithTopics;

impl NodeMap for WithTopics {
    fn node(&self, real: i32) -> i32 {
        Fake.node(real)
    }
    fn endpoint(&self, real: i32) -> (StrBytes, i32) {
        Fake.endpoint(real)
    }
    fn cluster_id(&self) -> StrBytes {
        Fake.cluster_id()
    }
    fn topic_id_of_real(&self, real: Uuid) -> Option<Uuid> {
        (real == Uuid::from_u128(0xabc))
            .then(|| crate::routing::topic_ids::virtual_topic_id("orders"))
    }
}

#[test]
fn consumer_group_heartbeat_assignments_carry_virtual_topic_ids() {
    use kafka_protocol::messages::consumer_group_heartbeat_response::{
        Assignment, TopicPartitions,
    };
    use kafka_protocol::messages::ConsumerGroupHeartbeatResponse;
    for v in 0..=1 {
        let body = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(s("m1")))
            .with_member_epoch(3)
            .with_assignment(Some(Assignment::default().with_topic_partitions(vec![
                TopicPartitions::default()
                    .with_topic_id(Uuid::from_u128(0xabc))
                    .with_partitions(vec![0, 2]),
                // Unknown to kflip: left out rather than shown.
                TopicPartitions::default()
                    .with_topic_id(Uuid::from_u128(0xdef))
                    .with_partitions(vec![1]),
            ])));
        let payload = frame(ApiKey::ConsumerGroupHeartbeat, v, &body);
        let mut r = Rewritable::decode(ApiKey::ConsumerGroupHeartbeat, v, payload)
            .unwrap()
            .unwrap();
        assert_eq!(r.unnamed_topic_ids().len(), 2);
        assert!(r.rewrite(&WithTopics));
        let out = r.encode().unwrap().freeze();
        let mut b = out.slice(4..);
        ResponseHeader::decode(
            &mut b,
            ApiKey::ConsumerGroupHeartbeat.response_header_version(v),
        )
        .unwrap();
        let back = ConsumerGroupHeartbeatResponse::decode(&mut b, v).unwrap();
        let a = back.assignment.unwrap();
        assert_eq!(a.topic_partitions.len(), 1);
        assert_eq!(
            a.topic_partitions[0].topic_id,
            crate::routing::topic_ids::virtual_topic_id("orders")
        );
        assert_eq!(a.topic_partitions[0].partitions, [0, 2]);
    }
}

#[test]
fn offset_fetch_hides_committed_leader_epochs() {
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    };
    use kafka_protocol::messages::{GroupId, OffsetFetchResponse};
    for v in 5..=9 {
        let body = if v < 8 {
            OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetFetchResponsePartition::default()
                    .with_committed_offset(42)
                    .with_committed_leader_epoch(7)])])
        } else {
            OffsetFetchResponse::default().with_groups(vec![OffsetFetchResponseGroup::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(vec![OffsetFetchResponseTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![OffsetFetchResponsePartitions::default()
                        .with_committed_offset(42)
                        .with_committed_leader_epoch(7)])])])
        };
        let payload = frame(ApiKey::OffsetFetch, v, &body);
        let mut r = Rewritable::decode(ApiKey::OffsetFetch, v, payload)
            .unwrap()
            .unwrap();
        assert!(r.rewrite(&Fake), "v{v}");
        let out = r.encode().unwrap().freeze();
        let mut b = out.slice(4..);
        ResponseHeader::decode(&mut b, ApiKey::OffsetFetch.response_header_version(v)).unwrap();
        let back = OffsetFetchResponse::decode(&mut b, v).unwrap();
        let (offset, epoch) = if v < 8 {
            let p = &back.topics[0].partitions[0];
            (p.committed_offset, p.committed_leader_epoch)
        } else {
            let p = &back.groups[0].topics[0].partitions[0];
            (p.committed_offset, p.committed_leader_epoch)
        };
        assert_eq!((offset, epoch), (42, -1), "v{v}");
    }
}
