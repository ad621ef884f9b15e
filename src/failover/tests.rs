//! The tracker's tables across switches.

use super::tracker::{Remap, MAX_IDS};
use super::*;
use std::collections::HashMap;

fn key(id: &str) -> ClientKey {
    (id.to_string(), IpAddr::from([127, 0, 0, 1]))
}

#[test]
fn members_from_before_a_switch_are_fenced_and_their_fetches_held() {
    let t = Tracker::default();
    let c = key("c1");
    assert!(!t.group_request(&c, "g", "m-old", 3, 0));
    assert!(!t.fetch_held(&c, 0));
    t.switched(1, &ClusterName::from("dc1"));
    assert!(t.fetch_held(&c, 1), "positions are old-space until rejoin");
    assert!(t.group_request(&c, "g", "m-old", 3, 1), "old member fenced");
    assert!(
        !t.group_request(&c, "g", "", -1, 1),
        "joining is not fenced"
    );
    assert!(!t.group_request(&c, "g", "m-new", 1, 1));
    assert!(!t.fetch_held(&c, 1), "rejoined");
    assert!(!t.fetch_held(&key("other"), 1), "non-members are not held");
}

#[test]
fn producers_from_before_a_switch_are_old_and_sequences_rebase() {
    let t = Tracker::default();
    let p = key("p");
    assert!(!t.producer_is_old(&p, 7, 0));
    assert!(t.producer_is_old(&p, 7, 1));
    t.producer_issued(&p, 9, 1);
    assert!(!t.producer_is_old(&p, 9, 1), "issued by the new cluster");
    t.lock().remaps.insert(
        (p.clone(), 7, 0, 1),
        Remap {
            producer_id: 100,
            producer_epoch: 0,
            base: HashMap::new(),
            old_txn_open: false,
        },
    );
    assert_eq!(t.rebase(&p, (7, 0, 1), "t", 0, 40), 0);
    assert_eq!(t.rebase(&p, (7, 0, 1), "t", 0, 45), 5);
    assert_eq!(t.rebase(&p, (7, 0, 1), "t", 1, 3), 0);
    t.lock()
        .remaps
        .get_mut(&(p.clone(), 7, 0, 1))
        .unwrap()
        .base
        .insert(("t".into(), 2), i32::MAX - 1);
    assert_eq!(t.rebase(&p, (7, 0, 1), "t", 2, 1), 3, "wraps");
}

#[test]
fn observed_commits_are_kept_per_cluster_and_coalesced() {
    let t = Tracker::default();
    let dc1 = ClusterName::from("dc1");
    t.observe_commit(&dc1, "g", [(("t".into(), 0), 5)]);
    t.observe_commit(&dc1, "g", [(("t".into(), 0), 9), (("t".into(), 1), 2)]);
    let dirty = t.take_dirty();
    assert_eq!(dirty.len(), 1);
    assert_eq!(dirty[0].2[&("t".into(), 0)], 9);
    assert!(t.take_dirty().is_empty());
    assert_eq!(t.commits_on(&dc1)["g"].len(), 2);
}

#[test]
fn invented_member_ids_never_grow_the_tables_past_the_bound() {
    let t = Tracker::default();
    for i in 0..(MAX_IDS + 10) {
        let key: ClientKey = (format!("c{i}"), IpAddr::from([127, 0, 0, 1]));
        t.group_request(&key, "g", &format!("m{i}"), 1, 0);
    }
    let inner = t.lock();
    assert!(
        inner.members.len() <= MAX_IDS + 1,
        "{}",
        inner.members.len()
    );
    assert!(
        inner.consumers.len() <= MAX_IDS + 1,
        "{}",
        inner.consumers.len()
    );
}
