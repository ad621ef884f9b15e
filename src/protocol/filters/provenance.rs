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

use super::{ConnCtx, Filter, Request, Verdict};
use crate::codec as wire;
use crate::codec::records::{has_header, RecordsError};
use crate::error::Fault;
use crate::replication::provenance::HEADER;

/// Kafka's INVALID_RECORD.
pub const INVALID_RECORD: i16 = 87;

/// The filter that refuses forged provenance.
pub struct Provenance;

impl Filter for Provenance {
    async fn request(&self, cx: &ConnCtx, req: Request) -> Result<Verdict, Fault> {
        let Some(why) = refusal(&req) else {
            return Ok(req.forward());
        };
        let key = cx.key(req.frame.payload());
        let acks = crate::codec::header::produce_acks(req.body(), req.version).unwrap_or(0);
        tracing::warn!(client = %key.0, peer = %cx.peer, acks, reason = %why, "Produce refused");
        if acks == 0 {
            return Ok(Verdict::Drop);
        }
        let view = wire::produce_batches(req.body(), req.version)
            .map_err(|e| Fault::client(format!("bad Produce request: {e}")))?;
        let answer = wire::produce_error_response(
            req.version,
            req.correlation_id,
            &view,
            INVALID_RECORD,
            Some(&why),
        )?;
        Ok(Verdict::answer(answer))
    }
}

/// Why a Produce request must be refused, if it must.
fn refusal(req: &Request) -> Option<String> {
    let body = req.body();
    // Before v3 (message sets), records carry no headers.
    let view = wire::produce_batches(body, req.version).ok()?;
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
