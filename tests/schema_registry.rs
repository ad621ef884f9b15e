//! The Schema Registry beside the data: `_schemas` replicated by the
//! engine with its order, keys and configs, and the HTTP pass-through
//! (`schema_registry.listen`) following a flip of `proxy.active` with the
//! same hold as Kafka traffic. Apache Kafka only.
//!
//! The registries are `tests/clients/schema_registry.py`, a small
//! Confluent-compatible registry on Kafka (docs/schema-registry.md says why
//! not a released one): one per cluster, each reading its own `_schemas`.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use serde_json::{json, Value};
use support::clients::{self, create_topic};
use support::{free_port, repo, require_kafka, wait_for, Kflip, TwoClusters};

/// A registry process on one cluster; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(bootstrap: &str, standby: bool) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port_file = dir.path().join("port");
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/clients/schema_registry.py"))
            .args([bootstrap, "_schemas"])
            .arg(&port_file)
            .stdin(Stdio::null());
        if standby {
            cmd.arg("standby");
        }
        let mut child = cmd.spawn().expect("start the registry");
        let port = wait_for("the registry to listen", Duration::from_secs(60), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the registry exited: {status}");
            }
            std::fs::read_to_string(&port_file)
                .ok()?
                .trim()
                .parse()
                .ok()
        });
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    match agent().get(format!("http://{addr}{path}")).call() {
        Ok(mut r) => (
            r.status().as_u16(),
            serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
                .unwrap_or(Value::Null),
        ),
        Err(e) => panic!("GET {addr}{path}: {e}"),
    }
}

/// Registers `schema` under `subject` at `addr`: (status, body).
fn register(addr: &str, subject: &str, schema: &str) -> (u16, Value) {
    let body = json!({ "schema": schema }).to_string();
    match agent()
        .post(format!("http://{addr}/subjects/{subject}/versions"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .send(body.as_str())
    {
        Ok(mut r) => (
            r.status().as_u16(),
            serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
                .unwrap_or(Value::Null),
        ),
        Err(e) => panic!("POST {addr}/subjects/{subject}/versions: {e}"),
    }
}

fn avro(name: &str, fields: usize) -> String {
    let fields: Vec<Value> = (0..fields)
        .map(|i| json!({ "name": format!("f{i}"), "type": "string", "default": "" }))
        .collect();
    json!({ "type": "record", "name": name, "fields": fields }).to_string()
}

/// Every record of `_schemas` in order: (key, whether it has kflip-origin).
fn schema_records(bootstrap: &str) -> Vec<(String, bool)> {
    let c: BaseConsumer = clients::config(bootstrap)
        .set("group.id", "sr-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("_schemas", 0, rdkafka::Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let (_, end) = c
        .fetch_watermarks("_schemas", 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut out = Vec::new();
    let mut next = 0;
    while next < end {
        if let Some(Ok(m)) = c.poll(Duration::from_secs(2)) {
            next = m.offset() + 1;
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            let origin = m
                .headers()
                .is_some_and(|h| h.iter().any(|h| h.key == "kflip-origin"));
            out.push((key, origin));
        }
    }
    out
}

/// The pass-through's port, from kflip's log.
fn pass_through(k: &Kflip) -> String {
    wait_for(
        "the pass-through to listen",
        Duration::from_secs(20),
        || {
            let log = k.log();
            let needle = "schema registry pass-through listening listen=";
            let at = log.find(needle)? + needle.len();
            Some(log[at..].split_whitespace().next()?.to_string())
        },
    )
}

fn config(dcs: &TwoClusters, r1: &Registry, r2: &Registry, active: &str) -> String {
    format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\", schema_registry: \"http://{}\" }}\n  dc2: {{ bootstrap: \"{}\", schema_registry: \"http://{}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: {active}\n  switch_drain: 20s\nreplication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\"_schemas\"] }}\nschema_registry:\n  listen: \"127.0.0.1:0\"\n",
        dcs.dc1.bootstrap(),
        r1.addr(),
        dcs.dc2.bootstrap(),
        r2.addr()
    )
}

/// Subjects registered through kflip reach dc2 with the same ids and
/// versions, in the same order, on a compacted topic; after a flip (with
/// a write arriving during its hold) registry traffic goes to dc2.
#[test]
fn schemas_replicate_and_the_pass_through_follows_the_flip() {
    if !require_kafka("schema_registry") {
        return;
    }
    let dcs = TwoClusters::start();
    let r1 = Registry::start(&dcs.dc1.bootstrap(), false);
    let r2 = Registry::start(&dcs.dc2.bootstrap(), true);
    create_topic(&dcs.dc1.bootstrap(), "sr-idle", 1);
    create_topic(&dcs.dc2.bootstrap(), "sr-idle", 1);
    let k = Kflip::start_command("run", &config(&dcs, &r1, &r2, "dc1"), "kflip=debug,info");
    let sr = pass_through(&k);

    // Several subjects and versions; c-value reuses a-value v1's text, so
    // it gets the same id (Confluent's rule).
    let mut registered = Vec::new();
    for (subject, name, fields) in [
        ("a-value", "A", 1),
        ("a-value", "A", 2),
        ("b-value", "B", 1),
        ("a-value", "A", 3),
        ("b-value", "B", 2),
        ("c-value", "A", 1),
    ] {
        let (code, body) = register(&sr, subject, &avro(name, fields));
        assert_eq!(code, 200, "{body}");
        registered.push((subject, body["id"].as_i64().expect("an id")));
    }
    assert_eq!(registered[5].1, registered[0].1, "same text, same id");
    let on_dc1 =
        |subject: &str, v: i64| get(&r1.addr(), &format!("/subjects/{subject}/versions/{v}")).1;
    for (subject, versions) in [("a-value", 3), ("b-value", 2), ("c-value", 1)] {
        for v in 1..=versions {
            let want = on_dc1(subject, v);
            assert_eq!(want["version"], v, "{want}");
            let got = wait_for(
                &format!("{subject} v{v} on the dc2 registry"),
                Duration::from_secs(60),
                || {
                    let (code, body) =
                        get(&r2.addr(), &format!("/subjects/{subject}/versions/{v}"));
                    (code == 200).then_some(body)
                },
            );
            assert_eq!(got, want, "ids, versions and schemas identical");
        }
    }
    let src = schema_records(&dcs.dc1.bootstrap());
    let dst = schema_records(&dcs.dc2.bootstrap());
    let keys = |r: &[(String, bool)]| r.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&dst), keys(&src), "the same keys in the same order");
    assert!(
        dst.iter().all(|(_, origin)| *origin),
        "provenance on every copy"
    );
    let cfg = clients::topic_configs(&dcs.dc2.bootstrap(), "_schemas");
    assert_eq!(
        cfg.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert_eq!(clients::partitions(&dcs.dc2.bootstrap(), "_schemas"), 1);

    // A long-poll Fetch in flight on dc1 keeps the switch's drain (and so
    // its hold) open for a few seconds.
    let mut poller = support::raw::Raw::connect(&k.addr());
    poller.send(&long_poll("sr-idle"), 7);
    k.write_config(&config(&dcs, &r1, &r2, "dc2"));
    k.wait_log("planned switch: holding requests", Duration::from_secs(20));
    let during_hold = !k.log().contains("switched active cluster");
    let (code, body) = register(&sr, "held-value", &avro("Held", 1));
    assert_eq!(code, 200, "a write during the hold is answered: {body}");
    k.wait_log("switched active cluster", Duration::from_secs(30));
    assert!(during_hold, "the write was sent while the switch held");
    let (code, _) = get(&r2.addr(), "/subjects/held-value/versions/1");
    assert_eq!(code, 200, "the held write landed on dc2");
    let (code, _) = get(&r1.addr(), "/subjects/held-value/versions/1");
    assert_eq!(code, 404, "and never on dc1");

    // After the flip: reads and writes through kflip are dc2's.
    let (code, body) = register(&sr, "after-value", &avro("After", 1));
    assert_eq!(code, 200, "{body}");
    let after_id = body["id"].as_i64().unwrap();
    assert!(
        registered.iter().all(|(_, id)| *id < after_id),
        "dc2 continues the replicated ids"
    );
    assert_eq!(get(&r1.addr(), "/subjects/after-value/versions").0, 404);
    let (_, subjects) = get(&sr, "/subjects");
    for s in ["a-value", "b-value", "c-value", "held-value", "after-value"] {
        assert!(
            subjects.as_array().unwrap().contains(&json!(s)),
            "{subjects}"
        );
    }
}

fn long_poll(topic: &str) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(6_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])])
}

/// A registry that does not answer is a Confluent-style 503, not a hang.
#[test]
fn an_unreachable_registry_is_a_json_503() {
    let (kafka, registry) = (free_port(), free_port());
    let k = Kflip::start(&format!(
        "clusters:\n  dc1: {{ bootstrap: \"127.0.0.1:{kafka}\", schema_registry: \"http://127.0.0.1:{registry}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n  connect_timeout: 1s\nschema_registry:\n  listen: \"127.0.0.1:0\"\n  request_timeout: 5s\n"
    ));
    let sr = pass_through(&k);
    let (code, body) = get(&sr, "/subjects");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error_code"], 50301, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    let (code, body) = register(&sr, "x-value", &avro("X", 1));
    assert_eq!((code, body["error_code"].clone()), (503, json!(50301)));
}
