//! The replication engine logs in with OAUTHBEARER (client credentials):
//! both clusters of a flow take only what kflip's token endpoint issues,
//! and records replicate end to end through librdkafka's OIDC login of
//! the engine's consumer, producer and admin client (the brokers do not
//! create topics on their own: the engine's admin client made the target
//! topic). The client secret never reaches kflip's log.
//!
//! The test's token endpoint issues unsigned JWTs, which the secure test
//! brokers accept (Kafka's unsecured OAUTHBEARER validator) and librdkafka
//! takes as they are: it reads `sub` and `exp` and checks no signature.
//!
//! Apache Kafka only: on `KFLIP_BROKER=tansu` the test returns at once.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::secure::{Protocol, Security};
use support::secure_clients::{try_produce, try_read};
use support::{wait_for, Broker, Kflip};

const CLIENT_ID: &str = "kflip-engine";
const CLIENT_SECRET: &str = "cs-5d1e9a-never-logged";
const LIMIT: Duration = Duration::from_secs(30);

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An unsigned JWT for `sub`, valid for an hour.
fn unsigned_token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = b64url(br#"{"alg":"none"}"#);
    let payload = b64url(
        serde_json::json!({"sub": sub, "iat": now, "exp": now + 3600})
            .to_string()
            .as_bytes(),
    );
    format!("{header}.{payload}.")
}

/// What the token endpoint was asked: each request's head and body.
type Seen = Arc<Mutex<Vec<String>>>;

/// A client-credentials token endpoint on 127.0.0.1: answers every POST
/// whose Basic credentials are [`CLIENT_ID`]:[`CLIENT_SECRET`] with a
/// fresh unsigned token, anything else with 401. Its URL and what it saw.
fn token_endpoint() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let seen = Seen::default();
    let log = seen.clone();
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    };
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let authorized = head.contains(&format!("Basic {basic}"));
            let body = String::from_utf8_lossy(&body).to_string();
            log.lock().unwrap().push(format!("{head}\n{body}"));
            let (status, json) = if authorized && body.contains("grant_type=client_credentials") {
                (
                    "200 OK",
                    serde_json::json!({"access_token": unsigned_token(CLIENT_ID), "token_type": "bearer", "expires_in": 3600}),
                )
            } else {
                (
                    "401 Unauthorized",
                    serde_json::json!({"error": "invalid_client"}),
                )
            };
            let json = json.to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            );
        }
    });
    (url, seen)
}

#[test]
fn the_engine_replicates_between_clusters_it_logs_in_to_with_client_credentials() {
    let Some(dc1) = &Broker::start_secure("eo1", &Security::new(Protocol::SaslPlaintext)) else {
        return;
    };
    let Some(dc2) = &Broker::start_secure("eo2", &Security::new(Protocol::SaslPlaintext)) else {
        return;
    };
    let (url, seen) = token_endpoint();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let login = format!(
        "sasl: {{ mechanism: OAUTHBEARER, token_endpoint: \"{url}\", client_id: {CLIENT_ID}, client_secret_file: \"{}\", scope: kafka }}",
        secret.display()
    );
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\", {login} }}\n  dc2: {{ bootstrap: \"{}\", {login} }}\nreplication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\"eo-t\"], discovery_interval: 500ms, checkpoint_interval: 200ms, fetch_wait: 10ms }}\n",
        dc1.bootstrap(),
        dc2.bootstrap()
    );
    dc1.create_secure_topic("eo-t", 2);
    let k = Kflip::replicate(&yaml);
    let values: Vec<String> = (0..50).map(|i| format!("eo-{i}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    try_produce(&dc1.admin_config(), "eo-t", &refs, LIMIT).expect("produce to dc1");

    let mut got = wait_for("the records on dc2", Duration::from_secs(90), || {
        try_read(
            &dc2.admin_config(),
            "eo-t",
            values.len(),
            Duration::from_secs(5),
        )
        .ok()
        .filter(|got| got.len() >= values.len())
    });
    got.sort();
    let mut want = values.clone();
    want.sort();
    assert_eq!(got, want, "kflip's log:\n{}", k.log());

    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "the token endpoint was never asked");
    assert!(seen.iter().any(|r| r.contains("scope=kafka")), "{seen:#?}");
    let log = k.log();
    assert!(!log.contains(CLIENT_SECRET), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    eprintln!(
        "{} records replicated; {} token requests",
        got.len(),
        seen.len()
    );
}
