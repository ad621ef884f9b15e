//! The offset map: maximal runs of consecutive records copied from one source
//! partition to one target partition, and conservative translation between
//! the two offset spaces.

use std::fmt;

/// An offset in the source partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceOffset(pub i64);

/// An offset in the target partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetOffset(pub i64);

impl fmt::Display for SourceOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for TargetOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `len` consecutive source records starting at `source` that became `len`
/// consecutive target records starting at `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Source offset of the run's first record.
    pub source: SourceOffset,
    /// Target offset of the run's first record.
    pub target: TargetOffset,
    /// Number of records; at least 1 in any run an [`OffsetMap`] holds.
    pub len: u64,
}

impl Run {
    /// The source offset right after the run's last record.
    pub fn source_end(&self) -> SourceOffset {
        // Saturating because the fields are public; runs inside a map are
        // validated so this never actually saturates there.
        SourceOffset(self.source.0.saturating_add_unsigned(self.len))
    }

    /// The target offset right after the run's last record.
    pub fn target_end(&self) -> TargetOffset {
        TargetOffset(self.target.0.saturating_add_unsigned(self.len))
    }
}

/// Why a record could not be added, or an encoded map could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// An offset below 0; Kafka offsets of records are never negative.
    #[error("{space} offset {offset} is negative; record offsets start at 0")]
    Negative {
        /// `"source"` or `"target"`.
        space: &'static str,
        /// The offending offset.
        offset: i64,
    },
    /// A source offset at or below one already recorded.
    #[error(
        "source offset {got} does not follow the last recorded source offset {last}; \
         source offsets must strictly increase"
    )]
    SourceNotIncreasing {
        /// The offset given.
        got: SourceOffset,
        /// The last source offset already in the map.
        last: SourceOffset,
    },
    /// A target offset at or below one already recorded.
    #[error(
        "target offset {got} does not follow the last recorded target offset {last}; \
         target offsets must strictly increase"
    )]
    TargetNotIncreasing {
        /// The offset given.
        got: TargetOffset,
        /// The last target offset already in the map.
        last: TargetOffset,
    },
    /// A source offset below the frontier, which was declared settled.
    #[error(
        "source offset {got} is below the replicated frontier {frontier}; \
         everything below the frontier was declared fully recorded"
    )]
    BelowFrontier {
        /// The offset given.
        got: SourceOffset,
        /// The frontier.
        frontier: SourceOffset,
    },
    /// A run whose end does not fit in an i64 offset.
    #[error(
        "a run of {len} records at source {source_start} / target {target_start} \
         ends past the largest possible offset"
    )]
    Overflow {
        /// Source offset of the run's first record.
        source_start: SourceOffset,
        /// Target offset of the run's first record.
        target_start: TargetOffset,
        /// Records in the run.
        len: u64,
    },
    /// An encoding written by a format this build does not know.
    #[error("offset map encoding version {got} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// The version byte found.
        got: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The encoding ended early.
    #[error("offset map encoding is truncated while reading {0}")]
    Truncated(&'static str),
    /// The encoding is not a valid map.
    #[error("offset map encoding is malformed: {0}")]
    Malformed(&'static str),
}

/// Where records of one source partition landed in one target partition.
///
/// Runs are maximal (contiguous records always extend the last run), sorted,
/// and strictly increasing in both spaces, so lookups are binary searches and
/// two maps holding the same records are equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetMap {
    /// The runs, oldest first; never contains a zero-length run.
    pub(super) runs: Vec<Run>,
    /// Source offsets below this are settled: any of them that produced a
    /// target record has been recorded. Always at least the last run's end.
    pub(super) frontier: SourceOffset,
    /// Start of the earliest run ever recorded, once pruning has dropped it.
    /// Offsets in the pruned region translate to this, because their exact
    /// target is forgotten and anything later could skip records.
    pub(super) floor: Option<(SourceOffset, TargetOffset)>,
}

impl OffsetMap {
    /// An empty map with the frontier at 0.
    pub fn new() -> OffsetMap {
        OffsetMap::default()
    }

    /// Number of runs held (not records): the map's memory cost.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether no run is held (nothing was ever recorded).
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The runs, oldest first.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The replicated frontier: the source offset the engine resumes from.
    pub fn frontier(&self) -> SourceOffset {
        self.frontier
    }

    /// Where pruning cut the map: the start of the earliest run ever recorded,
    /// or `None` if nothing was pruned.
    pub fn floor(&self) -> Option<(SourceOffset, TargetOffset)> {
        self.floor
    }

    /// Records that the source record at `source` was copied to `target`.
    /// Extends the last run when both offsets follow it directly.
    pub fn record(&mut self, source: SourceOffset, target: TargetOffset) -> Result<(), MapError> {
        self.record_run(source, target, 1)
    }

    /// Records `len` consecutive source records starting at `source_start`
    /// copied to `len` consecutive target offsets starting at `target_start`
    /// (one produce batch). `len == 0` records nothing and always succeeds,
    /// since an all-filtered batch is normal.
    pub fn record_run(
        &mut self,
        source_start: SourceOffset,
        target_start: TargetOffset,
        len: u64,
    ) -> Result<(), MapError> {
        if len == 0 {
            return Ok(());
        }
        self.push_run(Run {
            source: source_start,
            target: target_start,
            len,
        })
    }

    /// Validates `run` against the map and appends it (merging when it is
    /// contiguous with the last run in both spaces). Leaves the map unchanged
    /// on error. `run.len` must be at least 1.
    pub(super) fn push_run(&mut self, run: Run) -> Result<(), MapError> {
        if run.source.0 < 0 {
            return Err(MapError::Negative {
                space: "source",
                offset: run.source.0,
            });
        }
        if run.target.0 < 0 {
            return Err(MapError::Negative {
                space: "target",
                offset: run.target.0,
            });
        }
        let overflow = MapError::Overflow {
            source_start: run.source,
            target_start: run.target,
            len: run.len,
        };
        let source_end = run.source.0.checked_add_unsigned(run.len);
        let target_end = run.target.0.checked_add_unsigned(run.len);
        let (Some(source_end), Some(_)) = (source_end, target_end) else {
            return Err(overflow);
        };
        if let Some(last) = self.runs.last_mut() {
            if run.source < last.source_end() {
                return Err(MapError::SourceNotIncreasing {
                    got: run.source,
                    last: SourceOffset(last.source_end().0 - 1),
                });
            }
            if run.target < last.target_end() {
                return Err(MapError::TargetNotIncreasing {
                    got: run.target,
                    last: TargetOffset(last.target_end().0 - 1),
                });
            }
        }
        // Checked after ordering so a replayed ack reports the more telling
        // "not increasing" error rather than the frontier.
        if run.source < self.frontier {
            return Err(MapError::BelowFrontier {
                got: run.source,
                frontier: self.frontier,
            });
        }
        match self.runs.last_mut() {
            Some(last) if last.source_end() == run.source && last.target_end() == run.target => {
                // Both ends fit, so the merged length fits too.
                last.len += run.len;
            }
            _ => self.runs.push(run),
        }
        self.frontier = SourceOffset(source_end);
        Ok(())
    }

    /// Declares that the engine has consumed the source below `offset` and
    /// recorded every target record that produced, including when trailing
    /// offsets produced none (filtered records, transaction markers,
    /// compaction gaps). Never moves the frontier backwards; after this,
    /// recording a source offset below it is an error.
    ///
    /// The frontier does not change translation: past the last run,
    /// [`OffsetMap::translate`] still answers the last run's target end, since
    /// the target may hold native records after it.
    pub fn advance_frontier(&mut self, offset: SourceOffset) {
        self.frontier = self.frontier.max(offset);
    }

    /// Translates a committed source offset `committed` (the next offset the
    /// group would read) to the target offset the group should resume from.
    ///
    /// - inside a run: exact;
    /// - at a run's end or in a gap: the next run's target start;
    /// - at or past the last run's end: the last run's target end, never
    ///   further, whatever the frontier;
    /// - before the first run: its target start, or after pruning the floor's
    ///   target start (see [`OffsetMap::prune_before`]).
    ///
    /// Never past the truth (the target offset of the first replicated
    /// record at or after `committed`), and monotonic. `None` for an empty
    /// map, since nothing is known yet, and for negative offsets, which Kafka
    /// uses for "no committed offset" and must not become a position.
    pub fn translate(&self, committed: SourceOffset) -> Option<TargetOffset> {
        if committed.0 < 0 {
            return None;
        }
        let last = self.runs.last()?;
        let i = self.runs.partition_point(|r| r.source_end() <= committed);
        let Some(run) = self.runs.get(i) else {
            return Some(last.target_end());
        };
        if committed >= run.source {
            return Some(TargetOffset(run.target.0 + (committed.0 - run.source.0)));
        }
        match self.floor {
            Some((_, floor)) if i == 0 => Some(floor),
            _ => Some(run.target),
        }
    }

    /// Translates a committed target offset back to a source offset, the
    /// mirror of [`OffsetMap::translate`]:
    ///
    /// - inside a run: exact;
    /// - at a run's end or in a gap (native target records): the next run's
    ///   source start;
    /// - at or past the last run's end: the last run's source end, never
    ///   further (the frontier is not used, so filtered records after the
    ///   last run are read again rather than skipped);
    /// - before the first run: its source start, or after pruning the floor's
    ///   source start.
    ///
    /// Never past the source offset of the first replicated record at or
    /// after `committed`, and monotonic. `None` for an empty map or a
    /// negative offset.
    pub fn translate_back(&self, committed: TargetOffset) -> Option<SourceOffset> {
        if committed.0 < 0 {
            return None;
        }
        let last = self.runs.last()?;
        let i = self.runs.partition_point(|r| r.target_end() <= committed);
        let Some(run) = self.runs.get(i) else {
            return Some(last.source_end());
        };
        if committed >= run.target {
            return Some(SourceOffset(run.source.0 + (committed.0 - run.target.0)));
        }
        match self.floor {
            Some((floor, _)) if i == 0 => Some(floor),
            _ => Some(run.source),
        }
    }

    /// Forgets every mapping at or after `offset`, for a source log cut back
    /// to end there with the same topic (an unclean leader election): from
    /// `offset` on, source offsets name other records, which map afresh.
    /// Returns the mappings dropped, oldest first (a run that straddles
    /// `offset` is split): their target records are copies of records the
    /// source no longer has. The frontier moves back to `offset` if it was
    /// past it; copies recorded later land after the dropped ones.
    pub fn truncate_from(&mut self, offset: SourceOffset) -> Vec<Run> {
        let offset = SourceOffset(offset.0.max(0));
        let keep = self.runs.partition_point(|r| r.source < offset);
        let mut dropped: Vec<Run> = self.runs.drain(keep..).collect();
        if let Some(last) = self.runs.last_mut() {
            if last.source_end() > offset {
                // The run starts before `offset`, so at least one record stays.
                let kept = offset.0.abs_diff(last.source.0);
                dropped.insert(
                    0,
                    Run {
                        source: offset,
                        target: TargetOffset(last.target.0.saturating_add_unsigned(kept)),
                        len: last.len - kept,
                    },
                );
                last.len = kept;
            }
        }
        self.frontier = self.frontier.min(offset);
        // A floor names the earliest run ever recorded; with every run gone
        // there is nothing left for it to stand in front of.
        if self.runs.is_empty() {
            self.floor = None;
        }
        dropped
    }

    /// Drops the runs that lie entirely below `offset` (their source end is
    /// at or below it) to bound memory, but always keeps the last run so
    /// translation past the end stays known. Returns how many runs went.
    ///
    /// Offsets before the first kept run can no longer be translated exactly.
    /// They translate to the start of the earliest run ever recorded (the
    /// floor), both ways: a group lagging that far re-reads records
    /// (duplicates) rather than skipping them. Answering the first kept run's
    /// start instead would skip every record between the true position and
    /// that run.
    pub fn prune_before(&mut self, offset: SourceOffset) -> usize {
        let below = self.runs.partition_point(|r| r.source_end() <= offset);
        let drop = below.min(self.runs.len().saturating_sub(1));
        if drop > 0 {
            let first = self.runs[0];
            self.floor.get_or_insert((first.source, first.target));
            self.runs.drain(..drop);
        }
        drop
    }
}
