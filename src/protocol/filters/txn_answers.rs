//! kflip's own answers to the transactional requests of a producer from
//! before a switch (see [`super::txn`]).

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, ApiKey, EndTxnResponse,
    TxnOffsetCommitResponse,
};

use crate::codec::txn::txn_request;
use crate::codec::{self as wire, AnswerError};

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
pub fn abortable(api: ApiKey, version: i16) -> i16 {
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

/// kflip's own answer to a transactional request of a producer id from
/// before the switch (see the module docs).
///
/// `fresh` is a producer id and epoch of the new cluster for the
/// transactional id: an aborting EndTxn v5+ (KIP-890 transactions v2, where
/// the client takes its next epoch from the EndTxn response and never
/// sends InitProducerId) hands them to the client, so its next transaction
/// runs on the new cluster under an id that cluster issued.
pub fn answer(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &[u8],
    fresh: Option<(i64, i16)>,
) -> Result<Bytes, AnswerError> {
    let r = txn_request(api, version, body)?;
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
        _ => Err(AnswerError::Unanswerable(format!(
            "{api:?} for a transaction"
        ))),
    }
}

/// kflip's answer to a transactional Produce of a producer id from before
/// the switch: an abortable error for every partition in it
/// (TRANSACTION_ABORTABLE from v11, UNKNOWN_PRODUCER_ID before).
pub fn produce_answer(
    version: i16,
    correlation_id: i32,
    view: &wire::ProduceView,
) -> Result<Bytes, AnswerError> {
    let code = abortable(ApiKey::Produce, version);
    wire::produce_error_response(version, correlation_id, view, code, None)
}
