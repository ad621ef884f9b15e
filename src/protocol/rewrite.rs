//! Response rewriting: one filter per API key that carries broker addresses,
//! node ids, the cluster id, topic ids or leader epochs.
//!
//! Fetch responses, the hot path, are patched in place by [`super::fetch`]
//! instead. Other responses are decoded once ([`Rewritable::decode`]); the proxy then asks
//! which brokers it announces ([`Rewritable::brokers`]) so that it can open a
//! virtual listener for each; finally [`Rewritable::rewrite`] maps every id
//! and address through a [`NodeMap`] and the message is re-encoded at the
//! version it came in, keeping unknown tagged fields. This module does no I/O.
//!
//! What is rewritten and why:
//! - node ids and `host:port` become kflip's virtual brokers, so no real
//!   address reaches a client;
//! - the cluster id becomes kflip's constant one;
//! - leader epochs become -1 ("unknown"): the two clusters' epochs are
//!   unrelated, and an epoch that goes backwards across a switch makes
//!   clients ignore fresh metadata (KAFKA-12257); committed offsets
//!   (OffsetFetch) lose theirs too, or a client validates its position
//!   against an epoch of the other cluster (KIP-320);
//! - topic ids become kflip's virtual ids ([`crate::routing::topic_ids`]),
//!   one per topic name on every cluster, so a switch never changes the id
//!   a client knows a topic by; KIP-848 assignments (ConsumerGroupHeartbeat,
//!   ConsumerGroupDescribe) are mapped the same way. kflip caps Fetch,
//!   Produce, OffsetCommit and OffsetFetch below the versions that address
//!   topics by id.
//!
//! Trust boundary: responses come from the configured brokers. The generated
//! codec sizes arrays from their length prefix, so a broker that sent a
//! corrupt length could make it attempt a huge allocation. Client input never
//! reaches the codec: requests are routed by a hand-written header parser and
//! forwarded as bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatResponse,
    DescribeClusterResponse, DescribeTopicPartitionsResponse, FindCoordinatorResponse,
    MetadataResponse, OffsetFetchResponse, ProduceResponse, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use uuid::Uuid;

mod map;

/// A broker address announced by an upstream response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    /// The broker's real node id.
    pub node_id: i32,
    /// Its real host.
    pub host: String,
    /// Its real port.
    pub port: i32,
}

/// Maps real node ids of the upstream cluster to what clients see.
pub trait NodeMap {
    /// The virtual node id for a real one. -1 (no node) stays -1.
    fn node(&self, real: i32) -> i32;
    /// The advertised host and port of the virtual broker for a real node.
    fn endpoint(&self, real: i32) -> (StrBytes, i32);
    /// The cluster id clients see.
    fn cluster_id(&self) -> StrBytes;
    /// The topic id clients see for topic `name`, which the upstream
    /// calls `real`.
    fn topic_id(&self, name: &str, _real: Uuid) -> Uuid {
        crate::routing::topic_ids::virtual_topic_id(name)
    }
    /// The topic id clients see for the upstream's `real` id, if kflip
    /// knows which topic that is.
    fn topic_id_of_real(&self, _real: Uuid) -> Option<Uuid> {
        None
    }
}

/// Why a response could not be rewritten.
#[derive(Debug, thiserror::Error)]
#[error("cannot rewrite {api:?} v{version} response: {message}")]
pub struct RewriteError {
    /// The API key.
    pub api: ApiKey,
    /// The version.
    pub version: i16,
    /// What failed.
    pub message: String,
}

/// A decoded response of an API kflip rewrites.
#[derive(Debug, Clone)]
pub enum Body {
    /// Metadata.
    Metadata(MetadataResponse),
    /// FindCoordinator, single (v0-3) or batched (v4+).
    FindCoordinator(FindCoordinatorResponse),
    /// DescribeCluster.
    DescribeCluster(DescribeClusterResponse),
    /// DescribeTopicPartitions.
    DescribeTopicPartitions(DescribeTopicPartitionsResponse),
    /// Produce (KIP-951 leader hints).
    Produce(ProduceResponse),
    /// ConsumerGroupHeartbeat (KIP-848): the assignment's topic ids.
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
    /// ConsumerGroupDescribe (KIP-848): the members' topic ids.
    ConsumerGroupDescribe(ConsumerGroupDescribeResponse),
    /// OffsetFetch: committed leader epochs.
    OffsetFetch(OffsetFetchResponse),
}

/// A response frame decoded for rewriting.
#[derive(Debug, Clone)]
pub struct Rewritable {
    api: ApiKey,
    version: i16,
    header: ResponseHeader,
    body: Body,
}

fn map_ids(ids: &mut [BrokerId], map: &dyn NodeMap) {
    for id in ids {
        id.0 = map.node(id.0);
    }
}

impl Rewritable {
    /// Decodes a response payload (the frame without its length prefix).
    /// Returns `Ok(None)` for APIs that are not rewritten.
    pub fn decode(api: ApiKey, version: i16, payload: Bytes) -> Result<Option<Self>, RewriteError> {
        let err = |e: anyhow::Error| RewriteError {
            api,
            version,
            message: e.to_string(),
        };
        let mut buf = payload;
        let header =
            ResponseHeader::decode(&mut buf, api.response_header_version(version)).map_err(err)?;
        let body = match api {
            ApiKey::Metadata => Body::Metadata(Decodable::decode(&mut buf, version).map_err(err)?),
            ApiKey::FindCoordinator => {
                Body::FindCoordinator(Decodable::decode(&mut buf, version).map_err(err)?)
            }
            ApiKey::DescribeCluster => {
                Body::DescribeCluster(Decodable::decode(&mut buf, version).map_err(err)?)
            }
            ApiKey::DescribeTopicPartitions => {
                Body::DescribeTopicPartitions(Decodable::decode(&mut buf, version).map_err(err)?)
            }
            ApiKey::Produce => Body::Produce(Decodable::decode(&mut buf, version).map_err(err)?),
            ApiKey::ConsumerGroupHeartbeat => {
                Body::ConsumerGroupHeartbeat(Decodable::decode(&mut buf, version).map_err(err)?)
            }
            ApiKey::ConsumerGroupDescribe => {
                Body::ConsumerGroupDescribe(Decodable::decode(&mut buf, version).map_err(err)?)
            }
            ApiKey::OffsetFetch => {
                Body::OffsetFetch(Decodable::decode(&mut buf, version).map_err(err)?)
            }
            _ => return Ok(None),
        };
        // Bytes past the body are fields of a later schema or padding that
        // a client of this version would not read either; kflip re-encodes
        // what it understood, as a client reads it (librdkafka's mock
        // cluster ends its Metadata v12 responses with one extra byte).
        if buf.has_remaining() {
            tracing::debug!(?api, version, extra = buf.remaining(), first = ?&buf[..buf.remaining().min(16)], "response bytes past the body ignored");
        }
        Ok(Some(Rewritable {
            api,
            version,
            header,
            body,
        }))
    }

    /// The decoded body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// Every broker address the response announces.
    pub fn brokers(&self) -> Vec<Announced> {
        let a = |node_id: i32, host: &StrBytes, port: i32| Announced {
            node_id,
            host: host.as_str().to_string(),
            port,
        };
        match &self.body {
            Body::Metadata(m) => m
                .brokers
                .iter()
                .map(|b| a(b.node_id.0, &b.host, b.port))
                .collect(),
            Body::DescribeCluster(m) => m
                .brokers
                .iter()
                .map(|b| a(b.broker_id.0, &b.host, b.port))
                .collect(),
            Body::FindCoordinator(m) => {
                let mut out = Vec::new();
                if self.version < 4 && m.node_id.0 >= 0 {
                    out.push(a(m.node_id.0, &m.host, m.port));
                }
                out.extend(
                    m.coordinators
                        .iter()
                        .filter(|c| c.node_id.0 >= 0)
                        .map(|c| a(c.node_id.0, &c.host, c.port)),
                );
                out
            }
            Body::Produce(m) => m
                .node_endpoints
                .iter()
                .map(|n| a(n.node_id.0, &n.host, n.port))
                .collect(),
            Body::DescribeTopicPartitions(_)
            | Body::ConsumerGroupHeartbeat(_)
            | Body::ConsumerGroupDescribe(_)
            | Body::OffsetFetch(_) => Vec::new(),
        }
    }

    /// The upstream topic ids the response names without their topic name
    /// (a KIP-848 assignment), so the caller can learn what they are before
    /// [`Rewritable::rewrite`] maps them.
    pub fn unnamed_topic_ids(&self) -> Vec<Uuid> {
        match &self.body {
            Body::ConsumerGroupHeartbeat(m) => m
                .assignment
                .iter()
                .flat_map(|a| a.topic_partitions.iter().map(|t| t.topic_id))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Encodes the (rewritten) response as a whole frame with length prefix.
    pub fn encode(&self) -> Result<BytesMut, RewriteError> {
        let (api, version) = (self.api, self.version);
        let err = |e: anyhow::Error| RewriteError {
            api,
            version,
            message: e.to_string(),
        };
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        self.header
            .encode(&mut buf, api.response_header_version(version))
            .map_err(err)?;
        match &self.body {
            Body::Metadata(m) => m.encode(&mut buf, version),
            Body::FindCoordinator(m) => m.encode(&mut buf, version),
            Body::DescribeCluster(m) => m.encode(&mut buf, version),
            Body::DescribeTopicPartitions(m) => m.encode(&mut buf, version),
            Body::Produce(m) => m.encode(&mut buf, version),
            Body::ConsumerGroupHeartbeat(m) => m.encode(&mut buf, version),
            Body::ConsumerGroupDescribe(m) => m.encode(&mut buf, version),
            Body::OffsetFetch(m) => m.encode(&mut buf, version),
        }
        .map_err(err)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok(buf)
    }
}
