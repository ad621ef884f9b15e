//! The fetcher's tasks: the dispatcher, which looks up leaders and starts
//! one task per leader, and each leader's task, which fetches.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use std::sync::atomic::Ordering;

use super::buffers::Buffers;
use super::request::request;
use super::session::Session;
use super::{Chunk, Event, Inner, Leader, AHEAD};
use crate::codec::batches::batches;
use crate::codec::frame::read_frame_whole;
use crate::kafka::KafkaConn;
use crate::replication::compat::FETCH_UNTAGGED;
use crate::replication::state::SourcePartition;

/// Bound of connecting, logging in and each request (beyond its wait).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response asked for, and accepted (a first batch larger than
/// the limit still comes whole).
pub(super) const MAX_BYTES: i32 = 32 << 20;
const MAX_RESPONSE: usize = 128 << 20;
/// Fetch v12 is the last that names topics (v13 uses topic ids), and the
/// first with the log-divergence check.
pub(super) const FETCH_MAX: i16 = 12;

/// Whenever partitions without a known leader are assigned, asks the
/// source for their leaders and starts the leaders' tasks.
pub(super) async fn dispatch(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let topics: BTreeSet<Arc<str>> = inner
            .lock()
            .map
            .iter()
            .filter(|(_, p)| p.leader.is_none() && !p.stopped)
            .map(|(sp, _)| Arc::from(sp.topic.as_str()))
            .collect();
        if topics.is_empty() {
            backoff = Duration::from_millis(50);
            inner.lookup.notified().await;
            continue;
        }
        match crate::kafka::leaders::leaders(&inner.source, &topics, TIMEOUT).await {
            Ok(found) => {
                let mut q = inner.lock();
                let q = &mut *q;
                for (sp, p) in q.map.iter_mut().filter(|(_, p)| p.leader.is_none()) {
                    let key = (Arc::from(sp.topic.as_str()), sp.partition);
                    let Some(&(l, epoch)) = found.partitions.get(&key) else {
                        continue;
                    };
                    let Some(addr) = found.brokers.get(&l) else {
                        continue;
                    };
                    let leader = q.leaders.entry(l).or_insert_with(|| {
                        let wake = Arc::new(Notify::new());
                        let task =
                            inner
                                .rt
                                .spawn(broker(inner.clone(), l, addr.clone(), wake.clone()));
                        Leader {
                            wake,
                            task: task.abort_handle(),
                        }
                    });
                    p.leader = Some(l);
                    p.epoch = epoch;
                    leader.wake.notify_one();
                }
            }
            Err(e) => {
                tracing::warn!(flow = %inner.state.cfg.id, error = %e, "cannot look up the source's partition leaders; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One leader's task: fetches until its connection fails, then hands its
/// partitions back for the next leader lookup.
async fn broker(inner: Arc<Inner>, id: i32, addr: String, wake: Arc<Notify>) {
    let why = fetch_from(&inner, id, &addr, &wake).await;
    tracing::warn!(flow = %inner.state.cfg.id, broker = id, %addr, error = %why, "source connection ended; looking its partitions' leaders up again");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut q = inner.lock();
    for p in q.map.values_mut().filter(|p| p.leader == Some(id)) {
        p.leader = None;
    }
    q.leaders.remove(&id);
    drop(q);
    inner.lookup.notify_one();
}

async fn fetch_from(inner: &Inner, id: i32, addr: &str, wake: &Notify) -> String {
    let conn = match KafkaConn::connect(&inner.source, addr, TIMEOUT).await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let mut conn = conn;
    let version = match conn.api_versions().await {
        Ok(v) => v.get(&(ApiKey::Fetch as i16)).map_or(0, |r| r.max),
        Err(e) => return e.to_string(),
    };
    if version < 4 {
        inner.state.error(format!(
            "source broker {addr} does not speak Fetch v4 (read_committed); cannot read from it"
        ));
        tokio::time::sleep(TIMEOUT).await;
        return "no Fetch v4".into();
    }
    let version = version.min(inner.version_cap.load(Ordering::Relaxed));
    let mut stream = conn.into_parts().0;
    let cfg = &inner.state.cfg;
    let wait = cfg.fetch_wait.min(Duration::from_secs(30));
    let mut turn = 0usize;
    let mut correlation = 0i32;
    let mut buffers = Buffers::default();
    let mut session = Session::new(version);
    loop {
        let Some((req, plan)) = request(inner, id, turn, &session) else {
            wake.notified().await;
            continue;
        };
        turn = turn.wrapping_add(1);
        correlation = correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("kflip-engine")));
        let mut buf = BytesMut::with_capacity(256 + 64 * plan.named.len());
        buf.put_i32(0);
        if let Err(e) = header
            .encode(&mut buf, FetchRequest::header_version(version))
            .and_then(|()| req.encode(&mut buf, version))
        {
            return format!("cannot encode a Fetch request: {e}");
        }
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let exchange = async {
            stream.write_all(&buf).await?;
            read_frame_whole(&mut stream, MAX_RESPONSE, buffers.take())
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        };
        let frame = match tokio::time::timeout(wait + TIMEOUT, exchange).await {
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) => return format!("{addr} closed the connection"),
            Ok(Err(e)) => return format!("fetch from {addr}: {e}"),
            Err(_) => return format!("no answer from {addr} within {:?}", wait + TIMEOUT),
        };
        let whole = frame.0.freeze();
        let mut body = whole.slice(4..);
        buffers.lend(whole);
        let resp = ResponseHeader::decode(&mut body, FetchResponse::header_version(version))
            .and_then(|h| {
                if h.correlation_id != correlation {
                    anyhow::bail!("response {} to request {correlation}", h.correlation_id);
                }
                FetchResponse::decode(&mut body, version)
            });
        let resp = match resp {
            Ok(r) => r,
            Err(e) if version > FETCH_UNTAGGED => {
                inner.version_cap.store(FETCH_UNTAGGED, Ordering::Relaxed);
                return format!("cannot decode a Fetch v{version} response from {addr} ({e}); asking v{FETCH_UNTAGGED} from now on");
            }
            Err(e) => {
                inner
                    .state
                    .error(format!("bad Fetch response from source broker {addr}: {e}"));
                return format!("bad Fetch response: {e}");
            }
        };
        if Session::is_session_error(resp.error_code) {
            tracing::debug!(flow = %inner.state.cfg.id, broker = id, code = resp.error_code, "fetch session refused; opening a new one");
            session.reset(resp.error_code);
            continue;
        }
        if resp.error_code != 0 {
            return format!(
                "{addr} refused the fetch: {}",
                crate::kafka::code_name(resp.error_code)
            );
        }
        session.answered(plan, resp.session_id);
        for mut ev in answered(inner, id, &session, resp) {
            // The next fetch waits until the copy thread has room for this.
            if let Event::Records(c) = &mut ev {
                let n = c.records.len().clamp(1, AHEAD) as u32;
                match inner.room.clone().acquire_many_owned(n).await {
                    Ok(permit) => c.room = Some(permit),
                    Err(_) => return "the flow stopped".into(),
                }
            }
            inner.push(ev);
        }
    }
}

/// What a response gives: each partition's records (its fetch position
/// moves past them) or what the flow must judge; partitions whose leader
/// moved are looked up again.
fn answered(inner: &Inner, id: i32, session: &Session, resp: FetchResponse) -> Vec<Event> {
    let mut events = Vec::new();
    let mut ends = Vec::new();
    let mut lookup = false;
    let mut q = inner.lock();
    for t in resp.responses {
        for pd in t.partitions {
            let sp = SourcePartition {
                topic: t.topic.0.to_string(),
                partition: pd.partition_index,
            };
            let Some(read) = session.read_with(&sp) else {
                continue;
            };
            let (generation, from) = (read.generation, read.fetch);
            let Some(p) = q.map.get_mut(&sp) else {
                continue;
            };
            if p.generation != generation || p.fetch != from || p.leader != Some(id) || p.stopped {
                continue;
            }
            if pd.high_watermark >= 0 {
                ends.push((sp.clone(), pd.high_watermark));
            }
            match pd.error_code {
                0 => {}
                1 => {
                    p.stopped = true;
                    events.push(Event::OutOfRange(sp, generation));
                    continue;
                }
                code => {
                    // Not the leader (any more), not ready, epochs that
                    // disagree, or a refusal the next lookup may explain.
                    if !matches!(code, 3 | 5 | 6 | 9 | 56 | 74 | 76 | 78 | 100) {
                        inner.state.error(format!(
                            "source fetch of {}[{}]: {}",
                            sp.topic,
                            sp.partition,
                            crate::kafka::code_name(code)
                        ));
                    }
                    p.leader = None;
                    lookup = true;
                    continue;
                }
            }
            if pd.diverging_epoch.epoch >= 0 || pd.diverging_epoch.end_offset >= 0 {
                p.stopped = true;
                events.push(Event::Diverged(
                    sp,
                    generation,
                    pd.diverging_epoch.end_offset,
                ));
                continue;
            }
            let Some(records) = pd.records.filter(|r| !r.is_empty()) else {
                continue;
            };
            let (mut next, mut epoch) = (from, p.last_epoch);
            let mut walk = batches(&records);
            for b in &mut walk {
                match b {
                    Ok((h, _)) => {
                        next = next.max(h.last_offset.saturating_add(1));
                        epoch = h.leader_epoch;
                    }
                    // The copy thread reports it when it walks the chunk.
                    Err(_) => {
                        p.stopped = true;
                        break;
                    }
                }
            }
            if next <= from && !p.stopped {
                continue;
            }
            p.fetch = next;
            p.last_epoch = epoch;
            events.push(Event::Records(Chunk {
                sp,
                generation,
                from,
                next,
                records,
                aborted: pd
                    .aborted_transactions
                    .unwrap_or_default()
                    .iter()
                    .map(|a| (a.producer_id.0, a.first_offset))
                    .collect(),
                room: None,
            }));
        }
    }
    drop(q);
    if lookup {
        inner.lookup.notify_one();
    }
    if !ends.is_empty() {
        let mut parts = inner.state.lock();
        for (sp, end) in ends {
            if let Some(p) = parts.get_mut(&sp) {
                p.source_end = end;
            }
        }
    }
    events
}
