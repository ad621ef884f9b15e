//! The records section of one partition of a Fetch response, walked in
//! place: its magic-2 batches, their records, and read_committed filtering.
//!
//! Nothing is copied or allocated for an uncompressed batch: heads are read
//! at fixed offsets and records are slices of the response. A compressed
//! batch is inflated once into the caller's scratch buffer, bounded by
//! [`expansion_limit`]. Every length is checked against the bytes left, so
//! any input ends in an error or the end of an iteration, never a panic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::io::Read;
use std::iter::FusedIterator;

use super::produce::batch;
use super::records::{expansion_limit, snappy, RecordsError};

/// Header offsets [`batch`] does not name.
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;

/// The header of one magic-2 batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHead {
    /// The offset of the first record.
    pub base_offset: i64,
    /// base_offset + lastOffsetDelta
    pub last_offset: i64,
    /// The partition leader epoch the batch was appended in.
    pub leader_epoch: i32,
    /// Codec, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// The first record's timestamp, which record deltas are relative to.
    pub base_timestamp: i64,
    /// The largest timestamp (the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// -1 when neither idempotent nor transactional.
    pub producer_id: i64,
    /// The number of records the header claims.
    pub count: i32,
}

impl BatchHead {
    /// Reads the head of `b`, a batch at least [`batch::HEADER`] long;
    /// `None` if it is shorter or its last offset overflows.
    fn read(b: &[u8]) -> Option<BatchHead> {
        let base_offset = i64_at(b, 0)?;
        Some(BatchHead {
            base_offset,
            last_offset: base_offset.checked_add(i64::from(i32_at(b, LAST_OFFSET_DELTA)?))?,
            leader_epoch: i32_at(b, LEADER_EPOCH)?,
            attributes: i16_at(b, batch::ATTRIBUTES)?,
            base_timestamp: i64_at(b, BASE_TIMESTAMP)?,
            max_timestamp: i64_at(b, MAX_TIMESTAMP)?,
            producer_id: i64_at(b, batch::PRODUCER_ID)?,
            count: i32_at(b, batch::RECORD_COUNT)?,
        })
    }

    /// The compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn codec(&self) -> u8 {
        (self.attributes & 0x07) as u8
    }

    /// Whether record timestamps are the broker's append time.
    pub fn log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Whether the batch holds a transaction marker.
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// `N` bytes of `b` at `at`.
fn be<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn i16_at(b: &[u8], at: usize) -> Option<i16> {
    be(b, at).map(i16::from_be_bytes)
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    be(b, at).map(i32::from_be_bytes)
}

fn i64_at(b: &[u8], at: usize) -> Option<i64> {
    be(b, at).map(i64::from_be_bytes)
}

/// The complete batches of a Fetch partition's records section, in order; a
/// trailing partial batch (the broker cuts at its size limit) ends the
/// iteration without an error. A batch whose magic is not 2, or a
/// negative/impossible length, is an Err (then iteration ends).
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

/// Walks the batches of `records`.
pub fn batches(records: &[u8]) -> Batches<'_> {
    Batches {
        buf: records,
        pos: 0,
        done: false,
    }
}

impl Batches<'_> {
    /// Bytes consumed by the complete batches returned so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }
}

impl<'a> Batches<'a> {
    /// The next batch; `None` at the end or at a partial batch.
    fn step(&mut self) -> Option<Result<(BatchHead, &'a [u8]), RecordsError>> {
        let rest = self.buf.get(self.pos..)?;
        let counted = i32_at(rest, BATCH_LENGTH)?;
        if rest.get(batch::MAGIC).is_some_and(|&m| m != 2) {
            return Some(Err(RecordsError::Malformed("batch magic")));
        }
        let Some(len) = usize::try_from(counted)
            .ok()
            .filter(|&n| n >= batch::HEADER - batch::PREFIX)
            .and_then(|n| n.checked_add(batch::PREFIX))
        else {
            return Some(Err(RecordsError::Malformed("batch length")));
        };
        let bytes = rest.get(..len)?;
        let Some(head) = BatchHead::read(bytes) else {
            return Some(Err(RecordsError::Malformed("last offset delta")));
        };
        self.pos += len;
        Some(Ok((head, bytes)))
    }
}

impl<'a> Iterator for Batches<'a> {
    /// A batch's head and the whole batch, from its base offset.
    type Item = Result<(BatchHead, &'a [u8]), RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step();
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

impl FusedIterator for Batches<'_> {}

/// The records of one batch (`batch` as returned by [`Batches`]). When
/// compressed, they are decompressed into `scratch` (cleared first, reused
/// across calls; bounded by [`expansion_limit`] of the compressed length,
/// past which [`RecordsError::TooLarge`]).
pub fn records<'a>(
    head: &BatchHead,
    batch: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<Records<'a>, RecordsError> {
    let body = batch
        .get(batch::HEADER..)
        .ok_or(RecordsError::Malformed("batch header"))?;
    let rest: &'a [u8] = match head.codec() {
        0 => body,
        codec => {
            inflate(codec, body, scratch)?;
            scratch
        }
    };
    Ok(Records {
        rest,
        left: head.count.max(0),
        base_offset: head.base_offset,
        base_timestamp: head.base_timestamp,
        append_time: head.log_append_time().then_some(head.max_timestamp),
    })
}

/// Decompresses `data` into `out`, at most [`expansion_limit`] bytes.
fn inflate(codec: u8, data: &[u8], out: &mut Vec<u8>) -> Result<(), RecordsError> {
    out.clear();
    let limit = expansion_limit(data.len());
    let io = |e: std::io::Error| RecordsError::Decompress(e.to_string());
    match codec {
        1 => read_all(flate2::read::MultiGzDecoder::new(data), limit, out),
        2 => {
            *out = snappy(data, limit)?;
            Ok(())
        }
        3 => read_all(lz4::Decoder::new(data).map_err(io)?, limit, out),
        4 => read_all(
            zstd::stream::read::Decoder::with_buffer(data).map_err(io)?,
            limit,
            out,
        ),
        other => Err(RecordsError::Codec(other)),
    }
}

/// Reads `r` to its end into `out`, refusing more than `limit` bytes.
fn read_all(r: impl Read, limit: u64, out: &mut Vec<u8>) -> Result<(), RecordsError> {
    r.take(limit.saturating_add(1))
        .read_to_end(out)
        .map_err(|e| RecordsError::Decompress(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(RecordsError::TooLarge { limit });
    }
    Ok(())
}

/// The records of one batch, at most its head's count; a record that
/// cannot be read is an Err (then iteration ends).
#[derive(Clone, Debug)]
pub struct Records<'a> {
    rest: &'a [u8],
    left: i32,
    base_offset: i64,
    base_timestamp: i64,
    /// The batch's max timestamp under LogAppendTime.
    append_time: Option<i64>,
}

/// One record, its fields borrowed from the batch or the scratch buffer.
#[derive(Clone, Debug)]
pub struct RawRecord<'a> {
    /// head.base_offset + offsetDelta
    pub offset: i64,
    /// head.max_timestamp when the batch is LogAppendTime, else
    /// base_timestamp + delta
    pub timestamp: i64,
    /// `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// The record's headers.
    pub headers: Headers<'a>,
}

impl<'a> Records<'a> {
    /// Reads one record; its fields must fill its length exactly.
    fn record(&mut self) -> Result<RawRecord<'a>, RecordsError> {
        let len = length(&mut self.rest, "record length")?;
        let mut s = take(&mut self.rest, len, "record")?;
        take(&mut s, 1, "record attributes")?;
        let timestamp_delta = zigzag(&mut s, 10, "timestamp delta")?;
        let offset_delta = varint(&mut s, "offset delta")?;
        let key = nullable(&mut s, "key")?;
        let value = nullable(&mut s, "value")?;
        let count = length(&mut s, "header count")?;
        let raw = s;
        for _ in 0..count {
            header(&mut s)?;
        }
        if !s.is_empty() {
            return Err(RecordsError::Malformed("record length"));
        }
        Ok(RawRecord {
            offset: self.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: self
                .append_time
                .unwrap_or(self.base_timestamp.wrapping_add(timestamp_delta)),
            key,
            value,
            headers: Headers { raw, left: count },
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RawRecord<'a>, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left <= 0 {
            return None;
        }
        let record = self.record();
        self.left = if record.is_ok() { self.left - 1 } else { 0 };
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, usize::try_from(self.left).ok())
    }
}

impl FusedIterator for Records<'_> {}

/// A record's headers, already checked when the record was read (iterating
/// cannot fail).
#[derive(Clone, Debug)]
pub struct Headers<'a> {
    raw: &'a [u8],
    left: usize,
}

impl<'a> Headers<'a> {
    /// The number of headers not yet iterated (all of them, fresh).
    pub fn len(&self) -> usize {
        self.left
    }

    /// Whether no header is left.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// The encoded header section (without the count), as it appears in the
    /// record; once iteration has begun, the headers not yet iterated.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

impl<'a> Iterator for Headers<'a> {
    /// A header's key and value (`None` for a null value).
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let h = header(&mut self.raw).ok();
        self.left = if h.is_some() { self.left - 1 } else { 0 };
        h
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// One header: key length and key, nullable value.
fn header<'a>(s: &mut &'a [u8]) -> Result<(&'a [u8], Option<&'a [u8]>), RecordsError> {
    let n = length(s, "header key length")?;
    let key = take(s, n, "header key")?;
    Ok((key, nullable(s, "header value")?))
}

/// A zig-zag varint of at most `max` bytes (10 for a varlong).
fn zigzag(s: &mut &[u8], max: usize, what: &'static str) -> Result<i64, RecordsError> {
    // Most lengths and deltas fit one byte.
    if let Some((&b, rest)) = s.split_first() {
        if b & 0x80 == 0 {
            *s = rest;
            return Ok(i64::from(b >> 1) ^ -i64::from(b & 1));
        }
    }
    let mut raw: u64 = 0;
    for (i, &b) in s.iter().take(max).enumerate() {
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *s = s.get(i + 1..).unwrap_or_default();
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err(RecordsError::Malformed(what))
}

/// A zig-zag varint that fits 32 bits.
fn varint(s: &mut &[u8], what: &'static str) -> Result<i32, RecordsError> {
    i32::try_from(zigzag(s, 5, what)?).map_err(|_| RecordsError::Malformed(what))
}

/// A varint that may not be negative.
fn length(s: &mut &[u8], what: &'static str) -> Result<usize, RecordsError> {
    usize::try_from(varint(s, what)?).map_err(|_| RecordsError::Malformed(what))
}

/// `n` bytes.
fn take<'a>(s: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], RecordsError> {
    let (taken, rest) = s.split_at_checked(n).ok_or(RecordsError::Malformed(what))?;
    *s = rest;
    Ok(taken)
}

/// A varint length, -1 for null, then that many bytes.
fn nullable<'a>(s: &mut &'a [u8], what: &'static str) -> Result<Option<&'a [u8]>, RecordsError> {
    match varint(s, what)? {
        -1 => Ok(None),
        n => {
            let n = usize::try_from(n).map_err(|_| RecordsError::Malformed(what))?;
            take(s, n, what).map(Some)
        }
    }
}

/// The type of a control batch's marker: Some(0) abort, Some(1) commit;
/// None when it cannot be read (or the batch is not a control batch).
pub fn control_type(head: &BatchHead, batch: &[u8]) -> Option<i16> {
    if !head.is_control() {
        return None;
    }
    // Markers are never compressed in practice: no allocation then.
    let mut scratch = Vec::new();
    let key = records(head, batch, &mut scratch).ok()?.next()?.ok()?.key?;
    // The key: version i16 (0 today; negative is invalid), type i16.
    if i16_at(key, 0)? < 0 {
        return None;
    }
    i16_at(key, 2)
}

/// read_committed filtering of one partition of one Fetch response, as the
/// Java consumer does it: built from the response's aborted transactions.
#[derive(Clone, Debug, Default)]
pub struct Aborted {
    /// Aborted transactions not reached yet, (first_offset, producer_id),
    /// the first to start on top.
    pending: BinaryHeap<Reverse<(i64, i64)>>,
    /// Producers inside an aborted transaction at the current batch.
    open: HashSet<i64>,
}

impl Aborted {
    /// From the aborted transactions, as (producer_id, first_offset).
    pub fn new(aborted: impl IntoIterator<Item = (i64, i64)>) -> Aborted {
        Aborted {
            pending: aborted
                .into_iter()
                .map(|(producer, first)| Reverse((first, producer)))
                .collect(),
            open: HashSet::new(),
        }
    }

    /// Whether `head`'s batch is skipped: a control batch always (an ABORT
    /// marker of an open aborted producer closes it), a transactional batch
    /// whose producer has an aborted transaction that started at or before
    /// the batch's last offset. Batches must be given in offset order.
    ///
    /// As in the Java consumer, every batch with a producer id (markers
    /// included) opens the aborted transactions started by its last offset:
    /// an ABORT marker whose transaction had no data batch in this response
    /// still closes it, so the producer's next transaction is kept.
    pub fn skip(&mut self, head: &BatchHead, batch: &[u8]) -> bool {
        if head.producer_id >= 0 {
            while let Some(&Reverse((first, producer))) = self.pending.peek() {
                if first > head.last_offset {
                    break;
                }
                self.pending.pop();
                self.open.insert(producer);
            }
        }
        if head.is_control() {
            if head.producer_id >= 0 && control_type(head, batch) == Some(0) {
                self.open.remove(&head.producer_id);
            }
            return true;
        }
        head.is_transactional() && self.open.contains(&head.producer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use proptest::prelude::*;

    type Header = (Vec<u8>, Option<Vec<u8>>);

    /// What a record should read back as.
    #[derive(Clone, Debug, PartialEq)]
    struct Want {
        offset: i64,
        timestamp: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<Header>,
    }

    fn read(r: RawRecord<'_>) -> Want {
        Want {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r
                .headers
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect(),
        }
    }

    fn record(w: &Want) -> Record {
        let mut headers = indexmap::IndexMap::new();
        for (k, v) in &w.headers {
            headers.insert(
                StrBytes::from_string(String::from_utf8(k.clone()).unwrap()),
                v.clone().map(Bytes::from),
            );
        }
        Record {
            transactional: false,
            delete_horizon: false,
            control: false,
            partition_leader_epoch: 7,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: w.offset,
            // The encoder batches records whose offset - sequence agree.
            sequence: w.offset as i32,
            timestamp: w.timestamp,
            key: w.key.clone().map(Bytes::from),
            value: w.value.clone().map(Bytes::from),
            headers,
        }
    }

    fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, records, &options).unwrap();
        buf.to_vec()
    }

    /// Records from `base`: null keys and values, empty and null header
    /// values, a long value (multi-byte varints), timestamps out of order.
    fn wants(base: i64) -> Vec<Want> {
        let h = |k: &str, v: Option<&[u8]>| (k.as_bytes().to_vec(), v.map(<[u8]>::to_vec));
        vec![
            Want {
                offset: base,
                timestamp: 1_700_000_000_500,
                key: Some(b"k0".to_vec()),
                value: Some(b"v0".to_vec()),
                headers: vec![h("a", Some(b"1")), h("n", None), h("e", Some(b""))],
            },
            Want {
                offset: base + 1,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(vec![b'x'; 300]),
                headers: vec![],
            },
            Want {
                offset: base + 2,
                timestamp: 1_700_000_099_999,
                key: Some(Vec::new()),
                value: None,
                headers: vec![h("trace", Some(&[0u8; 200]))],
            },
        ]
    }

    fn plain(base: i64, c: Compression) -> Vec<u8> {
        let records: Vec<Record> = wants(base).iter().map(record).collect();
        encode(&records, c)
    }

    /// An uncompressed batch recompressed with snappy, framed the Java
    /// way or raw as librdkafka writes it.
    fn snappy_batch(base: i64, framed: bool) -> Vec<u8> {
        let plain = plain(base, Compression::None);
        let raw = snap::raw::Encoder::new()
            .compress_vec(&plain[batch::HEADER..])
            .unwrap();
        let mut out = plain[..batch::HEADER].to_vec();
        out[batch::ATTRIBUTES + 1] |= 2;
        if framed {
            out.extend_from_slice(b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01");
            out.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        }
        out.extend_from_slice(&raw);
        let len = (out.len() - batch::PREFIX) as i32;
        out[BATCH_LENGTH..batch::PREFIX].copy_from_slice(&len.to_be_bytes());
        out
    }

    /// Every codec's form of the same three records at `base`.
    fn every_codec(base: i64) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("none", plain(base, Compression::None)),
            ("gzip", plain(base, Compression::Gzip)),
            ("lz4", plain(base, Compression::Lz4)),
            ("zstd", plain(base, Compression::Zstd)),
            ("snappy framed", snappy_batch(base, true)),
            ("snappy raw", snappy_batch(base, false)),
        ]
    }

    fn read_all_records(head: &BatchHead, b: &[u8], scratch: &mut Vec<u8>) -> Vec<Want> {
        records(head, b, scratch)
            .unwrap()
            .map(|r| read(r.unwrap()))
            .collect()
    }

    #[test]
    fn every_codec_reads_back_what_was_written() {
        let mut scratch = Vec::new();
        for (name, bytes) in every_codec(100) {
            let mut it = batches(&bytes);
            let (head, b) = it.next().unwrap().unwrap();
            assert!(it.next().is_none(), "{name}");
            assert_eq!(it.consumed(), bytes.len(), "{name}");
            assert_eq!(b, &bytes[..], "{name}");
            assert_eq!((head.base_offset, head.last_offset), (100, 102), "{name}");
            assert_eq!(
                (head.count, head.leader_epoch, head.producer_id),
                (3, 7, -1)
            );
            assert_eq!(head.base_timestamp, 1_700_000_000_000);
            assert_eq!(head.max_timestamp, 1_700_000_099_999);
            assert!(!head.log_append_time() && !head.is_transactional() && !head.is_control());
            // The scratch buffer is reused across batches.
            assert_eq!(
                read_all_records(&head, b, &mut scratch),
                wants(100),
                "{name}"
            );
        }
        assert_eq!(plain(0, Compression::Gzip)[batch::ATTRIBUTES + 1], 1);
        assert_eq!(snappy_batch(0, true)[batch::ATTRIBUTES + 1], 2);
    }

    #[test]
    fn headers_expose_their_encoded_section() {
        let bytes = plain(0, Compression::None);
        let (head, b) = batches(&bytes).next().unwrap().unwrap();
        let mut scratch = Vec::new();
        let r = records(&head, b, &mut scratch).unwrap().next().unwrap();
        let mut h = r.unwrap().headers;
        assert_eq!((h.len(), h.is_empty()), (3, false));
        // "a"="1", "n"=null, "e"="": zig-zag lengths 1 -> 2, -1 -> 1, 0 -> 0.
        assert_eq!(h.raw(), b"\x02a\x021\x02n\x01\x02e\x00");
        assert_eq!(h.next(), Some((&b"a"[..], Some(&b"1"[..]))));
        assert_eq!((h.len(), h.raw()), (2, &b"\x02n\x01\x02e\x00"[..]));
        assert_eq!(h.next(), Some((&b"n"[..], None)));
        assert_eq!(h.next(), Some((&b"e"[..], Some(&b""[..]))));
        assert!(h.is_empty() && h.next().is_none() && h.raw().is_empty());
    }

    #[test]
    fn log_append_time_gives_every_record_the_max_timestamp() {
        for (name, mut bytes) in every_codec(0) {
            bytes[batch::ATTRIBUTES + 1] |= 0x08;
            bytes[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&42i64.to_be_bytes());
            let (head, b) = batches(&bytes).next().unwrap().unwrap();
            assert!(head.log_append_time(), "{name}");
            let got = read_all_records(&head, b, &mut Vec::new());
            assert_eq!(got.len(), 3);
            assert!(got.iter().all(|r| r.timestamp == 42), "{name}");
        }
    }

    /// Batches at 0, 3, 6, ... in every codec, back to back.
    fn section() -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for (i, (_, b)) in every_codec(0).into_iter().enumerate() {
            let base = 3 * i as i64;
            let mut b = b;
            b[..8].copy_from_slice(&base.to_be_bytes());
            out.extend_from_slice(&b);
            ends.push(out.len());
        }
        (out, ends)
    }

    #[test]
    fn a_cut_anywhere_yields_exactly_the_complete_batches() {
        let (bytes, ends) = section();
        let mut scratch = Vec::new();
        for cut in 0..=bytes.len() {
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            let mut it = batches(&bytes[..cut]);
            let mut n = 0;
            for item in it.by_ref() {
                let (head, b) = item.unwrap_or_else(|e| panic!("cut {cut}: {e}"));
                assert_eq!(head.base_offset, 3 * n as i64);
                assert_eq!(
                    read_all_records(&head, b, &mut scratch),
                    wants(3 * n as i64)
                );
                n += 1;
            }
            assert_eq!(n, complete, "cut {cut}");
            let consumed = if n == 0 { 0 } else { ends[n - 1] };
            assert_eq!(it.consumed(), consumed, "cut {cut}");
            assert!(it.next().is_none());
        }
    }

    #[test]
    fn a_wrong_magic_or_length_is_an_error_that_ends_the_iteration() {
        let one = plain(0, Compression::None);
        // Magic 1; a negative length; a length shorter than a header.
        for (at, patch) in [
            (batch::MAGIC, &[1u8][..]),
            (BATCH_LENGTH, &[0x80][..]),
            (BATCH_LENGTH, &[0, 0, 0, 48][..]),
        ] {
            let mut bytes = one.clone();
            let mut bad = one.clone();
            bad[at..at + patch.len()].copy_from_slice(patch);
            // Even a partial batch whose magic or length is wrong is refused.
            bytes.extend_from_slice(&bad[..bad.len() / 2]);
            let mut it = batches(&bytes);
            assert!(it.next().unwrap().is_ok());
            assert!(matches!(it.next(), Some(Err(RecordsError::Malformed(_)))));
            assert!(it.next().is_none());
            assert_eq!(it.consumed(), one.len());
        }
        // Fewer than the twelve bytes that hold the length: a partial batch.
        assert!(batches(&one[..11]).next().is_none());
    }

    #[test]
    fn the_record_count_bounds_the_records() {
        let mut bytes = plain(0, Compression::None);
        for (count, oks, err) in [(1, 1, false), (0, 0, false), (-4, 0, false), (5, 3, true)] {
            bytes[batch::RECORD_COUNT..batch::HEADER].copy_from_slice(&i32::to_be_bytes(count));
            let (head, b) = batches(&bytes).next().unwrap().unwrap();
            let mut scratch = Vec::new();
            let got: Vec<_> = records(&head, b, &mut scratch).unwrap().collect();
            assert_eq!(got.iter().filter(|r| r.is_ok()).count(), oks, "{count}");
            assert_eq!(got.iter().any(|r| r.is_err()), err, "{count}");
            assert!(got.iter().skip_while(|r| r.is_ok()).count() <= 1);
        }
    }

    #[test]
    fn an_unknown_codec_and_a_bomb_are_refused() {
        let mut bytes = plain(0, Compression::None);
        bytes[batch::ATTRIBUTES + 1] |= 5;
        let (head, b) = batches(&bytes).next().unwrap().unwrap();
        assert!(matches!(
            records(&head, b, &mut Vec::new()),
            Err(RecordsError::Codec(5))
        ));
        let big = Want {
            offset: 0,
            timestamp: 0,
            key: None,
            value: Some(vec![0; 70 << 20]),
            headers: vec![],
        };
        let bytes = encode(&[record(&big)], Compression::Zstd);
        let (head, b) = batches(&bytes).next().unwrap().unwrap();
        assert!(matches!(
            records(&head, b, &mut Vec::new()),
            Err(RecordsError::TooLarge { .. })
        ));
    }

    /// Reads everything, as a consumer would, ignoring errors.
    fn walk(bytes: &[u8]) {
        let mut scratch = Vec::new();
        let mut aborted = Aborted::new([(1, 0), (2, 5), (-1, 3)]);
        for (head, b) in batches(bytes).map_while(Result::ok) {
            let _ = control_type(&head, b);
            let _ = aborted.skip(&head, b);
            walk_records(&head, b, &mut scratch);
            // The head may not match the bytes: the caller's mistake, no panic.
            for cut in [0, batch::HEADER, b.len() / 2] {
                walk_records(&head, &b[..cut.min(b.len())], &mut scratch);
            }
        }
    }

    fn walk_records(head: &BatchHead, b: &[u8], scratch: &mut Vec<u8>) {
        if let Ok(rs) = records(head, b, scratch) {
            for r in rs.map_while(Result::ok) {
                let h = r.headers.clone();
                assert_eq!(h.clone().count(), h.len());
                let _ = h.raw();
            }
        }
    }

    #[test]
    fn every_truncation_of_every_codec_is_read_without_a_panic() {
        let mut scratch = Vec::new();
        for (name, bytes) in every_codec(0) {
            let (head, _) = batches(&bytes).next().unwrap().unwrap();
            for cut in 0..bytes.len() {
                assert!(batches(&bytes[..cut]).next().is_none(), "{name} {cut}");
                // Records of a cut batch, as if its head had said so.
                let got = records(&head, &bytes[..cut], &mut scratch)
                    .map(|rs| rs.filter(|r| r.is_ok()).count())
                    .unwrap_or(0);
                assert!(got <= 3, "{name} {cut}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn flipped_bytes_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..4)) {
            let (mut bytes, _) = section();
            for (at, x) in flips {
                let at = at.index(bytes.len());
                bytes[at] ^= x;
            }
            walk(&bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            walk(&bytes);
        }

        #[test]
        fn an_arbitrary_record_section_never_panics(
            body in prop::collection::vec(any::<u8>(), 0..200),
            codec in 0u8..6,
        ) {
            let mut bytes = plain(0, Compression::None)[..batch::HEADER].to_vec();
            bytes[batch::ATTRIBUTES + 1] = codec;
            bytes.extend_from_slice(&body);
            let len = (bytes.len() - batch::PREFIX) as i32;
            bytes[BATCH_LENGTH..batch::PREFIX].copy_from_slice(&len.to_be_bytes());
            walk(&bytes);
        }
    }

    /// A transactional batch of `n` records of `producer` at `offset`.
    fn txn(producer: i64, offset: i64, n: i64) -> Vec<u8> {
        let records: Vec<Record> = (offset..offset + n)
            .map(|o| {
                let mut r = record(&Want {
                    offset: o,
                    timestamp: o,
                    key: None,
                    value: Some(b"v".to_vec()),
                    headers: vec![],
                });
                r.transactional = producer >= 0;
                r.producer_id = producer;
                r.producer_epoch = 0;
                r.sequence = o as i32;
                r
            })
            .collect();
        encode(&records, Compression::None)
    }

    /// A transaction marker of `producer` at `offset`: 0 abort, 1 commit.
    fn marker(producer: i64, offset: i64, kind: i16, c: Compression) -> Vec<u8> {
        let mut key = 0i16.to_be_bytes().to_vec();
        key.extend_from_slice(&kind.to_be_bytes());
        let mut r = record(&Want {
            offset,
            timestamp: offset,
            key: Some(key),
            value: Some(vec![0, 0, 0, 0, 0, 3]),
            headers: vec![],
        });
        r.transactional = true;
        r.control = true;
        r.producer_id = producer;
        r.producer_epoch = 0;
        encode(&[r], c)
    }

    /// The offsets `Aborted` delivers from `parts`.
    fn delivered(parts: &[Vec<u8>], aborted: &[(i64, i64)]) -> Vec<i64> {
        let bytes = parts.concat();
        let mut filter = Aborted::new(aborted.iter().copied());
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        for item in batches(&bytes) {
            let (head, b) = item.unwrap();
            if !filter.skip(&head, b) {
                out.extend(
                    records(&head, b, &mut scratch)
                        .unwrap()
                        .map(|r| r.unwrap().offset),
                );
            }
        }
        out
    }

    #[test]
    fn aborted_transactions_are_skipped_until_their_marker() {
        let none = Compression::None;
        let parts = [
            txn(1, 0, 2),                        // aborted
            txn(2, 2, 2),                        // committed
            txn(-1, 4, 2),                       // not transactional
            txn(1, 6, 1),                        // aborted
            marker(1, 7, 0, none),               // abort
            marker(2, 8, 1, none),               // commit
            txn(1, 9, 2),                        // committed
            marker(1, 11, 1, none),              // commit
            txn(1, 12, 1),                       // aborted again
            marker(1, 13, 0, Compression::Gzip), // abort, compressed
            txn(2, 14, 1),                       // P2, never aborted: kept
        ];
        assert_eq!(
            delivered(&parts, &[(1, 0), (1, 12)]),
            [2, 3, 4, 5, 9, 10, 14]
        );
        // With no aborted transactions only the markers are skipped.
        assert_eq!(delivered(&parts, &[]), [0, 1, 2, 3, 4, 5, 6, 9, 10, 12, 14]);
    }

    #[test]
    fn an_abort_marker_without_data_in_the_response_still_closes_its_transaction() {
        // The aborted transaction began before this response; only its
        // marker is here, then the producer commits a new transaction.
        let parts = [
            marker(4, 20, 0, Compression::None),
            txn(4, 21, 2),
            marker(4, 23, 1, Compression::None),
        ];
        assert_eq!(delivered(&parts, &[(4, 10)]), [21, 22]);
    }

    #[test]
    fn control_types_are_read_from_their_key() {
        let read = |b: &[u8]| {
            let (head, b) = batches(b).next().unwrap().unwrap();
            control_type(&head, b)
        };
        assert_eq!(read(&marker(1, 0, 0, Compression::None)), Some(0));
        assert_eq!(read(&marker(1, 0, 1, Compression::Zstd)), Some(1));
        assert_eq!(read(&txn(1, 0, 1)), None);
        // A control batch whose key is too short, or has a negative version.
        let mut short = txn(1, 0, 1);
        short[batch::ATTRIBUTES + 1] |= 0x20;
        assert_eq!(read(&short), None);
        let mut bad = marker(1, 0, 1, Compression::None);
        let at = batch::HEADER + 5; // length, attributes, deltas, key length
        assert_eq!(&bad[at..at + 4], &[0, 0, 0, 1]);
        bad[at] = 0xff;
        assert_eq!(read(&bad), None);
    }
}
