//! Transactions on Apache Kafka's real coordinator, through kflip:
//! replication copies committed transactions and skips aborted ones,
//! partitions that end in transaction markers do not hold up a planned
//! switch, and a Java transactional producer runs across a failover and a
//! failback while a read_committed consumer sees no aborted record.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::clients::{self, create_topic};
use support::{wait_for, Kflip, TwoClusters};

const FAST: &str = "discovery_interval: 500ms, group_sync_interval: 500ms, config_sync_interval: 1s, checkpoint_interval: 200ms, fetch_wait: 10ms";

fn config(dcs: &TwoClusters, active: &str, topics: &str) -> String {
    format!(
        "{}  switch_lag_timeout: 20s\nreplication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\"{topics}\"], {FAST} }}\n    - {{ source: dc2, target: dc1, topics: [\"{topics}\"], {FAST} }}\n",
        dcs.config(active, "")
    )
}

/// Sends `values` in one transaction and commits or aborts it.
fn transaction(p: &BaseProducer, topic: &str, values: &[String], commit: bool) {
    p.begin_transaction().expect("begin");
    for (i, v) in values.iter().enumerate() {
        let part = (i % 3) as i32;
        loop {
            match p.send(BaseRecord::to(topic).partition(part).key(v).payload(v)) {
                Ok(()) => break,
                Err((e, _)) if e.to_string().contains("Queue full") => {
                    p.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("send {v}: {e}"),
            }
        }
    }
    if commit {
        p.commit_transaction(Duration::from_secs(30))
            .expect("commit");
    } else {
        p.abort_transaction(Duration::from_secs(30)).expect("abort");
    }
}

fn batch(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

#[test]
fn committed_transactions_are_copied_aborted_ones_never_and_markers_do_not_stall_a_switch() {
    if !support::require_kafka("transactions") {
        return;
    }
    let dcs = TwoClusters::start();
    create_topic(&dcs.dc1.addr(), "tx.copy", 3);
    let k = Kflip::start_command("run", &config(&dcs, "dc1", "tx\\\\..*"), "kflip=info");
    let p: BaseProducer = clients::config(&k.addr())
        .set("transactional.id", "tx-copy-producer")
        .set("transaction.timeout.ms", "30000")
        .create()
        .expect("transactional producer");
    p.init_transactions(Duration::from_secs(30)).expect("init");
    transaction(&p, "tx.copy", &batch("a", 30), true);
    transaction(&p, "tx.copy", &batch("b", 20), false);
    transaction(&p, "tx.copy", &batch("c", 30), true);
    // Every partition now ends in a commit marker.
    let want: HashSet<String> = batch("a", 30).into_iter().chain(batch("c", 30)).collect();
    let dc2 = dcs.dc2.addr();
    let copied = wait_for(
        "the committed records on dc2",
        Duration::from_secs(60),
        || {
            let v = clients::values_uncommitted(&dc2, "tx.copy");
            (v.len() >= want.len()).then_some(v)
        },
    );
    let got: HashSet<String> = copied.iter().cloned().collect();
    assert_eq!(copied.len(), want.len(), "no record copied twice");
    assert_eq!(got, want, "committed records copied, aborted ones never");

    // A planned switch waits for replication: markers at the log ends must
    // count as copied, or it waits out switch_lag_timeout.
    k.write_config(&config(&dcs, "dc2", "tx\\\\..*"));
    k.wait_log("switched active cluster", Duration::from_secs(60));
    let log = k.log();
    assert!(
        log.contains("replication caught up; group offsets synced"),
        "the switch did not see replication caught up:\n{log}"
    );
    assert!(
        !log.contains("switching with records not replicated"),
        "transaction markers held the switch:\n{log}"
    );
    // The producer goes on on dc2 after the switch (its transactional id
    // gets a fresh producer id there).
    drop(p);
    let p: BaseProducer = clients::config(&k.addr())
        .set("transactional.id", "tx-copy-producer")
        .create()
        .expect("transactional producer");
    p.init_transactions(Duration::from_secs(30))
        .expect("init on dc2");
    transaction(&p, "tx.copy", &batch("d", 15), true);
    let dc1 = dcs.dc1.addr();
    wait_for(
        "dc2's transaction copied back to dc1",
        Duration::from_secs(60),
        || {
            let v = clients::values_uncommitted(&dc1, "tx.copy");
            (v.iter().filter(|x| x.starts_with("d-")).count() == 15).then_some(())
        },
    );
    let on_dc1 = clients::values_uncommitted(&dc1, "tx.copy");
    assert_eq!(
        on_dc1.iter().filter(|x| x.starts_with("b-")).count(),
        20,
        "dc1 keeps its own aborted records (not readable committed)"
    );
    assert_eq!(on_dc1.len(), 30 + 20 + 30 + 15);
}

/// A Java client process writing its events to a file.
struct Java {
    child: Child,
    out: std::path::PathBuf,
}

fn java(role: &str, bootstrap: &str, topic: &str, id: &str, dir: &Path, extra: &[&str]) -> Java {
    let out = dir.join(format!("{id}.events"));
    let stop = dir.join("stop");
    let mut cmd = clients::java_client();
    cmd.args(["--role", role, "--bootstrap", bootstrap, "--topic", topic])
        .args(["--client-id", id, "--group", id, "--rate", "40"])
        .arg("--out")
        .arg(&out)
        .arg("--stop")
        .arg(&stop)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{id}.stderr"))).unwrap());
    Java {
        child: cmd.spawn().expect("java client"),
        out,
    }
}

fn lines(path: &Path, kind: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.strip_prefix(kind)
                .map(|v| v.split(' ').next().unwrap_or("").to_string())
        })
        .collect()
}

#[test]
fn java_transactional_producer_crosses_failover_and_failback_and_read_committed_sees_no_aborted_record(
) {
    if !support::require_kafka("java transactions") {
        return;
    }
    let dcs = TwoClusters::start();
    create_topic(&dcs.dc1.addr(), "tx.java", 3);
    let k = Kflip::start_command("run", &config(&dcs, "dc1", "tx\\\\..*"), "kflip=info");
    wait_for("tx.java on dc2", Duration::from_secs(30), || {
        (clients::partitions(&dcs.dc2.addr(), "tx.java") == 3).then_some(())
    });
    let dir = tempfile::tempdir().unwrap();
    let mut producer = java(
        "txn-producer",
        &k.addr(),
        "tx.java",
        "java-txn",
        dir.path(),
        &[],
    );
    let mut consumer = java(
        "manual",
        &k.addr(),
        "tx.java",
        "java-rc",
        dir.path(),
        &["--isolation", "read_committed"],
    );
    let progress = |what: &str, at_least: usize| {
        wait_for(what, Duration::from_secs(120), || {
            let acked = lines(&producer_out(dir.path()), "ack ");
            let got: HashSet<String> = lines(&consumer_out(dir.path()), "got ")
                .into_iter()
                .collect();
            (acked.len() >= at_least && acked.iter().filter(|v| !got.contains(*v)).count() < 40)
                .then_some(acked.len())
        })
    };
    let n = progress("committed transactions on dc1", 100);
    k.write_config(&config(&dcs, "dc2", "tx\\\\..*"));
    k.wait_log("epoch=1", Duration::from_secs(60));
    let n = progress("committed transactions on dc2", n + 100);
    k.write_config(&config(&dcs, "dc1", "tx\\\\..*"));
    k.wait_log("epoch=2", Duration::from_secs(60));
    progress("committed transactions on dc1 again", n + 100);
    std::fs::write(dir.path().join("stop"), b"stop").unwrap();
    for (what, c) in [("producer", &mut producer), ("consumer", &mut consumer)] {
        let status = wait_for(
            &format!("the Java {what} to stop"),
            Duration::from_secs(120),
            || c.child.try_wait().ok().flatten(),
        );
        assert!(
            status.success(),
            "java {what} failed:\n{}",
            std::fs::read_to_string(&c.out).unwrap_or_default()
        );
    }
    let acked: HashSet<String> = lines(&producer.out, "ack ").into_iter().collect();
    let sent: HashSet<String> = lines(&producer.out, "err ")
        .into_iter()
        .chain(acked.iter().cloned())
        .collect();
    let got = lines(&consumer.out, "got ");
    let seen: HashSet<String> = got.iter().cloned().collect();
    let aborted_seen: Vec<&String> = seen.iter().filter(|v| !acked.contains(*v)).collect();
    assert!(
        aborted_seen.is_empty(),
        "read_committed consumer saw records of aborted or unfinished transactions: {:?} (sent {})",
        &aborted_seen[..aborted_seen.len().min(5)],
        sent.len()
    );
    let missing: Vec<&String> = acked.iter().filter(|v| !seen.contains(*v)).collect();
    assert!(
        missing.is_empty(),
        "committed records never consumed: {:?}",
        &missing[..missing.len().min(5)]
    );
    assert_eq!(
        got.len(),
        seen.len(),
        "records consumed twice in planned switches"
    );
    let aborts = std::fs::read_to_string(&producer.out)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("abort"))
        .count();
    eprintln!(
        "java transactional producer: {} committed records, {aborts} abort lines; read_committed consumer: {} records",
        acked.len(),
        got.len()
    );
}

fn producer_out(dir: &Path) -> std::path::PathBuf {
    dir.join("java-txn.events")
}

fn consumer_out(dir: &Path) -> std::path::PathBuf {
    dir.join("java-rc.events")
}
