//! The requests kflip looks into for failover (see `super::super::failover`):
//! group requests of members from before a switch, fetches of consumers
//! that have not rejoined, produce batches of producer ids from the old
//! cluster, and the commits and producer ids clients receive.

use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;

use super::{Ctx, Frame, Observe, Pending};
use crate::protocol::failover as wire;

#[path = "txn.rs"]
mod txn;

/// Kafka's UNKNOWN_MEMBER_ID: the member must rejoin its group.
const UNKNOWN_MEMBER_ID: i16 = 25;

/// Longest pause before an empty answer to a held Fetch.
const MAX_HELD_FETCH: Duration = Duration::from_millis(500);

/// What to do with a request.
pub(super) enum Intercept {
    /// Forward it (perhaps rewritten) and learn from the response.
    Forward(Frame, Observe),
    /// Answer it without forwarding.
    Answer(Pending),
}

/// A new frame with the same header and a new body.
fn reframe(frame: &Frame, body_offset: usize, body: &[u8]) -> Frame {
    let header = &frame.payload()[..body_offset];
    let mut out = BytesMut::with_capacity(4 + header.len() + body.len());
    out.extend_from_slice(&((header.len() + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    Frame(out)
}

/// Looks at one request before it is forwarded.
pub(super) async fn intercept(
    ctx: &Ctx,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body_offset: usize,
    mut frame: Frame,
) -> Result<Intercept, String> {
    let failover = &ctx.shared.failover;
    match api {
        ApiKey::Fetch => {
            let key = ctx.key(frame.payload());
            if !failover.fetch_held(&key, ctx.epoch) {
                crate::protocol::epochs::clear_fetch(
                    &mut frame.payload_mut()[body_offset..],
                    version,
                )
                .map_err(|e| e.to_string())?;
                return Ok(Intercept::Forward(frame, Observe::Nothing));
            }
            let body = &frame.payload()[body_offset..];
            let view = match wire::fetch_request(body, version) {
                Ok(view) => view,
                // Versions kflip cannot answer itself go on unchanged.
                Err(wire::ParseError::Unsupported { .. }) => {
                    return Ok(Intercept::Forward(frame, Observe::Nothing))
                }
                Err(e) => return Err(format!("bad Fetch request: {e}")),
            };
            tracing::debug!(client = %key.0, "fetch held until the consumer rejoins its group");
            let answer = wire::empty_fetch_response(version, correlation_id, &view)?;
            let pause = Duration::from_millis(view.max_wait_ms.max(0) as u64).min(MAX_HELD_FETCH);
            Ok(Intercept::Answer(Pending::Delayed(answer, pause)))
        }
        ApiKey::Heartbeat | ApiKey::SyncGroup => {
            let key = ctx.key(frame.payload());
            let body = &frame.payload()[body_offset..];
            let m = wire::group_member(body, api, version)
                .map_err(|e| format!("bad {api:?} request: {e}"))?;
            if failover.group_request(&key, &m.group_id, &m.member_id, m.generation_id, ctx.epoch) {
                tracing::info!(client = %key.0, group = %m.group_id, "member from before the switch fenced; it rejoins");
                super::super::failover::leave_old_group(
                    &ctx.shared,
                    &m.group_id,
                    &m.member_id,
                    crate::kafka::groups::Protocol::Classic,
                );
                let answer =
                    wire::error_response(api, version, correlation_id, UNKNOWN_MEMBER_ID, body)?;
                return Ok(Intercept::Answer(Pending::Delayed(answer, Duration::ZERO)));
            }
            Ok(Intercept::Forward(frame, Observe::Nothing))
        }
        ApiKey::ListOffsets => {
            crate::protocol::epochs::clear_list_offsets(
                &mut frame.payload_mut()[body_offset..],
                version,
            )
            .map_err(|e| e.to_string())?;
            Ok(Intercept::Forward(frame, Observe::Nothing))
        }
        ApiKey::OffsetForLeaderEpoch => {
            crate::protocol::epochs::clear_offset_for_leader_epoch(
                &mut frame.payload_mut()[body_offset..],
                version,
            )
            .map_err(|e| e.to_string())?;
            Ok(Intercept::Forward(frame, Observe::Nothing))
        }
        ApiKey::ConsumerGroupHeartbeat => {
            consumer_heartbeat(ctx, version, correlation_id, body_offset, frame).await
        }
        ApiKey::LeaveGroup => {
            let key = ctx.key(frame.payload());
            let body = &frame.payload()[body_offset..];
            if let Some(group) = leave_group_id(body, version) {
                failover.left(&key, &group);
            }
            Ok(Intercept::Forward(frame, Observe::Nothing))
        }
        ApiKey::OffsetCommit if version >= 2 => {
            let key = ctx.key(frame.payload());
            let body = &frame.payload()[body_offset..];
            let view = wire::offset_commit(body, version)
                .map_err(|e| format!("bad OffsetCommit request: {e}"))?;
            let asked = |f: &dyn Fn(&wire::CommitOffset) -> i64| Observe::Commit {
                group: view.group_id.clone(),
                offsets: view
                    .offsets
                    .iter()
                    .map(|o| ((o.topic.to_string(), o.partition), f(o)))
                    .collect(),
            };
            let fenced = failover.group_request(
                &key,
                &view.group_id,
                &view.member_id,
                view.generation_id,
                ctx.epoch,
            );
            // A client that lost its membership may commit its old-space
            // positions as a simple commit (generation -1, as librdkafka's
            // auto-commit and kafka-python do before rejoining): those are
            // old-space too while the client has not rejoined.
            let simple = view.generation_id < 0 || view.member_id.is_empty();
            let old_space = fenced || (simple && failover.fetch_held(&key, ctx.epoch));
            if !old_space {
                return Ok(Intercept::Forward(frame, asked(&|o| o.offset)));
            }
            // A member from before the switch commits what it read from the
            // old cluster: translate, commit as a simple commit (the new
            // cluster does not know the member), and let the fence on its
            // next heartbeat make it rejoin.
            match translate_commit(ctx, &view) {
                Some(offsets) => {
                    let new_body = wire::rewrite_offset_commit(
                        body,
                        version,
                        |t, p, o| offsets.get(&(t.to_string(), p)).copied().unwrap_or(o),
                        true,
                    )
                    .map_err(|e| format!("bad OffsetCommit request: {e}"))?;
                    tracing::info!(client = %key.0, group = %view.group_id, "commit from before the switch translated");
                    let observe = asked(&|o| {
                        offsets
                            .get(&(o.topic.to_string(), o.partition))
                            .copied()
                            .unwrap_or(o.offset)
                    });
                    Ok(Intercept::Forward(
                        reframe(&frame, body_offset, &new_body),
                        observe,
                    ))
                }
                None => {
                    tracing::warn!(client = %key.0, group = %view.group_id, "commit from before the switch cannot be translated; fenced");
                    let answer = wire::error_response(
                        api,
                        version,
                        correlation_id,
                        UNKNOWN_MEMBER_ID,
                        body,
                    )?;
                    Ok(Intercept::Answer(Pending::Delayed(answer, Duration::ZERO)))
                }
            }
        }
        ApiKey::InitProducerId => {
            let body = &frame.payload()[body_offset..];
            if !transactional(body, version) {
                return answer_producer_id(ctx, version, correlation_id, frame.payload()).await;
            }
            // A transactional producer's epoch bump of an id from before the
            // switch (after it aborted, see `txn`) asks the new cluster for a
            // fresh id for its transactional id.
            let key = ctx.key(frame.payload());
            if ctx.epoch > 0 {
                let old = init_producer_id_of(body, version)
                    .is_some_and(|pid| pid >= 0 && failover.producer_is_old(&key, pid, ctx.epoch));
                if old {
                    tracing::info!(client = %key.0, "transactional producer from before the switch gets a fresh producer id");
                    fresh_producer_id(&mut frame.0[4 + body_offset..], version);
                }
            }
            Ok(Intercept::Forward(frame, Observe::ProducerId(key)))
        }
        ApiKey::AddPartitionsToTxn
        | ApiKey::AddOffsetsToTxn
        | ApiKey::TxnOffsetCommit
        | ApiKey::EndTxn
            if ctx.epoch > 0 =>
        {
            let key = ctx.key(frame.payload());
            let body = &frame.payload()[body_offset..];
            let Ok(req) = crate::protocol::txn::txn_request(api, version, body) else {
                return Ok(Intercept::Forward(frame, Observe::Nothing));
            };
            if req.producer_id < 0 || !failover.producer_is_old(&key, req.producer_id, ctx.epoch) {
                return Ok(Intercept::Forward(frame, Observe::Nothing));
            }
            let old = (req.producer_id, req.producer_epoch, ctx.epoch);
            let aborting = api == ApiKey::EndTxn && !req.committed;
            // The producer's id stands for a fresh one of this cluster once
            // its first request after the switch was refused. While its
            // transaction from before the switch is open in the client,
            // requests are refused (an abort answered); once the client
            // aborted it, or began another, they go on under the fresh id.
            if let Some((pid, pepoch)) = failover.remapped(&key, old.0, old.1, old.2) {
                let open = failover.old_txn_open(&key, old);
                let begins = matches!(api, ApiKey::AddPartitionsToTxn | ApiKey::AddOffsetsToTxn);
                if !open || begins {
                    failover.close_old_txn(&key, old);
                    let body = &mut frame.0[4 + body_offset..];
                    crate::protocol::txn::set_producer(body, req.producer_id_at, pid, pepoch);
                    return Ok(Intercept::Forward(frame, Observe::Nothing));
                }
                if aborting {
                    failover.close_old_txn(&key, old);
                }
                let fresh = Some((pid, pepoch)).filter(|_| aborting && version >= 5);
                let answer = txn::answer(api, version, correlation_id, body, fresh)?;
                return Ok(Intercept::Answer(Pending::Delayed(answer, Duration::ZERO)));
            }
            let t = txn::TxnOf {
                transactional_id: req.transactional_id.clone(),
                producer_id: req.producer_id,
                producer_epoch: req.producer_epoch,
            };
            let fresh = fresh_transactional_id(ctx, &t.transactional_id).await;
            if let Some(f) = fresh {
                failover.producer_issued(&key, f.0, ctx.epoch);
                failover.remap_transactional(&key, old, f);
                if aborting {
                    failover.close_old_txn(&key, old);
                }
            }
            // v5 hands the fresh id to the client (transactions v2).
            let fresh = fresh.filter(|_| aborting && version >= 5);
            txn::abort_on_old_cluster(&ctx.shared, t);
            tracing::info!(client = %key.0, api = ?api, "transaction from before the switch: answered with an abortable error");
            let answer = txn::answer(api, version, correlation_id, body, fresh)?;
            Ok(Intercept::Answer(Pending::Delayed(answer, Duration::ZERO)))
        }
        ApiKey::Produce => {
            match remap_producers(ctx, version, correlation_id, body_offset, &mut frame).await? {
                Produced::Forward(observe) => Ok(Intercept::Forward(frame, observe)),
                Produced::Refused(answer) => {
                    Ok(Intercept::Answer(Pending::Delayed(answer, Duration::ZERO)))
                }
            }
        }
        _ => Ok(Intercept::Forward(frame, Observe::Nothing)),
    }
}

/// The translation of every offset of an old-space commit, or `None` if
/// one of them cannot be translated.
fn translate_commit(
    ctx: &Ctx,
    view: &wire::CommitView,
) -> Option<std::collections::HashMap<(String, i32), i64>> {
    let engine = ctx.shared.engine.as_ref()?;
    let from = ctx.shared.failover.previous_active()?;
    let mut out = std::collections::HashMap::new();
    for o in &view.offsets {
        let (topic, t) = engine.translate(
            from.as_str(),
            ctx.cluster.as_str(),
            &o.topic,
            o.partition,
            o.offset,
        )?;
        if *topic != *o.topic {
            return None;
        }
        out.insert((o.topic.to_string(), o.partition), t);
    }
    Some(out)
}

/// Kafka's FENCED_MEMBER_EPOCH: a KIP-848 member must rejoin with epoch 0.
const FENCED_MEMBER_EPOCH: i16 = 110;

/// A KIP-848 heartbeat: a member from before the switch is fenced (it
/// drops its assignment and rejoins on the active cluster with epoch 0, as
/// after any fencing, and reads its translated committed offsets); the
/// topic ids of the partitions it owns are mapped from kflip's virtual ids
/// onto the active cluster's.
async fn consumer_heartbeat(
    ctx: &Ctx,
    version: i16,
    correlation_id: i32,
    body_offset: usize,
    mut frame: Frame,
) -> Result<Intercept, String> {
    use crate::protocol::consumer_group as cg;
    let key = ctx.key(frame.payload());
    let hb = cg::heartbeat(&frame.payload()[body_offset..], version).map_err(|e| e.to_string())?;
    let failover = &ctx.shared.failover;
    if failover.consumer_heartbeat(
        &key,
        &hb.group_id,
        &hb.member_id,
        hb.member_epoch,
        ctx.epoch,
    ) {
        tracing::info!(client = %key.0, group = %hb.group_id, "consumer-protocol member from before the switch fenced; it rejoins");
        super::super::failover::leave_old_group(
            &ctx.shared,
            &hb.group_id,
            &hb.member_id,
            crate::kafka::groups::Protocol::Consumer,
        );
        let resp = kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default()
            .with_error_code(FENCED_MEMBER_EPOCH)
            .with_error_message(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                "the active cluster changed: rejoin",
            )))
            .with_member_id(Some(kafka_protocol::protocol::StrBytes::from_string(
                hb.member_id.clone(),
            )))
            .with_member_epoch(-1);
        let answer =
            wire::response_frame(&resp, "ConsumerGroupHeartbeat", version, correlation_id)?;
        return Ok(Intercept::Answer(Pending::Delayed(answer, Duration::ZERO)));
    }
    if !hb.topic_ids.is_empty() {
        let ids = &ctx.shared.topic_ids;
        let body = &frame.payload()[body_offset..];
        let unknown = hb.topic_ids.iter().any(|at| {
            <[u8; 16]>::try_from(&body[at.clone()]).is_ok_and(|b| {
                ids.real_of(&ctx.cluster, uuid::Uuid::from_bytes(b))
                    .is_none()
            })
        });
        if unknown {
            super::learn_topic_ids(&ctx.shared, &ctx.cluster).await;
        }
        let payload = frame.payload_mut();
        cg::map_topic_ids(&mut payload[body_offset..], &hb, |virt| {
            ids.real_of(&ctx.cluster, virt).unwrap_or(virt)
        });
    }
    Ok(Intercept::Forward(frame, Observe::Nothing))
}

/// A producer id and epoch of the active cluster for `transactional_id`,
/// asked of its transaction coordinator there (retried for a few seconds:
/// a coordinator that is loading or still ending a transaction answers
/// with a retriable error).
async fn fresh_transactional_id(ctx: &Ctx, transactional_id: &str) -> Option<(i64, i16)> {
    let boot = super::super::failover::bootstrap(&ctx.shared, &ctx.cluster);
    let timeout = ctx.shared.proxy_config().connect_timeout;
    let mut admin = crate::kafka::groups::GroupAdmin::new(boot, timeout);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match admin.init_transactional(transactional_id, 60_000).await {
            Ok(fresh) => return Some(fresh),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(cluster = %ctx.cluster, transactional_id, error = %e, "no producer id for the transactional id yet; retrying");
                admin.reset();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                tracing::warn!(cluster = %ctx.cluster, transactional_id, error = %e, "no producer id for the transactional id on the new cluster");
                return None;
            }
        }
    }
}

/// What becomes of a Produce request.
enum Produced {
    /// Forwarded (perhaps rewritten).
    Forward(Observe),
    /// Answered by kflip: a transaction from before the switch.
    Refused(bytes::Bytes),
}

/// Rewrites batches of producer ids from before the switch onto ids of
/// this cluster, with sequences rebased per partition, and refuses the
/// batches of transactions from before it (see `txn`). With a replication
/// engine, observes the records per partition, so that the log ends the
/// cluster acknowledges are known for a disaster's RPO report.
async fn remap_producers(
    ctx: &Ctx,
    version: i16,
    correlation_id: i32,
    body_offset: usize,
    frame: &mut Frame,
) -> Result<Produced, String> {
    let counting = ctx.shared.engine.is_some();
    if ctx.epoch == 0 && !counting {
        return Ok(Produced::Forward(Observe::Nothing));
    }
    let view = {
        let body = &frame.payload()[body_offset..];
        match wire::produce_batches(body, version) {
            Ok(view) => view,
            // Message sets before v3 carry no producer ids.
            Err(wire::ParseError::Unsupported { .. }) => {
                return Ok(Produced::Forward(Observe::Nothing))
            }
            Err(e) => return Err(format!("bad Produce request: {e}")),
        }
    };
    let observe = if counting {
        let mut counts: Vec<((String, i32), i64)> = Vec::new();
        for b in &view.batches {
            match counts
                .iter_mut()
                .find(|(k, _)| *k.0 == *b.topic && k.1 == b.partition)
            {
                Some((_, n)) => *n += i64::from(b.record_count),
                None => counts.push((
                    (b.topic.to_string(), b.partition),
                    i64::from(b.record_count),
                )),
            }
        }
        Observe::Produced(counts)
    } else {
        Observe::Nothing
    };
    if ctx.epoch == 0 {
        return Ok(Produced::Forward(observe));
    }
    let key = ctx.key(frame.payload());
    let failover = &ctx.shared.failover;
    if let Some(transactional_id) = &view.transactional_id {
        // Batches of a transaction after the one open at the switch go on
        // under the fresh id (see `txn`), with sequences rebased.
        let mut remapped = false;
        for batch in &view.batches {
            let old = (batch.producer_id, batch.producer_epoch, ctx.epoch);
            let Some((pid, pepoch)) = failover.remapped(&key, old.0, old.1, old.2) else {
                continue;
            };
            if failover.old_txn_open(&key, old) {
                continue;
            }
            rewrite_onto(ctx, &key, frame, body_offset, batch, (pid, pepoch));
            remapped = true;
        }
        if remapped {
            return Ok(Produced::Forward(observe));
        }
        let old = view.batches.iter().any(|b| {
            b.producer_id >= 0 && failover.producer_is_old(&key, b.producer_id, ctx.epoch)
        });
        let acks = crate::protocol::header::produce_acks(&frame.payload()[body_offset..], version)
            .unwrap_or(0);
        if old && acks != 0 {
            if let Some(b) = view.batches.first() {
                let old = (b.producer_id, b.producer_epoch, ctx.epoch);
                if failover.remapped(&key, old.0, old.1, old.2).is_none() {
                    if let Some(f) = fresh_transactional_id(ctx, transactional_id).await {
                        failover.producer_issued(&key, f.0, ctx.epoch);
                        failover.remap_transactional(&key, old, f);
                    }
                }
            }
            if let (Some(id), Some(b)) = (&view.transactional_id, view.batches.first()) {
                txn::abort_on_old_cluster(
                    &ctx.shared,
                    txn::TxnOf {
                        transactional_id: id.clone(),
                        producer_id: b.producer_id,
                        producer_epoch: b.producer_epoch,
                    },
                );
            }
            tracing::info!(client = %key.0, "transactional produce from before the switch: answered with an abortable error");
            return Ok(Produced::Refused(txn::produce_answer(
                version,
                correlation_id,
                &view,
            )?));
        }
        return Ok(Produced::Forward(observe));
    }
    for batch in &view.batches {
        if batch.producer_id < 0 || !failover.producer_is_old(&key, batch.producer_id, ctx.epoch) {
            continue;
        }
        let (pid, pepoch) = failover
            .remap(
                &ctx.shared,
                &ctx.cluster,
                &key,
                batch.producer_id,
                batch.producer_epoch,
                ctx.epoch,
            )
            .await?;
        rewrite_onto(ctx, &key, frame, body_offset, batch, (pid, pepoch));
    }
    Ok(Produced::Forward(observe))
}

/// Rewrites one batch of a remapped producer onto `fresh` (the id and epoch
/// of the active cluster), its sequence rebased.
fn rewrite_onto(
    ctx: &Ctx,
    key: &super::super::failover::ClientKey,
    frame: &mut Frame,
    body_offset: usize,
    batch: &wire::BatchRef,
    fresh: (i64, i16),
) {
    let seq = ctx.shared.failover.rebase(
        key,
        (batch.producer_id, batch.producer_epoch, ctx.epoch),
        &batch.topic,
        batch.partition,
        batch.base_sequence,
    );
    let body = &mut frame.0[4 + body_offset..];
    wire::rewrite_batch(body, batch, fresh.0, fresh.1, seq);
}

/// Whether an InitProducerId request names a transactional id.
pub(crate) fn transactional(body: &[u8], version: i16) -> bool {
    let mut r = crate::protocol::varint::Reader::new(body, 0);
    if version >= 2 {
        !matches!(r.uvarint(), Ok(0))
    } else {
        !matches!(r.i16(), Ok(-1))
    }
}

/// Answers an idempotent producer's InitProducerId with a fresh id that
/// kflip asks the cluster for (at v3, with no id to bump). A fresh id
/// resets the client's sequences just as an epoch bump (KIP-360) would;
/// asking for it in one form spares brokers the older forms (tansu 0.6
/// aborts its storage task on InitProducerId below v3 or on a bump without
/// a transactional id).
async fn answer_producer_id(
    ctx: &Ctx,
    version: i16,
    correlation_id: i32,
    payload: &[u8],
) -> Result<Intercept, String> {
    use kafka_protocol::messages::InitProducerIdResponse;
    let key = ctx.key(payload);
    let resp = match super::super::failover::init_producer_id(&ctx.shared, &ctx.cluster).await {
        Ok((pid, epoch)) => {
            ctx.shared.failover.producer_issued(&key, pid, ctx.epoch);
            InitProducerIdResponse::default()
                .with_producer_id(pid.into())
                .with_producer_epoch(epoch)
        }
        Err(e) => {
            tracing::warn!(cluster = %ctx.cluster, error = %e, "no producer id for a client");
            // Retriable: the client asks again.
            InitProducerIdResponse::default()
                .with_error_code(e.client_code())
                .with_producer_id((-1).into())
                .with_producer_epoch(-1)
        }
    };
    let frame = wire::response_frame(&resp, "InitProducerId", version, correlation_id)?;
    Ok(Intercept::Answer(Pending::Delayed(frame, Duration::ZERO)))
}

/// Where the producer id of an InitProducerId v3+ request starts: after
/// the transactional id and the transaction timeout.
pub(crate) fn init_producer_id_at(body: &[u8], version: i16) -> Option<usize> {
    if version < 3 {
        return None;
    }
    let mut r = crate::protocol::varint::Reader::new(body, 0);
    // v3+ is flexible: a compact nullable string (length + 1, 0 for null).
    let len = r.uvarint().ok()? as usize;
    r.take(len.saturating_sub(1)).ok()?;
    r.i32().ok()?;
    Some(r.pos())
}

/// The producer id an InitProducerId v3+ request bumps (-1 for none).
pub(crate) fn init_producer_id_of(body: &[u8], version: i16) -> Option<i64> {
    let at = init_producer_id_at(body, version)?;
    let b = body.get(at..at + 8)?;
    Some(i64::from_be_bytes(b.try_into().ok()?))
}

/// Turns an epoch bump (InitProducerId v3+ with the current producer id
/// and epoch, KIP-360) of a producer id from before the switch into a
/// request for a fresh id: the new cluster never issued the old one and
/// would refuse to bump it. To the client both reset its sequences.
pub(crate) fn fresh_producer_id(body: &mut [u8], version: i16) {
    let Some(at) = init_producer_id_at(body, version) else {
        return;
    };
    if let Some(fields) = body.get_mut(at..at + 10) {
        fields[..8].copy_from_slice(&(-1i64).to_be_bytes());
        fields[8..].copy_from_slice(&(-1i16).to_be_bytes());
    }
}

/// The group id of a LeaveGroup request.
pub(crate) fn leave_group_id(body: &[u8], version: i16) -> Option<String> {
    let compact = version >= 4;
    let mut r = crate::protocol::varint::Reader::new(body, 0);
    let len = if compact {
        (r.uvarint().ok()? as usize).checked_sub(1)?
    } else {
        usize::try_from(r.i16().ok()?).ok()?
    };
    Some(String::from_utf8_lossy(r.take(len).ok()?).into_owned())
}

/// Learns from a response what failover needs later.
pub(super) fn learn(ctx: &Ctx, observe: Observe, version: i16, payload: &[u8]) {
    match observe {
        Observe::Nothing => {}
        Observe::Commit { group, offsets } => {
            match wire::offset_commit_response_errors(payload, version) {
                Ok(parts) => {
                    let accepted: std::collections::HashSet<(String, i32)> = parts
                        .into_iter()
                        .filter(|p| p.2 == 0)
                        .map(|(t, p, _)| (t, p))
                        .collect();
                    let done = offsets.into_iter().filter(|(k, _)| accepted.contains(k));
                    ctx.shared
                        .failover
                        .observe_commit(&ctx.cluster, &group, done);
                }
                Err(e) => tracing::debug!(error = %e, "OffsetCommit response not understood"),
            }
        }
        Observe::Produced(counts) => match wire::produce_response_offsets(payload, version) {
            Ok(accepted) => {
                let ends = accepted
                    .into_iter()
                    .filter_map(|(t, p, base)| {
                        let n = counts.iter().find(|(k, _)| k.0 == t && k.1 == p)?.1;
                        Some((t, p, base + n))
                    })
                    .collect();
                ctx.shared.failover.acked(&ctx.cluster, ends);
            }
            Err(e) => tracing::debug!(error = %e, "Produce response not understood"),
        },
        Observe::ProducerId(key) => match wire::init_producer_id_response(payload, version) {
            Ok((0, pid, _)) => {
                ctx.shared.failover.producer_issued(&key, pid, ctx.epoch);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "InitProducerId response not understood"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{InitProducerIdRequest, ProducerId, TransactionalId};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn encode(req: &InitProducerIdRequest, version: i16) -> BytesMut {
        let mut b = BytesMut::new();
        req.encode(&mut b, version).unwrap();
        b
    }

    #[test]
    fn epoch_bumps_become_fresh_id_requests() {
        for version in 3..=5 {
            let req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(42))
                .with_producer_epoch(3);
            let mut body = encode(&req, version);
            fresh_producer_id(&mut body, version);
            let got = InitProducerIdRequest::decode(&mut body.freeze(), version).unwrap();
            assert_eq!(
                (got.producer_id.0, got.producer_epoch),
                (-1, -1),
                "v{version}"
            );
            assert_eq!(got.transaction_timeout_ms, 60_000);

            let txn =
                req.with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx-7"))));
            let mut body = encode(&txn, version);
            assert_eq!(init_producer_id_of(&body, version), Some(42));
            fresh_producer_id(&mut body, version);
            let got = InitProducerIdRequest::decode(&mut body.freeze(), version).unwrap();
            assert_eq!(
                (got.producer_id.0, got.producer_epoch),
                (-1, -1),
                "transactional v{version}"
            );
            assert_eq!(got.transactional_id.unwrap().0.as_str(), "tx-7");
        }
        let mut short = vec![0u8, 0, 0];
        fresh_producer_id(&mut short, 4);
    }
}
