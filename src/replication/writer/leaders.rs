//! The writer's dispatcher: its producer id, and the leader of every
//! partition it writes to, whose tasks (`super::send`) it starts.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, ProducerId};
use tokio::time::Instant;

use super::send::{broker, code_name, TIMEOUT};
use super::Inner;
use crate::kafka::{ClientError, KafkaConn};

/// Asks the target for an idempotent producer id and epoch.
pub(super) async fn init_producer_id(
    target: &crate::config::ClusterConfig,
) -> Result<(i64, i16), ClientError> {
    let deadline = Instant::now() + TIMEOUT;
    // A broker that just started answers "not available" until it has a
    // block of producer ids: a few short waits, then longer ones.
    let mut backoff = Duration::from_millis(10);
    loop {
        let mut conn = KafkaConn::connect_any(target, TIMEOUT).await?;
        let versions = conn.api_versions().await?;
        let v = versions
            .get(&(ApiKey::InitProducerId as i16))
            .map_or(0, |r| r.max.min(4));
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(i32::MAX)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let resp = conn.send(&req, v).await?;
        // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
        // NOT_COORDINATOR: the broker is starting.
        if matches!(resp.error_code, 14..=16) && Instant::now() < deadline {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
            continue;
        }
        if resp.error_code != 0 {
            return Err(ClientError::Exchange {
                addr: conn.addr().to_string(),
                message: format!("InitProducerId: {}", code_name(resp.error_code)),
            });
        }
        return Ok((resp.producer_id.0, resp.producer_epoch));
    }
}

/// The dispatcher: whenever partitions without a known leader have
/// records, asks the target for their leaders and starts the leaders'
/// tasks.
pub(super) async fn dispatch(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let topics: BTreeSet<Arc<str>> = {
            let q = inner.lock();
            q.parts
                .iter()
                .filter(|p| p.leader.is_none() && (p.has_records() || !p.sent.is_empty()))
                .map(|p| p.topic.clone())
                .collect()
        };
        if topics.is_empty() {
            backoff = Duration::from_millis(50);
            inner.lookup.notified().await;
            continue;
        }
        match leaders(&inner, &topics).await {
            Ok((found, brokers)) => {
                let mut q = inner.lock();
                for i in 0..q.parts.len() {
                    let p = &q.parts[i];
                    if p.leader.is_some() {
                        continue;
                    }
                    let Some(&l) = found.get(&(p.topic.clone(), p.partition)) else {
                        continue;
                    };
                    let Some(addr) = brokers.get(&l) else {
                        continue;
                    };
                    let leader = q.leaders.entry(l).or_default();
                    if leader.task.is_none() {
                        let wake = leader.wake.clone();
                        let task = inner.rt.spawn(broker(inner.clone(), l, addr.clone(), wake));
                        leader.task = Some(task.abort_handle());
                    }
                    q.parts[i].leader = Some(l);
                    q.parts[i].queued = false;
                    if q.parts[i].has_records() {
                        q.mark_ready(i, &inner.lookup);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(flow = %inner.state.cfg.id, error = %e, "cannot look up the target's partition leaders; retrying");
            }
        }
        // Partitions still without a leader (an election under way) are
        // looked up again shortly.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Stops every leader's task (the writer is dropped).
pub(super) fn abort_all(inner: &Inner) {
    let mut q = inner.lock();
    for l in q.leaders.values_mut() {
        if let Some(t) = l.task.take() {
            t.abort();
        }
    }
}

type Found = HashMap<(Arc<str>, i32), i32>;

/// The leader of each partition of `topics`, and each leader's address.
async fn leaders(
    inner: &Inner,
    topics: &BTreeSet<Arc<str>>,
) -> Result<(Found, HashMap<i32, String>), ClientError> {
    let l = crate::kafka::leaders::leaders(&inner.target, topics, TIMEOUT).await?;
    let found = l
        .partitions
        .into_iter()
        .map(|(k, (id, _))| (k, id))
        .collect();
    Ok((found, l.brokers))
}
