//! Entry points of the fuzz targets (`fuzz/`) and of their corpus replay
//! (`tests/fuzz_corpora.rs`).
//!
//! Every call from fuzzing into kflip's internals is in this file, so a
//! module that moves is fixed up here and nowhere else. Each entry takes
//! arbitrary bytes, must not panic on any of them, and asserts the
//! invariants of what it drives: a panic here is a finding. Allocation is
//! measured by the fuzz crate's allocator, not here (this crate forbids
//! `unsafe`).
//!
//! Input layouts (what `tests/capture_corpus.rs` writes):
//! - `frame_header`: Kafka frames back to back, length prefixes included;
//! - `request`: one request payload (header and body, no length prefix);
//! - `fetch_stream`: the Fetch version (i16) then one response payload;
//! - `response_rewrite`: the API key (i16) and version (i16), then one
//!   response payload;
//! - `config`: a YAML file.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::codec::{
    self as failover, consumer_group, epochs, frame, header, producer_id as intercept, txn,
};
use crate::protocol::{fetch, rewrite};

/// A target's entry function.
pub type Entry = fn(&[u8]);

/// Every target: its name (the folder under `fuzz/corpus/`) and its entry.
pub const TARGETS: &[(&str, Entry)] = &[
    ("frame_header", frame_header),
    ("request", request),
    ("fetch_stream", fetch_stream),
    ("response_rewrite", response_rewrite),
    ("config", config),
];

/// The largest frame the `frame_header` target accepts, as
/// `proxy.max_frame_bytes` would.
pub const MAX_FRAME: usize = 8 << 20;

/// Runs `f` on this thread's current-thread runtime (built once, so the
/// allocation of a runtime is not charged to an input).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    RT.with(|rt| rt.block_on(f))
}

/// Builds what a target needs once per process (the runtime), so that the
/// fuzz crate's allocation budget measures inputs only.
pub fn warm_up() {
    block_on(async {});
    let _ = crate::routing::topic_ids::virtual_topic_id("warm-up");
}

fn be_i16(b: &[u8]) -> Option<i16> {
    Some(i16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

// ---------------------------------------------------------------------------
// frame_header: read_frame, parse_request_head, client_id, produce_acks
// ---------------------------------------------------------------------------

/// Reads frames from `data` until it ends or a frame is refused, and parses
/// each request header. Asserts that a frame is exactly what its prefix
/// announced, taken from where the previous one ended, and that the body
/// offset lies inside the payload.
pub fn frame_header(data: &[u8]) {
    let mut reader = data;
    let mut consumed = 0usize;
    loop {
        let before = reader.len();
        let got = block_on(frame::read_frame(&mut reader, MAX_FRAME));
        match got {
            Ok(None) => {
                assert_eq!(consumed, data.len(), "clean EOF before the end");
                return;
            }
            Err(_) => return,
            Ok(Some(f)) => {
                let len = u32::from_be_bytes([f.0[0], f.0[1], f.0[2], f.0[3]]) as usize;
                assert!(len <= MAX_FRAME, "frame of {len} bytes above the limit");
                assert_eq!(f.0.len(), 4 + len, "frame length differs from its prefix");
                assert_eq!(before - reader.len(), 4 + len, "frame read more or less");
                assert_eq!(&data[consumed..consumed + 4 + len], &f.0[..]);
                assert!(
                    f.0.capacity() <= 4 + len + (1 << 20),
                    "frame buffer of {} bytes for a {len}-byte frame",
                    f.0.capacity()
                );
                consumed += 4 + len;
                head(f.payload());
            }
        }
    }
}

/// The header-level parsers of one request payload.
fn head(payload: &[u8]) {
    if let Some(id) = header::client_id(payload) {
        let raw = i16::from_be_bytes([payload[8], payload[9]]) as usize;
        assert!(id.len() <= 3 * raw, "client id grew past its bytes");
    }
    let Ok(h) = header::parse_request_head(payload) else {
        return;
    };
    assert_eq!(be_i16(payload), Some(h.api_key));
    let Some(at) = h.body_offset else {
        assert!(ApiKey::try_from(h.api_key).is_err(), "known key, no body");
        return;
    };
    assert!(
        (8..=payload.len()).contains(&at),
        "body offset {at} outside"
    );
    if h.api_key == ApiKey::Produce as i16 {
        let _ = header::produce_acks(&payload[at..], h.api_version);
    }
}

// ---------------------------------------------------------------------------
// request: every walker of client request bodies
// ---------------------------------------------------------------------------

/// Parses a request payload's header and hands its body to every walker
/// of that API key.
pub fn request(payload: &[u8]) {
    head(payload);
    let Ok(h) = header::parse_request_head(payload) else {
        return;
    };
    let (Some(at), Ok(api)) = (h.body_offset, ApiKey::try_from(h.api_key)) else {
        return;
    };
    walk(api, h.api_version, h.correlation_id, &payload[at..]);
}

/// Every walker kflip runs on a body of `api` at `version`.
pub fn walk(api: ApiKey, version: i16, correlation_id: i32, body: &[u8]) {
    match api {
        ApiKey::Produce => produce(body, version),
        ApiKey::Fetch => fetch_request(body, version, correlation_id),
        ApiKey::ListOffsets => {
            clear(body, |b| epochs::clear_list_offsets(b, version).is_ok());
        }
        ApiKey::OffsetForLeaderEpoch => {
            clear(body, |b| {
                epochs::clear_offset_for_leader_epoch(b, version).is_ok()
            });
        }
        ApiKey::OffsetCommit => {
            let _ = failover::group_member(body, api, version);
            offset_commit(body, version, correlation_id);
        }
        ApiKey::Heartbeat | ApiKey::SyncGroup
            if failover::group_member(body, api, version).is_ok() =>
        {
            let r = failover::error_response(api, version, correlation_id, 27, body);
            assert!(r.is_ok(), "{api:?} v{version}: {r:?}");
        }
        ApiKey::LeaveGroup => {
            if let Some(g) = failover::leave_group_id(body, version) {
                assert!(g.len() <= 3 * body.len());
            }
        }
        ApiKey::InitProducerId => init_producer_id(body, version),
        ApiKey::AddPartitionsToTxn
        | ApiKey::AddOffsetsToTxn
        | ApiKey::EndTxn
        | ApiKey::TxnOffsetCommit => txn_request(api, version, body),
        ApiKey::ConsumerGroupHeartbeat => consumer_heartbeat(body, version),
        _ => {}
    }
}

/// Runs an in-place epoch clear on a copy; a successful one changes only
/// 4-byte fields to -1, and running it again changes nothing.
fn clear(body: &[u8], f: impl Fn(&mut [u8]) -> bool) {
    let mut once = body.to_vec();
    if !f(&mut once) {
        return;
    }
    let mut i = 0;
    while i < body.len() {
        if once[i] == body[i] {
            i += 1;
            continue;
        }
        assert_eq!(once[i], 0xff, "a clear wrote something other than -1");
        i += 1;
    }
    let mut twice = once.clone();
    assert!(f(&mut twice), "a cleared body no longer walks");
    assert_eq!(once, twice, "clearing is not idempotent");
}

fn produce(body: &[u8], version: i16) {
    let _ = header::produce_acks(body, version);
    let Ok(view) = failover::produce_batches(body, version) else {
        return;
    };
    let mut end = 0;
    for b in &view.batches {
        assert!(b.start >= end, "batches overlap or go backwards");
        assert!(b.len >= 61, "batch of {} bytes has no whole header", b.len);
        end = b.start.checked_add(b.len).expect("batch end overflows");
        assert!(
            end <= body.len(),
            "batch {}..{end} outside the body",
            b.start
        );
    }
    let mut patched = body.to_vec();
    for (i, b) in view.batches.iter().enumerate() {
        let was_ok = failover::batch_crc_ok(body, b);
        assert!(failover::rewrite_batch(
            &mut patched,
            b,
            1000 + i as i64,
            7,
            i as i32
        ));
        assert!(
            failover::batch_crc_ok(&patched, b),
            "CRC wrong after rewrite"
        );
        let _ = was_ok;
    }
    // Only producer id, epoch, base sequence and CRC of each batch changed.
    for (i, (x, y)) in body.iter().zip(&patched).enumerate() {
        if x != y {
            let inside = view.batches.iter().any(|b| {
                (b.start + 17..b.start + 21).contains(&i)
                    || (b.start + 43..b.start + 57).contains(&i)
            });
            assert!(inside, "rewrite_batch changed byte {i} outside its fields");
        }
    }
    let again = failover::produce_batches(&patched, version).expect("a rewritten body walks");
    assert_eq!(again.batches.len(), view.batches.len());
    for (i, (a, b)) in again.batches.iter().zip(&view.batches).enumerate() {
        assert_eq!((a.start, a.len, a.partition), (b.start, b.len, b.partition));
        assert_eq!(
            (a.producer_id, a.producer_epoch, a.base_sequence),
            (1000 + i as i64, 7, i as i32)
        );
    }
}

fn fetch_request(body: &[u8], version: i16, correlation_id: i32) {
    clear(body, |b| epochs::clear_fetch(b, version).is_ok());
    let Ok(view) = failover::fetch_request(body, version) else {
        return;
    };
    // Each partition is at least 16 bytes of the body.
    assert!(view.partitions.len() <= body.len() / 16);
    let mut cleared = body.to_vec();
    if epochs::clear_fetch(&mut cleared, version).is_ok() {
        let again = failover::fetch_request(&cleared, version).expect("cleared body walks");
        assert_eq!(again, view, "clearing epochs changed what a Fetch asks");
    }
    // kflip's own empty answer must pass kflip's own response walker.
    let frame = failover::empty_fetch_response(version, correlation_id, &view)
        .expect("an empty Fetch response for a walked request");
    let payload = &frame[4..];
    assert_eq!(frame.len() - 4, be_u32(&frame[..4]) as usize);
    let out = stream(payload, payload.len(), version, correlation_id)
        .expect("kflip's empty Fetch response does not stream");
    assert_eq!(out.len(), payload.len());
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn offset_commit(body: &[u8], version: i16, correlation_id: i32) {
    let Ok(view) = failover::offset_commit(body, version) else {
        return;
    };
    assert!(view.offsets.len() <= body.len() / 12);
    for simple in [false, true] {
        let out = failover::rewrite_offset_commit(
            body,
            version,
            |_, p, o| o.wrapping_add(i64::from(p)),
            simple,
        )
        .expect("a walked commit rewrites");
        assert!(out.len() <= body.len() + 8, "rewrite grew the body");
        let again = failover::offset_commit(&out, version).expect("a rewritten commit walks");
        assert_eq!(again.group_id, view.group_id);
        assert_eq!(again.offsets.len(), view.offsets.len());
        for (a, b) in again.offsets.iter().zip(&view.offsets) {
            assert_eq!((&a.topic, a.partition), (&b.topic, b.partition));
            assert_eq!(a.offset, b.offset.wrapping_add(i64::from(b.partition)));
        }
        if simple && version >= 1 {
            assert_eq!(again.generation_id, -1);
            assert_eq!(again.member_id, "");
            assert_eq!(again.group_instance_id, None);
        } else {
            assert_eq!(again.generation_id, view.generation_id);
            assert_eq!(again.member_id, view.member_id);
        }
    }
    let frame = failover::error_response(ApiKey::OffsetCommit, version, correlation_id, 27, body)
        .expect("an error response for a walked commit");
    let errors = failover::offset_commit_response_errors(&frame[4..], version)
        .expect("kflip's OffsetCommit error response decodes");
    assert_eq!(errors.len(), view.offsets.len());
    assert!(errors.iter().all(|e| e.2 == 27));
}

fn init_producer_id(body: &[u8], version: i16) {
    let _ = intercept::transactional(body, version);
    let at = intercept::init_producer_id_at(body, version);
    if let Some(at) = at {
        assert!(at <= body.len(), "producer id offset {at} outside");
    }
    let mut fresh = body.to_vec();
    intercept::fresh_producer_id(&mut fresh, version);
    match at {
        Some(at) if at + 10 <= body.len() => {
            assert_eq!(&fresh[..at], &body[..at]);
            assert_eq!(&fresh[at + 10..], &body[at + 10..]);
            assert_eq!(intercept::init_producer_id_of(&fresh, version), Some(-1));
        }
        _ => assert_eq!(fresh, body, "no producer id, yet bytes changed"),
    }
}

fn txn_request(api: ApiKey, version: i16, body: &[u8]) {
    let Ok(r) = txn::txn_request(api, version, body) else {
        return;
    };
    let at = r.producer_id_at;
    assert!(at + 10 <= body.len(), "producer id at {at} outside");
    let parts: usize = r.topics.iter().map(|t| t.1.len()).sum();
    assert!(
        r.topics.len() + parts <= body.len(),
        "more entries than bytes"
    );
    let mut patched = body.to_vec();
    txn::set_producer(&mut patched, at, 4242, 3);
    assert_eq!(&patched[..at], &body[..at]);
    assert_eq!(&patched[at + 10..], &body[at + 10..]);
    let again = txn::txn_request(api, version, &patched).expect("a patched request walks");
    assert_eq!((again.producer_id, again.producer_epoch), (4242, 3));
    assert_eq!(again.topics, r.topics);
    assert_eq!(again.transactional_id, r.transactional_id);
}

fn consumer_heartbeat(body: &[u8], version: i16) {
    let Ok(hb) = consumer_group::heartbeat(body, version) else {
        return;
    };
    let mut end = 0;
    for r in &hb.topic_ids {
        assert!(r.start >= end && r.end == r.start + 16 && r.end <= body.len());
        end = r.end;
    }
    let mut mapped = body.to_vec();
    let to = Uuid::from_u128(0x1234);
    consumer_group::map_topic_ids(&mut mapped, &hb, |_| to);
    let again = consumer_group::heartbeat(&mapped, version).expect("a mapped heartbeat walks");
    assert_eq!(again.topic_ids, hb.topic_ids);
    for r in &hb.topic_ids {
        assert_eq!(&mapped[r.clone()], to.as_bytes());
    }
}

// ---------------------------------------------------------------------------
// fetch_stream: the streamed Fetch response walker
// ---------------------------------------------------------------------------

/// A [`rewrite::NodeMap`] that is its own fixed point, so rewriting twice
/// gives what rewriting once gave.
pub struct Fixed;

impl Fixed {
    fn id(real: i32) -> i32 {
        if real < 0 {
            real
        } else {
            1000 + real % 1000
        }
    }
}

impl rewrite::NodeMap for Fixed {
    fn node(&self, real: i32) -> i32 {
        Fixed::id(real)
    }
    fn endpoint(&self, real: i32) -> (StrBytes, i32) {
        (StrBytes::from_static_str("kflip"), 9000 + Fixed::id(real))
    }
    fn cluster_id(&self) -> StrBytes {
        StrBytes::from_static_str("kflip-cluster")
    }
    fn topic_id_of_real(&self, real: Uuid) -> Option<Uuid> {
        (real.as_u128() % 3 != 0).then_some(real)
    }
}

/// Streams `payload` (`len` bytes announced) through `stream_fetch` into a
/// buffer.
fn stream(
    payload: &[u8],
    len: usize,
    version: i16,
    correlation_id: i32,
) -> Result<Vec<u8>, rewrite::RewriteError> {
    let mut up = tokio::io::BufReader::with_capacity(512, payload);
    let mut out = Vec::with_capacity(payload.len());
    block_on(fetch::stream_fetch(
        &mut up,
        &mut out,
        len,
        version,
        correlation_id,
        &Fixed,
    ))
    .map(|()| out)
}

/// A Fetch response of the version in the first two bytes, streamed and
/// patched. A success writes exactly the announced length; streaming the
/// output again changes nothing; a stream that ends before the announced
/// length is an error.
pub fn fetch_stream(data: &[u8]) {
    let Some(version) = be_i16(data) else {
        return;
    };
    let payload = &data[2..];
    let correlation_id = payload.get(..4).map(be_u32).unwrap_or(0) as i32;
    let Ok(out) = stream(payload, payload.len(), version, correlation_id) else {
        return;
    };
    assert_eq!(out.len(), payload.len(), "the patch changed the length");
    let again = stream(&out, out.len(), version, correlation_id)
        .expect("a patched response no longer streams");
    assert!(again == out, "patching is not idempotent");
    assert!(
        stream(payload, payload.len() + 1, version, correlation_id).is_err(),
        "a response shorter than announced streamed"
    );
}

// ---------------------------------------------------------------------------
// response_rewrite: Rewritable decode / rewrite / encode
// ---------------------------------------------------------------------------

/// The APIs [`rewrite::Rewritable`] handles.
pub const REWRITTEN: [ApiKey; 8] = [
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::DescribeCluster,
    ApiKey::DescribeTopicPartitions,
    ApiKey::Produce,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
    ApiKey::OffsetFetch,
];

/// Decodes, optionally rewrites, and encodes a response; returns the
/// decoded (and rewritten) message as text, for comparing, and the frame.
fn rewrite_once(
    api: ApiKey,
    version: i16,
    payload: &[u8],
    map: bool,
) -> Result<Option<(String, bytes::BytesMut)>, rewrite::RewriteError> {
    let Some(mut r) = rewrite::Rewritable::decode(api, version, Bytes::copy_from_slice(payload))?
    else {
        return Ok(None);
    };
    let _ = r.body();
    let _ = r.brokers();
    let _ = r.unnamed_topic_ids();
    if map {
        r.rewrite(&Fixed);
    }
    let out = r.encode().expect("a decoded, rewritten response encodes");
    assert_eq!(
        be_u32(&out[..4]) as usize,
        out.len() - 4,
        "wrong length prefix"
    );
    Ok(Some((format!("{r:?}"), out)))
}

/// A response of the API key and version in the first four bytes (a key
/// kflip does not rewrite picks one that it does). A decoded response
/// rewrites and encodes. When the codec alone round-trips it (what it
/// decodes from its own encoding is what it decoded from the input: some
/// inputs it accepts it cannot encode back, see docs/fuzzing.md), the
/// rewritten output decodes too, and rewriting it again gives the same
/// bytes.
pub fn response_rewrite(data: &[u8]) {
    let (Some(key), Some(version)) = (be_i16(data), data.get(2..).and_then(be_i16)) else {
        return;
    };
    let api = match ApiKey::try_from(key) {
        Ok(api) if REWRITTEN.contains(&api) => api,
        _ => REWRITTEN[usize::from(key as u16) % REWRITTEN.len()],
    };
    let Ok(Some((_, once))) = rewrite_once(api, version, &data[4..], true) else {
        return;
    };
    let plain = rewrite_once(api, version, &data[4..], false);
    let Ok(Some((decoded, plain))) = plain else {
        panic!("{api:?} v{version}: decoded once, then not: {plain:?}");
    };
    match rewrite_once(api, version, &plain[4..], false) {
        Ok(Some((again, _))) if again == decoded => {}
        _ => return,
    }
    let twice = match rewrite_once(api, version, &once[4..], true) {
        Ok(Some((_, twice))) => twice,
        other => panic!("{api:?} v{version}: the rewritten response does not decode: {other:?}"),
    };
    assert!(
        once == twice,
        "{api:?} v{version}: rewriting is not idempotent"
    );
}

// ---------------------------------------------------------------------------
// config
// ---------------------------------------------------------------------------

/// Parses and validates a config file; a valid one must also validate when
/// its text is parsed again (parsing has no hidden state).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let first = crate::config::Config::parse(text).is_ok();
    let second = crate::config::Config::parse(text).is_ok();
    assert_eq!(first, second, "the same text parsed differently");
}
