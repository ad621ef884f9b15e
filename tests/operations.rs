//! Operations against real Apache Kafka brokers: the admin API's metrics
//! and status through real traffic, real replication lag, a rejected
//! reload and real flips; every runbook command of the CLI end to end
//! (failover and failback under traffic); the probes while the active
//! cluster is down and while kflip drains; and the dashboard and alert
//! rules checked against a real `/metrics` capture.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use serde_json::Value;
use support::clients::{self, create_topic};
use support::{free_port, repo, wait_for, Broker, Kflip, TwoClusters};

const FAST: &str = "discovery_interval: 500ms, group_sync_interval: 500ms, config_sync_interval: 1s, checkpoint_interval: 200ms, fetch_wait: 10ms";

fn get(admin: &str, path: &str) -> (u16, String) {
    support::http_get(admin, path)
}

fn status(admin: &str) -> Value {
    let (code, body) = get(admin, "/status");
    assert_eq!(code, 200, "/status: {body}");
    serde_json::from_str(&body).expect("/status is JSON")
}

/// `/status`, or `None` while the admin API is not up yet (it starts once
/// the proxy has made its first discovery).
fn try_status(admin: &str) -> Option<Value> {
    let (code, body) = get(admin, "/status");
    (code == 200).then(|| serde_json::from_str(&body).expect("/status is JSON"))
}

/// The value of one sample of `/metrics` (`name{labels}` exactly as
/// written, or a bare name).
fn metric(admin: &str, series: &str) -> Option<f64> {
    let (_, body) = get(admin, "/metrics");
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

fn sum_metric(admin: &str, prefix: &str) -> f64 {
    let (_, body) = get(admin, "/metrics");
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Runs `kflip ARGS`; returns (exit code, stdout, stderr).
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

fn config(dcs: &TwoClusters, admin: &str, active: &str) -> String {
    format!(
        "{}  switch_lag_timeout: 20s\nadmin:\n  listen: \"{admin}\"\n  probe_interval: 300ms\nreplication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\"ops-.*\"], {FAST} }}\n    - {{ source: dc2, target: dc1, topics: [\"ops-.*\"], {FAST} }}\n",
        dcs.config(active, "")
    )
}

/// Counts what an idempotent producer through kflip got acknowledged.
#[derive(Clone, Default)]
struct Acks {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Produces to `topic` through `addr` until `stop`, about 100 records/s.
fn traffic(
    addr: String,
    topic: &'static str,
    stop: Arc<AtomicBool>,
) -> (Acks, std::thread::JoinHandle<()>) {
    let acks = Acks::default();
    let ctx = acks.clone();
    let t = std::thread::spawn(move || {
        let p: ThreadedProducer<Acks> = clients::config(&addr)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create_with_context(ctx)
            .expect("producer");
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let v = format!("t-{n}");
            let _ = p.send(BaseRecord::to(topic).key(&v).payload(&v));
            n += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        p.flush(Duration::from_secs(30)).expect("flush");
    });
    (acks, t)
}

#[test]
fn status_metrics_and_every_runbook_command_against_real_traffic() {
    if !support::require_kafka("operations") {
        return;
    }
    let dcs = TwoClusters::start();
    let admin = format!("127.0.0.1:{}", free_port());
    create_topic(&dcs.dc1.bootstrap(), "ops-t", 3);
    let k = Kflip::start_command("run", &config(&dcs, &admin, "dc1"), "kflip=debug,info");
    let path = k.config_path();
    let cfg = path.to_str().unwrap();
    wait_for("/readyz to answer 200", Duration::from_secs(30), || {
        (get(&admin, "/readyz").0 == 200).then_some(())
    });
    assert_eq!(get(&admin, "/healthz").0, 200);
    let (code, body) = get(&admin, "/nowhere");
    assert_eq!(code, 404, "{body}");

    // Traffic through the proxy shows in the metrics, and its replication
    // in the status.
    let values: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    clients::produce(&k.addr(), "ops-t", &values);
    wait_for(
        "200 records copied dc1->dc2",
        Duration::from_secs(60),
        || {
            let st = status(&admin);
            let f = st["flows"]
                .as_array()?
                .iter()
                .find(|f| f["flow"] == "dc1->dc2")?
                .clone();
            (f["copied_records"].as_u64()? >= 200 && f["lag_records"].as_i64()? == 0).then_some(())
        },
    );
    assert!(metric(&admin, r#"kflip_proxy_requests_total{api="Produce"}"#).unwrap_or(0.0) >= 1.0);
    assert!(
        metric(
            &admin,
            r#"kflip_replication_records_total{flow="dc1->dc2"}"#
        )
        .unwrap_or(0.0)
            >= 200.0
    );
    // The batch writer's requests carried those records: at least one
    // batch per request, and a batch is larger than its records' values.
    let writer = |m: &str| metric(&admin, &format!(r#"{m}{{flow="dc1->dc2"}}"#)).unwrap_or(0.0);
    let requests = writer("kflip_replication_produce_requests_total");
    let batches = writer("kflip_replication_produce_batches_total");
    assert!(
        requests >= 1.0 && batches >= requests,
        "{requests} requests, {batches} batches"
    );
    assert!(writer("kflip_replication_produce_bytes_total") > 200.0 * 2.0);
    assert_eq!(
        metric(&admin, r#"kflip_active_cluster{cluster="dc1"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&admin, r#"kflip_cluster_up{cluster="dc2"}"#),
        Some(1.0)
    );
    assert!(metric(&admin, "kflip_proxy_bytes_received_total").unwrap_or(0.0) > 0.0);
    assert!(
        metric(
            &admin,
            r#"kflip_proxy_request_duration_seconds_count{api="Produce"}"#
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    let (code, out, err) = kflip(&["status", "-c", cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("READY") && out.contains("dc1->dc2"), "{out}");

    // Real lag: the target throttles the engine's producer to 2 KiB/s.
    let dc2 = dcs.dc2.bootstrap();
    let quota = |op: &str| {
        let mut args = vec![
            "--bootstrap-server",
            dc2.as_str(),
            "--alter",
            "--entity-type",
            "clients",
            "--entity-name",
            "kflip-engine",
        ];
        match op {
            "add" => args.extend(["--add-config", "producer_byte_rate=2048"]),
            _ => args.extend(["--delete-config", "producer_byte_rate"]),
        }
        dcs.dc2.tool("org.apache.kafka.tools.ConfigCommand", &args);
    };
    quota("add");
    let big: Vec<String> = (0..400).map(|i| format!("{i:0>1000}")).collect();
    clients::produce(&dcs.dc1.bootstrap(), "ops-t", &big);
    wait_for("replication lag to show", Duration::from_secs(30), || {
        let records = sum_metric(&admin, r#"kflip_replication_lag_records{flow="dc1->dc2""#);
        let seconds = sum_metric(&admin, r#"kflip_replication_lag_seconds{flow="dc1->dc2""#);
        (records > 0.0 && seconds > 0.0).then_some(())
    });
    let (code, out, err) = kflip(&["failover", "-c", cfg, "--to", "dc2", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("PLANNED") && out.contains("records behind"),
        "{out}"
    );
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("active: dc1"),
        "a dry run changes nothing"
    );
    let (code, out, _) = kflip(&["status", "-c", cfg, "--json"]);
    assert_eq!(code, 0);
    let st: Value = serde_json::from_str(&out).expect("--json is JSON");
    assert!(st["flows"][0]["lag_records"].as_i64().is_some());
    quota("delete");
    wait_for("replication to catch up", Duration::from_secs(120), || {
        (sum_metric(&admin, r#"kflip_replication_lag_records{flow="dc1->dc2""#) == 0.0)
            .then_some(())
    });

    // A group consumes through kflip and commits: its offsets translate.
    let consumer: BaseConsumer = clients::config(&k.addr())
        .set("group.id", "ops-g")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["ops-t"]).unwrap();
    let mut got = 0;
    wait_for(
        "the consumer to read 100 records",
        Duration::from_secs(60),
        || {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(200)) {
                got += 1;
            }
            (got >= 100).then_some(())
        },
    );
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let (code, out, err) = kflip(&[
        "offsets",
        "translate",
        "-c",
        cfg,
        "--group",
        "ops-g",
        "--from",
        "dc1",
        "--to",
        "dc2",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    let parts = t["partitions"].as_array().unwrap();
    assert!(!parts.is_empty(), "{out}");
    for p in parts {
        // One-to-one copies with nothing skipped: the same offsets.
        assert_eq!(p["translated"], p["committed"], "{out}");
    }
    // A running group is not reset.
    let reset = |extra: &[&str]| {
        let mut args = vec![
            "offsets",
            "reset",
            "-c",
            cfg,
            "--group",
            "ops-g",
            "--cluster",
            "dc1",
            "--to-datetime",
            "2020-01-01T00:00:00Z",
        ];
        args.extend_from_slice(extra);
        kflip(&args)
    };
    let (code, _, err) = reset(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is running"), "{err}");
    drop(consumer);
    wait_for("the group to be empty", Duration::from_secs(60), || {
        (reset(&["--dry-run"]).0 == 0).then_some(())
    });
    let (code, out, err) = reset(&[]);
    assert_eq!(code, 0, "{out}{err}");
    let check: BaseConsumer = clients::config(&dcs.dc1.bootstrap())
        .set("group.id", "ops-g")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition("ops-t", p);
    }
    let committed = check
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    // Only the partitions the group had committed are reset.
    let offsets: Vec<_> = committed.elements().iter().map(|e| e.offset()).collect();
    assert!(offsets.contains(&rdkafka::Offset::Offset(0)), "{out}");
    assert!(
        offsets
            .iter()
            .all(|o| matches!(o, rdkafka::Offset::Offset(0) | rdkafka::Offset::Invalid)),
        "reset to the start: {offsets:?}\n{out}"
    );

    // Orphans: none after planned work.
    let (code, out, err) = kflip(&["orphans", "list", "-c", cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no orphans"), "{out}");
    let (code, out, err) = kflip(&["orphans", "restore", "-c", cfg, "--flow", "dc1->dc2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("holds no orphans"), "{out}");
    let (code, _, err) = kflip(&["orphans", "restore", "-c", cfg, "--flow", "dc9->dc2"]);
    assert_eq!(code, 1, "{err}");

    // Failover and failback under traffic, through the CLI.
    let stop = Arc::new(AtomicBool::new(false));
    let (acks, producer) = traffic(k.addr(), "ops-t", stop.clone());
    wait_for("traffic to flow", Duration::from_secs(30), || {
        (acks.ok.load(Ordering::Relaxed) > 50).then_some(())
    });
    let (code, out, err) = kflip(&["failover", "-c", cfg, "--to", "dc2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("switched: dc1 -> dc2 planned"), "{out}");
    assert!(out.contains("RPO 0 records"), "{out}");
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("active: dc2"));
    let st = status(&admin);
    assert_eq!(st["proxy"]["active"], "dc2");
    assert_eq!(st["proxy"]["last_switch"]["planned"], true);
    assert_eq!(
        metric(&admin, r#"kflip_switches_total{kind="planned"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&admin, r#"kflip_active_cluster{cluster="dc2"}"#),
        Some(1.0)
    );
    assert!(metric(&admin, "kflip_last_switch_hold_seconds").is_some());
    let before = acks.ok.load(Ordering::Relaxed);
    wait_for("traffic on dc2", Duration::from_secs(30), || {
        (acks.ok.load(Ordering::Relaxed) > before + 50).then_some(())
    });
    let (code, out, err) = kflip(&["failback", "-c", cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("switched: dc2 -> dc1 planned"), "{out}");
    assert_eq!(status(&admin)["proxy"]["epoch"], 2);
    let (code, out, _) = kflip(&["failover", "-c", cfg, "--to", "dc1"]);
    assert_eq!(code, 0);
    assert!(out.contains("already active"), "{out}");
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    assert_eq!(
        acks.failed.load(Ordering::Relaxed),
        0,
        "no record lost across both flips"
    );

    // The dashboard and the alert rules name only metrics kflip exports.
    let capture = k.path("metrics.prom");
    std::fs::write(&capture, get(&admin, "/metrics").1).unwrap();
    let out = Command::new("python3")
        .arg(repo().join("scripts/check-metric-names.py"))
        .arg(&capture)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A rejected reload: the old config keeps running, and says why.
    let good = std::fs::read_to_string(&path).unwrap();
    k.write_config(&good.replace("switch_lag_timeout: 20s", "switch_lag_timeout: soon"));
    wait_for("the rejection in /status", Duration::from_secs(30), || {
        status(&admin)["config"]["last_error"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(metric(&admin, "kflip_config_last_reload_failed"), Some(1.0));
    assert!(metric(&admin, "kflip_config_reload_errors_total").unwrap_or(0.0) >= 1.0);
    let (code, out, _) = kflip(&["status", "-c", cfg]);
    assert_eq!(code, 0, "still ready: the old config runs");
    assert!(out.contains("REJECTED"), "{out}");
    let (code, _, err) = kflip(&["failover", "-c", cfg, "--to", "dc2"]);
    assert_eq!(code, 2, "a file that does not load is not edited: {err}");
    k.write_config(&good);
    wait_for("the rejection to clear", Duration::from_secs(30), || {
        status(&admin)["config"]["last_error"]
            .is_null()
            .then_some(())
    });
    let (code, _, err) = kflip(&["status", "-c", cfg, "--admin", "127.0.0.1:1"]);
    assert_eq!(code, 3, "{err}");
}

#[test]
fn probes_follow_the_active_cluster_and_the_drain() {
    if !support::require_kafka("operations") {
        return;
    }
    let mut dc1 = Broker::start("dc1");
    let dc2 = &support::shared_clusters().dc2;
    let admin = format!("127.0.0.1:{}", free_port());
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\n  dc2: {{ bootstrap: \"{}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n  shutdown_grace: 30s\nadmin:\n  listen: \"{admin}\"\n  probe_interval: 200ms\n",
        dc1.bootstrap(),
        dc2.bootstrap()
    );
    let mut k = Kflip::start(&yaml);
    wait_for("ready", Duration::from_secs(30), || {
        (get(&admin, "/readyz").0 == 200).then_some(())
    });
    assert_eq!(metric(&admin, "kflip_ready"), Some(1.0));

    // The active cluster goes down: not ready, and says why; alive still.
    dc1.kill();
    let why = wait_for("/readyz to fail", Duration::from_secs(30), || {
        let (code, body) = get(&admin, "/readyz");
        (code == 503).then_some(body)
    });
    assert!(why.contains("active cluster dc1 is unreachable"), "{why}");
    assert_eq!(get(&admin, "/healthz").0, 200);
    assert_eq!(
        metric(&admin, r#"kflip_cluster_up{cluster="dc1"}"#),
        Some(0.0)
    );
    dc1.restart();
    wait_for("/readyz to recover", Duration::from_secs(60), || {
        (get(&admin, "/readyz").0 == 200).then_some(())
    });

    // Draining: a long poll in flight keeps kflip draining after SIGTERM;
    // meanwhile it is alive and not ready.
    create_topic(&dc1.bootstrap(), "ops-drain", 1);
    // A fetch before the new partition has a leader is answered at once,
    // with an error, and is never in flight.
    let probe: BaseConsumer = clients::config(&dc1.bootstrap()).create().unwrap();
    wait_for(
        "ops-drain to have a leader",
        Duration::from_secs(30),
        || {
            probe
                .fetch_watermarks("ops-drain", 0, Duration::from_secs(5))
                .ok()
        },
    );
    let mut raw = support::raw::Raw::connect(&k.addr());
    let _ = raw.versions();
    let fetch = kafka_protocol::messages::FetchRequest::default()
        .with_max_wait_ms(8_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            kafka_protocol::messages::fetch_request::FetchTopic::default()
                .with_topic(kafka_protocol::messages::TopicName(
                    kafka_protocol::protocol::StrBytes::from_static_str("ops-drain"),
                ))
                .with_partitions(vec![
                    kafka_protocol::messages::fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    raw.send(&fetch, 11);
    wait_for("the fetch to be in flight", Duration::from_secs(10), || {
        (metric(&admin, "kflip_proxy_in_flight_requests") == Some(1.0)).then_some(())
    });
    let pid = k.pid().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let why = wait_for("/readyz to say draining", Duration::from_secs(10), || {
        let (code, body) = get(&admin, "/readyz");
        (code == 503).then_some(body)
    });
    assert!(why.contains("shutting down"), "{why}");
    assert_eq!(get(&admin, "/healthz").0, 200);
    assert!(raw.recv().is_some(), "the in-flight fetch is answered");
    assert_eq!(k.terminate(), Some(0));
}

#[test]
fn the_fleet_sees_its_members_through_the_state_topic_and_who_forwards_elsewhere() {
    if !support::require_kafka("operations") {
        return;
    }
    let dcs = support::shared_clusters();
    let (admin_a, admin_b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    // A runs the engine, whose flows create the state topics; B and later
    // E are sidecar-style proxies of their own files. Their own state topic
    // keeps them apart from the other tests of this binary.
    const STATE: &str = "replication:\n  state_topic: _kflip_fleet\n";
    let a_yaml = |active: &str| config(dcs, &admin_a, active).replace("replication:\n", STATE);
    let a = Kflip::start_command("run", &a_yaml("dc1"), "kflip=debug,info");
    let proxy_yaml = |admin: &str, active: &str| {
        format!(
            "{}admin:\n  listen: \"{admin}\"\n{STATE}  flows: []\n",
            dcs.config(active, "")
        )
    };
    let b = Kflip::start(&proxy_yaml(&admin_b, "dc1"));
    let members = |admin: &str| -> Vec<Value> {
        try_status(admin).unwrap_or_default()["fleet"]["members"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    for admin in [&admin_a, &admin_b] {
        wait_for("both kflips in the fleet", Duration::from_secs(60), || {
            let m = members(admin);
            (m.len() == 2 && m.iter().all(|m| m["active"] == "dc1")).then_some(())
        });
    }
    // An engine with no proxy of its own learns where clients are.
    let c = Kflip::replicate(&format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\n  dc2: {{ bootstrap: \"{}\" }}\nadmin:\n  listen: \"127.0.0.1:{}\"\n{STATE}  flows:\n    - {{ source: dc1, target: dc2, topics: [\"ops-c-.*\"] }}\n",
        dcs.dc1.bootstrap(),
        dcs.dc2.bootstrap(),
        free_port()
    ));
    c.wait_log(
        "engine treats it as active active=dc1",
        Duration::from_secs(60),
    );

    // B moves to dc2 alone: A sees it and says so; one against one, both
    // still take writes.
    b.write_config(&proxy_yaml(&admin_b, "dc2"));
    let who = wait_for("A to see B on dc2", Duration::from_secs(60), || {
        let d = status(&admin_a)["fleet"]["disagree"].as_array()?.clone();
        (d.len() == 1).then_some(d)
    });
    assert_eq!(who[0]["active"], "dc2");
    assert_eq!(metric(&admin_a, "kflip_fleet_disagreeing"), Some(1.0));
    a.wait_log(
        "fleet members forward to another cluster",
        Duration::from_secs(10),
    );
    let (_, out, _) = kflip(&["status", "-c", a.config_path().to_str().unwrap()]);
    assert!(out.contains("FORWARDING ELSEWHERE"), "{out}");
    create_topic(&dcs.dc1.bootstrap(), "ops-fleet-w", 1);
    clients::produce(&a.addr(), "ops-fleet-w", &["tie".to_string()]);

    // E joins B on dc2: A is behind its fleet and takes no writes, with a
    // retriable error, until its own file names dc2.
    let admin_e = format!("127.0.0.1:{}", free_port());
    let _e = Kflip::start(&proxy_yaml(&admin_e, "dc2"));
    wait_for("A to know it is behind", Duration::from_secs(60), || {
        (status(&admin_a)["fleet"]["behind_fleet"] == "dc2").then_some(())
    });
    assert_eq!(metric(&admin_a, "kflip_fleet_behind"), Some(1.0));
    let acks = Acks::default();
    let p: ThreadedProducer<Acks> = clients::config(&a.addr())
        .set("message.timeout.ms", "3000")
        .create_with_context(acks.clone())
        .unwrap();
    p.send(BaseRecord::to("ops-fleet-w").key("held").payload("held"))
        .map_err(|(e, _)| e)
        .unwrap();
    let _ = p.flush(Duration::from_secs(10));
    assert_eq!(acks.ok.load(Ordering::Relaxed), 0, "A took a write");
    assert_eq!(acks.failed.load(Ordering::Relaxed), 1);
    a.wait_log("Produce held back", Duration::from_secs(10));
    assert_eq!(
        clients::values(&dcs.dc1.bootstrap(), "ops-fleet-w"),
        vec!["tie"],
        "nothing written to the cluster the fleet left"
    );
    a.write_config(&a_yaml("dc2"));
    wait_for("A to follow its fleet", Duration::from_secs(60), || {
        status(&admin_a)["fleet"]["behind_fleet"]
            .is_null()
            .then_some(())
    });
    clients::produce(&a.addr(), "ops-fleet-w", &["after".to_string()]);
}

#[test]
fn a_sidecar_proxys_planned_switch_waits_for_the_fleets_engine() {
    if !support::require_kafka("operations") {
        return;
    }
    let dcs = support::shared_clusters();
    let (dc1, dc2) = (dcs.dc1.bootstrap(), dcs.dc2.bootstrap());
    create_topic(&dc1, "side-t", 1);
    // The engine runs alone (as beside a fleet of sidecars); the proxy has
    // no engine of its own. Their own state topic keeps the fleet tests of
    // this binary apart.
    let _engine = Kflip::replicate(&format!(
        "clusters:\n  dc1: {{ bootstrap: \"{dc1}\" }}\n  dc2: {{ bootstrap: \"{dc2}\" }}\nadmin:\n  listen: \"127.0.0.1:{}\"\nreplication:\n  state_topic: _kflip_side\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\"side-.*\"], {FAST} }}\n    - {{ source: dc2, target: dc1, topics: [\"side-.*\"], {FAST} }}\n",
        free_port()
    ));
    let admin = format!("127.0.0.1:{}", free_port());
    let proxy = Kflip::start(&format!(
        "{}admin:\n  listen: \"{admin}\"\nreplication:\n  state_topic: _kflip_side\n  flows: []\n",
        dcs.config("dc1", "  switch_lag_timeout: 30s\n")
    ));
    wait_for(
        "the engine in the proxy's fleet view",
        Duration::from_secs(60),
        || {
            let st = try_status(&admin)?;
            st["fleet"]["members"]
                .as_array()?
                .iter()
                .any(|m| {
                    m["flows"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|f| f == "dc1->dc2"))
                })
                .then_some(())
        },
    );
    wait_for("side-t on dc2", Duration::from_secs(60), || {
        (clients::partitions(&dc2, "side-t") == 1).then_some(())
    });
    // The target throttles the engine: what the proxy's clients write is
    // copied over seconds, not milliseconds.
    let quota = |args: &[&str]| {
        let mut all = vec![
            "--bootstrap-server",
            dc2.as_str(),
            "--alter",
            "--entity-type",
            "clients",
            "--entity-name",
            "kflip-engine",
        ];
        all.extend_from_slice(args);
        dcs.dc2.tool("org.apache.kafka.tools.ConfigCommand", &all);
    };
    quota(&["--add-config", "producer_byte_rate=20480"]);
    let values: Vec<String> = (0..200).map(|i| format!("{i:0>1000}")).collect();
    clients::produce(&proxy.addr(), "side-t", &values);
    let cfg = proxy.config_path();
    let (code, out, err) = kflip(&["failover", "-c", cfg.to_str().unwrap(), "--to", "dc2"]);
    // Read before the quota goes: only what was copied during the hold.
    let on_dc2 = clients::read_all(&dc2, "side-t")
        .into_values()
        .flatten()
        .count();
    quota(&["--delete-config", "producer_byte_rate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        on_dc2, 200,
        "the switch waited for the fleet's engine: {out}"
    );
    assert!(out.contains("RPO 0 records"), "{out}");
    proxy.wait_log(
        "the fleet's engines caught up replication",
        Duration::from_secs(5),
    );
    let held = status(&admin)["proxy"]["last_switch"]["hold_ms"]
        .as_u64()
        .unwrap_or(0);
    assert!(held > 0, "{out}");
}
