//! The secure-broker harness against Apache Kafka 4.4, with librdkafka:
//! SASL_SSL with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN; mTLS; a wrong
//! password, an untrusted CA and bad client certificates refused with a
//! clear error; two principals with different ACLs.
//!
//! Apache Kafka only: on `KFLIP_BROKER=tansu` every test returns at once.

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use support::secure::{Auth, Mechanism, Protocol, Security, ADMIN};
use support::secure_clients::{try_produce, try_read, try_read_group, wait_error, READER_GROUP};
use support::{wait_for, Broker};

/// How long any one step may take.
const LIMIT: Duration = Duration::from_secs(30);

/// The SASL_SSL broker of this file: users alice and bob, ACLs enforced.
fn sasl_ssl() -> Option<&'static Broker> {
    static B: OnceLock<Option<Broker>> = OnceLock::new();
    B.get_or_init(|| {
        let s = Security::new(Protocol::SaslSsl)
            .user("alice", "alice-secret")
            .user("bob", "bob-secret")
            .with_authorizer();
        Broker::start_secure("sasl-ssl", &s)
    })
    .as_ref()
}

/// The mTLS broker of this file: user alice, ACLs enforced.
fn mtls() -> Option<&'static Broker> {
    static B: OnceLock<Option<Broker>> = OnceLock::new();
    B.get_or_init(|| {
        let s = Security::new(Protocol::Mtls)
            .user("alice", "alice-secret")
            .with_authorizer();
        Broker::start_secure("mtls", &s)
    })
    .as_ref()
}

/// Produces three values to a new topic logging in with `auth`, and reads
/// them back.
fn round_trip(b: &Broker, auth: Auth<'_>, topic: &str) {
    b.create_secure_topic(topic, 2);
    let cfg = b.client_config(auth);
    let values: Vec<String> = (1..=3).map(|i| format!("{topic}-{i}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    try_produce(&cfg, topic, &refs, LIMIT)
        .unwrap_or_else(|e| panic!("produce to {topic} as {auth:?}: {e}"));
    let mut got = try_read(&cfg, topic, refs.len(), LIMIT)
        .unwrap_or_else(|e| panic!("read {topic} as {auth:?}: {e}"));
    got.sort();
    assert_eq!(got, values, "{topic} read back as {auth:?}");
}

fn sasl_round_trip(m: Mechanism, topic: &str) {
    let Some(b) = sasl_ssl() else { return };
    round_trip(b, Auth::Sasl(m, ADMIN), topic);
}

#[test]
fn sasl_ssl_scram_sha_256() {
    sasl_round_trip(Mechanism::ScramSha256, "mech-scram-256");
}

#[test]
fn sasl_ssl_scram_sha_512() {
    sasl_round_trip(Mechanism::ScramSha512, "mech-scram-512");
}

#[test]
fn sasl_ssl_plain() {
    sasl_round_trip(Mechanism::Plain, "mech-plain");
}

#[test]
fn sasl_plaintext_scram() {
    let Some(b) = Broker::start_secure("sasl-plaintext", &Security::new(Protocol::SaslPlaintext))
    else {
        return;
    };
    round_trip(
        &b,
        Auth::Sasl(Mechanism::ScramSha256, ADMIN),
        "plaintext-scram",
    );
}

#[test]
fn ssl_without_client_certificate() {
    let Some(b) = Broker::start_secure("ssl", &Security::new(Protocol::Ssl)) else {
        return;
    };
    round_trip(&b, Auth::Anonymous, "ssl-anonymous");
}

#[test]
fn mtls_client_certificate() {
    let Some(b) = mtls() else { return };
    // The principal is the certificate's CN: admin's makes the super user
    // who creates the topic and, with a Java PEM key store, the ACLs.
    b.create_secure_topic("mtls-alice", 2);
    b.allow("alice", &["Read", "Write"], &["--topic", "mtls-alice"]);
    b.allow("alice", &["Read"], &["--group", READER_GROUP]);
    let alice = b.client_config(Auth::Cert("alice"));
    wait_for("alice to write mtls-alice", LIMIT, || {
        try_produce(&alice, "mtls-alice", &["m1", "m2"], LIMIT).ok()
    });
    let mut got = try_read(&alice, "mtls-alice", 2, LIMIT).expect("alice reads mtls-alice");
    got.sort();
    assert_eq!(got, ["m1", "m2"]);
}

#[test]
fn wrong_password_is_refused() {
    let Some(b) = sasl_ssl() else { return };
    for m in Mechanism::ALL {
        let mut cfg = b.client_config(Auth::Sasl(m, "alice"));
        cfg.set("sasl.password", "not-alice-secret");
        let e = wait_error(&cfg, "SASL authentication error", LIMIT);
        let why = match m {
            Mechanism::Plain => "Invalid username or password".to_string(),
            _ => format!("invalid credentials with SASL mechanism {}", m.name()),
        };
        assert!(e.contains(&why), "{m:?}: {e}");
    }
}

#[test]
fn untrusted_ca_fails_the_handshake() {
    let Some(b) = sasl_ssl() else { return };
    let mut cfg = b.client_config(Auth::Sasl(Mechanism::ScramSha512, "alice"));
    cfg.set(
        "ssl.ca.location",
        b.certs().untrusted_ca.display().to_string(),
    );
    let e = wait_error(&cfg, "SSL handshake failed", LIMIT);
    assert!(e.contains("certificate verify failed"), "{e}");
}

#[test]
fn mtls_refuses_missing_foreign_and_expired_certificates() {
    let Some(b) = mtls() else { return };
    let certs = b.certs();
    let mut foreign = b.client_config(Auth::Anonymous);
    foreign
        .set(
            "ssl.certificate.location",
            certs.untrusted_client.cert.display().to_string(),
        )
        .set(
            "ssl.key.location",
            certs.untrusted_client.key.display().to_string(),
        );
    let mut expired = b.client_config(Auth::Anonymous);
    expired
        .set(
            "ssl.certificate.location",
            certs.expired_client.cert.display().to_string(),
        )
        .set(
            "ssl.key.location",
            certs.expired_client.key.display().to_string(),
        );
    // The broker ends the handshake with a TLS alert, which librdkafka
    // reports on its first read.
    for (what, cfg, alert) in [
        (
            "no certificate",
            b.client_config(Auth::Anonymous),
            "bad certificate",
        ),
        ("foreign certificate", foreign, "bad certificate"),
        ("expired certificate", expired, "certificate unknown"),
    ] {
        let e = wait_error(&cfg, "SSL alert number", LIMIT);
        assert!(e.contains(alert), "{what}: {e}");
    }
}

#[test]
fn acls_give_two_principals_different_rights() {
    let Some(b) = sasl_ssl() else { return };
    b.create_secure_topic("a", 1);
    b.create_secure_topic("b", 1);
    b.allow("alice", &["Write"], &["--topic", "a"]);
    // A group of her own, so that what refuses her read is the topic.
    b.allow("alice", &["Read"], &["--group", "alice-readers"]);
    b.allow(
        "bob",
        &["Read"],
        &["--topic", "a", "--group", "bob-readers"],
    );
    // alice logs in with SCRAM-SHA-512, bob with PLAIN: the principal is
    // the user, whatever the mechanism.
    let alice = b.client_config(Auth::Sasl(Mechanism::ScramSha512, "alice"));
    let bob = b.client_config(Auth::Sasl(Mechanism::Plain, "bob"));
    let refused = "Topic authorization failed";

    // The ACLs reach the broker's authorizer through the metadata log:
    // ask until alice may write.
    wait_for("alice to write a", LIMIT, || {
        try_produce(&alice, "a", &["from-alice"], LIMIT).ok()
    });
    let e = try_produce(&alice, "b", &["not-allowed"], LIMIT).expect_err("alice writes b");
    assert!(e.to_string().contains(refused), "alice writes b: {e}");
    let e = try_read_group(&alice, "a", "alice-readers", 1, LIMIT).expect_err("alice reads a");
    assert!(e.to_string().contains(refused), "alice reads a: {e}");

    let got = wait_for("bob to read a", LIMIT, || {
        try_read_group(&bob, "a", "bob-readers", 1, LIMIT).ok()
    });
    assert_eq!(got, ["from-alice"]);
    let e = try_produce(&bob, "a", &["from-bob"], LIMIT).expect_err("bob writes a");
    assert!(e.to_string().contains(refused), "bob writes a: {e}");
}
