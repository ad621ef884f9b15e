//! Several `kflip replicate` instances share one flow (`shared: true`):
//! they split its partitions through a consumer group on the source, hand
//! partitions over with their checkpoints, take over the partitions of an
//! instance that died, and fence one that was paused past the session
//! timeout. Under a steady load through all of it, the target ends with
//! every source record exactly once, in order (read_committed).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use support::clients::{self, create_topic, read_all};
use support::{wait_for, Kflip, TwoClusters};

const TOPIC: &str = "shared";
const PARTITIONS: i32 = 12;

fn config(dcs: &TwoClusters) -> String {
    format!(
        "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\n  dc2: {{ bootstrap: \"{}\" }}\n\
         replication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\"{TOPIC}\"], shared: true, \
         session_timeout: 6s, discovery_interval: 500ms, checkpoint_interval: 200ms, fetch_wait: 10ms }}\n",
        dcs.dc1.addr(),
        dcs.dc2.addr()
    )
}

/// Produces numbered records (keyed, so every partition gets some) until
/// `stop`; returns how many.
fn load(bootstrap: String, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> u64 {
    let p: ThreadedProducer<DefaultProducerContext> = clients::config(&bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..50 {
            let v = format!("r{n:07}");
            match p.send(BaseRecord::to(TOPIC).key(&v).payload(&v)) {
                Ok(()) => n += 1,
                Err(_) => break,
            }
        }
        sent.store(n, Ordering::Relaxed);
        // About 2,500 records a second: a steady load, not a flood.
        p.flush(Duration::from_secs(30)).expect("load delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    p.flush(Duration::from_secs(30)).expect("load delivered");
    n
}

/// Committed records on the target.
fn copied(dcs: &TwoClusters) -> usize {
    read_all(&dcs.dc2.addr(), TOPIC)
        .values()
        .map(Vec::len)
        .sum()
}

/// Waits until the target holds at least `more` records beyond now.
fn progress(dcs: &TwoClusters, more: usize, what: &str) {
    let from = copied(dcs);
    wait_for(what, Duration::from_secs(90), || {
        (copied(dcs) >= from + more).then_some(())
    });
}

fn count(k: &Kflip, needle: &str) -> usize {
    k.log().matches(needle).count()
}

fn signal(k: &Kflip, sig: &str) {
    let pid = k.pid().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn engines_share_a_flow_through_kill_join_and_pause_without_loss_or_duplicates() {
    if !support::require_kafka("shared flows need transactions") {
        return;
    }
    let dcs = TwoClusters::start();
    create_topic(&dcs.dc1.addr(), TOPIC, PARTITIONS);
    let yaml = config(&dcs);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let producer = {
        let (b, s, n) = (dcs.dc1.addr(), stop.clone(), sent.clone());
        std::thread::spawn(move || load(b, s, n))
    };

    // Three instances: each ends up copying some of the partitions.
    let mut e: Vec<Kflip> = (0..3).map(|_| Kflip::replicate(&yaml)).collect();
    wait_for("all three copy", Duration::from_secs(90), || {
        e.iter()
            .all(|k| count(k, "taking over partitions") > 0)
            .then_some(())
    });
    progress(&dcs, 2000, "copies with three instances");

    // kill -9: the others take its partitions over, fencing it first.
    e[0].kill9();
    wait_for(
        "a survivor fences the killed one",
        Duration::from_secs(60),
        || {
            e[1..]
                .iter()
                .any(|k| count(k, "fencing a previous owner") > 0)
                .then_some(())
        },
    );
    progress(&dcs, 2000, "copies after the kill");

    // A new instance joins: the others hand partitions over gracefully.
    let joined = Kflip::replicate(&yaml);
    wait_for("the new instance copies", Duration::from_secs(90), || {
        (count(&joined, "taking over partitions") > 0).then_some(())
    });
    assert_eq!(
        count(&joined, "fencing a previous owner"),
        0,
        "partitions handed over need no fencing:\n{}",
        joined.log()
    );
    e.push(joined);
    progress(&dcs, 2000, "copies after the join");

    // SIGSTOP past the session timeout: its partitions move, and its
    // owner is fenced. After SIGCONT it writes nothing and starts again.
    let fences = |e: &[Kflip]| -> usize {
        [&e[2], &e[3]]
            .iter()
            .map(|k| count(k, "fencing a previous owner"))
            .sum()
    };
    let before = fences(&e);
    signal(&e[1], "-STOP");
    wait_for("the paused one is fenced", Duration::from_secs(60), || {
        (fences(&e) > before).then_some(())
    });
    progress(&dcs, 2000, "copies while one is paused");
    signal(&e[1], "-CONT");
    e[1].wait_log(
        "starting again from what was committed",
        Duration::from_secs(60),
    );
    wait_for("the woken one rejoins", Duration::from_secs(90), || {
        (count(&e[1], "joining the flow's group") >= 2).then_some(())
    });

    stop.store(true, Ordering::Relaxed);
    let total = producer.join().expect("load thread") as usize;
    let source = read_all(&dcs.dc1.addr(), TOPIC);
    assert_eq!(source.values().map(Vec::len).sum::<usize>(), total);
    wait_for("everything copied", Duration::from_secs(120), || {
        (copied(&dcs) >= total).then_some(())
    });
    let target = read_all(&dcs.dc2.addr(), TOPIC);
    for (p, want) in &source {
        let got = target.get(p).cloned().unwrap_or_default();
        let dupes = got.len().saturating_sub(want.len());
        assert_eq!(
            &got,
            want,
            "partition {p}: {} source records, {} copies ({dupes} extra)",
            want.len(),
            got.len()
        );
    }
    // What the fenced incarnations wrote was aborted: read_uncommitted
    // consumers see it, read_committed ones (librdkafka's default) do not.
    let aborted = clients::values_uncommitted(&dcs.dc2.addr(), TOPIC).len() - total;
    eprintln!(
        "{total} records copied exactly once through a kill -9, a join and a pause; \
         {aborted} aborted copies of fenced instances"
    );
}
