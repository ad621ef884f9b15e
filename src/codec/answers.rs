//! Responses kflip builds itself (encoded with the generated codec) and the
//! few fields it reads from broker responses (trusted; decoded with it).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, HeartbeatResponse, InitProducerIdResponse, OffsetCommitResponse, ProduceResponse,
    ResponseHeader, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use super::fetch_request::FetchView;
use super::group::offset_commit;
use super::varint::put_uvarint;
use super::walk::ParseError;

/// Why kflip could not build an answer or read a broker response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// kflip's own encoding failed (an internal fault).
    #[error("cannot encode {0}")]
    Encode(String),
    /// A broker response could not be decoded (an upstream fault).
    #[error("cannot decode {0}")]
    Decode(String),
    /// kflip answers no such request itself.
    #[error("kflip does not answer {0} itself")]
    Unanswerable(String),
    /// The client's request could not be read (a client fault).
    #[error(transparent)]
    Request(#[from] ParseError),
}

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
) -> Result<Bytes, AnswerError> {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, M::header_version(version))
        .map_err(|e| AnswerError::Encode(format!("the {what} v{version} response header: {e}")))?;
    body.encode(&mut buf, version)
        .map_err(|e| AnswerError::Encode(format!("a {what} v{version} response: {e}")))?;
    let len = i32::try_from(buf.len() - 4)
        .map_err(|_| AnswerError::Encode(format!("a {what} response too large")))?;
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
) -> Result<Bytes, AnswerError> {
    if !(4..=12).contains(&version) {
        return Err(AnswerError::Unanswerable(format!("Fetch v{version}")));
    }
    // Written field by field, not through the generated structs: one
    // partition costs ~40 bytes here and several hundred as a struct, and
    // a held Fetch may name tens of thousands of partitions.
    let flexible = version >= 12;
    let topics = by_topic(&view.partitions, |p| &p.topic);
    let mut out = BytesMut::with_capacity(64 + view.partitions.len() * 48);
    out.put_i32(0); // length, set below
    out.put_i32(correlation_id);
    if flexible {
        out.put_u8(0); // response header tags
    }
    out.put_i32(0); // throttle_time_ms
    if version >= 7 {
        out.put_i16(0); // error_code
        out.put_i32(0); // session_id
    }
    let put_len = |out: &mut BytesMut, n: usize| {
        if flexible {
            put_uvarint(out, n as u32 + 1);
        } else {
            out.put_i32(n as i32);
        }
    };
    put_len(&mut out, topics.len());
    for (topic, parts) in &topics {
        if flexible {
            put_uvarint(&mut out, topic.len() as u32 + 1);
        } else {
            out.put_i16(topic.len() as i16);
        }
        out.put_slice(topic.as_bytes());
        put_len(&mut out, parts.len());
        for p in parts {
            out.put_i32(p.partition);
            out.put_i16(0); // error_code
            out.put_i64(-1); // high_watermark
            out.put_i64(-1); // last_stable_offset
            if version >= 5 {
                out.put_i64(-1); // log_start_offset
            }
            put_len(&mut out, 0); // aborted_transactions: empty
            if version >= 11 {
                out.put_i32(-1); // preferred_read_replica
            }
            put_len(&mut out, 0); // records: empty
            if flexible {
                out.put_u8(0);
            }
        }
        if flexible {
            out.put_u8(0);
        }
    }
    if flexible {
        out.put_u8(0);
    }
    let len = i32::try_from(out.len() - 4)
        .map_err(|_| AnswerError::Encode("a Fetch response too large".into()))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}

// ---------------------------------------------------------------------------
// OffsetCommit
// ---------------------------------------------------------------------------

/// Decodes a response payload (header + body) from a broker.
fn decode_response<M: Decodable + HeaderVersion>(
    payload: &[u8],
    what: &str,
    version: i16,
) -> Result<M, AnswerError> {
    let mut buf = Bytes::copy_from_slice(payload);
    ResponseHeader::decode(&mut buf, M::header_version(version))
        .map_err(|e| AnswerError::Decode(format!("a {what} v{version} response header: {e}")))?;
    M::decode(&mut buf, version)
        .map_err(|e| AnswerError::Decode(format!("a {what} v{version} response: {e}")))
}

/// OffsetCommit v0 and v1 responses are laid out exactly like v2 (throttle
/// time arrives in v3), so they are encoded and decoded as v2; the codec
/// no longer knows the older versions.
fn commit_codec_version(version: i16) -> Result<i16, AnswerError> {
    match version {
        0..=2 => Ok(2),
        3..=9 => Ok(version),
        _ => Err(AnswerError::Unanswerable(format!(
            "OffsetCommit v{version}"
        ))),
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
) -> Result<Bytes, AnswerError> {
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
            let view = offset_commit(body, version)?;
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
        _ => Err(AnswerError::Unanswerable(format!("api key {}", api as i16))),
    }
}

/// Every (topic, partition, error_code) of a broker's OffsetCommit response
/// payload (header + body; v0-9).
pub fn offset_commit_response_errors(
    payload_after_length: &[u8],
    version: i16,
) -> Result<Vec<(String, i32, i16)>, AnswerError> {
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
) -> Result<Vec<(String, i32, i64)>, AnswerError> {
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
pub fn sync_group_error(payload: &[u8], version: i16) -> Result<i16, AnswerError> {
    decode_response::<SyncGroupResponse>(payload, "SyncGroup", version).map(|r| r.error_code)
}

/// The error code, producer id and producer epoch of a broker's
/// InitProducerId response payload (header + body).
pub fn init_producer_id_response(
    payload: &[u8],
    version: i16,
) -> Result<(i16, i64, i16), AnswerError> {
    let r: InitProducerIdResponse = decode_response(payload, "InitProducerId", version)?;
    Ok((r.error_code, r.producer_id.0, r.producer_epoch))
}

// ---------------------------------------------------------------------------
// Produce record batches
// ---------------------------------------------------------------------------

/// A Produce response that answers every partition of `view` with `code`
/// (and `message`, from v8, where the field arrives). Built with one index
/// per topic, so its cost stays linear in the request.
pub fn produce_error_response(
    version: i16,
    correlation_id: i32,
    view: &super::produce::ProduceView,
    code: i16,
    message: Option<&str>,
) -> Result<Bytes, AnswerError> {
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use std::collections::{HashMap, HashSet};
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut seen: HashSet<(&str, i32)> = HashSet::new();
    for b in &view.batches {
        if !seen.insert((&b.topic, b.partition)) {
            continue;
        }
        let mut part = PartitionProduceResponse::default()
            .with_index(b.partition)
            .with_error_code(code)
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1);
        if version >= 8 {
            part.error_message = message.map(|m| StrBytes::from_string(m.to_string()));
        }
        let i = *at.entry(&b.topic).or_insert_with(|| {
            topics.push(TopicProduceResponse::default().with_name(topic_name(&b.topic)));
            topics.len() - 1
        });
        topics[i].partition_responses.push(part);
    }
    let resp = ProduceResponse::default().with_responses(topics);
    response_frame(&resp, "Produce", version, correlation_id)
}
