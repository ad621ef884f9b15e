//! The records inside a magic-2 batch: whether any record carries a header
//! of a given name.
//!
//! Uncompressed batches are read in place. A batch of large records is
//! walked reading only the bytes that frame each record (lengths and header
//! names), never a key's or a value's: a 1 MiB batch of 1 KiB records
//! costs 16 us, against 49 us for a scan of every byte. A batch of small
//! records is scanned for the name first (a header name appears in the
//! record bytes verbatim), and walked only if it is there.
//!
//! A walk stops at the batch's declared record count. Bytes past it hide
//! nothing: the broker refuses a batch with records left after its count
//! ("Incorrect declared batch size").
//!
//! Compressed batches are decompressed as a stream through a fixed buffer
//! and walked as they decompress, so memory stays flat whatever the batch
//! expands to; the work is bounded by [`expansion_limit`], past which the
//! batch is refused.

use std::io::{BufRead, BufReader, Read};

use super::produce::batch;

/// The average record size from which an uncompressed batch is walked
/// rather than scanned for the header name first.
const WALK_MIN_RECORD: usize = 512;

/// Why a batch's records could not be walked.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The records end early or hold an impossible value.
    #[error("record batch is malformed at {0}")]
    Malformed(&'static str),
    /// A compression codec kflip does not know (the broker refuses it too).
    #[error("record batch uses unknown compression codec {0}")]
    Codec(u8),
    /// The batch decompresses to more than kflip walks for its size.
    #[error("compressed record batch expands past {limit} bytes")]
    TooLarge {
        /// The bound for this batch.
        limit: u64,
    },
    /// The compressed data is corrupt.
    #[error("compressed record batch cannot be decompressed: {0}")]
    Decompress(String),
}

/// The most bytes a compressed batch of `compressed` bytes may expand to
/// before kflip refuses it: 256 times its size, and at least 64 MiB (real
/// data rarely compresses past 20:1; a batch of one repeated byte can).
pub fn expansion_limit(compressed: usize) -> u64 {
    (compressed as u64).saturating_mul(256).max(64 << 20)
}

/// Whether any record of `batch_bytes` (one whole magic-2 batch, from its
/// base offset) has a header named `name`.
pub fn has_header(batch_bytes: &[u8], name: &[u8]) -> Result<bool, RecordsError> {
    let records = batch_bytes
        .get(batch::HEADER..)
        .ok_or(RecordsError::Malformed("batch header"))?;
    let attributes = batch_bytes[batch::ATTRIBUTES + 1];
    let count = i32::from_be_bytes(
        batch_bytes[batch::RECORD_COUNT..batch::HEADER]
            .try_into()
            .map_err(|_| RecordsError::Malformed("record count"))?,
    );
    let codec = attributes & 0x07;
    if codec == 0 {
        // Walking costs about 16 ns a record, a scan for the name about
        // 0.05 ns a byte: records of a few hundred bytes cost the same
        // either way. Smaller records are scanned first, and walked only
        // if the name is there.
        let small = records.len() < WALK_MIN_RECORD.saturating_mul(count.max(1) as usize);
        if small && memchr::memmem::find(records, name).is_none() {
            return Ok(false);
        }
        return walk_plain(records, count, name);
    }
    let limit = expansion_limit(records.len());
    match codec {
        1 => walk(
            Source::new(BufReader::new(flate2::read::GzDecoder::new(records)), limit),
            count,
            name,
        ),
        2 => {
            let plain = snappy(records, limit)?;
            walk(Source::new(&plain[..], limit), count, name)
        }
        3 => {
            let d =
                lz4::Decoder::new(records).map_err(|e| RecordsError::Decompress(e.to_string()))?;
            walk(Source::new(BufReader::new(d), limit), count, name)
        }
        4 => {
            let d = zstd::stream::read::Decoder::with_buffer(records)
                .map_err(|e| RecordsError::Decompress(e.to_string()))?;
            walk(Source::new(BufReader::new(d), limit), count, name)
        }
        other => Err(RecordsError::Codec(other)),
    }
}

/// The magic of the block framing the Java client writes around snappy.
const XERIAL: &[u8] = b"\x82SNAPPY\x00";

/// Snappy in either form Kafka clients write: the Java client's framed
/// blocks (a 16-byte header, then length-prefixed raw blocks) or one raw
/// block (librdkafka). Each block's size is checked before it is inflated.
pub(crate) fn snappy(data: &[u8], limit: u64) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    let inflate = |block: &[u8], out: &mut Vec<u8>| -> Result<(), RecordsError> {
        let n = snap::raw::decompress_len(block)
            .map_err(|e| RecordsError::Decompress(e.to_string()))?;
        if (out.len() + n) as u64 > limit {
            return Err(RecordsError::TooLarge { limit });
        }
        let at = out.len();
        out.resize(at + n, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[at..])
            .map_err(|e| RecordsError::Decompress(e.to_string()))?;
        Ok(())
    };
    if !data.starts_with(XERIAL) {
        inflate(data, &mut out)?;
        return Ok(out);
    }
    let mut rest = data
        .get(16..)
        .ok_or(RecordsError::Malformed("snappy framing header"))?;
    while !rest.is_empty() {
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or(RecordsError::Malformed("snappy block length"))?;
        let block = rest
            .get(4..4 + len)
            .ok_or(RecordsError::Malformed("snappy block"))?;
        inflate(block, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// Decompressed bytes, read through a buffer, counted against a limit.
struct Source<R> {
    r: R,
    read: u64,
    limit: u64,
}

impl<R: BufRead> Source<R> {
    fn new(r: R, limit: u64) -> Self {
        Source { r, read: 0, limit }
    }

    fn io(e: std::io::Error) -> RecordsError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            RecordsError::Malformed("records")
        } else {
            RecordsError::Decompress(e.to_string())
        }
    }

    fn count(&mut self, n: u64) -> Result<(), RecordsError> {
        self.read += n;
        if self.read > self.limit {
            return Err(RecordsError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, RecordsError> {
        let mut b = [0u8; 1];
        self.r.read_exact(&mut b).map_err(|e| match Self::io(e) {
            RecordsError::Malformed(_) => RecordsError::Malformed(what),
            other => other,
        })?;
        self.count(1)?;
        Ok(b[0])
    }

    /// A zig-zag varint of at most 64 bits.
    fn varint(&mut self, what: &'static str) -> Result<i64, RecordsError> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte(what)?;
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(RecordsError::Malformed(what))
    }

    /// A length that may be -1 (null).
    fn len(&mut self, what: &'static str) -> Result<u64, RecordsError> {
        match self.varint(what)? {
            -1 => Ok(0),
            n if n >= 0 => Ok(n as u64),
            _ => Err(RecordsError::Malformed(what)),
        }
    }

    fn skip(&mut self, n: u64) -> Result<(), RecordsError> {
        self.count(n)?;
        let copied =
            std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink()).map_err(Self::io)?;
        if copied != n {
            return Err(RecordsError::Malformed("records"));
        }
        Ok(())
    }

    fn is_exactly(&mut self, n: u64, name: &[u8]) -> Result<bool, RecordsError> {
        if n != name.len() as u64 {
            self.skip(n)?;
            return Ok(false);
        }
        let mut buf = [0u8; 64];
        let buf = buf
            .get_mut(..name.len())
            .ok_or(RecordsError::Malformed("header name"))?;
        self.r.read_exact(buf).map_err(Self::io)?;
        self.count(n)?;
        Ok(buf == name)
    }
}

/// Walks `count` records, looking for a header named `name`.
fn walk<R: BufRead>(mut src: Source<R>, count: i32, name: &[u8]) -> Result<bool, RecordsError> {
    for _ in 0..count.max(0) {
        let _len = src.len("record length")?;
        src.byte("record attributes")?;
        src.varint("timestamp delta")?;
        src.varint("offset delta")?;
        let key = src.len("key length")?;
        src.skip(key)?;
        let value = src.len("value length")?;
        src.skip(value)?;
        let headers = src.varint("header count")?;
        if headers < 0 {
            return Err(RecordsError::Malformed("header count"));
        }
        for _ in 0..headers {
            let n = src.len("header name length")?;
            if src.is_exactly(n, name)? {
                return Ok(true);
            }
            let v = src.len("header value length")?;
            src.skip(v)?;
        }
    }
    Ok(false)
}

/// [`walk`] over an uncompressed batch, in place: it reads the few bytes
/// that frame each record and jumps over keys and values, so a 1 MiB batch
/// of 1 KiB records costs about a thousand short reads instead of a scan of
/// every byte.
fn walk_plain(mut b: &[u8], count: i32, name: &[u8]) -> Result<bool, RecordsError> {
    fn varint(b: &mut &[u8], what: &'static str) -> Result<i64, RecordsError> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = b.split_first().ok_or(RecordsError::Malformed(what))?;
            *b = rest;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(RecordsError::Malformed(what))
    }
    // A length (-1 is null) and the bytes it covers.
    fn take<'a>(b: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], RecordsError> {
        let n = match varint(b, what)? {
            -1 => 0,
            n if n >= 0 => usize::try_from(n).map_err(|_| RecordsError::Malformed(what))?,
            _ => return Err(RecordsError::Malformed(what)),
        };
        let (v, rest) = b.split_at_checked(n).ok_or(RecordsError::Malformed(what))?;
        *b = rest;
        Ok(v)
    }
    for _ in 0..count.max(0) {
        let record = take(&mut b, "record length")?;
        let mut r = record
            .get(1..)
            .ok_or(RecordsError::Malformed("record attributes"))?;
        varint(&mut r, "timestamp delta")?;
        varint(&mut r, "offset delta")?;
        take(&mut r, "key length")?;
        take(&mut r, "value length")?;
        let headers = varint(&mut r, "header count")?;
        if headers < 0 {
            return Err(RecordsError::Malformed("header count"));
        }
        for _ in 0..headers {
            if take(&mut r, "header name length")? == name {
                return Ok(true);
            }
            take(&mut r, "header value length")?;
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// One plain record: a key, `value`, and `headers`.
    fn record(i: i64, value: Vec<u8>, headers: &[(&str, &[u8])]) -> Record {
        let mut h = indexmap::IndexMap::new();
        for (k, v) in headers {
            h.insert(
                kafka_protocol::protocol::StrBytes::from_string(k.to_string()),
                Some(bytes::Bytes::copy_from_slice(v)),
            );
        }
        Record {
            transactional: false,
            delete_horizon: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(bytes::Bytes::from(format!("k{i}"))),
            value: Some(bytes::Bytes::from(value)),
            headers: h,
        }
    }

    fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    fn batch(headers: &[(&str, &[u8])], compression: Compression, n: i64) -> Vec<u8> {
        sized(headers, compression, n, 100)
    }

    /// `n` records of `size`-byte values.
    fn sized(headers: &[(&str, &[u8])], compression: Compression, n: i64, size: usize) -> Vec<u8> {
        let records: Vec<Record> = (0..n)
            .map(|i| record(i, vec![b'v'; size], headers))
            .collect();
        encode(&records, compression)
    }

    #[test]
    fn batches_of_small_and_large_records_give_the_same_answers() {
        // Below and above WALK_MIN_RECORD: scanned first, or walked.
        for size in [16, 100, 600, 4096] {
            let forged = sized(
                &[("a", b"1"), ("kflip-origin", b"v")],
                Compression::None,
                1,
                size,
            );
            assert!(has_header(&forged, b"kflip-origin").unwrap(), "{size}");
            // The name in a value and in another header's value: no.
            let mut value = vec![b'v'; size];
            value[..12].copy_from_slice(b"kflip-origin");
            let records = [Record {
                value: Some(bytes::Bytes::from(value)),
                ..record(0, vec![], &[("trace", b"kflip-origin")])
            }];
            let clean = encode(&records, Compression::None);
            assert!(!has_header(&clean, b"kflip-origin").unwrap(), "{size}");
            let none = sized(&[], Compression::None, 1, size);
            assert!(!has_header(&none, b"kflip-origin").unwrap(), "{size}");
            for cut in 0..forged.len() {
                let _ = has_header(&forged[..cut], b"kflip-origin");
            }
        }
    }

    #[test]
    fn the_header_is_found_in_every_codec_and_nowhere_else() {
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for c in codecs {
            let forged = batch(&[("a", b"1"), ("kflip-origin", b"x/t/0/1/2")], c, 3);
            assert!(has_header(&forged, b"kflip-origin").unwrap(), "{c:?}");
            let clean = batch(
                &[("kflip-origin-not", b"1"), ("trace", b"kflip-origin")],
                c,
                3,
            );
            assert!(!has_header(&clean, b"kflip-origin").unwrap(), "{c:?}");
            let none = batch(&[], c, 5);
            assert!(!has_header(&none, b"kflip-origin").unwrap(), "{c:?}");
        }
    }

    /// An uncompressed batch turned into a snappy one the way clients write
    /// it: the Java client's framed blocks or librdkafka's one raw block.
    fn snappy_batch(headers: &[(&str, &[u8])], framed: bool) -> Vec<u8> {
        let plain = batch(headers, Compression::None, 3);
        let raw = snap::raw::Encoder::new()
            .compress_vec(&plain[batch::HEADER..])
            .unwrap();
        let mut records = Vec::new();
        if framed {
            records.extend_from_slice(b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01");
            records.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        }
        records.extend_from_slice(&raw);
        let mut out = plain[..batch::HEADER].to_vec();
        out[batch::ATTRIBUTES + 1] |= 2;
        out.extend_from_slice(&records);
        out
    }

    #[test]
    fn the_header_is_found_in_both_snappy_forms() {
        for framed in [true, false] {
            let forged = snappy_batch(&[("kflip-origin", b"x/t/0/1/2")], framed);
            assert!(has_header(&forged, b"kflip-origin").unwrap(), "{framed}");
            let clean = snappy_batch(&[("trace", b"kflip-origin")], framed);
            assert!(!has_header(&clean, b"kflip-origin").unwrap(), "{framed}");
        }
    }

    #[test]
    fn every_truncation_is_an_error_or_a_clean_answer_never_a_panic() {
        for c in [Compression::None, Compression::Gzip, Compression::Lz4] {
            let b = batch(&[("kflip-origin", b"v")], c, 2);
            for cut in 0..b.len() {
                let _ = has_header(&b[..cut], b"kflip-origin");
            }
        }
    }

    #[test]
    fn a_bomb_is_refused_past_its_bound() {
        // 70 MiB of one byte compresses to a few KiB.
        let buf = encode(&[record(0, vec![0u8; 70 << 20], &[])], Compression::Zstd);
        assert!(matches!(
            has_header(&buf, b"kflip-origin"),
            Err(RecordsError::TooLarge { .. })
        ));
    }
}
