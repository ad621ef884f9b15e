//! Produce request record batches: found by walking, and patched in place.
//!
//! Produce record batches (magic 2) are patched in place: the producer id,
//! epoch and base sequence sit at fixed offsets in the batch header, and the
//! CRC-32C that covers them is recomputed.

use std::ops::Range;
use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

use super::walk::*;

/// Offsets of the magic-2 batch header fields, from the batch start.
pub(super) mod batch {
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
