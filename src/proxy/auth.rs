//! Clients authenticate to kflip (`proxy.sasl`), and each session logs in
//! upstream as its client's principal.
//!
//! Until a connection has authenticated it may send only ApiVersions,
//! SaslHandshake and SaslAuthenticate, in frames of at most
//! [`UNAUTHENTICATED_MAX_FRAME`] bytes, all within `proxy.auth_timeout`;
//! anything else closes it, as a broker does. PLAIN and SCRAM are checked
//! against the users file (salted keys only), OAUTHBEARER against the JWKS
//! file; both files, and the principals file, are re-read when they change
//! and a file that no longer loads keeps the last good one, with a warning.
//!
//! The principal a client authenticated as decides how its sessions log in
//! upstream: its own login for that cluster from the principals file, else
//! the cluster's own `sasl:`. A principal the file lists with no login for
//! the active cluster is refused at authentication, with a message that
//! says so, and its open sessions cannot follow a switch to such a cluster
//! (they close; the client's next login gets the same message).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncWriteExt;

use super::auth_files::current;
use super::{upstream, Shared};
use crate::auth::oauth::{JwtValidator, ValidationSettings};
use crate::auth::scram::{Mechanism as Scram, ScramServer, StoredCredential};
use crate::auth::users::Users;
use crate::auth::AuthError;
use crate::cluster::stream::{ReadHalf, WriteHalf};
use crate::codec::frame::read_frame;
use crate::codec::header::parse_request_head;
use crate::config::{ListenerSasl, Mechanism, ProxyConfig};
use crate::error::Fault;

/// Largest frame a connection may send before it has authenticated.
pub const UNAUTHENTICATED_MAX_FRAME: usize = 64 * 1024;

/// Kafka's UNSUPPORTED_SASL_MECHANISM.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka's SASL_AUTHENTICATION_FAILED.
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// How a SCRAM exchange finds a user's salted keys.
type Lookup = Box<dyn FnOnce(&str) -> Option<StoredCredential> + Send>;

/// A mechanism's server state across SaslAuthenticate round trips.
enum Exchange {
    /// Waiting for the first SaslAuthenticate of this mechanism.
    Start(Mechanism),
    /// SCRAM after its first round trip.
    Scram(Box<ScramServer<Lookup>>),
}

/// What one SaslAuthenticate produced.
enum Step {
    /// Send these bytes and wait for the next round trip.
    Continue(Vec<u8>),
    /// Authenticated as the principal; send these bytes; the session lasts
    /// this long (KIP-368), or for ever.
    Done(String, Vec<u8>, Option<Duration>),
}

fn scram_of(m: Mechanism) -> Option<Scram> {
    match m {
        Mechanism::ScramSha256 => Some(Scram::Sha256),
        Mechanism::ScramSha512 => Some(Scram::Sha512),
        _ => None,
    }
}

/// Runs one SaslAuthenticate step.
async fn step(
    shared: &Shared,
    sasl: &ListenerSasl,
    state: &mut Option<Exchange>,
    bytes: &[u8],
) -> Result<Step, AuthError> {
    match state.take() {
        None => Err(AuthError::OutOfOrder {
            mechanism: "SASL",
            reason: "SaslAuthenticate before a SaslHandshake",
        }),
        Some(Exchange::Start(Mechanism::Plain)) => {
            let users = users(shared, sasl)?;
            let msg = bytes.to_vec();
            // PBKDF2 (thousands of rounds) off the async workers.
            let user = tokio::task::spawn_blocking(move || {
                crate::auth::plain::authenticate(&msg, |u| users.plain_credential(u))
            })
            .await
            .map_err(|_| AuthError::AuthenticationFailed)??;
            Ok(Step::Done(user, Vec::new(), None))
        }
        Some(Exchange::Start(Mechanism::OAuthBearer)) => {
            let o = sasl
                .oauthbearer
                .as_ref()
                .ok_or(AuthError::UnsupportedMechanism)?;
            let validator = current(&shared.auth.jwks, &o.jwks_file, "JWKS file", |p| {
                let mut settings = ValidationSettings::new(o.issuer.clone(), o.audience.clone());
                settings.principal_claim = o.principal_claim.clone();
                JwtValidator::from_jwks_file(p, settings).map_err(|e| e.to_string())
            })
            .map_err(|_| AuthError::AuthenticationFailed)?;
            let response = crate::auth::oauth::parse_client_response(bytes)?;
            let v = validator.validate(response.token.expose())?;
            let lifetime = v
                .expires_at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            Ok(Step::Done(v.principal, Vec::new(), Some(lifetime)))
        }
        Some(Exchange::Start(m)) => {
            let mech = scram_of(m).ok_or(AuthError::UnsupportedMechanism)?;
            let users = users(shared, sasl)?;
            let lookup: Lookup = Box::new(move |u| users.lookup(u, mech).cloned());
            let mut server = Box::new(ScramServer::new(mech, lookup));
            let first = server.server_first(bytes)?;
            *state = Some(Exchange::Scram(server));
            Ok(Step::Continue(first))
        }
        Some(Exchange::Scram(mut server)) => {
            let (last, user) = server.server_final(bytes)?;
            Ok(Step::Done(user, last, None))
        }
    }
}

fn users(shared: &Shared, sasl: &ListenerSasl) -> Result<std::sync::Arc<Users>, AuthError> {
    let path = sasl
        .users_file
        .as_ref()
        .ok_or(AuthError::UnsupportedMechanism)?;
    current(&shared.auth.users, path, "users file", |p| {
        Users::load(p).map_err(|e| e.to_string())
    })
    .map_err(|e| {
        tracing::error!(error = %e, "cannot check a client's password");
        AuthError::AuthenticationFailed
    })
}

fn handshake_answer(
    version: i16,
    correlation_id: i32,
    code: i16,
    offered: &[Mechanism],
) -> Result<Bytes, Fault> {
    let resp = SaslHandshakeResponse::default()
        .with_error_code(code)
        .with_mechanisms(
            offered
                .iter()
                .map(|m| StrBytes::from_static_str(m.name()))
                .collect(),
        );
    Ok(crate::codec::response_frame(
        &resp,
        "SaslHandshake",
        version,
        correlation_id,
    )?)
}

fn authenticate_answer(
    version: i16,
    correlation_id: i32,
    code: i16,
    message: Option<String>,
    bytes: Vec<u8>,
    lifetime: Option<Duration>,
) -> Result<Bytes, Fault> {
    let mut resp = SaslAuthenticateResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(StrBytes::from_string))
        .with_auth_bytes(Bytes::from(bytes));
    if version >= 1 {
        resp.session_lifetime_ms = lifetime
            .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
            .unwrap_or(0);
    }
    Ok(crate::codec::response_frame(
        &resp,
        "SaslAuthenticate",
        version,
        correlation_id,
    )?)
}

/// The answer to one SASL request.
pub(super) enum Outcome {
    /// Send this and go on.
    Reply(Bytes),
    /// Send this: the client authenticated as the principal.
    Authenticated(String, Bytes),
    /// Send this, then close: why.
    Refused(Bytes, Fault),
}

/// The exchange state of one connection's SASL requests.
#[derive(Default)]
pub(super) struct SaslState(Option<Exchange>);

/// Answers a SaslHandshake or SaslAuthenticate request, at login or when
/// the client re-authenticates (KIP-368). Without `proxy.sasl`, kflip
/// offers no mechanism: clients that try SASL are told so.
pub(super) async fn sasl_request(
    shared: &Shared,
    cfg: &ProxyConfig,
    state: &mut SaslState,
    api: ApiKey,
    version: i16,
    corr: i32,
    body: &[u8],
) -> Result<Outcome, Fault> {
    let offered: &[Mechanism] = cfg.sasl.as_ref().map(|s| &s.mechanisms[..]).unwrap_or(&[]);
    match api {
        ApiKey::SaslHandshake => {
            let asked = crate::codec::sasl::handshake_mechanism(body, version)
                .map_err(|e| Fault::client(format!("bad SaslHandshake request: {e}")))?;
            match Mechanism::parse(asked).filter(|m| offered.contains(m)) {
                Some(m) if version >= 1 => {
                    state.0 = Some(Exchange::Start(m));
                    Ok(Outcome::Reply(handshake_answer(version, corr, 0, offered)?))
                }
                _ => {
                    tracing::info!(asked, "client asked for a SASL mechanism kflip does not offer (proxy.sasl.mechanisms)");
                    Ok(Outcome::Reply(handshake_answer(
                        version,
                        corr,
                        UNSUPPORTED_SASL_MECHANISM,
                        offered,
                    )?))
                }
            }
        }
        _ => {
            let bytes = crate::codec::sasl::authenticate_bytes(body, version)
                .map_err(|e| Fault::client(format!("bad SaslAuthenticate request: {e}")))?;
            let Some(sasl) = &cfg.sasl else {
                let out = authenticate_answer(
                    version,
                    corr,
                    UNSUPPORTED_SASL_MECHANISM,
                    Some("kflip offers no SASL mechanism (proxy.sasl)".into()),
                    Vec::new(),
                    None,
                )?;
                return Ok(Outcome::Refused(
                    out,
                    Fault::client("SaslAuthenticate without proxy.sasl"),
                ));
            };
            match step(shared, sasl, &mut state.0, bytes).await {
                Ok(Step::Continue(reply)) => Ok(Outcome::Reply(authenticate_answer(
                    version, corr, 0, None, reply, None,
                )?)),
                Ok(Step::Done(principal, reply, lifetime)) => {
                    if let Err(why) = shared.login_for(Some(&principal), &cfg.active) {
                        let out = authenticate_answer(
                            version,
                            corr,
                            SASL_AUTHENTICATION_FAILED,
                            Some(why.clone()),
                            Vec::new(),
                            None,
                        )?;
                        return Ok(Outcome::Refused(out, Fault::client(why)));
                    }
                    let out = authenticate_answer(version, corr, 0, None, reply, lifetime)?;
                    Ok(Outcome::Authenticated(principal, out))
                }
                Err(e) => {
                    let code = match e.kafka_error_code() {
                        -1 => SASL_AUTHENTICATION_FAILED,
                        c => c,
                    };
                    let out = authenticate_answer(
                        version,
                        corr,
                        code,
                        Some(e.client_message()),
                        Vec::new(),
                        None,
                    )?;
                    Ok(Outcome::Refused(
                        out,
                        Fault::client(format!("SASL authentication failed: {e}")),
                    ))
                }
            }
        }
    }
}

/// Authenticates a new client connection: the principal it logged in as.
pub(super) async fn authenticate(
    shared: &Shared,
    cfg: &ProxyConfig,
    conn: &crate::inventory::Conn,
    client_in: &mut super::lazy_buf::LazyBufReader<ReadHalf>,
    client_out: &mut WriteHalf,
) -> Result<String, Fault> {
    let deadline = tokio::time::Instant::now() + cfg.auth_timeout;
    let mut state = SaslState::default();
    let write = |e: std::io::Error| Fault::client(format!("client write failed: {e}"));
    loop {
        let frame =
            tokio::time::timeout_at(deadline, read_frame(client_in, UNAUTHENTICATED_MAX_FRAME))
                .await
                .map_err(|_| {
                    Fault::client(format!(
                        "not authenticated within proxy.auth_timeout ({:?})",
                        cfg.auth_timeout
                    ))
                })?
                .map_err(|e| Fault::client(format!("bad frame before authentication: {e}")))?
                .ok_or_else(|| Fault::client("closed before authenticating"))?;
        let head = parse_request_head(frame.payload())
            .map_err(|e| Fault::client(format!("bad request header: {e}")))?;
        let body = &frame.payload()[head.body_offset.unwrap_or(0)..];
        let (version, corr) = (head.api_version, head.correlation_id);
        let api = ApiKey::try_from(head.api_key);
        let outcome = match api {
            Ok(ApiKey::ApiVersions) => {
                if let Some((name, ver)) =
                    crate::codec::clients::api_versions_software(body, version)
                {
                    conn.set_software(&name, &ver);
                }
                let table = upstream::advertised_versions(shared, &cfg.active).await?;
                Outcome::Reply(
                    crate::protocol::api_versions::answer(version, corr, &table)
                        .0
                        .freeze(),
                )
            }
            Ok(api @ (ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)) => {
                sasl_request(shared, cfg, &mut state, api, version, corr, body).await?
            }
            _ => {
                return Err(Fault::client(format!(
                    "{} (key {}) before authenticating; only ApiVersions and SASL are allowed",
                    crate::kafka::api_name(head.api_key),
                    head.api_key
                )))
            }
        };
        match outcome {
            Outcome::Reply(out) => client_out.write_all(&out).await.map_err(write)?,
            Outcome::Authenticated(principal, out) => {
                client_out.write_all(&out).await.map_err(write)?;
                conn.set_principal(&principal);
                tracing::debug!(principal, "client authenticated");
                return Ok(principal);
            }
            Outcome::Refused(out, why) => {
                let _ = client_out.write_all(&out).await;
                return Err(why);
            }
        }
    }
}
