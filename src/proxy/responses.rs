//! The response loop of an upstream session.
//!
//! It takes the correlation queue in order (Kafka answers requests on one
//! connection in order), reads the matching upstream response within
//! [`ProxyConfig::idle_timeout`], checks its correlation id, lets the
//! filter that forwarded it observe it, rewrites it if its API carries
//! addresses, and writes it. Fetch responses are streamed
//! ([`crate::protocol::fetch`]).
//!
//! The loop's future lives as long as the connection, so what it holds
//! while waiting is kept small: the reading and rewriting of one response
//! is a boxed future of its own, allocated while that response moves.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::addresses::{rewrite, ConnMap};
use super::lazy_buf::LazyBufReader;
use super::loops::{Awaited, Pending};
use super::session::Ctx;
use crate::cluster::stream::{ReadHalf, WriteHalf};
use crate::codec::frame::read_frame;
use crate::config::ProxyConfig;
use crate::error::Fault;
use crate::protocol::fetch;
use crate::protocol::filters;
use crate::protocol::versions::Handling;

/// The upstream reader's buffer while responses flow: Fetch records are
/// copied to the client in chunks of this size.
const UPSTREAM_BUFFER: usize = 256 * 1024;

/// How long kflip waits for one upstream response: as long as it lets a
/// client stay idle (`proxy.idle_timeout`). Brokers answer within the
/// client's request timeout or hold a request for a bounded time (a
/// JoinGroup for the rebalance timeout, a Fetch for its max wait); a broker
/// that never answers would otherwise hold the session forever.
pub(super) fn response_timeout(cfg: &ProxyConfig) -> Duration {
    cfg.idle_timeout
}

fn client_write(e: std::io::Error) -> Fault {
    Fault::client(format!("client write failed: {e}"))
}

pub(super) async fn response_loop<'a>(
    ctx: &'a Ctx,
    upstream: ReadHalf,
    client: &mut WriteHalf,
    mut rx: mpsc::Receiver<Pending<'a>>,
) -> Result<(), Fault> {
    let metrics = &*ctx.shared.metrics;
    let mut upstream = LazyBufReader::new(upstream, UPSTREAM_BUFFER);
    loop {
        // Between responses the reader gives its buffer back (unless it
        // already holds the next response's first bytes): a connection
        // waiting for a request, or for a long-polling Fetch, holds none.
        upstream.release();
        let Some(pending) = rx.recv().await else {
            return Ok(());
        };
        let out = match pending {
            Pending::Local(frame) => frame.0.freeze(),
            Pending::Delayed(delayed) => {
                let (frame, pause) = *delayed;
                tokio::time::sleep(pause).await;
                frame
            }
            Pending::Upstream(awaited) => {
                Box::pin(answer(ctx, &mut upstream, client, *awaited)).await?;
                continue;
            }
        };
        client.write_all(&out).await.map_err(client_write)?;
        metrics.sent(out.len());
    }
}

/// Reads the upstream response to `awaited` and writes it to the client.
async fn answer(
    ctx: &Ctx,
    upstream: &mut LazyBufReader<ReadHalf>,
    client: &mut WriteHalf,
    awaited: Awaited<'_>,
) -> Result<(), Fault> {
    let metrics = &*ctx.shared.metrics;
    let bound = response_timeout(&ctx.cfg);
    let late = || {
        Fault::upstream(
            &ctx.cluster,
            format!("no response within {bound:?} (proxy.idle_timeout)"),
        )
    };
    let Awaited {
        correlation_id,
        api,
        version,
        handling,
        observe,
        timed,
        ..
    } = awaited;
    if api == ApiKey::Fetch && handling == Handling::Rewrite {
        // Streamed: the records go to the client as they arrive.
        let len = tokio::time::timeout(bound, read_len(upstream, ctx))
            .await
            .map_err(|_| late())??;
        client
            .write_all(&(len as i32).to_be_bytes())
            .await
            .map_err(client_write)?;
        let map = ConnMap::new(ctx);
        fetch::stream_fetch(upstream, client, len, version, correlation_id, &map)
            .await
            .map_err(|e| Fault::upstream(&ctx.cluster, e))?;
        metrics.sent(len + 4);
        timed.answered();
        return Ok(());
    }
    // Fetch responses are streamed; every other response is read whole, so
    // it is held to the same bound as requests.
    let frame = tokio::time::timeout(bound, read_frame(upstream, ctx.cfg.max_frame_bytes))
        .await
        .map_err(|_| late())?
        .map_err(|e| Fault::upstream(&ctx.cluster, e))?
        .ok_or_else(|| closed(ctx))?;
    let got = frame
        .payload()
        .get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    if got != Some(correlation_id) {
        return Err(Fault::upstream(
            &ctx.cluster,
            format!("response correlation id {got:?} does not match request {correlation_id}"),
        ));
    }
    filters::on_response(&ctx.filters, observe, version, frame.payload());
    let out = match handling {
        Handling::Rewrite => rewrite(ctx, api, version, frame.0.freeze()).await?,
        _ => frame.0.freeze(),
    };
    client.write_all(&out).await.map_err(client_write)?;
    metrics.sent(out.len());
    timed.answered();
    Ok(())
}

fn closed(ctx: &Ctx) -> Fault {
    Fault::upstream(
        &ctx.cluster,
        "closed the connection with requests in flight",
    )
}

/// Reads a response's length prefix.
async fn read_len(upstream: &mut LazyBufReader<ReadHalf>, ctx: &Ctx) -> Result<usize, Fault> {
    use tokio::io::AsyncReadExt;
    let mut prefix = [0u8; 4];
    upstream
        .read_exact(&mut prefix)
        .await
        .map_err(|_| closed(ctx))?;
    let len = i32::from_be_bytes(prefix);
    usize::try_from(len)
        .map_err(|_| Fault::upstream(&ctx.cluster, format!("negative frame length {len}")))
}
