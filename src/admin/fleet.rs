//! The fleet: every kflip (sidecars, gateways, engines) that shares the
//! clusters announces itself in the state topic, and reads the others.
//!
//! Every few seconds each kflip writes a beacon, key `fleet|INSTANCE`, JSON
//! value (its roles, the cluster its proxy forwards to, its switch epoch and
//! last switch), to the state topic of every cluster that has one, and
//! tails those topics for the others' beacons. A clean shutdown writes a
//! tombstone. The state topic is compacted, so it keeps one beacon per
//! instance. kflip never creates the state topic for this (the engine does,
//! on its targets): a cluster without one carries no beacons.
//!
//! `/status` shows the members and whether any disagrees with this one on
//! the active cluster; switch epochs count each process's own switches
//! and are not compared.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::Sources;
use crate::config::{ClusterConfig, ClusterName};

/// How often a beacon is written.
const EVERY: Duration = Duration::from_secs(3);

/// A member whose last beacon is older than this is shown as stale.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// What one kflip says about itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Beacon {
    /// Who: `KFLIP_INSTANCE`, else host name and process id.
    pub instance: String,
    /// kflip's version.
    pub version: String,
    /// `proxy`, `engine`.
    pub roles: Vec<String>,
    /// The cluster its proxy forwards to now.
    pub active: Option<String>,
    /// The cluster its config file names (differs from `active` while a
    /// switch runs).
    pub configured: Option<String>,
    /// Its own switch count.
    pub epoch: Option<u64>,
    /// A planned switch holds its clients now.
    pub holding: bool,
    /// When it wrote this (Unix ms).
    pub at_unix_ms: i64,
    /// A proxy with no engine of its own, holding for a planned switch:
    /// it asks the fleet's engines to catch up.
    #[serde(default)]
    pub switch: Option<SwitchAsk>,
    /// An engine's flows (`dc1->dc2`).
    #[serde(default)]
    pub flows: Vec<String>,
    /// An engine's answers to switches it was asked to catch up for.
    #[serde(default)]
    pub acks: Vec<Ack>,
}

/// A proxy's request that the engines catch up before it switches.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SwitchAsk {
    /// The cluster being left.
    pub from: String,
    /// The cluster clients go to.
    pub to: String,
    /// When the hold began (Unix ms); names the request.
    pub started_at_ms: i64,
    /// How long the proxy waits.
    pub bound_ms: u64,
}

/// An engine's answer to a [`SwitchAsk`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Ack {
    /// The proxy that asked.
    pub instance: String,
    /// Its request.
    pub from: String,
    /// See `from`.
    pub to: String,
    /// See [`SwitchAsk::started_at_ms`].
    pub started_at_ms: i64,
    /// Every record of the old cluster was copied in time.
    pub caught_up: bool,
    /// Records still behind when the engine stopped waiting.
    pub behind: i64,
}

/// A beacon and where it was read.
#[derive(Clone, Debug, Serialize)]
pub struct Member {
    /// The beacon.
    #[serde(flatten)]
    pub beacon: Beacon,
    /// The clusters whose state topic had it.
    pub seen_on: Vec<String>,
    /// This process.
    pub me: bool,
}

/// The members seen so far, and this process's part in switches.
#[derive(Debug, Default)]
pub struct Fleet {
    members: Mutex<BTreeMap<String, Member>>,
    /// This proxy's request to the engines, while its switch holds.
    ask: Mutex<Option<SwitchAsk>>,
    /// This engine's answers.
    acks: Mutex<Vec<Ack>>,
    /// Requests this engine took up: (instance, started_at_ms).
    serving: Mutex<std::collections::BTreeSet<(String, i64)>>,
    /// Beacon now, not at the next tick.
    wake: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fleet {
    /// Every member seen, this one included.
    pub fn members(&self) -> Vec<Member> {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn seen(&self, cluster: &str, key: &str, beacon: Option<Beacon>, me: &str) {
        let Some(instance) = key.strip_prefix("fleet|") else {
            return;
        };
        let mut all = lock(&self.members);
        match beacon {
            // A tombstone: the member stopped cleanly.
            None => {
                all.remove(instance);
            }
            Some(b) => {
                let m = all.entry(instance.to_string()).or_insert_with(|| Member {
                    beacon: b.clone(),
                    seen_on: Vec::new(),
                    me: instance == me,
                });
                if b.at_unix_ms >= m.beacon.at_unix_ms {
                    m.beacon = b;
                }
                if !m.seen_on.iter().any(|c| c == cluster) {
                    m.seen_on.push(cluster.to_string());
                    m.seen_on.sort();
                }
            }
        }
    }
}

/// This process's instance name.
pub fn instance() -> String {
    std::env::var("KFLIP_INSTANCE").unwrap_or_else(|_| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "kflip".into());
        format!("{host}-{}", std::process::id())
    })
}

/// Age of a beacon now.
pub fn age(b: &Beacon) -> Duration {
    let now = crate::replication::state::now_ms();
    Duration::from_millis((now - b.at_unix_ms).max(0) as u64)
}

fn beacon(s: &Sources) -> Beacon {
    let mut roles = Vec::new();
    if s.proxy.is_some() {
        roles.push("proxy".to_string());
    }
    if s.engine.is_some() {
        roles.push("engine".to_string());
    }
    let state = s.proxy.as_ref().map(|p| p.switch_state());
    Beacon {
        instance: s.instance.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        roles,
        active: state.as_ref().map(|st| st.active.to_string()),
        configured: s
            .config
            .borrow()
            .proxy
            .as_ref()
            .map(|p| p.active.to_string()),
        epoch: state.as_ref().map(|st| st.epoch),
        holding: state.is_some_and(|st| st.holding),
        at_unix_ms: crate::replication::state::now_ms(),
        switch: lock(&s.fleet.ask).clone(),
        flows: s
            .engine
            .as_ref()
            .map(|e| e.lag().into_iter().map(|l| l.flow).collect())
            .unwrap_or_default(),
        acks: lock(&s.fleet.acks).clone(),
    }
}

/// One cluster's clients, kept while its settings stay the same.
struct Link {
    settings: ClusterConfig,
    topic: String,
    producer: ThreadedProducer<DefaultProducerContext>,
    consumer: BaseConsumer,
}

impl Link {
    /// Clients for `cluster`, if its state topic exists (kflip never
    /// creates it from here: a producer's metadata request could make the
    /// broker auto-create it uncompacted).
    fn open(settings: &ClusterConfig, topic: &str) -> Result<Option<Link>, String> {
        let base = crate::cluster::rdkafka::client_config(settings, "kflip-fleet")
            .map_err(|e| e.to_string())?;
        let consumer: BaseConsumer = base
            .clone()
            .set("allow.auto.create.topics", "false")
            .set("enable.auto.commit", "false")
            // librdkafka wants a group for a consumer even when it only
            // assigns partitions (no join, no commit happens).
            .set("group.id", "kflip-fleet")
            .create()
            .map_err(|e| e.to_string())?;
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let exists = md
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if !exists {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        let producer = base
            .clone()
            .set("linger.ms", "0")
            .set("message.timeout.ms", "10000")
            .create()
            .map_err(|e| e.to_string())?;
        Ok(Some(Link {
            settings: settings.clone(),
            topic: topic.to_string(),
            producer,
            consumer,
        }))
    }
}

/// Publishes this kflip's beacon and reads the others' until shutdown;
/// runs on a thread of its own (librdkafka calls block).
pub fn run(sources: Arc<Sources>, rt: tokio::runtime::Handle) {
    let me = sources.instance.clone();
    let key = format!("fleet|{me}");
    let mut links: BTreeMap<ClusterName, Link> = BTreeMap::new();
    let mut last_try: BTreeMap<ClusterName, Instant> = BTreeMap::new();
    let mut disagreeing = Vec::<String>::new();
    let mut followed: Option<String> = None;
    while !sources.shutdown.is_cancelled() {
        let cfg = sources.config.borrow().clone();
        let topic = cfg
            .replication
            .as_ref()
            .map(|r| r.state_topic.clone())
            .unwrap_or_else(|| "_kflip_state".into());
        links.retain(|name, l| cfg.clusters.get(name) == Some(&l.settings) && l.topic == topic);
        for (name, settings) in &cfg.clusters {
            if links.contains_key(name) {
                continue;
            }
            // A cluster without a state topic (or unreachable) is looked
            // at again every 10 s, not every beacon.
            if last_try
                .get(name)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
            {
                continue;
            }
            last_try.insert(name.clone(), Instant::now());
            match Link::open(settings, &topic) {
                Ok(Some(l)) => {
                    links.insert(name.clone(), l);
                }
                Ok(None) => {
                    tracing::debug!(cluster = %name, topic, "no state topic on this cluster; the fleet is not announced there")
                }
                Err(e) => {
                    tracing::debug!(cluster = %name, error = %e, "fleet: cannot reach the cluster")
                }
            }
        }
        let b = beacon(&sources);
        let value = serde_json::to_string(&b).unwrap_or_default();
        for (name, link) in &links {
            let _ = link.producer.send(
                BaseRecord::<str, str>::to(&topic)
                    .partition(0)
                    .key(&key)
                    .payload(&value),
            );
            // Everything written since the last look.
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                match link.consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        let Some(k) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                            continue;
                        };
                        if !k.starts_with("fleet|") {
                            continue;
                        }
                        let beacon = m.payload().and_then(|v| serde_json::from_slice(v).ok());
                        if m.payload().is_some() && beacon.is_none() {
                            continue;
                        }
                        sources.fleet.seen(name.as_str(), k, beacon, &me);
                    }
                    Some(Err(_)) | None => break,
                }
            }
        }
        follow_fleet(&sources, &mut followed);
        hold_behind(&sources, &b);
        serve_asks(&sources, &rt);
        // Say it once when members start or stop disagreeing.
        let now: Vec<String> = disagreements(&sources.fleet.members(), &b)
            .into_iter()
            .map(|m| {
                format!(
                    "{} on {}",
                    m.beacon.instance,
                    m.beacon.active.unwrap_or_default()
                )
            })
            .collect();
        if now != disagreeing {
            if now.is_empty() {
                tracing::info!("the fleet agrees on the active cluster again");
            } else {
                tracing::warn!(active = ?b.active, others = ?now, "fleet members forward to another cluster than this kflip (see /status)");
            }
            disagreeing = now;
        }
        // While a switch is asked for anywhere, beacon and read fast.
        let busy = lock(&sources.fleet.ask).is_some()
            || sources
                .fleet
                .members()
                .iter()
                .any(|m| m.beacon.switch.is_some() && age(&m.beacon) < STALE_AFTER);
        let wake = Instant::now()
            + if busy {
                Duration::from_millis(200)
            } else {
                EVERY
            };
        while Instant::now() < wake && !sources.shutdown.is_cancelled() {
            if sources
                .fleet
                .wake
                .swap(false, std::sync::atomic::Ordering::Relaxed)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // A clean stop leaves the fleet.
    for link in links.values() {
        let _ = link.producer.send(
            BaseRecord::<str, str>::to(&topic_of(&sources))
                .partition(0)
                .key(&key),
        );
        let _ = link.producer.flush(Duration::from_secs(2));
    }
}

/// An engine with no proxy in its process learns where clients are from
/// the fleet's live proxies (the cluster most of them forward to), so its
/// group offset sync stops writing into the cluster consumers commit to
/// themselves, as it does beside a proxy.
fn follow_fleet(s: &Sources, followed: &mut Option<String>) {
    let (None, Some(engine)) = (&s.proxy, &s.engine) else {
        return;
    };
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    for m in s.fleet.members() {
        if let (false, Some(a)) = (age(&m.beacon) >= STALE_AFTER, m.beacon.active) {
            *votes.entry(a).or_default() += 1;
        }
    }
    let Some(most) = votes.values().max().copied() else {
        return;
    };
    // On a tie the cluster followed so far stays.
    let keep = followed
        .as_ref()
        .is_some_and(|f| votes.get(f) == Some(&most));
    let Some(active) = (if keep {
        followed.clone()
    } else {
        votes.into_iter().find(|(_, n)| *n == most).map(|(a, _)| a)
    }) else {
        return;
    };
    if followed.as_deref() != Some(active.as_str()) {
        tracing::info!(
            %active,
            "the fleet's proxies forward to this cluster; the engine treats it as active"
        );
        engine.set_active(&active);
        *followed = Some(active);
    }
}

/// A proxy whose cluster fewer live proxies forward to than another one
/// (itself counted) is behind its fleet: it takes no writes until its file
/// catches up ([`crate::protocol::filters::fleet`]).
fn hold_behind(s: &Sources, me: &Beacon) {
    let (Some(proxy), Some(mine)) = (&s.proxy, &me.active) else {
        return;
    };
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    *votes.entry(mine.clone()).or_default() += 1;
    for m in s.fleet.members() {
        if let (false, false, Some(a)) = (m.me, age(&m.beacon) >= STALE_AFTER, m.beacon.active) {
            *votes.entry(a).or_default() += 1;
        }
    }
    let here = votes.get(mine).copied().unwrap_or(0);
    let elsewhere = votes
        .into_iter()
        .filter(|(c, n)| c != mine && *n > here)
        .max_by_key(|(_, n)| *n)
        .map(|(c, _)| ClusterName::from(c.as_str()));
    let board = proxy.board();
    let before = board.fleet_elsewhere();
    if before != elsewhere {
        match &elsewhere {
            Some(c) => {
                tracing::warn!(fleet = %c, this = %mine, "most of the fleet forwards to another cluster: this proxy takes no writes until its config names it")
            }
            None => tracing::info!("this proxy forwards where its fleet does; writes go on"),
        }
        board.set_fleet_elsewhere(elsewhere);
    }
}

/// This engine catches up for every live proxy that asks, on a flow it
/// runs, once per request.
fn serve_asks(s: &Arc<Sources>, rt: &tokio::runtime::Handle) {
    let Some(engine) = &s.engine else {
        return;
    };
    let flows: Vec<String> = engine.lag().into_iter().map(|l| l.flow).collect();
    for m in s.fleet.members() {
        let Some(ask) = m.beacon.switch.clone() else {
            continue;
        };
        if m.me
            || age(&m.beacon) >= STALE_AFTER
            || !flows.contains(&format!("{}->{}", ask.from, ask.to))
        {
            continue;
        }
        let id = (m.beacon.instance.clone(), ask.started_at_ms);
        if !lock(&s.fleet.serving).insert(id.clone()) {
            continue;
        }
        tracing::info!(proxy = %id.0, from = %ask.from, to = %ask.to, "a proxy of the fleet holds for a planned switch; catching up");
        let (engine, s) = (engine.clone(), s.clone());
        rt.spawn(async move {
            let bound = Duration::from_millis(ask.bound_ms);
            let r = engine
                .catch_up(&ask.from, &ask.to, bound, BTreeMap::new())
                .await;
            let behind = r.gaps.iter().map(|g| g.records.max(0)).sum();
            let mut acks = lock(&s.fleet.acks);
            acks.push(Ack {
                instance: id.0,
                from: ask.from,
                to: ask.to,
                started_at_ms: ask.started_at_ms,
                caught_up: r.caught_up,
                behind,
            });
            let excess = acks.len().saturating_sub(16);
            acks.drain(..excess);
            drop(acks);
            s.fleet
                .wake
                .store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

/// The fleet's engines, as a planned switch of this proxy sees them.
pub struct FleetEngines(pub Arc<Sources>);

impl crate::failover::RemoteEngines for FleetEngines {
    fn catch_up<'a>(
        &'a self,
        from: &'a ClusterName,
        to: &'a ClusterName,
        bound: Duration,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Option<crate::failover::RemoteCatchUp>> + Send + 'a>,
    > {
        Box::pin(async move {
            let s = &self.0;
            let flow = format!("{from}->{to}");
            let engines: Vec<String> = s
                .fleet
                .members()
                .into_iter()
                .filter(|m| !m.me && age(&m.beacon) < STALE_AFTER && m.beacon.flows.contains(&flow))
                .map(|m| m.beacon.instance)
                .collect();
            if engines.is_empty() {
                return None;
            }
            let ask = SwitchAsk {
                from: from.to_string(),
                to: to.to_string(),
                started_at_ms: crate::replication::state::now_ms(),
                bound_ms: bound.as_millis() as u64,
            };
            *lock(&s.fleet.ask) = Some(ask.clone());
            s.fleet
                .wake
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let deadline = tokio::time::Instant::now() + bound;
            let answers = loop {
                let members = s.fleet.members();
                let answers: Vec<(String, Ack)> = engines
                    .iter()
                    .filter_map(|e| {
                        let m = members.iter().find(|m| &m.beacon.instance == e)?;
                        let a = m.beacon.acks.iter().find(|a| {
                            a.instance == s.instance
                                && a.started_at_ms == ask.started_at_ms
                                && a.from == ask.from
                                && a.to == ask.to
                        })?;
                        Some((e.clone(), a.clone()))
                    })
                    .collect();
                // An engine that stopped beaconing meanwhile (it died) is
                // not waited for once it is stale.
                let waiting = engines.iter().any(|e| {
                    !answers.iter().any(|(a, _)| a == e)
                        && members
                            .iter()
                            .any(|m| &m.beacon.instance == e && age(&m.beacon) < STALE_AFTER)
                });
                if !waiting || tokio::time::Instant::now() >= deadline {
                    break answers;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            *lock(&s.fleet.ask) = None;
            s.fleet
                .wake
                .store(true, std::sync::atomic::Ordering::Relaxed);
            Some(crate::failover::RemoteCatchUp {
                caught_up: answers
                    .iter()
                    .filter(|(_, a)| a.caught_up)
                    .map(|(e, _)| e.clone())
                    .collect(),
                behind: answers.iter().map(|(_, a)| a.behind).sum(),
                engines,
            })
        })
    }
}

fn topic_of(s: &Sources) -> String {
    s.config
        .borrow()
        .replication
        .as_ref()
        .map(|r| r.state_topic.clone())
        .unwrap_or_else(|| "_kflip_state".into())
}

/// Live proxy members (not stale, not this one) forwarding to another
/// cluster than `me` does.
pub fn disagreements(members: &[Member], me: &Beacon) -> Vec<Member> {
    let Some(active) = &me.active else {
        return Vec::new();
    };
    members
        .iter()
        .filter(|m| !m.me && age(&m.beacon) < STALE_AFTER)
        .filter(|m| m.beacon.active.as_ref().is_some_and(|a| a != active))
        .cloned()
        .collect()
}

/// This process's beacon now, for `/status`.
pub fn current(s: &Sources) -> Beacon {
    beacon(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(instance: &str, active: &str, at: i64) -> Beacon {
        Beacon {
            instance: instance.into(),
            version: "0".into(),
            roles: vec!["proxy".into()],
            active: Some(active.into()),
            configured: Some(active.into()),
            epoch: Some(0),
            holding: false,
            at_unix_ms: at,
            switch: None,
            flows: Vec::new(),
            acks: Vec::new(),
        }
    }

    #[test]
    fn the_newest_beacon_wins_and_a_tombstone_removes_the_member() {
        let f = Fleet::default();
        let now = crate::replication::state::now_ms();
        f.seen("dc1", "fleet|a", Some(b("a", "dc1", now)), "me");
        f.seen("dc2", "fleet|a", Some(b("a", "dc2", now - 1000)), "me");
        let m = f.members();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].beacon.active.as_deref(), Some("dc1"));
        assert_eq!(m[0].seen_on, vec!["dc1", "dc2"]);
        f.seen("dc1", "not-fleet|x", Some(b("x", "dc1", now)), "me");
        assert_eq!(f.members().len(), 1);
        f.seen("dc1", "fleet|a", None, "me");
        assert!(f.members().is_empty());
    }

    #[test]
    fn only_live_members_on_another_cluster_disagree() {
        let f = Fleet::default();
        let now = crate::replication::state::now_ms();
        f.seen("dc1", "fleet|me", Some(b("me", "dc1", now)), "me");
        f.seen("dc1", "fleet|same", Some(b("same", "dc1", now)), "me");
        f.seen("dc1", "fleet|other", Some(b("other", "dc2", now)), "me");
        f.seen(
            "dc1",
            "fleet|gone",
            Some(b("gone", "dc2", now - 60_000)),
            "me",
        );
        let d = disagreements(&f.members(), &b("me", "dc1", now));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].beacon.instance, "other");
    }
}
