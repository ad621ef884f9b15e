//! OAUTHBEARER to kflip (RFC 7628, as Kafka clients speak it): librdkafka
//! logs in with a signed JWT, kflip checks it against a JWKS file (key,
//! expiry, issuer, audience) and the client produces; a token signed by
//! another key, an expired one, and one for another audience are refused
//! with a clear error. Runs on either broker: the cluster side is plain.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use support::clients::{self, block_on, create_topic};
use support::{wait_for, Broker, Kflip};

const ISS: &str = "https://idp.test";
const AUD: &str = "kflip";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An EC P-256 signing key and its JWK.
fn key(kid: &str) -> (EncodingKey, serde_json::Value) {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let k = SigningKey::from_slice(&seed).unwrap();
    let p = k.verifying_key().to_encoded_point(false);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": b64url(p.x().unwrap()), "y": b64url(p.y().unwrap())});
    (
        EncodingKey::from_ec_der(k.to_pkcs8_der().unwrap().as_bytes()),
        jwk,
    )
}

fn token(key: &EncodingKey, kid: &str, sub: &str, aud: &str, exp: u64) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    encode(
        &h,
        &json!({"sub": sub, "iss": ISS, "aud": aud, "exp": exp}),
        key,
    )
    .unwrap()
}

/// A client context that hands librdkafka a fixed token.
struct Bearer(String, u64);

impl ClientContext for Bearer {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        Ok(OAuthToken {
            token: self.0.clone(),
            principal_name: "ignored".into(),
            lifetime_ms: (self.1 * 1000) as i64,
        })
    }
}

fn producer(k: &Kflip, token: String, exp: u64) -> FutureProducer<Bearer> {
    clients::config(&k.addr())
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "OAUTHBEARER")
        .set("message.timeout.ms", "10000")
        .create_with_context(Bearer(token, exp))
        .expect("producer")
}

fn send(p: &FutureProducer<Bearer>, value: &str) -> Result<(), String> {
    block_on(p.send(
        FutureRecord::to("oauth-t").key(value).payload(value),
        Duration::from_secs(10),
    ))
    .map(|_| ())
    .map_err(|(e, _)| e.to_string())
}

#[test]
fn signed_tokens_log_in_and_bad_ones_are_refused_clearly() {
    let b = Broker::start("oauth");
    let (good, good_jwk) = key("k1");
    let (other, _) = key("k2");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [good_jwk] }).to_string()).unwrap();
    let k = Kflip::start_with_log(
        &format!(
            "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n  sasl:\n    mechanisms: [OAUTHBEARER]\n    oauthbearer: {{ jwks_file: \"{}\", issuer: \"{ISS}\", audience: {AUD} }}\n",
            b.addr(),
            jwks.display()
        ),
        "debug",
    );
    create_topic(&b.addr(), "oauth-t", 1);
    let exp = now() + 600;
    let ok = producer(&k, token(&good, "k1", "payments-app", AUD, exp), exp);
    send(&ok, "v1").expect("a valid token logs in and produces");
    assert_eq!(
        clients::values(&b.addr(), "oauth-t"),
        vec!["v1".to_string()]
    );

    let bad = [
        ("another key", token(&other, "k1", "mallory", AUD, exp)),
        ("expired", token(&good, "k1", "late", AUD, now() - 600)),
        (
            "another audience",
            token(&good, "k1", "lost", "someone-else", exp),
        ),
    ];
    for (what, t) in bad {
        let p = producer(&k, t.clone(), exp);
        let e = send(&p, "never").expect_err(what);
        assert!(!e.contains(&t), "{what}: the error echoes the token");
        wait_for(what, Duration::from_secs(20), || {
            k.log().contains("SASL authentication failed").then_some(())
        });
    }
    assert_eq!(
        clients::values(&b.addr(), "oauth-t"),
        vec!["v1".to_string()]
    );
    assert!(!k.log().contains("panicked"));
}
