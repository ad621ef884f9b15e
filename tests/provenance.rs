//! Provenance cannot be forged through kflip: a client Produce whose
//! records carry the `kflip-origin` header is refused with INVALID_RECORD,
//! compressed or not, and nothing of it reaches the cluster; other records
//! go on.

mod support;

use std::time::Duration;

use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::clients::{self, block_on, create_topic};
use support::{Broker, Kflip};

fn send(p: &FutureProducer, topic: &str, value: &str, forged: bool) -> Result<(), String> {
    let mut rec = FutureRecord::to(topic).key(value).payload(value);
    if forged {
        rec = rec.headers(OwnedHeaders::new().insert(Header {
            key: "kflip-origin",
            value: Some("other-cluster/orders/0/42/1700000000000"),
        }));
    } else {
        rec = rec.headers(OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some("kflip-origin"),
        }));
    }
    block_on(p.send(rec, Duration::from_secs(20)))
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

#[test]
fn forged_provenance_is_refused_in_every_codec_and_never_reaches_the_cluster() {
    let b = Broker::start("dc1");
    let k = Kflip::start(&format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n",
        b.addr()
    ));
    create_topic(&b.addr(), "prov", 1);
    let mut kept = Vec::new();
    // The rdkafka crate's librdkafka is built without zstd; the codec unit
    // tests cover zstd batches.
    for codec in ["none", "gzip", "snappy", "lz4"] {
        let p: FutureProducer = clients::config(&k.addr())
            .set("acks", "all")
            .set("compression.codec", codec)
            .set("linger.ms", "0")
            .create()
            .expect("producer");
        let err = send(&p, "prov", &format!("forged-{codec}"), true)
            .expect_err("a forged kflip-origin header must be refused");
        assert!(
            err.contains("InvalidRecord") || err.contains("Invalid record"),
            "{codec}: {err}"
        );
        let clean = format!("clean-{codec}");
        send(&p, "prov", &clean, false).unwrap_or_else(|e| panic!("{codec}: {e}"));
        kept.push(clean);
    }
    k.wait_log("Produce refused", Duration::from_secs(5));
    // Read straight from the broker: only the clean records are there.
    let got = clients::values(&b.addr(), "prov");
    assert_eq!(got, kept);
    assert!(clients::natives(&b.addr(), "prov").len() == kept.len());
    assert!(!k.log().contains("panicked"));
}

/// The headers of a record that kflip let through are untouched.
#[test]
fn a_header_value_that_merely_mentions_kflip_origin_passes_untouched() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let b = Broker::start("dc1");
    let k = Kflip::start(&format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n",
        b.addr()
    ));
    create_topic(&b.addr(), "mention", 1);
    let p: FutureProducer = clients::config(&k.addr()).create().expect("producer");
    send(&p, "mention", "v", false).expect("a header value is not provenance");
    let c: BaseConsumer = clients::config(&b.addr())
        .set("group.id", "mention-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&["mention"]).unwrap();
    let m = support::wait_for("the record", Duration::from_secs(30), || {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => Some(m.detach()),
            _ => None,
        }
    });
    let h = m.headers().expect("headers kept");
    assert_eq!(h.count(), 1);
    assert_eq!(h.get(0).key, "trace");
    assert_eq!(h.get(0).value, Some(&b"kflip-origin"[..]));
}
