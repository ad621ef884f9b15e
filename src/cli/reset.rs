//! `kflip offsets reset --group G --to-datetime T --cluster C`: the manual
//! path for a group that is not running: each of its partitions (those it
//! has committed offsets for, or the `--topic`s named) is set to the first
//! offset at or after `T`, on one cluster, directly (no proxy involved).

use std::time::{Duration, SystemTime};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::ops::Exit;
use crate::config::{self, ClusterName};

const TIMEOUT: Duration = Duration::from_secs(15);

/// Options of `offsets reset`.
pub(super) struct Reset<'a> {
    pub(super) path: &'a std::path::Path,
    pub(super) group: &'a str,
    pub(super) cluster: &'a str,
    pub(super) datetime: &'a str,
    pub(super) topics: &'a [String],
    pub(super) dry_run: bool,
}

pub(super) fn reset(o: Reset) -> Result<(), Exit> {
    let cfg =
        config::load(o.path).map_err(|e| Exit::usage(format!("{}: {e}", o.path.display())))?;
    let at = humantime::parse_rfc3339_weak(o.datetime).map_err(|e| {
        Exit::usage(format!(
            "--to-datetime {:?}: {e} (write it as 2026-12-04T03:00:00Z)",
            o.datetime
        ))
    })?;
    let at_ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| Exit::usage("--to-datetime is before 1970"))?
        .as_millis() as i64;
    let name = ClusterName::from(o.cluster);
    let cluster = cfg.clusters.get(&name).cloned().ok_or_else(|| {
        Exit::usage(format!(
            "no cluster {:?} in {}",
            o.cluster,
            o.path.display()
        ))
    })?;
    // A running group would overwrite the reset with its next commit, and
    // the broker refuses a commit from outside a group with members.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Exit::failed(format!("cannot start the async runtime: {e}")))?;
    let (state, members) = rt
        .block_on(async {
            crate::kafka::groups::GroupAdmin::new(cluster.clone(), TIMEOUT)
                .describe(o.group)
                .await
        })
        .map_err(|e| Exit::unreachable(e.to_string()))?;
    if members > 0 {
        return Err(Exit::failed(format!(
            "group {} is running on {} ({state}, {members} members); stop its consumers first",
            o.group, o.cluster
        )));
    }
    let consumer: BaseConsumer = crate::cluster::rdkafka::client_config(&cluster, "kflip-cli")
        .map_err(|e| Exit::usage(e.to_string()))?
        .set("group.id", o.group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| Exit::failed(format!("cannot create a client for {}: {e}", o.cluster)))?;
    let metadata = consumer
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| Exit::unreachable(format!("{}: cannot read metadata: {e}", o.cluster)))?;
    let mut all = TopicPartitionList::new();
    for t in metadata.topics() {
        let named = o.topics.iter().any(|n| n == t.name());
        if (o.topics.is_empty() && !crate::config::is_internal(t.name(), "_kflip_state")) || named {
            for p in t.partitions() {
                all.add_partition(t.name(), p.id());
            }
        }
    }
    for t in o.topics {
        if !metadata.topics().iter().any(|m| m.name() == t) {
            return Err(Exit::usage(format!("no topic {t:?} on {}", o.cluster)));
        }
    }
    let committed = consumer
        .committed_offsets(all.clone(), TIMEOUT)
        .map_err(|e| {
            Exit::unreachable(format!("{}: cannot read committed offsets: {e}", o.cluster))
        })?;
    let mut targets = TopicPartitionList::new();
    let mut old = Vec::new();
    for e in committed.elements() {
        let has = matches!(e.offset(), Offset::Offset(_));
        if has || !o.topics.is_empty() {
            targets
                .add_partition_offset(e.topic(), e.partition(), Offset::Offset(at_ms))
                .map_err(|e| Exit::failed(e.to_string()))?;
            old.push((e.topic().to_string(), e.partition(), e.offset()));
        }
    }
    if old.is_empty() {
        return Err(Exit::failed(format!(
            "group {} has no committed offsets on {}; name the topics with --topic",
            o.group, o.cluster
        )));
    }
    let found = consumer.offsets_for_times(targets, TIMEOUT).map_err(|e| {
        Exit::unreachable(format!(
            "{}: cannot look up offsets by time: {e}",
            o.cluster
        ))
    })?;
    let mut commit = TopicPartitionList::new();
    println!(
        "group {} on {}: reset to the first record at or after {}{}",
        o.group,
        o.cluster,
        humantime::format_rfc3339_seconds(at),
        if o.dry_run {
            " (dry run: nothing committed)"
        } else {
            ""
        }
    );
    println!(
        "  {:<24} {:>9} {:>12} {:>12}",
        "topic", "partition", "committed", "new"
    );
    for (topic, partition, before) in &old {
        let new = match found.find_partition(topic, *partition).map(|e| e.offset()) {
            Some(Offset::Offset(n)) => n,
            // No record at or after T: the log end.
            _ => {
                consumer
                    .fetch_watermarks(topic, *partition, TIMEOUT)
                    .map_err(|e| Exit::unreachable(e.to_string()))?
                    .1
            }
        };
        let shown = |o: &Offset| match o {
            Offset::Offset(n) => n.to_string(),
            _ => "-".into(),
        };
        println!(
            "  {:<24} {:>9} {:>12} {:>12}",
            topic,
            partition,
            shown(before),
            new
        );
        commit
            .add_partition_offset(topic, *partition, Offset::Offset(new))
            .map_err(|e| Exit::failed(e.to_string()))?;
    }
    if o.dry_run {
        return Ok(());
    }
    consumer.commit(&commit, CommitMode::Sync).map_err(|e| {
        Exit::failed(format!(
            "commit refused by {}: {e} (is the group running again?)",
            o.cluster
        ))
    })?;
    println!("committed");
    Ok(())
}
