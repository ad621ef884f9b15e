//! The runbook as commands: status, failover, failback, offsets, orphans.
//!
//! Each reads the config file for where things are, talks to a running
//! kflip through its admin API (or, for `offsets reset`, to the cluster
//! itself), and exits with a code scripts can use ([`Exit`]).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::admin_client::{encode, AdminApi};
use super::edit;
use crate::config::{self, Config};

/// How a command ended, for the process exit code.
#[derive(Debug)]
pub(super) struct Exit {
    pub(super) code: u8,
    pub(super) message: String,
}

impl Exit {
    /// The operation failed (or, for `status`, kflip is not ready): 1.
    pub(super) fn failed(m: impl Into<String>) -> Exit {
        Exit {
            code: 1,
            message: m.into(),
        }
    }
    /// Bad arguments or a bad config file: 2.
    pub(super) fn usage(m: impl Into<String>) -> Exit {
        Exit {
            code: 2,
            message: m.into(),
        }
    }
    /// The admin API (or the cluster) cannot be reached: 3.
    pub(super) fn unreachable(m: impl Into<String>) -> Exit {
        Exit {
            code: 3,
            message: m.into(),
        }
    }
}

fn load(path: &Path) -> Result<Config, Exit> {
    config::load(path).map_err(|e| Exit::usage(format!("{}: {e}", path.display())))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn ago(unix_ms: i64) -> String {
    let now = crate::replication::state::now_ms();
    let secs = (now - unix_ms).max(0) / 1000;
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(secs as u64))
    )
}

/// `kflip status`.
pub(super) fn status(path: &Path, admin: Option<&str>, json: bool) -> Result<(), Exit> {
    let api = AdminApi::locate(path, admin)?;
    let st = api.get("/status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    } else {
        print!("{}", render_status(&st));
    }
    if st["ready"].as_bool() == Some(true) {
        Ok(())
    } else {
        Err(Exit::failed(format!(
            "not ready: {}",
            st["not_ready_because"].as_str().unwrap_or("unknown")
        )))
    }
}

/// The human form of `/status`.
pub(super) fn render_status(st: &Value) -> String {
    let mut o = String::new();
    let roles: Vec<&str> = [("proxy", "proxy"), ("engine", "engine")]
        .iter()
        .filter(|(k, _)| st["roles"][*k].as_bool() == Some(true))
        .map(|(_, n)| *n)
        .collect();
    let _ = writeln!(
        o,
        "kflip {}  {}  up {}  {}",
        s(st, "version"),
        roles.join("+"),
        humantime::format_duration(Duration::from_secs(
            st["uptime_seconds"].as_u64().unwrap_or(0)
        )),
        if st["ready"].as_bool() == Some(true) {
            "READY".to_string()
        } else {
            format!("NOT READY: {}", s(st, "not_ready_because"))
        }
    );
    let c = &st["config"];
    let _ = writeln!(
        o,
        "config   {}  reloads {}  rejected {}{}",
        s(c, "path"),
        c["reloads"],
        c["rejected"],
        match c["last_error"].as_str() {
            Some(e) =>
                format!("\n         THE FILE ON DISK IS REJECTED (the previous config runs): {e}"),
            None => String::new(),
        }
    );
    if let Some(p) = st.get("proxy") {
        let _ = writeln!(
            o,
            "active   {}  epoch {}{}  connections {}  in flight {}",
            s(p, "active"),
            p["epoch"],
            if p["holding"].as_bool() == Some(true) {
                "  HOLDING (a planned switch is under way)"
            } else {
                ""
            },
            p["connections"],
            p["in_flight"]
        );
        if let Some(l) = p.get("last_switch").filter(|l| !l.is_null()) {
            let _ = writeln!(o, "switch   {}", render_switch(l));
        }
    }
    if let Some(members) = st["fleet"]["members"].as_array() {
        let live: Vec<&Value> = members
            .iter()
            .filter(|m| m["stale"].as_bool() != Some(true))
            .collect();
        let disagree: Vec<String> = st["fleet"]["disagree"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| format!("{} on {}", s(d, "instance"), s(d, "active")))
            .collect();
        let _ = writeln!(
            o,
            "fleet    {} live kflips seen through the state topics{}{}",
            live.len(),
            if disagree.is_empty() {
                String::new()
            } else {
                format!("; FORWARDING ELSEWHERE: {}", disagree.join(", "))
            },
            match st["fleet"]["behind_fleet"].as_str() {
                Some(c) => format!(
                    "\n         THIS PROXY IS BEHIND ITS FLEET (most forward to {c}): writes refused until its file names {c}"
                ),
                None => String::new(),
            }
        );
    }
    let _ = writeln!(o, "clusters");
    if let Some(cs) = st["clusters"].as_object() {
        for (name, c) in cs {
            let line = match c["reachable"].as_bool() {
                Some(true) => format!("reachable ({} ms)", c["probe_ms"]),
                Some(false) => format!("UNREACHABLE: {}", s(c, "error")),
                None => "not probed yet".into(),
            };
            let _ = writeln!(o, "  {name:<10} {line}");
        }
    }
    if let Some(flows) = st["flows"].as_array() {
        let _ = writeln!(
            o,
            "flows\n  {:<16} {:>10} {:>12} {:>9} {:>12} {:>12}  error",
            "flow", "partitions", "lag records", "lag s", "copied", "offset sync"
        );
        for f in flows {
            let _ = writeln!(
                o,
                "  {:<16} {:>10} {:>12} {:>9.1} {:>12} {:>12}  {}",
                s(f, "flow"),
                f["partitions"],
                f["lag_records"],
                f["lag_seconds"].as_f64().unwrap_or(0.0),
                f["copied_records"],
                f["offset_sync_age_seconds"]
                    .as_f64()
                    .map(|a| format!("{a:.0}s ago"))
                    .unwrap_or_else(|| "never".into()),
                f["last_error"].as_str().unwrap_or("-")
            );
        }
    }
    if let Some(orphans) = st["orphans"].as_array() {
        let held: Vec<&Value> = orphans
            .iter()
            .filter(|r| r["copied"].as_bool() != Some(true))
            .collect();
        if held.is_empty() {
            let _ = writeln!(o, "orphans  none held");
        } else {
            let records: u64 = held.iter().filter_map(|r| r["records"].as_u64()).sum();
            let _ = writeln!(
                o,
                "orphans  {records} records in {} ranges HELD (kflip orphans list)",
                held.len()
            );
        }
    }
    o
}

fn render_switch(l: &Value) -> String {
    let rpo = match l["rpo_records"].as_i64() {
        Some(-1) => "RPO unknown (a log end could not be read)".to_string(),
        Some(0) => "RPO 0 records".to_string(),
        Some(n) => format!(
            "RPO {n} records ({:.1}s) NOT REPLICATED",
            l["rpo_seconds"].as_f64().unwrap_or(0.0)
        ),
        None => String::new(),
    };
    format!(
        "{} -> {} {} (epoch {}), {}: held {} ms, clients moved in {} ms{}, {rpo}",
        s(l, "from"),
        s(l, "to"),
        if l["planned"].as_bool() == Some(true) {
            "planned"
        } else {
            "DISASTER"
        },
        l["epoch"],
        l["at_unix_ms"]
            .as_i64()
            .map(ago)
            .unwrap_or_else(|| "-".into()),
        l["hold_ms"],
        l["duration_ms"],
        match l["expired_in"].as_str() {
            Some(p) => format!(", hold deadline expired in {p}"),
            None => String::new(),
        }
    )
}

/// Options of `failover` and `failback`.
pub(super) struct Flip<'a> {
    pub(super) path: &'a Path,
    pub(super) to: Option<&'a str>,
    pub(super) admin: Option<&'a str>,
    pub(super) dry_run: bool,
    pub(super) timeout: Duration,
    pub(super) stdout: bool,
    /// `failback`: the target defaults to the cluster the last switch left.
    pub(super) back: bool,
}

/// `kflip failover` / `kflip failback`.
pub(super) fn flip(o: Flip) -> Result<(), Exit> {
    let cfg = load(o.path)?;
    let proxy = cfg.proxy.as_ref().ok_or_else(|| {
        Exit::usage(format!(
            "{} has no proxy: section; failover moves the proxy's clients",
            o.path.display()
        ))
    })?;
    let current = proxy.active.to_string();
    let api = AdminApi::locate(o.path, o.admin);
    // The running kflip's view; --stdout works without it.
    let status = match &api {
        Ok(api) => api.get("/status"),
        Err(e) => Err(Exit::unreachable(e.message.clone())),
    };
    let to = match (o.to, o.back) {
        (Some(t), _) => t.to_string(),
        (None, true) => failback_target(&cfg, &current, status.as_ref().ok())?,
        (None, false) => {
            return Err(Exit::usage(
                "name the cluster to fail over to: --to CLUSTER",
            ))
        }
    };
    if !cfg.clusters.keys().any(|c| c.as_str() == to) {
        return Err(Exit::usage(format!(
            "no cluster {to:?} in {} (clusters: {})",
            o.path.display(),
            cfg.clusters
                .keys()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if o.dry_run {
        return dry_run(&cfg, &current, &to, status);
    }
    let text = std::fs::read_to_string(o.path)
        .map_err(|e| Exit::usage(format!("cannot read {}: {e}", o.path.display())))?;
    let edited = if current == to {
        text.clone()
    } else {
        edit::set_active(&text, &to)
            .map_err(|e| Exit::usage(format!("cannot edit {}: {e}", o.path.display())))?
    };
    check_edit(o.path, &edited, &to)?;
    if o.stdout {
        print!("{edited}");
        return Ok(());
    }
    let status = status?;
    let api = api?;
    let running_active = status["proxy"]["active"].as_str().unwrap_or("").to_string();
    if current == to && running_active == to {
        println!("{to} is already active; nothing to do");
        return Ok(());
    }
    let epoch = status["proxy"]["epoch"].as_u64().unwrap_or(0);
    if current != to {
        edit::replace_file(o.path, &edited).map_err(|e| {
            Exit::failed(format!(
                "cannot write {}: {e} (a read-only mount, such as a Kubernetes ConfigMap? use --stdout and apply the ConfigMap)",
                o.path.display()
            ))
        })?;
        eprintln!(
            "{}: proxy.active changed {current} -> {to}; waiting for kflip at {} to switch (up to {})",
            o.path.display(),
            api.base(),
            humantime::format_duration(o.timeout)
        );
    }
    wait_for_switch(&api, &to, epoch, o.timeout)
}

/// The cluster a failback returns to: the one the last switch left, or
/// with two clusters, the other one.
fn failback_target(cfg: &Config, current: &str, status: Option<&Value>) -> Result<String, Exit> {
    if let Some(from) = status
        .and_then(|s| s["proxy"]["last_switch"]["from"].as_str())
        .filter(|f| *f != current)
    {
        return Ok(from.to_string());
    }
    let others: Vec<String> = cfg
        .clusters
        .keys()
        .filter(|c| c.as_str() != current)
        .map(|c| c.to_string())
        .collect();
    match others.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Exit::usage(format!(
            "cannot tell which cluster to fail back to (no switch on record, and {} other clusters); use --to",
            others.len()
        ))),
    }
}

/// The edited text must load and name `to`. It is checked from a
/// temporary file beside the config (relative paths in it resolve the
/// same), or in the temporary directory when that one is read-only.
fn check_edit(path: &Path, edited: &str, to: &str) -> Result<(), Exit> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = format!(".kflip-check-{}.yaml", std::process::id());
    let probe = [dir.join(&name), std::env::temp_dir().join(&name)]
        .into_iter()
        .find(|p| std::fs::write(p, edited).is_ok())
        .ok_or_else(|| Exit::failed("cannot write a temporary file to check the edit"))?;
    let checked = config::load(&probe).map(|c| c.proxy.map(|p| p.active.to_string()));
    let _ = std::fs::remove_file(&probe);
    match checked {
        Ok(Some(a)) if a == to => Ok(()),
        Ok(_) => Err(Exit::usage(format!(
            "editing {} did not set proxy.active to {to}; edit it by hand",
            path.display()
        ))),
        Err(e) => Err(Exit::usage(format!(
            "the edited {} would not load: {e}",
            path.display()
        ))),
    }
}

fn dry_run(cfg: &Config, current: &str, to: &str, status: Result<Value, Exit>) -> Result<(), Exit> {
    let proxy = cfg.proxy.as_ref().expect("checked by the caller");
    if current == to {
        println!("{to} is already proxy.active in the file; nothing would change");
        return Ok(());
    }
    println!("would change proxy.active: {current} -> {to}");
    let st = match status {
        Ok(st) => st,
        Err(e) => {
            println!("cannot tell what the running kflip would do: {}", e.message);
            return Err(e);
        }
    };
    let reachable = st["clusters"][current]["reachable"].as_bool();
    let target_up = st["clusters"][to]["reachable"].as_bool();
    if target_up != Some(true) {
        println!(
            "WARNING: {to} is not reachable now: {}",
            st["clusters"][to]["error"].as_str().unwrap_or("not probed")
        );
    }
    let flow = format!("{current}->{to}");
    let lag = st["flows"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["flow"] == flow.as_str()));
    let deadline = proxy.switch_drain + proxy.switch_lag_timeout + crate::failover::SYNC_GRACE;
    match reachable {
        Some(true) => {
            println!(
                "{current} answers: a PLANNED switch. New requests are held (at most {}) while in-flight ones finish and replication catches up; then every client moves to {to}.",
                humantime::format_duration(deadline)
            );
            match lag {
                Some(f) => println!(
                    "replication {flow}: {} records behind ({:.1}s); {} partitions; offsets synced {}",
                    f["lag_records"],
                    f["lag_seconds"].as_f64().unwrap_or(0.0),
                    f["partitions"],
                    f["offset_sync_age_seconds"]
                        .as_f64()
                        .map(|a| format!("{a:.0}s ago"))
                        .unwrap_or_else(|| "never".into())
                ),
                None if st["roles"]["engine"].as_bool() == Some(true) => {
                    println!("WARNING: this kflip runs no flow {flow}: nothing will be waited for, and consumers resume at offsets synced by whatever replicates")
                }
                None => println!(
                    "this kflip runs no replication engine: the switch will not wait for replication"
                ),
            }
        }
        _ => {
            println!("{current} does not answer: a DISASTER switch. Clients move to {to} at once.");
            if let Some(f) = lag {
                println!(
                    "replication {flow} was {} records behind ({:.1}s) when last seen: that is the RPO",
                    f["lag_records"],
                    f["lag_seconds"].as_f64().unwrap_or(0.0)
                );
            }
        }
    }
    let hurt = super::clients::at_risk(&st);
    if hurt.is_empty() {
        println!("clients seen: none that a switch would hurt (kflip clients lists them all)");
    } else {
        println!("clients a switch would hurt ({}):", hurt.len());
        for line in hurt {
            println!("  {line}");
        }
    }
    Ok(())
}

/// Polls `/status` until the proxy reports `to` active at a newer epoch.
fn wait_for_switch(api: &AdminApi, to: &str, epoch: u64, timeout: Duration) -> Result<(), Exit> {
    let started = Instant::now();
    let mut said = String::new();
    loop {
        let st = api.get("/status")?;
        let p = &st["proxy"];
        let now_epoch = p["epoch"].as_u64().unwrap_or(0);
        if p["active"] == to && now_epoch > epoch && p["holding"].as_bool() != Some(true) {
            let report = p["last_switch"]
                .as_object()
                .map(|_| render_switch(&p["last_switch"]))
                .unwrap_or_default();
            println!("switched: {report}");
            if p["last_switch"]["rpo_records"].as_i64().unwrap_or(0) != 0 {
                for g in p["last_switch"]["not_replicated"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    println!(
                        "  not replicated: {}[{}] {} records ({:.1}s)",
                        s(g, "topic"),
                        g["partition"],
                        g["records"],
                        g["seconds"].as_f64().unwrap_or(0.0)
                    );
                }
            }
            return Ok(());
        }
        if let Some(e) = st["config"]["last_error"].as_str() {
            return Err(Exit::failed(format!(
                "kflip rejected the edited file and keeps running the old one: {e}"
            )));
        }
        let line = if p["holding"].as_bool() == Some(true) {
            let behind: i64 = st["flows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["lag_records"].as_i64())
                .sum();
            format!("holding clients; replication {behind} records behind")
        } else {
            format!(
                "waiting for kflip to read the file (active {})",
                s(p, "active")
            )
        };
        if line != said {
            eprintln!("  {:>5.1}s  {line}", started.elapsed().as_secs_f64());
            said = line;
        }
        if started.elapsed() >= timeout {
            return Err(Exit::failed(format!(
                "kflip did not report the switch to {to} within {}; check `kflip status`",
                humantime::format_duration(timeout)
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kflip offsets translate`.
pub(super) fn translate(
    path: &Path,
    admin: Option<&str>,
    group: &str,
    from: Option<&str>,
    to: Option<&str>,
    json: bool,
) -> Result<(), Exit> {
    let api = AdminApi::locate(path, admin)?;
    let mut q = format!("/offsets/translate?group={}", encode(group));
    if let Some(f) = from {
        q.push_str(&format!("&from={}", encode(f)));
    }
    if let Some(t) = to {
        q.push_str(&format!("&to={}", encode(t)));
    }
    let v = api.get(&q)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let parts = v["partitions"].as_array().cloned().unwrap_or_default();
    println!(
        "group {} along {}: {} partitions with a committed offset on {}",
        s(&v, "group"),
        s(&v, "flow"),
        parts.len(),
        s(&v, "from")
    );
    println!(
        "  {:<24} {:>9} {:>12} {:>12} {:>14}",
        "topic", "partition", "committed", "translated", "on target now"
    );
    let opt = |x: &Value| {
        x.as_i64()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into())
    };
    for p in &parts {
        println!(
            "  {:<24} {:>9} {:>12} {:>12} {:>14}",
            s(p, "topic"),
            p["partition"],
            opt(&p["committed"]),
            opt(&p["translated"]),
            opt(&p["committed_on_target"])
        );
    }
    Ok(())
}

/// `kflip orphans list`.
pub(super) fn orphans_list(path: &Path, admin: Option<&str>, json: bool) -> Result<(), Exit> {
    let api = AdminApi::locate(path, admin)?;
    let st = api.get("/status")?;
    let Some(orphans) = st["orphans"].as_array() else {
        return Err(Exit::failed(
            "this kflip runs no replication engine; ask the one that replicates",
        ));
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(orphans).unwrap_or_default()
        );
        return Ok(());
    }
    if orphans.is_empty() {
        println!("no orphans: every record a disaster switch left behind was replicated");
        return Ok(());
    }
    println!(
        "  {:<12} {:<24} {:>9} {:>12} {:>12} {:>9}  state",
        "flow", "topic", "partition", "from", "to", "records"
    );
    for r in orphans {
        println!(
            "  {:<12} {:<24} {:>9} {:>12} {:>12} {:>9}  {}",
            s(r, "flow"),
            s(r, "topic"),
            r["partition"],
            r["from"],
            r["to"],
            r["records"],
            if r["copied"].as_bool() == Some(true) {
                "copied"
            } else {
                "HELD"
            }
        );
    }
    Ok(())
}

/// `kflip orphans restore`.
pub(super) fn orphans_restore(path: &Path, admin: Option<&str>, flow: &str) -> Result<(), Exit> {
    let api = AdminApi::locate(path, admin)?;
    let v = api.post(&format!("/orphans/restore?flow={}", encode(flow)))?;
    match v["ranges"].as_u64() {
        Some(0) => println!("flow {flow} holds no orphans; nothing to copy"),
        Some(n) => println!(
            "flow {flow}: copying {n} held ranges to the target (after the records written there since); `kflip orphans list` shows them as copied when done"
        ),
        None => println!("{v}"),
    }
    Ok(())
}
