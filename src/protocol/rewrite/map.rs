//! The mapping of every node id, address, cluster id, topic id and leader
//! epoch in a decoded response (see the parent module for what and why).

use super::*;

impl Rewritable {
    /// Rewrites ids, addresses, cluster id, topic ids and leader epochs.
    /// Returns whether anything changed, so unchanged responses can be
    /// forwarded as the original bytes.
    pub fn rewrite(&mut self, map: &dyn NodeMap) -> bool {
        match &mut self.body {
            Body::Metadata(m) => {
                for b in &mut m.brokers {
                    let (host, port) = map.endpoint(b.node_id.0);
                    b.node_id.0 = map.node(b.node_id.0);
                    b.host = host;
                    b.port = port;
                }
                if m.cluster_id.is_some() {
                    m.cluster_id = Some(map.cluster_id());
                }
                m.controller_id.0 = map.node(m.controller_id.0);
                for t in &mut m.topics {
                    t.topic_id = match &t.name {
                        Some(name) => map.topic_id(name.as_str(), t.topic_id),
                        None => Uuid::nil(),
                    };
                    for p in &mut t.partitions {
                        p.leader_id.0 = map.node(p.leader_id.0);
                        p.leader_epoch = -1;
                        map_ids(&mut p.replica_nodes, map);
                        map_ids(&mut p.isr_nodes, map);
                        map_ids(&mut p.offline_replicas, map);
                    }
                }
                true
            }
            Body::DescribeCluster(m) => {
                for b in &mut m.brokers {
                    let (host, port) = map.endpoint(b.broker_id.0);
                    b.broker_id.0 = map.node(b.broker_id.0);
                    b.host = host;
                    b.port = port;
                }
                m.cluster_id = map.cluster_id();
                m.controller_id.0 = map.node(m.controller_id.0);
                true
            }
            Body::FindCoordinator(m) => {
                let mut changed = false;
                // v0-3 answer for one key in top-level fields; v4+ batch keys
                // in `coordinators` and the top-level fields do not exist.
                if self.version < 4 && m.node_id.0 >= 0 {
                    (m.host, m.port) = map.endpoint(m.node_id.0);
                    m.node_id.0 = map.node(m.node_id.0);
                    changed = true;
                }
                for c in &mut m.coordinators {
                    if c.node_id.0 >= 0 {
                        (c.host, c.port) = map.endpoint(c.node_id.0);
                        c.node_id.0 = map.node(c.node_id.0);
                        changed = true;
                    }
                }
                changed
            }
            Body::DescribeTopicPartitions(m) => {
                for t in &mut m.topics {
                    t.topic_id = match &t.name {
                        Some(name) => map.topic_id(name.as_str(), t.topic_id),
                        None => Uuid::nil(),
                    };
                    for p in &mut t.partitions {
                        p.leader_id.0 = map.node(p.leader_id.0);
                        p.leader_epoch = -1;
                        map_ids(&mut p.replica_nodes, map);
                        map_ids(&mut p.isr_nodes, map);
                        map_ids(&mut p.offline_replicas, map);
                        for ids in [&mut p.eligible_leader_replicas, &mut p.last_known_elr]
                            .into_iter()
                            .flatten()
                        {
                            map_ids(ids, map);
                        }
                    }
                }
                true
            }
            Body::Produce(m) => {
                let mut changed = !m.node_endpoints.is_empty();
                for n in &mut m.node_endpoints {
                    (n.host, n.port) = map.endpoint(n.node_id.0);
                    n.node_id.0 = map.node(n.node_id.0);
                }
                for t in &mut m.responses {
                    for p in &mut t.partition_responses {
                        let l = &mut p.current_leader;
                        if l.leader_id.0 != -1 || l.leader_epoch != -1 {
                            l.leader_id.0 = map.node(l.leader_id.0);
                            l.leader_epoch = -1;
                            changed = true;
                        }
                    }
                }
                changed
            }
            Body::ConsumerGroupHeartbeat(m) => {
                let Some(a) = m.assignment.as_mut() else {
                    return false;
                };
                // A topic kflip cannot name (deleted since the assignment
                // was made) is left out: the client could not resolve the
                // upstream's id, and must never be shown one.
                a.topic_partitions.retain_mut(|t| match map.topic_id_of_real(t.topic_id) {
                    Some(v) => {
                        t.topic_id = v;
                        true
                    }
                    None => {
                        tracing::warn!(topic_id = %t.topic_id, "assignment of a topic kflip does not know left out");
                        false
                    }
                });
                true
            }
            Body::OffsetFetch(m) => {
                // A committed offset's leader epoch is that of the cluster
                // the record was read from, perhaps the other one. Handed
                // back, it makes librdkafka validate its position with
                // OffsetForLeaderEpoch against a cluster that never had
                // that epoch, and stall (seen on Apache Kafka after a
                // failback). Unknown (-1) skips the validation.
                let mut changed = false;
                let epochs = m
                    .topics
                    .iter_mut()
                    .flat_map(|t| {
                        t.partitions
                            .iter_mut()
                            .map(|p| &mut p.committed_leader_epoch)
                    })
                    .chain(m.groups.iter_mut().flat_map(|g| {
                        g.topics.iter_mut().flat_map(|t| {
                            t.partitions
                                .iter_mut()
                                .map(|p| &mut p.committed_leader_epoch)
                        })
                    }));
                for e in epochs {
                    if *e != -1 {
                        *e = -1;
                        changed = true;
                    }
                }
                changed
            }
            Body::ConsumerGroupDescribe(m) => {
                for g in &mut m.groups {
                    for member in &mut g.members {
                        for a in [&mut member.assignment, &mut member.target_assignment] {
                            for t in &mut a.topic_partitions {
                                t.topic_id = map.topic_id(t.topic_name.as_str(), t.topic_id);
                            }
                        }
                    }
                }
                true
            }
        }
    }
}
