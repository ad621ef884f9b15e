//! One task per target leader: sends Produce requests, pipelined, and
//! records what the target answers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ProduceResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, HeaderVersion};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::request::{produce_frame, TopicBatches};
use super::{Inner, IN_FLIGHT};
use crate::codec::frame::read_frame;
use crate::kafka::{ClientError, KafkaConn};

/// Bound of connecting, logging in and each request.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the target may hold a Produce request (acks=all).
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Largest Produce response accepted.
const MAX_RESPONSE: usize = 16 << 20;
/// Produce v12 is the last that names topics (v13 uses topic ids).
const PRODUCE_MAX: i16 = 12;

/// Why a leader's task ended.
enum End {
    /// Send again through a new connection (after a new leader lookup).
    Retry(String),
    /// The flow must start again.
    Fatal(String),
    /// The broker closed the connection while nothing was in flight (it
    /// closes idle connections): connect again when there is something
    /// to send.
    Idle,
}

impl From<ClientError> for End {
    fn from(e: ClientError) -> End {
        End::Retry(e.to_string())
    }
}

/// Error codes after which a batch is sent again: the leader moved or
/// is not ready, or the request was not answered in time.
fn retriable(code: i16) -> bool {
    // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE,
    // NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NETWORK_EXCEPTION,
    // NOT_ENOUGH_REPLICAS(_AFTER_APPEND), OUT_OF_ORDER_SEQUENCE_NUMBER (a
    // batch before it failed), KAFKA_STORAGE_ERROR, FENCED_LEADER_EPOCH,
    // UNKNOWN_LEADER_EPOCH, THROTTLING_QUOTA_EXCEEDED.
    matches!(code, 3 | 5 | 6 | 7 | 13 | 19 | 20 | 45 | 56 | 74 | 76 | 89)
}

pub(super) use crate::kafka::code_name;

/// One leader's task: sends until its connection fails, then hands its
/// partitions' unanswered batches back for the next leader lookup.
pub(super) async fn broker(
    inner: Arc<Inner>,
    id: i32,
    addr: String,
    wake: Arc<tokio::sync::Notify>,
) {
    let end = send_to(&inner, id, &addr, &wake).await;
    if let End::Idle = &end {
        tracing::debug!(flow = %inner.state.cfg.id, broker = id, %addr, "idle target connection closed");
    }
    if let End::Retry(why) = &end {
        tracing::warn!(flow = %inner.state.cfg.id, broker = id, %addr, error = %why, "target connection lost; sending its batches again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    {
        let mut q = inner.lock();
        for p in q.parts.iter_mut().filter(|p| p.leader == Some(id)) {
            while let Some(b) = p.sent.pop_back() {
                p.sealed.push_front(b);
            }
            p.leader = None;
            p.queued = false;
        }
        q.leaders.remove(&id);
    }
    match end {
        End::Fatal(why) => inner.fail(why),
        End::Retry(_) | End::Idle => inner.lookup.notify_one(),
    }
}

/// A request in flight: its correlation id, when it was sent, and the
/// partitions it carries a batch of.
struct Pending {
    correlation: i32,
    sent: Instant,
    parts: Vec<usize>,
}

async fn send_to(inner: &Inner, id: i32, addr: &str, wake: &tokio::sync::Notify) -> End {
    let mut conn =
        match tokio::time::timeout(TIMEOUT, KafkaConn::connect(&inner.target, addr, TIMEOUT)).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return e.into(),
            Err(_) => return End::Retry(format!("no connection to {addr} within {TIMEOUT:?}")),
        };
    let version = match conn.api_versions().await {
        Ok(v) => v
            .get(&(ApiKey::Produce as i16))
            .map_or(3, |r| r.max.min(PRODUCE_MAX)),
        Err(e) => return e.into(),
    };
    if version < 3 {
        return End::Fatal(format!(
            "broker {addr} does not speak Produce v3 (record batches)"
        ));
    }
    let (rd, mut wr) = conn.into_parts().0.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel(IN_FLIGHT + 1);
    let reader = inner.rt.spawn(async move {
        let mut rd = rd;
        loop {
            let f = read_frame(&mut rd, MAX_RESPONSE).await;
            let last = !matches!(f, Ok(Some(_)));
            if tx.send(f).await.is_err() || last {
                return;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    let mut in_flight: VecDeque<Pending> = VecDeque::new();
    let mut correlation = 0i32;
    let request_timeout = Duration::from_millis(PRODUCE_TIMEOUT_MS as u64) + TIMEOUT;
    loop {
        while in_flight.len() < IN_FLIGHT {
            let next = match next_request(inner, id, version, correlation) {
                Ok(next) => next,
                Err(end) => return end,
            };
            let Some((parts, pieces)) = next else {
                break;
            };
            let write = async {
                for piece in &pieces {
                    wr.write_all(piece).await?;
                }
                Ok::<_, std::io::Error>(())
            };
            match tokio::time::timeout(TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return End::Retry(format!("write to {addr}: {e}")),
                Err(_) => return End::Retry(format!("write to {addr} stalled")),
            }
            in_flight.push_back(Pending {
                correlation,
                sent: Instant::now(),
                parts,
            });
            correlation = correlation.wrapping_add(1);
        }
        let Some(oldest) = in_flight.front().map(|p| p.sent) else {
            tokio::select! {
                _ = wake.notified() => {}
                // Nothing in flight: the broker closed an idle connection.
                _ = rx.recv() => return End::Idle,
            }
            continue;
        };
        tokio::select! {
            f = rx.recv() => {
                let frame = match f {
                    Some(Ok(Some(f))) => f,
                    Some(Ok(None)) | None => return End::Retry(format!("{addr} closed the connection")),
                    Some(Err(e)) => return End::Retry(format!("read from {addr}: {e}")),
                };
                let Some(p) = in_flight.pop_front() else {
                    return End::Retry(format!("{addr} answered a request not sent"));
                };
                if let Err(end) = answered(inner, version, p, frame.payload()) {
                    return end;
                }
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(oldest + request_timeout) => {
                return End::Retry(format!("no answer from {addr} within {request_timeout:?}"));
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A request to send: the partitions it carries a batch of, and its pieces.
type Request = (Vec<usize>, Vec<Bytes>);

/// The next Produce request to leader `id`: one batch from each partition
/// with records, sealed now if need be. `None`: nothing to send.
fn next_request(
    inner: &Inner,
    id: i32,
    version: i16,
    correlation: i32,
) -> Result<Option<Request>, End> {
    let mut q = inner.lock();
    let ready = std::mem::take(&mut q.leaders.entry(id).or_default().ready);
    let mut parts = Vec::new();
    let mut topics: Vec<TopicBatches> = Vec::new();
    let mut again = Vec::new();
    for idx in ready {
        let p = &mut q.parts[idx];
        p.queued = false;
        if p.leader != Some(id) {
            continue;
        }
        if !p.acked_once && !p.sent.is_empty() {
            again.push(idx);
            continue;
        }
        if p.sealed.is_empty() {
            inner.seal_open(p);
        }
        let Some(b) = p.sealed.pop_front() else {
            continue;
        };
        let data = (p.partition, b.bytes.clone());
        match topics.iter_mut().find(|(t, _)| *t == p.topic) {
            Some((_, v)) => v.push(data),
            None => topics.push((p.topic.clone(), vec![data])),
        }
        p.sent.push_back(b);
        parts.push(idx);
        if p.has_records() {
            again.push(idx);
        }
    }
    for idx in again {
        q.parts[idx].queued = true;
        q.leaders.entry(id).or_default().ready.push_back(idx);
    }
    drop(q);
    if parts.is_empty() {
        return Ok(None);
    }
    // The batches are already among the partitions' sent ones: a request
    // that cannot be encoded ends the connection, which hands them back.
    let pieces = produce_frame(version, correlation, PRODUCE_TIMEOUT_MS, &topics)
        .map_err(|e| End::Retry(format!("cannot encode a Produce request: {e}")))?;
    let size: usize = pieces.iter().map(Bytes::len).sum();
    for (counter, n) in inner.state.produce_sent.iter().zip([1, parts.len(), size]) {
        counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(Some((parts, pieces)))
}

/// Records the answer to request `p`: acknowledged batches into the offset
/// maps; a retriable error ends the connection so the batches go again.
fn answered(inner: &Inner, version: i16, p: Pending, payload: &[u8]) -> Result<(), End> {
    let mut body = Bytes::copy_from_slice(payload);
    let header = ResponseHeader::decode(&mut body, ProduceResponse::header_version(version))
        .map_err(|e| End::Retry(format!("bad Produce response header: {e}")))?;
    if header.correlation_id != p.correlation {
        return Err(End::Retry(format!(
            "response {} to request {}",
            header.correlation_id, p.correlation
        )));
    }
    let resp = ProduceResponse::decode(&mut body, version)
        .map_err(|e| End::Retry(format!("bad Produce response: {e}")))?;
    let mut acks = Vec::new();
    let mut retry = None;
    {
        let mut q = inner.lock();
        for t in &resp.responses {
            for r in &t.partition_responses {
                let Some(idx) = q
                    .index
                    .get(t.name.0.as_str())
                    .and_then(|v| v.get(r.index.max(0) as usize).copied().flatten())
                else {
                    continue;
                };
                if !p.parts.contains(&idx) {
                    continue;
                }
                let part = &mut q.parts[idx];
                if r.error_code == 0 {
                    part.acked_once = true;
                    if let Some(b) = part.sent.pop_front() {
                        acks.push((
                            part.topic.clone(),
                            part.source_topic.clone(),
                            part.partition,
                            b,
                            r.base_offset,
                        ));
                    }
                } else if retriable(r.error_code) {
                    retry.get_or_insert_with(|| {
                        format!("{}[{}]: {}", t.name.0, r.index, code_name(r.error_code))
                    });
                } else {
                    let mut msg = r
                        .error_message
                        .as_ref()
                        .map_or(String::new(), |m| format!(": {m}"));
                    if r.error_code == 10 {
                        msg.push_str(
                            " (a batch is larger than the target topic's max.message.bytes: \
                             lower the flow's batch_bytes)",
                        );
                    }
                    return Err(End::Fatal(format!(
                        "the target refused a batch of {}[{}] with {}{msg}",
                        t.name.0,
                        r.index,
                        code_name(r.error_code)
                    )));
                }
            }
        }
    }
    for (topic, source, partition, b, base) in acks {
        inner.acked(&topic, source.as_deref(), partition, &b, base);
        inner.spare.give(b.bytes);
    }
    match retry {
        Some(why) => Err(End::Retry(why)),
        None => Ok(()),
    }
}
