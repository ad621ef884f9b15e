//! The client inventory as JSON (`/clients`, and in `/status`).

use serde_json::{json, Value};

use super::Sources;
use crate::inventory::switch_risks;

/// Every client the proxy has seen, with what a switch would cost each.
pub fn clients(s: &Sources) -> Value {
    let Some(p) = &s.proxy else {
        return json!({ "clients": [], "dropped": 0 });
    };
    let inv = &p.board().inventory;
    let list: Vec<Value> = inv
        .snapshot()
        .into_iter()
        .map(|(who, e)| {
            let risks = switch_risks(&e);
            let mut v = json!(e);
            v["client_id"] = json!(who.client_id);
            v["principal"] = json!(who.principal);
            v["switch_risks"] = json!(risks);
            v
        })
        .collect();
    json!({ "clients": list, "dropped": inv.dropped() })
}
