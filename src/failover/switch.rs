//! The switch itself: a planned switch holds, drains and waits for
//! replication within one overall deadline; a disaster switch moves at
//! once and reports the RPO.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fleet_wait::fleet_catch_up;
use super::tracker::MAX_IDS;
use super::{SwitchState, Switchboard};
use crate::config::ClusterName;
use crate::kafka::groups::Protocol;

/// Removes a fenced member from its group on the cluster it came from, once,
/// in the background: the member rejoins on the new cluster and never comes
/// back, and without this the old group keeps it (and its partitions) until
/// its session expires, which would stall a failback.
pub fn leave_old_group(board: &Arc<Switchboard>, group: &str, member: &str, protocol: Protocol) {
    let Some(from) = board.tracker.previous_active() else {
        return;
    };
    {
        let mut inner = board.tracker.lock();
        if inner.left.len() > MAX_IDS {
            inner.left.clear();
        }
        if !inner.left.insert(member.to_string()) {
            return;
        }
    }
    let boot = board.cluster(&from);
    let (group, member) = (group.to_string(), member.to_string());
    let timeout = board.proxy_config().connect_timeout;
    let board = board.clone();
    tokio::spawn(async move {
        let mut admin = crate::kafka::groups::GroupAdmin::new(boot, timeout);
        match admin.leave(&group, &member, protocol).await {
            Ok(()) => {
                tracing::info!(%from, group, member, "fenced member removed from its group on the old cluster")
            }
            Err(e) => {
                tracing::info!(%from, group, member, error = %e, "fenced member not removed from the old cluster; retried when kflip switches back to it");
                let mut inner = board.tracker.lock();
                if inner.pending_leaves.len() < MAX_IDS {
                    inner.pending_leaves.push((from, group, member, protocol));
                }
            }
        }
    });
}

/// Removes the fenced members that `to` could not be told about when they
/// were fenced (it was down), before clients are sent back to it: a group
/// that still lists a member from before a disaster would give it
/// partitions (no tansu 0.6 group expires members), and the member never
/// comes back to fetch them.
async fn leave_pending(board: &Switchboard, to: &ClusterName) {
    let pending: Vec<(String, String, Protocol)> = {
        let mut inner = board.tracker.lock();
        let (mine, rest) = std::mem::take(&mut inner.pending_leaves)
            .into_iter()
            .partition(|(c, _, _, _)| c == to);
        inner.pending_leaves = rest;
        mine.into_iter().map(|(_, g, m, p)| (g, m, p)).collect()
    };
    if pending.is_empty() {
        return;
    }
    let timeout = board.proxy_config().connect_timeout;
    let mut admin = crate::kafka::groups::GroupAdmin::new(board.cluster(to), timeout);
    for (group, member, protocol) in pending {
        match admin.leave(&group, &member, protocol).await {
            Ok(()) => {
                tracing::info!(cluster = %to, group, member, "member fenced while this cluster was down removed from its group")
            }
            Err(e) => {
                tracing::warn!(cluster = %to, group, member, error = %e, "member fenced while this cluster was down not removed; it may hold partitions until it expires");
                admin.reset();
            }
        }
    }
}

/// Whether any broker of `cluster` accepts a TCP connection within `bound`.
async fn reachable(board: &Switchboard, cluster: &ClusterName, bound: Duration) -> bool {
    crate::cluster::connect_any(&board.cluster(cluster).bootstrap, bound)
        .await
        .is_ok()
}

/// The phases of a switch, in order. A planned switch goes through all of
/// them; a disaster switch skips from `Probe` to `Flip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Is the old cluster there? It decides planned or disaster.
    Probe,
    /// New requests are held; in-flight ones finish.
    Drain,
    /// The engine copies what the old cluster still holds, then syncs
    /// group offsets once more.
    CatchUp,
    /// The epoch moves and every connection is re-routed.
    Flip,
}

/// What a switch did, for its log line.
#[derive(Debug)]
pub struct SwitchReport {
    /// The old cluster answered.
    pub planned: bool,
    /// The phase the hold's deadline expired in, if it did.
    pub expired_in: Option<Phase>,
    /// How long clients were held.
    pub held: Duration,
}

/// What the last switch did, as `/status` and `/metrics` report it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SwitchFigures {
    /// The cluster left.
    pub from: String,
    /// The cluster clients went to.
    pub to: String,
    /// The epoch the switch published.
    pub epoch: u64,
    /// The old cluster answered (planned), or not (disaster).
    pub planned: bool,
    /// When clients moved (Unix ms).
    pub at_unix_ms: i64,
    /// How long new requests were held (0 for a disaster switch).
    pub hold_ms: u64,
    /// From the config change being seen to clients on the new cluster:
    /// the proxy's share of the RTO.
    pub duration_ms: u64,
    /// The phase the hold's deadline expired in, if it did.
    pub expired_in: Option<String>,
    /// Records the old cluster acknowledged that were not replicated when
    /// clients moved (-1: unknown, a log end could not be read).
    pub rpo_records: i64,
    /// Age of the oldest of them, in seconds.
    pub rpo_seconds: f64,
    /// Those records per partition.
    pub not_replicated: Vec<Gap>,
}

/// Records of one partition not replicated at a switch.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Gap {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Records (-1: the old cluster's log end could not be read).
    pub records: i64,
    /// Age of the oldest, in seconds.
    pub seconds: f64,
}

impl SwitchFigures {
    fn new(
        from: &ClusterName,
        to: &ClusterName,
        epoch: u64,
        report: &SwitchReport,
        took: Duration,
        gaps: &[crate::replication::state::PartitionLag],
    ) -> SwitchFigures {
        let unknown = gaps.iter().any(|g| g.records < 0);
        let rpo_records = if unknown {
            -1
        } else {
            gaps.iter().map(|g| g.records.max(0)).sum()
        };
        SwitchFigures {
            from: from.to_string(),
            to: to.to_string(),
            epoch,
            planned: report.planned,
            at_unix_ms: crate::replication::state::now_ms(),
            hold_ms: report.held.as_millis() as u64,
            duration_ms: took.as_millis() as u64,
            expired_in: report.expired_in.map(|p| format!("{p:?}")),
            rpo_records,
            rpo_seconds: gaps.iter().map(|g| g.seconds).fold(0.0, f64::max),
            not_replicated: gaps
                .iter()
                .map(|g| Gap {
                    topic: g.topic.clone(),
                    partition: g.partition,
                    records: g.records,
                    seconds: g.seconds,
                })
                .collect(),
        }
    }
}

/// Runs the switch from `previous.active` to `to`.
///
/// A planned switch holds every client from the moment the hold is
/// published until the flip, and the hold has one deadline
/// ([`Switchboard::hold_deadline`]): whatever phase is running when it
/// expires is abandoned, the gap is reported, and the flip happens.
pub async fn run(board: &Arc<Switchboard>, previous: SwitchState, to: ClusterName) -> SwitchReport {
    let cfg = board.proxy_config();
    let from = previous.active.clone();
    let started = Instant::now();
    let probe = cfg.connect_timeout.min(Duration::from_secs(1));
    let planned = reachable(board, &from, probe).await;
    let mut report = SwitchReport {
        planned,
        expired_in: None,
        held: Duration::ZERO,
    };
    let mut gaps = Vec::new();
    if planned {
        board.switch.send_replace(SwitchState {
            holding: true,
            ..previous.clone()
        });
        // Logged once the hold is in place: from this line on, no session
        // starts on the old cluster.
        let deadline = Switchboard::hold_deadline(&cfg);
        tracing::info!(%from, %to, deadline_ms = deadline.as_millis() as u64, "planned switch: holding requests");
        let phase = std::sync::Mutex::new(Phase::Drain);
        let gaps_seen = std::sync::Mutex::new(Vec::new());
        let hold = hold(board, &cfg, &from, &to, &phase, &gaps_seen);
        if tokio::time::timeout(deadline, hold).await.is_err() {
            let at = *phase.lock().unwrap_or_else(|e| e.into_inner());
            tracing::warn!(%from, %to, phase = ?at, deadline_ms = deadline.as_millis() as u64, "the switch's hold reached its deadline; switching now (records or offsets may not be replicated)");
            report.expired_in = Some(at);
        }
        report.held = started.elapsed();
        gaps = gaps_seen.into_inner().unwrap_or_else(|e| e.into_inner());
    } else {
        tracing::warn!(%from, %to, "disaster switch: the old cluster does not answer; switching at once");
        board
            .engine
            .disaster(&from, &to, board.tracker.commits_on(&from))
            .await;
    }
    leave_pending(board, &to).await;
    let next = SwitchState {
        epoch: previous.epoch + 1,
        active: to.clone(),
        holding: false,
    };
    board.tracker.switched(next.epoch, &from);
    board.switch.send_replace(next.clone());
    board.engine.set_active(&to);
    let took = started.elapsed();
    tracing::info!(%from, %to, epoch = next.epoch, planned, took_ms = took.as_millis() as u64, "switched active cluster");
    if !planned && board.engine.present() {
        gaps = report_rpo(board, &from, &to);
    }
    board.record_switch(SwitchFigures::new(
        &from, &to, next.epoch, &report, took, &gaps,
    ));
    report
}

/// The hold of a planned switch: drain, then catch-up and the offset sync,
/// each phase published in `phase` so an expired deadline can name it.
async fn hold(
    board: &Switchboard,
    cfg: &crate::config::ProxyConfig,
    from: &ClusterName,
    to: &ClusterName,
    phase: &std::sync::Mutex<Phase>,
    gaps: &std::sync::Mutex<Vec<crate::replication::state::PartitionLag>>,
) {
    let drain_until = Instant::now() + cfg.switch_drain;
    while board.in_flight() > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    *phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase::CatchUp;
    let commits = board.tracker.commits_on(from);
    // A shared flow's other partitions are copied by the fleet's engines:
    // they catch up at the same time as this process's.
    let fleet = async {
        if board.engine.shares(from, to) {
            fleet_catch_up(board, cfg, from, to, gaps).await;
            // Their checkpoints, written for this switch, translate the
            // commits held consumers send once released.
            board.engine.refresh_remote(from, to).await;
        }
    };
    let (local, ()) = tokio::join!(
        board
            .engine
            .catch_up(from, to, cfg.switch_lag_timeout, commits),
        fleet
    );
    let Some(caught) = local else {
        if !fleet_catch_up(board, cfg, from, to, gaps).await {
            tracing::warn!(%from, %to, "no replication engine in this process or its fleet with a flow between them: not waiting for replication; consumers resume at offsets the engine synced");
        }
        return;
    };
    if caught.caught_up {
        tracing::info!(%from, %to, flows = ?caught.flows, waited_ms = caught.waited.as_millis() as u64, "replication caught up; group offsets synced");
        return;
    }
    gaps.lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(caught.gaps.iter().cloned());
    for g in &caught.gaps {
        if g.records < 0 {
            tracing::warn!(topic = %g.topic, partition = g.partition, replicated_to = g.replicated_to, "switching without knowing whether records are not replicated: the old cluster's log end could not be read (proxy.switch_lag_timeout expired)");
        } else {
            tracing::warn!(topic = %g.topic, partition = g.partition, records = g.records, replicated_to = g.replicated_to, source_end = g.source_end, "switching with records not replicated (proxy.switch_lag_timeout expired)");
        }
    }
}

/// Logs, per partition, what the old cluster acknowledged that the flows to
/// the new one had not copied: the engine's view (records it read), raised
/// to the log ends this proxy saw acknowledged to producers, which can be
/// newer than anything the engine read.
fn report_rpo(
    board: &Switchboard,
    from: &ClusterName,
    to: &ClusterName,
) -> Vec<crate::replication::state::PartitionLag> {
    let mut lag: BTreeMap<(String, i32), crate::replication::state::PartitionLag> = board
        .engine
        .rpo(from, to)
        .into_iter()
        .map(|p| ((p.topic.clone(), p.partition), p))
        .collect();
    let now = crate::replication::state::now_ms();
    let acked = board.tracker.acked_past(from, |t, p| {
        lag.get(&(t.to_string(), p)).map(|l| l.replicated_to)
    });
    for (topic, partition, end, since) in acked {
        if let Some(l) = lag.get_mut(&(topic, partition)) {
            l.source_end = l.source_end.max(end);
            l.records = l.records.max(end - l.replicated_to);
            if let Some(at) = since {
                l.seconds = l.seconds.max((now - at).max(0) as f64 / 1000.0);
            }
        }
    }
    let lost: Vec<_> = lag.into_values().filter(|p| p.records > 0).collect();
    if lost.is_empty() {
        tracing::info!(%from, %to, "RPO: every record the old cluster acknowledged through this proxy, and every record the engine read, was replicated");
    }
    for p in &lost {
        tracing::warn!(topic = %p.topic, partition = p.partition, records = p.records, seconds = p.seconds, replicated_to = p.replicated_to, source_end = p.source_end, "RPO: not replicated before the old cluster went away");
    }
    lost
}

/// Feeds commits the proxy observed to the engine, coalesced per group.
pub async fn feed_engine(board: Arc<Switchboard>) {
    if !board.engine.present() {
        return;
    }
    loop {
        tokio::select! {
            _ = board.shutdown.cancelled() => return,
            _ = board.tracker.commits_changed.notified() => {}
        }
        // Coalesce a burst of commits into one push per group.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (cluster, group, offsets) in board.tracker.take_dirty() {
            board.engine.observe_commit(&cluster, &group, offsets).await;
        }
    }
}
