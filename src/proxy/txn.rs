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
//!   `abortable`: TRANSACTION_ABORTABLE for the Java client, the errors
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

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, ApiKey, EndTxnResponse, ProduceResponse,
    TxnOffsetCommitResponse,
};

use crate::codec as wire;
use crate::codec::txn::txn_request;

/// Kafka's INVALID_PRODUCER_ID_MAPPING.
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
/// Kafka's UNKNOWN_PRODUCER_ID.
const UNKNOWN_PRODUCER_ID: i16 = 59;
/// Kafka's TRANSACTION_ABORTABLE (KIP-890).
const TRANSACTION_ABORTABLE: i16 = 120;

/// The error that makes a client abort its transaction from before the
/// switch, for `api` at `version`. TRANSACTION_ABORTABLE (KIP-890) from the
/// versions the Java client sends (3.8+): it aborts on it, and its next
/// transaction, under the same producer id, is remapped by kflip onto an id
/// of the new cluster (UNKNOWN_PRODUCER_ID is retried forever on a Produce
/// under transactions v2, INVALID_PRODUCER_ID_MAPPING is fatal since
/// KAFKA-18019, and UNKNOWN_PRODUCER_ID elsewhere reaches the application
/// as an OutOfOrderSequenceException, which applications treat as fatal).
/// Older versions (librdkafka) get the errors it aborts and bumps its
/// epoch on.
fn abortable(api: ApiKey, version: i16) -> i16 {
    match api {
        ApiKey::Produce if version >= 11 => TRANSACTION_ABORTABLE,
        ApiKey::Produce => UNKNOWN_PRODUCER_ID,
        ApiKey::AddPartitionsToTxn if version >= 3 => TRANSACTION_ABORTABLE,
        ApiKey::AddOffsetsToTxn | ApiKey::TxnOffsetCommit | ApiKey::EndTxn if version >= 4 => {
            TRANSACTION_ABORTABLE
        }
        _ => INVALID_PRODUCER_ID_MAPPING,
    }
}

/// A transaction as a request names it.
pub(crate) struct TxnOf {
    pub(crate) transactional_id: String,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
}

/// Aborts the transaction on the cluster that was active before the switch,
/// once per producer id and epoch, in the background: left open there, it
/// would hold back that cluster's read_committed readers (and a failback's)
/// until it timed out. If that cluster is down, it aborts on its own when
/// the transaction times out.
pub(crate) fn abort_on_old_cluster(shared: &std::sync::Arc<crate::proxy::Shared>, t: TxnOf) {
    let Some(from) = shared.failover.previous_active() else {
        return;
    };
    if !shared.failover.first_abort(t.producer_id, t.producer_epoch) {
        return;
    }
    let boot = crate::proxy::failover::bootstrap(shared, &from);
    let timeout = shared.proxy_config().connect_timeout;
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

/// kflip's own answer to a transactional request of a producer id from
/// before the switch (see the module docs).
///
/// `fresh` is a producer id and epoch of the new cluster for the
/// transactional id: an aborting EndTxn v5+ (KIP-890 transactions v2, where
/// the client takes its next epoch from the EndTxn response and never
/// sends InitProducerId) hands them to the client, so its next transaction
/// runs on the new cluster under an id that cluster issued.
pub(crate) fn answer(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &[u8],
    fresh: Option<(i64, i16)>,
) -> Result<Bytes, String> {
    let r = txn_request(api, version, body).map_err(|e| format!("bad {api:?} request: {e}"))?;
    match api {
        ApiKey::AddPartitionsToTxn => {
            let topics = r
                .topics
                .iter()
                .map(|(name, partitions)| {
                    AddPartitionsToTxnTopicResult::default()
                        .with_name(wire::topic_name(name))
                        .with_results_by_partition(
                            partitions
                                .iter()
                                .map(|&p| {
                                    AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_partition_error_code(abortable(api, version))
                                })
                                .collect(),
                        )
                })
                .collect();
            let resp =
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics);
            wire::response_frame(&resp, "AddPartitionsToTxn", version, correlation_id)
        }
        ApiKey::AddOffsetsToTxn => {
            let resp = AddOffsetsToTxnResponse::default().with_error_code(abortable(api, version));
            wire::response_frame(&resp, "AddOffsetsToTxn", version, correlation_id)
        }
        ApiKey::TxnOffsetCommit => {
            let topics = r
                .topics
                .iter()
                .map(|(name, partitions)| {
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(wire::topic_name(name))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|&p| {
                                    TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(abortable(api, version))
                                })
                                .collect(),
                        )
                })
                .collect();
            let resp = TxnOffsetCommitResponse::default().with_topics(topics);
            wire::response_frame(&resp, "TxnOffsetCommit", version, correlation_id)
        }
        ApiKey::EndTxn => {
            let code = if r.committed {
                abortable(api, version)
            } else {
                0
            };
            let mut resp = EndTxnResponse::default().with_error_code(code);
            if let (false, Some((pid, epoch))) = (r.committed, fresh) {
                resp = resp.with_producer_id(pid.into()).with_producer_epoch(epoch);
            }
            wire::response_frame(&resp, "EndTxn", version, correlation_id)
        }
        _ => Err(format!("kflip does not answer {api:?} for a transaction")),
    }
}

/// kflip's answer to a transactional Produce of a producer id from before
/// the switch: an abortable error for every partition in it
/// (TRANSACTION_ABORTABLE from v11, UNKNOWN_PRODUCER_ID before).
pub(crate) fn produce_answer(
    version: i16,
    correlation_id: i32,
    view: &wire::ProduceView,
) -> Result<Bytes, String> {
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    for b in &view.batches {
        let part = PartitionProduceResponse::default()
            .with_index(b.partition)
            .with_error_code(abortable(ApiKey::Produce, version))
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1);
        match topics.iter_mut().find(|t| t.name.as_str() == &*b.topic) {
            Some(t) => {
                if !t.partition_responses.iter().any(|p| p.index == b.partition) {
                    t.partition_responses.push(part);
                }
            }
            None => topics.push(
                TopicProduceResponse::default()
                    .with_name(wire::topic_name(&b.topic))
                    .with_partition_responses(vec![part]),
            ),
        }
    }
    let resp = ProduceResponse::default().with_responses(topics);
    wire::response_frame(&resp, "Produce", version, correlation_id)
}
