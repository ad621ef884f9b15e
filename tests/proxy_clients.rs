//! Unmodified clients produce, consume, commit and resume through kflip.

mod support;

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::Message;
use support::clients::{self, create_topic, produce, python};
use support::{wait_for, Broker, Kflip};

fn one_cluster() -> (Broker, Kflip) {
    let b = Broker::start("dc1");
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n",
        b.addr()
    );
    let k = Kflip::start(&yaml);
    (b, k)
}

fn group_consume(bootstrap: &str, topic: &str, group: &str, n: usize) -> Vec<String> {
    let c: BaseConsumer = clients::config(bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut got = Vec::new();
    wait_for(
        &format!("{n} records in group {group}"),
        Duration::from_secs(60),
        || {
            while let Some(m) = c.poll(Duration::from_millis(100)) {
                let m = m.expect("consume through kflip");
                got.push(String::from_utf8_lossy(m.payload().unwrap()).to_string());
            }
            (got.len() >= n).then_some(())
        },
    );
    c.commit_consumer_state(CommitMode::Sync)
        .expect("commit through kflip");
    got
}

#[test]
fn rdkafka_produces_consumes_commits_and_resumes() {
    let (b, k) = one_cluster();
    create_topic(&b.addr(), "t-rdkafka", 3);
    let a: Vec<String> = (0..300).map(|i| format!("a-{i}")).collect();
    produce(&k.addr(), "t-rdkafka", &a);
    let mut first = group_consume(&k.addr(), "t-rdkafka", "g1", a.len());
    first.sort();
    let mut want = a.clone();
    want.sort();
    assert_eq!(first, want);

    let bs: Vec<String> = (0..300).map(|i| format!("b-{i}")).collect();
    produce(&k.addr(), "t-rdkafka", &bs);
    let second = group_consume(&k.addr(), "t-rdkafka", "g1", bs.len());
    assert!(
        second.iter().all(|v| v.starts_with("b-")),
        "resumed consumer replayed committed records"
    );
    assert_eq!(second.len(), bs.len());
    // What kflip acknowledged is really on the cluster.
    assert_eq!(clients::values(&b.addr(), "t-rdkafka").len(), 600);
}

fn python_roundtrip(lib: &str) {
    let (b, k) = one_cluster();
    let topic = format!("t-{lib}");
    create_topic(&b.addr(), &topic, 2);
    let run = python("roundtrip.py", &[lib, &k.addr(), &topic, "g-py", "200"]);
    assert!(
        run.ok,
        "{lib} through kflip failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.contains("\"ok\": true"), "{}", run.stdout);
    assert_eq!(clients::values(&b.addr(), &topic).len(), 400);
}

/// A client subprocess's roundtrip (the `roundtrip.py` steps) through kflip.
fn client_roundtrip(lib: &str, cmd: std::process::Command, args: &[&str]) {
    let (b, k) = one_cluster();
    let topic = format!("t-{lib}");
    create_topic(&b.addr(), &topic, 2);
    let mut cmd = cmd;
    cmd.args(["roundtrip", &k.addr(), &topic, &format!("g-{lib}"), "200"])
        .args(args);
    let run = clients::run(cmd);
    assert!(
        run.ok,
        "{lib} through kflip failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.contains("\"ok\": true"), "{}", run.stdout);
    assert_eq!(clients::values(&b.addr(), &topic).len(), 400);
}

#[test]
fn java_roundtrip_classic_group() {
    client_roundtrip("java", clients::java_client(), &[]);
}

/// KIP-848: `group.protocol=consumer`, through ConsumerGroupHeartbeat and
/// kflip's virtual topic ids.
#[test]
fn java_roundtrip_consumer_group_protocol() {
    if !support::require_kafka("java_roundtrip_consumer_group_protocol") {
        return;
    }
    client_roundtrip(
        "java-848",
        clients::java_client(),
        &["--group-protocol", "consumer"],
    );
}

#[test]
fn franz_go_roundtrip() {
    // On tansu 0.6 its fetches through kflip end in a closed connection
    // since kflip caps Fetch at v11 (not yet understood; see DEVELOPERS.md).
    if !support::require_kafka("franz_go_roundtrip") {
        return;
    }
    client_roundtrip("franz-go", clients::go_client(), &[]);
}

#[test]
fn confluent_kafka_python_roundtrip() {
    python_roundtrip("confluent");
}

#[test]
fn kafka_python_roundtrip() {
    python_roundtrip("kafka-python");
}

/// Debian's kcat cannot talk to tansu directly (its ApiVersions parse fails
/// on tansu's reply); through kflip, which answers ApiVersions itself, it can.
#[test]
fn kcat_produces_consumes_commits_and_resumes() {
    // On tansu 0.6 kcat's group consumer reads nothing through kflip since
    // kflip caps Fetch at v11 (not yet understood; see DEVELOPERS.md).
    if !support::require_kafka("kcat_produces_consumes_commits_and_resumes") {
        return;
    }
    let (b, k) = one_cluster();
    create_topic(&b.addr(), "t-kcat", 2);
    let tail = |s: &str, n: usize| -> String {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    // stdout, and the tail of stderr.
    let kcat = |args: &[&str], input: Option<&str>| -> (String, String) {
        use std::io::Write;
        // `timeout` bounds a kcat that waits for records that never come.
        let mut child = std::process::Command::new("timeout")
            .args(["60", "kcat", "-b", &k.addr()])
            // The group's debug log, shown if the run fails: where it
            // resumed and what its commits returned.
            .args(if input.is_none() {
                &["-d", "cgrp"][..]
            } else {
                &[][..]
            })
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kcat is installed by scripts/install-deps.sh");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.unwrap_or("").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kcat {args:?}: {}\nstdout:\n{}",
            tail(&String::from_utf8_lossy(&out.stderr), 80),
            String::from_utf8_lossy(&out.stdout)
        );
        let err = tail(&String::from_utf8_lossy(&out.stderr), 80);
        (String::from_utf8_lossy(&out.stdout).into(), err)
    };
    let lines = |prefix: &str| {
        (0..50)
            .map(|i| format!("{prefix}-{i}\n"))
            .collect::<String>()
    };
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(String::from).collect();
        v.sort();
        v
    };
    kcat(&["-P", "-t", "t-kcat"], Some(&lines("a")));
    // Balanced group consumer: reads 50 records, commits on close. (Not
    // `-e`: tansu can report a partition's end before its last records.)
    let (first, first_log) = kcat(
        &[
            "-G",
            "g-kcat",
            "-o",
            "beginning",
            "-c",
            "50",
            "-f",
            "%s\\n",
            "t-kcat",
        ],
        None,
    );
    assert_eq!(sorted(&first), sorted(&lines("a")));
    // Its commit on close reached the broker (read directly, not through
    // kflip): 50 records' worth over both partitions.
    let direct: BaseConsumer = clients::config(&b.addr())
        .set("group.id", "g-kcat")
        .create()
        .unwrap();
    let committed = || -> Vec<i64> {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition("t-kcat", 0);
        tpl.add_partition("t-kcat", 1);
        let got = direct.committed_offsets(tpl, Duration::from_secs(10));
        got.map(|t| {
            t.elements()
                .iter()
                .map(|e| e.offset().to_raw().unwrap_or(-1))
                .collect()
        })
        .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = committed();
        if now.iter().map(|o| o.max(&0)).sum::<i64>() == 50 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kcat's commit on close of 50 records never reached the broker: \
             committed offsets {now:?}\nkcat's log:\n{first_log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    kcat(&["-P", "-t", "t-kcat"], Some(&lines("b")));
    let (second, _) = kcat(&["-G", "g-kcat", "-c", "50", "-f", "%s\\n", "t-kcat"], None);
    assert_eq!(
        sorted(&second),
        sorted(&lines("b")),
        "resumed where the group committed"
    );
}

/// Fetch responses whose records kflip moves between the sockets in the
/// kernel (plain TCP on both sides, records sections over 32 KiB) reach
/// the client byte for byte: every record, in order, with librdkafka
/// checking each batch's CRC.
#[test]
fn large_fetch_responses_arrive_byte_exact() {
    use rdkafka::TopicPartitionList;
    use std::collections::BTreeMap;

    let (b, k) = one_cluster();
    let topic = "t-large-fetch";
    create_topic(&b.addr(), topic, 3);
    let value = |i: usize| -> String {
        let head = format!("v{i:06}-");
        let fill: String = (0..2000)
            .map(|j| char::from(b'a' + ((i * 31 + j * 7) % 26) as u8))
            .collect();
        head + &fill
    };
    let want: Vec<String> = (0..1200).map(value).collect();
    // Straight to the broker: the proxy's produce path is not under test.
    produce(&b.addr(), topic, &want);
    let c: BaseConsumer = clients::config(&k.addr())
        .set("group.id", "g-large-fetch")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut got: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let mut n = 0;
    wait_for(
        "every record through kflip",
        Duration::from_secs(60),
        || {
            while let Some(m) = c.poll(Duration::from_millis(100)) {
                let m = m.expect("consume through kflip");
                let v = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                got.entry(m.partition()).or_default().push((m.offset(), v));
                n += 1;
            }
            (n >= want.len()).then_some(())
        },
    );
    let direct = clients::read_all(&b.addr(), topic);
    for (p, records) in &got {
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        let expect: Vec<i64> = (0..records.len() as i64).collect();
        assert_eq!(
            offsets, expect,
            "partition {p}: offsets in order, none twice"
        );
        let values: Vec<String> = records.iter().map(|r| r.1.clone()).collect();
        assert_eq!(
            Some(&values),
            direct.get(p),
            "partition {p}: same records as direct"
        );
    }
    assert_eq!(n, want.len());
}
