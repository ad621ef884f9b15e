//! Transactional producers across a switch.
//!
//! A transaction open on the old cluster cannot go on on the new one: the
//! new cluster's coordinator never saw its producer id. Forwarded, its
//! requests would meet whatever that cluster answers for an unknown id,
//! and some answers (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH) are fatal to
//! the client. kflip answers them itself, with errors clients treat as
//! abortable and that make them bump their epoch (KIP-360):
//! - AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and a committing
//!   EndTxn: INVALID_PRODUCER_ID_MAPPING;
//! - transactional Produce batches: UNKNOWN_PRODUCER_ID per partition;
//! - an aborting EndTxn: success, as there is nothing to abort on the new
//!   cluster (the old cluster aborts the transaction when it times out).
//!
//! The client aborts, and its epoch bump (InitProducerId with its old
//! producer id) reaches the new cluster as a request for a fresh id for its
//! transactional id (see `fresh_producer_id`), after which it goes on. The
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

use crate::protocol::failover as wire;
use crate::protocol::txn::txn_request;

/// Kafka's INVALID_PRODUCER_ID_MAPPING.
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
/// Kafka's UNKNOWN_PRODUCER_ID.
const UNKNOWN_PRODUCER_ID: i16 = 59;

/// A transaction as a request names it.
pub(crate) struct TxnOf {
    pub(crate) transactional_id: String,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
}

/// The transaction of a request, and for an EndTxn whether it commits.
pub(crate) fn transaction_and_commit(
    api: ApiKey,
    version: i16,
    body: &[u8],
) -> Option<(TxnOf, bool)> {
    let r = txn_request(api, version, body).ok()?;
    Some((
        TxnOf {
            transactional_id: r.transactional_id,
            producer_id: r.producer_id,
            producer_epoch: r.producer_epoch,
        },
        r.committed,
    ))
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
                                        .with_partition_error_code(INVALID_PRODUCER_ID_MAPPING)
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
            let resp =
                AddOffsetsToTxnResponse::default().with_error_code(INVALID_PRODUCER_ID_MAPPING);
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
                                        .with_error_code(INVALID_PRODUCER_ID_MAPPING)
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
                INVALID_PRODUCER_ID_MAPPING
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
/// the switch: UNKNOWN_PRODUCER_ID for every partition in it.
pub(crate) fn produce_answer(
    version: i16,
    correlation_id: i32,
    view: &wire::ProduceView,
) -> Result<Bytes, String> {
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    for b in &view.batches {
        let part = PartitionProduceResponse::default()
            .with_index(b.partition)
            .with_error_code(UNKNOWN_PRODUCER_ID)
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
