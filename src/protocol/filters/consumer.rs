//! KIP-848 ConsumerGroupHeartbeat: a member from before a switch is fenced
//! (it drops its assignment and rejoins on the active cluster with epoch 0,
//! as after any fencing, and reads its translated committed offsets); the
//! topic ids of the partitions it owns are mapped from kflip's virtual ids
//! onto the active cluster's.

use super::{ConnCtx, Filter, Request, Verdict};
use crate::codec as wire;
use crate::error::Fault;

/// The filter for ConsumerGroupHeartbeat.
pub struct Consumer;

impl Filter for Consumer {
    async fn request(&self, cx: &ConnCtx, req: Request) -> Result<Verdict, Fault> {
        consumer_heartbeat(cx, req).await
    }
}

/// Kafka's FENCED_MEMBER_EPOCH: a KIP-848 member must rejoin with epoch 0.
const FENCED_MEMBER_EPOCH: i16 = 110;

/// A KIP-848 heartbeat: a member from before the switch is fenced (it
/// drops its assignment and rejoins on the active cluster with epoch 0, as
/// after any fencing, and reads its translated committed offsets); the
/// topic ids of the partitions it owns are mapped from kflip's virtual ids
/// onto the active cluster's.
async fn consumer_heartbeat(cx: &ConnCtx, mut req: Request) -> Result<Verdict, Fault> {
    let version = req.version;
    use crate::codec::consumer_group as cg;
    let key = cx.key(req.frame.payload());
    let hb = cg::heartbeat(req.body(), version)
        .map_err(|e| Fault::client(format!("bad ConsumerGroupHeartbeat request: {e}")))?;
    let failover = &cx.board.tracker;
    if failover.consumer_heartbeat(&key, &hb.group_id, &hb.member_id, hb.member_epoch, cx.epoch) {
        tracing::info!(client = %key.0, group = %hb.group_id, "consumer-protocol member from before the switch fenced; it rejoins");
        crate::failover::switch::leave_old_group(
            &cx.board,
            &hb.group_id,
            &hb.member_id,
            crate::kafka::groups::Protocol::Consumer,
        );
        let resp = kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default()
            .with_error_code(FENCED_MEMBER_EPOCH)
            .with_error_message(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                "the active cluster changed: rejoin",
            )))
            .with_member_id(Some(kafka_protocol::protocol::StrBytes::from_string(
                hb.member_id.clone(),
            )))
            .with_member_epoch(-1);
        let answer =
            wire::response_frame(&resp, "ConsumerGroupHeartbeat", version, req.correlation_id)?;
        return Ok(Verdict::answer(answer));
    }
    if !hb.topic_ids.is_empty() {
        let ids = &cx.topic_ids;
        let body = req.body();
        let unknown = hb.topic_ids.iter().any(|at| {
            <[u8; 16]>::try_from(&body[at.clone()]).is_ok_and(|b| {
                ids.real_of(&cx.cluster, uuid::Uuid::from_bytes(b))
                    .is_none()
            })
        });
        if unknown {
            cx.learn_topic_ids().await;
        }
        cg::map_topic_ids(req.body_mut(), &hb, |virt| {
            ids.real_of(&cx.cluster, virt).unwrap_or(virt)
        });
    }
    Ok(req.forward())
}
