//! Tests of the `replication:` section's validation.
use crate::config::Config;

const BASE: &str = "clusters:\n  dc1: { bootstrap: \"h:1\" }\n  dc2: { bootstrap: \"h:2\" }\n";

#[test]
fn minimal_flows_are_accepted() {
    let c = Config::parse(&format!(
        "{BASE}replication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\"topic1\", \"orders\\\\..*\"] }}\n    - {{ source: dc2, target: dc1, topics: [\"topic1\"] }}\n"
    ))
    .unwrap();
    let r = c.replication.unwrap();
    assert_eq!(r.flows.len(), 2);
    let f = &r.flows[0];
    assert_eq!(f.id, "dc1->dc2");
    assert!(f.wants_topic("topic1", &r.state_topic));
    assert!(f.wants_topic("orders.eu", &r.state_topic));
    assert!(
        !f.wants_topic("xtopic1", &r.state_topic),
        "patterns match whole names"
    );
    assert!(!f.wants_topic("orders", &r.state_topic));
    assert!(!f.wants_topic("_kflip_state", &r.state_topic));
    assert!(f.wants_group("any-group"));
    assert_eq!(f.target_topic("topic1"), "topic1");
    assert_eq!(f.fetch_min_bytes, 1, "a fetch answers at the first record");
    let c = Config::parse(&format!(
        "{BASE}replication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [a], fetch_min_bytes: 65536 }}\n"
    ))
    .unwrap();
    assert_eq!(c.replication.unwrap().flows[0].fetch_min_bytes, 65536);
}

#[test]
fn flow_errors_name_their_key() {
    for (flow, key) in [
        (
            "{ source: dc1, target: dc3, topics: [a] }",
            "replication.flows[0].target",
        ),
        (
            "{ source: dc1, target: dc1, topics: [a] }",
            "replication.flows[0].target",
        ),
        (
            "{ source: dc1, target: dc2, topics: [] }",
            "replication.flows[0].topics",
        ),
        (
            "{ source: dc1, target: dc2, topics: [\"(\"] }",
            "replication.flows[0].topics[0]",
        ),
        (
            "{ source: dc1, target: dc2, topics: [a], rename: \"x\" }",
            "replication.flows[0].rename",
        ),
        (
            "{ source: dc1, target: dc2, topics: [a], speed: 9 }",
            "speed",
        ),
        (
            "{ source: dc1, target: dc2, topics: [a], fetch_min_bytes: 0 }",
            "replication.flows[0].fetch_min_bytes",
        ),
        (
            "{ source: dc1, target: dc2, topics: [a], fetch_min_bytes: 52428801 }",
            "replication.flows[0].fetch_min_bytes",
        ),
    ] {
        let e = Config::parse(&format!("{BASE}replication:\n  flows:\n    - {flow}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{flow}: {e}");
    }
}

#[test]
fn rename_and_excludes() {
    let c = Config::parse(&format!(
        "{BASE}replication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\".*\"], exclude: [\"tmp\\\\..*\"], rename: \"{{topic}}.replica\", groups: [\"app-.*\"], exclude_groups: [\"app-test\"] }}\n"
    ))
    .unwrap();
    let r = c.replication.unwrap();
    let f = &r.flows[0];
    assert_eq!(f.target_topic("orders"), "orders.replica");
    assert_eq!(f.source_topic("orders.replica").as_deref(), Some("orders"));
    assert_eq!(f.source_topic("orders"), None);
    assert!(!f.wants_topic("tmp.x", &r.state_topic));
    assert!(!f.wants_topic("__consumer_offsets", &r.state_topic));
    assert!(f.wants_group("app-1") && !f.wants_group("app-test") && !f.wants_group("other"));
}
