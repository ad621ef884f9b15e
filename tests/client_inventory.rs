//! The client inventory and the DR policy guard with real clients through
//! kflip: librdkafka producers with weak and strong settings, librdkafka
//! consumers resetting to earliest and latest, the Java client and
//! kafka-python; what `/clients`, `kflip clients` and
//! `kflip failover --dry-run` say of them; and the rules that warn or
//! refuse.

mod support;

use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use support::clients::{self, create_topic};
use support::{free_port, wait_for, Kflip};

fn kflip(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kflip"))
        .args(args)
        .env("KFLIP_LOG", "warn")
        .output()
        .expect("run kflip");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The inventory entry of `client_id`, once it satisfies `ready`.
fn entry(admin: &str, client_id: &str, ready: impl Fn(&Value) -> bool) -> Value {
    wait_for(
        &format!("the inventory entry of {client_id}"),
        Duration::from_secs(30),
        || {
            let (code, body) = support::http_get(admin, "/clients");
            if code != 200 {
                return None;
            }
            let v: Value = serde_json::from_str(&body).expect("/clients is JSON");
            v["clients"]
                .as_array()?
                .iter()
                .find(|c| c["client_id"] == client_id && ready(c))
                .cloned()
        },
    )
}

fn has(v: &Value, key: &str, item: Value) -> bool {
    v[key].as_array().is_some_and(|a| a.contains(&item))
}

/// Produces `n` records; returns the first delivery error, if any.
fn produce(addr: &str, client_id: &str, topic: &str, extra: &[(&str, &str)]) -> Option<KafkaError> {
    let mut cfg = clients::config(addr);
    cfg.set("client.id", client_id)
        .set("message.timeout.ms", "20000");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    let p: BaseProducer = cfg.create().expect("producer");
    for i in 0..5 {
        let v = format!("{topic}-{i}");
        p.send(BaseRecord::to(topic).key(&v).payload(&v))
            .expect("queued");
    }
    let mut first = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while p.in_flight_count() > 0 && std::time::Instant::now() < deadline {
        p.poll(Duration::from_millis(100));
    }
    if let Err(e) = p.flush(Duration::from_secs(5)) {
        first = Some(e);
    }
    first
}

/// A producer whose delivery reports are kept.
struct Reports(std::sync::Mutex<Vec<Result<(), KafkaError>>>);

impl rdkafka::ClientContext for Reports {}

impl rdkafka::producer::ProducerContext for Reports {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        self.0
            .lock()
            .unwrap()
            .push(r.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
    }
}

/// Produces 5 records and returns their delivery results.
fn deliveries(
    addr: &str,
    client_id: &str,
    topic: &str,
    extra: &[(&str, &str)],
) -> Vec<Result<(), KafkaError>> {
    let mut cfg = clients::config(addr);
    cfg.set("client.id", client_id)
        .set("message.timeout.ms", "20000");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    let p: BaseProducer<Reports> = cfg
        .create_with_context(Reports(Default::default()))
        .expect("producer");
    for i in 0..5 {
        let v = format!("{topic}-{i}");
        p.send(BaseRecord::to(topic).key(&v).payload(&v))
            .expect("queued");
    }
    let _ = p.flush(Duration::from_secs(30));
    let out = std::mem::take(&mut *p.context().0.lock().unwrap());
    out
}

/// A group consumer of `topic` starting at `reset`; polls until it reads
/// something or `seen()` holds (at most 60 s); returns the records read.
fn consume(
    addr: &str,
    client_id: &str,
    group: &str,
    topic: &str,
    reset: &str,
    seen: impl Fn() -> bool,
) -> usize {
    let c: BaseConsumer = clients::config(addr)
        .set("client.id", client_id)
        .set("group.id", group)
        .set("auto.offset.reset", reset)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut read = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline && read == 0 && !seen() {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(200)) {
            read += 1;
        }
    }
    read
}

/// Whether the inventory entry of `client_id` satisfies `ready` now.
fn listed(admin: &str, client_id: &str, ready: impl Fn(&Value) -> bool) -> bool {
    let (code, body) = support::http_get(admin, "/clients");
    code == 200
        && serde_json::from_str::<Value>(&body).is_ok_and(|v| {
            v["clients"]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c["client_id"] == client_id && ready(c)))
        })
}

#[test]
fn inventory_and_policy_with_real_clients() {
    if !support::require_kafka("inventory_and_policy_with_real_clients") {
        return;
    }
    let dcs = support::shared_clusters();
    let admin = format!("127.0.0.1:{}", free_port());
    for t in ["inv-loose", "inv-strict", "inv-java", "inv-py"] {
        create_topic(&dcs.dc1.bootstrap(), t, 2);
        create_topic(&dcs.dc2.bootstrap(), t, 2);
    }
    let policy = "policy:\n  - { require: acks_all, action: enforce, topics: [\"inv-strict\"] }\n  - { require: idempotence, action: warn }\n  - { require: no_latest_reset, action: enforce, groups: [\"inv-g-strict\"] }\n";
    let yaml = format!(
        "{}admin:\n  listen: \"{admin}\"\n{policy}",
        dcs.config("dc1", "")
    );
    let k = Kflip::start(&yaml);
    let addr = k.addr();

    // A weak producer (acks=1, not idempotent) is let through where only
    // a warning applies, and refused where acks=all is enforced.
    let weak = [("acks", "1"), ("enable.idempotence", "false")];
    assert!(produce(&addr, "weak-producer", "inv-loose", &weak).is_none());
    let refused = deliveries(&addr, "weak-producer", "inv-strict", &weak);
    assert_eq!(refused.len(), 5);
    for r in &refused {
        match r {
            Err(KafkaError::MessageProduction(code)) => {
                assert_eq!(*code, RDKafkaErrorCode::InvalidRequiredAcks, "{r:?}")
            }
            other => panic!("a weak producer's record on inv-strict: {other:?}"),
        }
    }
    assert!(clients::values(&dcs.dc1.bootstrap(), "inv-strict").is_empty());
    k.wait_log("DR policy: produces with acks=1", Duration::from_secs(10));
    let log = k.log();
    assert!(
        log.lines().any(|l| l.contains("DR policy")
            && l.contains("weak-producer")
            && l.contains("refused")),
        "the refusal names the client"
    );
    assert!(
        log.contains("produces without idempotence"),
        "the idempotence rule warns"
    );
    // The strong producer (librdkafka defaults here: acks=all, idempotent)
    // passes both rules.
    let strong = [("enable.idempotence", "true")];
    assert!(produce(&addr, "strong-producer", "inv-strict", &strong).is_none());
    assert_eq!(clients::values(&dcs.dc1.bootstrap(), "inv-strict").len(), 5);

    let w = entry(&admin, "weak-producer", |c| {
        c["violations"]["acks_all"].as_u64() >= Some(1)
    });
    assert!(has(&w, "acks", 1.into()), "{w}");
    assert!(has(&w, "producer", "plain".into()), "{w}");
    assert!(has(&w, "produced", "inv-loose".into()), "{w}");
    assert!(
        w["software"]
            .as_str()
            .is_some_and(|s| s.contains("librdkafka")),
        "the client software from ApiVersions: {w}"
    );
    assert!(w["violations"]["idempotence"].as_u64() >= Some(1), "{w}");
    let s = entry(&admin, "strong-producer", |c| {
        has(c, "produced", "inv-strict".into())
    });
    assert!(
        has(&s, "acks", (-1).into()) && has(&s, "producer", "idempotent".into()),
        "{s}"
    );
    assert!(
        s["switch_risks"].as_array().is_some_and(|r| r.is_empty()),
        "{s}"
    );

    // Consumers whose group has no offset: where they start is seen.
    let read = consume(
        &addr,
        "early-reader",
        "inv-g-early",
        "inv-loose",
        "earliest",
        || false,
    );
    assert!(read > 0, "an earliest consumer reads what was produced");
    let e = entry(&admin, "early-reader", |c| {
        c["resets"]["inv-g-early"].is_array()
    });
    assert_eq!(
        e["resets"]["inv-g-early"],
        serde_json::json!(["earliest"]),
        "{e}"
    );
    assert!(
        has(&e, "consumed", "inv-loose".into()) && has(&e, "groups", "inv-g-early".into()),
        "{e}"
    );
    // Polls until kflip has seen where it started (nothing new to read).
    consume(
        &addr,
        "late-reader",
        "inv-g-late",
        "inv-loose",
        "latest",
        || {
            listed(&admin, "late-reader", |c| {
                c["resets"]["inv-g-late"].is_array()
            })
        },
    );
    let l = entry(&admin, "late-reader", |c| {
        c["resets"]["inv-g-late"].is_array()
    });
    assert_eq!(
        l["resets"]["inv-g-late"],
        serde_json::json!(["latest"]),
        "{l}"
    );
    assert!(
        l["switch_risks"].as_array().is_some_and(|r| r
            .iter()
            .any(|x| x.as_str().unwrap_or("").contains("log end"))),
        "{l}"
    );
    // Enforced: a latest reset in the strict group is refused; the
    // consumer sees the error and kflip names it.
    let read = consume(
        &addr,
        "strict-late",
        "inv-g-strict",
        "inv-loose",
        "latest",
        || {
            listed(&admin, "strict-late", |c| {
                c["violations"]["no_latest_reset"].as_u64() >= Some(1)
            })
        },
    );
    assert_eq!(read, 0);
    k.wait_log(
        "DR policy: group inv-g-strict has no committed offset",
        Duration::from_secs(10),
    );
    assert!(k
        .log()
        .lines()
        .any(|l| l.contains("strict-late") && l.contains("refused")));
    let v = entry(&admin, "strict-late", |c| {
        c["violations"]["no_latest_reset"].as_u64() >= Some(1)
    });
    assert!(
        !has(&v, "resets", "inv-g-strict".into()),
        "a refused reset is not recorded as taken: {v}"
    );
    // ...and the same group starting at earliest reads.
    let read = consume(
        &addr,
        "strict-early",
        "inv-g-strict",
        "inv-loose",
        "earliest",
        || false,
    );
    assert!(read > 0);

    // Other clients: the Java client and kafka-python name their software.
    let topic = "inv-java";
    let run = support::clients::run({
        let mut cmd = clients::java_client();
        cmd.args(["roundtrip", &addr, topic, "inv-g-java", "20"]);
        cmd
    });
    assert!(run.ok, "java roundtrip: {}{}", run.stdout, run.stderr);
    let run = clients::python(
        "roundtrip.py",
        &["kafka-python", &addr, "inv-py", "inv-g-py", "20"],
    );
    assert!(
        run.ok,
        "kafka-python roundtrip: {}{}",
        run.stdout, run.stderr
    );
    let all: Value = serde_json::from_str(&support::http_get(&admin, "/clients").1).unwrap();
    let software: Vec<&str> = all["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["software"].as_str())
        .collect();
    assert!(software.iter().any(|s| s.contains("java")), "{software:?}");
    assert!(
        all["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| has(c, "consumed", "inv-py".into())),
        "kafka-python's consumer is listed"
    );

    // The CLI: the table, the JSON, and the pre-switch report.
    let cfg = k.config_path();
    let cfg = cfg.to_str().unwrap();
    let (code, out, err) = kflip(&["clients", "-c", cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("weak-producer") && out.contains("RISK: produces with acks=1"),
        "{out}"
    );
    let (code, out, _) = kflip(&["clients", "-c", cfg, "--json"]);
    assert_eq!(code, 0);
    assert!(serde_json::from_str::<Value>(&out).unwrap()["clients"].is_array());
    let (code, out, err) = kflip(&["failover", "-c", cfg, "--to", "dc2", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("clients a switch would hurt"), "{out}");
    assert!(
        out.contains("weak-producer") && out.contains("late-reader"),
        "{out}"
    );
    assert!(!out.contains("strong-producer:"), "{out}");
    let status: Value = serde_json::from_str(&support::http_get(&admin, "/status").1).unwrap();
    assert!(status["clients"].as_array().is_some_and(|c| c.len() >= 5));
}

#[test]
fn a_bad_policy_is_refused_on_reload_and_the_old_one_stays() {
    if !support::require_kafka("a_bad_policy_is_refused_on_reload_and_the_old_one_stays") {
        return;
    }
    let dcs = support::shared_clusters();
    create_topic(&dcs.dc1.bootstrap(), "inv-reload", 1);
    let good = format!(
        "{}policy:\n  - {{ require: acks_all, action: enforce }}\n",
        dcs.config("dc1", "")
    );
    let k = Kflip::start(&good);
    let weak = [("acks", "1"), ("enable.idempotence", "false")];
    let bad = good.replace("action: enforce", "action: block");
    k.write_config(&bad);
    k.wait_log("policy[0].action", Duration::from_secs(10));
    let refused = deliveries(&k.addr(), "reload-producer", "inv-reload", &weak);
    assert!(
        refused.iter().all(|r| r.is_err()),
        "the old policy still enforces: {refused:?}"
    );
    // A valid reload without the rule lets the producer through.
    k.write_config(&dcs.config("dc1", ""));
    wait_for(
        "the producer is let through",
        Duration::from_secs(30),
        || {
            deliveries(&k.addr(), "reload-producer", "inv-reload", &weak)
                .iter()
                .all(|r| r.is_ok())
                .then_some(())
        },
    );
}
