//! What kflip needs of a Fetch request to hold it or answer it.

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

use super::walk::*;

/// One partition a Fetch asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    /// Topic name, shared by the topic's entries (a request of many
    /// partitions of one long name costs the name once).
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// The offset the client wants to read from.
    pub fetch_offset: i64,
}

/// What kflip needs of a Fetch request to park or answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchView {
    /// How long the client lets the broker wait for data.
    pub max_wait_ms: i32,
    /// The incremental fetch session id; 0 when none (or before v7).
    pub session_id: i32,
    /// Every requested partition, in request order.
    pub partitions: Vec<FetchPartition>,
}

/// Reads a Fetch request body, v4 to v12 (v13+ names topics by id, which
/// kflip never advertises). Fields after the topic list are not read.
pub fn fetch_request(body: &[u8], version: i16) -> Result<FetchView, ParseError> {
    if !(4..=12).contains(&version) {
        return Err(unsupported(ApiKey::Fetch, version));
    }
    let mut w = Walk::new(body, version >= 12);
    w.skip(4, "replica_id")?;
    let max_wait_ms = w.i32("max_wait_ms")?;
    w.skip(4 + 4 + 1, "min_bytes, max_bytes, isolation_level")?;
    let session_id = if version >= 7 {
        let id = w.i32("session_id")?;
        w.skip(4, "session_epoch")?;
        id
    } else {
        0
    };
    let mut partitions = Vec::new();
    for _ in 0..w.array("topics")? {
        let topic: Arc<str> = w.str("topic")?.into();
        for _ in 0..w.array("partitions")? {
            let partition = w.i32("partition")?;
            if version >= 9 {
                w.skip(4, "current_leader_epoch")?;
            }
            let fetch_offset = w.i64("fetch_offset")?;
            if version >= 12 {
                w.skip(4, "last_fetched_epoch")?;
            }
            if version >= 5 {
                w.skip(8, "log_start_offset")?;
            }
            w.skip(4, "partition_max_bytes")?;
            w.tags("partition tagged fields")?;
            partitions.push(FetchPartition {
                topic: topic.clone(),
                partition,
                fetch_offset,
            });
        }
        w.tags("topic tagged fields")?;
    }
    Ok(FetchView {
        max_wait_ms,
        session_id,
        partitions,
    })
}
