//! OAUTHBEARER (RFC 7628) as Kafka uses it (KIP-255, KIP-368).
//!
//! Server side: [`parse_client_response`] reads the client's only message,
//! `n,,\x01auth=Bearer <token>\x01[key=value\x01...]\x01`, and
//! [`JwtValidator`] checks the token, a JWT, against a JWKS file
//! (signature with the key of its `kid`, `exp`, `nbf`, `iss`, `aud`), and
//! gives the principal and the token's expiry (the session lifetime of
//! KIP-368). On failure the server sends [`INVALID_TOKEN_CHALLENGE`], the
//! client answers with a lone `\x01`, and the login fails.
//!
//! Client side: [`TokenProvider`] gets kflip's token for an upstream from a
//! file or an OAuth client-credentials endpoint, and [`client_response`]
//! makes the message carrying it.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::error::TokenRejection;
use super::{AuthError, Result, Secret};

#[cfg(test)]
mod tests;
mod token;

pub use token::{AccessToken, TokenProvider, TokenSource};

/// The mechanism's Kafka name, for errors.
const NAME: &str = "OAUTHBEARER";
/// The longest client response kflip reads (a JWT with many claims is a
/// few KiB).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// What the server sends when the token is refused (RFC 7628 section 3.2.2);
/// the client then sends `\x01` and the server fails the login.
pub const INVALID_TOKEN_CHALLENGE: &[u8] = br#"{"status":"invalid_token"}"#;
/// Signature algorithms kflip accepts: public-key ones only, so a JWKS
/// can never be used as an HMAC secret.
const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The client's initial response, parsed.
#[derive(Debug)]
pub struct BearerResponse {
    /// The bearer token.
    pub token: Secret,
    /// The gs2 authorization id, if the client sent one.
    pub authzid: Option<String>,
    /// SASL extensions (KIP-342), in the order sent.
    pub extensions: Vec<(String, String)>,
}

fn malformed(reason: &'static str) -> AuthError {
    AuthError::Malformed {
        mechanism: NAME,
        reason,
    }
}

/// Parses the client's initial response.
pub fn parse_client_response(msg: &[u8]) -> Result<BearerResponse> {
    if msg.len() > MAX_MESSAGE {
        return Err(malformed("message too long"));
    }
    let text = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
    let (gs2, rest) = text
        .split_once('\x01')
        .ok_or_else(|| malformed("no \\x01 after the gs2 header"))?;
    let authzid = match gs2 {
        "n,," => None,
        g => match g.strip_prefix("n,a=").and_then(|a| a.strip_suffix(',')) {
            Some(a) if !a.is_empty() && !a.contains(',') => Some(a.to_string()),
            _ => return Err(malformed("bad gs2 header (kflip takes no channel binding)")),
        },
    };
    let body = rest
        .strip_suffix("\x01\x01")
        .ok_or_else(|| malformed("does not end with \\x01\\x01"))?;
    let mut token = None;
    let mut extensions = Vec::new();
    for pair in body.split('\x01') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| malformed("key without value"))?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(malformed("bad key"));
        }
        if !value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) || b"\t\r\n".contains(&b))
        {
            return Err(malformed("bad value"));
        }
        if key == "auth" {
            if token.is_some() {
                return Err(malformed("two auth values"));
            }
            let t = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| malformed("auth is not a Bearer token"))?;
            token = Some(check_token(t)?);
        } else {
            extensions.push((key.to_string(), value.to_string()));
        }
    }
    Ok(BearerResponse {
        token: Secret::new(token.ok_or_else(|| malformed("no auth value"))?),
        authzid,
        extensions,
    })
}

/// RFC 6750's b64token: `[A-Za-z0-9-._~+/]+ =*`.
fn check_token(t: &str) -> Result<&str> {
    let body = t.trim_end_matches('=');
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if ok {
        Ok(t)
    } else {
        Err(malformed("token is not a b64token"))
    }
}

/// The client's initial response carrying `token`, with SASL extensions
/// (keys of letters, values of printable ASCII).
pub fn client_response(token: &Secret, extensions: &[(&str, &str)]) -> Result<Vec<u8>> {
    let invalid = |reason| AuthError::InvalidInput {
        what: "OAUTHBEARER message",
        reason,
    };
    check_token(token.expose()).map_err(|_| invalid("the token is not a b64token"))?;
    let mut msg = format!("n,,\x01auth=Bearer {}\x01", token.expose());
    for (key, value) in extensions {
        let key_ok =
            !key.is_empty() && *key != "auth" && key.bytes().all(|b| b.is_ascii_alphabetic());
        if !key_ok || !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(invalid("bad extension"));
        }
        msg.push_str(&format!("{key}={value}\x01"));
    }
    msg.push('\x01');
    Ok(msg.into_bytes())
}

/// What [`JwtValidator`] requires of a token.
#[derive(Clone, Debug)]
pub struct ValidationSettings {
    /// The one accepted `iss`.
    pub issuer: String,
    /// The audience `aud` must contain.
    pub audience: String,
    /// The claim that names the principal (`sub` unless configured).
    pub principal_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

impl ValidationSettings {
    /// Settings for an issuer and audience, with principal `sub` and 30 s leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        ValidationSettings {
            issuer: issuer.into(),
            audience: audience.into(),
            principal_claim: "sub".into(),
            leeway: Duration::from_secs(30),
        }
    }
}

/// A token that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    /// The principal, from the configured claim.
    pub principal: String,
    /// When the token expires: the session must re-authenticate by then
    /// (KIP-368 `session_lifetime_ms`).
    pub expires_at: SystemTime,
}

/// Checks JWTs against the keys of a JWKS. Build a new one when the JWKS
/// file changes.
#[derive(Clone, Debug)]
pub struct JwtValidator {
    keys: JwkSet,
    settings: ValidationSettings,
}

impl JwtValidator {
    /// Reads a JWKS file (`{"keys": [...]}`).
    pub fn from_jwks_file(path: &Path, settings: ValidationSettings) -> Result<Self> {
        let origin = format!("file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::Jwks {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        JwtValidator::from_jwks_json(&text, &origin, settings)
    }

    /// Parses a JWKS document; `origin` names it in errors.
    pub fn from_jwks_json(json: &str, origin: &str, settings: ValidationSettings) -> Result<Self> {
        let fail = |reason: String| AuthError::Jwks {
            origin: origin.to_string(),
            reason,
        };
        // serde_json's messages may quote a value; give the position only.
        let keys: JwkSet = serde_json::from_str(json).map_err(|e| {
            fail(format!(
                "not a JWKS (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if keys.keys.is_empty() {
            return Err(fail("no keys".into()));
        }
        Ok(JwtValidator { keys, settings })
    }

    /// Validates `token` now.
    pub fn validate(&self, token: &str) -> Result<Validated> {
        self.validate_at(token, SystemTime::now())
            .map_err(AuthError::Token)
    }

    fn validate_at(&self, token: &str, now: SystemTime) -> Result<Validated, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(TokenRejection::Algorithm);
        }
        let jwk = self.key_for(header.kid.as_deref())?;
        if let Some(alg) = &jwk.common.key_algorithm {
            let same = serde_json::to_value(alg).ok() == serde_json::to_value(header.alg).ok();
            if !same {
                return Err(TokenRejection::Algorithm);
            }
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| TokenRejection::UnknownKey)?;
        if !key.family().algorithms().contains(&header.alg) {
            return Err(TokenRejection::Signature);
        }
        let s = &self.settings;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = s.leeway.as_secs();
        v.validate_nbf = true;
        v.set_issuer(&[&s.issuer]);
        v.set_audience(&[&s.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v)
                .map_err(|e| rejection(e.kind()))?
                .claims;
        // jsonwebtoken checks exp against the system clock; check again
        // against `now` so tests can move it.
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_f64)
            .filter(|e| e.is_finite() && *e >= 0.0)
            .ok_or_else(|| TokenRejection::Claim("exp".into()))?;
        let expires_at = UNIX_EPOCH + Duration::from_secs_f64(exp.min(1e12));
        if expires_at + s.leeway < now {
            return Err(TokenRejection::Expired);
        }
        let principal = claims
            .get(&s.principal_claim)
            .and_then(serde_json::Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| TokenRejection::Claim(s.principal_claim.clone()))?;
        Ok(Validated {
            principal: principal.to_string(),
            expires_at,
        })
    }

    /// The key of `kid`; without a `kid`, the JWKS's only key.
    fn key_for(&self, kid: Option<&str>) -> Result<&Jwk, TokenRejection> {
        let jwk = match kid {
            Some(kid) => self.keys.find(kid),
            None if self.keys.keys.len() == 1 => self.keys.keys.first(),
            None => None,
        }
        .ok_or(TokenRejection::UnknownKey)?;
        match jwk.common.public_key_use {
            Some(PublicKeyUse::Signature) | None => Ok(jwk),
            Some(_) => Err(TokenRejection::UnknownKey),
        }
    }
}

fn rejection(kind: &jsonwebtoken::errors::ErrorKind) -> TokenRejection {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) | K::InvalidEddsaKey => {
            TokenRejection::Signature
        }
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
            TokenRejection::Algorithm
        }
        K::ExpiredSignature => TokenRejection::Expired,
        K::ImmatureSignature => TokenRejection::NotYetValid,
        K::InvalidIssuer => TokenRejection::Issuer,
        K::InvalidAudience => TokenRejection::Audience,
        K::MissingRequiredClaim(c) => TokenRejection::Claim(c.clone()),
        _ => TokenRejection::Malformed,
    }
}
