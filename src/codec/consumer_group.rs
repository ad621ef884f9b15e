//! KIP-848 consumer groups: what kflip reads of a ConsumerGroupHeartbeat
//! request, and the in-place patch of its topic ids.
//!
//! Client bytes: a hand-written walk that borrows from the frame and
//! allocates only the member identity and one position per owned topic,
//! never the generated codec. Topic ids are fixed-size, so mapping the
//! owned partitions' virtual ids onto the active cluster's real ones is a
//! patch of 16 bytes each, with no re-encoding.

use std::ops::Range;

use uuid::Uuid;

use super::varint::{ReadError, Reader};

/// A ConsumerGroupHeartbeat request (v0-1), as kflip reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The group.
    pub group_id: String,
    /// The member id (client-chosen since KIP-1082).
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member's temporary leave,
    /// otherwise the epoch the member holds its assignment in.
    pub member_epoch: i32,
    /// Where the owned partitions' topic ids lie in the body.
    pub topic_ids: Vec<Range<usize>>,
}

/// Why a heartbeat request could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed ConsumerGroupHeartbeat v{version} request: {what}")]
pub struct HeartbeatError {
    /// The request version.
    pub version: i16,
    /// What could not be read.
    pub what: &'static str,
}

fn string(r: &mut Reader<'_>) -> Result<Option<String>, ReadError> {
    let Some(n) = r.uvarint()?.checked_sub(1) else {
        return Ok(None);
    };
    let b = r.take(n as usize)?;
    String::from_utf8(b.to_vec())
        .map(Some)
        .map_err(|_| ReadError("not UTF-8"))
}

/// Reads a ConsumerGroupHeartbeat request body (after the header).
pub fn heartbeat(body: &[u8], version: i16) -> Result<Heartbeat, HeartbeatError> {
    let err = |e: ReadError| HeartbeatError { version, what: e.0 };
    if !(0..=1).contains(&version) {
        return Err(HeartbeatError {
            version,
            what: "unsupported version",
        });
    }
    let mut r = Reader::new(body, 0);
    let group_id = string(&mut r).map_err(err)?.unwrap_or_default();
    let member_id = string(&mut r).map_err(err)?.unwrap_or_default();
    let member_epoch = r.i32().map_err(err)?;
    r.nullable_string_compact().map_err(err)?; // instance id
    r.nullable_string_compact().map_err(err)?; // rack id
    r.i32().map_err(err)?; // rebalance timeout
    if let Some(n) = r.nullable_array_len(true).map_err(err)? {
        for _ in 0..n {
            r.string(true).map_err(err)?; // subscribed topic names
        }
    }
    if version >= 1 {
        r.nullable_string_compact().map_err(err)?; // subscribed topic regex
    }
    r.nullable_string_compact().map_err(err)?; // server assignor
    let mut topic_ids = Vec::new();
    if let Some(n) = r.nullable_array_len(true).map_err(err)? {
        for _ in 0..n {
            let at = r.pos();
            r.skip(16).map_err(err)?;
            topic_ids.push(at..at + 16);
            let parts = r.nullable_array_len(true).map_err(err)?.unwrap_or(0);
            r.skip(4 * parts as usize).map_err(err)?;
            r.skip_tagged().map_err(err)?;
        }
    }
    r.skip_tagged().map_err(err)?;
    Ok(Heartbeat {
        group_id,
        member_id,
        member_epoch,
        topic_ids,
    })
}

/// Replaces each owned topic id in `body` by `map(id)`.
pub fn map_topic_ids(body: &mut [u8], hb: &Heartbeat, map: impl Fn(Uuid) -> Uuid) {
    for at in &hb.topic_ids {
        let Some(slot) = body.get_mut(at.clone()) else {
            continue;
        };
        let Ok(bytes) = <[u8; 16]>::try_from(&*slot) else {
            continue;
        };
        slot.copy_from_slice(map(Uuid::from_bytes(bytes)).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, GroupId, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn request(owned: Vec<(Uuid, Vec<i32>)>) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g1")))
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_member_epoch(7)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str("t"))]))
            .with_topic_partitions(Some(
                owned
                    .into_iter()
                    .map(|(id, p)| {
                        TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(p)
                    })
                    .collect(),
            ))
    }

    #[test]
    fn reads_the_member_and_maps_owned_topic_ids_in_place() {
        let (a, b) = (Uuid::from_u128(10), Uuid::from_u128(20));
        for version in 0..=1 {
            let req = request(vec![(a, vec![0, 1]), (b, vec![2])]);
            let mut buf = BytesMut::new();
            req.encode(&mut buf, version).unwrap();
            let hb = heartbeat(&buf, version).unwrap();
            assert_eq!(
                (hb.group_id.as_str(), hb.member_id.as_str(), hb.member_epoch),
                ("g1", "m-1", 7)
            );
            assert_eq!(hb.topic_ids.len(), 2);
            map_topic_ids(&mut buf, &hb, |id| Uuid::from_u128(id.as_u128() + 1));
            let back = ConsumerGroupHeartbeatRequest::decode(&mut buf.freeze(), version).unwrap();
            let ids: Vec<Uuid> = back
                .topic_partitions
                .unwrap()
                .iter()
                .map(|t| t.topic_id)
                .collect();
            assert_eq!(ids, vec![Uuid::from_u128(11), Uuid::from_u128(21)]);
        }
    }

    #[test]
    fn truncated_and_crafted_requests_are_refused_without_allocating() {
        let mut buf = BytesMut::new();
        request(vec![(Uuid::from_u128(1), vec![0])])
            .encode(&mut buf, 1)
            .unwrap();
        for cut in 0..buf.len() - 1 {
            assert!(heartbeat(&buf[..cut], 1).is_err(), "cut at {cut}");
        }
        // An owned-topics count of 2^28 with nothing behind it.
        let mut crafted = vec![2, b'g', 2, b'm', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        crafted.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x01]);
        assert!(heartbeat(&crafted, 1).is_err());
    }
}
