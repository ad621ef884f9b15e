//! kflip between TLS/SASL clients and TLS/SASL clusters, on Apache Kafka
//! 4.4: clients authenticate to kflip (TLS, SCRAM and PLAIN against a
//! salted users file) and each session logs in upstream (SCRAM over TLS,
//! PLAIN without), as the cluster's own login or the client's principal's;
//! wrong credentials fail clearly; a flip moves authenticated clients to a
//! cluster with other credentials and another mechanism; two principals
//! keep their own ACLs through kflip; no secret reaches kflip's log.
//!
//! Apache Kafka only: on `KFLIP_BROKER=tansu` every test returns at once.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::ClientConfig;
use support::secure::{Auth, Protocol, Security, ADMIN, ADMIN_PASSWORD};
use support::secure_clients::{try_produce, try_read, wait_error};
use support::{clients, wait_for, Broker, Kflip};

const LIMIT: Duration = Duration::from_secs(30);

/// Writes `text` to `dir/name` and returns the path.
fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A users file for kflip with `users` (name, password).
fn users_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let mut text = String::from("users:\n");
    for (u, p) in users {
        text.push_str(&kflip::auth::users::entry(u, &kflip::auth::Secret::new(*p), 4096).unwrap());
    }
    file(dir, "users.yaml", &text)
}

/// A librdkafka client of kflip over TLS, logging in to kflip.
fn through(k: &Kflip, ca: &Path, mechanism: &str, user: &str, password: &str) -> ClientConfig {
    let mut c = clients::config(&k.addr());
    c.set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", ca.display().to_string())
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password);
    c
}

/// The `clusters:` entry of a secure broker, logging in as `user`.
fn cluster_yaml(dir: &Path, name: &str, b: &Broker, mechanism: &str, user: &str) -> String {
    let pw = file(
        dir,
        &format!("{name}-{user}.pw"),
        &format!("{}\n", b.password(user)),
    );
    let tls = if b.protocol().tls() {
        format!(", tls: {{ ca_file: \"{}\" }}", b.ca_pem().display())
    } else {
        String::new()
    };
    format!(
        "  {name}: {{ bootstrap: \"{}\"{tls}, sasl: {{ mechanism: {mechanism}, username: {user}, password_file: \"{}\" }} }}\n",
        b.bootstrap(),
        pw.display()
    )
}

/// The `proxy:` section with TLS and SASL for clients.
fn proxy_yaml(b: &Broker, users: &Path, active: &str, extra: &str) -> String {
    let server = &b.certs().server;
    format!(
        "proxy:\n  listen: \"127.0.0.1:0\"\n  active: {active}\n  tls: {{ cert_file: \"{}\", key_file: \"{}\" }}\n  sasl:\n    mechanisms: [SCRAM-SHA-512, SCRAM-SHA-256, PLAIN]\n    users_file: \"{}\"\n{extra}",
        server.cert.display(),
        server.key.display(),
        users.display()
    )
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn produce(cfg: &ClientConfig, topic: &str, vals: &[String]) {
    let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
    try_produce(cfg, topic, &refs, LIMIT).unwrap_or_else(|e| panic!("produce to {topic}: {e}"));
}

#[test]
fn tls_and_sasl_on_both_sides_with_clear_errors_and_no_secret_in_the_log() {
    let Some(b) = &Broker::start_secure("sec1", &Security::new(Protocol::SaslSsl)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(
        dir.path(),
        &[("app", "app-pw-7f3a"), ("other", "other-pw-91c2")],
    );
    let admin = format!("127.0.0.1:{}", support::free_port());
    let yaml = format!(
        "clusters:\n{}{}admin:\n  listen: \"{admin}\"\n",
        cluster_yaml(dir.path(), "dc1", b, "SCRAM-SHA-512", ADMIN),
        proxy_yaml(b, &users, "dc1", "")
    );
    let k = Kflip::start_with_log(&yaml, "debug");
    b.create_secure_topic("sec-t", 2);
    for mech in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let cfg = through(&k, b.ca_pem(), mech, "app", "app-pw-7f3a");
        let vals = values(&format!("v-{mech}"), 3);
        produce(&cfg, "sec-t", &vals);
    }
    let got = try_read(&b.admin_config(), "sec-t", 9, LIMIT).expect("read dc1 directly");
    assert_eq!(got.len(), 9);
    let mut got = try_read(
        &through(&k, b.ca_pem(), "SCRAM-SHA-512", "other", "other-pw-91c2"),
        "sec-t",
        9,
        LIMIT,
    )
    .expect("read through kflip");
    got.sort();
    assert_eq!(got.len(), 9);

    // Wrong password, unknown user, and a client that does not trust
    // kflip's certificate: each a clear error, never a hang.
    let wrong = through(&k, b.ca_pem(), "SCRAM-SHA-512", "app", "not-the-password");
    let e = wait_error(&wrong, "Authentication failed", LIMIT);
    assert!(!e.contains("not-the-password"), "{e}");
    wait_error(
        &through(&k, b.ca_pem(), "PLAIN", "nobody", "x"),
        "Authentication failed",
        LIMIT,
    );
    let untrusted = through(
        &k,
        &b.certs().untrusted_ca,
        "SCRAM-SHA-512",
        "app",
        "app-pw-7f3a",
    );
    wait_error(&untrusted, "certificate verify failed", LIMIT);
    k.wait_log("SASL authentication failed", LIMIT);

    // No secret of this run is in kflip's log at debug level, nor in its
    // metrics or status; the refused logins are counted.
    let (code, metrics) = support::http_get(&admin, "/metrics");
    assert_eq!(code, 200);
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kflip_proxy_connections_rejected_total{reason=\"auth\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 2.0, "{metrics}");
    let (code, status) = support::http_get(&admin, "/status");
    assert_eq!(code, 200);
    assert!(status.contains("\"reachable\": true"), "{status}");
    let log = k.log();
    for secret in [
        "app-pw-7f3a",
        "other-pw-91c2",
        "not-the-password",
        ADMIN_PASSWORD,
    ] {
        for (what, text) in [("log", &log), ("metrics", &metrics), ("status", &status)] {
            assert!(!text.contains(secret), "kflip's {what} holds a secret");
        }
    }
    assert!(!log.contains("panicked"));
}

#[test]
fn planned_and_disaster_flips_move_authenticated_clients_between_clusters_with_other_credentials() {
    let Some(dc1) = &Broker::start_secure("sec-dc1", &Security::new(Protocol::SaslSsl)) else {
        return;
    };
    let Some(mut dc2_owned) =
        Broker::start_secure("sec-dc2", &Security::new(Protocol::SaslPlaintext))
    else {
        return;
    };
    let dc2 = &dc2_owned;
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("app", "app-pw-5d1e")]);
    let clusters = format!(
        "clusters:\n{}{}",
        cluster_yaml(dir.path(), "dc1", dc1, "SCRAM-SHA-512", ADMIN),
        cluster_yaml(dir.path(), "dc2", dc2, "PLAIN", ADMIN),
    );
    // Both ways: each cluster's writes reach the other, and provenance
    // keeps them from coming back.
    let flows = "replication:\n  flows:\n    - { source: dc1, target: dc2, topics: [\"flip-t\"] }\n    - { source: dc2, target: dc1, topics: [\"flip-t\"] }\n";
    let k = Kflip::start_command(
        "run",
        &format!("{clusters}{}{flows}", proxy_yaml(dc1, &users, "dc1", "")),
        "info",
    );
    dc1.create_secure_topic("flip-t", 1);
    let cfg = through(&k, dc1.ca_pem(), "SCRAM-SHA-256", "app", "app-pw-5d1e");
    let before = values("before", 20);
    produce(&cfg, "flip-t", &before);
    // Replicated to dc2 (whose login is PLAIN, without TLS).
    wait_for("the records on dc2", LIMIT * 2, || {
        let got = try_read(
            &dc2.admin_config(),
            "flip-t",
            before.len(),
            Duration::from_secs(5),
        )
        .ok()?;
        (got.len() == before.len()).then_some(())
    });
    k.write_config(&format!(
        "{clusters}{}{flows}",
        proxy_yaml(dc1, &users, "dc2", "")
    ));
    k.wait_log("switched active cluster", LIMIT);
    // The same client configuration (it logs in to kflip, never to a
    // cluster) goes on producing, now onto dc2.
    let after = values("after", 20);
    produce(&cfg, "flip-t", &after);
    let mut got = try_read(&dc2.admin_config(), "flip-t", 40, LIMIT).expect("read dc2");
    got.sort();
    let mut want: Vec<String> = before.iter().chain(after.iter()).cloned().collect();
    want.sort();
    assert_eq!(got, want);
    // dc2's records are copied back to dc1 (SCRAM over TLS), once.
    wait_for("dc2's records on dc1", LIMIT * 2, || {
        let got = try_read(&dc1.admin_config(), "flip-t", 40, Duration::from_secs(5)).ok()?;
        (got.len() == 40).then_some(())
    });
    // Disaster: dc2 dies; the flip back to dc1 happens at once, and the same
    // client goes on producing there.
    dc2_owned.kill();
    k.write_config(&format!(
        "{clusters}{}{flows}",
        proxy_yaml(dc1, &users, "dc1", "")
    ));
    k.wait_log("disaster switch", LIMIT);
    let last = values("last", 20);
    produce(&cfg, "flip-t", &last);
    let mut got = try_read(&dc1.admin_config(), "flip-t", 60, LIMIT).expect("read dc1");
    got.sort();
    want.extend(last.iter().cloned());
    want.sort();
    assert_eq!(got, want, "dc1 holds every record once");
    let log = k.log();
    for secret in ["app-pw-5d1e", ADMIN_PASSWORD] {
        assert!(!log.contains(secret), "kflip's log holds a secret");
    }
}

#[test]
fn two_principals_keep_their_own_acls_through_kflip() {
    let security = Security::new(Protocol::SaslSsl)
        .user("alice", "alice-secret")
        .user("bob", "bob-secret")
        .with_authorizer();
    let Some(b) = &Broker::start_secure("sec-acl", &security) else {
        return;
    };
    b.create_secure_topic("acl-t", 1);
    b.allow("alice", &["Write", "Describe"], &["--topic", "acl-t"]);
    b.allow("bob", &["Read", "Describe"], &["--topic", "acl-t"]);
    b.allow(
        "bob",
        &["Read"],
        &["--group", support::secure_clients::READER_GROUP],
    );
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("app-a", "pw-a-61"), ("app-b", "pw-b-62")]);
    let alice_pw = file(dir.path(), "alice.pw", "alice-secret");
    let bob_pw = file(dir.path(), "bob.pw", "bob-secret");
    let principals = file(
        dir.path(),
        "principals.yaml",
        &format!(
            "principals:\n  app-a:\n    dc1: {{ mechanism: SCRAM-SHA-512, username: alice, password_file: \"{}\" }}\n  app-b:\n    dc1: {{ mechanism: SCRAM-SHA-256, username: bob, password_file: \"{}\" }}\n",
            alice_pw.display(),
            bob_pw.display()
        ),
    );
    let yaml = format!(
        "clusters:\n{}{}",
        cluster_yaml(dir.path(), "dc1", b, "SCRAM-SHA-512", ADMIN),
        proxy_yaml(
            b,
            &users,
            "dc1",
            &format!("    principals_file: \"{}\"\n", principals.display())
        )
    );
    let k = Kflip::start(&yaml);
    let a = through(&k, b.ca_pem(), "SCRAM-SHA-512", "app-a", "pw-a-61");
    let bob = through(&k, b.ca_pem(), "SCRAM-SHA-512", "app-b", "pw-b-62");
    produce(&a, "acl-t", &values("a", 3));
    let refused = try_produce(&bob, "acl-t", &["b-0"], Duration::from_secs(10))
        .expect_err("bob may not write acl-t");
    assert!(refused.to_string().contains("uthoriz"), "{refused}");
    let got = try_read(&bob, "acl-t", 3, LIMIT).expect("bob reads acl-t");
    assert_eq!(got.len(), 3);
    let _ = Auth::Anonymous;
}

#[test]
fn mtls_on_both_sides_and_bad_client_certificates_fail_clearly() {
    let security = Security::new(Protocol::Mtls).user("app", "unused");
    let Some(b) = &Broker::start_secure("sec-mtls", &security) else {
        return;
    };
    b.create_secure_topic("mtls-t", 1);
    let certs = b.certs();
    let kflip_cert = certs.client(ADMIN);
    let server = &certs.server;
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\", tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }} }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n  tls: {{ cert_file: \"{}\", key_file: \"{}\", client_ca_file: \"{}\" }}\n",
        b.bootstrap(),
        b.ca_pem().display(),
        kflip_cert.cert.display(),
        kflip_cert.key.display(),
        server.cert.display(),
        server.key.display(),
        b.ca_pem().display(),
    );
    let k = Kflip::start(&yaml);
    let client = |cert: Option<&support::certs::CertFiles>| {
        let mut c = clients::config(&k.addr());
        c.set("security.protocol", "SSL")
            .set("ssl.ca.location", b.ca_pem().display().to_string());
        if let Some(f) = cert {
            c.set("ssl.certificate.location", f.cert.display().to_string())
                .set("ssl.key.location", f.key.display().to_string());
        }
        c
    };
    let good = client(Some(&certs.client("app")));
    produce(&good, "mtls-t", &values("m", 5));
    let got = try_read(&good, "mtls-t", 5, LIMIT).expect("read through kflip");
    assert_eq!(got.len(), 5);
    // No certificate, one from another CA, an expired one: refused at the
    // handshake, clearly, on kflip's side (its log) and the client's.
    for (name, cfg) in [
        ("none", client(None)),
        ("untrusted", client(Some(&certs.untrusted_client))),
        ("expired", client(Some(&certs.expired_client))),
    ] {
        let e = wait_error(&cfg, "SSL", LIMIT);
        assert!(!e.is_empty(), "{name}");
    }
    k.wait_log("TLS handshake failed", LIMIT);
    assert!(!k.log().contains("panicked"));
}

#[test]
fn a_broker_certificate_kflip_does_not_trust_fails_clearly_on_kflips_side() {
    let Some(b) = &Broker::start_secure("sec-untrusted", &Security::new(Protocol::SaslSsl)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("app", "app-pw-0b7d")]);
    let pw = file(dir.path(), "admin.pw", ADMIN_PASSWORD);
    // kflip trusts another CA than the one that signed the broker's
    // certificate.
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\", tls: {{ ca_file: \"{}\" }}, sasl: {{ mechanism: SCRAM-SHA-512, username: {ADMIN}, password_file: \"{}\" }} }}\n{}",
        b.bootstrap(),
        b.certs().untrusted_ca.display(),
        pw.display(),
        proxy_yaml(b, &users, "dc1", "")
    );
    let k = Kflip::start(&yaml);
    let cfg = through(&k, b.ca_pem(), "SCRAM-SHA-512", "app", "app-pw-0b7d");
    let refused = try_produce(&cfg, "never", &["x"], Duration::from_secs(5));
    assert!(
        refused.is_err(),
        "nothing can be produced through an untrusted upstream"
    );
    k.wait_log("TLS handshake with", LIMIT);
    let log = k.log();
    assert!(
        log.contains("UnknownIssuer") || log.contains("certificate"),
        "{log}"
    );
    assert!(!log.contains(ADMIN_PASSWORD) && !log.contains("app-pw-0b7d"));
}

#[test]
fn the_java_client_logs_in_to_kflip_over_tls_and_produces() {
    let Some(b) = &Broker::start_secure("sec-java", &Security::new(Protocol::SaslSsl)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path(), &[("java-app", "java-pw-3e9f")]);
    let yaml = format!(
        "clusters:\n{}{}",
        cluster_yaml(dir.path(), "dc1", b, "SCRAM-SHA-512", ADMIN),
        proxy_yaml(b, &users, "dc1", "")
    );
    let k = Kflip::start(&yaml);
    b.create_secure_topic("java-t", 1);
    let props = file(
        dir.path(),
        "java.properties",
        &format!(
            "security.protocol=SASL_SSL\nssl.truststore.type=PEM\nssl.truststore.location={}\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"java-app\" password=\"java-pw-3e9f\";\nacks=all\n",
            b.ca_pem().display()
        ),
    );
    // Kafka's own producer tool: the Java client 4.4 through kflip.
    let (ok, out) = support::broker::kafka_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        &[
            "--topic",
            "java-t",
            "--num-records",
            "200",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--producer.config",
            props.to_str().unwrap(),
            "--producer-props",
            &format!("bootstrap.servers={}", k.addr()),
        ],
    );
    assert!(ok, "{out}");
    let got = try_read(&b.admin_config(), "java-t", 200, LIMIT).expect("read dc1");
    assert_eq!(got.len(), 200);
    // A wrong password: the Java client reports an authentication error.
    let wrong = file(
        dir.path(),
        "wrong.properties",
        &std::fs::read_to_string(&props)
            .unwrap()
            .replace("java-pw-3e9f", "not-it"),
    );
    let (ok, out) = support::broker::kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &k.addr(),
            "--command-config",
            wrong.to_str().unwrap(),
            "--list",
        ],
    );
    assert!(!ok);
    assert!(
        out.contains("Authentication failed") || out.contains("SaslAuthenticationException"),
        "{out}"
    );
    assert!(!k.log().contains("java-pw-3e9f"));
}

/// An unsecured JWT (`alg: none`) for `sub`: what Kafka's default
/// OAUTHBEARER validator accepts, good for a test broker only.
fn unsecured_jwt(sub: &str) -> String {
    use base64::Engine as _;
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "{}.{}.",
        b64(r#"{"alg":"none"}"#),
        b64(&format!(
            r#"{{"sub":"{sub}","iat":{now},"exp":{}}}"#,
            now + 3600
        ))
    )
}

#[test]
fn oauthbearer_logins_to_a_cluster_serve_the_proxy() {
    let Some(dc1) = &Broker::start_secure("sec-oauth", &Security::new(Protocol::SaslPlaintext))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = file(dir.path(), "dc1.token", &unsecured_jwt(ADMIN));
    let users = users_file(dir.path(), &[("app", "app-pw-8c2a")]);
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\", sasl: {{ mechanism: OAUTHBEARER, token_file: \"{}\" }} }}\n{}",
        dc1.bootstrap(),
        token.display(),
        proxy_yaml(dc1, &users, "dc1", "")
    );
    let k = Kflip::start(&yaml);
    dc1.create_secure_topic("oauth-up", 1);
    // Each session logs in to dc1 with the token from the file.
    let cfg = through(&k, dc1.ca_pem(), "SCRAM-SHA-512", "app", "app-pw-8c2a");
    let vals = values("o", 10);
    produce(&cfg, "oauth-up", &vals);
    let got = try_read(&dc1.admin_config(), "oauth-up", 10, LIMIT).expect("read dc1");
    assert_eq!(got.len(), 10);
    assert!(!k.log().contains(&unsecured_jwt(ADMIN)[..20]));
}
