//! kflip's own OAUTHBEARER token for an upstream cluster: read from a file
//! (rewritten by a sidecar or an operator), or fetched from an OAuth 2.0
//! token endpoint with the client-credentials grant (RFC 6749 section 4.4,
//! as Kafka's `OAuthBearerLoginCallbackHandler` does it: HTTP Basic client
//! authentication, `grant_type=client_credentials` and an optional scope).
//!
//! [`TokenProvider::token`] blocks (file read or HTTP): call it from
//! `tokio::task::spawn_blocking`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::check_token;
use crate::auth::{AuthError, Result, Secret};

/// How long a token endpoint may take to answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest token endpoint answer kflip reads.
const MAX_ANSWER: u64 = 256 * 1024;
/// How long a token of unknown lifetime is reused.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is refreshed this long before it expires (or a tenth of its
/// lifetime, if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Where kflip gets its token for an upstream cluster.
#[derive(Clone, Debug)]
pub enum TokenSource {
    /// A file holding the token, read on every use so a rewrite is picked
    /// up at the next login.
    File(PathBuf),
    /// An OAuth 2.0 token endpoint, asked with the client-credentials grant.
    ClientCredentials {
        /// The token endpoint's URL (`https://`, or `http://` on loopback).
        endpoint: String,
        /// The OAuth client id.
        client_id: String,
        /// The OAuth client secret.
        client_secret: Secret,
        /// The scope to ask for, if any.
        scope: Option<String>,
    },
}

/// A bearer token and, when known, when it expires.
#[derive(Clone, Debug)]
pub struct AccessToken {
    /// The token.
    pub token: Secret,
    /// Its expiry: from the endpoint's `expires_in`, else the JWT's `exp`.
    pub expires_at: Option<SystemTime>,
}

/// A token fetched from an endpoint, and when to fetch the next.
struct Cached {
    token: AccessToken,
    refresh_at: SystemTime,
}

/// Gives kflip's current token for one upstream, caching endpoint tokens
/// until shortly before they expire.
pub struct TokenProvider {
    source: TokenSource,
    agent: ureq::Agent,
    /// Held only to read or replace the token, never across a request.
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// A provider for `source`. Refuses an endpoint that would send the
    /// client secret in the clear to another host.
    pub fn new(source: TokenSource) -> Result<Self> {
        if let TokenSource::ClientCredentials { endpoint, .. } = &source {
            let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|p| {
                    endpoint
                        .strip_prefix(p)
                        .is_some_and(|r| r.starts_with([':', '/']))
                });
            if !endpoint.starts_with("https://") && !loopback {
                return Err(AuthError::TokenEndpoint {
                    endpoint: endpoint.clone(),
                    reason: "must be https:// (http:// only on loopback)".into(),
                });
            }
        }
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(HTTP_TIMEOUT))
            .http_status_as_error(true)
            .max_redirects(0)
            .build();
        Ok(TokenProvider {
            source,
            agent: config.into(),
            cached: Mutex::new(None),
        })
    }

    /// The token to log in with now. Blocks.
    pub fn token(&self) -> Result<AccessToken> {
        match &self.source {
            TokenSource::File(path) => read_file(path),
            TokenSource::ClientCredentials {
                endpoint,
                client_id,
                client_secret,
                scope,
            } => {
                let now = SystemTime::now();
                if let Some(c) = self
                    .cached
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                {
                    if now < c.refresh_at {
                        return Ok(c.token.clone());
                    }
                }
                let fail = |reason: String| AuthError::TokenEndpoint {
                    endpoint: endpoint.clone(),
                    reason,
                };
                let basic = format!(
                    "{}:{}",
                    form_encode(client_id),
                    form_encode(client_secret.expose())
                );
                let basic = Secret::new(format!("Basic {}", B64.encode(basic.as_bytes())));
                let mut body = "grant_type=client_credentials".to_string();
                if let Some(scope) = scope {
                    body.push_str("&scope=");
                    body.push_str(&form_encode(scope));
                }
                let answer = self
                    .agent
                    .post(endpoint)
                    .header("Authorization", basic.expose())
                    .header("Accept", "application/json")
                    .content_type("application/x-www-form-urlencoded")
                    .send(body.as_bytes())
                    .and_then(|mut r| {
                        r.body_mut()
                            .with_config()
                            .limit(MAX_ANSWER)
                            .read_to_string()
                    })
                    .map_err(|e| fail(http_error(e)))?;
                let fetched =
                    parse_answer(&answer, SystemTime::now()).map_err(|r| fail(r.into()))?;
                let token = fetched.token.clone();
                *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(fetched);
                Ok(token)
            }
        }
    }
}

fn http_error(e: ureq::Error) -> String {
    match e {
        ureq::Error::StatusCode(code) => format!("answered HTTP {code}"),
        other => other.to_string(),
    }
}

fn read_file(path: &std::path::Path) -> Result<AccessToken> {
    let fail = |reason: String| AuthError::TokenFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = Secret::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
    let token = text.expose().trim();
    check_token(token).map_err(|_| fail("does not hold a bearer token".into()))?;
    Ok(AccessToken {
        token: Secret::new(token),
        expires_at: jwt_expiry(token),
    })
}

/// Reads a token endpoint's JSON answer.
fn parse_answer(answer: &str, now: SystemTime) -> Result<Cached, &'static str> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<String>,
        expires_in: Option<serde_json::Value>,
    }
    let answer: Answer =
        serde_json::from_str(answer).map_err(|_| "the answer is not a JSON object")?;
    let token = answer
        .access_token
        .ok_or("the answer has no access_token")?;
    let token = Secret::new(token);
    check_token(token.expose()).map_err(|_| "access_token is not a bearer token")?;
    // Some servers send expires_in as a string.
    let expires_in = answer.expires_in.and_then(|v| match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    });
    let expires_at = match expires_in {
        Some(secs) => Some(now + Duration::from_secs(secs.min(u32::MAX.into()))),
        None => jwt_expiry(token.expose()),
    };
    let refresh_at = match expires_at {
        Some(at) => {
            let lifetime = at.duration_since(now).unwrap_or_default();
            at - REFRESH_MARGIN.min(lifetime / 10)
        }
        None => now + UNKNOWN_LIFETIME,
    };
    Ok(Cached {
        token: AccessToken { token, expires_at },
        refresh_at,
    })
}

/// The `exp` of a JWT, read without checking it (kflip only uses it to know
/// when to refresh its own token).
pub(super) fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    Some(UNIX_EPOCH + Duration::from_secs(exp))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
