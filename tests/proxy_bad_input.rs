//! Bad input gets a clear error and never a panic or a hang, and the proxy
//! keeps serving everyone else.

mod support;

use std::time::Duration;

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};
use support::clients::{self, create_topic};
use support::raw::Raw;
use support::{wait_for, Broker, Kflip};

fn setup(extra: &str) -> (Broker, Kflip) {
    let b = Broker::start("dc1");
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n{extra}",
        b.addr()
    );
    let k = Kflip::start(&yaml);
    (b, k)
}

/// A healthy client still gets metadata through the proxy.
fn still_serving(k: &Kflip) {
    let mut c = Raw::connect(&k.addr());
    let (md, _) = c.call(&MetadataRequest::default().with_topics(Some(vec![])), 9);
    assert_eq!(md.brokers.len(), 1);
}

#[test]
fn garbage_oversize_and_unknown_requests_close_only_their_connection() {
    let (_b, k) = setup("  max_frame_bytes: 1048576\n");
    // A healthy connection opened before the bad ones stays usable after.
    let mut healthy = Raw::connect(&k.addr());
    assert!(!healthy.versions().is_empty());

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "http",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "frame length 1195725856",
        ),
        (
            "oversize",
            vec![0x7f, 0xff, 0xff, 0xff, 0, 0],
            "frame length 2147483647",
        ),
        ("negative", vec![0xff, 0xff, 0xff, 0xf0], "frame length -16"),
        // api key 10000 (proprietary range), version 0, correlation id 1
        (
            "unknown key",
            vec![0, 0, 0, 8, 0x27, 0x10, 0, 0, 0, 0, 0, 1],
            "unknown API key 10000",
        ),
        // Vote (52) is broker-to-broker
        (
            "refused key",
            vec![0, 0, 0, 11, 0, 52, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0],
            "Vote (key 52) is not served",
        ),
        // A header cut short inside client_id
        (
            "truncated",
            vec![0, 0, 0, 9, 0, 3, 0, 1, 0, 0, 0, 1, 0],
            "bad request header",
        ),
    ];
    for (name, bytes, expect) in cases {
        let mut c = Raw::connect(&k.addr());
        c.send_bytes(&bytes).unwrap();
        assert!(c.closed(), "{name}: connection should be closed");
        k.wait_log(expect, Duration::from_secs(10));
    }
    assert!(!healthy.versions().is_empty(), "healthy connection broken");
    still_serving(&k);
    assert!(!k.log().contains("panicked"));
}

#[test]
fn unsupported_api_versions_version_gets_an_answer_not_a_close() {
    let (_b, k) = setup("");
    let mut c = Raw::connect(&k.addr());
    // ApiVersions v99: key 18, version 99, correlation id 5, null client id,
    // no header tags, then a body kflip need not understand.
    let corr = 5;
    c.send_bytes(&[
        0, 0, 0, 14, 0, 18, 0, 99, 0, 0, 0, 5, 0xff, 0xff, 0, 1, 1, 0,
    ])
    .unwrap();
    let raw = c.recv().expect("a v0 error response");
    let mut b = bytes::Bytes::from(raw);
    use kafka_protocol::protocol::Decodable;
    let h = kafka_protocol::messages::ResponseHeader::decode(&mut b, 0).unwrap();
    assert_eq!(h.correlation_id, corr);
    let r = ApiVersionsResponse::decode(&mut b, 0).unwrap();
    assert_eq!(r.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(!r.api_keys.is_empty());
    // The client can retry on the same connection.
    assert!(!c.versions().is_empty());
}

#[test]
fn silent_clients_time_out_and_the_connection_cap_holds() {
    let (_b, k) = setup("  handshake_timeout: 300ms\n  max_connections: 2\n");
    let mut a = Raw::connect(&k.addr());
    let mut b = Raw::connect(&k.addr());
    // Both slots are taken by silent clients: a third is refused at once.
    let mut third = Raw::connect(&k.addr());
    assert!(
        third.closed(),
        "third connection over the cap should be closed"
    );
    k.wait_log("proxy.max_connections reached", Duration::from_secs(5));
    // The silent ones are closed by the handshake timeout...
    assert!(a.closed() && b.closed());
    k.wait_log("proxy.handshake_timeout", Duration::from_secs(5));
    // ...which frees the slots.
    wait_for("a slot to free up", Duration::from_secs(10), || {
        let mut c = Raw::connect(&k.addr());
        c.send(&ApiVersionsRequest::default(), 3);
        c.recv().map(|_| ())
    });
}

#[test]
fn bad_config_on_reload_keeps_the_old_one_running() {
    let b = Broker::start("dc1");
    create_topic(&b.addr(), "reload", 1);
    let good = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n",
        b.addr()
    );
    let k = Kflip::start(&good);
    for (bad, why) in [
        (good.replace("active: dc1", "active: dc9"), "proxy.active"),
        (
            good.replace("active: dc1", "active: dc1\n  colour: blue"),
            "unknown field `colour`",
        ),
        ("clusters: [".to_string(), "config reload rejected"),
    ] {
        k.write_config(&bad);
        k.wait_log(why, Duration::from_secs(10));
        still_serving(&k);
    }
    clients::produce(&k.addr(), "reload", &["after-bad-reload".to_string()]);
    assert_eq!(
        clients::values(&b.addr(), "reload"),
        vec!["after-bad-reload"]
    );
}

#[test]
fn unreachable_cluster_closes_clients_with_a_clear_log() {
    let dead = support::free_port();
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"127.0.0.1:{dead}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n  connect_timeout: 1s\n"
    );
    let k = Kflip::start(&yaml);
    let mut c = Raw::connect(&k.addr());
    assert!(c.closed());
    k.wait_log("no upstream broker reachable", Duration::from_secs(10));
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let (_b, mut k) = setup("  shutdown_grace: 2s\n");
    still_serving(&k);
    let _open = Raw::connect(&k.addr());
    assert_eq!(k.terminate(), Some(0));
    assert!(k.log().contains("shutting down"));
    assert!(k.log().contains("stopped"));
}

#[test]
fn a_taken_virtual_broker_port_stops_kflip_at_start_and_names_it() {
    let b = support::shared_broker();
    // kflip listens on `port`; virtual broker 0 would listen on port + 1,
    // which another program holds.
    let (port, _taken) = wait_for("two adjacent free ports", Duration::from_secs(10), || {
        let p = support::free_port();
        let taken = std::net::TcpListener::bind(("127.0.0.1", p.checked_add(1)?)).ok()?;
        Some((p, taken))
    });
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\nproxy:\n  listen: \"127.0.0.1:{port}\"\n  active: dc1\n",
        b.addr()
    );
    let mut k = Kflip::spawn("proxy", &yaml, "kflip=debug,info");
    wait_for("kflip to exit", Duration::from_secs(30), || {
        (!k.running()).then_some(())
    });
    let log = k.log();
    assert!(
        log.contains(&format!(
            "cannot listen on 127.0.0.1:{} for virtual broker 0",
            port + 1
        )),
        "{log}"
    );
}
