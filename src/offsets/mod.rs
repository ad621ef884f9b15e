//! Offset translation between a source partition and its replica on the
//! target cluster. Pure: no I/O, no clocks, no async.
//!
//! The replication engine copies the records of one source partition to the
//! same partition on the target. Each produce acknowledgement says which
//! target offset every copied record got; [`OffsetMap`] keeps those pairs as
//! runs of consecutive records. Both spaces have gaps: source offsets that
//! produce no target record (compaction, transaction markers, filtering) and
//! target records that did not come from the source (written natively, for
//! example during a failover).
//!
//! A consumer group's committed offset is "the next offset to read", and
//! failing the group over means translating it. The one rule is never to
//! answer past the true position: a translated offset is at most the target
//! offset of the first replicated record at or after the committed one, so
//! a group may re-read records but never skips one. MirrorMaker 2 broke this
//! rule in several ways (KAFKA-12468, KAFKA-13659, KAFKA-14666, KAFKA-15906,
//! KAFKA-12635, KAFKA-10048): skipping data, moving groups backwards, and
//! mishandling offset 0 and empty partitions. Translation here is also
//! monotonic, exact inside runs, and `None` before anything was recorded.
//!
//! - `map`: the offset newtypes, [`OffsetMap`], translation, pruning.
//! - `codec`: the compact versioned encoding for persistence.

mod both;
mod codec;
mod map;

#[cfg(test)]
mod map_tests;
#[cfg(test)]
mod prop_tests;

pub use both::{forward_bound, past_copies, reverse_bound, translate_both};
pub use map::{MapError, OffsetMap, Run, SourceOffset, TargetOffset};
