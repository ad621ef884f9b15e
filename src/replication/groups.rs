//! Group offset translation: source commits, translated through the offset
//! maps, committed on the target.
//!
//! Every `group_sync_interval` the committed offsets of the flow's groups
//! are read on the source, translated, and committed on the target, but only
//! for groups with no active members there (the target group is Empty or
//! Dead: kflip never moves a running consumer), and only forwards: a
//! translated offset at or below what the target group already has is left
//! alone. [`push_commit`] does the same for one commit at once; the proxy
//! feeds it the commits it sees, so translation is not limited to polling.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::compat;
use super::error::{Error, Side};
use super::flow::FlowClusters;
use super::state::FlowState;
use super::{Registry, Slot};
use crate::config::ClusterConfig;
use crate::kafka::groups::{GroupAdmin, Offsets};
use crate::kafka::ClientError;

/// A failed group request to the flow's `side` (source or target).
fn group_err(st: &FlowState, side: Side, op: String, e: ClientError) -> Error {
    let cluster = match side {
        Side::Source => st.cfg.source.as_str(),
        _ => st.cfg.target.as_str(),
    };
    Error::cluster(side, cluster, op, e)
}

/// kflip's own group client for `cluster`: the one place the engine makes
/// one, so a cluster's connection settings reach every group request.
pub(super) fn group_admin(cluster: &ClusterConfig, timeout: Duration) -> GroupAdmin {
    GroupAdmin::new(cluster.clone(), timeout)
}

/// What one sync pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncReport {
    /// Groups whose offsets moved forward on the target.
    pub committed: Vec<String>,
    /// Groups skipped because they have active members on the target.
    pub active_on_target: Vec<String>,
    /// When the pass finished.
    pub at: Option<Instant>,
}

/// Translates a group's source offsets into target offsets to commit:
/// only replicated topics, only translatable partitions, only forwards.
/// With `reverse` (the flow back from the target), the target's own records
/// count too (see [`FlowState::translate`]).
pub fn plan(
    st: &FlowState,
    reverse: Option<&FlowState>,
    source: &Offsets,
    target: &Offsets,
) -> Offsets {
    let mut out = Offsets::new();
    for ((topic, partition), &offset) in source {
        let Some(t) = st.translate(reverse, topic, *partition, offset) else {
            continue;
        };
        let key = (st.cfg.target_topic(topic), *partition);
        if target.get(&key).is_none_or(|&cur| t > cur) {
            out.insert(key, t);
        }
    }
    out
}

/// The source topics the flow copies, with their partition counts.
fn source_topics(st: &FlowState) -> BTreeMap<String, i32> {
    let mut out = BTreeMap::new();
    for k in st.lock().keys() {
        let n = out.entry(k.topic.clone()).or_insert(0);
        *n = (*n).max(k.partition + 1);
    }
    out
}

/// Translates and commits one group; returns whether anything was committed.
async fn sync_group(
    st: &FlowState,
    reverse: Option<&FlowState>,
    src: &mut GroupAdmin,
    tgt: &mut GroupAdmin,
    group: &str,
    report: &mut SyncReport,
) -> Result<(), Error> {
    let mine = src
        .committed(group, &source_topics(st))
        .await
        .map_err(|e| {
            group_err(
                st,
                Side::Source,
                format!("committed offsets of group {group}"),
                e,
            )
        })?;
    if mine.is_empty() {
        return Ok(());
    }
    commit_translated(st, reverse, tgt, group, &mine, report).await
}

async fn commit_translated(
    st: &FlowState,
    reverse: Option<&FlowState>,
    tgt: &mut GroupAdmin,
    group: &str,
    source: &Offsets,
    report: &mut SyncReport,
) -> Result<(), Error> {
    // The broker fences a commit from outside a group that has members
    // (UNKNOWN_MEMBER_ID); describing first makes the skip explicit and
    // avoids the error.
    match tgt.describe(group).await {
        Ok((state, members)) if !compat::group_is_idle(&state, members) => {
            report.active_on_target.push(group.to_string());
            return Ok(());
        }
        Ok(_) => {}
        Err(e) => {
            compat::describe_failed(&st.cfg.id, group, &e);
            tgt.reset();
        }
    }
    let targets: BTreeMap<String, i32> = source_topics(st)
        .into_iter()
        .map(|(t, n)| (st.cfg.target_topic(&t), n))
        .collect();
    let current = tgt.committed(group, &targets).await.map_err(|e| {
        group_err(
            st,
            Side::Target,
            format!("committed offsets of group {group}"),
            e,
        )
    })?;
    let todo = plan(st, reverse, source, &current);
    if todo.is_empty() {
        return Ok(());
    }
    tgt.commit(group, &todo)
        .await
        .map_err(|e| group_err(st, Side::Target, format!("commit group {group}"), e))?;
    tracing::debug!(flow = %st.cfg.id, group, offsets = ?todo, "translated group offsets committed on the target");
    report.committed.push(group.to_string());
    Ok(())
}

/// One pass over every group of the flow.
pub async fn sync_once(
    st: &FlowState,
    reverse: Option<&FlowState>,
    src: &mut GroupAdmin,
    tgt: &mut GroupAdmin,
) -> Result<SyncReport, Error> {
    let mut report = SyncReport::default();
    let groups = src
        .list_groups()
        .await
        .map_err(|e| group_err(st, Side::Source, "list groups".into(), e))?;
    for g in groups
        .iter()
        .filter(|g| !g.starts_with("_kflip") && st.cfg.wants_group(g))
    {
        if let Err(e) = sync_group(st, reverse, src, tgt, g, &mut report).await {
            tracing::warn!(flow = %st.cfg.id, group = %g, error = %e, "group offset sync failed");
            src.reset();
            tgt.reset();
        }
    }
    report.at = Some(Instant::now());
    Ok(report)
}

/// Translates and commits one observed source commit right away.
pub async fn push_commit(
    st: &FlowState,
    reverse: Option<&FlowState>,
    tgt: &mut GroupAdmin,
    group: &str,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<(), Error> {
    if !st.cfg.wants_group(group) {
        return Ok(());
    }
    let mut report = SyncReport::default();
    commit_translated(st, reverse, tgt, group, offsets, &mut report).await
}

/// Runs [`sync_once`] every `group_sync_interval` until `stop`.
pub async fn sync_loop(
    slot: Slot,
    flows: Registry,
    clusters: FlowClusters,
    last: Arc<std::sync::Mutex<SyncReport>>,
    stop: CancellationToken,
) {
    let timeout = Duration::from_secs(10);
    let mut src = group_admin(&clusters.source, timeout);
    let mut tgt = group_admin(&clusters.target, timeout);
    loop {
        let st = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let interval = st
            .as_ref()
            .map(|s| s.cfg.group_sync_interval)
            .unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let Some(st) = st else { continue };
        if flows.active().as_deref() == Some(st.cfg.target.as_str()) {
            // Clients are on the target: its groups are theirs.
            last.lock().unwrap_or_else(|e| e.into_inner()).at = Some(Instant::now());
            continue;
        }
        let reverse = flows.reverse_of(&st);
        match sync_once(&st, reverse.as_deref(), &mut src, &mut tgt).await {
            Ok(r) => *last.lock().unwrap_or_else(|e| e.into_inner()) = r,
            Err(e) => {
                tracing::warn!(flow = %st.cfg.id, error = %e, "group offset sync failed");
                src.reset();
                tgt.reset();
            }
        }
    }
}
