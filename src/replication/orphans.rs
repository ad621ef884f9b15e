//! Orphans: records the old cluster acknowledged that the engine had not
//! copied when a disaster switch left it.
//!
//! When the old cluster comes back, the flow from it would copy them next,
//! after the records clients wrote to the new cluster during the failover:
//! older writes interleaved after newer ones, silently. Instead, a disaster
//! switch puts every partition of the flows away from the old cluster under
//! watch, from where the flow had got to. The flow's first read of the
//! partition after that learns the old cluster's log end, and the records
//! between are orphans:
//! - `orphans: hold` (the default) does not copy them; each range is
//!   reported (topic, partition, offsets, records, time span);
//! - `orphans: copy` copies them as the flow reads them, and reports them
//!   as copied out of order. Setting it later (a hot reload restarts the
//!   flow) copies the ranges held so far: the operator's full restore.
//!
//! Copies of the new cluster's records (what the flow back wrote to the old
//! cluster since it returned) are skipped as always; they are not orphans.
//! The watch is kept in the state topic on the target (key
//! `orphans|FLOW|TOPIC|PARTITION`, value the first offset watched; a
//! tombstone once the range is known), so a kflip that restarts while the
//! old cluster is down still holds the orphans back when it returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::state::SourcePartition;

/// A range of orphans of one partition.
#[derive(Clone, Debug, PartialEq)]
pub struct OrphanRange {
    /// The flow (`source->target`).
    pub flow: String,
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First source offset of the range.
    pub from: i64,
    /// Source offset after the range.
    pub to: i64,
    /// Orphans in the range (the old cluster's own records).
    pub records: u64,
    /// Timestamps of the oldest and newest orphan (ms).
    pub first_ts: i64,
    /// See `first_ts`.
    pub last_ts: i64,
    /// Whether they were copied to the target.
    pub copied: bool,
}

/// One watched partition.
struct Watch {
    from: i64,
    to: Option<i64>,
    records: u64,
    first_ts: i64,
    last_ts: i64,
}

impl From<i64> for Watch {
    fn from(from: i64) -> Watch {
        Watch {
            from,
            to: None,
            records: 0,
            first_ts: 0,
            last_ts: 0,
        }
    }
}

#[derive(Default)]
struct Book {
    watches: HashMap<(String, SourcePartition), Watch>,
    found: Vec<OrphanRange>,
    /// Watches to persist: started (`Some(from)`) or resolved (`None`).
    changes: Vec<(String, SourcePartition, Option<i64>)>,
}

/// The state-topic key of a watched partition of `flow`.
pub fn watch_key(flow: &str, sp: &SourcePartition) -> String {
    format!("orphans|{}", super::state::checkpoint_key(flow, sp))
}

/// The partition of `flow` a state-topic key watches, if it is such a key.
pub fn parse_watch_key(flow: &str, key: &str) -> Option<SourcePartition> {
    super::state::parse_checkpoint_key(flow, key.strip_prefix("orphans|")?)
}

/// The engine's record of orphans, shared with its flows.
#[derive(Clone, Default)]
pub struct Orphans(Arc<Shared>);

#[derive(Default)]
struct Shared {
    book: Mutex<Book>,
    /// Whether any partition is watched: every record a flow reads is
    /// checked, and almost always nothing is.
    watching: AtomicBool,
}

impl Orphans {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any partition is watched (then each record read is
    /// checked).
    pub fn watching(&self) -> bool {
        self.0.watching.load(Ordering::SeqCst)
    }

    /// Watches these partitions of `flow` from the given source offsets
    /// (a disaster switch); the watches are persisted by the flow.
    pub fn watch(&self, flow: &str, parts: impl IntoIterator<Item = (SourcePartition, i64)>) {
        let mut book = self.lock();
        for (sp, from) in parts {
            let key = (flow.to_string(), sp.clone());
            if book.watches.contains_key(&key) {
                continue;
            }
            book.watches.insert(key, Watch::from(from));
            book.changes.push((flow.to_string(), sp, Some(from)));
        }
        self.0
            .watching
            .store(!book.watches.is_empty(), Ordering::SeqCst);
    }

    /// Watches read back from the state topic when the flow starts.
    pub fn resume(&self, flow: &str, parts: impl IntoIterator<Item = (SourcePartition, i64)>) {
        let mut book = self.lock();
        for (sp, from) in parts {
            tracing::info!(flow, topic = %sp.topic, partition = sp.partition, from, "orphan watch from an earlier disaster switch resumed");
            book.watches
                .entry((flow.to_string(), sp))
                .or_insert(Watch::from(from));
        }
        self.0
            .watching
            .store(!book.watches.is_empty(), Ordering::SeqCst);
    }

    /// Watch changes of `flow` to persist, oldest first.
    pub fn take_changes(&self, flow: &str) -> Vec<(SourcePartition, Option<i64>)> {
        let mut book = self.lock();
        let (mine, rest) = std::mem::take(&mut book.changes)
            .into_iter()
            .partition(|(f, _, _)| f == flow);
        book.changes = rest;
        mine.into_iter().map(|(_, sp, c)| (sp, c)).collect()
    }

    /// A record the flow read, at `(offset, timestamp)`: returns whether to
    /// hold it back. `native` says it is not a copy of the target's; `end`
    /// reads the source log end (once per watched partition); `copy` is the
    /// flow's policy.
    pub fn check(
        &self,
        flow: &str,
        sp: &SourcePartition,
        (offset, ts): (i64, i64),
        native: bool,
        copy: bool,
        end: impl FnOnce() -> Option<i64>,
    ) -> bool {
        if !self.0.watching.load(Ordering::SeqCst) {
            return false;
        }
        let mut book = self.lock();
        let key = (flow.to_string(), sp.clone());
        let Some(w) = book.watches.get_mut(&key) else {
            return false;
        };
        if offset < w.from {
            return false;
        }
        if w.to.is_none() {
            w.to = end();
        }
        // Without the log end the range is unknown: hold, and ask again.
        let to = w.to.unwrap_or(i64::MAX);
        let inside = offset < to;
        if inside && native {
            if w.records == 0 {
                w.first_ts = ts;
            }
            w.records += 1;
            w.last_ts = ts;
        }
        if !inside || offset + 1 >= to {
            let w = book.watches.remove(&key).expect("found above");
            book.changes.push((flow.to_string(), sp.clone(), None));
            self.0
                .watching
                .store(!book.watches.is_empty(), Ordering::SeqCst);
            if w.records > 0 {
                let range = OrphanRange {
                    flow: flow.to_string(),
                    topic: sp.topic.clone(),
                    partition: sp.partition,
                    from: w.from,
                    to,
                    records: w.records,
                    first_ts: w.first_ts,
                    last_ts: w.last_ts,
                    copied: copy,
                };
                report(&range);
                book.found.push(range);
            }
        }
        inside && native && !copy
    }

    /// Ranges of `flow` held back and not copied yet.
    pub fn held(&self, flow: &str) -> Vec<OrphanRange> {
        self.lock()
            .found
            .iter()
            .filter(|r| r.flow == flow && !r.copied)
            .cloned()
            .collect()
    }

    /// A held range was copied.
    pub fn copied(&self, range: &OrphanRange) {
        let mut book = self.lock();
        for r in book.found.iter_mut().filter(|r| *r == range) {
            r.copied = true;
        }
    }

    /// Every range found so far.
    pub fn all(&self) -> Vec<OrphanRange> {
        self.lock().found.clone()
    }
}

fn report(r: &OrphanRange) {
    let span_s = (r.last_ts - r.first_ts).max(0) as f64 / 1000.0;
    if r.copied {
        tracing::warn!(flow = %r.flow, topic = %r.topic, partition = r.partition, from = r.from, to = r.to, records = r.records, first_ts = r.first_ts, span_s, "orphans copied after the failover's records (orphans: copy): acknowledged by the old cluster before the disaster switch, never replicated then");
    } else {
        tracing::warn!(flow = %r.flow, topic = %r.topic, partition = r.partition, from = r.from, to = r.to, records = r.records, first_ts = r.first_ts, span_s, "orphans held back: acknowledged by the old cluster before the disaster switch, never replicated; set `orphans: copy` on the flow to copy them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp() -> SourcePartition {
        SourcePartition {
            topic: "t".into(),
            partition: 0,
        }
    }

    #[test]
    fn records_up_to_the_log_end_are_held_and_reported_once() {
        let o = Orphans::default();
        assert!(
            !o.check("f", &sp(), (5, 1), true, false, || Some(9)),
            "nothing watched"
        );
        o.watch("f", [(sp(), 10)]);
        // Offsets 10..14 are on the old cluster when the flow reads again;
        // 12 is a copy of the new cluster's record (the flow back's).
        let held: Vec<bool> = (10..16)
            .map(|off| o.check("f", &sp(), (off, 100 + off), off != 12, false, || Some(14)))
            .collect();
        assert_eq!(held, [true, true, false, true, false, false]);
        let all = o.all();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].from, all[0].to, all[0].records), (10, 14, 3));
        assert_eq!((all[0].first_ts, all[0].last_ts), (110, 113));
        assert_eq!(o.held("f"), all);
        o.copied(&all[0]);
        assert!(o.held("f").is_empty());
    }

    #[test]
    fn watches_are_persisted_and_resumed() {
        let o = Orphans::default();
        o.watch("f", [(sp(), 10)]);
        o.watch("f", [(sp(), 12)]);
        assert_eq!(o.take_changes("g"), vec![]);
        assert_eq!(o.take_changes("f"), vec![(sp(), Some(10))]);
        assert!(o.take_changes("f").is_empty());
        let k = watch_key("f", &sp());
        assert_eq!(parse_watch_key("f", &k), Some(sp()));
        assert_eq!(
            crate::replication::state::parse_checkpoint_key("f", &k),
            None
        );
        // After a restart: resumed, not persisted again, resolved once.
        let o = Orphans::default();
        o.resume("f", [(sp(), 10)]);
        assert!(o.take_changes("f").is_empty());
        assert!(o.check("f", &sp(), (10, 1), true, false, || Some(11)));
        assert_eq!(o.take_changes("f"), vec![(sp(), None)]);
    }

    #[test]
    fn copy_policy_copies_and_reports() {
        let o = Orphans::default();
        o.watch("f", [(sp(), 0)]);
        assert!(!o.check("f", &sp(), (0, 1), true, true, || Some(1)));
        assert!(o.all()[0].copied);
        assert!(o.held("f").is_empty());
    }

    #[test]
    fn an_unknown_end_holds_and_asks_again() {
        let o = Orphans::default();
        o.watch("f", [(sp(), 0)]);
        assert!(o.check("f", &sp(), (0, 1), true, false, || None));
        assert!(o.check("f", &sp(), (1, 1), true, false, || Some(2)));
        assert_eq!(o.all()[0].records, 2);
        assert!(
            !o.check("f", &sp(), (2, 1), true, false, || Some(9)),
            "resolved"
        );
    }
}
