//! kflip renews its upstream SASL sessions (KIP-368) before the broker's
//! `connections.max.reauth.ms` ends them, invisibly to clients: one client
//! connection keeps being answered across several session lifetimes, and a
//! librdkafka producer through kflip sees no error meanwhile.
//!
//! Apache Kafka only: on `KFLIP_BROKER=tansu` the test returns at once.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, HeaderVersion};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;
use support::raw::Raw;
use support::secure::{Protocol, Security, ADMIN};
use support::{clients, Broker, Kflip};

/// The broker's session lifetime.
const LIFETIME: Duration = Duration::from_secs(4);

/// Records every error librdkafka reports (disconnects included).
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

/// Produces one record every ~100 ms through kflip until `until`; the
/// delivery errors and client errors seen.
fn produce_until(addr: &str, topic: &str, until: Instant) -> (usize, Vec<String>) {
    let ctx = Errors::default();
    let p: FutureProducer<Errors> = clients::config(addr)
        .set("acks", "all")
        .set("message.timeout.ms", "15000")
        .create_with_context(ctx.clone())
        .expect("producer");
    let mut failed = Vec::new();
    let mut sent = 0;
    clients::block_on(async {
        while Instant::now() < until {
            let v = format!("v-{sent}");
            if let Err((e, _)) = p
                .send(
                    FutureRecord::to(topic).key(&v).payload(&v),
                    Timeout::After(Duration::from_secs(15)),
                )
                .await
            {
                failed.push(format!("delivery of {v}: {e}"));
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    failed.extend(ctx.0.lock().unwrap().iter().cloned());
    (sent, failed)
}

#[test]
fn one_client_connection_outlives_several_upstream_session_lifetimes() {
    let security = Security::new(Protocol::SaslPlaintext).broker_property(
        "connections.max.reauth.ms",
        &LIFETIME.as_millis().to_string(),
    );
    let Some(b) = &Broker::start_secure("reauth", &security) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("admin.pw");
    std::fs::write(&pw, format!("{}\n", b.password(ADMIN))).unwrap();
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\", sasl: {{ mechanism: SCRAM-SHA-512, username: {ADMIN}, password_file: \"{}\" }} }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n  switch_drain: 1s\n",
        b.bootstrap(),
        pw.display()
    );
    // The renewals are logged at debug, which tests keep off for the
    // proxy unless asked.
    let k = Kflip::start_with_log(&yaml, "kflip=debug,kflip::proxy::connection=debug");
    b.create_secure_topic("reauth-t", 1);

    let until = Instant::now() + LIFETIME * 3 + Duration::from_secs(1);
    let addr = k.addr();
    let producer = std::thread::spawn(move || produce_until(&addr, "reauth-t", until));

    // One connection, one request at a time, for three lifetimes: each
    // is answered on this connection, in order.
    let mut c = Raw::connect(&k.addr());
    let mut answered = 0;
    while Instant::now() < until {
        let req = MetadataRequest::default().with_topics(Some(Vec::new()));
        let corr = c.send(&req, 12);
        let raw = c.recv().unwrap_or_else(|| {
            panic!(
                "request {answered}, {:?} before the end: the connection closed; kflip's log:\n{}",
                until.saturating_duration_since(Instant::now()),
                k.log()
            )
        });
        let mut payload = Bytes::from(raw);
        let h = ResponseHeader::decode(&mut payload, MetadataResponse::header_version(12)).unwrap();
        assert_eq!(h.correlation_id, corr);
        let md = MetadataResponse::decode(&mut payload, 12).unwrap();
        assert!(!md.brokers.is_empty(), "{md:?}");
        answered += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let (sent, errors) = producer.join().unwrap();
    assert!(errors.is_empty(), "the producer saw errors: {errors:#?}");
    assert!(sent > 50, "{sent}");
    let log = k.log();
    let renewals = log.matches("upstream SASL session renewed").count();
    assert!(
        renewals >= 2,
        "{answered} answers but {renewals} renewals; log:\n{log}"
    );
    assert!(!log.contains("closing client connection"), "{log}");
    assert!(!log.contains(b.password(ADMIN)), "{log}");
    eprintln!("{answered} requests answered on one connection, {sent} records produced, {renewals} renewals");
}
