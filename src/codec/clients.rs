//! What the client inventory reads of requests: the client software of an
//! ApiVersions, the topics of a Fetch, the partitions and timestamps of a
//! ListOffsets, and the group of a group request. Each walk borrows from
//! the body and allocates nothing per element.

use kafka_protocol::messages::ApiKey;

use super::walk::*;

/// The client software name and version an ApiVersions request (v3+)
/// carries.
pub fn api_versions_software(body: &[u8], version: i16) -> Option<(String, String)> {
    if version < 3 {
        return None;
    }
    let mut w = Walk::new(body, true);
    let name = w.str_ref("client_software_name").ok()?;
    let ver = w.str_ref("client_software_version").ok()?;
    Some((name.to_owned(), ver.to_owned()))
}

/// Calls `f` with each topic name of a Fetch request (v4 to v12).
pub fn fetch_topics(body: &[u8], version: i16, mut f: impl FnMut(&str)) -> Result<(), ParseError> {
    if !(4..=12).contains(&version) {
        return Err(unsupported(ApiKey::Fetch, version));
    }
    let flexible = version >= 12;
    let mut w = Walk::new(body, flexible);
    w.skip(4 + 4 + 4 + 4 + 1, "replica_id .. isolation_level")?;
    if version >= 7 {
        w.skip(4 + 4, "session_id, session_epoch")?;
    }
    let per_partition = 4
        + if version >= 9 { 4 } else { 0 }
        + 8
        + if version >= 12 { 4 } else { 0 }
        + if version >= 5 { 8 } else { 0 }
        + 4;
    for _ in 0..w.array("topics")? {
        f(w.str_ref("topic")?);
        for _ in 0..w.array("partitions")? {
            w.skip(per_partition, "partition")?;
            w.tags("partition tagged fields")?;
        }
        w.tags("topic tagged fields")?;
    }
    Ok(())
}

/// Calls `f(topic, partition, timestamp)` for each partition of a
/// ListOffsets request (v1+; -1 asks for the latest offset, -2 for the
/// earliest).
pub fn list_offsets_partitions(
    body: &[u8],
    version: i16,
    mut f: impl FnMut(&str, i32, i64),
) -> Result<(), ParseError> {
    if version < 1 {
        return Err(unsupported(ApiKey::ListOffsets, version));
    }
    let flexible = version >= 6;
    let mut w = Walk::new(body, flexible);
    w.skip(4, "replica_id")?;
    if version >= 2 {
        w.skip(1, "isolation_level")?;
    }
    for _ in 0..w.array("topics")? {
        let topic = w.str_ref("topic")?;
        for _ in 0..w.array("partitions")? {
            let partition = w.i32("partition")?;
            if version >= 4 {
                w.skip(4, "current_leader_epoch")?;
            }
            let timestamp = w.i64("timestamp")?;
            w.tags("partition tagged fields")?;
            f(topic, partition, timestamp);
        }
        w.tags("topic tagged fields")?;
    }
    Ok(())
}

/// The group a group request names (its first field; the first group of
/// an OffsetFetch v8+).
pub fn group_of(body: &[u8], api: ApiKey, version: i16) -> Option<String> {
    let flexible = api.request_header_version(version) >= 2;
    let mut w = Walk::new(body, flexible);
    match api {
        ApiKey::OffsetFetch if version >= 8 => {
            if w.array("groups").ok()? == 0 {
                return None;
            }
        }
        ApiKey::JoinGroup
        | ApiKey::OffsetFetch
        | ApiKey::OffsetCommit
        | ApiKey::ConsumerGroupHeartbeat
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat => {}
        _ => return None,
    }
    w.str_ref("group_id")
        .ok()
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
}

/// A ListOffsets response answering every partition of the request with
/// `code` (no offset).
pub fn list_offsets_error(
    body: &[u8],
    version: i16,
    correlation_id: i32,
    code: i16,
) -> Result<bytes::Bytes, super::AnswerError> {
    use kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };
    let mut topics: Vec<ListOffsetsTopicResponse> = Vec::new();
    list_offsets_partitions(body, version, |topic, partition, _| {
        if topics.last().is_none_or(|t| t.name.0.as_str() != topic) {
            topics.push(ListOffsetsTopicResponse::default().with_name(super::topic_name(topic)));
        }
        if let Some(t) = topics.last_mut() {
            t.partitions.push(
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(partition)
                    .with_error_code(code)
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(-1),
            );
        }
    })?;
    let resp = kafka_protocol::messages::ListOffsetsResponse::default().with_topics(topics);
    super::response_frame(&resp, "ListOffsets", version, correlation_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{
        fetch_request, list_offsets_request, ApiVersionsRequest, FetchRequest, JoinGroupRequest,
        ListOffsetsRequest, OffsetFetchRequest, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn enc<M: Encodable>(m: &M, v: i16) -> Vec<u8> {
        let mut b = BytesMut::new();
        m.encode(&mut b, v).unwrap();
        b.to_vec()
    }

    fn name(s: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(s))
    }

    #[test]
    fn software_of_api_versions() {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("librdkafka"))
            .with_client_software_version(StrBytes::from_static_str("2.6.1"));
        assert_eq!(
            api_versions_software(&enc(&req, 3), 3),
            Some(("librdkafka".into(), "2.6.1".into()))
        );
        assert_eq!(api_versions_software(&enc(&req, 2), 2), None);
        assert_eq!(api_versions_software(&[0xff, 0xff, 0xff], 3), None);
    }

    #[test]
    fn topics_of_every_fetch_version() {
        for v in 4..=12 {
            let req = FetchRequest::default().with_topics(vec![
                fetch_request::FetchTopic::default()
                    .with_topic(name("a"))
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default(),
                        fetch_request::FetchPartition::default().with_partition(1),
                    ]),
                fetch_request::FetchTopic::default()
                    .with_topic(name("b"))
                    .with_partitions(vec![fetch_request::FetchPartition::default()]),
            ]);
            let body = enc(&req, v);
            let mut seen = Vec::new();
            fetch_topics(&body, v, |t| seen.push(t.to_owned())).unwrap();
            assert_eq!(seen, ["a", "b"], "v{v}");
            assert!(fetch_topics(&body[..body.len() / 2], v, |_| {}).is_err() || v < 7);
        }
    }

    #[test]
    fn timestamps_of_every_list_offsets_version() {
        for v in 1..=9 {
            let req = ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(3)
                            .with_timestamp(-1),
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(4)
                            .with_timestamp(-2),
                    ]),
            ]);
            let mut seen = Vec::new();
            list_offsets_partitions(&enc(&req, v), v, |t, p, ts| {
                seen.push((t.to_owned(), p, ts))
            })
            .unwrap();
            assert_eq!(seen, [("t".into(), 3, -1), ("t".into(), 4, -2)], "v{v}");
        }
        assert!(
            list_offsets_partitions(&[0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff], 2, |_, _, _| {})
                .is_err()
        );
    }

    #[test]
    fn group_of_requests() {
        for v in 0..=9 {
            let req = JoinGroupRequest::default().with_group_id(kafka_protocol::messages::GroupId(
                StrBytes::from_static_str("g1"),
            ));
            assert_eq!(
                group_of(&enc(&req, v), ApiKey::JoinGroup, v).as_deref(),
                Some("g1")
            );
        }
        for v in 1..=9 {
            let req = if v >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(kafka_protocol::messages::GroupId(StrBytes::from_static_str("g2"))),
                ])
            } else {
                OffsetFetchRequest::default().with_group_id(kafka_protocol::messages::GroupId(
                    StrBytes::from_static_str("g2"),
                ))
            };
            assert_eq!(
                group_of(&enc(&req, v), ApiKey::OffsetFetch, v).as_deref(),
                Some("g2"),
                "v{v}"
            );
        }
        assert_eq!(group_of(&[], ApiKey::JoinGroup, 5), None);
        assert_eq!(group_of(&[0, 1, b'x'], ApiKey::Produce, 5), None);
    }
}
