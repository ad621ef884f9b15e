//! Fencing of a shared flow's instances, with Kafka's transactions.
//!
//! Each start of a shared flow on an instance (an *incarnation*) writes
//! the target through a transactional producer of its own id
//! (`kflip-<flow>-<random>`), committing every `commit_interval`. A copy
//! counts (in the offset map, in lag, in checkpoints) only once its
//! transaction committed, so a checkpoint never claims a copy that could
//! still be aborted.
//!
//! Before an incarnation copies a partition, it records itself as the
//! partition's owner in the state topic (`owner|FLOW|TOPIC|PARTITION`,
//! acknowledged before any copy). An owner that hands a partition over in
//! a rebalance commits, checkpoints, and marks its record `released`. The
//! next owner of a partition whose record is not released (its owner died,
//! or is a zombie: paused or cut off past the session timeout) first
//! *fences* that owner's transactional id: `InitProducerId` with it bumps
//! its epoch, which aborts its open transaction and makes every later write
//! or commit of the zombie fail with `PRODUCER_FENCED`. Only then does the
//! new owner read the target (read_committed) to resume. A fenced
//! incarnation stops its flow and starts again as a new one.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ThreadedProducer};

use super::deliver::Deliver;
use super::error::{Error, Side};
use super::runner::TIMEOUT;
use super::state::{checkpoint_key, parse_checkpoint_key, FlowState, SourcePartition};
use crate::cluster::rdkafka::client_config;
use crate::config::ClusterConfig;

/// How long a transaction may stay open before the coordinator aborts it.
pub(super) const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// A new incarnation's transactional id: unique per process and start.
pub(super) fn incarnation(flow: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("kflip-{flow}-{:x}-{nanos:x}", std::process::id())
}

/// Who last owned a partition of a shared flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Owner {
    /// The owner's transactional id.
    pub(super) id: String,
    /// It handed the partition over (committed and checkpointed).
    pub(super) released: bool,
}

impl Owner {
    /// The state topic value.
    pub(super) fn encode(&self) -> String {
        if self.released {
            format!("{} released", self.id)
        } else {
            self.id.clone()
        }
    }

    /// Parses a state topic value.
    pub(super) fn parse(v: &str) -> Option<Owner> {
        let (id, released) = match v.strip_suffix(" released") {
            Some(id) => (id, true),
            None => (v, false),
        };
        (!id.is_empty() && !id.contains(' ')).then(|| Owner {
            id: id.to_string(),
            released,
        })
    }
}

/// The state topic key of a partition's owner.
pub(super) fn owner_key(flow: &str, sp: &SourcePartition) -> String {
    format!("owner|{}", checkpoint_key(flow, sp))
}

/// Parses an owner key back; `None` for another flow's or a foreign key.
pub(super) fn parse_owner_key(flow: &str, key: &str) -> Option<SourcePartition> {
    parse_checkpoint_key(flow, key.strip_prefix("owner|")?)
}

/// Fences the incarnation `id`: its open transaction is aborted, and it
/// can write nothing more.
pub(super) fn fence(target: &ClusterConfig, target_name: &str, id: &str) -> Result<(), Error> {
    let err = |op: &str, e: KafkaError| Error::cluster(Side::Target, target_name, op, e);
    let p: BaseProducer = client_config(target, "kflip-engine-fence")
        .map_err(|e| Error::cluster(Side::Target, target_name, "set up the login", e))?
        .set("transactional.id", id)
        .create()
        .map_err(|e| err("create a fencing producer", e))?;
    p.init_transactions(TIMEOUT)
        .map_err(|e| err("fence a previous owner's transactions", e))
}

/// Commits the open transaction and begins the next: waits (bounded) until
/// nothing is in flight, so delivery reports stay on the producer's own
/// thread, then commits and promotes what it acknowledged.
pub(super) fn commit(
    producer: &ThreadedProducer<Deliver>,
    st: &FlowState,
) -> Result<(), KafkaError> {
    let deadline = Instant::now() + TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    producer.commit_transaction(TIMEOUT)?;
    st.promote();
    st.commits.fetch_add(1, Ordering::Relaxed);
    producer.begin_transaction()
}

/// Queues owner records of `parts` to the state topic and waits (bounded)
/// for the target to acknowledge all of them.
pub(super) fn write_owners(
    st: &FlowState,
    producer: &ThreadedProducer<Deliver>,
    state_topic: &str,
    parts: &[SourcePartition],
    owner: &Owner,
) -> Result<(), String> {
    let value = owner.encode();
    let before = st.owner_acks.load(Ordering::Relaxed);
    let failed = st.owner_failures.load(Ordering::Relaxed);
    for sp in parts {
        let key = owner_key(&st.cfg.id, sp);
        let rec = rdkafka::producer::BaseRecord::with_opaque_to(state_topic, super::deliver::OWNER)
            .key(&key)
            .payload(&value);
        producer
            .send(rec)
            .map_err(|(e, _)| format!("cannot queue an owner record: {e}"))?;
    }
    let want = before + parts.len() as u64;
    let deadline = Instant::now() + TIMEOUT;
    while st.owner_acks.load(Ordering::Relaxed) < want {
        if st.owner_failures.load(Ordering::Relaxed) > failed {
            return Err("the target refused an owner record".into());
        }
        if Instant::now() > deadline {
            return Err(format!("owner records unacknowledged after {TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip() {
        for o in [
            Owner {
                id: "kflip-a->b-1".into(),
                released: false,
            },
            Owner {
                id: "kflip-a->b-1".into(),
                released: true,
            },
        ] {
            assert_eq!(Owner::parse(&o.encode()), Some(o));
        }
        assert_eq!(Owner::parse(""), None);
        assert_eq!(Owner::parse(" released"), None);
        let sp = SourcePartition {
            topic: "t".into(),
            partition: 3,
        };
        let k = owner_key("a->b", &sp);
        assert_eq!(parse_owner_key("a->b", &k), Some(sp.clone()));
        assert_eq!(parse_checkpoint_key("a->b", &k), None);
        assert_eq!(parse_owner_key("b->a", &k), None);
    }
}
