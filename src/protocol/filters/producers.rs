//! Producers: an idempotent producer's InitProducerId is answered with a
//! fresh id kflip asks the cluster for; after a switch, Produce batches of
//! producer ids from the old cluster are rewritten onto ids of the new one
//! (sequences rebased per partition, the batch CRC recomputed), and
//! transactional batches follow `txn`. With a replication engine, the log
//! ends the cluster acknowledges are observed, for a disaster's RPO report.

use std::collections::HashMap;

use kafka_protocol::messages::ApiKey;

use super::{txn, txn_answers, ConnCtx, Filter, Observe, Request, Verdict};
use crate::codec::frame::Frame;
use crate::codec::{self as wire, ParseError, ProduceView};
use crate::error::Fault;
use crate::failover::ClientKey;

/// The filter for InitProducerId (Produce goes through [`produce`], with
/// the batches the provenance check walked) and the responses of both.
pub struct Producers;

/// A Produce request, with its batches walked once (`view`, shared with
/// the provenance check): producer ids remapped, counts observed.
pub async fn produce(
    cx: &ConnCtx,
    mut req: Request,
    view: Result<ProduceView, ParseError>,
) -> Result<Verdict, Fault> {
    let (version, correlation_id, body_offset) = (req.version, req.correlation_id, req.body_offset);
    match remap_producers(
        cx,
        version,
        correlation_id,
        body_offset,
        &mut req.frame,
        view,
    )
    .await?
    {
        Produced::Forward(observe) => Ok(Verdict::Forward(req.frame, observe)),
        Produced::Refused(answer) => Ok(Verdict::answer(answer)),
    }
}

impl Filter for Producers {
    async fn request(&self, cx: &ConnCtx, mut req: Request) -> Result<Verdict, Fault> {
        let version = req.version;
        let failover = &cx.board.tracker;
        match req.api {
            ApiKey::InitProducerId => {
                let body = req.body();
                if !wire::producer_id::transactional(body, version) {
                    return answer_producer_id(
                        cx,
                        version,
                        req.correlation_id,
                        req.frame.payload(),
                    )
                    .await;
                }
                // A transactional producer's epoch bump of an id from before the
                // switch (after it aborted, see `txn`) asks the new cluster for a
                // fresh id for its transactional id.
                let key = cx.key(req.frame.payload());
                if cx.epoch > 0 {
                    let old =
                        wire::producer_id::init_producer_id_of(body, version).is_some_and(|pid| {
                            pid >= 0 && failover.producer_is_old(&key, pid, cx.epoch)
                        });
                    if old {
                        tracing::info!(client = %key.0, "transactional producer from before the switch gets a fresh producer id");
                        wire::producer_id::fresh_producer_id(req.body_mut(), version);
                    }
                }
                Ok(Verdict::Forward(req.frame, Observe::ProducerId(key)))
            }
            _ => Ok(req.forward()),
        }
    }

    fn response(&self, cx: &ConnCtx, observe: Observe, version: i16, payload: &[u8]) {
        match observe {
            Observe::Produced(counts) => match wire::produce_response_offsets(payload, version) {
                Ok(accepted) => {
                    let ends = accepted
                        .into_iter()
                        .filter_map(|(t, p, base)| {
                            let n = *counts.get(&(t.clone(), p))?;
                            Some((t, p, base + n))
                        })
                        .collect();
                    cx.board.tracker.acked(&cx.cluster, ends);
                }
                Err(e) => tracing::debug!(error = %e, "Produce response not understood"),
            },
            Observe::ProducerId(key) => match wire::init_producer_id_response(payload, version) {
                Ok((0, pid, _)) => {
                    cx.board.tracker.producer_issued(&key, pid, cx.epoch);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "InitProducerId response not understood"),
            },
            _ => {}
        }
    }
}

/// Answers an idempotent producer's InitProducerId with a fresh id that
/// kflip asks the cluster for (at v3, with no id to bump). A fresh id
/// resets the client's sequences just as an epoch bump (KIP-360) would;
/// asking for it in one form spares brokers the older forms (tansu 0.6
/// aborts its storage task on InitProducerId below v3 or on a bump without
/// a transactional id).
async fn answer_producer_id(
    cx: &ConnCtx,
    version: i16,
    correlation_id: i32,
    payload: &[u8],
) -> Result<Verdict, Fault> {
    use kafka_protocol::messages::InitProducerIdResponse;
    let key = cx.key(payload);
    let resp = match crate::failover::producers::init_producer_id(&cx.board, &cx.cluster).await {
        Ok((pid, epoch)) => {
            cx.board.tracker.producer_issued(&key, pid, cx.epoch);
            InitProducerIdResponse::default()
                .with_producer_id(pid.into())
                .with_producer_epoch(epoch)
        }
        Err(e) => {
            tracing::warn!(cluster = %cx.cluster, error = %e, "no producer id for a client");
            // Retriable: the client asks again.
            InitProducerIdResponse::default()
                .with_error_code(e.client_code())
                .with_producer_id((-1).into())
                .with_producer_epoch(-1)
        }
    };
    let frame = wire::response_frame(&resp, "InitProducerId", version, correlation_id)?;
    Ok(Verdict::answer(frame))
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
    cx: &ConnCtx,
    version: i16,
    correlation_id: i32,
    body_offset: usize,
    frame: &mut Frame,
    view: Result<ProduceView, ParseError>,
) -> Result<Produced, Fault> {
    let counting = cx.board.engine.present();
    if cx.epoch == 0 && !counting {
        return Ok(Produced::Forward(Observe::Nothing));
    }
    let view = match view {
        Ok(view) => view,
        // Message sets before v3 carry no producer ids.
        Err(ParseError::Unsupported { .. }) => return Ok(Produced::Forward(Observe::Nothing)),
        Err(e) => return Err(Fault::client(format!("bad Produce request: {e}"))),
    };
    let observe = if counting {
        let mut counts: HashMap<(String, i32), i64> = HashMap::new();
        for b in &view.batches {
            *counts
                .entry((b.topic.to_string(), b.partition))
                .or_default() += i64::from(b.record_count);
        }
        Observe::Produced(counts)
    } else {
        Observe::Nothing
    };
    if cx.epoch == 0 {
        return Ok(Produced::Forward(observe));
    }
    let key = cx.key(frame.payload());
    let failover = &cx.board.tracker;
    if let Some(transactional_id) = &view.transactional_id {
        // Batches of a transaction after the one open at the switch go on
        // under the fresh id (see `txn`), with sequences rebased.
        let mut remapped = false;
        for batch in &view.batches {
            let old = (batch.producer_id, batch.producer_epoch, cx.epoch);
            let Some((pid, pepoch)) = failover.remapped(&key, old.0, old.1, old.2) else {
                continue;
            };
            if failover.old_txn_open(&key, old) {
                continue;
            }
            rewrite_onto(cx, &key, frame, body_offset, batch, (pid, pepoch));
            remapped = true;
        }
        if remapped {
            return Ok(Produced::Forward(observe));
        }
        let old = view
            .batches
            .iter()
            .any(|b| b.producer_id >= 0 && failover.producer_is_old(&key, b.producer_id, cx.epoch));
        let acks = crate::codec::header::produce_acks(&frame.payload()[body_offset..], version)
            .unwrap_or(0);
        if old && acks != 0 {
            if let Some(b) = view.batches.first() {
                let old = (b.producer_id, b.producer_epoch, cx.epoch);
                if failover.remapped(&key, old.0, old.1, old.2).is_none() {
                    if let Some(f) = txn::fresh_transactional_id(cx, transactional_id).await {
                        failover.producer_issued(&key, f.0, cx.epoch);
                        failover.remap_transactional(&key, old, f);
                    }
                }
            }
            if let (Some(id), Some(b)) = (&view.transactional_id, view.batches.first()) {
                txn::abort_on_old_cluster(
                    &cx.board,
                    txn::TxnOf {
                        transactional_id: id.clone(),
                        producer_id: b.producer_id,
                        producer_epoch: b.producer_epoch,
                    },
                );
            }
            tracing::info!(client = %key.0, "transactional produce from before the switch: answered with an abortable error");
            return Ok(Produced::Refused(txn_answers::produce_answer(
                version,
                correlation_id,
                &view,
            )?));
        }
        return Ok(Produced::Forward(observe));
    }
    for batch in &view.batches {
        if batch.producer_id < 0 || !failover.producer_is_old(&key, batch.producer_id, cx.epoch) {
            continue;
        }
        let (pid, pepoch) = failover
            .remap(
                &cx.board,
                &cx.cluster,
                &key,
                batch.producer_id,
                batch.producer_epoch,
                cx.epoch,
            )
            .await
            .map_err(|e| Fault::upstream(&cx.cluster, e))?;
        rewrite_onto(cx, &key, frame, body_offset, batch, (pid, pepoch));
    }
    Ok(Produced::Forward(observe))
}

/// Rewrites one batch of a remapped producer onto `fresh` (the id and epoch
/// of the active cluster), its sequence rebased.
fn rewrite_onto(
    cx: &ConnCtx,
    key: &ClientKey,
    frame: &mut Frame,
    body_offset: usize,
    batch: &wire::BatchRef,
    fresh: (i64, i16),
) {
    let seq = cx.board.tracker.rebase(
        key,
        (batch.producer_id, batch.producer_epoch, cx.epoch),
        &batch.topic,
        batch.partition,
        batch.base_sequence,
    );
    let body = &mut frame.0[4 + body_offset..];
    wire::rewrite_batch(body, batch, fresh.0, fresh.1, seq);
}
