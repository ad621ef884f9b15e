//! Compact persistence of an [`OffsetMap`].
//!
//! Version 1 layout, every number an unsigned LEB128 varint unless noted:
//!
//! ```text
//! version: u8 = 1
//! flags:   u8, bit 0 = a pruning floor follows; other bits must be 0
//! [floor source, floor target]            absolute
//! run count
//! per run: source gap, target gap, len    gaps from the previous run's end
//!                                         (the floor, or 0, for the first)
//! frontier gap                            from the last run's source end, or 0
//! ```
//!
//! Runs are strictly increasing in both spaces, so every gap is non-negative
//! and no zigzag coding is needed: a run of a busy partition costs 3 bytes.

use super::map::{MapError, OffsetMap, Run, SourceOffset, TargetOffset};

/// The encoding version this build writes and reads.
const VERSION: u8 = 1;
/// Flag bit: a pruning floor follows the flags.
const HAS_FLOOR: u8 = 1;
/// The fewest bytes a run can take (three one-byte varints); bounds the run
/// count a given input can claim, so garbage cannot make decode allocate.
const MIN_RUN_BYTES: usize = 3;

impl OffsetMap {
    /// Encodes the map: runs, floor, and frontier. A few bytes per run.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.runs.len() * 4);
        out.push(VERSION);
        let (mut source, mut target) = (0_i64, 0_i64);
        match self.floor {
            Some((s, t)) => {
                out.push(HAS_FLOOR);
                put_uvarint(&mut out, s.0.unsigned_abs());
                put_uvarint(&mut out, t.0.unsigned_abs());
                (source, target) = (s.0, t.0);
            }
            None => out.push(0),
        }
        put_uvarint(&mut out, self.runs.len() as u64);
        for run in &self.runs {
            // Invariants make every gap non-negative.
            put_uvarint(&mut out, run.source.0.abs_diff(source));
            put_uvarint(&mut out, run.target.0.abs_diff(target));
            put_uvarint(&mut out, run.len);
            source = run.source_end().0;
            target = run.target_end().0;
        }
        let base = self.runs.last().map_or(0, |r| r.source_end().0);
        put_uvarint(&mut out, self.frontier.0.abs_diff(base));
        out
    }

    /// Decodes what [`OffsetMap::encode`] wrote. Garbage, truncation,
    /// trailing bytes, and unknown versions are errors; decoding never panics
    /// and allocates at most in proportion to the input.
    pub fn decode(bytes: &[u8]) -> Result<OffsetMap, MapError> {
        let mut r = Reader { buf: bytes };
        let version = r.byte("version")?;
        if version != VERSION {
            return Err(MapError::UnsupportedVersion {
                got: version,
                supported: VERSION,
            });
        }
        let flags = r.byte("flags")?;
        if flags & !HAS_FLOOR != 0 {
            return Err(MapError::Malformed("unknown flag bits"));
        }
        let floor = if flags & HAS_FLOOR != 0 {
            let s = offset(0, r.uvarint("floor source offset")?)?;
            let t = offset(0, r.uvarint("floor target offset")?)?;
            Some((SourceOffset(s), TargetOffset(t)))
        } else {
            None
        };
        let count = r.uvarint("run count")?;
        if count > (r.buf.len() / MIN_RUN_BYTES) as u64 {
            return Err(MapError::Truncated("runs (count exceeds the bytes left)"));
        }
        if floor.is_some() && count == 0 {
            return Err(MapError::Malformed("pruning floor without runs"));
        }
        let mut map = OffsetMap {
            runs: Vec::with_capacity(count as usize),
            ..OffsetMap::default()
        };
        let (mut source, mut target) = floor.map_or((0, 0), |(s, t)| (s.0, t.0));
        for _ in 0..count {
            let s = offset(source, r.uvarint("run source gap")?)?;
            let t = offset(target, r.uvarint("run target gap")?)?;
            let len = r.uvarint("run length")?;
            if len == 0 {
                return Err(MapError::Malformed("zero-length run"));
            }
            let run = Run {
                source: SourceOffset(s),
                target: TargetOffset(t),
                len,
            };
            map.push_run(run)?;
            source = run.source_end().0;
            target = run.target_end().0;
        }
        let frontier = offset(source, r.uvarint("frontier gap")?)?;
        if !r.buf.is_empty() {
            return Err(MapError::Malformed("trailing bytes after the frontier"));
        }
        // Set after the runs: push_run moves the frontier along with them.
        map.advance_frontier(SourceOffset(frontier));
        map.floor = floor;
        Ok(map)
    }
}

/// `base + gap` as an offset, or an error if it leaves the i64 range.
fn offset(base: i64, gap: u64) -> Result<i64, MapError> {
    base.checked_add_unsigned(gap).ok_or(MapError::Malformed(
        "offset past the largest possible offset",
    ))
}

/// Appends `v` as an unsigned LEB128 varint.
fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor that only ever reads what is there.
struct Reader<'a> {
    /// The bytes not yet read.
    buf: &'a [u8],
}

impl Reader<'_> {
    /// One byte; `what` names it in the error.
    fn byte(&mut self, what: &'static str) -> Result<u8, MapError> {
        let (&b, rest) = self.buf.split_first().ok_or(MapError::Truncated(what))?;
        self.buf = rest;
        Ok(b)
    }

    /// An unsigned LEB128 varint of at most 10 bytes that fits in a u64.
    fn uvarint(&mut self, what: &'static str) -> Result<u64, MapError> {
        let mut value = 0_u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            let bits = u64::from(b & 0x7f);
            // The 10th byte may only carry the top bit of a u64.
            if shift == 63 && bits > 1 {
                return Err(MapError::Malformed("varint overflows 64 bits"));
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(MapError::Malformed("varint longer than 10 bytes"))
    }
}
