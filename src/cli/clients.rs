//! `kflip clients`, and the clients a switch would hurt (for
//! `kflip failover --dry-run`).

use std::path::Path;

use serde_json::Value;

use super::admin_client::AdminApi;
use super::ops::Exit;

fn list(v: &Value, key: &str) -> String {
    match v[key].as_array() {
        Some(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".into(),
    }
}

fn resets(v: &Value) -> String {
    match v["resets"].as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(g, r)| format!("{g}:{}", list(&serde_json::json!({ "r": r }), "r")))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "-".into(),
    }
}

fn name(c: &Value) -> String {
    let id = c["client_id"].as_str().unwrap_or("");
    let id = if id.is_empty() { "(no client id)" } else { id };
    match c["principal"].as_str() {
        Some(p) => format!("{id} ({p})"),
        None => id.to_string(),
    }
}

/// The table `kflip clients` prints.
pub(super) fn render(clients: &[Value]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if clients.is_empty() {
        out.push_str("no clients seen yet\n");
        return out;
    }
    for c in clients {
        let _ = writeln!(
            out,
            "{}  [{}] from {}",
            name(c),
            c["software"].as_str().unwrap_or("software unknown"),
            list(c, "addresses")
        );
        let _ = writeln!(
            out,
            "    produces: {}  acks: {}  producer: {}  transactional ids: {}",
            list(c, "produced"),
            list(c, "acks"),
            list(c, "producer"),
            list(c, "transactional_ids")
        );
        let _ = writeln!(
            out,
            "    consumes: {}  groups: {}  reset with no offset: {}",
            list(c, "consumed"),
            list(c, "groups"),
            resets(c)
        );
        if let Some(v) = c["violations"].as_object().filter(|v| !v.is_empty()) {
            let text: Vec<_> = v.iter().map(|(r, n)| format!("{r}: {n}")).collect();
            let _ = writeln!(out, "    policy violations: {}", text.join(", "));
        }
        for r in c["switch_risks"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "    RISK: {}", r.as_str().unwrap_or(""));
        }
    }
    out
}

/// `kflip clients`.
pub(super) fn clients(path: &Path, admin: Option<&str>, json: bool) -> Result<(), Exit> {
    let api = AdminApi::locate(path, admin)?;
    let got = api.get("/clients")?;
    let all = got["clients"].as_array().cloned().unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string_pretty(&got).unwrap_or_default());
        return Ok(());
    }
    print!("{}", render(&all));
    if let Some(n) = got["dropped"].as_u64().filter(|n| *n > 0) {
        println!("({n} facts not kept: the inventory is full)");
    }
    Ok(())
}

/// The clients of a `/status` that a switch would hurt, one line each.
pub(super) fn at_risk(st: &Value) -> Vec<String> {
    st["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            let who = name(c);
            c["switch_risks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str())
                .map(move |r| format!("{who}: {r}"))
                .collect::<Vec<_>>()
        })
        .collect()
}
