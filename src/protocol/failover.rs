//! Request views and synthetic responses for the failover path.
//!
//! During a switchover kflip holds or answers some requests itself instead of
//! forwarding them: group traffic (Heartbeat, SyncGroup, OffsetCommit) is
//! answered with an error so members rejoin on the new cluster, parked
//! Fetches get an empty answer, committed offsets are translated into the
//! target's offset space, and idempotent Produce batches get the producer id
//! and sequence the target cluster issued.
//!
//! Client requests are walked by hand with the bounds-checked [`Reader`]: any
//! input, however corrupt, is an error and never a panic, and no allocation is
//! sized by a count read from the input. Responses kflip builds are encoded,
//! and broker responses (trusted) decoded, with the generated codec.
//!
//! Produce record batches (magic 2) are patched in place: the producer id,
//! epoch and base sequence sit at fixed offsets in the batch header, and the
//! CRC-32C that covers them is recomputed.

use std::ops::Range;
use std::sync::Arc;

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

use super::varint::{put_uvarint, Reader};

/// Why a client request body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The API key or version is not one these parsers handle.
    #[error("api key {api} version {version} is not handled by the failover parsers")]
    Unsupported {
        /// Raw API key.
        api: i16,
        /// Version the client used.
        version: i16,
    },
    /// The body ends early or holds an impossible value.
    #[error("request body is malformed or truncated at {0}")]
    Malformed(&'static str),
    /// A record batch in a format other than magic 2.
    #[error("record batch has magic {0}; only magic 2 batches are supported")]
    Magic(i8),
}

pub(super) fn unsupported(api: ApiKey, version: i16) -> ParseError {
    ParseError::Unsupported {
        api: api as i16,
        version,
    }
}

/// A [`Reader`] that knows whether the message uses the flexible (compact)
/// encodings, and names the field in its errors.
pub(super) struct Walk<'a> {
    r: Reader<'a>,
    flexible: bool,
}

impl<'a> Walk<'a> {
    pub(super) fn new(buf: &'a [u8], flexible: bool) -> Self {
        Self::at(buf, 0, flexible)
    }

    pub(super) fn at(buf: &'a [u8], pos: usize, flexible: bool) -> Self {
        Walk {
            r: Reader::new(buf, pos),
            flexible,
        }
    }

    pub(super) fn pos(&self) -> usize {
        self.r.pos()
    }

    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        self.r.take(n).map_err(|_| ParseError::Malformed(what))
    }

    pub(super) fn skip(&mut self, n: usize, what: &'static str) -> Result<(), ParseError> {
        self.take(n, what).map(|_| ())
    }

    pub(super) fn i16(&mut self, what: &'static str) -> Result<i16, ParseError> {
        self.r.i16().map_err(|_| ParseError::Malformed(what))
    }

    pub(super) fn i32(&mut self, what: &'static str) -> Result<i32, ParseError> {
        self.r.i32().map_err(|_| ParseError::Malformed(what))
    }

    pub(super) fn i64(&mut self, what: &'static str) -> Result<i64, ParseError> {
        let b = self.take(8, what)?;
        let b: [u8; 8] = b.try_into().map_err(|_| ParseError::Malformed(what))?;
        Ok(i64::from_be_bytes(b))
    }

    /// The length of a nullable string or byte array; `None` for null.
    /// Classic strings have an i16 length, classic bytes an i32 one.
    pub(super) fn len(
        &mut self,
        wide: bool,
        what: &'static str,
    ) -> Result<Option<usize>, ParseError> {
        let bad = |_| ParseError::Malformed(what);
        if self.flexible {
            return Ok(self
                .r
                .uvarint()
                .map_err(bad)?
                .checked_sub(1)
                .map(|n| n as usize));
        }
        let n = if wide {
            self.r.i32().map_err(bad)?
        } else {
            self.r.i16().map_err(bad)?.into()
        };
        match n {
            -1 => Ok(None),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| ParseError::Malformed(what)),
        }
    }

    /// A nullable string.
    pub(super) fn str_opt(&mut self, what: &'static str) -> Result<Option<String>, ParseError> {
        let Some(n) = self.len(false, what)? else {
            return Ok(None);
        };
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| ParseError::Malformed(what))
    }

    /// A string that may not be null.
    pub(super) fn str(&mut self, what: &'static str) -> Result<String, ParseError> {
        self.str_opt(what)?.ok_or(ParseError::Malformed(what))
    }

    /// Skips a nullable string without decoding it.
    pub(super) fn skip_str(&mut self, what: &'static str) -> Result<(), ParseError> {
        if let Some(n) = self.len(false, what)? {
            self.skip(n, what)?;
        }
        Ok(())
    }

    /// Nullable bytes; returns where they lie in the buffer.
    pub(super) fn bytes(&mut self, what: &'static str) -> Result<Option<Range<usize>>, ParseError> {
        let Some(n) = self.len(true, what)? else {
            return Ok(None);
        };
        let start = self.pos();
        self.skip(n, what)?;
        Ok(Some(start..self.pos()))
    }

    /// A non-null array's element count. Callers loop over it reading at
    /// least one byte per element, so a huge count just runs out of input.
    pub(super) fn array(&mut self, what: &'static str) -> Result<u32, ParseError> {
        self.r
            .array_len(self.flexible)
            .map_err(|_| ParseError::Malformed(what))
    }

    /// Skips a tagged-field section, in flexible versions only.
    pub(super) fn tags(&mut self, what: &'static str) -> Result<(), ParseError> {
        if self.flexible {
            self.r
                .skip_tagged()
                .map_err(|_| ParseError::Malformed(what))?;
        }
        Ok(())
    }
}

/// Appends a nullable string in the classic or compact encoding.
fn put_str(out: &mut Vec<u8>, flexible: bool, s: Option<&str>) {
    match (s, flexible) {
        (None, true) => out.put_u8(0),
        (None, false) => out.put_i16(-1),
        (Some(s), true) => {
            put_uvarint(out, s.len() as u32 + 1);
            out.put_slice(s.as_bytes());
        }
        (Some(s), false) => {
            out.put_i16(s.len() as i16);
            out.put_slice(s.as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------
// Group membership: Heartbeat, SyncGroup, OffsetCommit
// ---------------------------------------------------------------------------

/// Who a group request claims to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The consumer group.
    pub group_id: String,
    /// The generation the member believes it is in; -1 when absent
    /// (OffsetCommit v0) or for a simple (groupless) commit.
    pub generation_id: i32,
    /// The member id the coordinator assigned; empty when absent.
    pub member_id: String,
}

/// Reads the member identity at the start of a Heartbeat (v0-4), SyncGroup
/// (v0-5) or OffsetCommit (v0-9) request body.
pub fn group_member(body: &[u8], api: ApiKey, version: i16) -> Result<GroupMember, ParseError> {
    let (flexible_from, max) = match api {
        ApiKey::Heartbeat => (4, 4),
        ApiKey::SyncGroup => (4, 5),
        ApiKey::OffsetCommit => (8, 9),
        _ => return Err(unsupported(api, version)),
    };
    if !(0..=max).contains(&version) {
        return Err(unsupported(api, version));
    }
    let mut w = Walk::new(body, version >= flexible_from);
    let group_id = w.str("group_id")?;
    if api == ApiKey::OffsetCommit && version == 0 {
        return Ok(GroupMember {
            group_id,
            generation_id: -1,
            member_id: String::new(),
        });
    }
    let generation_id = w.i32("generation_id")?;
    let member_id = w.str("member_id")?;
    Ok(GroupMember {
        group_id,
        generation_id,
        member_id,
    })
}

// ---------------------------------------------------------------------------
// Fetch
// ---------------------------------------------------------------------------

/// One partition a Fetch asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    /// Topic name, shared by the topic's entries (a request of many
    /// partitions of one long name costs the name once).
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// The offset the client wants to read from.
    pub fetch_offset: i64,
}

/// What kflip needs of a Fetch request to park or answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchView {
    /// How long the client lets the broker wait for data.
    pub max_wait_ms: i32,
    /// The incremental fetch session id; 0 when none (or before v7).
    pub session_id: i32,
    /// Every requested partition, in request order.
    pub partitions: Vec<FetchPartition>,
}

/// Reads a Fetch request body, v4 to v12 (v13+ names topics by id, which
/// kflip never advertises). Fields after the topic list are not read.
pub fn fetch_request(body: &[u8], version: i16) -> Result<FetchView, ParseError> {
    if !(4..=12).contains(&version) {
        return Err(unsupported(ApiKey::Fetch, version));
    }
    let mut w = Walk::new(body, version >= 12);
    w.skip(4, "replica_id")?;
    let max_wait_ms = w.i32("max_wait_ms")?;
    w.skip(4 + 4 + 1, "min_bytes, max_bytes, isolation_level")?;
    let session_id = if version >= 7 {
        let id = w.i32("session_id")?;
        w.skip(4, "session_epoch")?;
        id
    } else {
        0
    };
    let mut partitions = Vec::new();
    for _ in 0..w.array("topics")? {
        let topic: Arc<str> = w.str("topic")?.into();
        for _ in 0..w.array("partitions")? {
            let partition = w.i32("partition")?;
            if version >= 9 {
                w.skip(4, "current_leader_epoch")?;
            }
            let fetch_offset = w.i64("fetch_offset")?;
            if version >= 12 {
                w.skip(4, "last_fetched_epoch")?;
            }
            if version >= 5 {
                w.skip(8, "log_start_offset")?;
            }
            w.skip(4, "partition_max_bytes")?;
            w.tags("partition tagged fields")?;
            partitions.push(FetchPartition {
                topic: topic.clone(),
                partition,
                fetch_offset,
            });
        }
        w.tags("topic tagged fields")?;
    }
    Ok(FetchView {
        max_wait_ms,
        session_id,
        partitions,
    })
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

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffset {
    /// Topic name, shared by the topic's entries.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// The committed offset, in the offset space of the cluster the client
    /// thinks it talks to.
    pub offset: i64,
}

/// What kflip needs of an OffsetCommit request to translate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitView {
    /// The consumer group.
    pub group_id: String,
    /// Generation (or, v9+, member epoch); -1 for a simple commit or v0.
    pub generation_id: i32,
    /// Member id; empty for a simple commit or v0.
    pub member_id: String,
    /// Static membership id (v7+).
    pub group_instance_id: Option<String>,
    /// Every committed offset, in request order.
    pub offsets: Vec<CommitOffset>,
}

/// A walked OffsetCommit body: the view plus where its fields sit.
struct CommitLayout {
    view: CommitView,
    /// From generation_id to the end of group_instance_id (v1+): the span a
    /// simple commit replaces.
    member: Option<Range<usize>>,
    /// Where each committed_offset starts, in the order of `view.offsets`.
    offset_at: Vec<usize>,
}

fn walk_commit(body: &[u8], version: i16) -> Result<CommitLayout, ParseError> {
    if !(0..=9).contains(&version) {
        return Err(unsupported(ApiKey::OffsetCommit, version));
    }
    let mut w = Walk::new(body, version >= 8);
    let group_id = w.str("group_id")?;
    let mut view = CommitView {
        group_id,
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        offsets: Vec::new(),
    };
    let mut member = None;
    if version >= 1 {
        let start = w.pos();
        view.generation_id = w.i32("generation_id")?;
        view.member_id = w.str("member_id")?;
        if version >= 7 {
            view.group_instance_id = w.str_opt("group_instance_id")?;
        }
        member = Some(start..w.pos());
    }
    if (2..=4).contains(&version) {
        w.skip(8, "retention_time_ms")?;
    }
    let mut offset_at = Vec::new();
    for _ in 0..w.array("topics")? {
        let topic: Arc<str> = w.str("topic name")?.into();
        for _ in 0..w.array("partitions")? {
            let partition = w.i32("partition_index")?;
            let at = w.pos();
            let offset = w.i64("committed_offset")?;
            if version >= 6 {
                w.skip(4, "committed_leader_epoch")?;
            }
            if version == 1 {
                w.skip(8, "commit_timestamp")?;
            }
            w.skip_str("committed_metadata")?;
            w.tags("partition tagged fields")?;
            offset_at.push(at);
            view.offsets.push(CommitOffset {
                topic: topic.clone(),
                partition,
                offset,
            });
        }
        w.tags("topic tagged fields")?;
    }
    w.tags("request tagged fields")?;
    Ok(CommitLayout {
        view,
        member,
        offset_at,
    })
}

/// Reads an OffsetCommit request body. Versions 2 to 9 are the ones kflip
/// advertises; 0 and 1 are read too.
pub fn offset_commit(body: &[u8], version: i16) -> Result<CommitView, ParseError> {
    walk_commit(body, version).map(|l| l.view)
}

/// Rewrites an OffsetCommit body at the same version: each committed offset
/// becomes `new_offsets(topic, partition, old)`, and with `as_simple` the
/// commit is made groupless (generation -1, member "", no instance id) so
/// the target's coordinator accepts it from a member it never saw join.
/// Every other byte (metadata, leader epochs, tagged fields) is copied.
pub fn rewrite_offset_commit(
    body: &[u8],
    version: i16,
    new_offsets: impl Fn(&str, i32, i64) -> i64,
    as_simple: bool,
) -> Result<Vec<u8>, ParseError> {
    let layout = walk_commit(body, version)?;
    let flexible = version >= 8;
    let mut out = Vec::with_capacity(body.len() + 8);
    let mut at = 0;
    if let (true, Some(member)) = (as_simple, &layout.member) {
        out.extend_from_slice(&body[..member.start]);
        out.put_i32(-1);
        put_str(&mut out, flexible, Some(""));
        if version >= 7 {
            put_str(&mut out, flexible, None);
        }
        at = member.end;
    }
    for (o, &pos) in layout.view.offsets.iter().zip(&layout.offset_at) {
        out.extend_from_slice(&body[at..pos]);
        out.put_i64(new_offsets(&o.topic, o.partition, o.offset));
        at = pos + 8;
    }
    out.extend_from_slice(&body[at..]);
    Ok(out)
}

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

/// Offsets of the magic-2 batch header fields, from the batch start.
mod batch {
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    /// The CRC covers from here to the end of the batch.
    pub const ATTRIBUTES: usize = 21;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORD_COUNT: usize = 57;
    /// The whole header; records follow.
    pub const HEADER: usize = 61;
    /// baseOffset and batchLength precede what batchLength counts.
    pub const PREFIX: usize = 12;
}

/// One record batch inside a Produce request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRef {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// Where the batch (its baseOffset) starts in the request body.
    pub start: usize,
    /// Length of the whole batch, baseOffset to its last record.
    pub len: usize,
    /// The producer id; -1 for a non-idempotent producer.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record; -1 when not idempotent.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

/// The record batches of a Produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceView {
    /// The transactional id, for transactional producers.
    pub transactional_id: Option<String>,
    /// Every batch, in request order.
    pub batches: Vec<BatchRef>,
}

/// Walks the batches in one partition's records, `body[range]`.
fn walk_batches(
    body: &[u8],
    range: Range<usize>,
    topic: &Arc<str>,
    partition: i32,
    out: &mut Vec<BatchRef>,
) -> Result<(), ParseError> {
    let records = body
        .get(..range.end)
        .ok_or(ParseError::Malformed("records"))?;
    let mut start = range.start;
    while start < range.end {
        let mut r = Walk::at(records, start, false);
        r.skip(8, "baseOffset")?;
        let counted = usize::try_from(r.i32("batchLength")?)
            .ok()
            .filter(|&n| n >= batch::HEADER - batch::PREFIX)
            .ok_or(ParseError::Malformed("batchLength"))?;
        let len = batch::PREFIX + counted;
        if len > range.end - start {
            return Err(ParseError::Malformed("record batch"));
        }
        r.skip(4, "partitionLeaderEpoch")?;
        let magic = r.take(1, "magic")?[0] as i8;
        if magic != 2 {
            return Err(ParseError::Magic(magic));
        }
        r.skip(4 + 2 + 4 + 8 + 8, "batch header")?;
        let producer_id = r.i64("producerId")?;
        let producer_epoch = r.i16("producerEpoch")?;
        let base_sequence = r.i32("baseSequence")?;
        let record_count = r.i32("recordCount")?;
        out.push(BatchRef {
            topic: topic.clone(),
            partition,
            start,
            len,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        });
        start += len;
    }
    Ok(())
}

/// Finds every record batch in a Produce request body, v3 to v12. Each
/// partition's records may hold several batches back to back; all must be
/// magic 2 and whole.
pub fn produce_batches(body: &[u8], version: i16) -> Result<ProduceView, ParseError> {
    if !(3..=12).contains(&version) {
        return Err(unsupported(ApiKey::Produce, version));
    }
    let mut w = Walk::new(body, version >= 9);
    let transactional_id = w.str_opt("transactional_id")?;
    w.skip(2 + 4, "acks, timeout_ms")?;
    let mut batches = Vec::new();
    for _ in 0..w.array("topic_data")? {
        let topic: Arc<str> = w.str("topic name")?.into();
        for _ in 0..w.array("partition_data")? {
            let partition = w.i32("partition index")?;
            if let Some(records) = w.bytes("records")? {
                walk_batches(body, records, &topic, partition, &mut batches)?;
            }
            w.tags("partition tagged fields")?;
        }
        w.tags("topic tagged fields")?;
    }
    w.tags("request tagged fields")?;
    Ok(ProduceView {
        transactional_id,
        batches,
    })
}

/// The batch's bytes, if `batch` lies within `body` and holds a header.
fn batch_bytes<'a>(body: &'a [u8], b: &BatchRef) -> Option<&'a [u8]> {
    let end = b.start.checked_add(b.len)?;
    body.get(b.start..end).filter(|s| s.len() >= batch::HEADER)
}

/// Sets a batch's producer id, epoch and base sequence in place and
/// recomputes its CRC, so the target cluster accepts it as a continuation of
/// the producer state it issued. Returns false, changing nothing, if
/// `batch` does not lie within `body`.
pub fn rewrite_batch(
    body: &mut [u8],
    batch: &BatchRef,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> bool {
    if batch_bytes(body, batch).is_none() {
        return false;
    }
    let b = &mut body[batch.start..batch.start + batch.len];
    b[batch::PRODUCER_ID..batch::PRODUCER_EPOCH].copy_from_slice(&producer_id.to_be_bytes());
    b[batch::PRODUCER_EPOCH..batch::BASE_SEQUENCE].copy_from_slice(&producer_epoch.to_be_bytes());
    b[batch::BASE_SEQUENCE..batch::RECORD_COUNT].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&b[batch::ATTRIBUTES..]);
    b[batch::CRC..batch::ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
    true
}

/// Whether a batch's stored CRC-32C matches its contents (and its magic is
/// 2); false if `batch` does not lie within `body`.
pub fn batch_crc_ok(body: &[u8], batch: &BatchRef) -> bool {
    let Some(b) = batch_bytes(body, batch) else {
        return false;
    };
    let stored = [
        b[batch::CRC],
        b[batch::CRC + 1],
        b[batch::CRC + 2],
        b[batch::CRC + 3],
    ];
    b[batch::MAGIC] == 2 && u32::from_be_bytes(stored) == crc32c::crc32c(&b[batch::ATTRIBUTES..])
}

#[cfg(test)]
#[path = "failover_tests.rs"]
mod tests;
