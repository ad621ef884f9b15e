//! A proxy behind its fleet takes no writes for the cluster the fleet has
//! left.
//!
//! When most live proxies of the fleet (seen through the state topics, see
//! `crate::admin::fleet`) forward to another cluster than this one, this
//! proxy's file is the old one (a ConfigMap not delivered yet, a rejected
//! reload): writes it forwarded would land on a cluster the other clients
//! have left. Its Produce requests are answered NOT_LEADER_OR_FOLLOWER, a
//! retriable error: producers refresh metadata and retry, and their
//! records go through once this proxy's file catches up (or the fleet
//! comes back). Reads go on. A Produce with acks=0 expects no answer and is
//! dropped, with a warning.

use super::{ConnCtx, Request, Verdict};
use crate::codec::{self as wire, ProduceView};
use crate::error::Fault;

/// Kafka's NOT_LEADER_OR_FOLLOWER.
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// The answer to a Produce while the fleet forwards elsewhere, or `None`.
pub fn refuse(
    cx: &ConnCtx,
    req: &Request,
    view: Option<&ProduceView>,
) -> Result<Option<Verdict>, Fault> {
    let Some(fleet_on) = cx.board.fleet_elsewhere() else {
        return Ok(None);
    };
    if fleet_on == cx.cluster {
        return Ok(None);
    }
    let Some(view) = view else {
        return Ok(None);
    };
    let acks = crate::codec::header::produce_acks(req.body(), req.version).unwrap_or(0);
    crate::error::log_closing(
        &Fault::client(format!(
            "{}: Produce held back: most of the fleet forwards to {fleet_on}, this proxy still to {}",
            cx.peer, cx.cluster
        )),
        "write refused",
    );
    if acks == 0 {
        return Ok(Some(Verdict::Drop));
    }
    let why = format!(
        "the kflip fleet forwards to {fleet_on}; this proxy's config still names {}",
        cx.cluster
    );
    let answer = wire::produce_error_response(
        req.version,
        req.correlation_id,
        view,
        NOT_LEADER_OR_FOLLOWER,
        Some(&why),
    )?;
    Ok(Some(Verdict::answer(answer)))
}
