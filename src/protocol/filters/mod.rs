//! The filter chain: kflip's own behaviour per API key, between the client
//! and the cluster.
//!
//! Each request a connection forwards passes [`on_request`], which hands it
//! to the filter of its API family; each response to a forwarded request
//! passes [`on_response`] with what that filter asked to observe. A filter
//! forwards the request (perhaps rewritten in place) or answers it itself;
//! APIs with no filter pass untouched. Client bytes are read only through
//! [`crate::codec`]; the per-connection state a filter sees is [`ConnCtx`].
//!
//! - [`reads`]: Fetch (held for consumers that have not rejoined), and the
//!   leader epochs of ListOffsets and OffsetForLeaderEpoch;
//! - [`groups`]: Heartbeat, SyncGroup, LeaveGroup and OffsetCommit of
//!   members from before a switch (fenced; commits translated);
//! - [`consumer`]: KIP-848 ConsumerGroupHeartbeat;
//! - [`producers`]: InitProducerId and Produce (ids remapped, sequences
//!   rebased, acknowledged log ends observed);
//! - [`txn`]: the transactional requests of a producer from before a
//!   switch;
//! - [`provenance`]: refuses client Produce requests that carry kflip's
//!   provenance header.
//!
//! The rewrite of broker addresses in responses stays with the proxy
//! (`proxy::addresses`): it binds the listeners it points clients at.

pub mod clients;
pub mod consumer;
pub mod fleet;
pub mod groups;
pub mod producers;
pub mod provenance;
pub mod reads;
pub mod txn;
mod txn_answers;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;

use crate::codec::frame::Frame;
use crate::codec::header::client_id;
use crate::config::ClusterName;
use crate::error::Fault;
use crate::failover::{ClientKey, Switchboard};
use crate::routing::topic_ids::TopicIds;

/// One request on its way upstream.
pub struct Request {
    /// Its API.
    pub api: ApiKey,
    /// Its version.
    pub version: i16,
    /// Its correlation id.
    pub correlation_id: i32,
    /// Where its body starts in the payload.
    pub body_offset: usize,
    /// The whole frame, length prefix included.
    pub frame: Frame,
}

impl Request {
    /// The request body.
    pub fn body(&self) -> &[u8] {
        &self.frame.payload()[self.body_offset..]
    }

    /// The request body, to patch in place.
    pub fn body_mut(&mut self) -> &mut [u8] {
        let at = self.body_offset;
        &mut self.frame.payload_mut()[at..]
    }

    /// The request forwarded as it is.
    pub fn forward(self) -> Verdict {
        Verdict::Forward(self.frame, Observe::Nothing)
    }

    /// The same header with a new body.
    pub fn reframe(&self, body: &[u8]) -> Frame {
        let header = &self.frame.payload()[..self.body_offset];
        let mut out = BytesMut::with_capacity(4 + header.len() + body.len());
        out.extend_from_slice(&((header.len() + body.len()) as i32).to_be_bytes());
        out.extend_from_slice(header);
        out.extend_from_slice(body);
        Frame(out)
    }
}

/// What a filter decided.
pub enum Verdict {
    /// Forward this frame and observe the response.
    Forward(Frame, Observe),
    /// Answer the client with this response frame, after a pause (an empty
    /// Fetch answer waits like a broker's long poll would).
    Answer(Bytes, Duration),
    /// Neither forward nor answer (a refused request that expects no
    /// response: a Produce with acks=0).
    Drop,
}

impl Verdict {
    /// An answer sent at once.
    pub fn answer(frame: Bytes) -> Verdict {
        Verdict::Answer(frame, Duration::ZERO)
    }
}

/// What a filter learns from the response to a request it forwarded.
pub enum Observe {
    /// Nothing.
    Nothing,
    /// An OffsetCommit of `group` on this connection's cluster, with the
    /// offsets it asked for.
    Commit {
        /// The group.
        group: String,
        /// (topic, partition) -> offset.
        offsets: Vec<((String, i32), i64)>,
    },
    /// An InitProducerId from this client: the producer id belongs to this
    /// epoch.
    ProducerId(ClientKey),
    /// A Produce with this many records per partition.
    Produced(HashMap<(String, i32), i64>),
    /// An OffsetFetch of this client (and group, before v8): partitions
    /// without a committed offset, for the client inventory.
    Offsets {
        /// The client id.
        client_id: String,
        /// The group of a request before v8.
        group: Option<String>,
    },
}

/// What every filter sees of its connection's current session.
pub struct ConnCtx {
    /// The switch, the client tracker and the engine link.
    pub board: Arc<Switchboard>,
    /// Each cluster's topic ids and the virtual ids clients see.
    pub topic_ids: Arc<TopicIds>,
    /// The cluster this session forwards to.
    pub cluster: ClusterName,
    /// The switch epoch the session was opened under.
    pub epoch: u64,
    /// The client's address.
    pub peer: IpAddr,
    /// The client id it sent, once known.
    client_id: Mutex<Option<String>>,
    /// The connection, as the client inventory knows it.
    pub conn: Arc<crate::inventory::Conn>,
}

impl ConnCtx {
    /// The context of a session on `cluster` in `epoch`.
    pub fn new(
        board: Arc<Switchboard>,
        topic_ids: Arc<TopicIds>,
        cluster: ClusterName,
        epoch: u64,
        conn: Arc<crate::inventory::Conn>,
    ) -> ConnCtx {
        ConnCtx {
            board,
            topic_ids,
            cluster,
            epoch,
            peer: conn.peer(),
            client_id: Mutex::new(None),
            conn,
        }
    }

    /// The client id it sent (the first one of the session).
    pub fn client_id(&self, payload: &[u8]) -> String {
        self.key(payload).0
    }

    /// Who the client is, for failover state.
    pub fn key(&self, payload: &[u8]) -> ClientKey {
        let mut id = self.client_id.lock().unwrap_or_else(|e| e.into_inner());
        if id.is_none() {
            *id = client_id(payload);
        }
        (id.clone().unwrap_or_default(), self.peer)
    }

    /// Learns every topic id of the session's cluster (one Metadata request
    /// for all topics), for a KIP-848 assignment or an owned partition
    /// that names a topic kflip has not seen in a Metadata response yet.
    pub async fn learn_topic_ids(&self) {
        let boot = self.board.cluster(&self.cluster);
        let timeout = self.board.proxy_config().connect_timeout;
        let topics = match crate::kafka::KafkaConn::connect_any(&boot, timeout).await {
            Ok(mut conn) => conn.topic_ids().await,
            Err(e) => Err(e),
        };
        match topics {
            Ok(topics) => {
                for (name, id) in topics {
                    self.topic_ids.learn(&self.cluster, &name, id);
                }
            }
            Err(e) => {
                tracing::warn!(cluster = %self.cluster, error = %e, "cannot learn the cluster's topic ids")
            }
        }
    }
}

/// One API family's behaviour. Both hooks default to doing nothing: a
/// filter overrides what it needs.
pub(crate) trait Filter {
    /// Looks at a request before it is forwarded.
    async fn request(&self, _cx: &ConnCtx, req: Request) -> Result<Verdict, Fault> {
        Ok(req.forward())
    }

    /// Learns from the response to a request this filter forwarded.
    fn response(&self, _cx: &ConnCtx, _observe: Observe, _version: i16, _payload: &[u8]) {}
}

/// Runs a request through the chain.
pub async fn on_request(cx: &ConnCtx, req: Request) -> Result<Verdict, Fault> {
    if let Some(refused) = clients::request(cx, &req)? {
        return Ok(refused);
    }
    match req.api {
        ApiKey::Fetch | ApiKey::ListOffsets | ApiKey::OffsetForLeaderEpoch => {
            reads::Reads.request(cx, req).await
        }
        ApiKey::Heartbeat | ApiKey::SyncGroup | ApiKey::LeaveGroup | ApiKey::OffsetCommit => {
            groups::Groups.request(cx, req).await
        }
        ApiKey::ConsumerGroupHeartbeat => consumer::Consumer.request(cx, req).await,
        ApiKey::Produce => {
            // One walk of the batches serves both Produce filters.
            let view = crate::codec::produce_batches(req.body(), req.version);
            if let Some(refused) = provenance::refuse(cx, &req, view.as_ref().ok())? {
                return Ok(refused);
            }
            if let Some(held) = fleet::refuse(cx, &req, view.as_ref().ok())? {
                return Ok(held);
            }
            if let Ok(v) = view.as_ref() {
                if let Some(refused) = clients::produce(cx, &req, v)? {
                    return Ok(refused);
                }
            }
            producers::produce(cx, req, view).await
        }
        ApiKey::InitProducerId => producers::Producers.request(cx, req).await,
        ApiKey::AddPartitionsToTxn
        | ApiKey::AddOffsetsToTxn
        | ApiKey::TxnOffsetCommit
        | ApiKey::EndTxn => txn::Txn.request(cx, req).await,
        ApiKey::OffsetFetch => {
            let observe = clients::offset_fetch(cx, &req);
            Ok(Verdict::Forward(req.frame, observe))
        }
        _ => Ok(req.forward()),
    }
}

/// Hands what a filter asked to observe the response it was waiting for.
pub fn on_response(cx: &ConnCtx, observe: Observe, version: i16, payload: &[u8]) {
    match observe {
        Observe::Nothing => {}
        o @ Observe::Commit { .. } => groups::Groups.response(cx, o, version, payload),
        o @ (Observe::ProducerId(_) | Observe::Produced(_)) => {
            producers::Producers.response(cx, o, version, payload)
        }
        Observe::Offsets { client_id, group } => {
            clients::offset_fetch_response(cx, &client_id, group.as_deref(), version, payload)
        }
    }
}
