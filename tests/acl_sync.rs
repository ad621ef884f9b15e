//! ACLs and SCRAM users on the standby (`acls: true`, `users:`), against
//! three Apache Kafka 4.4 clusters with the StandardAuthorizer: the flow's
//! allow and deny ACLs appear on the target (renamed on a second target),
//! other topics' do not, a target-only DENY stays and is reported once, an
//! ALLOW removed on the source goes, an unmappable prefix and a user
//! without a password are reported, a configured user logs in to the
//! target, and a consumer holding only the synced ACLs reads the
//! replicated topic there.
//!
//! Apache Kafka only: on `KFLIP_BROKER=tansu` the test returns at once.

mod support;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use serde_json::Value;
use support::secure::{Protocol, Security, ADMIN};
use support::secure_clients::{try_read, READER_GROUP};
use support::{clients, free_port, wait_for, Broker, Kflip};

/// How long any one step may take (the ACL tool starts a JVM per call).
const LIMIT: Duration = Duration::from_secs(90);

fn status(admin: &str) -> Option<Value> {
    let (code, body) = support::http_get(admin, "/status");
    (code == 200).then(|| serde_json::from_str(&body).expect("/status is JSON"))
}

/// The `acls` section of flow `id` in `/status`, once it has a pass.
fn acls_of(admin: &str, id: &str) -> Option<Value> {
    let s = status(admin)?;
    let flow = s["flows"]
        .as_array()?
        .iter()
        .find(|f| f["flow"] == id)?
        .clone();
    (flow["acls"]["passes"].as_u64()? > 0).then(|| flow["acls"].clone())
}

/// Whether `unfixable` has an entry whose what and reason contain these.
fn reported(acls: &Value, what: &str, reason: &str) -> bool {
    acls["unfixable"].as_array().is_some_and(|l| {
        l.iter().any(|f| {
            f["what"].as_str().is_some_and(|w| w.contains(what))
                && f["reason"].as_str().is_some_and(|r| r.contains(reason))
        })
    })
}

/// The ACL tool's line for one binding in its `--list` output.
fn binding(user: &str, op: &str, perm: &str) -> String {
    format!("principal=User:{user}, host=*, operation={op}, permissionType={perm}")
}

/// A SCRAM-SHA-512 login of `user` on `b`'s client listener, with a
/// password the broker's harness does not know (set by kflip).
fn login(b: &Broker, user: &str, password: &str) -> ClientConfig {
    let mut c = clients::config(&b.bootstrap());
    c.set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password);
    c
}

fn cluster_yaml(name: &str, b: &Broker, pw: &std::path::Path) -> String {
    format!(
        "  {name}: {{ bootstrap: \"{}\", sasl: {{ mechanism: SCRAM-SHA-512, username: {ADMIN}, password_file: \"{}\" }} }}\n",
        b.bootstrap(),
        pw.display()
    )
}

#[test]
fn the_flows_acls_and_users_reach_the_standby_without_widening() {
    let secure = |users: &[&str]| {
        let mut s = Security::new(Protocol::SaslPlaintext).with_authorizer();
        for u in users {
            s = s.user(u, &format!("{u}-secret"));
        }
        s
    };
    let Some(dc1) = Broker::start_secure("acl-dc1", &secure(&["alice", "bob"])) else {
        return;
    };
    let dc2 = Broker::start_secure("acl-dc2", &secure(&[])).expect("dc2");
    let dc3 = Broker::start_secure("acl-dc3", &secure(&[])).expect("dc3");

    // The source: a topic of the flow and one that is not, and ACLs on
    // both, on the flow's group, on a prefix, and on the cluster.
    dc1.create_secure_topic("orders.eu", 1);
    dc1.create_secure_topic("other", 1);
    let values: Vec<String> = (0..5).map(|i| format!("order-{i}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    support::secure_clients::try_produce(&dc1.admin_config(), "orders.eu", &refs, LIMIT)
        .expect("produce on dc1");
    dc1.allow(
        "alice",
        &["Read", "Describe", "Write"],
        &["--topic", "orders.eu"],
    );
    dc1.allow("alice", &["Read"], &["--group", READER_GROUP]);
    dc1.acls(&[
        "--add",
        "--deny-principal",
        "User:bob",
        "--operation",
        "Read",
        "--topic",
        "orders.eu",
    ]);
    dc1.allow(
        "bob",
        &["Describe"],
        &["--topic", "orders.", "--resource-pattern-type", "prefixed"],
    );
    dc1.allow("bob", &["Write"], &["--topic", "other"]);
    dc1.allow("alice", &["IdempotentWrite"], &["--cluster"]);
    // The standby already denies eve: the source does not.
    dc2.acls(&[
        "--add",
        "--deny-principal",
        "User:eve",
        "--operation",
        "Read",
        "--topic",
        "orders.eu",
    ]);

    let dir = tempfile::tempdir().expect("tempdir");
    let admin_pw = dir.path().join("admin.pw");
    std::fs::write(&admin_pw, format!("{}\n", dc1.password(ADMIN))).expect("pw");
    let alice_pw = dir.path().join("alice.pw");
    std::fs::write(&alice_pw, "alice-secret\n").expect("pw");
    let admin = format!("127.0.0.1:{}", free_port());
    let common = "topics: [\"orders\\\\..*\"], groups: [\"kflip-test-.*\"], acls: true, config_sync_interval: 1s, discovery_interval: 500ms";
    let yaml = format!(
        "clusters:\n{}{}{}admin:\n  listen: \"{admin}\"\nreplication:\n  flows:\n\
         \x20   - {{ source: dc1, target: dc2, {common}, users: [{{ name: alice, password_file: \"{}\" }}] }}\n\
         \x20   - {{ source: dc1, target: dc3, {common}, rename: \"{{topic}}.replica\" }}\n",
        cluster_yaml("dc1", &dc1, &admin_pw),
        cluster_yaml("dc2", &dc2, &admin_pw),
        cluster_yaml("dc3", &dc3, &admin_pw),
        alice_pw.display()
    );
    let k = Kflip::replicate(&yaml);

    // dc2: all six of the flow's ACLs (alice x3 on the topic, her group,
    // bob's DENY, bob's prefix), and none of the others.
    let s = wait_for("the flow's ACLs on dc2", LIMIT, || {
        acls_of(&admin, "dc1->dc2").filter(|a| a["synced"] == 6)
    });
    assert!(s["created"].as_u64() >= Some(6), "{s}");
    let on_dc2 = dc2.acls(&["--list", "--topic", "orders.eu"]);
    for line in [
        binding("alice", "READ", "ALLOW"),
        binding("alice", "WRITE", "ALLOW"),
        binding("bob", "READ", "DENY"),
        binding("eve", "READ", "DENY"),
    ] {
        assert!(on_dc2.contains(&line), "{line} on dc2: {on_dc2}");
    }
    let prefixed = dc2.acls(&[
        "--list",
        "--topic",
        "orders.",
        "--resource-pattern-type",
        "prefixed",
    ]);
    assert!(
        prefixed.contains(&binding("bob", "DESCRIBE", "ALLOW")),
        "{prefixed}"
    );
    let other = dc2.acls(&["--list", "--topic", "other"]);
    assert!(
        !other.contains("User:bob"),
        "another topic's ACL was copied: {other}"
    );
    let cluster = dc2.acls(&["--list", "--cluster"]);
    assert!(
        !cluster.contains("User:alice"),
        "a cluster ACL was copied: {cluster}"
    );

    // What it will not fix is in /status: eve's DENY, the cluster ACL,
    // and bob, a user of the flow's ACLs with no password configured.
    assert!(reported(&s, "User:eve", "never deleted"), "{s}");
    assert!(reported(&s, "CLUSTER", "not synced"), "{s}");
    assert!(reported(&s, "user bob", "no password"), "{s}");
    assert!(!reported(&s, "user alice", ""), "alice has a password: {s}");
    assert!(
        s["users_upserted"].as_u64() >= Some(2),
        "both mechanisms: {s}"
    );

    // alice logs in to dc2 with her password, set by kflip, and reads the
    // replicated topic with nothing but the synced ACLs.
    let alice = login(&dc2, "alice", "alice-secret");
    let mut got = wait_for("alice to read orders.eu on dc2", LIMIT, || {
        try_read(&alice, "orders.eu", values.len(), Duration::from_secs(10)).ok()
    });
    got.sort();
    assert_eq!(got, values);

    // An ALLOW removed on the source is removed on the standby; the DENY
    // the source never had stays.
    dc1.acls(&[
        "--remove",
        "--force",
        "--allow-principal",
        "User:alice",
        "--operation",
        "Write",
        "--topic",
        "orders.eu",
    ]);
    let s = wait_for("alice's WRITE gone on dc2", LIMIT, || {
        acls_of(&admin, "dc1->dc2").filter(|a| a["deleted"].as_u64() >= Some(1) && a["synced"] == 5)
    });
    let on_dc2 = dc2.acls(&["--list", "--topic", "orders.eu"]);
    assert!(
        !on_dc2.contains(&binding("alice", "WRITE", "ALLOW")),
        "{on_dc2}"
    );
    assert!(on_dc2.contains(&binding("eve", "READ", "DENY")), "{on_dc2}");
    assert!(reported(&s, "User:eve", "never deleted"), "{s}");
    // Reported once, not at every pass.
    let warned = k
        .log()
        .lines()
        .filter(|l| l.contains("difference not fixed") && l.contains("User:eve"))
        .count();
    assert!(s["passes"].as_u64() >= Some(3), "{s}");
    assert_eq!(warned, 1, "eve's DENY warned {warned} times");

    // dc3 renames: the literal ACLs follow the name, the prefix cannot
    // (a suffix rename keeps no prefix) and is reported; alice has no
    // password in this flow, so she is reported too.
    let s = wait_for("the flow's ACLs on dc3", LIMIT, || {
        acls_of(&admin, "dc1->dc3").filter(|a| a["synced"].as_u64() >= Some(4))
    });
    let on_dc3 = dc3.acls(&["--list", "--topic", "orders.eu.replica"]);
    assert!(
        on_dc3.contains(&binding("alice", "READ", "ALLOW")),
        "{on_dc3}"
    );
    assert!(on_dc3.contains(&binding("bob", "READ", "DENY")), "{on_dc3}");
    assert!(
        reported(&s, "PREFIXED", "prefix would not stay a prefix"),
        "{s}"
    );
    assert!(reported(&s, "user alice", "no password"), "{s}");
    let all = dc3.acls(&["--list"]);
    assert!(!all.contains("patternType=PREFIXED"), "{all}");
    assert!(all.contains("name=orders.eu.replica"), "{all}");
}
