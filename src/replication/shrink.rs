//! A source partition whose log now ends before what was already copied,
//! or whose topic has another id: told apart by the topic id (KIP-516).
//!
//! - Same id, log end `high` below `at`: a truncation (on Apache Kafka, an
//!   unclean leader election). Offsets `high..at` vanished after they were
//!   copied; their copies on the target are orphans, reported once with
//!   their target offsets and left where they are. The offset map forgets
//!   them and copying goes on from `high`, where the source writes other
//!   records.
//! - Another id: the topic was deleted and created again. Its partitions
//!   are new ones: the map starts again, copying starts from the log start.
//! - No id to compare (a broker without Metadata v10, an error, a map saved
//!   before ids were kept): handled as a truncation and said so, since
//!   copying again from the start would duplicate what the target holds
//!   with no evidence that the records differ.
//!
//! A shrunk log end is read twice before it counts (a broker that
//! misreports it once must not cause copies of copies); the smaller reading
//! is the truncation point, so records written in between are copied.
//!
//! librdkafka learns topic ids but does not act on a changed one (a
//! recreated topic that grew past the copied offset is read on from there),
//! so kflip reads ids with its own client: when a partition is assigned
//! (against the id saved with its checkpoint) and at every config sync.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use super::error::{Error, Side};
use super::runner::Runner;
use super::state::{FlowState, SourcePartition};
use crate::kafka::KafkaConn;
use crate::offsets::{OffsetMap, Run, SourceOffset};

const TIMEOUT: Duration = Duration::from_secs(10);

/// What a partition whose log changed under the engine is, by topic id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    /// The topic still has the id the map was started under.
    SameTopic(Uuid),
    /// The topic has another id: it was deleted and created again.
    Recreated {
        /// The id the map was started under.
        was: Uuid,
        /// The topic's id now.
        now: Uuid,
    },
    /// One of the two ids is not known.
    Unknown,
}

/// Judges a partition by the id its map was started under and the id its
/// topic has now. The nil id (what brokers send for "no id") is no id.
pub(super) fn judge(known: Option<Uuid>, now: Option<Uuid>) -> Cause {
    match (known.filter(|u| !u.is_nil()), now.filter(|u| !u.is_nil())) {
        (Some(was), Some(now)) if was == now => Cause::SameTopic(now),
        (Some(was), Some(now)) => Cause::Recreated { was, now },
        _ => Cause::Unknown,
    }
}

/// The source's topic ids as read at one moment, or why they could not be.
pub(super) struct TopicIds(Result<HashMap<String, Uuid>, Error>);

impl TopicIds {
    /// The id of `topic`, if the source reported one.
    pub(super) fn get(&self, topic: &str) -> Option<Uuid> {
        self.0.as_ref().ok()?.get(topic).copied()
    }

    /// Why `topic` has no id here, for log lines.
    fn why_unknown(&self, topic: &str) -> String {
        match &self.0 {
            Err(e) => format!("the source's topic ids cannot be read: {e}"),
            Ok(_) if self.get(topic).is_none() => {
                "the source reports no id for the topic (a broker before Metadata v10?)".into()
            }
            Ok(_) => "no id was saved when copying of the partition began".into(),
        }
    }
}

/// The target offset ranges of `runs` (`"100..150, 170..171"`) and how
/// many records they hold.
pub(super) fn target_ranges(runs: &[Run]) -> (String, u64) {
    let text = runs
        .iter()
        .map(|r| format!("{}..{}", r.target, r.target_end()))
        .collect::<Vec<_>>()
        .join(", ");
    (text, runs.iter().map(|r| r.len).sum())
}

/// Logs what an operator must act on, with the partition's fields, and
/// keeps it as the flow's last error for status.
fn alarm(st: &FlowState, sp: &SourcePartition, message: String) {
    tracing::error!(flow = %st.cfg.id, topic = %sp.topic, partition = sp.partition, "{message}");
    *st.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
}

impl Runner<'_> {
    /// Every source topic's id, read with kflip's own client (librdkafka
    /// does not expose them).
    pub(super) fn source_topic_ids(&self) -> TopicIds {
        let read = self.setup.rt.block_on(async {
            let mut conn = KafkaConn::connect_any(&self.setup.clusters.source, TIMEOUT).await?;
            conn.topic_ids().await
        });
        TopicIds(
            read.map(|ids| ids.into_iter().filter(|(_, id)| !id.is_nil()).collect())
                .map_err(|e| {
                    Error::cluster(
                        Side::Source,
                        self.setup.state.cfg.source.as_str(),
                        "read topic ids",
                        e,
                    )
                }),
        )
    }

    /// Keeps `now` as the id of `sp`'s topic if none was known.
    fn learn_id(&self, sp: &SourcePartition, now: Option<Uuid>) {
        let Some(now) = now else { return };
        if let Some(p) = self.setup.state.lock().get_mut(sp) {
            if p.topic_id.is_none() {
                p.topic_id = Some(now);
                p.topic_id_dirty = true;
            }
        }
    }

    /// Checks `at`, where `sp` would be read next, against the partition's
    /// range and its topic's id (`ids`, read just before); handles a
    /// recreation or truncation found. Returns where to read.
    pub(super) fn check_range(&self, sp: &SourcePartition, at: i64, ids: &TopicIds) -> i64 {
        let st = &self.setup.state;
        let Ok((low, high)) = self.source_admin.watermarks(&sp.topic, sp.partition) else {
            return at;
        };
        let known = st.lock().get(sp).and_then(|p| p.topic_id);
        let cause = judge(known, ids.get(&sp.topic));
        if let Cause::Recreated { was, now } = cause {
            if self.source_topic_ids().get(&sp.topic) == Some(now) {
                self.recreated(sp, at, low, was, now);
                return low;
            }
            tracing::warn!(flow = %st.cfg.id, topic = %sp.topic, partition = sp.partition, %was, %now, "the source topic's id read differently twice; checked again at the next config sync");
            return at;
        }
        self.learn_id(sp, ids.get(&sp.topic));
        if at < low {
            alarm(st, sp, format!(
                "source {}[{}] was truncated under the engine: offsets {at}..{low} were deleted before they were copied",
                sp.topic, sp.partition
            ));
            return low;
        }
        if high >= at {
            return at;
        }
        let Ok((_, again)) = self.source_admin.watermarks(&sp.topic, sp.partition) else {
            return at;
        };
        if again >= at {
            tracing::warn!(flow = %st.cfg.id, topic = %sp.topic, partition = sp.partition, first = high, second = again, copied_to = at, "the source log end read below what was copied, then not; the first reading is ignored");
            return at;
        }
        let high = high.min(again);
        self.truncated(sp, at, high, cause, ids);
        high
    }

    /// The topic of `sp` was recreated: copies it again from `low`.
    fn recreated(&self, sp: &SourcePartition, at: i64, low: i64, was: Uuid, now: Uuid) {
        self.drain();
        let st = &self.setup.state;
        if let Some(p) = st.lock().get_mut(sp) {
            p.map = OffsetMap::new();
            p.map.advance_frontier(SourceOffset(low));
            p.topic_id = Some(now);
            p.topic_id_dirty = true;
            p.dirty = true;
            p.read_next = low;
            p.source_end = -1;
        }
        alarm(st, sp, format!(
            "source topic recreated: {} has a new topic id ({was} is now {now}); partition {} of the new topic is copied from its log start {low}. \
             The target keeps the copies of the old topic (its source offsets below {at}); the new copies follow them",
            sp.topic, sp.partition
        ));
    }

    /// The log of `sp` was cut back to `high` after `..at` was copied:
    /// reports the orphaned copies and goes on from `high`.
    fn truncated(&self, sp: &SourcePartition, at: i64, high: i64, cause: Cause, ids: &TopicIds) {
        // Copies still in flight are of records the source lost: let them
        // land so they are counted, and not recorded after the cut.
        self.drain();
        let st = &self.setup.state;
        let dropped = match st.lock().get_mut(sp) {
            Some(p) => {
                p.dirty = true;
                p.read_next = high;
                p.source_end = -1;
                p.map.truncate_from(SourceOffset(high))
            }
            None => Vec::new(),
        };
        let (targets, copies) = target_ranges(&dropped);
        let orphans = if copies == 0 {
            "none of them had copies on the target".to_string()
        } else {
            format!("their copies on the target at offsets {targets} ({copies} records) are orphans, left in place")
        };
        let (topic, partition) = (&sp.topic, sp.partition);
        let message = match cause {
            Cause::SameTopic(id) => format!(
                "source log truncated below what was copied: {topic}[{partition}] (same topic id {id}) now ends at {high}, \
                 but source offsets {high}..{at} were already copied; {orphans}. Copying continues from {high}, \
                 where the source writes new records"
            ),
            _ => format!(
                "source log ends below what was copied and the topic id cannot tell truncation from recreation ({}): \
                 {topic}[{partition}] now ends at {high}, but source offsets {high}..{at} were already copied; {orphans}. \
                 Handled as a truncation: copying continues from {high}, not from the start; \
                 if the topic was in fact recreated, its records below {high} were not copied",
                ids.why_unknown(topic)
            ),
        };
        alarm(st, sp, message);
    }

    /// Finds partitions whose source log now ends before what was already
    /// read, or whose topic has another id, which a broker does not always
    /// signal with an error, and handles them. One Metadata request and one
    /// ListOffsets per partition, so it runs with the config sync.
    pub(super) fn check_shrunk(&self) {
        let st = &self.setup.state;
        let parts: Vec<(SourcePartition, i64, Option<Uuid>)> = st
            .lock()
            .iter()
            .map(|(k, p)| (k.clone(), p.read_next, p.topic_id))
            .collect();
        if parts.is_empty() {
            return;
        }
        let ids = self.source_topic_ids();
        for (sp, at, known) in parts {
            let now = ids.get(&sp.topic);
            let recreated = matches!(judge(known, now), Cause::Recreated { .. });
            let shrunk = !recreated
                && self
                    .source_admin
                    .watermarks(&sp.topic, sp.partition)
                    .is_ok_and(|(_, high)| high < at);
            if !recreated && !shrunk {
                self.learn_id(&sp, now);
                continue;
            }
            let to = self.check_range(&sp, at, &ids);
            if to != at || recreated {
                self.seek(&sp, to);
            }
        }
    }

    /// The fetch of `sp` found that its source log holds the epoch of the
    /// last batch read only up to `end` (KIP-320): after an unclean leader
    /// election. If the log has not also shrunk below what was read (which
    /// `check_range` handles), it has grown back past it: the records from
    /// `end` on that were copied are gone from the source, and other ones
    /// sit at their offsets.
    pub(super) fn diverged(&self, sp: &SourcePartition, end: i64) {
        let Some(at) = self.setup.state.lock().get(sp).map(|p| p.read_next) else {
            return;
        };
        let ids = self.source_topic_ids();
        let mut to = self.check_range(sp, at, &ids);
        if to == at && (0..at).contains(&end) {
            let known = self.setup.state.lock().get(sp).and_then(|p| p.topic_id);
            self.truncated(sp, at, end, judge(known, ids.get(&sp.topic)), &ids);
            to = end;
        }
        self.seek(sp, to);
    }

    /// Reads `sp` from `to` on.
    pub(super) fn seek(&self, sp: &SourcePartition, to: i64) {
        if let Err(e) = self.source.seek(sp, to) {
            self.setup.state.error(format!(
                "cannot move the source reader of {}[{}] to {to}: {e}",
                sp.topic, sp.partition
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offsets::TargetOffset;
    use crate::replication::error::Cause as Failure;

    #[test]
    fn ids_tell_truncation_from_recreation_and_unknown_is_neither() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_eq!(judge(Some(a), Some(a)), Cause::SameTopic(a));
        assert_eq!(judge(Some(a), Some(b)), Cause::Recreated { was: a, now: b });
        assert_eq!(
            judge(None, Some(a)),
            Cause::Unknown,
            "a map from an old checkpoint"
        );
        assert_eq!(judge(Some(a), None), Cause::Unknown, "ids unreadable now");
        assert_eq!(
            judge(Some(a), Some(Uuid::nil())),
            Cause::Unknown,
            "nil is no id"
        );
        assert_eq!(judge(Some(Uuid::nil()), Some(a)), Cause::Unknown);
    }

    #[test]
    fn orphaned_copies_are_named_by_target_offsets() {
        let runs = [
            Run {
                source: SourceOffset(100),
                target: TargetOffset(100),
                len: 40,
            },
            Run {
                source: SourceOffset(145),
                target: TargetOffset(160),
                len: 5,
            },
        ];
        assert_eq!(target_ranges(&runs), ("100..140, 160..165".to_string(), 45));
        assert_eq!(target_ranges(&[]), (String::new(), 0));
    }

    #[test]
    fn unknown_ids_say_why() {
        let err = TopicIds(Err(Error::cluster(
            Side::Source,
            "dc1",
            "read topic ids",
            Failure::TimedOut(Duration::from_secs(1)),
        )));
        assert!(err
            .why_unknown("t")
            .contains("read topic ids on source cluster dc1"));
        let none = TopicIds(Ok(HashMap::new()));
        assert!(none.why_unknown("t").contains("Metadata v10"));
        let some = TopicIds(Ok([("t".to_string(), Uuid::from_u128(7))].into()));
        assert!(some.why_unknown("t").contains("no id was saved"));
    }
}
