use super::*;
use crate::config::Config;

const READ: i8 = 3;
const WRITE: i8 = 4;

fn flow(extra: &str) -> FlowConfig {
    let c = Config::parse(&format!(
        "clusters:\n  dc1: {{ bootstrap: \"h:1\" }}\n  dc2: {{ bootstrap: \"h:2\" }}\n\
         replication:\n  flows:\n    - {{ source: dc1, target: dc2, topics: [\"orders\\\\..*\", pay], groups: [\"app-.*\"], acls: true{extra} }}\n"
    ))
    .expect("config");
    c.replication.expect("replication").flows.remove(0)
}

fn acl(rt: i8, name: &str, pattern: i8, who: &str, op: i8, perm: i8) -> Acl {
    Acl {
        resource_type: rt,
        name: name.into(),
        pattern,
        principal: format!("User:{who}"),
        host: "*".into(),
        operation: op,
        permission: perm,
    }
}

fn topic(name: &str, who: &str, perm: i8) -> Acl {
    acl(code::TOPIC, name, code::LITERAL, who, READ, perm)
}

#[test]
fn the_flows_topics_and_groups_are_created_denies_first() {
    let f = flow("");
    let src = vec![
        topic("orders.eu", "alice", code::ALLOW),
        topic("orders.eu", "mallory", code::DENY),
        topic("other", "alice", code::ALLOW),
        acl(
            code::GROUP,
            "app-1",
            code::LITERAL,
            "alice",
            READ,
            code::ALLOW,
        ),
        acl(
            code::GROUP,
            "ops",
            code::LITERAL,
            "alice",
            READ,
            code::ALLOW,
        ),
        acl(
            code::TOPIC,
            "orders.",
            code::PREFIXED,
            "bob",
            WRITE,
            code::ALLOW,
        ),
    ];
    let p = plan(&f, "_kflip_state", &src, &[], &[]);
    assert_eq!(
        p.create_deny,
        vec![topic("orders.eu", "mallory", code::DENY)]
    );
    assert_eq!(p.create_allow.len(), 3, "{:?}", p.create_allow);
    assert!(!p
        .create_allow
        .iter()
        .any(|a| a.name == "other" || a.name == "ops"));
    assert!(p.delete_allow.is_empty() && p.unfixable.is_empty());
    assert!(p.principals.contains("User:bob") && p.principals.contains("User:mallory"));
    let again = plan(&f, "_kflip_state", &src, &src, &[]);
    assert_eq!(again.synced, 4);
    assert!(again.create_allow.is_empty() && again.create_deny.is_empty());
}

#[test]
fn names_follow_rename_and_a_prefix_only_while_it_stays_one() {
    let f = flow(", rename: \"dc1.{topic}\"");
    let src = vec![
        topic("orders.eu", "alice", code::ALLOW),
        acl(
            code::TOPIC,
            "orders.",
            code::PREFIXED,
            "bob",
            WRITE,
            code::ALLOW,
        ),
        topic("*", "carol", code::ALLOW),
    ];
    let p = plan(&f, "_kflip_state", &src, &[], &[]);
    let names: Vec<&str> = p.create_allow.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["dc1.orders.", "dc1.orders.eu"]);
    assert_eq!(p.unfixable.len(), 1, "the wildcard: {:?}", p.unfixable);
    assert!(p.unfixable[0].reason.contains("wildcard"));

    let f = flow(", rename: \"{topic}.replica\"");
    let p = plan(&f, "_kflip_state", &src, &[], &[]);
    assert_eq!(
        p.create_allow,
        vec![topic("orders.eu.replica", "alice", code::ALLOW)]
    );
    assert!(p
        .unfixable
        .iter()
        .any(|u| u.what.contains("PREFIXED") && u.reason.contains("prefix")));
}

#[test]
fn target_allows_the_source_lacks_go_and_denies_stay() {
    let f = flow("");
    let src = vec![topic("orders.eu", "alice", code::ALLOW)];
    let tgt = vec![
        topic("orders.eu", "alice", code::ALLOW),
        topic("orders.eu", "bob", code::ALLOW),
        topic("orders.eu", "eve", code::DENY),
        topic("local", "bob", code::ALLOW),
        topic("pay", "kflip", code::ALLOW),
        topic("*", "bob", code::ALLOW),
    ];
    let p = plan(&f, "_kflip_state", &src, &tgt, &["User:kflip".into()]);
    assert_eq!(p.synced, 1);
    assert_eq!(p.delete_allow, vec![topic("orders.eu", "bob", code::ALLOW)]);
    assert_eq!(p.unfixable.len(), 1);
    assert!(p.unfixable[0].what.contains("User:eve"));
    assert!(p.unfixable[0].reason.contains("never deleted"));
}

#[test]
fn cluster_acls_are_reported_until_the_target_has_them() {
    let f = flow("");
    let c = acl(4, "kafka-cluster", code::LITERAL, "alice", 12, code::ALLOW);
    let p = plan(&f, "_kflip_state", std::slice::from_ref(&c), &[], &[]);
    assert!(p.create_allow.is_empty());
    assert!(p.unfixable[0]
        .reason
        .contains("CLUSTER ACLs are not synced"));
    let p = plan(
        &f,
        "_kflip_state",
        std::slice::from_ref(&c),
        std::slice::from_ref(&c),
        &[],
    );
    assert!(p.unfixable.is_empty());
}

#[test]
fn renamed_target_acls_are_owned_through_the_rename() {
    let f = flow(", rename: \"dc1.{topic}\"");
    let tgt = vec![
        topic("dc1.orders.eu", "bob", code::ALLOW),
        topic("orders.eu", "bob", code::ALLOW),
        acl(
            code::TOPIC,
            "dc1.orders.",
            code::PREFIXED,
            "bob",
            READ,
            code::ALLOW,
        ),
        acl(
            code::GROUP,
            "app-x",
            code::PREFIXED,
            "bob",
            READ,
            code::ALLOW,
        ),
    ];
    let p = plan(&f, "_kflip_state", &[], &tgt, &[]);
    let names: Vec<&str> = p.delete_allow.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["dc1.orders.eu", "dc1.orders.", "app-x"]);
}
