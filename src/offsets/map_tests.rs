//! Edge cases of the offset map, translation, pruning and the encoding. The
//! randomized properties live in `prop_tests`.

use super::*;

fn s(o: i64) -> SourceOffset {
    SourceOffset(o)
}

fn t(o: i64) -> TargetOffset {
    TargetOffset(o)
}

/// A map of the given `(source, target)` pairs, recorded one at a time.
fn map_of(pairs: &[(i64, i64)]) -> OffsetMap {
    let mut m = OffsetMap::new();
    for &(a, b) in pairs {
        m.record(s(a), t(b)).unwrap();
    }
    m
}

#[test]
fn empty_map_translates_nothing() {
    let mut m = OffsetMap::new();
    assert!(m.is_empty());
    assert_eq!(m.len(), 0);
    assert_eq!(m.frontier(), s(0));
    for c in [0, 1, 1000] {
        assert_eq!(m.translate(s(c)), None);
        assert_eq!(m.translate_back(t(c)), None);
    }
    // A known frontier alone is not a position either.
    m.advance_frontier(s(50));
    assert_eq!(m.translate(s(50)), None);
    assert_eq!(m.translate_back(t(0)), None);
    assert_eq!(m.prune_before(s(100)), 0);
}

#[test]
fn offset_zero_in_both_spaces() {
    let m = map_of(&[(0, 0)]);
    assert_eq!(m.translate(s(0)), Some(t(0)));
    assert_eq!(m.translate(s(1)), Some(t(1)));
    assert_eq!(m.translate_back(t(0)), Some(s(0)));
    assert_eq!(m.translate_back(t(1)), Some(s(1)));
    // Source 0 landing later in the target.
    let m = map_of(&[(0, 100)]);
    assert_eq!(m.translate(s(0)), Some(t(100)));
    assert_eq!(m.translate_back(t(0)), Some(s(0)));
    assert_eq!(m.translate_back(t(100)), Some(s(0)));
}

#[test]
fn one_record() {
    let m = map_of(&[(5, 10)]);
    assert_eq!(m.len(), 1);
    assert_eq!(m.frontier(), s(6));
    assert_eq!(m.translate(s(0)), Some(t(10)), "before the first run");
    assert_eq!(m.translate(s(5)), Some(t(10)));
    assert_eq!(m.translate(s(6)), Some(t(11)), "at the end");
    assert_eq!(m.translate(s(1_000)), Some(t(11)), "never past the end");
    assert_eq!(m.translate_back(t(0)), Some(s(5)));
    assert_eq!(m.translate_back(t(10)), Some(s(5)));
    assert_eq!(m.translate_back(t(11)), Some(s(6)));
    assert_eq!(m.translate_back(t(1_000)), Some(s(6)));
}

#[test]
fn negative_committed_offsets_are_not_positions() {
    let m = map_of(&[(0, 0), (1, 1)]);
    assert_eq!(m.translate(s(-1)), None);
    assert_eq!(m.translate_back(t(-1)), None);
}

#[test]
fn contiguous_records_form_one_run() {
    let m = map_of(&[(3, 7), (4, 8), (5, 9)]);
    assert_eq!(
        m.runs(),
        &[Run {
            source: s(3),
            target: t(7),
            len: 3
        }]
    );
    let mut batch = OffsetMap::new();
    batch.record_run(s(3), t(7), 2).unwrap();
    batch.record_run(s(5), t(9), 1).unwrap();
    batch.record_run(s(6), t(10), 0).unwrap();
    assert_eq!(
        batch, m,
        "batches merge like single records; empty ones are no-ops"
    );
}

#[test]
fn gaps_in_source() {
    // Offsets 2..5 were compacted away, filtered, or markers.
    let m = map_of(&[(0, 0), (1, 1), (5, 2), (6, 3)]);
    assert_eq!(m.len(), 2);
    let got: Vec<_> = (0..9).map(|c| m.translate(s(c)).unwrap().0).collect();
    assert_eq!(got, [0, 1, 2, 2, 2, 2, 3, 4, 4]);
    let back: Vec<_> = (0..6).map(|c| m.translate_back(t(c)).unwrap().0).collect();
    assert_eq!(back, [0, 1, 5, 6, 7, 7]);
}

#[test]
fn gaps_in_target() {
    // Target 2..10 were written natively on the target.
    let m = map_of(&[(0, 0), (1, 1), (2, 10), (3, 11)]);
    assert_eq!(m.len(), 2);
    let got: Vec<_> = (0..6).map(|c| m.translate(s(c)).unwrap().0).collect();
    assert_eq!(got, [0, 1, 10, 11, 12, 12]);
    let back: Vec<_> = (0..14).map(|c| m.translate_back(t(c)).unwrap().0).collect();
    assert_eq!(back, [0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 4, 4]);
}

#[test]
fn bad_records_are_errors_and_change_nothing() {
    let mut m = map_of(&[(10, 20)]);
    let before = m.clone();
    let e = m.record(s(10), t(21)).unwrap_err();
    assert_eq!(
        e,
        MapError::SourceNotIncreasing {
            got: s(10),
            last: s(10)
        }
    );
    assert!(e.to_string().contains("strictly increase"), "{e}");
    let e = m.record(s(11), t(19)).unwrap_err();
    assert_eq!(
        e,
        MapError::TargetNotIncreasing {
            got: t(19),
            last: t(20)
        }
    );
    assert!(matches!(
        m.record(s(-1), t(30)),
        Err(MapError::Negative {
            space: "source",
            ..
        })
    ));
    assert!(matches!(
        m.record(s(30), t(-5)),
        Err(MapError::Negative {
            space: "target",
            ..
        })
    ));
    // A run overlapping the last one is rejected as a whole.
    assert!(m.record_run(s(5), t(30), 10).is_err());
    let e = m.record_run(s(11), t(21), u64::MAX).unwrap_err();
    assert!(matches!(e, MapError::Overflow { .. }), "{e}");
    assert!(m.record(s(i64::MAX), t(21)).is_err());
    assert_eq!(m, before);
}

#[test]
fn frontier_only_moves_forward_and_settles_the_past() {
    let mut m = map_of(&[(0, 0), (1, 1)]);
    m.advance_frontier(s(10));
    m.advance_frontier(s(4));
    m.advance_frontier(s(-3));
    assert_eq!(m.frontier(), s(10));
    // The frontier does not move translation past the last target record.
    assert_eq!(m.translate(s(10)), Some(t(2)));
    assert_eq!(m.translate(s(5)), Some(t(2)));
    assert_eq!(m.translate_back(t(2)), Some(s(2)));
    let e = m.record(s(9), t(2)).unwrap_err();
    assert_eq!(
        e,
        MapError::BelowFrontier {
            got: s(9),
            frontier: s(10)
        }
    );
    assert!(e.to_string().contains("frontier 10"), "{e}");
    m.record(s(10), t(2)).unwrap();
    assert_eq!(m.len(), 2, "a source gap starts a new run");
    assert_eq!(m.frontier(), s(11));
}

#[test]
fn pruning_keeps_the_last_run_and_never_skips() {
    // Runs: 0..2 -> 0..2, 10..12 -> 5..7, 20..22 -> 20..22.
    let mut m = map_of(&[(0, 0), (1, 1), (10, 5), (11, 6), (20, 20), (21, 21)]);
    assert_eq!(
        m.prune_before(s(1)),
        0,
        "the first run is not entirely below 1"
    );
    assert_eq!(m.prune_before(s(12)), 2);
    assert_eq!(m.len(), 1);
    assert_eq!(m.floor(), Some((s(0), t(0))));
    // The pruned region maps to the floor: duplicates, not loss.
    for c in [0, 1, 5, 11, 19] {
        assert_eq!(m.translate(s(c)), Some(t(0)), "c = {c}");
    }
    assert_eq!(m.translate(s(20)), Some(t(20)));
    assert_eq!(m.translate(s(21)), Some(t(21)));
    assert_eq!(m.translate(s(99)), Some(t(22)));
    assert_eq!(m.translate_back(t(6)), Some(s(0)));
    assert_eq!(m.translate_back(t(20)), Some(s(20)));
    // The last run always stays, and the floor stays the earliest.
    assert_eq!(m.prune_before(s(1_000)), 0);
    assert_eq!(m.len(), 1);
    m.record(s(30), t(30)).unwrap();
    assert_eq!(m.prune_before(s(1_000)), 1);
    assert_eq!(m.floor(), Some((s(0), t(0))));
    assert_eq!(m.translate(s(25)), Some(t(0)));
    assert_eq!(m.translate(s(30)), Some(t(30)));
}

#[test]
fn encoding_round_trips_and_is_small() {
    let mut m = OffsetMap::new();
    assert_eq!(OffsetMap::decode(&m.encode()).unwrap(), m);
    m.advance_frontier(s(7));
    assert_eq!(OffsetMap::decode(&m.encode()).unwrap(), m);
    // A busy partition: 1000 batches separated by a transaction marker.
    for i in 0..1000 {
        m.record_run(s(10 + i * 101), t(3 + i * 100), 100).unwrap();
    }
    m.advance_frontier(s(1_000_000));
    let bytes = m.encode();
    assert!(bytes.len() <= 3 * 1000 + 16, "{} bytes", bytes.len());
    assert_eq!(OffsetMap::decode(&bytes).unwrap(), m);
    m.prune_before(s(50_000));
    let bytes = m.encode();
    assert_eq!(OffsetMap::decode(&bytes).unwrap(), m);
    // Offsets near the top of the range survive.
    let mut big = OffsetMap::new();
    big.record(s(i64::MAX - 2), t(i64::MAX - 1)).unwrap();
    big.record(s(i64::MAX - 1), t(i64::MAX)).unwrap_err();
    big.advance_frontier(s(i64::MAX));
    assert_eq!(OffsetMap::decode(&big.encode()).unwrap(), big);
}

#[test]
fn garbage_is_rejected() {
    use MapError::*;
    let err = |b: &[u8]| OffsetMap::decode(b).unwrap_err();
    assert_eq!(err(&[]), Truncated("version"));
    assert!(matches!(
        err(&[9, 0, 0, 0]),
        UnsupportedVersion { got: 9, .. }
    ));
    assert_eq!(err(&[1, 2, 0, 0]), Malformed("unknown flag bits"));
    assert_eq!(
        err(&[1, 0, 0, 0, 0]),
        Malformed("trailing bytes after the frontier")
    );
    assert_eq!(err(&[1, 0, 1, 0, 0, 0, 0]), Malformed("zero-length run"));
    assert_eq!(
        err(&[1, 1, 0, 0, 0, 0]),
        Malformed("pruning floor without runs")
    );
    // A run count far beyond the input: an error, not an allocation.
    let mut huge = vec![1, 0];
    huge.extend([0xff; 9]);
    huge.push(0x01);
    assert!(matches!(err(&huge), Truncated(_)));
    // An 11-byte varint, and one overflowing 64 bits.
    let mut long = vec![1, 0];
    long.extend([0x80; 10]);
    long.push(0);
    assert_eq!(err(&long), Malformed("varint longer than 10 bytes"));
    let mut wide = vec![1, 0];
    wide.extend([0xff; 9]);
    wide.push(0x02);
    assert_eq!(err(&wide), Malformed("varint overflows 64 bits"));
    // Offsets past i64::MAX.
    let mut past = vec![1, 1];
    past.extend([0xff; 9]);
    past.push(0x01);
    assert!(matches!(err(&past), Malformed(_)));
    // Every strict prefix of a valid encoding is truncated.
    let m = map_of(&[(0, 0), (5, 300), (6, 301), (70_000, 400)]);
    let bytes = m.encode();
    for n in 0..bytes.len() {
        assert!(matches!(err(&bytes[..n]), Truncated(_)), "prefix {n}");
    }
}

#[test]
fn truncation_drops_and_splits_runs_and_maps_afresh() {
    // Source 0..10 -> target 0..10, source 12..20 -> target 15..23.
    let mut m = OffsetMap::new();
    m.record_run(s(0), t(0), 10).unwrap();
    m.record_run(s(12), t(15), 8).unwrap();
    m.advance_frontier(s(25));
    let dropped = m.truncate_from(s(14));
    assert_eq!(
        dropped,
        vec![Run {
            source: s(14),
            target: t(17),
            len: 6
        }]
    );
    assert_eq!(m.frontier(), s(14));
    assert_eq!(m.runs().last().unwrap().source_end(), s(14));
    assert_eq!(m.translate(s(13)), Some(t(16)));
    // New records at the reused offsets land after the orphaned copies.
    m.record(s(14), t(23)).unwrap();
    assert_eq!(m.translate(s(14)), Some(t(23)));
    assert_eq!(
        m.translate_back(t(20)),
        Some(s(14)),
        "orphans map to the next record"
    );
    assert_eq!(OffsetMap::decode(&m.encode()).unwrap(), m);

    // A cut at a run boundary and in a gap drop whole runs only.
    let mut m = map_of(&[(0, 0), (1, 1), (5, 7)]);
    assert_eq!(m.truncate_from(s(3)).len(), 1);
    assert_eq!(m.runs().len(), 1);
    assert_eq!(m.frontier(), s(3));
    assert_eq!(m.truncate_from(s(2)), vec![], "nothing at or after the end");
    assert_eq!(m.frontier(), s(2));
}

#[test]
fn truncation_to_zero_empties_the_map_and_its_floor() {
    let mut m = map_of(&[(0, 0), (3, 5), (9, 12)]);
    m.prune_before(s(5));
    assert!(m.floor().is_some());
    let dropped = m.truncate_from(s(-4));
    assert_eq!(dropped.iter().map(|r| r.len).sum::<u64>(), 1);
    assert!(m.is_empty());
    assert_eq!(m.floor(), None);
    assert_eq!(m.frontier(), s(0));
    // Still encodable (a floor without runs is not).
    assert_eq!(OffsetMap::decode(&m.encode()).unwrap(), m);
    m.record(s(0), t(20)).unwrap();
    assert_eq!(m.translate(s(0)), Some(t(20)));
}
