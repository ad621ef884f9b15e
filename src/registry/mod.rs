//! The Schema Registry pass-through (`schema_registry.listen`): an HTTP
//! listener that forwards every request to the registry of the active
//! cluster (`clusters.<active>.schema_registry`) and follows a switch of
//! `proxy.active` with the same hold and drain as Kafka traffic.
//!
//! - [`hold`]: a request is admitted through the switch's gate: it waits
//!   out a planned switch's hold (bounded by the hold's deadline, then 503)
//!   and is counted as in flight, so the switch's drain waits for it;
//! - [`forward`]: the exchange with the registry: hop-by-hop headers
//!   dropped, `Host` rewritten, bodies bounded, failures answered as
//!   Confluent-style JSON errors.
//!
//! A write (POST, PUT, DELETE) is never sent to the registry of a cluster
//! being left: it either started before the hold (and the drain waits for
//! it) or waits for the switch and goes to the new cluster's registry.

pub mod forward;
pub mod hold;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::failover::Switchboard;

pub use forward::error_response;

/// Largest request or response body passed through: schemas are small,
/// and a body is held in memory while it is forwarded.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Most client connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 256;

/// Why the pass-through could not start.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// `schema_registry.listen` could not be bound.
    #[error("schema_registry.listen: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What every request needs.
struct Ctx {
    /// The running config: each request reads the registry URLs and the
    /// timeout afresh, so a reload applies to the next request.
    config: watch::Receiver<Arc<Config>>,
    /// The proxy's switch: the active cluster, the hold, the drain.
    board: Arc<Switchboard>,
    /// Cancelled on shutdown: held requests are answered 503.
    shutdown: CancellationToken,
}

/// Binds `listen` and serves until `shutdown`; returns the bound address.
pub async fn start(
    listen: &str,
    config: watch::Receiver<Arc<Config>>,
    board: Arc<Switchboard>,
    shutdown: CancellationToken,
) -> Result<SocketAddr, RegistryError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| RegistryError::Bind {
            addr: listen.to_string(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| RegistryError::Bind {
            addr: listen.to_string(),
            source,
        })?;
    tracing::info!(listen = %addr, "schema registry pass-through listening");
    let ctx = Arc::new(Ctx {
        config,
        board,
        shutdown,
    });
    tokio::spawn(serve(listener, ctx));
    Ok(addr)
}

/// Starts the pass-through if the config has a `schema_registry:` section
/// and this process runs the proxy (`board`), whose switch it follows.
pub async fn start_configured(
    board: Option<&Arc<Switchboard>>,
    config: &watch::Receiver<Arc<Config>>,
    shutdown: &CancellationToken,
) -> Result<(), RegistryError> {
    let Some(settings) = config.borrow().schema_registry.clone() else {
        return Ok(());
    };
    match board {
        Some(board) => {
            start(
                &settings.listen,
                config.clone(),
                board.clone(),
                shutdown.clone(),
            )
            .await?;
        }
        None => {
            tracing::warn!(listen = %settings.listen, "schema_registry: the pass-through follows the proxy, which this command does not run (use kflip proxy or kflip run)");
        }
    }
    Ok(())
}

async fn serve(listener: TcpListener, ctx: Arc<Ctx>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let stream = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "schema registry accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "schema registry client connection ended");
            }
        });
    }
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(settings) = ctx.config.borrow().schema_registry.clone() else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            50302,
            "the schema_registry section was removed from the config; restart kflip to close this listener",
        );
    };
    let (parts, body) = req.into_parts();
    // The body is read before the gate: a slow upload is not in flight
    // and does not hold up a switch's drain.
    let read = Limited::new(body, MAX_BODY_BYTES).collect();
    let body = match tokio::time::timeout(settings.request_timeout, read).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                41301,
                &format!("request body larger than {MAX_BODY_BYTES} bytes"),
            )
        }
        Ok(Err(e)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                40001,
                &format!("cannot read the request body: {e}"),
            )
        }
        Err(_) => {
            return error_response(
                StatusCode::REQUEST_TIMEOUT,
                40801,
                "the request body did not arrive within schema_registry.request_timeout",
            )
        }
    };
    let (state, _in_flight) = match hold::admit(&ctx.board, &ctx.shutdown).await {
        Ok(admitted) => admitted,
        Err(refused) => {
            tracing::warn!(method = %parts.method, path = %parts.uri.path(), reason = %refused, "schema registry request refused");
            return error_response(StatusCode::SERVICE_UNAVAILABLE, 50301, &refused.to_string());
        }
    };
    let Some(url) = ctx.board.cluster(&state.active).schema_registry else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            50302,
            &format!(
                "the active cluster {} has no schema_registry URL in the config",
                state.active
            ),
        );
    };
    match forward::forward(&url, &parts, body, settings.request_timeout).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(cluster = %state.active, method = %parts.method, path = %parts.uri.path(), error = %e, "schema registry request failed");
            e.response()
        }
    }
}
