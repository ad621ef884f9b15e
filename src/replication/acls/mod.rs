//! ACLs and SCRAM users on the standby: a flow with `acls: true` (or
//! `users:`) keeps them on its target every `config_sync_interval`.
//!
//! Layout: [`plan`] decides (pure: which ACLs are the flow's, their names
//! on the target, what to create, delete or report); `users` sets SCRAM
//! credentials; this file runs the passes, applies a plan in the order that
//! never widens access, and keeps the [`AclReport`] `/status` shows.
//! Differences left alone are logged once each (warn), when they appear.
//! Principals are taken to be the same on both clusters (`User:alice`).

pub mod plan;
mod users;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::flow::FlowClusters;
use super::Registry;
use crate::config::{ClusterName, FlowConfig};
use crate::kafka::acls::{code, Acl, AclAdmin, AdminError};
use plan::Finding;

/// What the ACL and user sync of a flow did, for `/status`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AclReport {
    /// Passes completed.
    pub passes: u64,
    /// The flow's source ACLs found on the target at the last pass.
    pub synced: usize,
    /// ACLs created on the target since the flow started.
    pub created: u64,
    /// Target ALLOWs deleted since the flow started.
    pub deleted: u64,
    /// SCRAM credentials found current on the target at the last pass.
    pub users_synced: usize,
    /// SCRAM credentials set on the target since the flow started.
    pub users_upserted: u64,
    /// Differences the last pass left alone, and why.
    pub unfixable: Vec<Finding>,
    /// Why the last pass failed, if it did.
    pub error: Option<String>,
}

/// The report, shared between the sync task and status.
pub type SharedReport = Arc<Mutex<AclReport>>;

/// Why a pass failed. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A request to one of the flow's clusters failed.
    #[error("{side} cluster {cluster}: {source}")]
    Cluster {
        /// `source` or `target`.
        side: &'static str,
        /// Its name.
        cluster: String,
        /// What failed.
        source: AdminError,
    },
    /// No random salt could be made.
    #[error("no random bytes for a SCRAM salt: {0}")]
    Random(crate::auth::AuthError),
}

impl SyncError {
    fn on(side: &'static str, cluster: &ClusterName, e: impl Into<AdminError>) -> SyncError {
        SyncError::Cluster {
            side,
            cluster: cluster.to_string(),
            source: e.into(),
        }
    }
}

/// A refusal for lack of rights (or of an authorizer) becomes a finding;
/// anything else fails the pass.
fn refusal(
    side: &'static str,
    cluster: &ClusterName,
    what: &str,
    need: &str,
    e: AdminError,
) -> Result<Finding, SyncError> {
    let reason = match e.code() {
        Some(code::CLUSTER_AUTHORIZATION_FAILED) => {
            format!("CLUSTER_AUTHORIZATION_FAILED: the engine's principal needs {need} ({e})")
        }
        Some(54) => format!("SECURITY_DISABLED: the cluster has no authorizer ({e})"),
        _ => return Err(SyncError::on(side, cluster, e)),
    };
    Ok(Finding {
        what: format!("{what} on {side} {cluster}"),
        reason,
    })
}

/// What one pass found and did.
#[derive(Default)]
struct Pass {
    synced: usize,
    created: u64,
    deleted: u64,
    users_synced: usize,
    users_upserted: u64,
    unfixable: Vec<Finding>,
}

/// Starts the sync of `cfg` if it asks for one; its report.
pub(super) fn spawn(
    rt: &tokio::runtime::Handle,
    cfg: &FlowConfig,
    clusters: &FlowClusters,
    state_topic: String,
    flows: Registry,
    stop: CancellationToken,
) -> Option<SharedReport> {
    if !cfg.acls && cfg.users.is_empty() {
        return None;
    }
    let report = SharedReport::default();
    let task = Task {
        cfg: cfg.clone(),
        clusters: clusters.clone(),
        state_topic,
        flows,
    };
    rt.spawn(sync_loop(task, report.clone(), stop));
    Some(report)
}

/// What a flow's sync works on.
struct Task {
    /// The flow.
    cfg: FlowConfig,
    /// How to reach its clusters.
    clusters: FlowClusters,
    /// The engine's state topic (never the flow's).
    state_topic: String,
    /// Which cluster clients are on, if a proxy runs beside the engine.
    flows: Registry,
}

async fn sync_loop(task: Task, report: SharedReport, stop: CancellationToken) {
    let cfg = &task.cfg;
    let mut users = match users::Users::new() {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(flow = %cfg.id, error = %e, "ACL and user sync not started");
            return;
        }
    };
    let mut warned: BTreeSet<Finding> = BTreeSet::new();
    let mut last_error: Option<String> = None;
    loop {
        let mut p = Pass::default();
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = pass(&task, &mut users, &mut p) => r,
        };
        p.unfixable.sort();
        p.unfixable.dedup();
        for f in p.unfixable.iter().filter(|f| !warned.contains(*f)) {
            tracing::warn!(flow = %cfg.id, what = %f.what, reason = %f.reason, "ACL or user difference not fixed on the target");
        }
        // A failed pass found only part of the differences: what it did
        // not reach is neither forgotten nor warned again.
        let failed = result.is_err();
        if failed {
            warned.extend(p.unfixable.iter().cloned());
        } else {
            warned = p.unfixable.iter().cloned().collect();
        }
        let error = result.err().map(|e| e.to_string());
        if error.is_some() && error != last_error {
            tracing::warn!(flow = %cfg.id, error = error.as_deref().unwrap_or_default(), "ACL and user sync failed; retried every config_sync_interval");
        }
        last_error = error.clone();
        {
            let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
            r.passes += 1;
            r.created += p.created;
            r.deleted += p.deleted;
            r.users_upserted += p.users_upserted;
            if !failed {
                r.synced = p.synced;
                r.users_synced = p.users_synced;
                r.unfixable = p.unfixable;
            }
            r.error = error;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.config_sync_interval) => {}
        }
    }
}

/// The engine's own principal on `cluster`, whose ACLs the sync leaves.
fn own_principal(cluster: &crate::config::ClusterConfig) -> Vec<String> {
    cluster
        .sasl
        .as_ref()
        .and_then(|c| c.user.as_ref())
        .map(|(name, _)| vec![format!("User:{name}")])
        .unwrap_or_default()
}

async fn pass(task: &Task, users: &mut users::Users, p: &mut Pass) -> Result<(), SyncError> {
    let (cfg, clusters) = (&task.cfg, &task.clusters);
    let timeout = Duration::from_secs(10);
    let mut src = AclAdmin::connect(&clusters.source, timeout)
        .await
        .map_err(|e| SyncError::on("source", &cfg.source, e))?;
    let mut tgt = AclAdmin::connect(&clusters.target, timeout)
        .await
        .map_err(|e| SyncError::on("target", &cfg.target, e))?;
    let mut principals = BTreeSet::new();
    if cfg.acls {
        let need = "DESCRIBE on the cluster";
        let source = match src.describe_acls().await {
            Ok(a) => Some(a),
            Err(e) => {
                p.unfixable
                    .push(refusal("source", &cfg.source, "ACLs", need, e)?);
                None
            }
        };
        let target = match tgt.describe_acls().await {
            Ok(a) => Some(a),
            Err(e) => {
                p.unfixable
                    .push(refusal("target", &cfg.target, "ACLs", need, e)?);
                None
            }
        };
        if let (Some(source), Some(target)) = (source, target) {
            let keep = own_principal(&clusters.target);
            let plan = plan::plan(cfg, &task.state_topic, &source, &target, &keep);
            tracing::debug!(flow = %cfg.id, source = source.len(), target = target.len(), synced = plan.synced, create_deny = plan.create_deny.len(), create_allow = plan.create_allow.len(), delete_allow = plan.delete_allow.len(), "ACL pass planned");
            principals = plan.principals.clone();
            let target_active = task.flows.active().as_deref() == Some(cfg.target.as_str());
            apply(cfg, &mut tgt, plan, target_active, p).await?;
        }
    }
    users.sync(cfg, &principals, &mut src, &mut tgt, p).await
}

/// Creates DENYs, then deletes ALLOWs the source lacks, then creates
/// ALLOWs, and only if every DENY is in place. On a target clients are
/// active on (a co-located proxy switched to it), ALLOWs are not deleted:
/// that cluster is in use, and its ALLOWs may be newer than the source's.
async fn apply(
    cfg: &FlowConfig,
    tgt: &mut AclAdmin,
    mut plan: plan::Plan,
    target_active: bool,
    p: &mut Pass,
) -> Result<(), SyncError> {
    p.synced = plan.synced;
    p.unfixable.extend(plan.unfixable);
    let denies_in = create(cfg, tgt, &plan.create_deny, p).await?;
    if target_active {
        p.unfixable
            .extend(plan.delete_allow.drain(..).map(|a| Finding {
                what: a.to_string(),
                reason: "the source no longer has it, but clients are active on the target: not deleted there".into(),
            }));
    }
    if !plan.delete_allow.is_empty() {
        let results = tgt
            .delete_acls(&plan.delete_allow)
            .await
            .map_err(|e| SyncError::on("target", &cfg.target, e))?;
        for (a, r) in plan.delete_allow.iter().zip(results) {
            match r {
                Ok(n) => {
                    tracing::info!(flow = %cfg.id, acl = %a, "ACL deleted on the target: the source no longer has it");
                    p.deleted += n as u64;
                }
                Err(e) => p.unfixable.push(Finding {
                    what: a.to_string(),
                    reason: format!("the source no longer has it; DeleteAcls refused: {e}"),
                }),
            }
        }
    }
    if denies_in {
        create(cfg, tgt, &plan.create_allow, p).await?;
    } else {
        p.unfixable
            .extend(plan.create_allow.iter().map(|a| Finding {
                what: a.to_string(),
                reason: "not created: a DENY before it could not be".into(),
            }));
    }
    Ok(())
}

/// Creates `acls`; whether all of them were.
async fn create(
    cfg: &FlowConfig,
    tgt: &mut AclAdmin,
    acls: &[Acl],
    p: &mut Pass,
) -> Result<bool, SyncError> {
    if acls.is_empty() {
        return Ok(true);
    }
    let results = tgt
        .create_acls(acls)
        .await
        .map_err(|e| SyncError::on("target", &cfg.target, e))?;
    let mut all = results.len() == acls.len();
    for (a, r) in acls.iter().zip(results) {
        match r {
            Ok(()) => {
                tracing::info!(flow = %cfg.id, acl = %a, "ACL created on the target");
                p.created += 1;
            }
            Err(e) => {
                all = false;
                p.unfixable.push(Finding {
                    what: a.to_string(),
                    reason: format!("CreateAcls refused: {e}"),
                });
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::acls::Refusal;

    fn refused(code: i16) -> AdminError {
        AdminError::Refused {
            request: "DescribeAcls",
            addr: "h:1".into(),
            refusal: Refusal {
                code,
                message: None,
            },
        }
    }

    #[test]
    fn missing_rights_are_findings_that_name_the_right_and_the_rest_fails_the_pass() {
        let dc2 = ClusterName::from("dc2");
        let f = refusal("target", &dc2, "ACLs", "ALTER on the cluster", refused(31))
            .expect("a finding");
        assert_eq!(f.what, "ACLs on target dc2");
        assert!(f.reason.starts_with("CLUSTER_AUTHORIZATION_FAILED"));
        assert!(f.reason.contains("ALTER on the cluster"), "{}", f.reason);
        let f = refusal("source", &dc2, "ACLs", "x", refused(54)).expect("a finding");
        assert!(f.reason.contains("no authorizer"), "{}", f.reason);
        let e = refusal("source", &dc2, "ACLs", "x", refused(7)).expect_err("fails");
        assert!(e.to_string().contains("source cluster dc2"), "{e}");
    }
}
