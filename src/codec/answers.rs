//! Responses kflip builds itself (encoded with the generated codec) and the
//! few fields it reads from broker responses (trusted; decoded with it).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, HeartbeatResponse, InitProducerIdResponse, OffsetCommitResponse,
    ProduceResponse, ResponseHeader, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use super::fetch_request::FetchView;
use super::group::offset_commit;

/// Groups consecutive entries with the same topic, keeping request order, so
/// a response mirrors the request's topic list.
fn by_topic<T>(items: &[T], topic: impl Fn(&T) -> &str) -> Vec<(&str, Vec<&T>)> {
    let mut out: Vec<(&str, Vec<&T>)> = Vec::new();
    for item in items {
        let name = topic(item);
        match out.last_mut() {
            Some((last, group)) if *last == name => group.push(item),
            _ => out.push((name, vec![item])),
        }
    }
    out
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Encodes a whole response frame: length prefix, header, body.
pub fn response_frame<M: Encodable + HeaderVersion>(
    body: &M,
    what: &str,
    version: i16,
    correlation_id: i32,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, M::header_version(version))
        .map_err(|e| format!("encoding the {what} v{version} response header: {e}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("encoding a {what} v{version} response: {e}"))?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| format!("{what} response too large"))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// A Fetch response frame with no data: every requested partition, error 0,
/// offsets unknown (-1), empty records. Lets kflip answer a parked Fetch
/// without the upstream; the client simply fetches again.
pub fn empty_fetch_response(
    version: i16,
    correlation_id: i32,
    view: &FetchView,
) -> Result<Bytes, String> {
    if !(4..=12).contains(&version) {
        return Err(format!("Fetch v{version} is not answered by kflip"));
    }
    let responses = by_topic(&view.partitions, |p| &p.topic)
        .into_iter()
        .map(|(topic, parts)| {
            FetchableTopicResponse::default()
                .with_topic(topic_name(topic))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(0)
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                                .with_aborted_transactions(Some(Vec::new()))
                                .with_preferred_read_replica((-1).into())
                                .with_records(Some(Bytes::new()))
                        })
                        .collect(),
                )
        })
        .collect();
    let body = FetchResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(0)
        .with_session_id(0)
        .with_responses(responses);
    response_frame(&body, "Fetch", version, correlation_id)
}

// ---------------------------------------------------------------------------
// OffsetCommit
// ---------------------------------------------------------------------------

/// Decodes a response payload (header + body) from a broker.
fn decode_response<M: Decodable + HeaderVersion>(
    payload: &[u8],
    what: &str,
    version: i16,
) -> Result<M, String> {
    let mut buf = Bytes::copy_from_slice(payload);
    ResponseHeader::decode(&mut buf, M::header_version(version))
        .map_err(|e| format!("decoding a {what} v{version} response header: {e}"))?;
    M::decode(&mut buf, version).map_err(|e| format!("decoding a {what} v{version} response: {e}"))
}

/// OffsetCommit v0 and v1 responses are laid out exactly like v2 (throttle
/// time arrives in v3), so they are encoded and decoded as v2; the codec
/// no longer knows the older versions.
fn commit_codec_version(version: i16) -> Result<i16, String> {
    match version {
        0..=2 => Ok(2),
        3..=9 => Ok(version),
        _ => Err(format!("OffsetCommit v{version} is not handled by kflip")),
    }
}

/// The response frame kflip sends instead of forwarding a Heartbeat,
/// SyncGroup or OffsetCommit request: `error_code` everywhere (for
/// OffsetCommit, on every partition of the request, read from `body`).
pub fn error_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    error_code: i16,
    body: &[u8],
) -> Result<Bytes, String> {
    match api {
        ApiKey::Heartbeat => {
            let resp = HeartbeatResponse::default()
                .with_throttle_time_ms(0)
                .with_error_code(error_code);
            response_frame(&resp, "Heartbeat", version, correlation_id)
        }
        ApiKey::SyncGroup => {
            let resp = SyncGroupResponse::default()
                .with_throttle_time_ms(0)
                .with_error_code(error_code)
                .with_protocol_type(None)
                .with_protocol_name(None)
                .with_assignment(Bytes::new());
            response_frame(&resp, "SyncGroup", version, correlation_id)
        }
        ApiKey::OffsetCommit => {
            let codec_version = commit_codec_version(version)?;
            let view = offset_commit(body, version).map_err(|e| e.to_string())?;
            let topics = by_topic(&view.offsets, |o| &o.topic)
                .into_iter()
                .map(|(topic, parts)| {
                    OffsetCommitResponseTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|o| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(o.partition)
                                        .with_error_code(error_code)
                                })
                                .collect(),
                        )
                })
                .collect();
            let resp = OffsetCommitResponse::default()
                .with_throttle_time_ms(0)
                .with_topics(topics);
            response_frame(&resp, "OffsetCommit", codec_version, correlation_id)
        }
        _ => Err(format!(
            "kflip builds no error response for api key {}",
            api as i16
        )),
    }
}

/// Every (topic, partition, error_code) of a broker's OffsetCommit response
/// payload (header + body; v0-9).
pub fn offset_commit_response_errors(
    payload_after_length: &[u8],
    version: i16,
) -> Result<Vec<(String, i32, i16)>, String> {
    let codec_version = commit_codec_version(version)?;
    let resp: OffsetCommitResponse =
        decode_response(payload_after_length, "OffsetCommit", codec_version)?;
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index, p.error_code))
        })
        .collect())
}

/// Every (topic, partition, base offset) a broker's Produce response
/// payload (header + body) accepted; partitions with an error are left out.
pub fn produce_response_offsets(
    payload: &[u8],
    version: i16,
) -> Result<Vec<(String, i32, i64)>, String> {
    let resp: ProduceResponse = decode_response(payload, "Produce", version)?;
    Ok(resp
        .responses
        .iter()
        .flat_map(|t| {
            t.partition_responses
                .iter()
                .filter(|p| p.error_code == 0 && p.base_offset >= 0)
                .map(move |p| (t.name.to_string(), p.index, p.base_offset))
        })
        .collect())
}

// ---------------------------------------------------------------------------
// SyncGroup, InitProducerId responses
// ---------------------------------------------------------------------------

/// The error code of a broker's SyncGroup response payload (header + body).
pub fn sync_group_error(payload: &[u8], version: i16) -> Result<i16, String> {
    decode_response::<SyncGroupResponse>(payload, "SyncGroup", version).map(|r| r.error_code)
}

/// The error code, producer id and producer epoch of a broker's
/// InitProducerId response payload (header + body).
pub fn init_producer_id_response(payload: &[u8], version: i16) -> Result<(i16, i64, i16), String> {
    let r: InitProducerIdResponse = decode_response(payload, "InitProducerId", version)?;
    Ok((r.error_code, r.producer_id.0, r.producer_epoch))
}

// ---------------------------------------------------------------------------
// Produce record batches
// ---------------------------------------------------------------------------
