//! The request loop of an upstream session, and the correlation queue it
//! shares with the response loop ([`super::responses`]).
//!
//! The request loop reads client frames, answers ApiVersions itself,
//! refuses what kflip does not serve, passes each request through the
//! filter chain ([`crate::protocol::filters`]), records each request that
//! expects a response in the session's correlation queue, and forwards the
//! frame. The response loop answers the queue in order.

use std::time::{Duration, Instant};

use crate::cluster::stream::{ReadHalf, WriteHalf};
use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::lazy_buf::LazyBufReader;
use super::session::Ctx;
use super::{auth, upstream, SwitchState};
use crate::admin::metrics::Timed;
use crate::codec::frame::{read_frame, Frame};
use crate::codec::header::{parse_request_head, produce_acks};
use crate::error::Fault;
use crate::failover::InFlight;
use crate::kafka::api_name;
use crate::protocol::api_versions;
use crate::protocol::filters::{self, Observe, Request, Verdict};
use crate::protocol::versions::{policy, Handling, VersionTable};

/// Most requests a client may have in flight on one connection; the request
/// loop stops reading when this many are waiting for responses.
pub(super) const MAX_IN_FLIGHT: usize = 1024;

/// The client reader's buffer while requests flow. Large request bodies
/// are read straight into their frame, so this serves runs of small ones.
pub(super) const CLIENT_BUFFER: usize = 64 * 1024;

/// What the response loop must send next, in request order: the session's
/// correlation queue. Kept small: tokio allocates a channel's slots 32 at a
/// time, and every idle connection holds one such block.
pub(super) enum Pending<'a> {
    /// Read the response to this request from upstream.
    Upstream(Box<Awaited<'a>>),
    /// A response kflip made itself.
    Local(Frame),
    /// A response kflip made itself, sent after a pause (an empty Fetch
    /// answer waits like a broker's long poll would).
    Delayed(Box<(Bytes, Duration)>),
}

/// A forwarded request whose response is awaited from upstream.
pub(super) struct Awaited<'a> {
    pub(super) correlation_id: i32,
    pub(super) api: ApiKey,
    pub(super) version: i16,
    pub(super) handling: Handling,
    /// What the filter that forwarded it learns from the response.
    pub(super) observe: Observe,
    /// Counts the request as in flight until it is answered or dropped.
    pub(super) _counted: InFlight,
    /// Its latency, or an error if it is never answered.
    pub(super) timed: Timed<'a>,
}

/// Why the request loop stopped reading.
pub(super) enum Stop {
    /// The client closed its side.
    ClientClosed,
    /// The active cluster changed.
    Switched(SwitchState),
    /// The upstream SASL session is about to expire
    /// ([`super::session::Renewal`]).
    Renew,
    /// kflip is shutting down.
    Shutdown,
}

fn ended() -> Fault {
    Fault::internal("response loop ended")
}

pub(super) async fn request_loop<'a>(
    ctx: &'a Ctx,
    client: &mut LazyBufReader<ReadHalf>,
    upstream: &mut WriteHalf,
    tx: mpsc::Sender<Pending<'a>>,
    switch: &mut watch::Receiver<SwitchState>,
) -> Result<Stop, Fault> {
    let mut versions: Option<VersionTable> = None;
    let mut first = ctx.first;
    let mut sasl = auth::SaslState::default();
    loop {
        let wait = if first {
            ctx.cfg.handshake_timeout
        } else {
            ctx.cfg.idle_timeout
        };
        // Between requests the reader gives its buffer back (it keeps one
        // only while holding unread bytes): an idle connection holds none.
        client.release();
        // The select waits for a frame's first bytes without taking them
        // (fill_buf keeps what it read in the buffer), so a switch or a
        // renewal never cuts a frame in half; the frame is read after it.
        tokio::select! {
            biased;
            _ = ctx.shared.shutdown.cancelled() => return Ok(Stop::Shutdown),
            changed = switch.changed() => {
                if changed.is_err() {
                    continue;
                }
                let mut next = switch.borrow_and_update().clone();
                // A planned switch first holds requests while replication
                // catches up; in-flight ones go on meanwhile.
                while next.holding && next.epoch == ctx.epoch {
                    tokio::select! {
                        _ = ctx.shared.shutdown.cancelled() => return Ok(Stop::Shutdown),
                        changed = switch.changed() => if changed.is_err() { break },
                    }
                    next = switch.borrow_and_update().clone();
                }
                if next.epoch != ctx.epoch && next.active != ctx.cluster {
                    return Ok(Stop::Switched(next));
                }
                continue;
            }
            _ = renewal_due(ctx) => return Ok(Stop::Renew),
            ready = tokio::time::timeout(wait, client.fill_buf()) => match ready {
                Err(_) if first => return Err(Fault::client(format!("no request within proxy.handshake_timeout ({wait:?})"))),
                Err(_) => return Err(Fault::client(format!("idle for proxy.idle_timeout ({wait:?})"))),
                Ok(Err(e)) => return Err(Fault::client(format!("client read failed: {e}"))),
                Ok(Ok([])) => return Ok(Stop::ClientClosed),
                Ok(Ok(_)) => {}
            },
        }
        let frame =
            match tokio::time::timeout(wait, read_frame(client, ctx.cfg.max_frame_bytes)).await {
                Err(_) => {
                    return Err(Fault::client(format!(
                        "a request took longer than {wait:?} to arrive"
                    )))
                }
                Ok(Err(e)) => return Err(Fault::client(format!("bad frame from client: {e}"))),
                Ok(Ok(None)) => return Ok(Stop::ClientClosed),
                Ok(Ok(Some(f))) => f,
            };
        first = false;
        let arrived = Instant::now();
        let head = parse_request_head(frame.payload())
            .map_err(|e| Fault::client(format!("bad request header: {e}")))?;
        let metrics = &*ctx.shared.metrics;
        metrics.request(head.api_key, frame.payload().len() + 4);
        let refused = |e: Fault| {
            metrics.error(head.api_key);
            e
        };
        let span = tracing::debug_span!(
            "request",
            api_key = head.api_key,
            correlation_id = head.correlation_id
        );
        let _enter = span.enter();
        let api = ApiKey::try_from(head.api_key)
            .map_err(|()| {
                Fault::client(format!(
                    "unknown API key {} (kflip refuses keys it cannot decode)",
                    head.api_key
                ))
            })
            .map_err(refused)?;
        let (handling, _) = policy(api)
            .ok_or_else(|| {
                Fault::client(format!(
                    "{} (key {}) is not served through kflip",
                    api_name(head.api_key),
                    head.api_key
                ))
            })
            .map_err(refused)?;
        if versions.is_none() {
            versions =
                Some(Box::pin(upstream::advertised_versions(&ctx.shared, &ctx.cluster)).await?);
        }
        let table = versions.as_ref().expect("set above");
        if handling == Handling::Local {
            if api == ApiKey::ApiVersions {
                let body = &frame.payload()[head.body_offset.unwrap_or(0)..];
                if let Some((name, ver)) =
                    crate::codec::clients::api_versions_software(body, head.api_version)
                {
                    ctx.filters.conn.set_software(&name, &ver);
                }
                let answer = api_versions::answer(head.api_version, head.correlation_id, table);
                tx.send(Pending::Local(answer)).await.map_err(|_| ended())?;
                continue;
            }
            // SASL after login: the client re-authenticates (KIP-368), as
            // the same principal.
            let body = &frame.payload()[head.body_offset.unwrap_or(0)..];
            let outcome = Box::pin(auth::sasl_request(
                &ctx.shared,
                &ctx.cfg,
                &mut sasl,
                api,
                head.api_version,
                head.correlation_id,
                body,
            ))
            .await?;
            let (answer, stop) = match outcome {
                auth::Outcome::Reply(out) => (out, None),
                auth::Outcome::Authenticated(p, out) if Some(&p) == ctx.principal.as_ref() => {
                    tracing::debug!(principal = p, "client re-authenticated");
                    (out, None)
                }
                auth::Outcome::Authenticated(p, _) => {
                    return Err(Fault::client(format!(
                        "re-authenticated as {p}, not as the principal the connection logged in as"
                    )))
                }
                auth::Outcome::Refused(out, why) => (out, Some(why)),
            };
            tx.send(Pending::Delayed(Box::new((answer, Duration::ZERO))))
                .await
                .map_err(|_| ended())?;
            if let Some(why) = stop {
                return Err(why);
            }
            continue;
        }
        let range = table.get(&head.api_key).copied();
        match range {
            Some(r) if (r.min..=r.max).contains(&head.api_version) => {}
            _ => {
                metrics.error(head.api_key);
                return Err(Fault::client(format!(
                    "{:?} v{} is not among the versions kflip advertised ({})",
                    api,
                    head.api_version,
                    range
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "none".into())
                )));
            }
        }
        let body_offset = head.body_offset.unwrap_or(0);
        let expects_response = if api == ApiKey::Produce {
            produce_acks(&frame.payload()[body_offset..], head.api_version)
                .map_err(|e| Fault::client(format!("bad Produce request: {e}")))?
                != 0
        } else {
            true
        };
        let req = Request {
            api,
            version: head.api_version,
            correlation_id: head.correlation_id,
            body_offset,
            frame,
        };
        let (frame, observe) = match Box::pin(filters::on_request(&ctx.filters, req)).await? {
            Verdict::Forward(frame, observe) => (frame, observe),
            Verdict::Answer(answer, pause) => {
                tx.send(Pending::Delayed(Box::new((answer, pause))))
                    .await
                    .map_err(|_| ended())?;
                continue;
            }
            Verdict::Drop => continue,
        };
        if expects_response {
            let pending = Pending::Upstream(Box::new(Awaited {
                correlation_id: head.correlation_id,
                api,
                version: head.api_version,
                handling,
                observe,
                _counted: ctx.shared.board.forwarded(),
                timed: Timed::new(metrics, head.api_key, arrived),
            }));
            tx.send(pending).await.map_err(|_| ended())?;
        }
        upstream
            .write_all(&frame.0)
            .await
            .map_err(|e| Fault::upstream(&ctx.cluster, format!("write failed: {e}")))?;
    }
}

/// Resolves when the session's upstream SASL session is to be renewed;
/// never for a session that does not expire.
async fn renewal_due(ctx: &Ctx) {
    match ctx.renewal {
        Some(r) => tokio::time::sleep_until(r.at).await,
        None => std::future::pending().await,
    }
}
