//! A multi-broker active cluster (Apache Kafka, 3 nodes): partition leaders
//! move inside dc1 while clients are connected through kflip, first because
//! a broker is killed, then back by a preferred leader election after it
//! returns. kflip follows the new leaders within the cluster, never fails
//! over, and nothing acknowledged is lost.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use support::clients;
use support::{wait_for, Broker, Kflip};

#[derive(Clone, Default)]
struct Acks(Arc<Mutex<Vec<String>>>);
impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = r {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            self.0.lock().unwrap().push(v);
        }
    }
}

#[test]
fn leaders_move_inside_the_active_cluster_and_kflip_follows_without_failing_over() {
    if !support::require_kafka("multi-broker") {
        return;
    }
    let mut dc1 = Broker::start_kafka("dc1", 3, "");
    clients::create_topic_with(
        &dc1.bootstrap(),
        "mb",
        3,
        3,
        &[("min.insync.replicas", "2")],
    );
    let yaml = format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n",
        dc1.bootstrap()
    );
    let k = Kflip::start(&yaml);
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Acks::default();
    let producer = {
        let (stop, acks, addr) = (stop.clone(), acks.clone(), k.addr());
        std::thread::spawn(move || {
            let p: ThreadedProducer<Acks> = clients::config(&addr)
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .set("message.timeout.ms", "120000")
                .create_with_context(acks)
                .unwrap();
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                let v = format!("mb-{seq}");
                if p.send(BaseRecord::<str, str>::to("mb").key(&v).payload(&v))
                    .is_ok()
                {
                    seq += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            p.flush(Duration::from_secs(60)).expect("flush");
        })
    };
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let consumer = {
        let (stop, got, addr) = (stop.clone(), got.clone(), k.addr());
        std::thread::spawn(move || {
            let c: BaseConsumer = clients::config(&addr)
                .set("group.id", "mb-group")
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            c.subscribe(&["mb"]).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                    let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                    got.lock().unwrap().push(v);
                    let _ = c.commit_message(&m, CommitMode::Async);
                }
            }
        })
    };
    let progress = |what: &str, more: usize| {
        let before = acks.0.lock().unwrap().len();
        wait_for(what, Duration::from_secs(120), || {
            let acked = acks.0.lock().unwrap().clone();
            let seen: HashSet<String> = got.lock().unwrap().iter().cloned().collect();
            let missing = acked.iter().filter(|v| !seen.contains(*v)).count();
            (acked.len() >= before + more && missing < 100).then_some(())
        });
    };
    progress("clients running on dc1", 200);

    // Node 1 dies: its partitions' leaders move to nodes 2 and 3.
    dc1.kill_one(1);
    progress("clients running with node 1 down", 300);
    // Node 1 returns, and a preferred leader election moves leadership
    // back to it while clients are connected.
    dc1.restart_one(1);
    let boot = dc1.nodes()[1].1;
    wait_for("node 1 back in every ISR", Duration::from_secs(90), || {
        let out = dc1.tool(
            "org.apache.kafka.tools.TopicCommand",
            &[
                "--bootstrap-server",
                &format!("127.0.0.1:{boot}"),
                "--describe",
                "--topic",
                "mb",
            ],
        );
        (out.matches("Isr: ").count() == 3
            && out
                .lines()
                .filter(|l| l.contains("Isr:"))
                .all(|l| l.contains('1')))
        .then_some(())
    });
    dc1.tool(
        "org.apache.kafka.tools.LeaderElectionCommand",
        &[
            "--bootstrap-server",
            &format!("127.0.0.1:{boot}"),
            "--election-type",
            "preferred",
            "--all-topic-partitions",
        ],
    );
    progress("clients running after the leader election", 300);

    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    consumer.join().unwrap();
    let acked: Vec<String> = acks.0.lock().unwrap().clone();
    let on_dc1 = clients::values(&dc1.bootstrap(), "mb");
    let held: HashSet<&String> = on_dc1.iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|v| !held.contains(v)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged records lost: {:?}",
        &lost[..lost.len().min(5)]
    );
    assert_eq!(
        held.len(),
        on_dc1.len(),
        "an idempotent producer wrote duplicates"
    );
    let log = k.log();
    assert!(
        !log.contains("switching active cluster"),
        "kflip failed over:\n{log}"
    );
    eprintln!(
        "{} records acknowledged across a broker death and a leader election",
        acked.len()
    );
}
