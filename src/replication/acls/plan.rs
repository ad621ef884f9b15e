//! Which ACLs a flow keeps on its target, and what one pass changes: pure,
//! no I/O.
//!
//! A source ACL is the flow's when its resource is one of the flow's topics
//! (a literal name the flow copies, or a PREFIXED pattern whose prefix
//! itself matches the flow's topic patterns, like `orders.` for
//! `orders\..*`) or groups (the same, against `groups`). Topic names go
//! through `rename`; a prefix maps only when `rename` adds nothing after
//! `{topic}`, so the renamed prefix still covers exactly the renamed topics.
//! A literal `*` maps only when nothing is renamed (groups never are) and
//! is only ever created, never deleted: on the target it also covers what
//! the flow does not own.
//!
//! Nothing is widened: missing DENYs are created before missing ALLOWs; a
//! target ALLOW on the flow's resources that the source lacks is deleted
//! (that narrows); a target DENY the source lacks is reported, never
//! deleted. ACLs of the engine's own target principal are left alone, so
//! the sync cannot take away the engine's access.

use std::collections::BTreeSet;

use crate::config::FlowConfig;
use crate::kafka::acls::{code, resource_type_name, Acl};

/// A difference the sync will not fix, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Finding {
    /// The ACL, user or request concerned.
    pub what: String,
    /// Why it is left as it is.
    pub reason: String,
}

/// What one pass does to the target.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Source ACLs of the flow already on the target.
    pub synced: usize,
    /// DENYs to create, first.
    pub create_deny: Vec<Acl>,
    /// Target ALLOWs on the flow's resources that the source lacks.
    pub delete_allow: Vec<Acl>,
    /// ALLOWs to create, last, once every DENY is in place.
    pub create_allow: Vec<Acl>,
    /// Differences left alone.
    pub unfixable: Vec<Finding>,
    /// Principals of the flow's source ACLs (their SCRAM users are checked).
    pub principals: BTreeSet<String>,
}

/// Where a source ACL goes.
#[derive(Debug, PartialEq)]
enum Mapped {
    /// To this target ACL.
    To(Acl),
    /// Nowhere: not the flow's resource.
    NotOurs,
    /// The flow's, but it cannot be carried over.
    Cannot(String),
}

/// `rename` as the text before and after `{topic}`.
fn rename_parts(cfg: &FlowConfig) -> (&str, &str) {
    cfg.rename.split_once("{topic}").unwrap_or(("", ""))
}

fn map_source(cfg: &FlowConfig, state_topic: &str, a: &Acl) -> Mapped {
    let (before, after) = rename_parts(cfg);
    let renamed = |name: String| Mapped::To(Acl { name, ..a.clone() });
    match (a.resource_type, a.pattern) {
        (code::TOPIC, code::LITERAL) if a.name == "*" => {
            if before.is_empty() && after.is_empty() {
                renamed(a.name.clone())
            } else {
                Mapped::Cannot(format!(
                    "a wildcard topic ACL maps only without rename (rename is {:?})",
                    cfg.rename
                ))
            }
        }
        (code::TOPIC, code::LITERAL) if cfg.wants_topic(&a.name, state_topic) => {
            renamed(cfg.target_topic(&a.name))
        }
        (code::TOPIC, code::PREFIXED) if cfg.wants_topic(&a.name, state_topic) => {
            if after.is_empty() {
                renamed(format!("{before}{}", a.name))
            } else {
                Mapped::Cannot(format!(
                    "rename {:?} puts text after the name, so the prefix would not stay a prefix",
                    cfg.rename
                ))
            }
        }
        (code::GROUP, code::LITERAL) if a.name == "*" => renamed(a.name.clone()),
        (code::GROUP, code::LITERAL | code::PREFIXED) if wants_group(cfg, &a.name) => {
            renamed(a.name.clone())
        }
        (code::TOPIC | code::GROUP, _) => Mapped::NotOurs,
        (t, _) => Mapped::Cannot(format!(
            "{} ACLs are not synced: they reach beyond the flow's topics and groups",
            resource_type_name(t)
        )),
    }
}

fn wants_group(cfg: &FlowConfig, group: &str) -> bool {
    !group.starts_with("_kflip") && cfg.wants_group(group)
}

/// Whether a target ACL is on a resource the flow owns (so one the source
/// lacks is the flow's to remove or report). Wildcards are never owned.
fn owned_on_target(cfg: &FlowConfig, state_topic: &str, a: &Acl) -> bool {
    if a.name == "*" && a.pattern == code::LITERAL {
        return false;
    }
    let (before, after) = rename_parts(cfg);
    match (a.resource_type, a.pattern) {
        (code::TOPIC, code::LITERAL) => cfg
            .source_topic(&a.name)
            .is_some_and(|t| cfg.wants_topic(&t, state_topic)),
        (code::TOPIC, code::PREFIXED) => {
            after.is_empty()
                && a.name
                    .strip_prefix(before)
                    .is_some_and(|p| !p.is_empty() && cfg.wants_topic(p, state_topic))
        }
        (code::GROUP, code::LITERAL | code::PREFIXED) => wants_group(cfg, &a.name),
        _ => false,
    }
}

/// Compares the source's and the target's ACLs for `cfg`. `keep` are
/// principals whose target ACLs are never touched (the engine's own).
pub fn plan(
    cfg: &FlowConfig,
    state_topic: &str,
    source: &[Acl],
    target: &[Acl],
    keep: &[String],
) -> Plan {
    let on_target: BTreeSet<&Acl> = target.iter().collect();
    let mut wanted: BTreeSet<Acl> = BTreeSet::new();
    let mut p = Plan::default();
    for a in source {
        match map_source(cfg, state_topic, a) {
            Mapped::To(t) => {
                p.principals.insert(a.principal.clone());
                wanted.insert(t);
            }
            Mapped::NotOurs => {}
            Mapped::Cannot(reason) if !on_target.contains(a) => p.unfixable.push(Finding {
                what: a.to_string(),
                reason,
            }),
            Mapped::Cannot(_) => {}
        }
    }
    for t in &wanted {
        if on_target.contains(t) {
            p.synced += 1;
        } else if t.is_deny() {
            p.create_deny.push(t.clone());
        } else {
            p.create_allow.push(t.clone());
        }
    }
    for t in target {
        if wanted.contains(t)
            || keep.contains(&t.principal)
            || !owned_on_target(cfg, state_topic, t)
        {
            continue;
        }
        if t.is_deny() {
            p.unfixable.push(Finding {
                what: t.to_string(),
                reason: "a DENY on the target that the source does not have: never deleted".into(),
            });
        } else if t.permission == code::ALLOW {
            p.delete_allow.push(t.clone());
        }
    }
    p.unfixable.sort();
    p.unfixable.dedup();
    p
}

#[cfg(test)]
mod tests;
