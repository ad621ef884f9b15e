//! Fetch responses, streamed from the broker to the client and rewritten on
//! the way, never held whole.
//!
//! Fetch is the hot path: its responses carry the consumed data, often
//! megabytes. Reading a whole response before sending any of it puts a
//! serial stage into every fetch, so instead this walks the response as it
//! arrives: the small fields are read and patched, and each partition's
//! records are copied straight through. What is patched, always in place
//! so the length never changes:
//! - `preferred_read_replica` (v11+): the node id is mapped;
//! - `current_leader` (v12+ partition tag 1): leader id mapped, epoch -1;
//! - `topic_id` (v13+): set to the nil id;
//! - `node_endpoints` (top-level tag 0): mapped, and the tagged section is
//!   padded with an unknown tag (which clients skip) to its old length. If
//!   the mapped endpoints do not fit, they are dropped: they are only a hint
//!   (KIP-951), and a client without them refreshes metadata.
//!
//! Tagged fields are accepted in versions that do not define them (tansu
//! 0.6 sends `node_endpoints` in v12), and rewritten all the same.

use bytes::BufMut;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncBufRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use std::pin::Pin;

use super::rewrite::{NodeMap, RewriteError};
use crate::cluster::splice::{Pipe, SpliceFrom, SpliceTo, SPLICE_MIN};
use crate::codec::varint::{put_uvarint, Reader};

/// Tag number of the padding field: above any tag Kafka defines.
const PAD_TAG: u32 = 0x3fff;

fn err(version: i16, message: impl Into<String>) -> RewriteError {
    RewriteError {
        api: ApiKey::Fetch,
        version,
        message: message.into(),
    }
}

/// Reads from the broker, collects small fields to patch, copies records.
struct Pump<'a, R, W> {
    up: &'a mut R,
    client: &'a mut W,
    /// Bytes of the frame not yet read.
    remaining: usize,
    /// Read but not yet written; patched in place before it is written.
    out: Vec<u8>,
    version: i16,
    /// The pipe records are spliced through, made for the first large
    /// records of the response (`Err`: none could be made; copy).
    pipe: Option<std::io::Result<Pipe>>,
}

impl<R, W> Pump<'_, R, W>
where
    R: AsyncBufRead + SpliceFrom + Unpin,
    W: AsyncWrite + SpliceTo + Unpin,
{
    fn e(&self, m: &str) -> RewriteError {
        err(self.version, m.to_string())
    }

    /// Reads `n` bytes into `out`; returns where they start.
    async fn take(&mut self, n: usize, what: &str) -> Result<usize, RewriteError> {
        if n > self.remaining {
            return Err(self.e(&format!("{what} runs past the end of the response")));
        }
        let at = self.out.len();
        self.out.resize(at + n, 0);
        self.up
            .read_exact(&mut self.out[at..])
            .await
            .map_err(|e| self.e(&format!("reading {what}: {e}")))?;
        self.remaining -= n;
        Ok(at)
    }

    async fn i32(&mut self, what: &str) -> Result<(usize, i32), RewriteError> {
        let at = self.take(4, what).await?;
        let b = &self.out[at..at + 4];
        Ok((at, i32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    }

    async fn uvarint(&mut self, what: &str) -> Result<u32, RewriteError> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let at = self.take(1, what).await?;
            let b = self.out[at];
            value |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.e(&format!("{what}: varint too long")))
    }

    /// An array or string length in the classic (i32/i16) or compact form;
    /// `None` for null.
    async fn len(
        &mut self,
        compact: bool,
        short: bool,
        what: &str,
    ) -> Result<Option<usize>, RewriteError> {
        if compact {
            return Ok((self.uvarint(what).await? as usize).checked_sub(1));
        }
        let n = if short {
            let at = self.take(2, what).await?;
            i32::from(i16::from_be_bytes([self.out[at], self.out[at + 1]]))
        } else {
            self.i32(what).await?.1
        };
        match n {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(n as usize)),
            _ => Err(self.e(&format!("{what}: negative length"))),
        }
    }

    async fn flush(&mut self) -> Result<(), RewriteError> {
        if !self.out.is_empty() {
            self.client
                .write_all(&self.out)
                .await
                .map_err(|e| self.e(&format!("client write failed: {e}")))?;
            self.out.clear();
        }
        Ok(())
    }

    /// Copies `n` bytes straight from the broker to the client.
    async fn pass(&mut self, n: usize, what: &str) -> Result<(), RewriteError> {
        if n > self.remaining {
            return Err(self.e(&format!("{what} runs past the end of the response")));
        }
        self.flush().await?;
        let left = if n >= SPLICE_MIN {
            self.splice(n, what).await?
        } else {
            n
        };
        // copy_buf writes straight from the reader's buffer: no extra copy,
        // and chunks as large as that buffer.
        let copied = tokio::io::copy_buf(&mut (&mut *self.up).take(left as u64), self.client)
            .await
            .map_err(|e| self.e(&format!("copying {what}: {e}")))?;
        if copied != left as u64 {
            return Err(self.e(&format!(
                "{what}: the broker closed the connection mid-response"
            )));
        }
        self.remaining -= n;
        Ok(())
    }

    /// Moves `n` bytes between the sockets in the kernel when both are
    /// plain TCP: first what the reader holds, then by splice. Returns how
    /// many are left to copy (all `n` when splicing is not possible).
    async fn splice(&mut self, n: usize, what: &str) -> Result<usize, RewriteError> {
        if self.client.splice_sink().is_none() {
            return Ok(n);
        }
        let Some((held, _)) = self.up.splice_source() else {
            return Ok(n);
        };
        let pipe = match self.pipe.get_or_insert_with(Pipe::new) {
            Ok(p) => p,
            Err(_) => return Ok(n),
        };
        let first = held.len().min(n);
        self.client
            .write_all(&held[..first])
            .await
            .map_err(|e| err(self.version, format!("client write failed: {e}")))?;
        Pin::new(&mut *self.up).consume(first);
        let rest = n - first;
        match (self.up.splice_source(), self.client.splice_sink()) {
            (Some((_, from)), Some(to)) => {
                pipe.splice(from, to, rest)
                    .await
                    .map_err(|e| err(self.version, format!("moving {what}: {e}")))?;
                Ok(0)
            }
            _ => Ok(rest),
        }
    }

    /// Reads a tagged-field section; calls `f(tag, offset, size)` for each.
    async fn tags(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Vec<u8>, u32, usize, usize),
    ) -> Result<(), RewriteError> {
        let n = self.uvarint(what).await?;
        for _ in 0..n {
            let tag = self.uvarint(what).await?;
            let size = self.uvarint(what).await? as usize;
            let at = self.take(size, what).await?;
            f(&mut self.out, tag, at, size);
        }
        Ok(())
    }
}

/// Streams one Fetch response body of `len` bytes (the length prefix already
/// read, and written by the caller) from `up` to `client`, patching it. The
/// correlation id must be `correlation_id`.
pub async fn stream_fetch<R, W>(
    up: &mut R,
    client: &mut W,
    len: usize,
    version: i16,
    correlation_id: i32,
    map: &(dyn NodeMap + Sync),
) -> Result<(), RewriteError>
where
    R: AsyncBufRead + SpliceFrom + Unpin,
    W: AsyncWrite + SpliceTo + Unpin,
{
    let flexible = version >= 12;
    let mut p = Pump {
        up,
        client,
        remaining: len,
        out: Vec::with_capacity(256),
        version,
        pipe: None,
    };
    let (_, corr) = p.i32("correlation id").await?;
    if corr != correlation_id {
        return Err(p.e(&format!(
            "correlation id {corr} does not match request {correlation_id}"
        )));
    }
    if flexible {
        p.tags("header tags", |_, _, _, _| {}).await?;
    }
    p.take(4, "throttle_time_ms").await?;
    if version >= 7 {
        p.take(6, "error_code/session_id").await?;
    }
    let topics = p.len(flexible, false, "responses").await?.unwrap_or(0);
    for _ in 0..topics {
        if version >= 13 {
            let at = p.take(16, "topic_id").await?;
            p.out[at..at + 16].fill(0);
        } else {
            let n = p.len(flexible, true, "topic").await?.unwrap_or(0);
            p.take(n, "topic").await?;
        }
        let parts = p.len(flexible, false, "partitions").await?.unwrap_or(0);
        for _ in 0..parts {
            let fixed = 4 + 2 + 8 + 8 + if version >= 5 { 8 } else { 0 };
            p.take(fixed, "partition header").await?;
            let aborted = p
                .len(flexible, false, "aborted_transactions")
                .await?
                .unwrap_or(0);
            for _ in 0..aborted {
                p.take(16, "aborted transaction").await?;
                if flexible {
                    p.tags("aborted transaction tags", |_, _, _, _| {}).await?;
                }
            }
            if version >= 11 {
                let (at, id) = p.i32("preferred_read_replica").await?;
                if id != -1 {
                    p.out[at..at + 4].copy_from_slice(&map.node(id).to_be_bytes());
                }
            }
            if let Some(n) = p.len(flexible, false, "records").await? {
                p.pass(n, "records").await?;
            }
            if flexible {
                p.tags("partition tags", |out, tag, at, size| {
                    if tag == 1 && size >= 8 {
                        let b = &out[at..at + 4];
                        let leader = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                        out[at..at + 4].copy_from_slice(&map.node(leader).to_be_bytes());
                        out[at + 4..at + 8].copy_from_slice(&(-1i32).to_be_bytes());
                    }
                })
                .await?;
            }
        }
        if flexible {
            p.tags("topic tags", |_, _, _, _| {}).await?;
        }
    }
    if flexible {
        let at = p.take(p.remaining, "top-level tags").await?;
        let tail = p.out.split_off(at);
        let patched = rewrite_tail(&tail, map).ok_or_else(|| p.e("bad top-level tags"))?;
        p.out.extend_from_slice(&patched);
    }
    if p.remaining != 0 {
        return Err(p.e("trailing bytes after the response"));
    }
    p.flush().await
}

/// The top-level tagged section with `node_endpoints` mapped, at exactly the
/// old length (see the module docs).
fn rewrite_tail(tail: &[u8], map: &dyn NodeMap) -> Option<Vec<u8>> {
    let mut r = Reader::new(tail, 0);
    let n = r.uvarint().ok()?;
    let mut fields: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut saw_endpoints = false;
    for _ in 0..n {
        let tag = r.uvarint().ok()?;
        let size = r.uvarint().ok()? as usize;
        let start = r.pos();
        r.skip(size).ok()?;
        let data = &tail[start..start + size];
        if tag == 0 {
            saw_endpoints = true;
            fields.push((0, map_endpoints(data, map)?));
        } else {
            fields.push((tag, data.to_vec()));
        }
    }
    if r.pos() != tail.len() {
        return None;
    }
    if !saw_endpoints {
        return Some(tail.to_vec());
    }
    encode_padded(&fields, tail.len()).or_else(|| {
        fields.retain(|(t, _)| *t != 0);
        encode_padded(&fields, tail.len())
    })
}

/// Encodes tagged fields, plus a padding field if needed, so the result is
/// exactly `want` bytes; `None` if that cannot be done.
fn encode_padded(fields: &[(u32, Vec<u8>)], want: usize) -> Option<Vec<u8>> {
    let encode = |pad: Option<usize>| {
        let mut out = Vec::new();
        put_uvarint(&mut out, (fields.len() + usize::from(pad.is_some())) as u32);
        for (tag, data) in fields {
            put_uvarint(&mut out, *tag);
            put_uvarint(&mut out, data.len() as u32);
            out.extend_from_slice(data);
        }
        if let Some(n) = pad {
            put_uvarint(&mut out, PAD_TAG);
            put_uvarint(&mut out, n as u32);
            out.resize(out.len() + n, 0);
        }
        out
    };
    let plain = encode(None);
    if plain.len() == want {
        return Some(plain);
    }
    // n bytes of padding cost n plus the width of n's size varint on top
    // of an empty pad field. Solve for n at each varint width rather than
    // encoding every n in turn: that was quadratic in the section's size
    // (seconds for endpoints with a long host name).
    let empty_pad = encode(Some(0)).len() - 1;
    (1..=5)
        .filter_map(|width| want.checked_sub(empty_pad + width))
        .map(|n| encode(Some(n)))
        .find(|o| o.len() == want)
}

/// Maps a compact array of NodeEndpoint {node_id, host, port, rack, tags}.
fn map_endpoints(data: &[u8], map: &dyn NodeMap) -> Option<Vec<u8>> {
    let mut r = Reader::new(data, 0);
    let mut out = Vec::new();
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
    (r.pos() == data.len()).then_some(out)
}
