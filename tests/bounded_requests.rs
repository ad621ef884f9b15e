//! One request's memory stays a small multiple of its size, for crafted
//! requests of every API kflip walks: many entries, long names repeated
//! per entry, many topics. A counting allocator measures the peak of what
//! each walker (and each answer kflip builds from a request) allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, ConsumerGroupHeartbeatRequest, FetchRequest, GroupId,
    OffsetCommitRequest, ProduceRequest, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kflip::codec;

mod support;

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most a walker may hold for a request of `len` bytes.
fn bound(len: usize) -> usize {
    8 * len + (1 << 20)
}

/// Runs `f` and returns the peak it allocated beyond what was live before.
fn peak_of<T>(f: impl FnOnce() -> T) -> usize {
    let base = NOW.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    drop(out);
    peak
}

fn check<T>(what: &str, len: usize, f: impl FnOnce() -> T) {
    let peak = peak_of(f);
    assert!(
        peak <= bound(len),
        "{what}: {peak} bytes held for a {len}-byte request (bound {})",
        bound(len)
    );
    eprintln!(
        "{what}: {len} bytes in, peak {peak} bytes ({:.2}x)",
        peak as f64 / len as f64
    );
}

fn enc<M: Encodable>(m: &M, version: i16) -> Vec<u8> {
    let mut b = BytesMut::new();
    m.encode(&mut b, version).unwrap();
    b.to_vec()
}

fn name(i: usize) -> TopicName {
    // The longest name Kafka allows: 249 characters.
    TopicName(StrBytes::from_string(format!("{i:0>249}")))
}

fn commit(topics: usize, partitions: i32) -> Vec<u8> {
    let t: Vec<_> = (0..topics)
        .map(|i| {
            OffsetCommitRequestTopic::default()
                .with_name(name(i))
                .with_partitions(
                    (0..partitions)
                        .map(|p| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(7)
                        })
                        .collect(),
                )
        })
        .collect();
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id_or_member_epoch(1)
        .with_member_id(StrBytes::from_static_str("m"))
        .with_topics(t);
    enc(&req, 8)
}

fn fetch(topics: usize, partitions: i32) -> Vec<u8> {
    let t: Vec<_> = (0..topics)
        .map(|i| {
            FetchTopic::default().with_topic(name(i)).with_partitions(
                (0..partitions)
                    .map(|p| FetchPartition::default().with_partition(p))
                    .collect(),
            )
        })
        .collect();
    enc(&FetchRequest::default().with_topics(t), 12)
}

fn produce(topics: usize, partitions: i32) -> Vec<u8> {
    let batch = support::raw::one_record_batch(None, Some(Bytes::from_static(b"v")));
    let t: Vec<_> = (0..topics)
        .map(|i| {
            TopicProduceData::default()
                .with_name(name(i))
                .with_partition_data(
                    (0..partitions)
                        .map(|p| {
                            PartitionProduceData::default()
                                .with_index(p)
                                .with_records(Some(batch.clone()))
                        })
                        .collect(),
                )
        })
        .collect();
    enc(
        &ProduceRequest::default().with_acks(-1).with_topic_data(t),
        9,
    )
}

#[test]
fn every_walked_api_holds_a_small_multiple_of_its_request() {
    // One test: the allocator's peak is global to the process.
    for (shape, topics, partitions) in [("entries", 1, 60_000), ("names", 4_000, 1)] {
        let body = commit(topics, partitions);
        check(&format!("OffsetCommit {shape}"), body.len(), || {
            codec::offset_commit(&body, 8).unwrap()
        });
        check(&format!("OffsetCommit rewrite {shape}"), body.len(), || {
            codec::rewrite_offset_commit(&body, 8, |_, _, o| o + 1, true).unwrap()
        });
        check(&format!("OffsetCommit refusal {shape}"), body.len(), || {
            codec::error_response(ApiKey::OffsetCommit, 8, 1, 25, &body).unwrap()
        });
        check(&format!("group member {shape}"), body.len(), || {
            codec::group_member(&body, ApiKey::OffsetCommit, 8).unwrap()
        });

        let body = fetch(topics, partitions);
        check(&format!("Fetch {shape}"), body.len(), || {
            codec::fetch_request(&body, 12).unwrap()
        });
        let view = codec::fetch_request(&body, 12).unwrap();
        check(&format!("held Fetch answer {shape}"), body.len(), || {
            codec::empty_fetch_response(12, 1, &view).unwrap()
        });
        drop(view);
        let mut copy = body.clone();
        check(&format!("Fetch epochs {shape}"), body.len(), || {
            codec::epochs::clear_fetch(&mut copy, 12).unwrap()
        });

        let body = produce(topics, partitions.min(10_000));
        check(&format!("Produce {shape}"), body.len(), || {
            codec::produce_batches(&body, 9).unwrap()
        });
        let view = codec::produce_batches(&body, 9).unwrap();
        check(&format!("Produce refusal {shape}"), body.len(), || {
            codec::produce_error_response(9, 1, &view, 87, Some("refused")).unwrap()
        });
        check(&format!("Produce provenance {shape}"), body.len(), || {
            for b in &view.batches {
                let bytes = &body[b.start..b.start + b.len];
                assert!(!codec::records::has_header(bytes, b"kflip-origin").unwrap());
            }
        });
        drop(view);

        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str("t")))
            .with_v3_and_below_topics(
                (0..topics)
                    .map(|i| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(name(i))
                            .with_partitions((0..partitions).collect())
                    })
                    .collect(),
            );
        let body = enc(&req, 3);
        check(&format!("AddPartitionsToTxn {shape}"), body.len(), || {
            codec::txn::txn_request(ApiKey::AddPartitionsToTxn, 3, &body).unwrap()
        });

        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_member_id(StrBytes::from_static_str("m"))
            .with_topic_partitions(Some(
                (0..topics.max(partitions as usize / 100))
                    .map(|i| {
                        TopicPartitions::default()
                            .with_topic_id(uuid::Uuid::from_u128(i as u128))
                            .with_partitions((0..100).collect())
                    })
                    .collect(),
            ));
        let body = enc(&req, 0);
        check(
            &format!("ConsumerGroupHeartbeat {shape}"),
            body.len(),
            || codec::consumer_group::heartbeat(&body, 0).unwrap(),
        );
    }
}
