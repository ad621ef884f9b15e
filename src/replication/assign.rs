//! A flow's periodic work besides copying: discovering and creating topics,
//! assigning their partitions, and syncing configs.

use std::collections::{BTreeMap, HashMap};

use rdkafka::producer::Producer;

use super::error::{Error, Side};
use super::runner::Runner;
use super::scan::{recover_from_target, resume_point};
use super::state::{PartState, SourcePartition};
use super::topics::{self, TopicInfo};

impl Runner<'_> {
    /// Finds new matching topics and new partitions, creates what the target
    /// lacks, and starts copying them.
    pub(super) fn discover(&mut self) -> Result<(), Error> {
        let st = self.setup.state.clone();
        let cfg = &st.cfg;
        let topics = self.source_admin.topics()?;
        let mut target: Option<HashMap<String, TopicInfo>> = None;
        let mut assign = Vec::new();
        let mut ids = None;
        let wanted: Vec<&TopicInfo> = topics
            .iter()
            .filter(|t| cfg.wants_topic(&t.name, &self.setup.state_topic))
            .collect();
        if let Some(s) = &mut self.shared {
            s.member
                .subscribe(wanted.iter().map(|t| t.name.clone()).collect())?;
        }
        for t in wanted {
            let known = self.assigned.get(&t.name).copied();
            let ready = known.is_some_and(|n| n >= t.partitions);
            // Unshared, a topic is done once all its partitions are; shared,
            // the partitions the group gives this instance come and go.
            if ready && self.shared.is_none() {
                continue;
            }
            let target_name = cfg.target_topic(&t.name);
            let mut created = false;
            if !ready {
                if target.is_none() {
                    target = Some(
                        self.target_admin
                            .topics()?
                            .into_iter()
                            .map(|x| (x.name.clone(), x))
                            .collect(),
                    );
                }
                let existing = target.as_ref().and_then(|m| m.get(&target_name));
                match existing {
                    None => {
                        let rf = match topics::replication_factor(
                            cfg,
                            t.replication_factor,
                            self.target_admin.brokers()?,
                        ) {
                            Ok(rf) => rf,
                            Err(e) => {
                                st.error(format!("not creating {target_name}: {e}"));
                                continue;
                            }
                        };
                        let configs = topics::wanted_configs(
                            &self.source_admin.topic_configs(&t.name),
                            &BTreeMap::new(),
                        );
                        created = self.target_admin.create_topic(
                            &target_name,
                            t.partitions,
                            rf,
                            &configs,
                        )?;
                        tracing::info!(flow = %cfg.id, topic = %t.name, target = %target_name, partitions = t.partitions, rf, "created target topic");
                    }
                    Some(info) if info.partitions < t.partitions => {
                        if let Err(e) = self.target_admin.add_partitions(&target_name, t.partitions)
                        {
                            st.error(format!(
                            "{} has {} partitions on the source but {} on the target, and adding them failed: {e}",
                            t.name, t.partitions, info.partitions
                        ));
                            continue;
                        }
                        tracing::info!(flow = %cfg.id, topic = %target_name, partitions = t.partitions, "added partitions on the target");
                    }
                    Some(info) if info.partitions > t.partitions => {
                        tracing::warn!(flow = %cfg.id, topic = %target_name, source = t.partitions, target = info.partitions, "target topic has more partitions than the source; the extra ones get no copies");
                    }
                    Some(_) => {}
                }
                // librdkafka refuses a record for a partition its metadata does
                // not have yet (UnknownPartition) instead of waiting for it, so
                // the target producer must see new partitions (just added, or
                // added by someone else) before records for them are queued.
                if t.partitions > known.unwrap_or(0) && !created {
                    let seen = self
                        .producer
                        .client()
                        .fetch_metadata(Some(&target_name), std::time::Duration::from_secs(10))
                        .ok()
                        .and_then(|md| md.topics().first().map(|t| t.partitions().len()))
                        .unwrap_or(0);
                    if (seen as i32) < t.partitions {
                        tracing::debug!(flow = %cfg.id, topic = %target_name, seen, want = t.partitions, "target producer does not see the new partitions yet; retried at the next discovery");
                        continue;
                    }
                }
            }
            // Partitions are assigned in order; one that cannot be resumed
            // (its target does not answer) stops the topic there, and the
            // next discovery pass starts again from it.
            let todo: Vec<i32> = match &self.shared {
                None => (known.unwrap_or(0)..t.partitions).collect(),
                Some(s) => {
                    let parts = st.lock();
                    s.member
                        .owned_of(&t.name)
                        .into_iter()
                        .filter(|&p| {
                            p < t.partitions
                                && !parts.contains_key(&SourcePartition {
                                    topic: t.name.clone(),
                                    partition: p,
                                })
                        })
                        .collect()
                }
            };
            let mut done = known.unwrap_or(0);
            if !todo.is_empty() && self.shared.is_some() {
                let sps: Vec<SourcePartition> = todo
                    .iter()
                    .map(|&p| SourcePartition {
                        topic: t.name.clone(),
                        partition: p,
                    })
                    .collect();
                if let Err(e) = self.take_over(&sps) {
                    st.error(format!(
                        "cannot take over partitions of {}: {e}; retried at the next discovery",
                        t.name
                    ));
                    continue;
                }
            }
            if !todo.is_empty() {
                let read = ids.get_or_insert_with(|| self.source_topic_ids());
                if read.get(&t.name).is_none() {
                    tracing::warn!(flow = %cfg.id, topic = %t.name, "no source topic id: a truncated source log cannot be told from a recreated topic, and is handled as a truncation");
                }
            }
            for p in todo {
                let sp = SourcePartition {
                    topic: t.name.clone(),
                    partition: p,
                };
                let mut map = self.checkpoints.remove(&sp).unwrap_or_default();
                if !created {
                    match recover_from_target(
                        self.setup.target(),
                        &target_name,
                        &st.source_id,
                        &sp,
                        &mut map,
                    ) {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(flow = %cfg.id, topic = %sp.topic, partition = p, copies = n, "found copies made after the last checkpoint")
                        }
                        Err(e) => {
                            st.error(format!(
                                "cannot read {target_name}[{p}] to resume: {e}; retried at the next discovery"
                            ));
                            self.checkpoints.insert(sp, map);
                            break;
                        }
                    }
                }
                let from = resume_point(&map);
                st.lock().insert(
                    sp.clone(),
                    PartState {
                        map,
                        read_next: from,
                        dirty: true,
                        topic_id: self.checkpoint_ids.remove(&sp),
                        ..Default::default()
                    },
                );
                let at = match &ids {
                    Some(ids) => self.check_range(&sp, from, ids),
                    None => from,
                };
                if let Some(state) = st.lock().get_mut(&sp) {
                    state.read_next = at;
                }
                assign.push((sp.clone(), at));
                done = p + 1;
            }
            if self.shared.is_some() {
                if !ready {
                    tracing::info!(flow = %cfg.id, topic = %t.name, target = %target_name, of = t.partitions, "replicating topic (shared)");
                    self.assigned.insert(t.name.clone(), t.partitions);
                }
            } else if done > known.unwrap_or(0) {
                tracing::info!(flow = %cfg.id, topic = %t.name, target = %target_name, partitions = done, of = t.partitions, "replicating topic");
                if let Some(w) = &self.writer {
                    let configs = self.target_admin.topic_configs(&target_name);
                    w.limit_topic(&target_name, configs.get("max.message.bytes"));
                }
                self.assigned.insert(t.name.clone(), done);
            }
        }
        if !assign.is_empty() {
            self.source.assign(assign).map_err(|e| {
                Error::cluster(Side::Source, cfg.source.as_str(), "assign partitions", e)
            })?;
        }
        Ok(())
    }

    /// Brings target topic configs in line with the source's.
    pub(super) fn sync_configs(&self) {
        let cfg = &self.setup.state.cfg;
        for topic in self.assigned.keys() {
            let target = cfg.target_topic(topic);
            let src = self.source_admin.topic_configs(topic);
            let tgt = self.target_admin.topic_configs(&target);
            let want = topics::wanted_configs(&src, &tgt);
            if let Some(w) = &self.writer {
                w.limit_topic(&target, want.get("max.message.bytes"));
            }
            if want != tgt {
                match self.target_admin.set_configs(&target, &want) {
                    Ok(()) => {
                        tracing::info!(flow = %cfg.id, topic = %target, ?want, "synced topic configs")
                    }
                    Err(e) => self
                        .setup
                        .state
                        .error(format!("config sync of {target}: {e}")),
                }
            }
        }
    }
}
