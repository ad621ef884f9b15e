//! The client inventory and the DR policy guard (`policy:`): what each
//! request tells about its client, and the rules a request may break.
//!
//! A rule with `action: warn` logs the client once per connection and
//! counts the request; `enforce` also refuses it with the Kafka error a
//! client understands: a Produce below acks=all gets INVALID_REQUIRED_ACKS,
//! a non-idempotent Produce POLICY_VIOLATION (both non-retriable: the
//! application sees the error), a ListOffsets that would start a group
//! without offsets at the log end POLICY_VIOLATION. A Produce with acks=0
//! expects no answer and is dropped.

use std::collections::BTreeSet;

use kafka_protocol::messages::ApiKey;

use super::{ConnCtx, Observe, Request, Verdict};
use crate::codec::{self as wire, clients as walk, ProduceView};
use crate::config::policy::{Policy, Require};
use crate::error::Fault;
use crate::inventory::{Fact, ProducerKind, Reset};

/// Kafka's INVALID_REQUIRED_ACKS.
pub const INVALID_REQUIRED_ACKS: i16 = 21;
/// Kafka's POLICY_VIOLATION.
pub const POLICY_VIOLATION: i16 = 44;

/// The latest and earliest ListOffsets timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// Notes what a request says of its client; answers a ListOffsets the
/// policy refuses.
pub fn request(cx: &ConnCtx, req: &Request) -> Result<Option<Verdict>, Fault> {
    let inv = &cx.board.inventory;
    let client = cx.client_id(req.frame.payload());
    cx.conn.note(inv, &client, &Fact::Seen);
    let body = req.body();
    match req.api {
        ApiKey::Fetch => {
            let _ = walk::fetch_topics(body, req.version, |t| {
                cx.conn.note(inv, &client, &Fact::Consumed(t))
            });
        }
        ApiKey::JoinGroup | ApiKey::OffsetCommit | ApiKey::ConsumerGroupHeartbeat => {
            if let Some(g) = walk::group_of(body, req.api, req.version) {
                cx.conn.note(inv, &client, &Fact::Group(&g));
            }
        }
        ApiKey::ListOffsets if inv.resets.any() => return list_offsets(cx, req, &client),
        _ => {}
    }
    Ok(None)
}

/// Where a group without offsets starts, and whether the policy refuses
/// it.
fn list_offsets(cx: &ConnCtx, req: &Request, client: &str) -> Result<Option<Verdict>, Fault> {
    let inv = &cx.board.inventory;
    let policy = cx.board.policy();
    let peer = cx.conn.peer();
    let mut refused = None;
    let _ = walk::list_offsets_partitions(req.body(), req.version, |topic, partition, ts| {
        let reset = match ts {
            LATEST => Reset::Latest,
            EARLIEST => Reset::Earliest,
            _ => return,
        };
        let Some(group) = inv.resets.peek(peer, client, topic, partition) else {
            return;
        };
        let rule = policy
            .rules(Require::NoLatestReset)
            .filter(|r| r.applies(client, topic, Some(&group)))
            .max_by_key(|r| r.enforce);
        if reset == Reset::Latest {
            if let Some(rule) = rule {
                broke(
                    cx,
                    client,
                    Require::NoLatestReset,
                    rule.enforce,
                    topic,
                    || {
                        format!("group {group} has no committed offset and its consumer starts at the log end (auto.offset.reset=latest)")
                    },
                );
                if rule.enforce {
                    // Still waiting: the consumer's retry is refused too.
                    inv.resets.no_offset(peer, client, &group, topic, partition);
                    refused = Some(group.clone());
                    return;
                }
            }
        }
        inv.resets.take(peer, client, topic, partition);
        cx.conn.note(
            inv,
            client,
            &Fact::Reset {
                group: &group,
                reset,
            },
        );
    });
    if refused.is_none() {
        return Ok(None);
    }
    let answer = walk::list_offsets_error(
        req.body(),
        req.version,
        req.correlation_id,
        POLICY_VIOLATION,
    )?;
    Ok(Some(Verdict::answer(answer)))
}

/// Logs (once per connection, rule and topic) and counts a broken rule.
fn broke(
    cx: &ConnCtx,
    client: &str,
    rule: Require,
    enforce: bool,
    topic: &str,
    why: impl FnOnce() -> String,
) {
    let inv = &cx.board.inventory;
    inv.violated(&cx.conn.who(client), cx.conn.peer(), rule.name());
    if cx.conn.first_time(&(rule.name(), topic)) {
        let why = why();
        let action = if enforce { "refused" } else { "allowed (warn)" };
        tracing::warn!(client, peer = %cx.conn.peer(), rule = rule.name(), topic, "DR policy: {why}; {action}");
    }
}

/// Notes a Produce's facts and checks the producer rules. `Some` is the
/// refusal.
pub fn produce(cx: &ConnCtx, req: &Request, view: &ProduceView) -> Result<Option<Verdict>, Fault> {
    let inv = &cx.board.inventory;
    let client = cx.client_id(req.frame.payload());
    let acks = crate::codec::header::produce_acks(req.body(), req.version).unwrap_or(-1);
    let kind = if view.transactional_id.is_some() {
        ProducerKind::Transactional
    } else if view.batches.iter().any(|b| b.producer_id >= 0) {
        ProducerKind::Idempotent
    } else {
        ProducerKind::Plain
    };
    if let Some(id) = &view.transactional_id {
        cx.conn.note(inv, &client, &Fact::TransactionalId(id));
    }
    let mut topics: BTreeSet<&str> = BTreeSet::new();
    for b in &view.batches {
        topics.insert(&b.topic);
    }
    let policy: std::sync::Arc<Policy> = cx.board.policy();
    let mut refuse: Option<(i16, String)> = None;
    for topic in topics {
        cx.conn
            .note(inv, &client, &Fact::Produced { topic, acks, kind });
        if acks != -1 {
            if let Some(r) = strictest(&policy, Require::AcksAll, &client, topic) {
                broke(cx, &client, Require::AcksAll, r, topic, || {
                    format!("produces with acks={acks}; the policy requires acks=all")
                });
                if r && refuse.is_none() {
                    refuse = Some((
                        INVALID_REQUIRED_ACKS,
                        format!("kflip DR policy: topic {topic} requires acks=all"),
                    ));
                }
            }
        }
        if kind == ProducerKind::Plain {
            if let Some(r) = strictest(&policy, Require::Idempotence, &client, topic) {
                broke(cx, &client, Require::Idempotence, r, topic, || {
                    "produces without idempotence; the policy requires enable.idempotence=true"
                        .into()
                });
                if r && refuse.is_none() {
                    refuse = Some((
                        POLICY_VIOLATION,
                        format!("kflip DR policy: topic {topic} requires an idempotent producer"),
                    ));
                }
            }
        }
    }
    let Some((code, why)) = refuse else {
        return Ok(None);
    };
    if acks == 0 {
        return Ok(Some(Verdict::Drop));
    }
    let answer =
        wire::produce_error_response(req.version, req.correlation_id, view, code, Some(&why))?;
    Ok(Some(Verdict::answer(answer)))
}

/// Whether a rule asking `require` covers this client and topic: `None`
/// if none does, else whether one enforces it.
fn strictest(policy: &Policy, require: Require, client: &str, topic: &str) -> Option<bool> {
    policy
        .rules(require)
        .filter(|r| r.applies(client, topic, None))
        .map(|r| r.enforce)
        .max()
}

/// What to observe of an OffsetFetch: partitions without a committed
/// offset, for the reset that follows.
pub fn offset_fetch(cx: &ConnCtx, req: &Request) -> Observe {
    Observe::Offsets {
        client_id: cx.client_id(req.frame.payload()),
        group: walk::group_of(req.body(), ApiKey::OffsetFetch, req.version),
    }
}

/// Reads an OffsetFetch response for partitions the group has no offset
/// for.
pub fn offset_fetch_response(
    cx: &ConnCtx,
    client_id: &str,
    group: Option<&str>,
    version: i16,
    payload: &[u8],
) {
    use kafka_protocol::messages::{OffsetFetchResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;
    let mut buf = bytes::Bytes::copy_from_slice(payload);
    let header = ApiKey::OffsetFetch.response_header_version(version);
    if ResponseHeader::decode(&mut buf, header).is_err() {
        return;
    }
    let Ok(resp) = OffsetFetchResponse::decode(&mut buf, version) else {
        return;
    };
    let resets = &cx.board.inventory.resets;
    let peer = cx.conn.peer();
    let missing = |group: &str, topic: &str, partition: i32, error: i16, offset: i64| {
        if error == 0 && offset < 0 {
            resets.no_offset(peer, client_id, group, topic, partition);
        }
    };
    // v8+ answers per group; earlier versions for the request's one group.
    for g in &resp.groups {
        for t in &g.topics {
            for p in &t.partitions {
                let (e, o) = (p.error_code, p.committed_offset);
                missing(
                    g.group_id.as_str(),
                    t.name.as_str(),
                    p.partition_index,
                    e,
                    o,
                );
            }
        }
    }
    if let Some(group) = group {
        for t in &resp.topics {
            for p in &t.partitions {
                let (e, o) = (p.error_code, p.committed_offset);
                missing(group, t.name.as_str(), p.partition_index, e, o);
            }
        }
    }
}
