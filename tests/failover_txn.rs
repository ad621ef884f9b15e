//! A transactional producer across a switch: the transaction open on the
//! old cluster fails with an abortable error, the producer aborts, and its
//! next transactions commit on the new cluster, without a fatal error.
//!
//! tansu 0.6 has no EndTxn (its ApiVersions leave it out, and librdkafka
//! refuses transactions there), so the clusters here are two librdkafka
//! mock clusters, which implement the transaction coordinator. kflip runs
//! as `kflip proxy` in front of them.

mod support;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, TopicPartitionList};
use support::{wait_for, Kflip};

const TOPIC: &str = "txn";
const TIMEOUT: Duration = Duration::from_secs(20);

fn yaml(dc1: &str, dc2: &str, active: &str) -> String {
    format!(
        "clusters:\n  dc1: {{ bootstrap: \"{dc1}\" }}\n  dc2: {{ bootstrap: \"{dc2}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: {active}\n"
    )
}

/// Sends `values` in the open transaction and waits for each delivery.
fn send(p: &BaseProducer<Logged>, values: &[String]) -> Result<(), String> {
    for v in values {
        p.send(BaseRecord::<(), _>::to(TOPIC).partition(0).payload(v))
            .map_err(|(e, _)| e.to_string())?;
    }
    p.flush(TIMEOUT).map_err(|e| e.to_string())
}

/// Committed values of the topic, read with isolation read_committed.
fn committed(bootstrap: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "txn-check")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = c.fetch_watermarks(TOPIC, 0, TIMEOUT).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                if m.offset() + 1 >= high {
                    break;
                }
            }
            Some(Err(e)) => panic!("reading back: {e}"),
            None => {
                // The last offsets may be transaction markers.
                if c.position()
                    .ok()
                    .and_then(|p| p.find_partition(TOPIC, 0)?.offset().to_raw())
                    .is_some_and(|o| o >= high)
                {
                    break;
                }
            }
        }
    }
    out
}

struct Logged;
impl rdkafka::ClientContext for Logged {
    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        eprintln!("rdkafka {fac}: {msg}");
    }
}
impl rdkafka::producer::ProducerContext for Logged {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

fn batch(tag: &str) -> Vec<String> {
    (0..5).map(|i| format!("{tag}-{i}")).collect()
}

#[test]
fn an_open_transaction_aborts_cleanly_and_the_producer_goes_on_after_a_switch() {
    let dc1 = MockCluster::new(1).unwrap();
    let dc2 = MockCluster::new(1).unwrap();
    for mock in [&dc1, &dc2] {
        mock.create_topic(TOPIC, 1, 1).unwrap();
    }
    let (b1, b2) = (dc1.bootstrap_servers(), dc2.bootstrap_servers());
    let k = Kflip::start_command("proxy", &yaml(&b1, &b2, "dc1"), "kflip=debug");
    let p: BaseProducer<Logged> = ClientConfig::new()
        .set("bootstrap.servers", k.addr())
        .set("transactional.id", "payments-1")
        .set("linger.ms", "0")
        .create_with_context(Logged)
        .unwrap();
    p.init_transactions(TIMEOUT).unwrap();

    // A committed transaction on dc1.
    p.begin_transaction().unwrap();
    send(&p, &batch("t1")).unwrap();
    p.commit_transaction(TIMEOUT).unwrap();

    // A transaction open when the switch comes.
    p.begin_transaction().unwrap();
    send(&p, &batch("t2-before")).unwrap();
    k.write_config(&yaml(&b1, &b2, "dc2"));
    wait_for("the switch", Duration::from_secs(30), || {
        k.log().contains("switched active cluster").then_some(())
    });
    let sent = send(&p, &batch("t2-after"));
    let commit = p.commit_transaction(TIMEOUT);
    let err = match (sent, commit) {
        (_, Err(e)) => e,
        (Err(e), Ok(())) => panic!("records failed ({e}) but the commit succeeded"),
        (Ok(()), Ok(())) => panic!("a transaction from dc1 committed on dc2"),
    };
    let code = err.rdkafka_error_code();
    let txn = match &err {
        rdkafka::error::KafkaError::Transaction(e) => e,
        other => panic!("not a transaction error: {other} ({code:?})"),
    };
    assert!(!txn.is_fatal(), "fatal: {txn}");
    assert!(txn.txn_requires_abort(), "not abortable: {txn}");
    p.abort_transaction(TIMEOUT).unwrap();

    // The producer goes on, on dc2.
    for tag in ["t3", "t4"] {
        p.begin_transaction().unwrap();
        send(&p, &batch(tag)).unwrap();
        p.commit_transaction(TIMEOUT).unwrap();
    }

    let mut want = batch("t3");
    want.extend(batch("t4"));
    assert_eq!(
        committed(&b2),
        want,
        "dc2 holds exactly the transactions after the abort"
    );
    // The open transaction was aborted on dc1 by kflip. (The mock cluster
    // keeps no transaction markers, so its read_committed readers see
    // aborted records too: dc1 is checked for what reached it, not for
    // what a real broker would hide.)
    let on_dc1 = committed(&b1);
    assert_eq!(&on_dc1[..5], &batch("t1")[..]);
    assert!(
        on_dc1.iter().all(|v| !v.starts_with("t2-after")),
        "records sent after the switch reached dc1: {on_dc1:?}"
    );
    wait_for("the abort on dc1", Duration::from_secs(10), || {
        k.log()
            .contains("open transaction from before the switch aborted on the old cluster")
            .then_some(())
    });
    assert!(
        k.log().contains("transaction from before the switch"),
        "kflip did not answer for the old transaction"
    );
}
