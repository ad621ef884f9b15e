//! The client inventory: what kflip has seen each client do, keyed by
//! client id and principal. It answers the runbook's questions (who
//! produces with acks=1, who is not idempotent, which consumers start at
//! the log end when their group has no offset) from the traffic itself.
//!
//! Bounded: at most [`MAX_CLIENTS`] clients and [`MAX_ITEMS`] names per
//! list; what does not fit is counted, not kept. A connection remembers
//! the facts it already reported ([`Conn`]), so the shared table is locked
//! only when something new is learned.

mod conn;
mod resets;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use conn::Conn;
pub use resets::Resets;

/// Most clients kept.
pub const MAX_CLIENTS: usize = 10_000;
/// Most names in one list of one client.
pub const MAX_ITEMS: usize = 256;

/// Who a client is: its client id and the principal it logged in as.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Who {
    /// The client id of its requests.
    pub client_id: String,
    /// Its principal (`proxy.sasl`), if it logged in.
    pub principal: Option<String>,
}

/// How a producer writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProducerKind {
    /// No producer id: retries may duplicate.
    Plain,
    /// An idempotent producer.
    Idempotent,
    /// A transactional producer.
    Transactional,
}

/// Where a consumer with no committed offset started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reset {
    /// The log start (`auto.offset.reset=earliest`).
    Earliest,
    /// The log end (`latest`): records written before it started are
    /// skipped.
    Latest,
}

/// One thing learned about a client.
#[derive(Debug, Hash)]
pub enum Fact<'a> {
    /// It sent a request.
    Seen,
    /// It produced to `topic` with these acks.
    Produced {
        /// The topic.
        topic: &'a str,
        /// The request's acks.
        acks: i16,
        /// Its producer kind.
        kind: ProducerKind,
    },
    /// It fetched from `topic`.
    Consumed(&'a str),
    /// It used `group`.
    Group(&'a str),
    /// It used this transactional id.
    TransactionalId(&'a str),
    /// Its `group` had no committed offset and it started from `reset`.
    Reset {
        /// The group.
        group: &'a str,
        /// Where it started.
        reset: Reset,
    },
}

/// What is known of one client.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Entry {
    /// Client software name and version (ApiVersions v3+).
    pub software: Option<String>,
    /// Addresses it connected from.
    pub addresses: BTreeSet<IpAddr>,
    /// Topics it produced to.
    pub produced: BTreeSet<String>,
    /// Topics it fetched from.
    pub consumed: BTreeSet<String>,
    /// Groups it used.
    pub groups: BTreeSet<String>,
    /// The acks values of its Produce requests.
    pub acks: BTreeSet<i16>,
    /// How it produces.
    pub producer: BTreeSet<ProducerKind>,
    /// Its transactional ids.
    pub transactional_ids: BTreeSet<String>,
    /// Group -> where it started with no committed offset.
    pub resets: BTreeMap<String, BTreeSet<Reset>>,
    /// Rule -> requests that broke it.
    pub violations: BTreeMap<String, u64>,
    /// Unix ms of the first and the latest request seen.
    pub first_seen_ms: u64,
    /// See `first_seen_ms`.
    pub last_seen_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn put<T: Ord>(set: &mut BTreeSet<T>, item: T, dropped: &AtomicU64) {
    if set.len() < MAX_ITEMS || set.contains(&item) {
        set.insert(item);
    } else {
        dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every client seen, shared by all connections.
#[derive(Default)]
pub struct Inventory {
    clients: Mutex<HashMap<Who, Entry>>,
    /// Facts not kept because a table was full.
    dropped: AtomicU64,
    /// Partitions whose group had no committed offset, until the client's
    /// next ListOffsets for them.
    pub resets: Resets,
}

impl Inventory {
    fn with_entry(
        &self,
        who: &Who,
        addr: IpAddr,
        software: Option<&str>,
        f: impl FnOnce(&mut Entry),
    ) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        if !clients.contains_key(who) {
            if clients.len() >= MAX_CLIENTS {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            clients.insert(
                who.clone(),
                Entry {
                    first_seen_ms: now,
                    ..Entry::default()
                },
            );
        }
        let Some(e) = clients.get_mut(who) else {
            return;
        };
        e.last_seen_ms = now;
        put(&mut e.addresses, addr, &self.dropped);
        if let Some(s) = software {
            e.software = Some(s.to_owned());
        }
        f(e);
    }

    /// Records `fact` about `who`.
    pub fn record(&self, who: &Who, addr: IpAddr, software: Option<&str>, fact: &Fact<'_>) {
        let d = &self.dropped;
        self.with_entry(who, addr, software, |e| match *fact {
            Fact::Seen => {}
            Fact::Produced { topic, acks, kind } => {
                put(&mut e.produced, topic.to_owned(), d);
                e.acks.insert(acks);
                e.producer.insert(kind);
            }
            Fact::Consumed(topic) => put(&mut e.consumed, topic.to_owned(), d),
            Fact::Group(g) => put(&mut e.groups, g.to_owned(), d),
            Fact::TransactionalId(id) => put(&mut e.transactional_ids, id.to_owned(), d),
            Fact::Reset { group, reset } => {
                if e.resets.len() < MAX_ITEMS || e.resets.contains_key(group) {
                    e.resets.entry(group.to_owned()).or_default().insert(reset);
                }
            }
        });
    }

    /// Counts a request of `who` that broke `rule`.
    pub fn violated(&self, who: &Who, addr: IpAddr, rule: &str) {
        self.with_entry(who, addr, None, |e| {
            *e.violations.entry(rule.to_owned()).or_default() += 1;
        });
    }

    /// Every client, sorted by client id then principal.
    pub fn snapshot(&self) -> Vec<(Who, Entry)> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = clients
            .iter()
            .map(|(w, e)| (w.clone(), e.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Facts not kept because a table was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What a switch would cost a client, from what it has been seen doing:
/// the reasons it may lose, duplicate or skip records.
pub fn switch_risks(e: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    let weak: Vec<_> = e.acks.iter().filter(|&&a| a != -1).collect();
    if !weak.is_empty() {
        out.push(format!(
            "produces with acks={}: records the cluster acknowledged before replicating them are lost in a disaster",
            weak.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
        ));
    }
    if e.producer.contains(&ProducerKind::Plain) {
        out.push(
            "produces without idempotence: retries across a switch may duplicate records".into(),
        );
    }
    if e.producer.contains(&ProducerKind::Transactional) {
        out.push("transactional: its open transaction aborts at the switch and is retried".into());
    }
    for (group, resets) in &e.resets {
        if resets.contains(&Reset::Latest) {
            out.push(format!(
                "group {group} starts at the log end when it has no offset: a group not translated yet skips records"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
