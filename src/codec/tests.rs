//! Round trips through the generated codec: requests it encodes are read by
//! the hand walkers, and responses kflip builds are decoded by it.

use super::produce::batch;
use super::walk::*;
use super::*;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{
    FetchPartition as WireFetchPartition, FetchTopic, ForgottenTopic,
};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, FetchResponse, HeartbeatResponse, InitProducerIdResponse, OffsetCommitResponse,
    ProduceResponse, ResponseHeader, SyncGroupResponse,
};
use kafka_protocol::messages::{
    FetchRequest, GroupId, HeartbeatRequest, OffsetCommitRequest, ProduceRequest, ProducerId,
    SyncGroupRequest, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn tag() -> Bytes {
    Bytes::from_static(b"tagged")
}

fn enc<M: Encodable>(m: &M, version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    m.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

/// A broker's response payload: header + body.
fn payload<M: Encodable + HeaderVersion>(m: &M, version: i16, correlation_id: i32) -> Vec<u8> {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, M::header_version(version))
        .unwrap();
    m.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

/// Checks a frame's length prefix and decodes it whole.
fn decode_frame<M: Decodable + HeaderVersion>(frame: &[u8], version: i16) -> (i32, M) {
    let len = i32::from_be_bytes(frame[..4].try_into().unwrap());
    assert_eq!(len as usize, frame.len() - 4);
    let mut buf = Bytes::copy_from_slice(&frame[4..]);
    let header = ResponseHeader::decode(&mut buf, M::header_version(version)).unwrap();
    let body = M::decode(&mut buf, version).unwrap();
    assert!(buf.is_empty(), "trailing bytes after v{version} response");
    (header.correlation_id, body)
}

// --- group membership -------------------------------------------------------

fn heartbeat(version: i16) -> Vec<u8> {
    let mut req = HeartbeatRequest::default()
        .with_group_id(GroupId(sb("grp")))
        .with_generation_id(7)
        .with_member_id(sb("member-1"));
    if version >= 3 {
        req = req.with_group_instance_id(Some(sb("inst")));
    }
    if version >= 4 {
        req = req.with_unknown_tagged_field(9, tag());
    }
    enc(&req, version)
}

fn sync_group(version: i16) -> Vec<u8> {
    let mut req = SyncGroupRequest::default()
        .with_group_id(GroupId(sb("grp")))
        .with_generation_id(7)
        .with_member_id(sb("member-1"))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(sb("member-1"))
            .with_assignment(Bytes::from_static(b"\0\x01assignment"))]);
    if version >= 3 {
        req = req.with_group_instance_id(Some(sb("inst")));
    }
    if version >= 5 {
        req = req
            .with_protocol_type(Some(sb("consumer")))
            .with_protocol_name(Some(sb("range")));
    }
    enc(&req, version)
}

fn commit_request(version: i16) -> OffsetCommitRequest {
    let part = |index, offset, metadata: Option<&str>| {
        let mut p = OffsetCommitRequestPartition::default()
            .with_partition_index(index)
            .with_committed_offset(offset)
            .with_committed_metadata(metadata.map(sb));
        if version >= 6 {
            p = p.with_committed_leader_epoch(3);
        }
        if version >= 8 {
            p = p.with_unknown_tagged_field(4, tag());
        }
        p
    };
    let mut req = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb("grp")))
        .with_generation_id_or_member_epoch(5)
        .with_member_id(sb("member-1"))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic_name("orders"))
                .with_partitions(vec![part(0, 100, Some("meta")), part(1, 200, None)]),
            OffsetCommitRequestTopic::default()
                .with_name(topic_name("payments"))
                .with_partitions(vec![part(4, 7, Some(""))]),
        ]);
    if version <= 4 {
        req = req.with_retention_time_ms(86_400_000);
    }
    if version >= 7 {
        req = req.with_group_instance_id(Some(sb("inst")));
    }
    if version >= 8 {
        req = req.with_unknown_tagged_field(2, tag());
    }
    req
}

/// OffsetCommit v0 and v1, which the codec no longer encodes.
fn old_commit(version: i16) -> Vec<u8> {
    let mut b = Vec::new();
    put_str(&mut b, false, Some("grp"));
    if version == 1 {
        b.put_i32(5);
        put_str(&mut b, false, Some("member-1"));
    }
    b.put_i32(1);
    put_str(&mut b, false, Some("orders"));
    b.put_i32(2);
    for (partition, offset, metadata) in [(0, 100, Some("meta")), (1, 200, None)] {
        b.put_i32(partition);
        b.put_i64(offset);
        if version == 1 {
            b.put_i64(1_700_000_000_000);
        }
        put_str(&mut b, false, metadata);
    }
    b
}

fn commit_body(version: i16) -> Vec<u8> {
    if version < 2 {
        old_commit(version)
    } else {
        enc(&commit_request(version), version)
    }
}

fn expected_offsets(version: i16) -> Vec<CommitOffset> {
    let o = |topic: &str, partition, offset| CommitOffset {
        topic: topic.into(),
        partition,
        offset,
    };
    let mut out = vec![o("orders", 0, 100), o("orders", 1, 200)];
    if version >= 2 {
        out.push(o("payments", 4, 7));
    }
    out
}

fn member(generation_id: i32, member_id: &str) -> GroupMember {
    GroupMember {
        group_id: "grp".into(),
        generation_id,
        member_id: member_id.into(),
    }
}

#[test]
fn group_member_reads_heartbeat_sync_group_and_commit() {
    for v in 0..=4 {
        let got = group_member(&heartbeat(v), ApiKey::Heartbeat, v);
        assert_eq!(got, Ok(member(7, "member-1")), "Heartbeat v{v}");
    }
    for v in 0..=5 {
        let got = group_member(&sync_group(v), ApiKey::SyncGroup, v);
        assert_eq!(got, Ok(member(7, "member-1")), "SyncGroup v{v}");
    }
    for v in 1..=9 {
        let got = group_member(&commit_body(v), ApiKey::OffsetCommit, v);
        assert_eq!(got, Ok(member(5, "member-1")), "OffsetCommit v{v}");
    }
    let got = group_member(&commit_body(0), ApiKey::OffsetCommit, 0);
    assert_eq!(got, Ok(member(-1, "")));
}

#[test]
fn group_member_refuses_other_apis_and_versions() {
    let body = heartbeat(4);
    for (api, v) in [
        (ApiKey::Heartbeat, 5),
        (ApiKey::SyncGroup, 6),
        (ApiKey::OffsetCommit, 10),
        (ApiKey::Heartbeat, -1),
        (ApiKey::Fetch, 4),
    ] {
        assert_eq!(
            group_member(&body, api, v),
            Err(ParseError::Unsupported {
                api: api as i16,
                version: v
            })
        );
    }
    // A compact body read as classic (and the reverse) is an error.
    assert!(group_member(&heartbeat(4), ApiKey::Heartbeat, 3).is_err());
    assert!(group_member(&heartbeat(3), ApiKey::Heartbeat, 4).is_err());
}

// --- Fetch ------------------------------------------------------------------

fn fetch_body(version: i16) -> Vec<u8> {
    let part = |partition, offset| {
        let mut p = WireFetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_log_start_offset(0)
            .with_partition_max_bytes(1 << 20);
        if version >= 9 {
            p = p.with_current_leader_epoch(2);
        }
        if version >= 12 {
            p = p
                .with_last_fetched_epoch(1)
                .with_unknown_tagged_field(6, tag());
        }
        p
    };
    let mut topics = vec![
        FetchTopic::default()
            .with_topic(topic_name("orders"))
            .with_partitions(vec![part(0, 10), part(3, 99)]),
        FetchTopic::default()
            .with_topic(topic_name("payments"))
            .with_partitions(vec![part(1, 5)]),
    ];
    let mut req = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_isolation_level(1);
    if version >= 7 {
        req = req
            .with_session_id(42)
            .with_session_epoch(3)
            .with_forgotten_topics_data(vec![ForgottenTopic::default()
                .with_topic(topic_name("old"))
                .with_partitions(vec![1, 2])]);
    }
    if version >= 11 {
        req = req.with_rack_id(sb("rack-a"));
    }
    if version >= 12 {
        topics[1] = topics[1].clone().with_unknown_tagged_field(3, tag());
        req = req
            .with_cluster_id(Some(sb("cluster")))
            .with_unknown_tagged_field(5, tag());
    }
    enc(&req.with_topics(topics), version)
}

fn expected_fetch(version: i16) -> FetchView {
    let p = |topic: &str, partition, fetch_offset| FetchPartition {
        topic: topic.into(),
        partition,
        fetch_offset,
    };
    FetchView {
        max_wait_ms: 500,
        session_id: if version >= 7 { 42 } else { 0 },
        partitions: vec![p("orders", 0, 10), p("orders", 3, 99), p("payments", 1, 5)],
    }
}

#[test]
fn fetch_request_reads_every_version() {
    for v in 4..=12 {
        assert_eq!(
            fetch_request(&fetch_body(v), v),
            Ok(expected_fetch(v)),
            "v{v}"
        );
    }
    for v in [3, 13, -1] {
        assert!(matches!(
            fetch_request(&fetch_body(12), v),
            Err(ParseError::Unsupported { api: 1, .. })
        ));
    }
}

#[test]
fn empty_fetch_response_decodes_and_lists_every_partition() {
    for v in 4..=12 {
        let view = fetch_request(&fetch_body(v), v).unwrap();
        let frame = empty_fetch_response(v, 77, &view).unwrap();
        let (correlation_id, resp) = decode_frame::<FetchResponse>(&frame, v);
        assert_eq!(correlation_id, 77);
        assert_eq!(
            (resp.throttle_time_ms, resp.error_code, resp.session_id),
            (0, 0, 0)
        );
        let names: Vec<_> = resp.responses.iter().map(|t| t.topic.to_string()).collect();
        assert_eq!(names, ["orders", "payments"], "v{v}");
        let mut listed = Vec::new();
        for t in &resp.responses {
            for p in &t.partitions {
                listed.push((t.topic.to_string(), p.partition_index));
                assert_eq!(p.error_code, 0);
                assert_eq!(p.high_watermark, -1);
                assert_eq!(p.last_stable_offset, -1);
                if v >= 5 {
                    assert_eq!(p.log_start_offset, -1);
                }
                assert_eq!(p.aborted_transactions, Some(vec![]));
                assert_eq!(p.preferred_read_replica, -1);
                assert_eq!(p.records, Some(Bytes::new()));
            }
        }
        let want: Vec<_> = view
            .partitions
            .iter()
            .map(|p| (p.topic.to_string(), p.partition))
            .collect();
        assert_eq!(listed, want);
    }
    let empty = FetchView {
        max_wait_ms: 0,
        session_id: 0,
        partitions: vec![],
    };
    let (_, resp) =
        decode_frame::<FetchResponse>(&empty_fetch_response(12, 1, &empty).unwrap(), 12);
    assert!(resp.responses.is_empty());
    assert!(empty_fetch_response(13, 1, &empty).is_err());
    assert!(empty_fetch_response(3, 1, &empty).is_err());
}

// --- OffsetCommit -------------------------------------------------------------

#[test]
fn offset_commit_reads_every_version() {
    for v in 0..=9 {
        let view = offset_commit(&commit_body(v), v).unwrap();
        assert_eq!(view.group_id, "grp");
        assert_eq!(view.generation_id, if v == 0 { -1 } else { 5 }, "v{v}");
        assert_eq!(view.member_id, if v == 0 { "" } else { "member-1" });
        assert_eq!(
            view.group_instance_id.as_deref(),
            (v >= 7).then_some("inst")
        );
        assert_eq!(view.offsets, expected_offsets(v), "v{v}");
    }
    assert!(matches!(
        offset_commit(&commit_body(9), 10),
        Err(ParseError::Unsupported { api: 8, .. })
    ));
}

fn shift(_: &str, partition: i32, offset: i64) -> i64 {
    offset * 10 + i64::from(partition)
}

#[test]
fn rewrite_offset_commit_changes_only_offsets_and_membership() {
    for v in 2..=9 {
        let body = commit_body(v);
        for simple in [false, true] {
            let out = rewrite_offset_commit(&body, v, shift, simple).unwrap();
            let got = OffsetCommitRequest::decode(&mut Bytes::from(out), v).unwrap();
            let mut want = commit_request(v);
            for t in &mut want.topics {
                for p in &mut t.partitions {
                    p.committed_offset = shift("", p.partition_index, p.committed_offset);
                }
            }
            if simple {
                want.generation_id_or_member_epoch = -1;
                want.member_id = sb("");
                want.group_instance_id = None;
            }
            assert_eq!(got, want, "v{v} simple={simple}");
        }
    }
}

#[test]
fn rewrite_offset_commit_of_old_versions_and_identity() {
    for v in 0..=9 {
        let body = commit_body(v);
        let same = rewrite_offset_commit(&body, v, |_, _, o| o, false).unwrap();
        assert_eq!(same, body, "v{v}: identity rewrite must copy every byte");
        let out = rewrite_offset_commit(&body, v, shift, true).unwrap();
        let view = offset_commit(&out, v).unwrap();
        assert_eq!((view.generation_id, view.member_id.as_str()), (-1, ""));
        assert_eq!(view.group_instance_id, None);
        let want: Vec<_> = expected_offsets(v)
            .into_iter()
            .map(|o| CommitOffset {
                offset: shift("", o.partition, o.offset),
                ..o
            })
            .collect();
        assert_eq!(view.offsets, want, "v{v}");
    }
}

#[test]
fn rewrite_offset_commit_simple_shrinks_by_the_member_fields() {
    let v = 7;
    let body = commit_body(v);
    let out = rewrite_offset_commit(&body, v, |_, _, o| o, true).unwrap();
    // "member-1" (8 bytes) -> "", and "inst" (4 bytes) -> null.
    assert_eq!(body.len() - out.len(), 8 + 4);
}

// --- error responses ----------------------------------------------------------

#[test]
fn error_responses_decode_at_every_version() {
    const REBALANCE: i16 = 27;
    for v in 0..=4 {
        let frame = error_response(ApiKey::Heartbeat, v, 11, REBALANCE, &heartbeat(v)).unwrap();
        let (c, r) = decode_frame::<HeartbeatResponse>(&frame, v);
        assert_eq!((c, r.error_code, r.throttle_time_ms), (11, REBALANCE, 0));
    }
    for v in 0..=5 {
        let frame = error_response(ApiKey::SyncGroup, v, 12, REBALANCE, &sync_group(v)).unwrap();
        let (c, r) = decode_frame::<SyncGroupResponse>(&frame, v);
        assert_eq!((c, r.error_code, r.throttle_time_ms), (12, REBALANCE, 0));
        assert_eq!(r.assignment, Bytes::new());
        assert_eq!((r.protocol_type, r.protocol_name), (None, None));
    }
    for v in 0..=9 {
        let frame = error_response(ApiKey::OffsetCommit, v, 13, 22, &commit_body(v)).unwrap();
        let (c, r) = decode_frame::<OffsetCommitResponse>(&frame, v.max(2));
        assert_eq!((c, r.throttle_time_ms), (13, 0));
        let got: Vec<_> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.to_string(), p.partition_index, p.error_code))
            })
            .collect();
        let want: Vec<_> = expected_offsets(v)
            .into_iter()
            .map(|o| (o.topic.to_string(), o.partition, 22))
            .collect();
        assert_eq!(got, want, "v{v}");
        assert_eq!(r.topics.len(), if v >= 2 { 2 } else { 1 });
    }
}

#[test]
fn error_response_refuses_what_it_cannot_answer() {
    assert!(error_response(ApiKey::Fetch, 12, 1, 27, &[]).is_err());
    assert!(error_response(ApiKey::Heartbeat, 5, 1, 27, &[]).is_err());
    assert!(error_response(ApiKey::OffsetCommit, 10, 1, 27, &commit_body(9)).is_err());
    assert!(error_response(ApiKey::OffsetCommit, 9, 1, 27, &[0, 1]).is_err());
}

// --- broker responses -----------------------------------------------------------

#[test]
fn offset_commit_response_errors_lists_every_partition() {
    let resp = |v: i16| {
        let p = |i, e| {
            let p = OffsetCommitResponsePartition::default()
                .with_partition_index(i)
                .with_error_code(e);
            if v >= 8 {
                p.with_unknown_tagged_field(3, tag())
            } else {
                p
            }
        };
        OffsetCommitResponse::default().with_topics(vec![
            OffsetCommitResponseTopic::default()
                .with_name(topic_name("orders"))
                .with_partitions(vec![p(0, 0), p(1, 22)]),
            OffsetCommitResponseTopic::default()
                .with_name(topic_name("payments"))
                .with_partitions(vec![p(4, 25)]),
        ])
    };
    let want = vec![
        ("orders".to_string(), 0, 0),
        ("orders".to_string(), 1, 22),
        ("payments".to_string(), 4, 25),
    ];
    for v in 0..=9 {
        let bytes = payload(&resp(v.max(2)), v.max(2), 5);
        assert_eq!(
            offset_commit_response_errors(&bytes, v),
            Ok(want.clone()),
            "v{v}"
        );
        for cut in 0..bytes.len() {
            assert!(offset_commit_response_errors(&bytes[..cut], v).is_err());
        }
    }
    assert!(offset_commit_response_errors(&payload(&resp(9), 9, 5), 10).is_err());
}

#[test]
fn sync_group_error_reads_every_version() {
    for v in 0..=5 {
        let mut resp = SyncGroupResponse::default()
            .with_error_code(25)
            .with_assignment(Bytes::from_static(b"abc"));
        if v >= 5 {
            resp = resp.with_protocol_type(Some(sb("consumer")));
        }
        let bytes = payload(&resp, v, 1);
        assert_eq!(sync_group_error(&bytes, v), Ok(25), "v{v}");
        for cut in 0..bytes.len() {
            let _ = sync_group_error(&bytes[..cut], v);
        }
    }
    assert!(sync_group_error(&[], 6).is_err());
}

#[test]
fn init_producer_id_response_reads_every_version() {
    for v in 0..=6 {
        let resp = InitProducerIdResponse::default()
            .with_error_code(0)
            .with_producer_id(ProducerId(4242))
            .with_producer_epoch(3);
        let bytes = payload(&resp, v, 1);
        assert_eq!(
            init_producer_id_response(&bytes, v),
            Ok((0, 4242, 3)),
            "v{v}"
        );
        for cut in 0..bytes.len() {
            assert!(init_producer_id_response(&bytes[..cut], v).is_err());
        }
    }
}

// --- Produce batches ------------------------------------------------------------

/// Appends one magic-2 batch of `n` records to `buf`.
fn put_batch(buf: &mut BytesMut, pid: i64, epoch: i16, seq: i32, n: i32, compression: Compression) {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i.into(),
            // The encoder starts a new batch whenever offset - sequence
            // changes, so even "no sequence" (-1) counts up from the base.
            sequence: seq + i,
            timestamp: 1_700_000_000_000 + i64::from(i),
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}").repeat(5))),
            headers: Default::default(),
        })
        .collect();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(buf, &records, &options).unwrap();
}

fn produce_body(version: i16) -> Vec<u8> {
    let mut two = BytesMut::new();
    put_batch(&mut two, 1000, 2, 10, 3, Compression::None);
    put_batch(&mut two, 1000, 2, 13, 2, Compression::None);
    let mut one = BytesMut::new();
    put_batch(&mut one, -1, -1, -1, 4, Compression::Gzip);
    let part = |index, records: Option<Bytes>| {
        let p = PartitionProduceData::default()
            .with_index(index)
            .with_records(records);
        if version >= 9 {
            p.with_unknown_tagged_field(1, tag())
        } else {
            p
        }
    };
    let req = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(sb("tx-1"))))
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name("orders"))
                .with_partition_data(vec![part(0, Some(two.freeze())), part(1, None)]),
            TopicProduceData::default()
                .with_name(topic_name("payments"))
                .with_partition_data(vec![part(5, Some(one.freeze()))]),
        ]);
    enc(&req, version)
}

#[test]
fn produce_batches_finds_every_batch() {
    for v in 3..=12 {
        let body = produce_body(v);
        let view = produce_batches(&body, v).unwrap();
        assert_eq!(view.transactional_id.as_deref(), Some("tx-1"));
        let got: Vec<_> = view
            .batches
            .iter()
            .map(|b| {
                let info = &RecordBatchDecoder::decode_batch_info(&mut Bytes::copy_from_slice(
                    &body[b.start..b.start + b.len],
                ))
                .unwrap()[0];
                assert_eq!(
                    (info.producer_id, info.producer_epoch, info.base_sequence),
                    (b.producer_id, b.producer_epoch, b.base_sequence)
                );
                assert_eq!(info.record_count, b.record_count);
                assert!(batch_crc_ok(&body, b));
                (
                    &*b.topic,
                    b.partition,
                    b.producer_id,
                    b.producer_epoch,
                    b.base_sequence,
                    b.record_count,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("orders", 0, 1000, 2, 10, 3),
                ("orders", 0, 1000, 2, 13, 2),
                ("payments", 5, -1, -1, -1, 4),
            ],
            "v{v}"
        );
        let (a, b) = (&view.batches[0], &view.batches[1]);
        assert_eq!(a.start + a.len, b.start, "batches are back to back");
    }
    for v in [2, 13] {
        assert!(matches!(
            produce_batches(&produce_body(12), v),
            Err(ParseError::Unsupported { api: 0, .. })
        ));
    }
}

#[test]
fn rewrite_batch_sets_producer_state_and_crc() {
    for v in 3..=12 {
        let mut body = produce_body(v);
        let view = produce_batches(&body, v).unwrap();
        for (i, b) in view.batches.iter().enumerate() {
            assert!(rewrite_batch(&mut body, b, 5000, 7, 100 * i as i32));
            assert!(batch_crc_ok(&body, b));
        }
        let again = produce_batches(&body, v).unwrap();
        for (i, b) in again.batches.iter().enumerate() {
            assert_eq!((b.producer_id, b.producer_epoch), (5000, 7));
            assert_eq!(b.base_sequence, 100 * i as i32);
        }
        // The codec checks every CRC while decoding the records.
        let req = ProduceRequest::decode(&mut Bytes::from(body.clone()), v).unwrap();
        let mut sequences = Vec::new();
        for t in &req.topic_data {
            for p in &t.partition_data {
                let Some(records) = &p.records else { continue };
                for set in RecordBatchDecoder::decode_all(&mut records.clone()).unwrap() {
                    for r in set.records {
                        assert_eq!((r.producer_id, r.producer_epoch), (5000, 7));
                        sequences.push(r.sequence);
                    }
                }
            }
        }
        assert_eq!(sequences, [0, 1, 2, 100, 101, 200, 201, 202, 203], "v{v}");

        let b = &again.batches[0];
        body[b.start + b.len - 1] ^= 0xff;
        assert!(!batch_crc_ok(&body, b));
    }
}

#[test]
fn rewrite_batch_outside_the_body_changes_nothing() {
    let mut body = produce_body(9);
    let before = body.clone();
    let mut b = produce_batches(&body, 9).unwrap().batches[0].clone();
    b.start = body.len() - 10;
    assert!(!rewrite_batch(&mut body, &b, 1, 1, 1));
    assert!(!batch_crc_ok(&body, &b));
    b.start = usize::MAX - 2;
    assert!(!rewrite_batch(&mut body, &b, 1, 1, 1));
    b.start = 0;
    b.len = 20;
    assert!(!rewrite_batch(&mut body, &b, 1, 1, 1));
    assert_eq!(body, before);
}

#[test]
fn produce_batches_rejects_old_magic_and_bad_lengths() {
    let body = produce_body(9);
    let first = produce_batches(&body, 9).unwrap().batches[0].clone();
    let mut old = body.clone();
    old[first.start + batch::MAGIC] = 1;
    assert_eq!(produce_batches(&old, 9), Err(ParseError::Magic(1)));
    for bad_len in [-1i32, 0, 48, i32::MAX] {
        let mut b = body.clone();
        b[first.start + 8..first.start + 12].copy_from_slice(&bad_len.to_be_bytes());
        assert!(produce_batches(&b, 9).is_err(), "batchLength {bad_len}");
    }
}

// --- no panics --------------------------------------------------------------------

/// Runs every hand parser (and what is built on them) over `body`.
fn run_all(body: &[u8], version: i16) {
    for api in [ApiKey::Heartbeat, ApiKey::SyncGroup, ApiKey::OffsetCommit] {
        let _ = group_member(body, api, version);
        let _ = error_response(api, version, 1, 27, body);
    }
    if let Ok(view) = fetch_request(body, version) {
        let _ = empty_fetch_response(version, 1, &view);
    }
    if offset_commit(body, version).is_ok() {
        let same = rewrite_offset_commit(body, version, |_, _, o| o, false).unwrap();
        assert_eq!(same, body);
        let simple = rewrite_offset_commit(body, version, |_, _, o| o ^ 1, true).unwrap();
        assert!(offset_commit(&simple, version).is_ok());
    }
    if let Ok(view) = produce_batches(body, version) {
        let mut copy = body.to_vec();
        for b in &view.batches {
            let _ = batch_crc_ok(body, b);
            assert!(rewrite_batch(&mut copy, b, 1, 2, 3));
            assert!(batch_crc_ok(&copy, b));
        }
    }
}

fn valid_bodies() -> Vec<(Vec<u8>, i16)> {
    let mut out = Vec::new();
    for v in 0..=4 {
        out.push((heartbeat(v), v));
    }
    for v in 0..=5 {
        out.push((sync_group(v), v));
    }
    for v in 0..=9 {
        out.push((commit_body(v), v));
    }
    for v in 4..=12 {
        out.push((fetch_body(v), v));
    }
    for v in 3..=12 {
        out.push((produce_body(v), v));
    }
    out
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for (body, v) in valid_bodies() {
        for cut in 0..body.len() {
            run_all(&body[..cut], v);
        }
    }
    for v in 0..=9 {
        let body = commit_body(v);
        for cut in 0..body.len() {
            assert!(offset_commit(&body[..cut], v).is_err(), "v{v} cut {cut}");
        }
    }
    for v in 3..=12 {
        let body = produce_body(v);
        for cut in 0..body.len() {
            assert!(produce_batches(&body[..cut], v).is_err(), "v{v} cut {cut}");
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), v in -1i16..14) {
        run_all(&body, v);
    }

    #[test]
    fn corrupted_requests_never_panic(
        pick in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let bodies = valid_bodies();
        let (mut body, v) = bodies[pick.index(bodies.len())].clone();
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] = byte;
        }
        run_all(&body, v);
    }

    #[test]
    fn rewrite_batch_never_panics(
        mut body in proptest::collection::vec(any::<u8>(), 0..200),
        start in any::<usize>(),
        len in any::<usize>(),
    ) {
        let b = BatchRef {
            topic: "".into(),
            partition: 0,
            start: start % 256,
            len: len % 256,
            producer_id: 0,
            producer_epoch: 0,
            base_sequence: 0,
            record_count: 0,
        };
        let _ = batch_crc_ok(&body, &b);
        if rewrite_batch(&mut body, &b, 1, 2, 3) {
            prop_assert!(batch_crc_ok(&body, &b) || body[b.start + batch::MAGIC] != 2);
        }
    }
}

#[test]
fn produce_response_offsets_keep_accepted_partitions() {
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    for v in 3..=11 {
        let p = |i, e, base| {
            PartitionProduceResponse::default()
                .with_index(i)
                .with_error_code(e)
                .with_base_offset(base)
        };
        let resp = ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default()
                .with_name(topic_name("orders"))
                .with_partition_responses(vec![p(0, 0, 40), p(1, 6, -1)]),
            TopicProduceResponse::default()
                .with_name(topic_name("payments"))
                .with_partition_responses(vec![p(3, 0, 7)]),
        ]);
        let bytes = payload(&resp, v, 9);
        assert_eq!(
            produce_response_offsets(&bytes, v),
            Ok(vec![
                ("orders".to_string(), 0, 40),
                ("payments".to_string(), 3, 7)
            ]),
            "v{v}"
        );
        for cut in 0..bytes.len() {
            assert!(produce_response_offsets(&bytes[..cut], v).is_err());
        }
    }
}

/// A crafted OffsetCommit v2: one topic whose name is as long as the
/// protocol allows, with `n` partitions of 14 bytes each.
fn long_name_commit(n: i32) -> Vec<u8> {
    let mut b = Vec::new();
    let s = |b: &mut Vec<u8>, x: &[u8]| {
        b.extend_from_slice(&(x.len() as i16).to_be_bytes());
        b.extend_from_slice(x);
    };
    s(&mut b, b"g");
    b.extend_from_slice(&1i32.to_be_bytes());
    s(&mut b, b"m");
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    s(&mut b, &vec![b'x'; i16::MAX as usize]);
    b.extend_from_slice(&n.to_be_bytes());
    for p in 0..n {
        b.extend_from_slice(&p.to_be_bytes());
        b.extend_from_slice(&7i64.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
    }
    b
}

#[test]
fn a_long_topic_name_is_held_once_however_many_entries_name_it() {
    // 20,000 entries: 300 KiB on the wire. A copy of the 32 KiB name per
    // entry would be 650 MB; the entries share one.
    let n = 20_000;
    let body = long_name_commit(n);
    assert!(body.len() < 400 << 10);
    let view = offset_commit(&body, 2).unwrap();
    assert_eq!(view.offsets.len(), n as usize);
    let first = &view.offsets[0].topic;
    assert_eq!(first.len(), i16::MAX as usize);
    assert!(view
        .offsets
        .iter()
        .all(|o| std::sync::Arc::ptr_eq(&o.topic, first)));
}
