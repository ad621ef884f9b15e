//! Translation when records flow both ways between two clusters, A and B.
//!
//! After a failover and a failback, each cluster's partition interleaves its
//! own records with copies of the other's, in a different order on each
//! side. A group that committed `c` on A has not seen two kinds of records
//! on B:
//! - copies of A's records at or after `c`: the forward map (A -> B) gives
//!   the first one's B offset;
//! - B's own records whose copies sit at or after `c` on A, or that have not
//!   reached A yet: the reverse map (B -> A), read backwards, gives the
//!   first one's B offset.
//!
//! The group resumes at the lower of the two. Translating through the
//! forward map alone is wrong there: an A offset that holds a copy of a B
//! record is a gap in the forward map, and "the next run's start" lies past
//! B's own records that the group has not read yet.

use super::{OffsetMap, SourceOffset, TargetOffset};

/// The forward term: the B offset of the first copy of an A record at or
/// after `committed`, or `None` when no such copy exists yet (any later copy
/// lands past B's current end, which the reverse term never exceeds).
pub fn forward_bound(forward: &OffsetMap, committed: SourceOffset) -> Option<TargetOffset> {
    let last = forward.runs().last()?;
    if committed.0 < 0 || committed >= last.source_end() {
        return None;
    }
    forward.translate(committed)
}

/// The reverse term: the B offset of the first B record whose copy is at or
/// after `committed` on A, or, when there is none, `handled`: the B offset
/// below which the reverse flow has dealt with every record (at least its
/// map's frontier). Every B record below it that has no copy on A was
/// skipped by the reverse flow (a copy of A's, or a control record), so the
/// forward term covers it; B's records from there on have not reached A,
/// and the group cannot have seen them.
pub fn reverse_bound(
    reverse: &OffsetMap,
    handled: SourceOffset,
    committed: SourceOffset,
) -> Option<TargetOffset> {
    if committed.0 < 0 {
        return None;
    }
    let on_a = TargetOffset(committed.0);
    let b = match reverse.runs().last() {
        Some(last) if on_a < last.target_end() => reverse.translate_back(on_a)?,
        _ => reverse.frontier().max(handled),
    };
    Some(TargetOffset(b.0))
}

/// The first offset of B at or after `at` that is not a copy the forward
/// map (A -> B) knows of. The reverse bound says where B's own records the
/// group has not seen may start; an offset that holds a copy of an A record
/// is not one of them, so a reverse bound that lags (the flow back has not
/// read B's newest copies yet) moves past them.
pub fn past_copies(forward: &OffsetMap, at: TargetOffset) -> TargetOffset {
    let runs = forward.runs();
    let mut at = at;
    let mut i = runs.partition_point(|r| r.target_end() <= at);
    while let Some(run) = runs.get(i) {
        if run.target > at {
            break;
        }
        at = run.target_end();
        i += 1;
    }
    at
}

/// Where a group that committed `committed` on A resumes on B, given the
/// forward map (A -> B) and the reverse map (B -> A) with what the reverse
/// flow has handled (see [`reverse_bound`]): never past a record of B the
/// group has not seen, and exact once both flows have caught up.
pub fn translate_both(
    forward: &OffsetMap,
    reverse: &OffsetMap,
    handled: SourceOffset,
    committed: SourceOffset,
) -> Option<TargetOffset> {
    let r = past_copies(forward, reverse_bound(reverse, handled, committed)?);
    Some(match forward_bound(forward, committed) {
        Some(f) => f.min(r),
        None => r,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// One step of a two-cluster history.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// A client writes a record to A.
        WriteA,
        /// A client writes a record to B.
        WriteB,
        /// The A -> B flow reads A's next record.
        CopyAB,
        /// The B -> A flow reads B's next record.
        CopyBA,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::WriteA),
            Just(Step::WriteB),
            Just(Step::CopyAB),
            Just(Step::CopyBA)
        ]
    }

    /// A record: its identity, and whether it is a copy.
    type Rec = (u32, bool);

    /// Both clusters' logs and both flows, simulated.
    #[derive(Default)]
    struct World {
        a: Vec<Rec>,
        b: Vec<Rec>,
        next_id: u32,
        ab: OffsetMap,
        ba: OffsetMap,
        ab_read: usize,
        ba_read: usize,
    }

    impl World {
        fn apply(&mut self, s: Step) {
            match s {
                Step::WriteA | Step::WriteB => {
                    self.next_id += 1;
                    let log = if matches!(s, Step::WriteA) {
                        &mut self.a
                    } else {
                        &mut self.b
                    };
                    log.push((self.next_id, false));
                }
                Step::CopyAB => Self::copy(&self.a, &mut self.b, &mut self.ab, &mut self.ab_read),
                Step::CopyBA => Self::copy(&self.b, &mut self.a, &mut self.ba, &mut self.ba_read),
            }
        }

        /// The flow reads the source's next record: a native one is copied
        /// and recorded, a copy (provenance) is skipped.
        fn copy(from: &[Rec], to: &mut Vec<Rec>, map: &mut OffsetMap, read: &mut usize) {
            let Some(&(id, copy)) = from.get(*read) else {
                return;
            };
            let at = *read as i64;
            *read += 1;
            if copy {
                map.advance_frontier(SourceOffset(at + 1));
            } else {
                to.push((id, true));
                map.record(SourceOffset(at), TargetOffset(to.len() as i64 - 1))
                    .unwrap();
            }
        }

        /// What the B -> A flow has handled.
        fn handled(&self) -> SourceOffset {
            SourceOffset(self.ba_read as i64)
        }

        /// The true resume position on B for a group that committed `c` on
        /// A: the first B record the group has not seen (whose counterpart
        /// on A is at or after `c`, or that is not on A at all), else B's end.
        fn truth(&self, c: usize) -> i64 {
            let seen: std::collections::HashSet<u32> = self.a[..c].iter().map(|r| r.0).collect();
            self.b
                .iter()
                .position(|r| !seen.contains(&r.0))
                .unwrap_or(self.b.len()) as i64
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Never past the truth; exact once both flows have read everything.
        #[test]
        fn never_skips_and_is_exact_when_caught_up(steps in prop::collection::vec(step(), 0..120)) {
            let mut w = World::default();
            for s in steps {
                w.apply(s);
                for c in 0..=w.a.len() {
                    if let Some(p) = translate_both(&w.ab, &w.ba, w.handled(), SourceOffset(c as i64)) {
                        prop_assert!(p.0 <= w.truth(c), "c {c}: {} past truth {}", p.0, w.truth(c));
                    }
                }
            }
            while w.ab_read < w.a.len() || w.ba_read < w.b.len() {
                w.apply(Step::CopyAB);
                w.apply(Step::CopyBA);
            }
            for c in 0..=w.a.len() {
                let p = translate_both(&w.ab, &w.ba, w.handled(), SourceOffset(c as i64));
                prop_assert_eq!(p.map(|p| p.0), Some(w.truth(c)), "c {}", c);
            }
        }
    }

    #[test]
    fn a_lagging_flow_back_does_not_pull_groups_back_over_copies() {
        // B: b0 [a0] [a1] [a2] ; A: [b0] a0 a1 a2. The flow back has read
        // only b0: it has not seen the copies of a0..a2 yet.
        let mut w = World::default();
        for s in [
            Step::WriteB,
            Step::CopyBA,
            Step::WriteA,
            Step::WriteA,
            Step::WriteA,
            Step::CopyAB,
            Step::CopyAB,
            Step::CopyAB,
            Step::CopyAB,
        ] {
            w.apply(s);
        }
        assert_eq!(w.handled(), SourceOffset(1));
        // Committed 4 on A (everything read): B's 4, not the flow back's 1.
        assert_eq!(
            translate_both(&w.ab, &w.ba, w.handled(), SourceOffset(4)),
            Some(TargetOffset(4))
        );
        assert_eq!(past_copies(&w.ab, TargetOffset(1)), TargetOffset(4));
        assert_eq!(past_copies(&w.ab, TargetOffset(0)), TargetOffset(0));
    }

    #[test]
    fn a_commit_on_a_copy_of_b_does_not_jump_over_b_records() {
        // A: a0 a1 [b0] [b1] ; B: [a0] [a1] b0 b1 b2 (b2 not yet on A).
        let mut w = World::default();
        for s in [
            Step::WriteA,
            Step::WriteA,
            Step::CopyAB,
            Step::CopyAB,
            Step::WriteB,
            Step::WriteB,
            Step::CopyBA,
            Step::CopyBA,
            Step::CopyBA,
            Step::CopyBA,
            Step::WriteB,
        ] {
            w.apply(s);
        }
        // Committed 2 on A (a0 and a1 read): b0 is next, at B's 2. The
        // forward map alone answers its last run's end there too, but for 3
        // (b0 read) only the reverse map knows b1 is next.
        assert_eq!(
            translate_both(&w.ab, &w.ba, w.handled(), SourceOffset(2)),
            Some(TargetOffset(2))
        );
        assert_eq!(
            translate_both(&w.ab, &w.ba, w.handled(), SourceOffset(3)),
            Some(TargetOffset(3))
        );
        assert_eq!(
            translate_both(&w.ab, &w.ba, w.handled(), SourceOffset(4)),
            Some(TargetOffset(4))
        );
        assert_eq!(
            translate_both(&w.ab, &w.ba, w.handled(), SourceOffset(-1)),
            None
        );
    }
}
