//! One magic-2 record batch of copies, built record by record as the copy
//! thread reads the source, and sealed (producer id, epoch, first sequence,
//! CRC-32C) when it is sent.
//!
//! Each record is encoded once, straight into the batch's buffer: no
//! per-record allocation, and the target broker receives batches as large as
//! the source delivers while the connection is busy.

use bytes::Bytes;

/// Bytes of a magic-2 batch header; records follow.
const HEADER: usize = 61;
/// The CRC covers from the attributes to the end of the batch.
const ATTRIBUTES: usize = 21;

/// A batch being filled.
#[derive(Debug)]
pub(crate) struct OpenBatch {
    buf: Vec<u8>,
    base_ts: i64,
    max_ts: i64,
    /// The source offset of each record, in order.
    sources: Vec<i64>,
    /// The source timestamp of the last record.
    last_ts: i64,
    /// Key and value bytes.
    payload: u64,
}

/// One header of a record: its name and value.
pub(crate) type HeaderRef<'a> = (&'a [u8], Option<&'a [u8]>);

/// A record's own headers, as [`OpenBatch::push`] takes them.
pub(crate) trait OwnHeaders {
    fn count(&self) -> usize;
    /// Their size encoded.
    fn size(&self) -> usize;
    fn write(self, out: &mut Vec<u8>);
}

/// Headers one by one.
pub(crate) struct Each<I>(pub(crate) I);

impl<'a, I: Iterator<Item = HeaderRef<'a>> + Clone> OwnHeaders for Each<I> {
    fn count(&self) -> usize {
        self.0.clone().count()
    }

    fn size(&self) -> usize {
        let field = |b: Option<&[u8]>| b.map_or(1, |b| varint_len(b.len() as i64) + b.len());
        self.0
            .clone()
            .map(|(k, v)| varint_len(k.len() as i64) + k.len() + field(v))
            .sum()
    }

    fn write(self, out: &mut Vec<u8>) {
        for h in self.0 {
            put_header(out, h);
        }
    }
}

/// Headers as a record read from a batch holds them, already encoded, and
/// their count: copied as they are.
pub(crate) struct Encoded<'a>(pub(crate) &'a [u8], pub(crate) usize);

impl OwnHeaders for Encoded<'_> {
    fn count(&self) -> usize {
        self.1
    }

    fn size(&self) -> usize {
        self.0.len()
    }

    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0);
    }
}

fn put_header(out: &mut Vec<u8>, (k, v): HeaderRef<'_>) {
    put_varint(out, k.len() as i64);
    out.extend_from_slice(k);
    put_field(out, v);
}

impl OpenBatch {
    /// An empty batch in `buf` (a spare one: see [`Spare`]), which holds
    /// at least `capacity` bytes.
    pub(crate) fn new_in(mut buf: Vec<u8>, capacity: usize) -> OpenBatch {
        buf.clear();
        buf.reserve(capacity.max(HEADER + 64));
        buf.resize(HEADER, 0);
        OpenBatch {
            buf,
            base_ts: 0,
            max_ts: 0,
            sources: Vec::new(),
            last_ts: 0,
            payload: 0,
        }
    }

    /// Records in the batch.
    pub(crate) fn count(&self) -> usize {
        self.sources.len()
    }

    /// The batch's size so far, header included.
    pub(crate) fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Appends one record: `headers` in order, then `origin` as a
    /// `kflip-origin` header when given.
    pub(crate) fn push<'a>(
        &mut self,
        source_offset: i64,
        ts: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl OwnHeaders,
        origin: Option<HeaderRef<'a>>,
    ) {
        if self.sources.is_empty() {
            self.base_ts = ts;
            self.max_ts = ts;
        }
        self.max_ts = self.max_ts.max(ts);
        self.last_ts = ts;
        self.payload += (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64;
        let offset_delta = self.sources.len() as i64;
        let ts_delta = ts.wrapping_sub(self.base_ts);
        let field = |b: Option<&[u8]>| match b {
            Some(b) => varint_len(b.len() as i64) + b.len(),
            None => 1,
        };
        let header = |(k, v): HeaderRef<'_>| varint_len(k.len() as i64) + k.len() + field(v);
        let count = headers.count() + usize::from(origin.is_some());
        let body = 1
            + varint_len(ts_delta)
            + varint_len(offset_delta)
            + field(key)
            + field(value)
            + varint_len(count as i64)
            + headers.size()
            + origin.map_or(0, header);
        let b = &mut self.buf;
        b.reserve(body + 5);
        put_varint(b, body as i64);
        b.push(0);
        put_varint(b, ts_delta);
        put_varint(b, offset_delta);
        put_field(b, key);
        put_field(b, value);
        put_varint(b, count as i64);
        headers.write(b);
        if let Some(h) = origin {
            put_header(b, h);
        }
        self.sources.push(source_offset);
    }

    /// The finished batch, ready to send as the given producer's records
    /// from `base_sequence` on.
    pub(crate) fn seal(mut self, producer_id: i64, epoch: i16, base_sequence: i32) -> Sealed {
        let count = self.sources.len() as i32;
        let len = self.buf.len();
        let h = &mut self.buf[..HEADER];
        h[0..8].copy_from_slice(&0i64.to_be_bytes());
        h[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
        h[12..16].copy_from_slice(&(-1i32).to_be_bytes());
        h[16] = 2;
        h[21..23].copy_from_slice(&0i16.to_be_bytes());
        h[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        h[27..35].copy_from_slice(&self.base_ts.to_be_bytes());
        h[35..43].copy_from_slice(&self.max_ts.to_be_bytes());
        h[43..51].copy_from_slice(&producer_id.to_be_bytes());
        h[51..53].copy_from_slice(&epoch.to_be_bytes());
        h[53..57].copy_from_slice(&base_sequence.to_be_bytes());
        h[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&self.buf[ATTRIBUTES..]);
        self.buf[17..21].copy_from_slice(&crc.to_be_bytes());
        Sealed {
            bytes: Bytes::from(self.buf),
            sources: self.sources,
            last_ts: self.last_ts,
            payload: self.payload,
        }
    }
}

/// Buffers of acknowledged batches, for the next ones: a batch that grows
/// to 1 MiB in a fresh buffer pays for its pages being zeroed and for its
/// copies each time the buffer doubles.
#[derive(Debug, Default)]
pub(crate) struct Spare(std::sync::Mutex<Vec<Vec<u8>>>);

impl Spare {
    /// Buffers kept, at most.
    const KEEP: usize = 16;

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A spare buffer, or an empty one.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.lock().pop().unwrap_or_default()
    }

    /// Keeps the buffer of `batch`, acknowledged, if nothing else holds it.
    pub(crate) fn give(&self, batch: Bytes) {
        if let Ok(b) = batch.try_into_mut() {
            let mut spare = self.lock();
            if spare.len() < Self::KEEP {
                spare.push(b.into());
            }
        }
    }
}

/// A batch with its producer id and sequence: sent, and sent again
/// unchanged after a lost connection, so the broker can tell a retry from
/// new records.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    pub(crate) bytes: Bytes,
    /// The source offset of each record, in order.
    pub(crate) sources: Vec<i64>,
    /// The source timestamp of the last record.
    pub(crate) last_ts: i64,
    /// Key and value bytes.
    pub(crate) payload: u64,
}

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn put_varint(b: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        b.push((z as u8) | 0x80);
        z >>= 7;
    }
    b.push(z as u8);
}

fn put_field(b: &mut Vec<u8>, f: Option<&[u8]>) {
    match f {
        Some(x) => {
            put_varint(b, x.len() as i64);
            b.extend_from_slice(x);
        }
        None => put_varint(b, -1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{RecordBatchDecoder, TimestampType};

    #[test]
    fn a_sealed_batch_decodes_with_every_field_and_a_valid_crc() {
        let mut b = OpenBatch::new_in(Vec::new(), 0);
        let hdrs: Vec<HeaderRef<'_>> = vec![(b"a", Some(b"1")), (b"nil", None)];
        b.push(
            40,
            1_700_000_000_500,
            Some(b"k1"),
            Some(b"v1"),
            Each(hdrs.iter().copied()),
            Some((b"kflip-origin", Some(b"o1"))),
        );
        // Headers copied as a source batch encoded them: x=y, nil=null.
        let encoded = [2, b'x', 2, b'y', 6, b'n', b'i', b'l', 1];
        b.push(
            42,
            1_700_000_000_100,
            None,
            None,
            Encoded(&encoded, 2),
            None,
        );
        let big = vec![7u8; 300];
        b.push(
            43,
            1_700_000_001_000,
            None,
            Some(&big),
            Each(std::iter::empty()),
            Some((b"kflip-origin", Some(b"o3"))),
        );
        assert_eq!(b.count(), 3);
        let s = b.seal(77, 3, 1000);
        assert_eq!(s.sources, vec![40, 42, 43]);
        assert_eq!(s.last_ts, 1_700_000_001_000);
        assert_eq!(s.payload, 2 + 2 + 300);
        let mut bytes = BytesMut::from(&s.bytes[..]);
        let set = RecordBatchDecoder::decode_all(&mut bytes).expect("valid batch");
        let recs: Vec<_> = set.into_iter().flat_map(|s| s.records).collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].producer_id, 77);
        assert_eq!(recs[0].producer_epoch, 3);
        assert_eq!(recs[0].sequence, 1000);
        assert_eq!(recs[2].sequence, 1002);
        assert_eq!(recs[0].timestamp_type, TimestampType::Creation);
        assert_eq!(recs[0].timestamp, 1_700_000_000_500);
        assert_eq!(recs[1].timestamp, 1_700_000_000_100);
        assert_eq!(recs[2].timestamp, 1_700_000_001_000);
        assert_eq!(recs[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(recs[0].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[1].value, None);
        assert_eq!(recs[2].value.as_deref(), Some(&big[..]));
        let names: Vec<String> = recs[0].headers.keys().map(|k| k.to_string()).collect();
        assert_eq!(names, ["a", "nil", "kflip-origin"]);
        assert_eq!(recs[0].headers[&b"nil"[..]], None);
        assert_eq!(recs[2].headers.len(), 1);
        let names: Vec<String> = recs[1].headers.keys().map(|k| k.to_string()).collect();
        assert_eq!(names, ["x", "nil"]);
        assert_eq!(recs[1].headers[&b"x"[..]].as_deref(), Some(&b"y"[..]));
        assert_eq!(recs[1].headers[&b"nil"[..]], None);
        assert_eq!(recs[0].offset, 0);
        assert_eq!(recs[2].offset, 2);
    }

    #[test]
    fn varints_match_their_lengths() {
        for v in [
            0i64,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            8191,
            8192,
            i64::MAX,
            i64::MIN,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }
}
