//! The transactional requests kflip answers itself after a switch (a
//! transaction from before it), read with the walker of the trust
//! boundary: never with the generated decoder, which sizes its arrays from
//! the wire before reading them.

use kafka_protocol::messages::ApiKey;

use super::walk::{unsupported, ParseError, Walk};

/// What kflip needs of AddPartitionsToTxn (v0-3), AddOffsetsToTxn,
/// TxnOffsetCommit and EndTxn.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnRequest {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id.
    pub producer_id: i64,
    /// Where the producer id sits in the body; the epoch follows it.
    pub producer_id_at: usize,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// EndTxn: whether the transaction commits.
    pub committed: bool,
    /// AddPartitionsToTxn and TxnOffsetCommit: each topic with its
    /// partitions, in request order.
    pub topics: Vec<(String, Vec<i32>)>,
}

/// Reads one of the four transactional requests. AddPartitionsToTxn v4+
/// (batched, broker to broker) is not a client request: unsupported.
pub fn txn_request(api: ApiKey, version: i16, body: &[u8]) -> Result<TxnRequest, ParseError> {
    let flexible = version >= 3;
    let mut w = Walk::new(body, flexible);
    let mut r = TxnRequest::default();
    match api {
        ApiKey::AddPartitionsToTxn if (0..=3).contains(&version) => {
            head(&mut w, &mut r)?;
            for _ in 0..w.array("topics")? {
                let name = w.str("topic name")?;
                let mut partitions = Vec::new();
                for _ in 0..w.array("partitions")? {
                    partitions.push(w.i32("partition")?);
                }
                w.tags("topic tagged fields")?;
                r.topics.push((name, partitions));
            }
        }
        ApiKey::AddOffsetsToTxn if (0..=4).contains(&version) => {
            head(&mut w, &mut r)?;
            w.skip_str("group_id")?;
        }
        ApiKey::EndTxn if (0..=5).contains(&version) => {
            head(&mut w, &mut r)?;
            r.committed = w.take(1, "committed")?[0] != 0;
        }
        ApiKey::TxnOffsetCommit if (0..=5).contains(&version) => {
            r.transactional_id = w.str("transactional_id")?;
            w.skip_str("group_id")?;
            r.producer_id_at = w.pos();
            r.producer_id = w.i64("producer_id")?;
            r.producer_epoch = w.i16("producer_epoch")?;
            if version >= 3 {
                w.skip(4, "generation_id")?;
                w.skip_str("member_id")?;
                w.skip_str("group_instance_id")?;
            }
            for _ in 0..w.array("topics")? {
                let name = w.str("topic name")?;
                let mut partitions = Vec::new();
                for _ in 0..w.array("partitions")? {
                    partitions.push(w.i32("partition_index")?);
                    w.skip(8, "committed_offset")?;
                    if version >= 2 {
                        w.skip(4, "committed_leader_epoch")?;
                    }
                    w.skip_str("committed_metadata")?;
                    w.tags("partition tagged fields")?;
                }
                w.tags("topic tagged fields")?;
                r.topics.push((name, partitions));
            }
        }
        _ => return Err(unsupported(api, version)),
    }
    w.tags("request tagged fields")?;
    Ok(r)
}

/// Writes `producer_id` and `producer_epoch` over the request's own, in
/// place (`at` from [`TxnRequest::producer_id_at`]).
pub fn set_producer(body: &mut [u8], at: usize, producer_id: i64, producer_epoch: i16) {
    if let Some(b) = body.get_mut(at..at + 10) {
        b[..8].copy_from_slice(&producer_id.to_be_bytes());
        b[8..].copy_from_slice(&producer_epoch.to_be_bytes());
    }
}

/// transactional_id, producer_id, producer_epoch: how three of the four
/// requests begin.
fn head(w: &mut Walk<'_>, r: &mut TxnRequest) -> Result<(), ParseError> {
    r.transactional_id = w.str("transactional_id")?;
    r.producer_id_at = w.pos();
    r.producer_id = w.i64("producer_id")?;
    r.producer_epoch = w.i16("producer_epoch")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId, ProducerId,
        TopicName, TransactionalId, TxnOffsetCommitRequest,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn enc<M: Encodable>(m: &M, v: i16) -> Vec<u8> {
        let mut b = bytes::BytesMut::new();
        m.encode(&mut b, v).unwrap();
        b.to_vec()
    }

    fn s(x: &str) -> StrBytes {
        StrBytes::from_string(x.to_string())
    }

    #[test]
    fn every_version_reads_like_the_generated_codec_wrote_it() {
        let topics = vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])];
        for v in 0..=3 {
            let m = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s("t")))
                .with_v3_and_below_producer_id(ProducerId(7))
                .with_v3_and_below_producer_epoch(3)
                .with_v3_and_below_topics(
                    topics
                        .iter()
                        .map(|(n, p)| {
                            AddPartitionsToTxnTopic::default()
                                .with_name(TopicName(s(n)))
                                .with_partitions(p.clone())
                        })
                        .collect(),
                );
            let r = txn_request(ApiKey::AddPartitionsToTxn, v, &enc(&m, v)).unwrap();
            assert_eq!(
                (r.transactional_id.as_str(), r.producer_id, r.producer_epoch),
                ("t", 7, 3)
            );
            assert_eq!(r.topics, topics, "v{v}");
        }
        for v in 0..=4 {
            let m = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("t")))
                .with_producer_id(ProducerId(8))
                .with_producer_epoch(1)
                .with_group_id(GroupId(s("g")));
            let r = txn_request(ApiKey::AddOffsetsToTxn, v, &enc(&m, v)).unwrap();
            assert_eq!((r.producer_id, r.producer_epoch), (8, 1), "v{v}");
        }
        for v in 0..=5 {
            for committed in [false, true] {
                let m = EndTxnRequest::default()
                    .with_transactional_id(TransactionalId(s("t")))
                    .with_producer_id(ProducerId(9))
                    .with_producer_epoch(2)
                    .with_committed(committed);
                let r = txn_request(ApiKey::EndTxn, v, &enc(&m, v)).unwrap();
                assert_eq!((r.producer_id, r.committed), (9, committed), "v{v}");
            }
        }
        for v in 0..=5 {
            let m = TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s("t")))
                .with_group_id(GroupId(s("g")))
                .with_producer_id(ProducerId(10))
                .with_producer_epoch(4)
                .with_topics(
                    topics
                        .iter()
                        .map(|(n, p)| {
                            TxnOffsetCommitRequestTopic::default()
                                .with_name(TopicName(s(n)))
                                .with_partitions(
                                    p.iter()
                                        .map(|&i| {
                                            TxnOffsetCommitRequestPartition::default()
                                                .with_partition_index(i)
                                                .with_committed_offset(5)
                                                .with_committed_metadata(Some(s("m")))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let r = txn_request(ApiKey::TxnOffsetCommit, v, &enc(&m, v)).unwrap();
            assert_eq!((r.producer_id, r.producer_epoch), (10, 4), "v{v}");
            assert_eq!(r.topics, topics, "v{v}");
        }
    }

    #[test]
    fn the_producer_is_patched_in_place_at_every_version() {
        for v in 0..=5 {
            let m = TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s("t")))
                .with_group_id(GroupId(s("group")))
                .with_producer_id(ProducerId(10))
                .with_producer_epoch(4);
            let mut b = enc(&m, v);
            let r = txn_request(ApiKey::TxnOffsetCommit, v, &b).unwrap();
            set_producer(&mut b, r.producer_id_at, 77, 9);
            let r = txn_request(ApiKey::TxnOffsetCommit, v, &b).unwrap();
            assert_eq!((r.producer_id, r.producer_epoch), (77, 9), "v{v}");
            let m = EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s("t")))
                .with_producer_id(ProducerId(10))
                .with_producer_epoch(4)
                .with_committed(true);
            let mut b = enc(&m, v);
            let r = txn_request(ApiKey::EndTxn, v, &b).unwrap();
            set_producer(&mut b, r.producer_id_at, 77, 9);
            let r = txn_request(ApiKey::EndTxn, v, &b).unwrap();
            assert_eq!(
                (r.producer_id, r.producer_epoch, r.committed),
                (77, 9, true)
            );
        }
    }

    #[test]
    fn a_crafted_array_count_is_an_error_not_an_allocation() {
        // transactional id "t", producer id, epoch, then a topic count of
        // i32::MAX with nothing behind it.
        let mut b = vec![0, 1, b't'];
        b.extend_from_slice(&7i64.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(txn_request(ApiKey::AddPartitionsToTxn, 0, &b).is_err());
        assert!(txn_request(ApiKey::AddPartitionsToTxn, 4, &b).is_err());
        // Every truncation of a valid request is an error, never a panic.
        let m = EndTxnRequest::default().with_transactional_id(TransactionalId(s("tx")));
        let full = enc(&m, 3);
        for n in 0..full.len() {
            assert!(txn_request(ApiKey::EndTxn, 3, &full[..n]).is_err());
        }
    }
}
