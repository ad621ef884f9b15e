//! A shared flow's membership: several kflip instances split the flow's
//! partitions through a consumer group on the source cluster
//! (`_kflip-engine-<flow id>`, cooperative-sticky assignment), so Kafka's
//! own group protocol does membership, assignment and failure detection.
//!
//! The member is a librdkafka consumer of its own that subscribes to the
//! flow's topics and never reads them (its partitions are paused as they
//! arrive): the copy keeps its manually assigned consumer, and asks this
//! one which partitions are its own.
//!
//! Handing a partition over is the rebalance's revocation, and it blocks:
//! before the partition can go to another instance, this one stops reading
//! it, waits for every copy in flight to be acknowledged, writes its
//! checkpoint and waits for that too (`release`). The next owner then reads
//! the checkpoint and the target from its end, as a restart does, so a
//! handover neither loses nor duplicates. A partition *lost* (this
//! instance was silent past the session timeout, and the group already
//! gave it away) is dropped without a checkpoint: the new owner's progress
//! must not be overwritten.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};

use super::error::{Error, Side};
use super::state::SourcePartition;
use crate::config::{ClusterConfig, FlowConfig};

/// What a revocation does with the partitions: (partitions, lost).
pub(super) type Release = Box<dyn Fn(&[SourcePartition], bool) + Send + Sync>;

/// The partitions the group gave this instance.
#[derive(Default)]
pub(super) struct Owned {
    /// Assigned now.
    pub(super) parts: BTreeSet<SourcePartition>,
    /// Some were assigned since the last [`Member::take_gained`].
    gained: bool,
}

struct MemberCtx {
    flow: String,
    owned: Arc<Mutex<Owned>>,
    release: Release,
}

fn partitions(tpl: &TopicPartitionList) -> Vec<SourcePartition> {
    tpl.elements()
        .iter()
        .map(|e| SourcePartition {
            topic: e.topic().to_string(),
            partition: e.partition(),
        })
        .collect()
}

impl ClientContext for MemberCtx {}

impl ConsumerContext for MemberCtx {
    fn pre_rebalance(&self, base: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Revoke(tpl) => {
                let parts = partitions(tpl);
                let lost = base.assignment_lost();
                tracing::info!(flow = %self.flow, partitions = parts.len(), lost, "partitions leave this instance");
                (self.release)(&parts, lost);
                let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
                for p in &parts {
                    owned.parts.remove(p);
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(flow = %self.flow, error = %e, "flow group rebalance failed")
            }
        }
    }

    fn post_rebalance(&self, base: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            // The member only holds partitions; the copy reads them.
            if let Err(e) = base.pause(tpl) {
                tracing::warn!(flow = %self.flow, error = %e, "cannot pause the group member's partitions");
            }
            let parts = partitions(tpl);
            tracing::info!(flow = %self.flow, partitions = parts.len(), "partitions come to this instance");
            let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
            owned.gained |= !parts.is_empty();
            owned.parts.extend(parts);
        }
    }
}

/// This instance's membership in a shared flow's group.
pub(super) struct Member {
    consumer: BaseConsumer<MemberCtx>,
    owned: Arc<Mutex<Owned>>,
    subscribed: Vec<String>,
}

impl Member {
    /// Joins nothing yet: [`Member::subscribe`] does, with the first topics.
    pub(super) fn new(
        cfg: &FlowConfig,
        source: &ClusterConfig,
        release: Release,
    ) -> Result<Member, Error> {
        let owned = Arc::new(Mutex::new(Owned::default()));
        let consumer = crate::cluster::rdkafka::client_config(source, "kflip-engine-member")
            .map_err(|e| Error::cluster(Side::Source, cfg.source.as_str(), "set up the login", e))?
            .set("group.id", group_id(&cfg.id))
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "session.timeout.ms",
                cfg.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (cfg.session_timeout.as_millis() / 5).max(500).to_string(),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            // It never reads: its partitions are paused as they come.
            .set("message.max.bytes", "1000")
            .set("fetch.max.bytes", "1024")
            .set("max.partition.fetch.bytes", "1024")
            .create_with_context(MemberCtx {
                flow: cfg.id.clone(),
                owned: owned.clone(),
                release,
            })
            .map_err(|e| {
                Error::cluster(
                    Side::Source,
                    cfg.source.as_str(),
                    "create the flow's group member",
                    e,
                )
            })?;
        Ok(Member {
            consumer,
            owned,
            subscribed: Vec::new(),
        })
    }

    /// Subscribes to `topics` (every instance subscribes to what it
    /// discovered; the group assigns the partitions of each topic among
    /// the instances that subscribe to it).
    pub(super) fn subscribe(&mut self, mut topics: Vec<String>) -> Result<(), Error> {
        topics.sort();
        if topics == self.subscribed || topics.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&names).map_err(|e| {
            Error::Internal(format!("cannot subscribe the flow's group member: {e}"))
        })?;
        self.subscribed = topics;
        Ok(())
    }

    /// Serves the group: heartbeats' answers and rebalances (a revocation
    /// releases its partitions before this returns). Records it fetched
    /// before its partitions were paused are dropped.
    pub(super) fn serve(&self) {
        while self.consumer.poll(Duration::ZERO).is_some() {}
    }

    /// The partitions of `topic` this instance owns.
    pub(super) fn owned_of(&self, topic: &str) -> Vec<i32> {
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .parts
            .iter()
            .filter(|p| p.topic == topic)
            .map(|p| p.partition)
            .collect()
    }

    /// Whether partitions came since the last call.
    pub(super) fn take_gained(&self) -> bool {
        std::mem::take(&mut self.owned.lock().unwrap_or_else(|e| e.into_inner()).gained)
    }

    /// Leaves the group, releasing every partition (a stop).
    pub(super) fn leave(&self) {
        self.consumer.unsubscribe();
        // The revocation is served by polling.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline
            && !self
                .owned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .parts
                .is_empty()
        {
            self.consumer.poll(Duration::from_millis(50));
        }
    }
}

/// The consumer group of a shared flow on its source.
pub fn group_id(flow: &str) -> String {
    format!("_kflip-engine-{flow}")
}
