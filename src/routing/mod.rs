//! Virtual topology: the node ids and broker slots clients see, mapped onto
//! whichever cluster is active.
//!
//! Each cluster's brokers are given slots 0, 1, 2, ... in order of node id as
//! they are first seen; slot `n` is virtual node id `n` and virtual listener
//! `n`. After a switch, virtual node `n` means the active cluster's broker in
//! slot `n`, so to a client a switch looks like leadership moving inside one
//! cluster.

pub mod topic_ids;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::ClusterName;

/// A node id as clients see it: a slot of kflip's virtual cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualNodeId(pub i32);

/// A node id inside one real cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RealNodeId(pub i32);

/// A real broker's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host as the cluster advertises it.
    pub host: String,
    /// Port as the cluster advertises it.
    pub port: i32,
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Default, Debug)]
struct ClusterSlots {
    /// Real node id -> slot.
    slots: HashMap<RealNodeId, VirtualNodeId>,
    /// Slot -> real node id and its last known address.
    by_slot: Vec<(RealNodeId, Option<BrokerAddr>)>,
}

/// Why a broker could not be given a slot.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
#[error(
    "cluster {cluster} has more brokers than proxy.max_brokers ({max}); node {node} is not exposed"
)]
pub struct SlotsExhausted {
    /// The cluster.
    pub cluster: String,
    /// The node left without a slot.
    pub node: i32,
    /// The limit.
    pub max: usize,
}

/// Slot assignments for every cluster. Shared by all connections.
#[derive(Debug)]
pub struct Topology {
    clusters: Mutex<HashMap<ClusterName, ClusterSlots>>,
    max: usize,
}

impl Topology {
    /// An empty topology exposing at most `max` virtual brokers.
    pub fn new(max: usize) -> Topology {
        Topology {
            clusters: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn with<R>(&self, cluster: &ClusterName, f: impl FnOnce(&mut ClusterSlots) -> R) -> R {
        let mut all = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(cluster.clone()).or_default())
    }

    /// Records the brokers a response announced, giving new ones slots in
    /// node-id order, and returns each one's slot.
    pub fn learn(
        &self,
        cluster: &ClusterName,
        brokers: &[(RealNodeId, BrokerAddr)],
    ) -> Vec<Result<VirtualNodeId, SlotsExhausted>> {
        let mut order: Vec<usize> = (0..brokers.len()).collect();
        order.sort_by_key(|&i| brokers[i].0);
        let mut out = vec![Ok(VirtualNodeId(-1)); brokers.len()];
        self.with(cluster, |c| {
            for i in order {
                let (real, addr) = &brokers[i];
                out[i] = assign(c, cluster, *real, self.max).inspect(|slot| {
                    c.by_slot[slot.0 as usize].1 = Some(addr.clone());
                });
            }
        });
        out
    }

    /// The virtual id for a real node, assigning a slot if it has none.
    /// -1 (no node) maps to -1.
    pub fn virtual_id(
        &self,
        cluster: &ClusterName,
        real: RealNodeId,
    ) -> Result<VirtualNodeId, SlotsExhausted> {
        if real.0 < 0 {
            return Ok(VirtualNodeId(real.0));
        }
        self.with(cluster, |c| assign(c, cluster, real, self.max))
    }

    /// The address of the broker in `slot` of `cluster`, if known.
    pub fn address(&self, cluster: &ClusterName, slot: VirtualNodeId) -> Option<BrokerAddr> {
        self.with(cluster, |c| {
            c.by_slot
                .get(usize::try_from(slot.0).ok()?)
                .and_then(|(_, a)| a.clone())
        })
    }

    /// Every known broker address of `cluster`, by slot.
    pub fn addresses(&self, cluster: &ClusterName) -> Vec<(VirtualNodeId, BrokerAddr)> {
        self.with(cluster, |c| {
            c.by_slot
                .iter()
                .enumerate()
                .filter_map(|(i, (_, a))| Some((VirtualNodeId(i as i32), a.clone()?)))
                .collect()
        })
    }
}

fn assign(
    c: &mut ClusterSlots,
    cluster: &ClusterName,
    real: RealNodeId,
    max: usize,
) -> Result<VirtualNodeId, SlotsExhausted> {
    if let Some(&v) = c.slots.get(&real) {
        return Ok(v);
    }
    if c.by_slot.len() >= max {
        return Err(SlotsExhausted {
            cluster: cluster.to_string(),
            node: real.0,
            max,
        });
    }
    let v = VirtualNodeId(c.by_slot.len() as i32);
    c.by_slot.push((real, None));
    c.slots.insert(real, v);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: i32) -> BrokerAddr {
        BrokerAddr {
            host: "10.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn slots_follow_node_id_order_per_cluster() {
        let t = Topology::new(8);
        let dc1 = ClusterName::from("dc1");
        let dc2 = ClusterName::from("dc2");
        let got = t.learn(
            &dc1,
            &[
                (RealNodeId(7), addr(7)),
                (RealNodeId(3), addr(3)),
                (RealNodeId(5), addr(5)),
            ],
        );
        assert_eq!(
            got,
            vec![
                Ok(VirtualNodeId(2)),
                Ok(VirtualNodeId(0)),
                Ok(VirtualNodeId(1))
            ]
        );
        // Another cluster has its own slots starting at 0.
        assert_eq!(
            t.learn(&dc2, &[(RealNodeId(100), addr(1))]),
            vec![Ok(VirtualNodeId(0))]
        );
        assert_eq!(t.address(&dc1, VirtualNodeId(0)), Some(addr(3)));
        assert_eq!(t.address(&dc2, VirtualNodeId(0)), Some(addr(1)));
        assert_eq!(t.address(&dc2, VirtualNodeId(1)), None);
        // Known nodes keep their slots; addresses update.
        t.learn(&dc1, &[(RealNodeId(3), addr(33))]);
        assert_eq!(t.address(&dc1, VirtualNodeId(0)), Some(addr(33)));
        assert_eq!(t.virtual_id(&dc1, RealNodeId(-1)), Ok(VirtualNodeId(-1)));
        assert_eq!(t.virtual_id(&dc1, RealNodeId(9)), Ok(VirtualNodeId(3)));
    }

    #[test]
    fn slot_limit_is_reported() {
        let t = Topology::new(1);
        let dc1 = ClusterName::from("dc1");
        assert!(t.virtual_id(&dc1, RealNodeId(1)).is_ok());
        let e = t.virtual_id(&dc1, RealNodeId(2)).unwrap_err();
        assert!(e.to_string().contains("max_brokers"));
    }
}
