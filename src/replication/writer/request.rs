//! A Produce request as pieces to write one after the other: the request's
//! own fields, encoded here, and each batch as it was sealed, never copied
//! into the request.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};

use crate::codec::varint::put_uvarint;

/// One topic's batches: partition index and sealed batch.
pub(super) type TopicBatches = (std::sync::Arc<str>, Vec<(i32, Bytes)>);

/// The frame of a Produce request (acks=all, no transaction) at `version`
/// (3 to 12) carrying `topics`, as pieces whose concatenation is the
/// frame, length prefix included.
pub(super) fn produce_frame(
    version: i16,
    correlation: i32,
    timeout_ms: i32,
    topics: &[TopicBatches],
) -> Result<Vec<Bytes>, String> {
    let flexible = version >= 9;
    let mut pieces = Vec::with_capacity(1 + 2 * topics.iter().map(|t| t.1.len()).sum::<usize>());
    let mut head = BytesMut::with_capacity(128);
    head.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("kflip-engine")))
        .encode(&mut head, ProduceRequest::header_version(version))
        .map_err(|e| e.to_string())?;
    // transactional_id: null
    if flexible {
        put_uvarint(&mut head, 0);
    } else {
        head.put_i16(-1);
    }
    head.put_i16(-1);
    head.put_i32(timeout_ms);
    let len = |out: &mut BytesMut, n: usize| -> Result<(), String> {
        let n = u32::try_from(n).map_err(|_| "a Produce request field is too long".to_string())?;
        if flexible {
            put_uvarint(out, n + 1);
        } else {
            out.put_i32(n as i32);
        }
        Ok(())
    };
    len(&mut head, topics.len())?;
    let mut cur = head;
    for (t, batches) in topics {
        if flexible {
            len(&mut cur, t.len())?;
        } else {
            let n = i16::try_from(t.len()).map_err(|_| "topic name too long".to_string())?;
            cur.put_i16(n);
        }
        cur.put_slice(t.as_bytes());
        len(&mut cur, batches.len())?;
        for (index, batch) in batches {
            cur.put_i32(*index);
            len(&mut cur, batch.len())?;
            pieces.push(cur.split().freeze());
            pieces.push(batch.clone());
            if flexible {
                cur.put_u8(0); // the partition's tagged fields
            }
        }
        if flexible {
            cur.put_u8(0); // the topic's tagged fields
        }
    }
    if flexible {
        cur.put_u8(0); // the request's tagged fields
    }
    pieces.push(cur.freeze());
    let total: usize = pieces.iter().map(Bytes::len).sum();
    let frame_len =
        i32::try_from(total - 4).map_err(|_| "Produce request too large".to_string())?;
    let mut first = BytesMut::from(&pieces[0][..]);
    first[..4].copy_from_slice(&frame_len.to_be_bytes());
    pieces[0] = first.freeze();
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;

    #[test]
    fn the_pieces_are_the_encoding_of_the_request_in_every_version() {
        let topics: Vec<TopicBatches> = vec![
            (
                "orders".into(),
                vec![
                    (0, Bytes::from(vec![1u8; 300])),
                    (3, Bytes::from_static(b"xy")),
                ],
            ),
            (
                "t".repeat(200).into(),
                vec![(7, Bytes::from(vec![9u8; 70_000]))],
            ),
        ];
        for version in 3..=12 {
            let pieces = produce_frame(version, 42, 30_000, &topics).unwrap();
            let got: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
            let req = ProduceRequest::default()
                .with_transactional_id(None)
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(
                    topics
                        .iter()
                        .map(|(t, b)| {
                            TopicProduceData::default()
                                .with_name(TopicName(StrBytes::from_string(t.to_string())))
                                .with_partition_data(
                                    b.iter()
                                        .map(|(i, r)| {
                                            PartitionProduceData::default()
                                                .with_index(*i)
                                                .with_records(Some(r.clone()))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let mut want = BytesMut::new();
            want.put_i32(0);
            RequestHeader::default()
                .with_request_api_key(ApiKey::Produce as i16)
                .with_request_api_version(version)
                .with_correlation_id(42)
                .with_client_id(Some(StrBytes::from_static_str("kflip-engine")))
                .encode(&mut want, ProduceRequest::header_version(version))
                .unwrap();
            req.encode(&mut want, version).unwrap();
            let n = (want.len() - 4) as i32;
            want[..4].copy_from_slice(&n.to_be_bytes());
            assert_eq!(got, want.to_vec(), "v{version}");
            // No batch was copied: each is one piece.
            assert!(pieces.iter().any(|p| p.len() == 70_000), "v{version}");
        }
    }
}
