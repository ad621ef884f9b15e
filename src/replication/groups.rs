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
//!
//! Each pass works on all of its groups at once (a planned switch's hold
//! waits for the last one): one FindCoordinator, one DescribeGroups and
//! one OffsetFetch per coordinator and 100 groups, and the OffsetCommits
//! pipelined, instead of several round trips per group.

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
use crate::kafka::groups::{GroupAdmin, Offsets, PerGroup};
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

/// Groups that failed on their own in a batch, each with its error; the
/// rest of the batch went ahead.
pub type GroupErrors = Vec<(String, Error)>;

/// Translates and commits the source offsets of many groups, in batches
/// (see [`crate::kafka::groups::PerGroup`]). Per group as before: a group
/// with active members on the target is skipped, and only translated
/// offsets ahead of the target's are committed. A failure of one group is
/// in the returned list; `Err` is a failure of the whole batch.
async fn commit_translated(
    st: &FlowState,
    reverse: Option<&FlowState>,
    tgt: &mut GroupAdmin,
    source: &BTreeMap<String, Offsets>,
    report: &mut SyncReport,
) -> Result<GroupErrors, Error> {
    let mut failed = GroupErrors::new();
    let names: Vec<String> = source.keys().cloned().collect();
    if names.is_empty() {
        return Ok(failed);
    }
    // The broker fences a commit from outside a group that has members
    // (UNKNOWN_MEMBER_ID); describing first makes the skip explicit and
    // avoids the error.
    let described = match tgt.describe_many(&names).await {
        Ok(d) => d,
        Err(e) => {
            compat::describe_failed(&st.cfg.id, "(all groups)", &e);
            tgt.reset();
            PerGroup::new()
        }
    };
    let mut idle = Vec::with_capacity(names.len());
    for g in names {
        match described.get(&g) {
            Some(Ok((state, members))) if !compat::group_is_idle(state, *members) => {
                report.active_on_target.push(g);
            }
            Some(Err(e)) => {
                compat::describe_failed(&st.cfg.id, &g, e);
                idle.push(g);
            }
            _ => idle.push(g),
        }
    }
    if idle.is_empty() {
        return Ok(failed);
    }
    let targets: BTreeMap<String, i32> = source_topics(st)
        .into_iter()
        .map(|(t, n)| (st.cfg.target_topic(&t), n))
        .collect();
    let n = idle.len();
    let current = tgt.committed_many(&idle, &targets).await.map_err(|e| {
        group_err(
            st,
            Side::Target,
            format!("committed offsets of {n} groups"),
            e,
        )
    })?;
    let mut todo = BTreeMap::new();
    for (g, cur) in current {
        match cur {
            Ok(cur) => {
                let plan = plan(st, reverse, &source[&g], &cur);
                if !plan.is_empty() {
                    todo.insert(g, plan);
                }
            }
            Err(e) => {
                let op = format!("committed offsets of group {g}");
                failed.push((g, group_err(st, Side::Target, op, e)));
            }
        }
    }
    if todo.is_empty() {
        return Ok(failed);
    }
    let n = todo.len();
    let done = tgt
        .commit_many(&todo)
        .await
        .map_err(|e| group_err(st, Side::Target, format!("commit {n} groups"), e))?;
    for (g, r) in done {
        match r {
            Ok(()) => {
                tracing::debug!(flow = %st.cfg.id, group = %g, offsets = ?todo.get(&g), "translated group offsets committed on the target");
                report.committed.push(g);
            }
            Err(e) => {
                let op = format!("commit group {g}");
                failed.push((g, group_err(st, Side::Target, op, e)));
            }
        }
    }
    Ok(failed)
}

/// One pass over every group of the flow: the source's committed offsets
/// of all of them read in batches, then [`commit_translated`]. Groups that
/// failed on their own are logged and retried on the next pass.
pub async fn sync_once(
    st: &FlowState,
    reverse: Option<&FlowState>,
    src: &mut GroupAdmin,
    tgt: &mut GroupAdmin,
) -> Result<SyncReport, Error> {
    let mut report = SyncReport::default();
    let groups: Vec<String> = src
        .list_groups()
        .await
        .map_err(|e| group_err(st, Side::Source, "list groups".into(), e))?
        .into_iter()
        .filter(|g| !g.starts_with("_kflip") && st.cfg.wants_group(g))
        .collect();
    let mut failed = GroupErrors::new();
    let mut source = BTreeMap::new();
    if !groups.is_empty() {
        let n = groups.len();
        let mine = src
            .committed_many(&groups, &source_topics(st))
            .await
            .map_err(|e| {
                group_err(
                    st,
                    Side::Source,
                    format!("committed offsets of {n} groups"),
                    e,
                )
            })?;
        for (g, r) in mine {
            match r {
                Ok(offsets) if offsets.is_empty() => {}
                Ok(offsets) => {
                    source.insert(g, offsets);
                }
                Err(e) => {
                    let op = format!("committed offsets of group {g}");
                    failed.push((g, group_err(st, Side::Source, op, e)));
                }
            }
        }
    }
    failed.extend(commit_translated(st, reverse, tgt, &source, &mut report).await?);
    if !failed.is_empty() {
        src.reset();
        tgt.reset();
    }
    for (g, e) in &failed {
        tracing::warn!(flow = %st.cfg.id, group = %g, error = %e, "group offset sync failed");
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
    offsets: &Offsets,
) -> Result<(), Error> {
    let one = BTreeMap::from([(group.to_string(), offsets.clone())]);
    match push_commits(st, reverse, tgt, &one).await?.pop() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Translates and commits observed source commits (by group) at once, in
/// batches; returns the groups that failed on their own.
pub async fn push_commits(
    st: &FlowState,
    reverse: Option<&FlowState>,
    tgt: &mut GroupAdmin,
    commits: &BTreeMap<String, Offsets>,
) -> Result<GroupErrors, Error> {
    let wanted: BTreeMap<String, Offsets> = commits
        .iter()
        .filter(|(g, _)| st.cfg.wants_group(g))
        .map(|(g, o)| (g.clone(), o.clone()))
        .collect();
    let mut report = SyncReport::default();
    let failed = commit_translated(st, reverse, tgt, &wanted, &mut report).await?;
    if !failed.is_empty() {
        tgt.reset();
    }
    Ok(failed)
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
