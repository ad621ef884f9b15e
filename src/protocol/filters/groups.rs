//! Group requests of members from before a switch. Such a member is
//! fenced: its Heartbeat and SyncGroup are answered UNKNOWN_MEMBER_ID, so
//! it rejoins on the new cluster (and is removed from its group on the old
//! one); an OffsetCommit it sends meanwhile carries old-space offsets, which
//! are translated and committed as a simple commit. Commits the cluster
//! accepts are observed for the engine.

use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::ApiKey;

use super::{ConnCtx, Filter, Observe, Request, Verdict};
use crate::codec as wire;
use crate::error::Fault;

/// Kafka's UNKNOWN_MEMBER_ID: the member must rejoin its group.
pub const UNKNOWN_MEMBER_ID: i16 = 25;

/// The filter for Heartbeat, SyncGroup, LeaveGroup and OffsetCommit.
pub struct Groups;

fn bad(api: ApiKey, e: impl std::fmt::Display) -> Fault {
    Fault::client(format!("bad {api:?} request: {e}"))
}

impl Filter for Groups {
    async fn request(&self, cx: &ConnCtx, req: Request) -> Result<Verdict, Fault> {
        let (api, version) = (req.api, req.version);
        let failover = &cx.board.tracker;
        match api {
            ApiKey::Heartbeat | ApiKey::SyncGroup => {
                let key = cx.key(req.frame.payload());
                let body = req.body();
                let m = wire::group_member(body, api, version).map_err(|e| bad(api, e))?;
                if failover.group_request(
                    &key,
                    &m.group_id,
                    &m.member_id,
                    m.generation_id,
                    cx.epoch,
                ) {
                    tracing::info!(client = %key.0, group = %m.group_id, "member from before the switch fenced; it rejoins");
                    crate::failover::switch::leave_old_group(
                        &cx.board,
                        &m.group_id,
                        &m.member_id,
                        crate::kafka::groups::Protocol::Classic,
                    );
                    let answer = wire::error_response(
                        api,
                        version,
                        req.correlation_id,
                        UNKNOWN_MEMBER_ID,
                        body,
                    )?;
                    return Ok(Verdict::answer(answer));
                }
                Ok(req.forward())
            }
            ApiKey::LeaveGroup => {
                let key = cx.key(req.frame.payload());
                let body = req.body();
                if let Some(group) = wire::leave_group_id(body, version) {
                    failover.left(&key, &group);
                }
                Ok(req.forward())
            }
            ApiKey::OffsetCommit if version >= 2 => {
                let key = cx.key(req.frame.payload());
                let body = req.body();
                let view = wire::offset_commit(body, version).map_err(|e| bad(api, e))?;
                let asked = |f: &dyn Fn(&wire::CommitOffset) -> i64| Observe::Commit {
                    group: view.group_id.clone(),
                    offsets: view
                        .offsets
                        .iter()
                        .map(|o| ((o.topic.to_string(), o.partition), f(o)))
                        .collect(),
                };
                let fenced = failover.group_request(
                    &key,
                    &view.group_id,
                    &view.member_id,
                    view.generation_id,
                    cx.epoch,
                );
                // A client that lost its membership may commit its old-space
                // positions as a simple commit (generation -1, as librdkafka's
                // auto-commit and kafka-python do before rejoining): those are
                // old-space too while the client has not rejoined.
                let simple = view.generation_id < 0 || view.member_id.is_empty();
                let old_space = fenced || (simple && failover.fetch_held(&key, cx.epoch));
                if !old_space {
                    return Ok(Verdict::Forward(req.frame, asked(&|o| o.offset)));
                }
                // A member from before the switch commits what it read from the
                // old cluster: translate, commit as a simple commit (the new
                // cluster does not know the member), and let the fence on its
                // next heartbeat make it rejoin.
                match translate_commit(cx, &view) {
                    Some(offsets) => {
                        let new_body = wire::rewrite_offset_commit(
                            body,
                            version,
                            |t, p, o| offsets.get(&(t.to_string(), p)).copied().unwrap_or(o),
                            true,
                        )
                        .map_err(|e| bad(api, e))?;
                        tracing::info!(client = %key.0, group = %view.group_id, "commit from before the switch translated");
                        let observe = asked(&|o| {
                            offsets
                                .get(&(o.topic.to_string(), o.partition))
                                .copied()
                                .unwrap_or(o.offset)
                        });
                        Ok(Verdict::Forward(req.reframe(&new_body), observe))
                    }
                    None => {
                        tracing::warn!(client = %key.0, group = %view.group_id, "commit from before the switch cannot be translated; fenced");
                        let answer = wire::error_response(
                            api,
                            version,
                            req.correlation_id,
                            UNKNOWN_MEMBER_ID,
                            body,
                        )?;
                        Ok(Verdict::answer(answer))
                    }
                }
            }
            _ => Ok(req.forward()),
        }
    }

    fn response(&self, cx: &ConnCtx, observe: Observe, version: i16, payload: &[u8]) {
        let Observe::Commit { group, offsets } = observe else {
            return;
        };
        match wire::offset_commit_response_errors(payload, version) {
            Ok(parts) => {
                let accepted: HashSet<(String, i32)> = parts
                    .into_iter()
                    .filter(|p| p.2 == 0)
                    .map(|(t, p, _)| (t, p))
                    .collect();
                let done = offsets.into_iter().filter(|(k, _)| accepted.contains(k));
                cx.board.tracker.observe_commit(&cx.cluster, &group, done);
            }
            Err(e) => tracing::debug!(error = %e, "OffsetCommit response not understood"),
        }
    }
}

/// The translation of every offset of an old-space commit, or `None` if
/// one of them cannot be translated.
fn translate_commit(cx: &ConnCtx, view: &wire::CommitView) -> Option<HashMap<(String, i32), i64>> {
    let from = cx.board.tracker.previous_active()?;
    let mut out = HashMap::new();
    for o in &view.offsets {
        let (topic, t) =
            cx.board
                .engine
                .translate(&from, &cx.cluster, &o.topic, o.partition, o.offset)?;
        if *topic != *o.topic {
            return None;
        }
        out.insert((o.topic.to_string(), o.partition), t);
    }
    Some(out)
}
