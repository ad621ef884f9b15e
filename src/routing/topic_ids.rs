//! Virtual topic ids: the ids clients see for topics, the same on every
//! cluster and in every kflip.
//!
//! Each cluster gives a topic its own random id, so the same topic has a
//! different id on dc1 and dc2. Clients that address topics by id (KIP-848
//! consumers get their assignment as topic ids; the Java client treats a
//! changed id as a recreated topic) must never see the id change across a
//! switch. kflip shows every topic under one id derived from its name alone
//! ([`virtual_topic_id`]), so every proxy of a fleet, before and after a
//! restart, shows the same id, and translates to the active cluster's real
//! id where a request names a topic by id.
//!
//! The maps are filled from broker responses (Metadata and the like): the
//! topics of the configured clusters, never anything a client sends.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use crate::config::ClusterName;

/// The id clients see for topic `name`: a 128-bit FNV-1a hash of the name,
/// shaped as a version-8 ("custom") UUID. Never the nil id, which Kafka
/// reads as "no id".
pub fn virtual_topic_id(name: &str) -> Uuid {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    let mut h = OFFSET;
    for b in b"kflip-topic/".iter().chain(name.as_bytes()) {
        h ^= u128::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    let mut bytes = h.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}

#[derive(Default)]
struct Inner {
    /// Topic name by virtual id.
    names: HashMap<Uuid, String>,
    /// Per cluster: real id by topic name, and topic name by real id.
    by_name: HashMap<ClusterName, HashMap<String, Uuid>>,
    by_real: HashMap<ClusterName, HashMap<Uuid, String>>,
}

/// What kflip knows of each cluster's real topic ids.
#[derive(Default)]
pub struct TopicIds {
    inner: Mutex<Inner>,
}

impl TopicIds {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `cluster` calls topic `name` by `real`, and returns
    /// the virtual id clients see for it. A topic recreated on the cluster
    /// (a new real id for the name) replaces the old entry.
    pub fn learn(&self, cluster: &ClusterName, name: &str, real: Uuid) -> Uuid {
        let virt = virtual_topic_id(name);
        if real.is_nil() {
            return virt;
        }
        let mut inner = self.lock();
        if inner.by_name.get(cluster).and_then(|m| m.get(name)) == Some(&real) {
            return virt;
        }
        inner.names.insert(virt, name.to_string());
        let old = inner
            .by_name
            .entry(cluster.clone())
            .or_default()
            .insert(name.to_string(), real);
        let by_real = inner.by_real.entry(cluster.clone()).or_default();
        if let Some(old) = old {
            by_real.remove(&old);
        }
        by_real.insert(real, name.to_string());
        virt
    }

    /// The virtual id for `cluster`'s real id `real`, if kflip has seen it.
    pub fn virtual_of(&self, cluster: &ClusterName, real: Uuid) -> Option<Uuid> {
        let inner = self.lock();
        let name = inner.by_real.get(cluster)?.get(&real)?;
        Some(virtual_topic_id(name))
    }

    /// `cluster`'s real id for the topic clients call `virt`, if known.
    pub fn real_of(&self, cluster: &ClusterName, virt: Uuid) -> Option<Uuid> {
        let inner = self.lock();
        let name = inner.names.get(&virt)?;
        inner.by_name.get(cluster)?.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_ids_are_stable_distinct_and_never_nil() {
        let a = virtual_topic_id("orders");
        assert_eq!(a, virtual_topic_id("orders"));
        assert_ne!(a, virtual_topic_id("orders2"));
        assert_ne!(a, Uuid::nil());
        assert_eq!(a.get_version_num(), 8);
        assert_ne!(virtual_topic_id(""), Uuid::nil());
    }

    #[test]
    fn real_ids_translate_both_ways_per_cluster() {
        let ids = TopicIds::default();
        let (dc1, dc2) = (ClusterName::from("dc1"), ClusterName::from("dc2"));
        let (r1, r2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let v = ids.learn(&dc1, "orders", r1);
        assert_eq!(ids.learn(&dc2, "orders", r2), v, "one id on both clusters");
        assert_eq!(ids.virtual_of(&dc1, r1), Some(v));
        assert_eq!(ids.virtual_of(&dc2, r2), Some(v));
        assert_eq!(ids.real_of(&dc1, v), Some(r1));
        assert_eq!(ids.real_of(&dc2, v), Some(r2));
        assert_eq!(
            ids.virtual_of(&dc1, r2),
            None,
            "dc2's id means nothing on dc1"
        );
        // Recreated on dc1: the new id replaces the old.
        let r3 = Uuid::from_u128(3);
        ids.learn(&dc1, "orders", r3);
        assert_eq!(ids.real_of(&dc1, v), Some(r3));
        assert_eq!(ids.virtual_of(&dc1, r1), None);
    }
}
