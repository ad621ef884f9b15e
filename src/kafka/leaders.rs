//! The leader of each partition of some topics, and its epoch: what kflip's
//! own producer and fetcher ask before they send to a partition.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{ClientError, KafkaConn};
use crate::config::ClusterConfig;

/// Partitions with a leader, and the address of each leader.
#[derive(Debug, Default)]
pub struct Leaders {
    /// `(topic, partition)` -> (leader id, leader epoch; -1 when the broker
    /// does not say).
    pub partitions: HashMap<(Arc<str>, i32), (i32, i32)>,
    /// Broker id -> `host:port`.
    pub brokers: HashMap<i32, String>,
}

/// Asks `cluster` for the leaders of every partition of `topics`. A
/// partition without a leader now (an election under way) is left out.
pub async fn leaders(
    cluster: &ClusterConfig,
    topics: &BTreeSet<Arc<str>>,
    timeout: Duration,
) -> Result<Leaders, ClientError> {
    let mut conn = KafkaConn::connect_any(cluster, timeout).await?;
    let versions = conn.api_versions().await?;
    // v7+ gives leader epochs; v12 is the last that names topics only.
    let v = versions
        .get(&(ApiKey::Metadata as i16))
        .map_or(1, |r| r.max.clamp(1, 12));
    let req = MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|t| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
                })
                .collect(),
        ))
        .with_allow_auto_topic_creation(false);
    let resp = conn.send(&req, v).await?;
    let mut out = Leaders {
        brokers: resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect(),
        ..Default::default()
    };
    for t in &resp.topics {
        let Some(name) = t.name.as_ref().and_then(|n| topics.get(n.0.as_str())) else {
            continue;
        };
        for p in &t.partitions {
            if p.error_code == 0 && p.leader_id.0 >= 0 {
                out.partitions.insert(
                    (name.clone(), p.partition_index),
                    (p.leader_id.0, p.leader_epoch),
                );
            }
        }
    }
    Ok(out)
}
