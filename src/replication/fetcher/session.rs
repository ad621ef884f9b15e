//! Incremental fetch sessions (KIP-227) on one fetch connection.
//!
//! The first request names every partition and opens a session on the
//! broker (epoch 0). Each later request carries the session's id and next
//! epoch, and names only the partitions whose fetch parameters changed
//! (above all: those whose records came back, so their offset moved), plus
//! the ones to forget. The broker answers only partitions with records, a
//! new high watermark or log start, or an error, and it moves those with
//! records to the end of its session's order, so no partition starves
//! behind others (KIP-74's "first partition gets a whole batch" turns with
//! it). At 2,000 partitions a full request names 2,000 partitions and a
//! full response answers every one; in a session both shrink to what moved.
//!
//! A broker that declines a session (session id 0 in its answer) gets full
//! requests, as before. A session error (its id or epoch unknown, after a
//! broker restart or eviction) opens a new one on the same connection.

use std::collections::HashMap;

use crate::replication::state::SourcePartition;

/// Kafka's FETCH_SESSION_ID_NOT_FOUND.
pub(super) const ID_NOT_FOUND: i16 = 70;
/// Kafka's INVALID_FETCH_SESSION_EPOCH.
pub(super) const INVALID_EPOCH: i16 = 71;
/// Kafka's FETCH_SESSION_TOPIC_ID_ERROR.
pub(super) const TOPIC_ID_ERROR: i16 = 106;
/// The first Fetch version with sessions.
const FIRST_VERSION: i16 = 7;
/// The epoch of a request that neither opens nor uses a session.
const SESSIONLESS: i32 = -1;

/// One partition's fetch parameters, as a request names them, and the
/// generation of the partition's reading they belong to (a seek to the
/// same offset is named again, so a response always matches its request).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Params {
    pub(super) fetch: i64,
    pub(super) epoch: i32,
    pub(super) last_epoch: i32,
    pub(super) max: i32,
    pub(super) generation: u64,
}

/// The broker's session, as this side knows it.
#[derive(Debug)]
pub(super) struct Session {
    id: i32,
    /// The epoch the next request carries: 0 opens a session (a full
    /// request), -1 asks for none.
    epoch: i32,
    /// Each partition the broker reads for this connection, as last
    /// named: the session's partitions, or those of the last full request.
    known: HashMap<SourcePartition, Params>,
}

/// What one request asks of the session.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) id: i32,
    pub(super) epoch: i32,
    /// Whether the request names every partition read.
    pub(super) full: bool,
    /// The partitions the request names.
    pub(super) named: Vec<(SourcePartition, Params)>,
    pub(super) forgotten: Vec<SourcePartition>,
}

impl Session {
    /// A session for a connection that speaks Fetch `version`.
    /// `KFLIP_FETCH_SESSIONS=off` in kflip's environment asks for none:
    /// full requests, as before sessions (for comparison).
    pub(super) fn new(version: i16) -> Session {
        let off = std::env::var("KFLIP_FETCH_SESSIONS").is_ok_and(|v| v == "off");
        Session {
            id: 0,
            epoch: if version >= FIRST_VERSION && !off {
                0
            } else {
                SESSIONLESS
            },
            known: HashMap::new(),
        }
    }

    /// The next request, for the partitions read (`mine`) and their
    /// parameters; `is_mine` tells whether a partition is still read.
    pub(super) fn plan(
        &self,
        mine: &[(&SourcePartition, Params)],
        is_mine: impl Fn(&SourcePartition) -> bool,
    ) -> Plan {
        let full = self.epoch <= 0;
        let mut named = Vec::new();
        let mut held = 0;
        for (sp, params) in mine {
            let known = if full { None } else { self.known.get(*sp) };
            held += usize::from(known.is_some());
            if known != Some(params) {
                named.push(((*sp).clone(), *params));
            }
        }
        // Every partition the session holds is still read unless some of
        // them were not among `mine`.
        let mut forgotten = Vec::new();
        if !full && held < self.known.len() {
            forgotten = self
                .known
                .keys()
                .filter(|sp| !is_mine(sp))
                .cloned()
                .collect();
            forgotten.sort_unstable();
        }
        Plan {
            id: self.id,
            epoch: self.epoch,
            full,
            named,
            forgotten,
        }
    }

    /// The parameters the broker read `sp` with for the last response.
    pub(super) fn read_with(&self, sp: &SourcePartition) -> Option<&Params> {
        self.known.get(sp)
    }

    /// The broker answered `plan`'s request without a top-level error,
    /// under session `id` (0: none).
    pub(super) fn answered(&mut self, plan: Plan, id: i32) {
        if plan.full {
            self.known = plan.named.into_iter().collect();
        } else {
            for sp in &plan.forgotten {
                self.known.remove(sp);
            }
            self.known.extend(plan.named);
        }
        if self.epoch == SESSIONLESS {
            return;
        }
        if id == 0 {
            // Declined (or closed because it would hold nothing): full
            // requests, each offering to open one again.
            self.id = 0;
            self.epoch = 0;
            return;
        }
        self.id = id;
        self.epoch = if plan.epoch == i32::MAX {
            1
        } else {
            plan.epoch + 1
        };
    }

    /// The broker refused the session with `code`: the next request is
    /// full and opens a new one (closing the old one if its id is known).
    pub(super) fn reset(&mut self, code: i16) {
        if self.epoch == SESSIONLESS {
            return;
        }
        if code == ID_NOT_FOUND {
            self.id = 0;
        }
        self.epoch = 0;
        self.known.clear();
    }

    /// Whether `code` is a session error, answered by [`Session::reset`].
    pub(super) fn is_session_error(code: i16) -> bool {
        matches!(code, ID_NOT_FOUND | INVALID_EPOCH | TOPIC_ID_ERROR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(p: i32) -> SourcePartition {
        SourcePartition {
            topic: "t".into(),
            partition: p,
        }
    }

    fn at(fetch: i64) -> Params {
        Params {
            fetch,
            epoch: 3,
            last_epoch: -1,
            max: 1 << 20,
            generation: 1,
        }
    }

    /// The plan for partitions `of` (partition, offset), all read.
    fn plan(s: &Session, of: &[(i32, i64)]) -> Plan {
        let keys: Vec<SourcePartition> = of.iter().map(|&(p, _)| sp(p)).collect();
        let mine: Vec<(&SourcePartition, Params)> =
            keys.iter().zip(of).map(|(k, &(_, f))| (k, at(f))).collect();
        s.plan(&mine, |x| keys.contains(x))
    }

    fn named(plan: &Plan) -> Vec<i32> {
        let mut v: Vec<i32> = plan.named.iter().map(|(k, _)| k.partition).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn a_session_names_only_what_changed_and_forgets_what_left() {
        let mut s = Session::new(12);
        let p = plan(&s, &[(0, 10), (1, 20), (2, 30)]);
        assert_eq!((p.id, p.epoch, p.full), (0, 0, true), "the first opens one");
        assert_eq!(named(&p), vec![0, 1, 2], "and names every partition");
        s.answered(p, 77);
        assert_eq!(s.read_with(&sp(1)).map(|r| r.fetch), Some(20));

        // Partition 1's records came back; partition 2 left.
        let p = plan(&s, &[(0, 10), (1, 25)]);
        assert_eq!((p.id, p.epoch, p.full), (77, 1, false));
        assert_eq!(named(&p), vec![1]);
        assert_eq!(p.forgotten, vec![sp(2)]);
        s.answered(p, 77);
        assert_eq!(s.read_with(&sp(1)).map(|r| r.fetch), Some(25));
        assert!(s.read_with(&sp(2)).is_none());

        // Nothing moved: a request that names nothing.
        let p = plan(&s, &[(0, 10), (1, 25)]);
        assert!(p.named.is_empty() && p.forgotten.is_empty());
        s.answered(p, 77);

        // A new leader epoch or a new generation is a change too; a
        // returning partition is new.
        let keys = [sp(0), sp(1), sp(2)];
        let mut mine: Vec<(&SourcePartition, Params)> = keys
            .iter()
            .zip([10, 25, 30])
            .map(|(k, f)| (k, at(f)))
            .collect();
        mine[0].1.epoch = 4;
        mine[1].1.generation = 2;
        let p = s.plan(&mine, |_| true);
        assert_eq!(p.epoch, 3);
        assert_eq!(named(&p), vec![0, 1, 2]);
        assert!(p.forgotten.is_empty());
    }

    #[test]
    fn a_refused_or_declined_session_starts_over_with_a_full_request() {
        let mut s = Session::new(12);
        let p = plan(&s, &[(0, 10), (1, 20)]);
        s.answered(p, 9);
        s.reset(INVALID_EPOCH);
        let p = plan(&s, &[(0, 10), (1, 20)]);
        assert_eq!((p.id, p.epoch, p.full), (9, 0, true), "closes the old one");
        assert_eq!(named(&p), vec![0, 1]);
        s.reset(ID_NOT_FOUND);
        assert_eq!(plan(&s, &[(0, 10)]).id, 0);

        // A broker that opens none: every request full, offering again,
        // and answered from what that request named.
        let p = plan(&s, &[(0, 10), (1, 20)]);
        s.answered(p, 0);
        let p = plan(&s, &[(0, 11)]);
        assert_eq!((p.id, p.epoch, p.full), (0, 0, true));
        s.answered(p, 0);
        assert_eq!(s.read_with(&sp(0)).map(|r| r.fetch), Some(11));
        assert!(s.read_with(&sp(1)).is_none());
    }

    #[test]
    fn old_versions_ask_for_no_session_and_epochs_wrap_to_one() {
        let mut s = Session::new(6);
        let p = plan(&s, &[(0, 10)]);
        assert_eq!((p.id, p.epoch, p.full), (0, SESSIONLESS, true));
        s.answered(p, 5);
        assert_eq!(plan(&s, &[(0, 10)]).epoch, SESSIONLESS);
        assert_eq!(s.read_with(&sp(0)).map(|r| r.fetch), Some(10));

        let mut s = Session::new(12);
        s.id = 5;
        s.epoch = i32::MAX;
        let p = plan(&s, &[(0, 10)]);
        s.answered(p, 5);
        assert_eq!(s.epoch, 1);
    }
}
