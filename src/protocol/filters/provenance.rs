//! Provenance cannot be forged through kflip: a client Produce whose
//! records carry the `kflip-origin` header is refused. Only the
//! replication engine writes that header (straight to the target, never
//! through the proxy), and the engine skips records whose header says they
//! came from the target cluster: a forged one would make a record skip
//! replication, a silent loss.
//!
//! The whole request is refused with INVALID_RECORD (every client treats it
//! as permanent and reports it to the application); a request with acks=0
//! expects no answer and is dropped with a warning. A producer that writes
//! to the brokers directly, bypassing kflip, is not checked here; see
//! docs/replication.md.

use super::{ConnCtx, Request, Verdict};
use crate::codec::records::{has_header, RecordsError};
use crate::codec::{self as wire, ProduceView};
use crate::error::Fault;
use crate::replication::provenance::HEADER;

/// Kafka's INVALID_RECORD.
pub const INVALID_RECORD: i16 = 87;

/// The answer to a Produce request that carries forged provenance (an
/// INVALID_RECORD response, or [`Verdict::Drop`] for acks=0), or `None` to
/// let it go on. `view` is the request's batches, walked once for every
/// filter of Produce.
pub fn refuse(
    cx: &ConnCtx,
    req: &Request,
    view: Option<&ProduceView>,
) -> Result<Option<Verdict>, Fault> {
    // Before v3 (message sets), records carry no headers.
    let Some(view) = view else {
        return Ok(None);
    };
    let Some(why) = refusal(req.body(), view) else {
        return Ok(None);
    };
    let key = cx.key(req.frame.payload());
    let acks = crate::codec::header::produce_acks(req.body(), req.version).unwrap_or(0);
    tracing::warn!(client = %key.0, peer = %cx.peer, acks, reason = %why, "Produce refused");
    if acks == 0 {
        return Ok(Some(Verdict::Drop));
    }
    let answer = wire::produce_error_response(
        req.version,
        req.correlation_id,
        view,
        INVALID_RECORD,
        Some(&why),
    )?;
    Ok(Some(Verdict::answer(answer)))
}

/// Why a Produce request must be refused, if it must.
fn refusal(body: &[u8], view: &ProduceView) -> Option<String> {
    for b in &view.batches {
        let Some(bytes) = body.get(b.start..b.start + b.len) else {
            continue;
        };
        match has_header(bytes, HEADER.as_bytes()) {
            Ok(false) => {}
            Ok(true) => {
                return Some(format!(
                    "a record for {}-{} carries the {HEADER} header, which only kflip's replication engine writes",
                    b.topic, b.partition
                ))
            }
            Err(e @ RecordsError::TooLarge { .. }) => {
                return Some(format!("{}-{}: {e}", b.topic, b.partition))
            }
            // The broker validates every batch and refuses a corrupt one.
            Err(e) => tracing::debug!(topic = %b.topic, partition = b.partition, error = %e, "batch not walked; the broker validates it"),
        }
    }
    None
}
