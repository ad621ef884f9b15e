//! Reads: a Fetch of a consumer from before a switch is held (answered
//! empty) until it rejoins its group, since its positions are in the old
//! cluster's offset space; leader epochs in Fetch, ListOffsets and
//! OffsetForLeaderEpoch are cleared, as they belong to one cluster.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;

use super::{ConnCtx, Filter, Request, Verdict};
use crate::codec::{self as wire, epochs};
use crate::error::Fault;

/// Longest pause before an empty answer to a held Fetch.
const MAX_HELD_FETCH: Duration = Duration::from_millis(500);

/// The filter for Fetch, ListOffsets and OffsetForLeaderEpoch.
pub struct Reads;

fn bad(api: ApiKey, e: impl std::fmt::Display) -> Fault {
    Fault::client(format!("bad {api:?} request: {e}"))
}

impl Filter for Reads {
    async fn request(&self, cx: &ConnCtx, mut req: Request) -> Result<Verdict, Fault> {
        let (api, version) = (req.api, req.version);
        match api {
            ApiKey::ListOffsets => {
                epochs::clear_list_offsets(req.body_mut(), version).map_err(|e| bad(api, e))?;
                return Ok(req.forward());
            }
            ApiKey::OffsetForLeaderEpoch => {
                epochs::clear_offset_for_leader_epoch(req.body_mut(), version)
                    .map_err(|e| bad(api, e))?;
                return Ok(req.forward());
            }
            _ => {}
        }
        let key = cx.key(req.frame.payload());
        if !cx.board.tracker.fetch_held(&key, cx.epoch) {
            epochs::clear_fetch(req.body_mut(), version).map_err(|e| bad(api, e))?;
            return Ok(req.forward());
        }
        let view = match wire::fetch_request(req.body(), version) {
            Ok(view) => view,
            // Versions kflip cannot answer itself go on unchanged.
            Err(wire::ParseError::Unsupported { .. }) => return Ok(req.forward()),
            Err(e) => return Err(bad(api, e)),
        };
        tracing::debug!(client = %key.0, "fetch held until the consumer rejoins its group");
        let answer = wire::empty_fetch_response(version, req.correlation_id, &view)?;
        let pause = Duration::from_millis(view.max_wait_ms.max(0) as u64).min(MAX_HELD_FETCH);
        Ok(Verdict::Answer(answer, pause))
    }
}
