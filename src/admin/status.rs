//! `/status`: one JSON document with what an operator needs at 3 a.m.

use serde_json::{json, Value};

use super::Sources;

/// The status document. Its shape is documented in docs/operations.md and
/// read by `kflip status`.
pub(super) fn status(s: &Sources) -> Value {
    let cfg = s.config.borrow().clone();
    let probes = s.probes.snapshot();
    let clusters: serde_json::Map<String, Value> = cfg
        .clusters
        .keys()
        .map(|name| {
            let probe = probes.get(name);
            (
                name.to_string(),
                json!({
                    "reachable": probe.map(|p| p.up),
                    "error": probe.and_then(|p| p.error.clone()),
                    "checked_at_unix_ms": probe.map(|p| p.at_unix_ms),
                    "probe_ms": probe.map(|p| p.took_ms),
                }),
            )
        })
        .collect();
    let last_error = s
        .reload
        .last_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let ready = s.readiness();
    let mut out = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "roles": {
            "proxy": s.proxy.is_some(),
            "engine": s.engine.is_some(),
        },
        "uptime_seconds": s.started.elapsed().as_secs(),
        "ready": ready.is_ok(),
        "not_ready_because": ready.err(),
        "config": {
            "path": s.config_path.display().to_string(),
            "reloads": s.reload.reloads.load(std::sync::atomic::Ordering::Relaxed),
            "rejected": s.reload.rejected.load(std::sync::atomic::Ordering::Relaxed),
            "last_error": last_error,
        },
        "clusters": clusters,
    });
    if let Some(p) = &s.proxy {
        let state = p.switch_state();
        let switches = p.board().switches();
        out["proxy"] = json!({
            "active": state.active.as_str(),
            "epoch": state.epoch,
            "holding": state.holding,
            "connections": p.connections(),
            "in_flight": p.board().in_flight(),
            "listen": p.bootstrap.to_string(),
            "switches": { "planned": switches.planned, "disaster": switches.disaster },
            "last_switch": switches.last,
        });
    }
    if s.proxy.is_some() {
        out["clients"] = super::clients::clients(s)["clients"].take();
    }
    let me = super::fleet::current(s);
    let members = s.fleet.members();
    let disagree = super::fleet::disagreements(&members, &me);
    out["fleet"] = json!({
        "instance": s.instance,
        "members": members.iter().map(|m| {
            let mut v = json!(m);
            v["age_seconds"] = json!(super::fleet::age(&m.beacon).as_secs_f64());
            v["stale"] = json!(super::fleet::age(&m.beacon) >= super::fleet::STALE_AFTER);
            v
        }).collect::<Vec<_>>(),
        "behind_fleet": s.proxy.as_ref().and_then(|p| p.board().fleet_elsewhere()).map(|c| c.to_string()),
        "disagree": disagree.iter().map(|m| json!({
            "instance": m.beacon.instance,
            "active": m.beacon.active,
        })).collect::<Vec<_>>(),
    });
    if let Some(engine) = &s.engine {
        let flows: Vec<Value> = engine
            .lag()
            .into_iter()
            .map(|l| {
                let records: i64 = l.partitions.iter().map(|p| p.records.max(0)).sum();
                let seconds = l.partitions.iter().map(|p| p.seconds).fold(0.0, f64::max);
                let mut worst = l.partitions.clone();
                worst.sort_by_key(|p| std::cmp::Reverse(p.records));
                worst.truncate(10);
                json!({
                    "flow": l.flow,
                    "partitions": l.partitions.len(),
                    "lag_records": records,
                    "lag_seconds": seconds,
                    "copied_records": l.records,
                    "copied_bytes": l.bytes,
                    "offset_sync_age_seconds": l.offset_sync_age,
                    "last_error": l.last_error,
                    "acls": l.acls,
                    "most_behind": worst.iter().filter(|p| p.records > 0).map(|p| json!({
                        "topic": p.topic,
                        "partition": p.partition,
                        "lag_records": p.records,
                        "lag_seconds": p.seconds,
                        "source_end": p.source_end,
                        "replicated_to": p.replicated_to,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let orphans: Vec<Value> = engine
            .orphans()
            .into_iter()
            .map(|o| {
                json!({
                    "flow": o.flow,
                    "topic": o.topic,
                    "partition": o.partition,
                    "from": o.from,
                    "to": o.to,
                    "records": o.records,
                    "first_timestamp_ms": o.first_ts,
                    "last_timestamp_ms": o.last_ts,
                    "copied": o.copied,
                })
            })
            .collect();
        out["flows"] = json!(flows);
        out["orphans"] = json!(orphans);
    }
    out
}
