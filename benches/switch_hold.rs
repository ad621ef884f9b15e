//! Planned switch time as the number of connected clients and consumer
//! groups grows.
//!
//! Run with `cargo bench --bench switch_hold`. Two single-node Apache
//! Kafka 4.4 clusters and one `kflip run` (proxy on dc1, flows dc1 -> dc2
//! and back for `sw-.*`, the failover bench's settings). Topic `sw-0` on
//! dc1 holds 1,000 records. For each point, `KFLIP_BENCH_FLIPS` (4) planned
//! flips alternate dc1 -> dc2 -> dc1 while C idle clients are connected
//! through kflip (each sent ApiVersions and Metadata, so its upstream
//! session exists), and kflip's own `took_ms` (hold start to flip) and the
//! engine's catch-up + group sync `waited_ms` are read from its log.
//! Points: C = 1 with no groups, then `KFLIP_BENCH_GROUPS` (500) groups
//! commit an offset of `sw-0` on dc1 (directly, so the final group sync
//! must translate every one), then C in `KFLIP_BENCH_CLIENTS` (`1,100,1000`).
//! The periodic group sync has already copied those offsets, so the final
//! sync reads and compares but commits nothing. The last point, "moved"
//! (skipped with `KFLIP_BENCH_MOVED=0`), is the worst case: right before
//! each flip every group commits a new offset on the active cluster (with
//! kflip's own batched group client, as 500 consumers would between two
//! periodic syncs), so the final sync must commit all of them on the new
//! cluster; after the flip the bench counts the groups found there at the
//! new offset.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::time::{Duration, Instant};

use common::{env_usize, median};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use support::clients::{config, create_topic, produce};
use support::raw::Raw;
use support::{wait_for, Kflip, TwoClusters};

use kflip::config::ClusterConfig;
use kflip::kafka::groups::{GroupAdmin, Offsets};

/// The failover bench's fast engine settings.
const FAST: &str = "discovery_interval: 500ms, group_sync_interval: 2s, config_sync_interval: 1s, checkpoint_interval: 200ms, fetch_partition_bytes: 65536, fetch_wait: 10ms";

fn yaml(dcs: &TwoClusters, active: &str) -> String {
    format!(
        "{}  switch_lag_timeout: 10s\nreplication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\"sw-.*\"], {FAST} }}\n    - {{ source: dc2, target: dc1, topics: [\"sw-.*\"], {FAST} }}\n",
        dcs.config(active, "")
    )
}

/// A field `name=value` of a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split_whitespace().next()
}

/// (took_ms, waited_ms of the catch-up) of the switch to `epoch`.
fn wait_switch(kflip: &Kflip, epoch: u64, from: &str) -> (u64, Option<u64>) {
    let needle = format!(" epoch={epoch} ");
    wait_for(
        &format!("the switch to epoch {epoch}"),
        Duration::from_secs(60),
        || {
            let log = kflip.log();
            let lines: Vec<&str> = log.lines().collect();
            let done = lines
                .iter()
                .find(|l| l.contains("switched active cluster") && l.contains(&needle))?;
            let took = field(done, "took_ms")?.parse().ok()?;
            // The catch-up line of this switch: the last one before it.
            let waited = lines
                .iter()
                .rev()
                .skip_while(|l| !l.contains(&needle))
                .find(|l| l.contains("group offsets synced"))
                .filter(|l| field(l, "from") == Some(from))
                .and_then(|l| field(l, "waited_ms"))
                .and_then(|w| w.parse().ok());
            Some((took, waited))
        },
    )
}

/// An idle client through kflip: its session has carried a Metadata.
fn client(addr: &str) -> Raw {
    let mut r = Raw::connect(addr);
    r.versions();
    let (_m, _): (MetadataResponse, _) = r.call(&MetadataRequest::default(), 4);
    r
}

/// `groups` groups each commit offset 500 of `sw-0` on `bootstrap`.
fn commit_groups(bootstrap: &str, groups: usize) {
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let bootstrap = bootstrap.to_string();
            std::thread::spawn(move || {
                for g in (w..groups).step_by(4) {
                    let c: BaseConsumer = config(&bootstrap)
                        .set("group.id", format!("g-{g:04}"))
                        .set("enable.auto.commit", "false")
                        .create()
                        .expect("consumer");
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset("sw-0", 0, Offset::Offset(500))
                        .unwrap();
                    wait_for("a group commit", Duration::from_secs(30), || {
                        c.commit(&tpl, CommitMode::Sync).ok()
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("commit thread");
    }
}

/// A plaintext cluster at `bootstrap`.
fn plain(bootstrap: &str) -> ClusterConfig {
    ClusterConfig {
        bootstrap: vec![bootstrap.to_string()],
        ..ClusterConfig::default()
    }
}

/// Every group of `names` on `bootstrap` commits `offset` of `sw-0`
/// (from outside the group, as the engine does); returns how many failed.
fn move_groups(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    names: &[String],
    offset: i64,
) -> usize {
    let cluster = plain(bootstrap);
    let at = Offsets::from([(("sw-0".to_string(), 0), offset)]);
    let commits = names.iter().map(|g| (g.clone(), at.clone())).collect();
    rt.block_on(async {
        let mut admin = GroupAdmin::new(cluster, Duration::from_secs(10));
        match admin.commit_many(&commits).await {
            Ok(done) => done.values().filter(|r| r.is_err()).count(),
            Err(e) => panic!("moving the groups on {bootstrap}: {e}"),
        }
    })
}

/// How many of `names` have `offset` of `sw-0` committed on `bootstrap`.
fn groups_at(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    names: &[String],
    offset: i64,
) -> usize {
    let cluster = plain(bootstrap);
    let topics = [("sw-0".to_string(), 1)].into_iter().collect();
    rt.block_on(async {
        let mut admin = GroupAdmin::new(cluster, Duration::from_secs(10));
        let got = admin
            .committed_many(names, &topics)
            .await
            .expect("committed offsets");
        got.values()
            .filter(|r| matches!(r, Ok(o) if o.get(&("sw-0".to_string(), 0)) == Some(&offset)))
            .count()
    })
}

fn main() {
    let flips = env_usize("KFLIP_BENCH_FLIPS", 4).max(1);
    let groups = env_usize("KFLIP_BENCH_GROUPS", 500);
    let clients: Vec<usize> = std::env::var("KFLIP_BENCH_CLIENTS")
        .unwrap_or_else(|_| "1,100,1000".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let started = Instant::now();
    let dcs = TwoClusters::start();
    create_topic(&dcs.dc1.addr(), "sw-0", 1);
    let values: Vec<String> = (0..1000).map(|i| format!("v{i}")).collect();
    produce(&dcs.dc1.addr(), "sw-0", &values);
    let kflip = Kflip::start_command("run", &yaml(&dcs, "dc1"), "kflip=info");
    let proxy = kflip.addr();
    // The engine has created sw-0 on dc2 and copied it.
    wait_for("sw-0 copied to dc2", Duration::from_secs(60), || {
        (support::clients::values(&dcs.dc2.addr(), "sw-0").len() >= 1000).then_some(())
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let names: Vec<String> = (0..groups).map(|g| format!("g-{g:04}")).collect();
    let mut moved_to = 500i64;
    // (clients, groups, every group moved right before each flip)
    let mut points: Vec<(usize, usize, bool)> = vec![(1, 0, false)];
    points.extend(clients.iter().map(|&c| (c, groups, false)));
    if groups > 0 && env_usize("KFLIP_BENCH_MOVED", 1) == 1 {
        points.push((1, groups, true));
    }
    let (mut epoch, mut active) = (0u64, "dc1");
    let mut rows = Vec::new();
    let mut committed = false;
    for (c, g, moved) in points {
        if g > 0 && !committed {
            let t = Instant::now();
            commit_groups(&dcs.dc1.addr(), g);
            committed = true;
            eprintln!("{g} groups committed in {:.1} s", t.elapsed().as_secs_f64());
            // Let a periodic group sync run once (2 s), as in production.
            std::thread::sleep(Duration::from_secs(3));
        }
        let t = Instant::now();
        let conns: Vec<Raw> = (0..c).map(|_| client(&proxy)).collect();
        eprintln!(
            "{c} clients connected in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let (mut took, mut waited) = (Vec::new(), Vec::new());
        for _ in 0..flips {
            let to = if active == "dc1" { "dc2" } else { "dc1" };
            let addr = |dc: &str| {
                if dc == "dc1" {
                    dcs.dc1.addr()
                } else {
                    dcs.dc2.addr()
                }
            };
            if moved {
                moved_to += 1;
                let t = Instant::now();
                let failed = move_groups(&rt, &addr(active), &names, moved_to);
                assert_eq!(failed, 0, "groups that could not move on {active}");
                eprintln!(
                    "  {g} groups moved to {moved_to} on {active} in {} ms",
                    t.elapsed().as_millis()
                );
            }
            epoch += 1;
            kflip.write_config(&yaml(&dcs, to));
            let (t, w) = wait_switch(&kflip, epoch, active);
            let label = if moved { " (all moved)" } else { "" };
            eprintln!(
                "{c} clients, {g} groups{label}: {active} -> {to} took_ms={t} waited_ms={w:?}"
            );
            if moved {
                let there = groups_at(&rt, &addr(to), &names, moved_to);
                eprintln!("  groups at the moved offset {moved_to} on {to}: {there}/{g}");
            }
            took.push(t as f64);
            waited.extend(w.map(|w| w as f64));
            active = to;
            // Settle: the engine's flows see the new active cluster.
            std::thread::sleep(Duration::from_secs(2));
        }
        drop(conns);
        let max = took.iter().copied().fold(0.0, f64::max);
        let g = if moved {
            format!("{g}, all moved")
        } else {
            g.to_string()
        };
        rows.push(format!(
            "| {c} | {g} | {:.0} | {max:.0} | {:.0} | {took:?} |",
            median(took.clone()),
            median(waited)
        ));
    }
    println!("\n## planned switch time by connected clients and consumer groups ({flips} flips per point)\n");
    println!("| idle clients | groups | took_ms p50 | took_ms max | catch-up + group sync waited_ms p50 | every took_ms |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "\ntotal bench time: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
