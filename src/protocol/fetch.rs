//! Fetch responses, rewritten in place without decoding the records.
//!
//! Fetch is the hot path: its responses carry the consumed data. Decoding
//! and re-encoding them would copy every byte, so this walker only finds the
//! few fields that name brokers and patches them where they lie:
//! - `preferred_read_replica` (v11+), a fixed i32: mapped in place;
//! - `current_leader` (v12+ partition tag 1): leader id mapped, epoch set to
//!   -1, in place;
//! - `topic_id` (v13+): set to the nil id in place;
//! - `node_endpoints` (top-level tag 0): host and port lengths change, so
//!   the top-level tagged section at the very end of the frame is rebuilt.
//!
//! The walker accepts tagged fields in versions that do not define them
//! (some brokers send `node_endpoints` before v16) and rewrites them as well,
//! so no real address gets through.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::ApiKey;

use super::rewrite::{NodeMap, RewriteError};
use super::varint::{put_uvarint, Reader};

fn err(version: i16, message: impl Into<String>) -> RewriteError {
    RewriteError {
        api: ApiKey::Fetch,
        version,
        message: message.into(),
    }
}

/// Rewrites a whole Fetch response frame (with its length prefix) in place.
/// Returns whether anything changed.
pub fn rewrite_fetch(
    frame: &mut BytesMut,
    version: i16,
    map: &dyn NodeMap,
) -> Result<bool, RewriteError> {
    let flexible = version >= 12;
    let mut patches: Vec<(usize, [u8; 4])> = Vec::new();
    let mut nil_ids: Vec<usize> = Vec::new();
    let tail_start;
    let mut endpoints: Option<(usize, usize)> = None;
    {
        let mut r = Reader::new(&frame[..], 4);
        let e = |m: &str| err(version, m.to_string());
        r.skip(4).map_err(|_| e("truncated header"))?;
        if flexible {
            r.skip_tagged().map_err(|_| e("bad header tags"))?;
        }
        r.skip(4).map_err(|_| e("truncated throttle_time_ms"))?;
        if version >= 7 {
            r.skip(6)
                .map_err(|_| e("truncated error_code/session_id"))?;
        }
        let topics = r
            .array_len(flexible)
            .map_err(|_| e("bad responses array"))?;
        for _ in 0..topics {
            if version >= 13 {
                nil_ids.push(r.pos());
                r.skip(16).map_err(|_| e("truncated topic_id"))?;
            } else {
                r.string(flexible).map_err(|_| e("bad topic name"))?;
            }
            let parts = r
                .array_len(flexible)
                .map_err(|_| e("bad partitions array"))?;
            for _ in 0..parts {
                // partition_index, error_code, high_watermark,
                // last_stable_offset (v4+), log_start_offset (v5+)
                let fixed = 4 + 2 + 8 + 8 + if version >= 5 { 8 } else { 0 };
                r.skip(fixed).map_err(|_| e("truncated partition"))?;
                let aborted = r
                    .nullable_array_len(flexible)
                    .map_err(|_| e("bad aborted_transactions"))?;
                for _ in 0..aborted.unwrap_or(0) {
                    r.skip(16).map_err(|_| e("truncated aborted transaction"))?;
                    if flexible {
                        r.skip_tagged()
                            .map_err(|_| e("bad aborted transaction tags"))?;
                    }
                }
                if version >= 11 {
                    let at = r.pos();
                    let id = r.i32().map_err(|_| e("truncated preferred_read_replica"))?;
                    if id != -1 {
                        patches.push((at, map.node(id).to_be_bytes()));
                    }
                }
                r.bytes(flexible).map_err(|_| e("bad records"))?;
                if flexible {
                    let n = r.uvarint().map_err(|_| e("bad partition tags"))?;
                    for _ in 0..n {
                        let tag = r.uvarint().map_err(|_| e("bad partition tag"))?;
                        let size = r.uvarint().map_err(|_| e("bad partition tag size"))? as usize;
                        let at = r.pos();
                        r.skip(size).map_err(|_| e("truncated partition tag"))?;
                        if tag == 1 && size >= 8 {
                            let b = &frame[at..at + 4];
                            let leader = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                            let b = &frame[at + 4..at + 8];
                            let epoch = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                            if leader != -1 || epoch != -1 {
                                patches.push((at, map.node(leader).to_be_bytes()));
                                patches.push((at + 4, (-1i32).to_be_bytes()));
                            }
                        }
                    }
                }
            }
            if flexible {
                r.skip_tagged().map_err(|_| e("bad topic tags"))?;
            }
        }
        tail_start = r.pos();
        if flexible {
            let n = r.uvarint().map_err(|_| e("bad top-level tags"))?;
            for _ in 0..n {
                let tag = r.uvarint().map_err(|_| e("bad top-level tag"))?;
                let size = r.uvarint().map_err(|_| e("bad top-level tag size"))? as usize;
                let at = r.pos();
                r.skip(size).map_err(|_| e("truncated top-level tag"))?;
                if tag == 0 {
                    endpoints = Some((at, size));
                }
            }
        }
        if r.pos() != frame.len() {
            return Err(e("trailing bytes after the response"));
        }
    }
    let changed = !patches.is_empty() || !nil_ids.is_empty() || endpoints.is_some();
    for (at, bytes) in patches {
        frame[at..at + 4].copy_from_slice(&bytes);
    }
    for at in nil_ids {
        frame[at..at + 16].fill(0);
    }
    if endpoints.is_some() {
        let tail = rebuild_tail(&frame[tail_start..], version, map)?;
        frame.truncate(tail_start);
        frame.put_slice(&tail);
        let len = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
    }
    Ok(changed)
}

/// Re-encodes the top-level tagged section with `node_endpoints` mapped.
fn rebuild_tail(tail: &[u8], version: i16, map: &dyn NodeMap) -> Result<Vec<u8>, RewriteError> {
    let e = |m: &str| err(version, m.to_string());
    let mut r = Reader::new(tail, 0);
    let mut out = BytesMut::new();
    let n = r.uvarint().map_err(|_| e("bad top-level tags"))?;
    put_uvarint(&mut out, n);
    for _ in 0..n {
        let tag = r.uvarint().map_err(|_| e("bad tag"))?;
        let size = r.uvarint().map_err(|_| e("bad tag size"))? as usize;
        let start = r.pos();
        r.skip(size).map_err(|_| e("truncated tag"))?;
        let data = &tail[start..start + size];
        put_uvarint(&mut out, tag);
        if tag != 0 {
            put_uvarint(&mut out, size as u32);
            out.put_slice(data);
            continue;
        }
        let mapped = map_endpoints(data, map).ok_or_else(|| e("bad node_endpoints"))?;
        put_uvarint(&mut out, mapped.len() as u32);
        out.put_slice(&mapped);
    }
    Ok(out.to_vec())
}

/// Maps a compact array of NodeEndpoint {node_id, host, port, rack, tags}.
fn map_endpoints(data: &[u8], map: &dyn NodeMap) -> Option<Vec<u8>> {
    let mut r = Reader::new(data, 0);
    let mut out = BytesMut::new();
    let n = r.array_len(true).ok()?;
    put_uvarint(&mut out, n + 1);
    for _ in 0..n {
        let node = r.i32().ok()?;
        r.string(true).ok()?;
        r.i32().ok()?;
        let rack_start = r.pos();
        r.nullable_string_compact().ok()?;
        r.skip_tagged().ok()?;
        let rest = &data[rack_start..r.pos()];
        let (host, port) = map.endpoint(node);
        out.put_i32(map.node(node));
        put_uvarint(&mut out, host.len() as u32 + 1);
        out.put_slice(host.as_bytes());
        out.put_i32(port);
        out.put_slice(rest);
    }
    (r.pos() == data.len()).then(|| out.to_vec())
}
