//! Topic discovery and sync: which source topics a flow copies, creating
//! them on the target with the source's partition count and configs, and
//! following config changes and partition increases.
//!
//! Durability is never silently weakened: a created topic gets the source's
//! replication factor (or the flow's explicit `replication_factor`); if the
//! target has too few brokers for it, the topic is not created and the flow
//! reports why. `min.insync.replicas` is copied like every other topic
//! override, and never lowered below what the target topic already has.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use tokio::runtime::Handle;

use super::error::{Cause, Error, Side};
use crate::cluster::rdkafka::client_config;
use crate::config::{ClusterConfig, FlowConfig};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A source topic as metadata describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replicas of partition 0.
    pub replication_factor: i16,
}

/// Admin access to one cluster.
pub struct Admin {
    client: AdminClient<DefaultClientContext>,
    rt: Handle,
    /// The cluster name, for messages.
    pub name: String,
    /// Which side of the flow the cluster is, for errors.
    side: Side,
}

fn opts() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(TIMEOUT))
        .request_timeout(Some(TIMEOUT))
}

impl Admin {
    /// An admin client for `cluster`, the flow's `side`, called `name` in
    /// messages.
    pub fn new(
        name: &str,
        side: Side,
        cluster: &ClusterConfig,
        rt: Handle,
    ) -> Result<Admin, Error> {
        let client = client_config(cluster, "kflip-engine-admin")
            .map_err(|e| Error::cluster(side, name, "set up the login", e))?
            .create()
            .map_err(|e| Error::cluster(side, name, "create an admin client", e))?;
        Ok(Admin {
            client,
            rt,
            name: name.to_string(),
            side,
        })
    }

    /// A failure of `op` on this cluster.
    fn err(&self, op: impl Into<String>, cause: impl Into<Cause>) -> Error {
        Error::cluster(self.side, &self.name, op, cause)
    }

    /// Every topic with its partition count and replication factor.
    pub fn topics(&self) -> Result<Vec<TopicInfo>, Error> {
        let md = self
            .client
            .inner()
            .fetch_metadata(None, TIMEOUT)
            .map_err(|e| self.err("metadata", e))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| TopicInfo {
                name: t.name().to_string(),
                partitions: t.partitions().len() as i32,
                replication_factor: t
                    .partitions()
                    .first()
                    .map(|p| p.replicas().len() as i16)
                    .unwrap_or(1),
            })
            .collect())
    }

    /// The cluster's id, if the broker reports one.
    pub fn cluster_id(&self) -> Option<String> {
        self.client.inner().fetch_cluster_id(TIMEOUT)
    }

    /// A partition's log start and end offsets.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), Error> {
        self.client
            .inner()
            .fetch_watermarks(topic, partition, TIMEOUT)
            .map_err(|e| self.err(format!("offsets of {topic}[{partition}]"), e))
    }

    /// Whether every partition of `topic` has a leader, as one Metadata
    /// request answers (false on any error).
    pub fn has_leaders(&self, topic: &str) -> bool {
        let Ok(md) = self
            .client
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(1))
        else {
            return false;
        };
        md.topics().iter().any(|t| {
            t.name() == topic
                && t.error().is_none()
                && !t.partitions().is_empty()
                && t.partitions().iter().all(|p| p.leader() >= 0)
        })
    }

    /// Number of brokers in the cluster.
    pub fn brokers(&self) -> Result<usize, Error> {
        let md = self
            .client
            .inner()
            .fetch_metadata(None, TIMEOUT)
            .map_err(|e| self.err("metadata", e))?;
        Ok(md.brokers().len())
    }

    /// A topic's non-default (topic-level) configs. Brokers that cannot
    /// describe configs yield an empty set and a debug line.
    pub fn topic_configs(&self, topic: &str) -> BTreeMap<String, String> {
        let res = self.rt.block_on(
            self.client
                .describe_configs([&ResourceSpecifier::Topic(topic)], &opts()),
        );
        let mut out = BTreeMap::new();
        match res {
            Ok(list) => {
                for r in list {
                    match r {
                        Ok(res) => {
                            for e in res.entries {
                                if e.source == ConfigSource::DynamicTopic && !e.is_sensitive {
                                    if let Some(v) = e.value {
                                        out.insert(e.name, v);
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::debug!(cluster = %self.name, topic, error = %e, "describe configs failed")
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(cluster = %self.name, topic, error = %e, "describe configs failed")
            }
        }
        out
    }

    /// Creates a topic; an existing one is not an error.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        rf: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<bool, Error> {
        let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(i32::from(rf)));
        for (k, v) in configs {
            t = t.set(k, v);
        }
        let res = self
            .rt
            .block_on(self.client.create_topics([&t], &opts()))
            .map_err(|e| self.err(format!("create topic {name}"), e))?;
        match res.into_iter().next() {
            Some(Ok(_)) => Ok(true),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(false),
            Some(Err((t, e))) => Err(self.err(format!("create topic {t}"), Cause::Broker(e))),
        }
    }

    /// Raises a topic's partition count.
    pub fn add_partitions(&self, name: &str, total: i32) -> Result<(), Error> {
        let p = NewPartitions::new(name, total as usize);
        let res = self
            .rt
            .block_on(self.client.create_partitions([&p], &opts()))
            .map_err(|e| self.err(format!("add partitions to {name}"), e))?;
        for r in res {
            if let Err((t, e)) = r {
                return Err(self.err(format!("add partitions to {t}"), Cause::Broker(e)));
            }
        }
        Ok(())
    }

    /// Replaces a topic's overrides with `configs`.
    pub fn set_configs(&self, name: &str, configs: &BTreeMap<String, String>) -> Result<(), Error> {
        let mut a = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (k, v) in configs {
            a = a.set(k, v);
        }
        let res = self
            .rt
            .block_on(self.client.alter_configs([&a], &opts()))
            .map_err(|e| self.err(format!("alter configs of {name}"), e))?;
        for r in res {
            if let Err((_, e)) = r {
                return Err(self.err(format!("alter configs of {name}"), Cause::Broker(e)));
            }
        }
        Ok(())
    }
}

/// The configs the target topic should have: the source's overrides, with
/// `min.insync.replicas` never lowered below the target's current value.
pub fn wanted_configs(
    source: &BTreeMap<String, String>,
    target: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = source.clone();
    const MIN_ISR: &str = "min.insync.replicas";
    let num = |m: &BTreeMap<String, String>| m.get(MIN_ISR).and_then(|v| v.parse::<i64>().ok());
    if let (Some(t), s) = (num(target), num(source)) {
        if s.is_none_or(|s| s < t) {
            out.insert(MIN_ISR.to_string(), t.to_string());
        }
    }
    out
}

/// The replication factor to create a target topic with, or why not.
pub fn replication_factor(
    flow: &FlowConfig,
    source_rf: i16,
    target_brokers: usize,
) -> Result<i16, Error> {
    let rf = flow.replication_factor.unwrap_or(source_rf).max(1);
    if usize::try_from(rf).unwrap_or(0) > target_brokers {
        return Err(Error::TooFewBrokers {
            rf,
            brokers: target_brokers,
        });
    }
    if flow.replication_factor.is_some_and(|r| r < source_rf) {
        tracing::warn!(flow = %flow.id, source_rf, rf, "creating target topics with a lower replication factor, as configured");
    }
    Ok(rf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn min_isr_is_never_lowered() {
        let got = wanted_configs(
            &m(&[("retention.ms", "1000"), ("min.insync.replicas", "1")]),
            &m(&[("min.insync.replicas", "2")]),
        );
        assert_eq!(
            got,
            m(&[("retention.ms", "1000"), ("min.insync.replicas", "2")])
        );
        let got = wanted_configs(
            &m(&[("min.insync.replicas", "3")]),
            &m(&[("min.insync.replicas", "2")]),
        );
        assert_eq!(got["min.insync.replicas"], "3");
        let got = wanted_configs(&m(&[]), &m(&[("min.insync.replicas", "2")]));
        assert_eq!(got["min.insync.replicas"], "2");
    }

    #[test]
    fn replication_factor_is_never_silently_weakened() {
        let cfg = crate::config::Config::parse(
            "clusters:\n  a: { bootstrap: \"h:1\" }\n  b: { bootstrap: \"h:2\" }\nreplication:\n  flows:\n    - { source: a, target: b, topics: [t] }\n",
        )
        .unwrap();
        let mut flow = cfg.replication.unwrap().flows.remove(0);
        assert_eq!(replication_factor(&flow, 3, 3).unwrap(), 3);
        assert!(replication_factor(&flow, 3, 1)
            .unwrap_err()
            .to_string()
            .contains("needs 3 brokers"));
        flow.replication_factor = Some(1);
        assert_eq!(replication_factor(&flow, 3, 1).unwrap(), 1);
    }
}
