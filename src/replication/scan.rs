//! Reading a partition to the end it has now: the state topic at start,
//! a source's held orphans, and the target, to find the copies made after
//! the last checkpoint by their provenance headers.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::compat;
use super::error::{Cause, Error, Side};
use super::provenance::{self, Origin};
use super::runner::TIMEOUT;
use super::state::SourcePartition;
use crate::cluster::rdkafka::client_config;
use crate::config::ClusterConfig;
use crate::offsets::{OffsetMap, SourceOffset, TargetOffset};

/// Longest a scan may take to read to the end it saw at its start.
const SCAN_BOUND: Duration = Duration::from_secs(60);

/// Where copying of a partition resumes: after the last acknowledged copy
/// or skipped record.
pub fn resume_point(map: &OffsetMap) -> i64 {
    let last = map.runs().last().map(|r| r.source_end().0).unwrap_or(0);
    last.max(map.frontier().0)
}

/// A cluster to read, and how errors name it.
#[derive(Clone, Copy)]
pub(super) struct Place<'a> {
    /// Which side of the flow it is.
    pub(super) side: Side,
    /// Its name in the config.
    pub(super) name: &'a str,
    /// How to reach it.
    pub(super) cluster: &'a ClusterConfig,
}

impl Place<'_> {
    fn err(&self, op: impl Into<String>, cause: impl Into<Cause>) -> Error {
        Error::cluster(self.side, self.name, op, cause)
    }
}

/// Calls `f` for every record of a partition from `from` to the end it has now.
pub(super) fn scan(
    at: Place<'_>,
    topic: &str,
    partition: i32,
    from: i64,
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), Error> {
    let c: BaseConsumer = client_config(at.cluster, "kflip-engine")
        .map_err(|e| at.err("set up the login", e))?
        .set("group.id", "_kflip-engine-scan")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set(
            "max.partition.fetch.bytes",
            compat::SCAN_FETCH_PARTITION_BYTES.to_string(),
        )
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| at.err("create a consumer", e))?;
    let (low, high) = c
        .fetch_watermarks(topic, partition, TIMEOUT)
        .map_err(|e| at.err(format!("offsets of {topic}[{partition}]"), e))?;
    let start = from.max(low);
    if start >= high {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))
        .map_err(|e| {
            Error::Internal(format!(
                "cannot read {topic}[{partition}] from {start}: {e}"
            ))
        })?;
    c.assign(&tpl)
        .map_err(|e| at.err(format!("assign {topic}[{partition}]"), e))?;
    let deadline = Instant::now() + SCAN_BOUND;
    loop {
        if Instant::now() > deadline {
            return Err(at.err(
                format!("reading {topic}[{partition}] up to {high}"),
                Cause::TimedOut(SCAN_BOUND),
            ));
        }
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let done = m.offset() + 1 >= high;
                f(&m);
                if done {
                    return Ok(());
                }
            }
            Some(Err(e)) => return Err(at.err(format!("reading {topic}[{partition}]"), e)),
            // Transaction markers (and aborted records) at the end are never
            // delivered: the read position passes them.
            None if past(&c, high) => return Ok(()),
            None => {}
        }
    }
}

/// Whether the consumer's only partition is read up to `high`.
fn past(c: &BaseConsumer, high: i64) -> bool {
    c.position().is_ok_and(|tpl| {
        tpl.elements()
            .first()
            .is_some_and(|e| matches!(e.offset(), Offset::Offset(at) if at >= high))
    })
}

/// Extends `map` with the copies of `sp` found on the target partition after
/// the map's end, using their provenance headers.
pub(super) fn recover_from_target(
    target: Place<'_>,
    target_topic: &str,
    source_id: &str,
    sp: &SourcePartition,
    map: &mut OffsetMap,
) -> Result<usize, Error> {
    let from = map.runs().last().map(|r| r.target_end().0).unwrap_or(0);
    let mut found = 0;
    scan(target, target_topic, sp.partition, from, |m| {
        let Some(o) = m
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == provenance::HEADER)
                    .and_then(|h| h.value)
            })
            .and_then(Origin::parse)
        else {
            return;
        };
        let ours = o.cluster == source_id && o.topic == sp.topic && o.partition == sp.partition;
        if ours
            && o.offset >= resume_point(map)
            && map
                .record(SourceOffset(o.offset), TargetOffset(m.offset()))
                .is_ok()
        {
            found += 1;
        }
    })?;
    Ok(found)
}
