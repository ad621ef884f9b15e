//! Where the engine acts differently for a broker that is not Apache Kafka.
//!
//! Each workaround has a name here, with the broker that needs it and why,
//! so it is found with one grep and can go once that broker is fixed. Every
//! one today is for tansu 0.6, the second broker the tests run on (see
//! DEVELOPERS.md). A flow's `fetch_wait` setting exists for it too: tansu
//! holds every Fetch for the whole wait, even with data ready.

use std::collections::BTreeMap;

use super::error::Error;
use super::topics::Admin;

/// `max.partition.fetch.bytes` of the engine's partition scans (the state
/// topic, recovery from the target, held orphans). tansu 0.6 slows down
/// badly building large fetch responses of records with headers, which
/// these scans read; on Apache Kafka small fetches cost little here, as
/// scans are rare and short.
pub(super) const SCAN_FETCH_PARTITION_BYTES: usize = 262_144;

/// The Fetch version the engine's fetcher falls back to after a response
/// it cannot decode. tansu 0.6 puts tag 0 at the top of its Fetch v12
/// responses (node endpoints, a field of v16 on), which a decoder of v12
/// refuses. v11 has no tagged fields; it also has no log-divergence check,
/// so there a truncated source log shows as an offset out of range (or at
/// the next config sync), as it did with librdkafka's consumer.
pub(super) const FETCH_UNTAGGED: i16 = 11;

/// Creates the state topic with no topic config, after the broker refused
/// it with `cleanup.policy=compact` (`refused`). tansu 0.6 takes no topic
/// configs (nor DescribeConfigs or AlterConfigs). A plain topic works the
/// same but keeps every checkpoint ever written, which an operator must
/// fix by hand: said at error level.
pub(super) fn state_topic_without_compaction(
    admin: &Admin,
    topic: &str,
    rf: i16,
    refused: &dyn std::fmt::Display,
) -> Result<(), Error> {
    admin.create_topic(topic, 1, rf, &BTreeMap::new())?;
    tracing::error!(topic, error = %refused, "the state topic was created without cleanup.policy=compact (the broker refused it): it keeps every checkpoint and grows without bound; set the policy on it by hand");
    Ok(())
}

/// Whether a described group has nobody kflip's commit would race: no
/// members, in a state of no generation. Apache Kafka reports a group it
/// does not know as `Dead`, tansu 0.6 as `Unknown`.
pub(super) fn group_is_idle(state: &str, members: usize) -> bool {
    members == 0 && matches!(state, "" | "Empty" | "Dead" | "Unknown")
}

/// A describe of a target group failed. tansu 0.6 cannot describe a group
/// after a commit from outside it, so this is no reason to skip the group:
/// the commit goes ahead, and the broker's own fence (UNKNOWN_MEMBER_ID for
/// a commit from outside a group with members) still keeps running
/// consumers from being moved.
pub(super) fn describe_failed(flow: &str, group: &str, error: &dyn std::fmt::Display) {
    tracing::debug!(flow, group, error = %error, "describe failed; relying on the commit fence");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_groups_by_either_broker_s_name() {
        for state in ["", "Empty", "Dead", "Unknown"] {
            assert!(group_is_idle(state, 0), "{state}");
        }
        assert!(!group_is_idle("Stable", 0));
        assert!(!group_is_idle("Empty", 1));
    }
}
