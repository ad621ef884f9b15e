//! Leader epochs in client requests, cleared to -1 ("unknown") in place.
//!
//! kflip reports every leader epoch as -1, since the two clusters' epochs
//! are unrelated (see `rewrite`). A client then has no true epoch to send,
//! but some send one anyway: librdkafka writes 0 as the Fetch
//! `CurrentLeaderEpoch` when it knows none and the broker "has reliable
//! leader epochs", and copies into `LastFetchedEpoch` the epoch of the last
//! batch it read, perhaps from the other cluster. A broker whose epoch is
//! above 0 (after any leader change or restart) answers such a Fetch
//! FENCED_LEADER_EPOCH, again and again: the consumer never reads. So the
//! epochs of Fetch, ListOffsets and OffsetForLeaderEpoch requests are set
//! to -1, which tells the broker to skip the check. The fields are fixed
//! size: each is a 4-byte patch, and nothing is re-encoded.
//!
//! Client bytes: the walks read lengths with bounds checks and allocate
//! one position per patched field at most.

use super::varint::{ReadError, Reader};

/// Why a request could not be walked.
#[derive(Debug, thiserror::Error)]
#[error("malformed {api} v{version} request: {what}")]
pub struct EpochError {
    /// The API.
    pub api: &'static str,
    /// The request version.
    pub version: i16,
    /// What could not be read.
    pub what: &'static str,
}

fn patch(body: &mut [u8], at: &[usize]) {
    for &p in at {
        if let Some(slot) = body.get_mut(p..p + 4) {
            if i32::from_be_bytes([slot[0], slot[1], slot[2], slot[3]]) != -1 {
                slot.copy_from_slice(&(-1i32).to_be_bytes());
            }
        }
    }
}

fn topic_name(r: &mut Reader<'_>, flexible: bool) -> Result<(), ReadError> {
    r.string(flexible)
}

/// Clears `CurrentLeaderEpoch` (v9+) and `LastFetchedEpoch` (v12+) of
/// every partition of a Fetch request body (v4-12).
pub fn clear_fetch(body: &mut [u8], version: i16) -> Result<(), EpochError> {
    let err = |e: ReadError| EpochError {
        api: "Fetch",
        version,
        what: e.0,
    };
    if !(4..=12).contains(&version) {
        return Ok(());
    }
    if version < 9 {
        return Ok(());
    }
    let flexible = version >= 12;
    let mut at = Vec::new();
    {
        let mut r = Reader::new(body, 0);
        r.skip(4 + 4 + 4 + 4 + 1).map_err(err)?; // replica, wait, min, max, isolation
        r.skip(8).map_err(err)?; // session id and epoch (v7+)
        let topics = r.nullable_array_len(flexible).map_err(err)?.unwrap_or(0);
        for _ in 0..topics {
            topic_name(&mut r, flexible).map_err(err)?;
            let parts = r.nullable_array_len(flexible).map_err(err)?.unwrap_or(0);
            for _ in 0..parts {
                r.skip(4).map_err(err)?; // partition
                at.push(r.pos());
                r.skip(4 + 8).map_err(err)?; // current leader epoch, fetch offset
                if version >= 12 {
                    at.push(r.pos());
                    r.skip(4).map_err(err)?;
                }
                r.skip(8 + 4).map_err(err)?; // log start offset, max bytes
                if flexible {
                    r.skip_tagged().map_err(err)?;
                }
            }
            if flexible {
                r.skip_tagged().map_err(err)?;
            }
        }
    }
    patch(body, &at);
    Ok(())
}

/// Clears `CurrentLeaderEpoch` (v4+) of every partition of a ListOffsets
/// request body.
pub fn clear_list_offsets(body: &mut [u8], version: i16) -> Result<(), EpochError> {
    let err = |e: ReadError| EpochError {
        api: "ListOffsets",
        version,
        what: e.0,
    };
    if version < 4 {
        return Ok(());
    }
    let flexible = version >= 6;
    let mut at = Vec::new();
    {
        let mut r = Reader::new(body, 0);
        r.skip(4 + 1).map_err(err)?; // replica id, isolation level
        let topics = r.nullable_array_len(flexible).map_err(err)?.unwrap_or(0);
        for _ in 0..topics {
            topic_name(&mut r, flexible).map_err(err)?;
            let parts = r.nullable_array_len(flexible).map_err(err)?.unwrap_or(0);
            for _ in 0..parts {
                r.skip(4).map_err(err)?; // partition
                at.push(r.pos());
                r.skip(4 + 8).map_err(err)?; // current leader epoch, timestamp
                if flexible {
                    r.skip_tagged().map_err(err)?;
                }
            }
            if flexible {
                r.skip_tagged().map_err(err)?;
            }
        }
    }
    patch(body, &at);
    Ok(())
}

/// Clears `CurrentLeaderEpoch` (v2+) of every partition of an
/// OffsetForLeaderEpoch request body; the epoch to look up stays.
pub fn clear_offset_for_leader_epoch(body: &mut [u8], version: i16) -> Result<(), EpochError> {
    let err = |e: ReadError| EpochError {
        api: "OffsetForLeaderEpoch",
        version,
        what: e.0,
    };
    if version < 2 {
        return Ok(());
    }
    let flexible = version >= 4;
    let mut at = Vec::new();
    {
        let mut r = Reader::new(body, 0);
        if version >= 3 {
            r.skip(4).map_err(err)?; // replica id
        }
        let topics = r.nullable_array_len(flexible).map_err(err)?.unwrap_or(0);
        for _ in 0..topics {
            topic_name(&mut r, flexible).map_err(err)?;
            let parts = r.nullable_array_len(flexible).map_err(err)?.unwrap_or(0);
            for _ in 0..parts {
                r.skip(4).map_err(err)?; // partition
                at.push(r.pos());
                r.skip(4 + 4).map_err(err)?; // current leader epoch, leader epoch
                if flexible {
                    r.skip_tagged().map_err(err)?;
                }
            }
            if flexible {
                r.skip_tagged().map_err(err)?;
            }
        }
    }
    patch(body, &at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{
        BrokerId, FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn name(s: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(s))
    }

    #[test]
    fn fetch_epochs_become_unknown_and_nothing_else_changes() {
        for v in 4..=12 {
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(
                        (0..3)
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_current_leader_epoch(if v >= 9 { 4 } else { -1 })
                                    .with_last_fetched_epoch(if v >= 12 { 3 } else { -1 })
                                    .with_fetch_offset(100 + i64::from(p))
                                    .with_partition_max_bytes(1 << 20)
                            })
                            .collect(),
                    )]);
            let mut buf = BytesMut::new();
            req.encode(&mut buf, v).unwrap();
            clear_fetch(&mut buf, v).unwrap();
            let back = FetchRequest::decode(&mut buf.freeze(), v).unwrap();
            for (i, p) in back.topics[0].partitions.iter().enumerate() {
                assert_eq!(
                    (p.current_leader_epoch, p.last_fetched_epoch),
                    (-1, -1),
                    "v{v}"
                );
                assert_eq!(p.fetch_offset, 100 + i as i64);
                assert_eq!(p.partition_max_bytes, 1 << 20);
            }
        }
    }

    #[test]
    fn list_offsets_and_offset_for_leader_epoch_keep_the_epoch_to_look_up() {
        for v in 4..=9 {
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(1)
                        .with_current_leader_epoch(7)
                        .with_timestamp(-2)])]);
            let mut buf = BytesMut::new();
            req.encode(&mut buf, v).unwrap();
            clear_list_offsets(&mut buf, v).unwrap();
            let back = ListOffsetsRequest::decode(&mut buf.freeze(), v).unwrap();
            let p = &back.topics[0].partitions[0];
            assert_eq!((p.current_leader_epoch, p.timestamp), (-1, -2), "v{v}");
        }
        for v in 2..=4 {
            let req = OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![OffsetForLeaderTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(5)
                        .with_leader_epoch(2)])]);
            let mut buf = BytesMut::new();
            req.encode(&mut buf, v).unwrap();
            clear_offset_for_leader_epoch(&mut buf, v).unwrap();
            let back = OffsetForLeaderEpochRequest::decode(&mut buf.freeze(), v).unwrap();
            let p = &back.topics[0].partitions[0];
            assert_eq!((p.current_leader_epoch, p.leader_epoch), (-1, 2), "v{v}");
        }
    }

    #[test]
    fn truncated_requests_are_errors() {
        let req = FetchRequest::default().with_topics(vec![FetchTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![FetchPartition::default()])]);
        let mut buf = BytesMut::new();
        req.encode(&mut buf, 12).unwrap();
        // Up to the end of the partition entry (the walk stops there).
        for cut in 0..60 {
            let mut b = buf[..cut].to_vec();
            assert!(clear_fetch(&mut b, 12).is_err(), "cut at {cut}");
        }
    }
}
