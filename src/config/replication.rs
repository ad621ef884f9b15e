//! The `replication:` section: flows, patterns, and their validation.

use std::time::Duration;

use indexmap::IndexMap;

use super::model::{FlowFile, ReplicationFile};
use super::values::{duration, invalid};
use super::{ClusterConfig, ClusterName, ConfigError};

/// The engine's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicationConfig {
    /// The flows, one per direction.
    pub flows: Vec<FlowConfig>,
    /// Topic on each target cluster holding the engine's progress. Never
    /// replicated.
    pub state_topic: String,
}

/// A regular expression matched against a whole name.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// As written in the file.
    pub text: String,
    /// Compiled, anchored at both ends.
    re: regex::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Pattern {
    /// Compiles `text` so that it must match a whole name.
    pub fn new(text: &str) -> Result<Pattern, regex::Error> {
        Ok(Pattern {
            text: text.to_string(),
            re: regex::Regex::new(&format!("^(?:{text})$"))?,
        })
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.re.is_match(name)
    }
}

/// One direction of replication.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowConfig {
    /// `source->target`, used in logs, state keys and status.
    pub id: String,
    /// Cluster records are read from.
    pub source: ClusterName,
    /// Cluster records are written to.
    pub target: ClusterName,
    /// Topics to copy.
    pub topics: Vec<Pattern>,
    /// Topics never to copy, even if they match `topics`.
    pub exclude: Vec<Pattern>,
    /// Target name format; `{topic}` is the source name.
    pub rename: String,
    /// Groups whose offsets are translated.
    pub groups: Vec<Pattern>,
    /// Groups never translated.
    pub exclude_groups: Vec<Pattern>,
    /// New-topic discovery period.
    pub discovery_interval: Duration,
    /// Group offset sync period.
    pub group_sync_interval: Duration,
    /// Topic config and partition-count sync period.
    pub config_sync_interval: Duration,
    /// Progress checkpoint period.
    pub checkpoint_interval: Duration,
    /// Replication factor for created topics; `None` copies the source's.
    pub replication_factor: Option<i16>,
    /// Producer linger.
    pub linger: Duration,
    /// Producer batch size in bytes.
    pub batch_bytes: u64,
    /// Records buffered towards the target before reading pauses.
    pub max_buffered_records: u64,
    /// Bytes fetched per source partition in one request.
    pub fetch_partition_bytes: u64,
    /// Longest a source fetch waits for data.
    pub fetch_wait: Duration,
    /// Bytes a source fetch waits for (up to `fetch_wait`): 1 answers at
    /// the first record; more lowers the fetch rate, and with it the
    /// per-fetch cost that grows with the partitions a flow copies.
    pub fetch_min_bytes: u64,
    /// Copy orphans (records the old cluster acknowledged but never
    /// replicated before a disaster switch) instead of holding them back.
    pub copy_orphans: bool,
    /// Keep the ACLs of the flow's topics and groups on the target.
    pub acls: bool,
    /// SCRAM users whose credentials the flow sets on the target.
    pub users: Vec<super::acls::SyncUser>,
    /// Several instances share the flow through a consumer group on the
    /// source (`_kflip-engine-<id>`), each copying the partitions it is
    /// assigned.
    pub shared: bool,
    /// How long a sharing instance may be silent before its partitions go
    /// to the others.
    pub session_timeout: Duration,
    /// How often a shared flow commits its transaction (its copies become
    /// visible to read_committed consumers, and count as copied).
    pub commit_interval: Duration,
}

impl FlowConfig {
    /// Whether a source topic is copied by this flow.
    pub fn wants_topic(&self, topic: &str, state_topic: &str) -> bool {
        !is_internal(topic, state_topic)
            && self.topics.iter().any(|p| p.matches(topic))
            && !self.exclude.iter().any(|p| p.matches(topic))
    }

    /// The target topic name for a source topic.
    pub fn target_topic(&self, topic: &str) -> String {
        self.rename.replace("{topic}", topic)
    }

    /// The source topic a target topic name was made from, if it was.
    pub fn source_topic(&self, target: &str) -> Option<String> {
        let (prefix, suffix) = self.rename.split_once("{topic}")?;
        let inner = target.strip_prefix(prefix)?.strip_suffix(suffix)?;
        (!inner.is_empty()).then(|| inner.to_string())
    }

    /// Whether a group's offsets are translated by this flow.
    pub fn wants_group(&self, group: &str) -> bool {
        self.groups.iter().any(|p| p.matches(group))
            && !self.exclude_groups.iter().any(|p| p.matches(group))
    }
}

/// Kafka's own internal topics and kflip's state topic are never copied.
pub fn is_internal(topic: &str, state_topic: &str) -> bool {
    topic == state_topic || topic.starts_with("__") || topic.starts_with("_kflip")
}

pub(super) fn patterns(
    key: &str,
    list: Option<Vec<String>>,
    default: &[&str],
) -> Result<Vec<Pattern>, ConfigError> {
    let list = list.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
    list.iter()
        .enumerate()
        .map(|(i, text)| {
            Pattern::new(text).map_err(|e| {
                invalid(
                    format!("{key}[{i}]"),
                    format!("{text:?} is not a valid regular expression: {e}"),
                )
            })
        })
        .collect()
}

fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub(super) fn validate_replication(
    r: ReplicationFile,
    clusters: &IndexMap<ClusterName, ClusterConfig>,
) -> Result<ReplicationConfig, ConfigError> {
    let state_topic = r.state_topic.unwrap_or_else(|| "_kflip_state".to_string());
    if !valid_topic(&state_topic) {
        return Err(invalid(
            "replication.state_topic",
            format!("{state_topic:?} is not a valid topic name"),
        ));
    }
    let mut flows: Vec<FlowConfig> = Vec::new();
    for (i, f) in r.flows.into_iter().enumerate() {
        let key = format!("replication.flows[{i}]");
        let flow = validate_flow(&key, f, clusters)?;
        if flows.iter().any(|o| o.id == flow.id) {
            return Err(invalid(
                key,
                format!(
                    "repeats the flow {}; put all its topics in one flow",
                    flow.id
                ),
            ));
        }
        flows.push(flow);
    }
    Ok(ReplicationConfig { flows, state_topic })
}

fn validate_flow(
    key: &str,
    f: FlowFile,
    clusters: &IndexMap<ClusterName, ClusterConfig>,
) -> Result<FlowConfig, ConfigError> {
    for (which, name) in [("source", &f.source), ("target", &f.target)] {
        if !clusters.contains_key(&ClusterName::from(name.as_str())) {
            return Err(invalid(
                format!("{key}.{which}"),
                format!("names cluster {name:?}, which is not under clusters"),
            ));
        }
    }
    if f.source == f.target {
        return Err(invalid(format!("{key}.target"), "must differ from source"));
    }
    if f.topics.is_empty() {
        return Err(invalid(
            format!("{key}.topics"),
            "must list at least one pattern",
        ));
    }
    let rename = f.rename.unwrap_or_else(|| "{topic}".to_string());
    if !rename.contains("{topic}") || !valid_topic(&rename.replace("{topic}", "t")) {
        return Err(invalid(
            format!("{key}.rename"),
            format!("{rename:?} must contain {{topic}} and otherwise only letters, digits, '.', '_' and '-'"),
        ));
    }
    let d = |name: &str, v: Option<String>, default: Duration| -> Result<Duration, ConfigError> {
        let k = format!("{key}.{name}");
        let got = duration(&k, v, default)?;
        if got.is_zero() {
            return Err(invalid(k, "must be greater than zero"));
        }
        Ok(got)
    };
    let within = |name: &str,
                  v: Option<String>,
                  default: Duration,
                  range: std::ops::RangeInclusive<Duration>,
                  why: &str|
     -> Result<Duration, ConfigError> {
        let t = d(name, v, default)?;
        if range.contains(&t) {
            Ok(t)
        } else {
            Err(invalid(format!("{key}.{name}"), why))
        }
    };
    if let Some(rf) = f.replication_factor {
        if rf < 1 {
            return Err(invalid(
                format!("{key}.replication_factor"),
                "must be at least 1",
            ));
        }
    }
    let users = super::acls::users(key, f.users)?;
    Ok(FlowConfig {
        id: format!("{}->{}", f.source, f.target),
        source: ClusterName::from(f.source.as_str()),
        target: ClusterName::from(f.target.as_str()),
        topics: patterns(&format!("{key}.topics"), Some(f.topics), &[])?,
        exclude: patterns(&format!("{key}.exclude"), f.exclude, &[])?,
        rename,
        groups: patterns(&format!("{key}.groups"), f.groups, &[".*"])?,
        exclude_groups: patterns(&format!("{key}.exclude_groups"), f.exclude_groups, &[])?,
        discovery_interval: d(
            "discovery_interval",
            f.discovery_interval,
            Duration::from_secs(2),
        )?,
        group_sync_interval: d(
            "group_sync_interval",
            f.group_sync_interval,
            Duration::from_secs(2),
        )?,
        config_sync_interval: d(
            "config_sync_interval",
            f.config_sync_interval,
            Duration::from_secs(10),
        )?,
        checkpoint_interval: d(
            "checkpoint_interval",
            f.checkpoint_interval,
            Duration::from_secs(1),
        )?,
        replication_factor: f.replication_factor,
        // 0: batches still form while requests are in flight; 5ms added 5 ms
        // to every copy (BENCHMARKS.md, "Replication latency").
        linger: duration(&format!("{key}.linger"), f.linger, Duration::ZERO)?,
        batch_bytes: f.batch_bytes.unwrap_or(1 << 20).max(1024),
        max_buffered_records: f.max_buffered_records.unwrap_or(100_000).max(1),
        fetch_partition_bytes: f
            .fetch_partition_bytes
            .unwrap_or(1 << 20)
            .clamp(1024, 1 << 30),
        fetch_wait: d("fetch_wait", f.fetch_wait, Duration::from_millis(100))?,
        fetch_min_bytes: match f.fetch_min_bytes.unwrap_or(1) {
            // The consumer's fetch.max.bytes (src/replication/runner.rs).
            n @ 1..=52_428_800 => n,
            n => {
                return Err(invalid(
                    format!("{key}.fetch_min_bytes"),
                    format!(
                        "{n} is not between 1 and 52428800 (50 MiB, the most one fetch returns)"
                    ),
                ))
            }
        },
        copy_orphans: match f.orphans.as_deref() {
            None | Some("hold") => false,
            Some("copy") => true,
            Some(other) => {
                return Err(invalid(
                    format!("{key}.orphans"),
                    format!("{other:?} is not one of \"hold\", \"copy\""),
                ))
            }
        },
        acls: f.acls.unwrap_or(false),
        users,
        shared: f.shared.unwrap_or(false),
        session_timeout: within(
            "session_timeout",
            f.session_timeout,
            Duration::from_secs(10),
            Duration::from_secs(6)..=Duration::from_secs(1800),
            "must be between 6s and 30m (the brokers' group.min/max.session.timeout.ms defaults)",
        )?,
        commit_interval: within(
            "commit_interval",
            f.commit_interval,
            Duration::from_millis(100),
            Duration::from_millis(10)..=Duration::from_secs(30),
            "must be between 10ms and 30s (the transaction stays open in between)",
        )?,
    })
}
