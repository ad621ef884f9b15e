//! A shared flow's partitions coming and going: joining the flow's group,
//! committing on time, taking a partition over (fencing its previous owner
//! if it did not hand it over), and handing one over (see `super::txn`
//! and `super::membership`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::ThreadedProducer;

use super::checkpoints::write_maps;
use super::clients;
use super::deliver::{Deliver, SourceStats};
use super::error::{Error, Side};
use super::flow::FlowSetup;
use super::membership::{Member, Release};
use super::runner::Runner;
use super::state::{FlowState, SourcePartition};
use super::txn::{self, Owner};

/// How often the copy loop serves its group member (rebalances are
/// handled there; heartbeats run on librdkafka's own thread).
const SERVE_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// A shared flow's membership and fencing.
pub(super) struct Shared {
    /// This instance in the flow's group.
    pub(super) member: Member,
    /// This incarnation's transactional id.
    pub(super) id: String,
    /// Writes checkpoints and owner records, outside transactions.
    pub(super) state_producer: Arc<ThreadedProducer<Deliver>>,
    /// The owners the state topic named when it was last read.
    pub(super) owners: HashMap<SourcePartition, Owner>,
    /// Incarnations this one fenced.
    fenced: HashSet<String>,
    /// A commit failed (fenced, or the transaction broke): handovers only
    /// forget their partitions, and the flow starts again.
    dead: Arc<AtomicBool>,
    /// When the open transaction commits.
    next_commit: Instant,
    /// When the group is next served (not once per record copied).
    next_serve: Instant,
}

impl Shared {
    /// Joins the flow's group (as partitions arrive, see
    /// [`Runner::serve_group`]).
    pub(super) fn start(
        setup: &FlowSetup,
        id: String,
        source: &Arc<BaseConsumer<SourceStats>>,
        producer: &Arc<ThreadedProducer<Deliver>>,
        owners: HashMap<SourcePartition, Owner>,
    ) -> Result<Shared, Error> {
        let st = &setup.state;
        // Partitions of an earlier start are this instance's only once
        // the group says so again.
        st.lock().clear();
        let state_producer = Arc::new(clients::target_producer(setup, None)?);
        let dead = Arc::new(AtomicBool::new(false));
        let member = Member::new(
            &st.cfg,
            &setup.clusters.source,
            release(Handover {
                st: st.clone(),
                source: source.clone(),
                producer: producer.clone(),
                state_producer: state_producer.clone(),
                state_topic: setup.state_topic.clone(),
                id: id.clone(),
                dead: dead.clone(),
            }),
        )?;
        tracing::info!(flow = %st.cfg.id, incarnation = %id, "joining the flow's group");
        Ok(Shared {
            member,
            id,
            state_producer,
            owners,
            fenced: HashSet::new(),
            dead,
            next_commit: Instant::now() + st.cfg.commit_interval,
            next_serve: Instant::now(),
        })
    }
}

impl Runner<'_> {
    /// Serves a shared flow's group and commits its transaction on time;
    /// returns whether partitions came to this instance (their previous
    /// owners' last checkpoints are read again). An error stops the flow,
    /// to start again as a new incarnation.
    pub(super) fn serve_group(&mut self) -> Result<bool, Error> {
        let Some(s) = &mut self.shared else {
            return Ok(false);
        };
        let st = &self.setup.state;
        let now = Instant::now();
        if now < s.next_serve && now < s.next_commit {
            return Ok(false);
        }
        s.next_serve = now + SERVE_EVERY;
        s.member.serve();
        if !s.dead.load(Ordering::Relaxed) && now >= s.next_commit {
            if let Err(e) = txn::commit(&self.producer, st) {
                s.dead.store(true, Ordering::Relaxed);
                tracing::warn!(flow = %st.cfg.id, incarnation = %s.id, error = %e, "transaction failed");
            }
            s.next_commit = now + st.cfg.commit_interval;
        }
        if s.dead.load(Ordering::Relaxed) {
            return Err(Error::cluster(
                Side::Target,
                st.cfg.target.as_str(),
                "commit the copies",
                super::error::Cause::Fenced,
            ));
        }
        if !s.member.take_gained() {
            return Ok(false);
        }
        self.reload_checkpoints();
        Ok(true)
    }

    /// Makes `parts` this incarnation's before anything of theirs is read
    /// from the target: fences each previous owner that did not hand its
    /// partition over, then records this one as the owner.
    pub(super) fn take_over(&mut self, parts: &[SourcePartition]) -> Result<(), Error> {
        let Some(s) = &mut self.shared else {
            return Ok(());
        };
        let st = &self.setup.state;
        let stale: BTreeSet<String> = parts
            .iter()
            .filter_map(|sp| s.owners.get(sp))
            .filter(|o| o.id != s.id && !o.released && !s.fenced.contains(&o.id))
            .map(|o| o.id.clone())
            .collect();
        for id in stale {
            tracing::warn!(flow = %st.cfg.id, previous = %id, "fencing a previous owner that did not hand its partitions over");
            txn::fence(&self.setup.clusters.target, st.cfg.target.as_str(), &id)?;
            s.fenced.insert(id);
        }
        let me = Owner {
            id: s.id.clone(),
            released: false,
        };
        txn::write_owners(st, &s.state_producer, &self.setup.state_topic, parts, &me)
            .map_err(Error::Internal)?;
        for sp in parts {
            s.owners.insert(sp.clone(), me.clone());
        }
        tracing::info!(flow = %st.cfg.id, incarnation = %s.id, partitions = parts.len(), "taking over partitions");
        Ok(())
    }

    /// A stopping shared flow commits what its last handovers left.
    pub(super) fn finish_shared(&self) {
        if let Some(s) = &self.shared {
            s.member.leave();
            if !s.dead.load(Ordering::Relaxed) {
                if let Err(e) = txn::commit(&self.producer, &self.setup.state) {
                    tracing::warn!(flow = %self.setup.state.cfg.id, error = %e, "last commit failed");
                }
            }
        }
    }
}

/// What a handover needs.
struct Handover {
    st: Arc<FlowState>,
    source: Arc<BaseConsumer<SourceStats>>,
    producer: Arc<ThreadedProducer<Deliver>>,
    state_producer: Arc<ThreadedProducer<Deliver>>,
    state_topic: String,
    id: String,
    dead: Arc<AtomicBool>,
}

/// What a shared flow does with partitions that leave this instance: stop
/// reading them, commit their copies, checkpoint them and record them
/// released, then forget them. Partitions the group already gave away
/// (`lost`: this instance was silent past the session timeout) are only
/// forgotten: their next owner fences this incarnation.
fn release(h: Handover) -> Release {
    Box::new(move |parts, lost| {
        let st = &h.st;
        let held: Vec<SourcePartition> = {
            let g = st.lock();
            parts
                .iter()
                .filter(|p| g.contains_key(p))
                .cloned()
                .collect()
        };
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in &held {
            tpl.add_partition(&p.topic, p.partition);
        }
        if tpl.count() > 0 {
            if let Err(e) = h.source.incremental_unassign(&tpl) {
                tracing::warn!(flow = %st.cfg.id, error = %e, "cannot stop reading released partitions");
            }
        }
        let handed = !lost && !h.dead.load(Ordering::Relaxed) && handover(&h, &held);
        let mut g = st.lock();
        for p in &held {
            g.remove(p);
        }
        tracing::info!(flow = %st.cfg.id, partitions = held.len(), lost, handed, "partitions released");
    })
}

/// Commits, checkpoints and marks `held` released; false if any step failed
/// (the next owner then fences this incarnation).
fn handover(h: &Handover, held: &[SourcePartition]) -> bool {
    let st = &h.st;
    if let Err(e) = txn::commit(&h.producer, st) {
        h.dead.store(true, Ordering::Relaxed);
        tracing::warn!(flow = %st.cfg.id, error = %e, "cannot commit partitions being handed over");
        return false;
    }
    for (k, p) in st.lock().iter_mut() {
        if held.contains(k) {
            p.dirty = true;
        }
    }
    let before = st.checkpoint_acks.load(Ordering::Relaxed);
    let queued = write_maps(st, &h.state_producer, &h.state_topic, Some(held));
    let deadline = Instant::now() + super::runner::TIMEOUT;
    while st.checkpoint_acks.load(Ordering::Relaxed) < before + queued {
        if Instant::now() > deadline {
            tracing::warn!(flow = %st.cfg.id, "checkpoints of partitions handed over unacknowledged; their next owner reads the target instead");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let released = Owner {
        id: h.id.clone(),
        released: true,
    };
    match txn::write_owners(st, &h.state_producer, &h.state_topic, held, &released) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(flow = %st.cfg.id, error = %e, "cannot record partitions released; their next owner fences this instance");
            false
        }
    }
}
