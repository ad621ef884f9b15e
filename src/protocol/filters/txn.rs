//! Transactional producers across a switch.
//!
//! A transaction open on the old cluster cannot go on on the new one: the
//! new cluster's coordinator never saw its producer id. Forwarded, its
//! requests would meet whatever that cluster answers for an unknown id,
//! and some answers (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH) are fatal to
//! the client. kflip answers them itself, with errors clients treat as
//! abortable and that make them bump their epoch (KIP-360):
//! - AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and a committing
//!   EndTxn, and transactional Produce batches: an abortable error (see
//!   `txn_answers::abortable`: TRANSACTION_ABORTABLE for the Java client, the errors
//!   librdkafka aborts and bumps its epoch on for it);
//! - an aborting EndTxn: success, as there is nothing to abort on the new
//!   cluster (the old cluster aborts the transaction when it times out).
//!
//! The client aborts. kflip answers that abort with success and asks the
//! new cluster's coordinator for a fresh id for the transactional id, which
//! then stands for the old one: a client that goes on under its old id (the
//! Java client after TRANSACTION_ABORTABLE) has its later transactional
//! requests and batches rewritten onto the fresh id, with sequences
//! rebased; a client that bumps its epoch (librdkafka, KIP-360) gets a
//! fresh id from its InitProducerId (see `fresh_producer_id`); on
//! transactions v2 the fresh id is also in the EndTxn v5 response. The
//! records of the aborted transaction are the application's to send again,
//! as after any abort.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;

use super::{txn_answers, ConnCtx, Filter, Request, Verdict};
use crate::error::Fault;
use crate::failover::Switchboard;

/// The filter for AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and
/// EndTxn.
pub struct Txn;

impl Filter for Txn {
    async fn request(&self, cx: &ConnCtx, mut request: Request) -> Result<Verdict, Fault> {
        let (api, version) = (request.api, request.version);
        let failover = &cx.board.tracker;
        match api {
            ApiKey::AddPartitionsToTxn
            | ApiKey::AddOffsetsToTxn
            | ApiKey::TxnOffsetCommit
            | ApiKey::EndTxn
                if cx.epoch > 0 =>
            {
                let key = cx.key(request.frame.payload());
                let body = request.body();
                let Ok(tr) = crate::codec::txn::txn_request(api, version, body) else {
                    return Ok(request.forward());
                };
                if tr.producer_id < 0 || !failover.producer_is_old(&key, tr.producer_id, cx.epoch) {
                    return Ok(request.forward());
                }
                let old = (tr.producer_id, tr.producer_epoch, cx.epoch);
                let aborting = api == ApiKey::EndTxn && !tr.committed;
                // The producer's id stands for a fresh one of this cluster once
                // its first request after the switch was refused. While its
                // transaction from before the switch is open in the client,
                // requests are refused (an abort answered); once the client
                // aborted it, or began another, they go on under the fresh id.
                if let Some((pid, pepoch)) = failover.remapped(&key, old.0, old.1, old.2) {
                    let open = failover.old_txn_open(&key, old);
                    let begins =
                        matches!(api, ApiKey::AddPartitionsToTxn | ApiKey::AddOffsetsToTxn);
                    if !open || begins {
                        failover.close_old_txn(&key, old);
                        let body = request.body_mut();
                        crate::codec::txn::set_producer(body, tr.producer_id_at, pid, pepoch);
                        return Ok(request.forward());
                    }
                    if aborting {
                        failover.close_old_txn(&key, old);
                    }
                    let fresh = Some((pid, pepoch)).filter(|_| aborting && version >= 5);
                    let answer = txn_answers::answer(
                        api,
                        version,
                        request.correlation_id,
                        request.body(),
                        fresh,
                    )?;
                    return Ok(Verdict::answer(answer));
                }
                let t = TxnOf {
                    transactional_id: tr.transactional_id.clone(),
                    producer_id: tr.producer_id,
                    producer_epoch: tr.producer_epoch,
                };
                let fresh = fresh_transactional_id(cx, &t.transactional_id).await;
                if let Some(f) = fresh {
                    failover.producer_issued(&key, f.0, cx.epoch);
                    failover.remap_transactional(&key, old, f);
                    if aborting {
                        failover.close_old_txn(&key, old);
                    }
                }
                // v5 hands the fresh id to the client (transactions v2).
                let fresh = fresh.filter(|_| aborting && version >= 5);
                abort_on_old_cluster(&cx.board, t);
                tracing::info!(client = %key.0, api = ?api, "transaction from before the switch: answered with an abortable error");
                let answer = txn_answers::answer(
                    api,
                    version,
                    request.correlation_id,
                    request.body(),
                    fresh,
                )?;
                Ok(Verdict::answer(answer))
            }
            _ => Ok(request.forward()),
        }
    }
}

/// A transaction as a request names it.
pub struct TxnOf {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// Aborts the transaction on the cluster that was active before the switch,
/// once per producer id and epoch, in the background: left open there, it
/// would hold back that cluster's read_committed readers (and a failback's)
/// until it timed out. If that cluster is down, it aborts on its own when
/// the transaction times out.
pub fn abort_on_old_cluster(board: &Switchboard, t: TxnOf) {
    let Some(from) = board.tracker.previous_active() else {
        return;
    };
    if !board.tracker.first_abort(t.producer_id, t.producer_epoch) {
        return;
    }
    let boot = board.cluster(&from);
    let timeout = board.proxy_config().connect_timeout;
    tokio::spawn(async move {
        let mut admin = crate::kafka::groups::GroupAdmin::new(boot, timeout);
        match admin
            .abort_transaction(&t.transactional_id, t.producer_id, t.producer_epoch)
            .await
        {
            Ok(()) => {
                tracing::info!(cluster = %from, transactional_id = %t.transactional_id, "open transaction from before the switch aborted on the old cluster")
            }
            Err(e) => {
                tracing::info!(cluster = %from, transactional_id = %t.transactional_id, error = %e, "open transaction from before the switch not aborted on the old cluster; it aborts when it times out")
            }
        }
    });
}

/// A producer id and epoch of the active cluster for `transactional_id`,
/// asked of its transaction coordinator there (retried for a few seconds:
/// a coordinator that is loading or still ending a transaction answers
/// with a retriable error).
pub async fn fresh_transactional_id(cx: &ConnCtx, transactional_id: &str) -> Option<(i64, i16)> {
    let boot = cx.board.cluster(&cx.cluster);
    let timeout = cx.board.proxy_config().connect_timeout;
    let mut admin = crate::kafka::groups::GroupAdmin::new(boot, timeout);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match admin.init_transactional(transactional_id, 60_000).await {
            Ok(fresh) => return Some(fresh),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(cluster = %cx.cluster, transactional_id, error = %e, "no producer id for the transactional id yet; retrying");
                admin.reset();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                tracing::warn!(cluster = %cx.cluster, transactional_id, error = %e, "no producer id for the transactional id on the new cluster");
                return None;
            }
        }
    }
}
