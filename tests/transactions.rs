//! Transactions on Apache Kafka's real coordinator, through kflip:
//! replication copies committed transactions and skips aborted ones, and
//! partitions that end in transaction markers do not hold up a planned
//! switch; and the Java client's transactional producer goes on across a
//! switch.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
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
type TxProducer = ThreadedProducer<DefaultProducerContext>;

fn transaction(p: &TxProducer, topic: &str, values: &[String], commit: bool) {
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
    let p: TxProducer = clients::config(&k.addr())
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
}

/// What the Java client's event file says: committed values, values of
/// transactions that did not commit, and its log lines.
fn java_events(path: &std::path::Path) -> (Vec<String>, Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut acked, mut failed, mut logs) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split(' ');
        match words.next() {
            Some("ack") => acked.extend(words.next().map(String::from)),
            Some("err") => failed.extend(words.next().map(String::from)),
            Some("log") => logs.push(line.to_string()),
            _ => {}
        }
    }
    (acked, failed, logs)
}

/// The Java client (4.4, transactions v2 on Apache Kafka 4.4) keeps
/// producing transactions through a planned switch: the transaction open
/// at the switch fails with an error it aborts on, and the next ones commit
/// on dc2. No aborted record is read by a read_committed consumer, on
/// either cluster.
#[test]
fn a_java_transactional_producer_goes_on_across_a_switch() {
    if !support::require_kafka("java transactions") {
        return;
    }
    let dcs = TwoClusters::start();
    create_topic(&dcs.dc1.addr(), "txj.orders", 3);
    let k = Kflip::start_command("run", &config(&dcs, "dc1", "txj\\\\..*"), "kflip=info");
    wait_for("the topic on dc2", Duration::from_secs(30), || {
        (clients::partitions(&dcs.dc2.addr(), "txj.orders") == 3).then_some(())
    });
    let dir = tempfile::tempdir().unwrap();
    let (out, stop) = (dir.path().join("txn.events"), dir.path().join("stop"));
    let mut java = clients::java_client();
    java.args(["--role", "txn-producer", "--bootstrap", &k.addr()])
        .args(["--topic", "txj.orders", "--client-id", "txj-producer"])
        // Transactions of half a second: the switch finds one open.
        .args(["--rate", "100", "--txn-size", "50"])
        .arg("--out")
        .arg(&out)
        .arg("--stop")
        .arg(&stop)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("txn.stderr")).unwrap());
    let mut child = java.spawn().expect("java");
    let acked = |n: usize| {
        let out = out.clone();
        wait_for(
            &format!("{n} committed records"),
            Duration::from_secs(90),
            move || (java_events(&out).0.len() >= n).then_some(()),
        )
    };
    acked(50);
    k.write_config(&config(&dcs, "dc2", "txj\\\\..*"));
    k.wait_log("switched active cluster", Duration::from_secs(60));
    let at_switch = java_events(&out).0.len();
    acked(at_switch + 100);
    std::fs::write(&stop, b"").unwrap();
    wait_for("the Java producer to exit", Duration::from_secs(60), || {
        child.try_wait().ok().flatten()
    });
    let (acked, failed, logs) = java_events(&out);
    let refused = k
        .log()
        .lines()
        .filter(|l| l.contains("transaction from before the switch"))
        .count();
    eprintln!(
        "{} committed, {} in transactions that did not commit, {refused} requests refused after the switch",
        acked.len(),
        failed.len()
    );
    let fatal: Vec<&String> = logs.iter().filter(|l| l.contains("fatal")).collect();
    assert!(
        fatal.is_empty(),
        "the producer had to be recreated: {fatal:?}"
    );
    let dc2: HashSet<String> = clients::values(&dcs.dc2.addr(), "txj.orders")
        .into_iter()
        .collect();
    let dc1: HashSet<String> = clients::values(&dcs.dc1.addr(), "txj.orders")
        .into_iter()
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|v| !dc2.contains(*v)).collect();
    assert!(
        missing.is_empty(),
        "committed records not on dc2: {missing:?}"
    );
    for (name, held) in [("dc1", &dc1), ("dc2", &dc2)] {
        let aborted: Vec<&String> = failed.iter().filter(|v| held.contains(*v)).collect();
        assert!(
            aborted.is_empty(),
            "read_committed on {name} sees records of aborted transactions: {aborted:?}"
        );
    }
}
