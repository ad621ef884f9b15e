//! Randomized properties: exactness, monotonicity, never past the truth
//! (with and without pruning), both directions, and the encoding.

use proptest::prelude::*;

use super::*;

/// Offsets skipped between two consecutive replicated records in one space:
/// mostly none, so runs form, sometimes a few, now and then many.
fn gap() -> impl Strategy<Value = i64> {
    prop_oneof![6 => Just(0_i64), 3 => 1..4_i64, 1 => 4..10_000_i64]
}

/// Where a space starts; offset 0 often.
fn start() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0_i64), 0..1_000_000_i64]
}

/// Strictly increasing `(source, target)` pairs with random gaps in both.
fn pairs(min: usize) -> impl Strategy<Value = Vec<(i64, i64)>> {
    (
        start(),
        start(),
        prop::collection::vec((gap(), gap()), min..150),
    )
        .prop_map(|(s0, t0, gaps)| {
            let (mut s, mut t) = (s0 - 1, t0 - 1);
            gaps.into_iter()
                .map(|(gs, gt)| {
                    (s, t) = (s + 1 + gs, t + 1 + gt);
                    (s, t)
                })
                .collect()
        })
}

/// Random probe offsets, folded into a range a little past the data.
fn extra() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(any::<u32>(), 0..32)
}

fn map_of(pairs: &[(i64, i64)]) -> OffsetMap {
    let mut m = OffsetMap::new();
    for &(a, b) in pairs {
        m.record(SourceOffset(a), TargetOffset(b)).unwrap();
    }
    m
}

/// Offsets to probe in one space: around every recorded one, around 0,
/// past the end, and random ones. Sorted, so monotonicity can be checked.
fn probes(recorded: impl Iterator<Item = i64>, extra: &[u32]) -> Vec<i64> {
    let mut v = vec![-1, 0, 1];
    let mut hi = 0;
    for x in recorded {
        v.extend([x - 1, x, x + 1]);
        hi = x;
    }
    v.extend([hi + 2, hi + 10_000]);
    v.extend(extra.iter().map(|&e| i64::from(e) % (hi + 20_000)));
    v.sort_unstable();
    v.dedup();
    v
}

/// The truth: what the first recorded pair at or after `c` (in the space
/// `key` picks) maps to, if any.
fn truth(
    pairs: &[(i64, i64)],
    c: i64,
    key: fn(&(i64, i64)) -> i64,
    value: fn(&(i64, i64)) -> i64,
) -> Option<i64> {
    let i = pairs.partition_point(|p| key(p) < c);
    pairs.get(i).map(value)
}

/// Checks one direction over sorted `probes`: `f(c)` never passes the truth,
/// equals it from `exact_from` on, is the last value's successor past the
/// end, and never decreases.
fn check_direction(
    pairs: &[(i64, i64)],
    probes: &[i64],
    exact_from: i64,
    key: fn(&(i64, i64)) -> i64,
    value: fn(&(i64, i64)) -> i64,
    f: impl Fn(i64) -> Option<i64>,
) -> Result<(), TestCaseError> {
    let end = pairs.last().map(|p| value(p) + 1);
    let mut prev = i64::MIN;
    for &c in probes {
        let got = f(c);
        if c < 0 || pairs.is_empty() {
            prop_assert_eq!(got, None, "c = {}", c);
            continue;
        }
        let got = got.unwrap();
        match truth(pairs, c, key, value) {
            Some(truth) if c >= exact_from => prop_assert_eq!(got, truth, "c = {}", c),
            Some(truth) => prop_assert!(got <= truth, "c = {c}: {got} > {truth}"),
            None => prop_assert_eq!(Some(got), end, "c = {} past the end", c),
        }
        prop_assert!(got >= prev, "not monotonic at c = {c}: {got} < {prev}");
        prev = got;
    }
    Ok(())
}

fn src(p: &(i64, i64)) -> i64 {
    p.0
}

fn tgt(p: &(i64, i64)) -> i64 {
    p.1
}

proptest! {
    #[test]
    fn translation_is_exact_monotonic_and_never_past_the_truth(
        pairs in pairs(0),
        extra in extra(),
        ahead in 0..100_000_i64,
    ) {
        let mut m = map_of(&pairs);
        for &(a, b) in &pairs {
            prop_assert_eq!(m.translate(SourceOffset(a)), Some(TargetOffset(b)));
            prop_assert_eq!(m.translate_back(TargetOffset(b)), Some(SourceOffset(a)));
        }
        // The frontier never changes an answer.
        m.advance_frontier(SourceOffset(m.frontier().0 + ahead));
        let fwd = probes(pairs.iter().map(src), &extra);
        check_direction(&pairs, &fwd, 0, src, tgt, |c| {
            m.translate(SourceOffset(c)).map(|t| t.0)
        })?;
        let back = probes(pairs.iter().map(tgt), &extra);
        check_direction(&pairs, &back, 0, tgt, src, |c| {
            m.translate_back(TargetOffset(c)).map(|s| s.0)
        })?;
        prop_assert_eq!(OffsetMap::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn pruned_translation_never_passes_the_truth(
        pairs in pairs(1),
        extra in extra(),
        cut_at in any::<prop::sample::Index>(),
        cut_by in 0..5_i64,
    ) {
        let mut m = map_of(&pairs);
        let runs_before = m.len();
        let last = *m.runs().last().unwrap();
        let cut = pairs[cut_at.index(pairs.len())].0 + cut_by;
        let dropped = m.prune_before(SourceOffset(cut));
        prop_assert_eq!(m.len() + dropped, runs_before);
        prop_assert_eq!(*m.runs().last().unwrap(), last, "the last run stays");
        prop_assert!(m.runs().iter().skip(1).all(|r| r.source_end().0 > cut));
        let first = m.runs()[0];
        for &(a, b) in pairs.iter().filter(|p| p.0 >= first.source.0) {
            prop_assert_eq!(m.translate(SourceOffset(a)), Some(TargetOffset(b)));
            prop_assert_eq!(m.translate_back(TargetOffset(b)), Some(SourceOffset(a)));
        }
        let fwd = probes(pairs.iter().map(src), &extra);
        check_direction(&pairs, &fwd, first.source.0, src, tgt, |c| {
            m.translate(SourceOffset(c)).map(|t| t.0)
        })?;
        let back = probes(pairs.iter().map(tgt), &extra);
        check_direction(&pairs, &back, first.target.0, tgt, src, |c| {
            m.translate_back(TargetOffset(c)).map(|s| s.0)
        })?;
        prop_assert_eq!(OffsetMap::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn batches_build_the_same_map_as_single_records(
        pairs in pairs(0),
        split in 1..5_usize,
    ) {
        // Maximal runs of the pairs, each recorded in batches of `split`.
        let mut batched = OffsetMap::new();
        let mut i = 0;
        while i < pairs.len() {
            let (a, b) = pairs[i];
            let mut n = 1;
            while n < split
                && pairs.get(i + n) == Some(&(a + n as i64, b + n as i64))
            {
                n += 1;
            }
            batched.record_run(SourceOffset(a), TargetOffset(b), n as u64).unwrap();
            i += n;
        }
        prop_assert_eq!(batched, map_of(&pairs));
    }

    #[test]
    fn rejected_records_leave_the_map_untouched(
        attempts in prop::collection::vec((-5..60_i64, -5..60_i64, 0..3_u64), 0..60),
    ) {
        let mut m = OffsetMap::new();
        let mut accepted = Vec::new();
        for (a, b, len) in attempts {
            let before = m.clone();
            match m.record_run(SourceOffset(a), TargetOffset(b), len) {
                Ok(()) => accepted.extend((0..len as i64).map(|k| (a + k, b + k))),
                Err(_) => prop_assert_eq!(&m, &before),
            }
        }
        prop_assert!(accepted.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        prop_assert_eq!(m, map_of(&accepted));
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = OffsetMap::decode(&bytes);
        let mut versioned = vec![1, 0];
        versioned.extend(&bytes);
        if let Ok(m) = OffsetMap::decode(&versioned) {
            // Whatever decodes is a valid map, so it round trips.
            prop_assert_eq!(OffsetMap::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn decoding_corrupted_maps_never_panics(
        pairs in pairs(1),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = map_of(&pairs).encode();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(m) = OffsetMap::decode(&bytes) {
            prop_assert_eq!(OffsetMap::decode(&m.encode()), Ok(m));
        }
        let _ = OffsetMap::decode(&bytes[..i]);
    }
}
