//! The rewrite of responses that carry broker addresses or node ids
//! (Metadata, FindCoordinator, DescribeCluster, ...): every broker a
//! cluster announces gets a virtual broker and its listener, and clients
//! only ever see kflip's addresses. It stays with the proxy, not the
//! filter chain, because it binds the listeners it points clients at.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

use super::listeners;
use super::session::Ctx;
use crate::error::Fault;
use crate::protocol::rewrite::{NodeMap, Rewritable};
use crate::routing::RealNodeId;

/// Rewrites a response frame (with its length prefix).
pub(super) async fn rewrite(
    ctx: &Ctx,
    api: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<Bytes, Fault> {
    let decoded = Rewritable::decode(api, version, frame.slice(4..))
        .map_err(|e| Fault::upstream(&ctx.cluster, e))?;
    let Some(mut msg) = decoded else {
        return Ok(frame);
    };
    let announced = msg.brokers();
    if !announced.is_empty() {
        let brokers: Vec<_> = announced
            .iter()
            .map(|a| {
                (
                    RealNodeId(a.node_id),
                    crate::routing::BrokerAddr {
                        host: a.host.clone(),
                        port: a.port,
                    },
                )
            })
            .collect();
        for slot in ctx.shared.topology.learn(&ctx.cluster, &brokers) {
            match slot {
                Ok(slot) => {
                    listeners::ensure(&ctx.shared, slot)
                        .await
                        .map_err(Fault::internal)?;
                }
                Err(e) => tracing::error!(error = %e, "broker not exposed"),
            }
        }
    }
    let unknown = msg
        .unnamed_topic_ids()
        .into_iter()
        .any(|id| ctx.shared.topic_ids.virtual_of(&ctx.cluster, id).is_none());
    if unknown {
        ctx.filters.learn_topic_ids().await;
    }
    let map = ConnMap::new(ctx);
    if !msg.rewrite(&map) {
        return Ok(frame);
    }
    Ok(msg
        .encode()
        .map_err(|e| Fault::internal(format!("re-encoding a {api:?} response: {e}")))?
        .freeze())
}

/// Maps one cluster's node ids onto kflip's virtual brokers.
pub(super) struct ConnMap<'a> {
    ctx: &'a Ctx,
    host: StrBytes,
}

impl<'a> ConnMap<'a> {
    pub(super) fn new(ctx: &'a Ctx) -> Self {
        ConnMap {
            ctx,
            host: StrBytes::from_string(ctx.cfg.advertised_host.clone()),
        }
    }
}

impl NodeMap for ConnMap<'_> {
    fn node(&self, real: i32) -> i32 {
        match self
            .ctx
            .shared
            .topology
            .virtual_id(&self.ctx.cluster, RealNodeId(real))
        {
            Ok(v) => v.0,
            Err(e) => {
                tracing::error!(error = %e, "broker not exposed");
                -1
            }
        }
    }

    fn endpoint(&self, real: i32) -> (StrBytes, i32) {
        let slot = self
            .ctx
            .shared
            .topology
            .virtual_id(&self.ctx.cluster, RealNodeId(real));
        // Every announced broker had its listener bound before rewriting; an
        // unannounced one is pointed at the bootstrap listener, never at a
        // real address.
        let port = slot
            .ok()
            .and_then(|s| self.ctx.shared.listeners.port(s))
            .unwrap_or_else(|| {
                self.ctx
                    .shared
                    .bootstrap_port
                    .load(std::sync::atomic::Ordering::Relaxed)
            });
        (self.host.clone(), i32::from(port))
    }

    fn cluster_id(&self) -> StrBytes {
        StrBytes::from_string(self.ctx.cfg.cluster_id.clone())
    }

    fn topic_id(&self, name: &str, real: uuid::Uuid) -> uuid::Uuid {
        self.ctx
            .shared
            .topic_ids
            .learn(&self.ctx.cluster, name, real)
    }

    fn topic_id_of_real(&self, real: uuid::Uuid) -> Option<uuid::Uuid> {
        self.ctx
            .shared
            .topic_ids
            .virtual_of(&self.ctx.cluster, real)
    }
}
