//! What a flow reads its source with: librdkafka's consumer (a shared
//! flow, whose partitions come and go with its group) or kflip's own
//! fetcher (an unshared flow: batches walked in place, see `fetcher`).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::deliver::SourceStats;
use super::fetcher::Fetcher;
use super::runner::TIMEOUT;
use super::state::SourcePartition;

pub(super) enum Source {
    Consumer(Arc<BaseConsumer<SourceStats>>),
    Fetcher(Fetcher),
}

impl Source {
    /// Starts reading `parts` at the offsets given.
    pub(super) fn assign(
        &self,
        parts: Vec<(SourcePartition, i64)>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        match self {
            Source::Consumer(c) => {
                let mut tpl = TopicPartitionList::new();
                for (sp, at) in &parts {
                    tpl.add_partition_offset(&sp.topic, sp.partition, Offset::Offset(*at))?;
                }
                c.incremental_assign(&tpl)
            }
            Source::Fetcher(f) => {
                f.assign(parts);
                Ok(())
            }
        }
    }

    /// Reads `sp` from `to` on. A partition librdkafka stopped after an
    /// error (with `auto.offset.reset=error`, an out-of-range offset or a
    /// truncation stops it) refuses a seek, and is assigned again at `to`
    /// instead.
    pub(super) fn seek(&self, sp: &SourcePartition, to: i64) -> Result<(), String> {
        let c = match self {
            Source::Fetcher(f) => {
                f.seek(sp, to);
                return Ok(());
            }
            Source::Consumer(c) => c,
        };
        let Err(e) = c.seek(&sp.topic, sp.partition, Offset::Offset(to), TIMEOUT) else {
            return Ok(());
        };
        tracing::debug!(topic = %sp.topic, partition = sp.partition, error = %e, "seek refused; assigning the partition again");
        let reassign = || -> Result<(), rdkafka::error::KafkaError> {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&sp.topic, sp.partition);
            c.incremental_unassign(&tpl)?;
            tpl.set_all_offsets(Offset::Offset(to))?;
            c.incremental_assign(&tpl)
        };
        reassign().map_err(|e| e.to_string())
    }

    /// Where each partition is read next, past what was skipped without
    /// being delivered (markers, aborted records).
    pub(super) fn positions(&self) -> Vec<(SourcePartition, i64)> {
        match self {
            Source::Fetcher(f) => f.positions(),
            Source::Consumer(c) => {
                let Ok(positions) = c.position() else {
                    return Vec::new();
                };
                positions
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(at) => Some((
                            SourcePartition {
                                topic: e.topic().to_string(),
                                partition: e.partition(),
                            },
                            at,
                        )),
                        _ => None,
                    })
                    .collect()
            }
        }
    }

    /// The shared flow's consumer.
    pub(super) fn consumer(&self) -> Option<&Arc<BaseConsumer<SourceStats>>> {
        match self {
            Source::Consumer(c) => Some(c),
            Source::Fetcher(_) => None,
        }
    }
}

/// How long one poll of the source waits for records.
pub(super) const POLL: Duration = Duration::from_millis(50);
