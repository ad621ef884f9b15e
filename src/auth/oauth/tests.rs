use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use jsonwebtoken::{encode, EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::json;

use super::token::jwt_expiry;
use super::*;

const ISS: &str = "https://idp.example";
const AUD: &str = "kflip";

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An EC P-256 key made in the test: its signing key and its JWK.
fn ec_key(kid: &str) -> (EncodingKey, serde_json::Value) {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let key = SigningKey::from_slice(&seed).unwrap();
    let point = key.verifying_key().to_encoded_point(false);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64url(point.x().unwrap()), "y": b64url(point.y().unwrap())});
    let der = key.to_pkcs8_der().unwrap();
    (EncodingKey::from_ec_der(der.as_bytes()), jwk)
}

/// An RSA key made in the test (1024 bits: quick in a debug build, and
/// the verification path is the same as for 2048).
fn rsa_key(kid: &str) -> (EncodingKey, serde_json::Value) {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
    let jwk = json!({"kty": "RSA", "kid": kid, "alg": "RS256",
        "n": b64url(&key.n().to_bytes_be()), "e": b64url(&key.e().to_bytes_be())});
    let der = key.to_pkcs1_der().unwrap();
    (EncodingKey::from_rsa_der(der.as_bytes()), jwk)
}

fn validator(jwks: &[&serde_json::Value]) -> JwtValidator {
    let doc = json!({ "keys": jwks }).to_string();
    JwtValidator::from_jwks_json(&doc, "test", ValidationSettings::new(ISS, AUD)).unwrap()
}

fn claims() -> serde_json::Value {
    json!({"sub": "alice", "iss": ISS, "aud": [AUD, "other"], "exp": now() + 600, "nbf": now() - 5})
}

fn sign(
    alg: Algorithm,
    kid: Option<&str>,
    claims: &serde_json::Value,
    key: &EncodingKey,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).unwrap()
}

fn rejected(v: &JwtValidator, token: &str) -> TokenRejection {
    match v.validate(token) {
        Err(AuthError::Token(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn valid_es256_and_rs256() {
    let (ec, ec_jwk) = ec_key("ec1");
    let (rs, rs_jwk) = rsa_key("rs1");
    let v = validator(&[&ec_jwk, &rs_jwk]);
    let c = claims();
    let ok = v
        .validate(&sign(Algorithm::ES256, Some("ec1"), &c, &ec))
        .unwrap();
    assert_eq!(ok.principal, "alice");
    let exp = c["exp"].as_u64().unwrap();
    assert_eq!(ok.expires_at, UNIX_EPOCH + Duration::from_secs(exp));
    let ok = v
        .validate(&sign(Algorithm::RS256, Some("rs1"), &c, &rs))
        .unwrap();
    assert_eq!(ok.principal, "alice");
    // A key declared RS256 does not verify PS256, even with the right key.
    let ps = sign(Algorithm::PS256, Some("rs1"), &c, &rs);
    assert_eq!(rejected(&v, &ps), TokenRejection::Algorithm);
}

#[test]
fn time_issuer_and_audience_are_checked() {
    let (ec, jwk) = ec_key("k");
    let v = validator(&[&jwk]);
    let with = |k: &str, val: serde_json::Value| {
        let mut c = claims();
        c[k] = val;
        sign(Algorithm::ES256, Some("k"), &c, &ec)
    };
    assert_eq!(
        rejected(&v, &with("exp", json!(now() - 3600))),
        TokenRejection::Expired
    );
    assert!(
        v.validate(&with("exp", json!(now() - 10))).is_ok(),
        "within leeway"
    );
    assert_eq!(
        rejected(&v, &with("nbf", json!(now() + 3600))),
        TokenRejection::NotYetValid
    );
    assert_eq!(
        rejected(&v, &with("iss", json!("https://evil"))),
        TokenRejection::Issuer
    );
    assert_eq!(
        rejected(&v, &with("aud", json!("someone-else"))),
        TokenRejection::Audience
    );
    assert_eq!(
        rejected(&v, &with("sub", json!(""))),
        TokenRejection::Claim("sub".into())
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    let no_aud = sign(Algorithm::ES256, Some("k"), &c, &ec);
    assert!(matches!(
        rejected(&v, &no_aud),
        TokenRejection::Claim(_) | TokenRejection::Audience
    ));
}

#[test]
fn wrong_key_unknown_kid_and_algorithms() {
    let (_, jwk) = ec_key("k");
    let (other, _) = ec_key("k");
    let v = validator(&[&jwk]);
    let c = claims();
    assert_eq!(
        rejected(&v, &sign(Algorithm::ES256, Some("k"), &c, &other)),
        TokenRejection::Signature
    );
    assert_eq!(
        rejected(&v, &sign(Algorithm::ES256, Some("nope"), &c, &other)),
        TokenRejection::UnknownKey
    );
    // HMAC is never accepted, whatever the key.
    let hs = sign(
        Algorithm::HS256,
        Some("k"),
        &c,
        &EncodingKey::from_secret(b"x"),
    );
    assert_eq!(rejected(&v, &hs), TokenRejection::Algorithm);
    // alg: none, with no signature.
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT","kid":"k"}"#),
        b64url(c.to_string().as_bytes())
    );
    assert!(matches!(
        rejected(&v, &none),
        TokenRejection::Malformed | TokenRejection::Algorithm
    ));
}

#[test]
fn kid_may_be_absent_only_with_one_key() {
    let (ec, jwk) = ec_key("k");
    let (_, jwk2) = ec_key("k2");
    let token = sign(Algorithm::ES256, None, &claims(), &ec);
    assert!(validator(&[&jwk]).validate(&token).is_ok());
    assert_eq!(
        rejected(&validator(&[&jwk, &jwk2]), &token),
        TokenRejection::UnknownKey
    );
}

#[test]
fn principal_claim_is_configurable() {
    let (ec, jwk) = ec_key("k");
    let doc = json!({ "keys": [jwk] }).to_string();
    let mut settings = ValidationSettings::new(ISS, AUD);
    settings.principal_claim = "client_id".into();
    let v = JwtValidator::from_jwks_json(&doc, "test", settings).unwrap();
    let mut c = claims();
    c["client_id"] = json!("svc-orders");
    assert_eq!(
        v.validate(&sign(Algorithm::ES256, Some("k"), &c, &ec))
            .unwrap()
            .principal,
        "svc-orders"
    );
    let token = sign(Algorithm::ES256, Some("k"), &claims(), &ec);
    assert_eq!(
        rejected(&v, &token),
        TokenRejection::Claim("client_id".into())
    );
}

#[test]
fn garbage_is_rejected_without_echo() {
    let (_, jwk) = ec_key("k");
    let v = validator(&[&jwk]);
    for t in [
        "",
        "abc",
        "a.b.c",
        "a.b",
        "....",
        "eyJhbGciOiJFUzI1NiJ9.e30.!!",
        "\u{1F600}.x.y",
    ] {
        let e = v.validate(t).unwrap_err().to_string();
        assert!(e.starts_with("token rejected"), "{e}");
    }
    let e = v
        .validate("eyJzZWNyZXQiOiJ4In0.c2VjcmV0.c2VjcmV0")
        .unwrap_err()
        .to_string();
    assert!(!e.contains("c2VjcmV0"), "{e}");
}

#[test]
fn jwks_errors() {
    let s = || ValidationSettings::new(ISS, AUD);
    let e = JwtValidator::from_jwks_json("{\"keys\": 1}", "file /x", s()).unwrap_err();
    assert!(e.to_string().starts_with("JWKS file /x: not a JWKS"), "{e}");
    assert!(JwtValidator::from_jwks_json("{\"keys\": []}", "t", s()).is_err());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    assert!(JwtValidator::from_jwks_file(&path, s()).is_err());
    let (_, jwk) = ec_key("k");
    std::fs::write(&path, json!({ "keys": [jwk] }).to_string()).unwrap();
    assert!(JwtValidator::from_jwks_file(&path, s()).is_ok());
}

#[test]
fn client_response_round_trip() {
    let token = Secret::new("eyJ.abc-_.sig");
    let msg = client_response(&token, &[("traceId", "42")]).unwrap();
    assert_eq!(
        msg,
        b"n,,\x01auth=Bearer eyJ.abc-_.sig\x01traceId=42\x01\x01"
    );
    let r = parse_client_response(&msg).unwrap();
    assert_eq!(r.token.expose(), "eyJ.abc-_.sig");
    assert_eq!(
        r.extensions,
        vec![("traceId".to_string(), "42".to_string())]
    );
    assert!(r.authzid.is_none());
    assert!(!format!("{r:?}").contains("abc"));
    let r = parse_client_response(b"n,a=alice,\x01auth=Bearer t0k\x01\x01").unwrap();
    assert_eq!(r.authzid.as_deref(), Some("alice"));
    assert!(client_response(&Secret::new("a b"), &[]).is_err());
    assert!(client_response(&token, &[("auth", "x")]).is_err());
}

#[test]
fn malformed_client_responses() {
    let long = [
        b"n,,\x01auth=Bearer ".as_slice(),
        &vec![b'a'; MAX_MESSAGE],
        b"\x01\x01",
    ]
    .concat();
    for msg in [
        &b""[..],
        b"\x01",
        b"n,,",
        b"n,,\x01\x01",
        b"n,,\x01auth=Bearer t\x01",
        b"y,,\x01auth=Bearer t\x01\x01",
        b"p=x,,\x01auth=Bearer t\x01\x01",
        b"n,,\x01auth=Basic t\x01\x01",
        b"n,,\x01auth=Bearer \x01\x01",
        b"n,,\x01auth=Bearer a b\x01\x01",
        b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
        b"n,,\x01x=1\x01\x01",
        b"n,,\x01auth=Bearer t\x01=1\x01\x01",
        b"n,,\x01auth=Bearer t\x01novalue\x01\x01",
        b"n,,\x01auth=Bearer \xff\x01\x01",
        &long,
    ] {
        assert!(
            parse_client_response(msg).is_err(),
            "{:?}",
            String::from_utf8_lossy(msg)
        );
    }
}

#[test]
fn token_file_is_reread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let provider = TokenProvider::new(TokenSource::File(path.clone())).unwrap();
    assert!(provider.token().is_err());
    let exp = now() + 100;
    let jwt = format!(
        "{}.{}.sig",
        b64url(b"{}"),
        b64url(json!({"exp": exp}).to_string().as_bytes())
    );
    std::fs::write(&path, format!("{jwt}\n")).unwrap();
    let t = provider.token().unwrap();
    assert_eq!(t.token.expose(), jwt);
    assert_eq!(t.expires_at, Some(UNIX_EPOCH + Duration::from_secs(exp)));
    std::fs::write(&path, "opaque-token").unwrap();
    let t = provider.token().unwrap();
    assert_eq!((t.token.expose(), t.expires_at), ("opaque-token", None));
    std::fs::write(&path, "not a token").unwrap();
    assert!(provider.token().is_err());
    assert_eq!(jwt_expiry("x"), None);
}

#[test]
fn endpoint_must_be_https_off_loopback() {
    let source = |endpoint: &str| TokenSource::ClientCredentials {
        endpoint: endpoint.into(),
        client_id: "id".into(),
        client_secret: Secret::new("s"),
        scope: None,
    };
    assert!(TokenProvider::new(source("http://idp.example/token")).is_err());
    assert!(TokenProvider::new(source("http://localhost.evil/token")).is_err());
    assert!(TokenProvider::new(source("https://idp.example/token")).is_ok());
    assert!(TokenProvider::new(source("http://127.0.0.1:8080/token")).is_ok());
}

/// Serves one request on 127.0.0.1 with `answer`, and hands back the
/// request's head and body.
fn one_shot_server(status: &str, answer: &str) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/token",
        listener.local_addr().unwrap().port()
    );
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        reader.get_mut().write_all(reply.as_bytes()).unwrap();
        format!("{head}\n{}", String::from_utf8(body).unwrap())
    });
    (url, handle)
}

#[test]
fn client_credentials_fetches_once_and_caches() {
    let (url, server) = one_shot_server(
        "200 OK",
        r#"{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}"#,
    );
    let provider = TokenProvider::new(TokenSource::ClientCredentials {
        endpoint: url,
        client_id: "kflip client".into(),
        client_secret: Secret::new("s3cr:t"),
        scope: Some("kafka read".into()),
    })
    .unwrap();
    let t = provider.token().unwrap();
    assert_eq!(t.token.expose(), "tok-1");
    let request = server.join().unwrap();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "kflip+client:s3cr%3At",
    );
    assert!(request.starts_with("POST /token"), "{request}");
    assert!(
        request.to_ascii_lowercase().contains(&format!(
            "authorization: basic {}",
            basic.to_ascii_lowercase()
        )),
        "{request}"
    );
    assert!(
        request.ends_with("\ngrant_type=client_credentials&scope=kafka+read"),
        "{request}"
    );
    // The server is gone: a second call must come from the cache.
    assert_eq!(provider.token().unwrap().token.expose(), "tok-1");
}

#[test]
fn client_credentials_errors_hide_the_answer() {
    let (url, server) = one_shot_server("401 Unauthorized", r#"{"error":"invalid_client"}"#);
    let provider = TokenProvider::new(TokenSource::ClientCredentials {
        endpoint: url.clone(),
        client_id: "id".into(),
        client_secret: Secret::new("s3cret"),
        scope: None,
    })
    .unwrap();
    let e = provider.token().unwrap_err().to_string();
    server.join().unwrap();
    assert_eq!(e, format!("token endpoint {url}: answered HTTP 401"));

    let (url, server) = one_shot_server("200 OK", r#"{"token":"x"}"#);
    let provider = TokenProvider::new(TokenSource::ClientCredentials {
        endpoint: url,
        client_id: "id".into(),
        client_secret: Secret::new("s3cret"),
        scope: None,
    })
    .unwrap();
    let e = provider.token().unwrap_err().to_string();
    server.join().unwrap();
    assert!(e.ends_with("the answer has no access_token"), "{e}");
}
