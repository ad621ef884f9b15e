//! A fleet: two kflip processes read one config file, `kflip run` (proxy
//! and engine) and a proxy-only `kflip proxy`, each with a producer running
//! through it. One edit of `proxy.active` moves both; once both have
//! switched, the old cluster gets no record from a client any more, and
//! every acknowledged record ends up on the new cluster exactly once.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use support::clients::{self, create_topic};
use support::{wait_for, Kflip, TwoClusters};

const TOPIC: &str = "fleet";
const FAST: &str = "discovery_interval: 500ms, group_sync_interval: 500ms, checkpoint_interval: 200ms, fetch_wait: 10ms";

fn yaml(dcs: &TwoClusters, active: &str) -> String {
    format!(
        "{}replication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\"{TOPIC}\"], {FAST} }}\n    - {{ source: dc2, target: dc1, topics: [\"{TOPIC}\"], {FAST} }}\n",
        dcs.config(active, "")
    )
}

#[derive(Clone, Default)]
struct Acks(Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<String>>>);
impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => self
                .0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into()),
            Err((e, _)) => self.1.lock().unwrap().push(e.to_string()),
        }
    }
}

/// An idempotent producer through `proxy`, one record every 50 ms.
fn producer(name: &'static str, proxy: String, stop: Arc<AtomicBool>) -> (Acks, JoinHandle<()>) {
    let acks = Acks::default();
    let ctx = acks.clone();
    let t = std::thread::spawn(move || {
        let p: ThreadedProducer<Acks> = clients::config(&proxy)
            .set("client.id", name)
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .create_with_context(ctx)
            .unwrap();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let v = format!("{name}-{i}");
            if p.send(BaseRecord::<(), _>::to(TOPIC).partition(0).payload(&v))
                .is_ok()
            {
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        p.flush(Duration::from_secs(30)).unwrap();
    });
    (acks, t)
}

fn acked(a: &Acks) -> usize {
    a.0.lock().unwrap().len()
}

#[test]
fn two_proxies_on_one_file_switch_together_and_leave_the_old_cluster_alone() {
    let dcs = TwoClusters::start();
    create_topic(&dcs.dc1.addr(), TOPIC, 1);
    let run = Kflip::start_command("run", &yaml(&dcs, "dc1"), "kflip=info");
    let proxy = Kflip::start_sharing("proxy", &run, "kflip=info");
    wait_for("the topic on dc2", Duration::from_secs(30), || {
        (clients::read_all(&dcs.dc2.addr(), TOPIC).len() == 1).then_some(())
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (a, ta) = producer("via-run", run.addr(), stop.clone());
    let (b, tb) = producer("via-proxy", proxy.addr(), stop.clone());
    wait_for("records through both", Duration::from_secs(30), || {
        (acked(&a) >= 20 && acked(&b) >= 20).then_some(())
    });

    run.write_config(&yaml(&dcs, "dc2"));
    for k in [&run, &proxy] {
        wait_for("both proxies to switch", Duration::from_secs(30), || {
            k.log()
                .lines()
                .any(|l| l.contains("switched active cluster") && l.contains("epoch=1"))
                .then_some(())
        });
    }
    // Both have switched: from now on no client record reaches dc1.
    let dc1_natives = clients::natives(&dcs.dc1.addr(), TOPIC).len();
    let (a0, b0) = (acked(&a), acked(&b));
    wait_for(
        "records through both on dc2",
        Duration::from_secs(30),
        || (acked(&a) >= a0 + 20 && acked(&b) >= b0 + 20).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    ta.join().unwrap();
    tb.join().unwrap();
    assert_eq!(
        clients::natives(&dcs.dc1.addr(), TOPIC).len(),
        dc1_natives,
        "a proxy wrote to dc1 after both had switched"
    );
    for (name, acks) in [("via-run", &a), ("via-proxy", &b)] {
        assert!(
            acks.1.lock().unwrap().is_empty(),
            "{name}: delivery errors {:?}",
            acks.1.lock().unwrap()
        );
    }
    // Every acknowledged record is on dc2 once: the dc1 ones as copies.
    let want: Vec<String> =
        a.0.lock()
            .unwrap()
            .iter()
            .chain(b.0.lock().unwrap().iter())
            .cloned()
            .collect();
    let on_dc2 = wait_for(
        "every acknowledged record on dc2",
        Duration::from_secs(60),
        || {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for v in clients::values(&dcs.dc2.addr(), TOPIC) {
                *counts.entry(v).or_default() += 1;
            }
            want.iter()
                .all(|v| counts.contains_key(v))
                .then_some(counts)
        },
    );
    let dups: Vec<_> = on_dc2.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicates on dc2: {dups:?}");
    assert!(
        proxy
            .log()
            .contains("no replication engine in this process"),
        "the proxy-only member should say it does not wait for replication"
    );
}
