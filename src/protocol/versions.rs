//! Which API keys kflip serves, how, and at which versions.
//!
//! Every key a client may send falls in one of three groups:
//! - [`Handling::Local`]: answered by kflip itself (ApiVersions);
//! - [`Handling::Rewrite`]: forwarded, and the response rewritten because it
//!   carries broker addresses, node ids, cluster ids or leader epochs;
//! - [`Handling::Pass`]: forwarded as bytes in both directions.
//!
//! Anything else (broker-to-broker and controller APIs, APIs whose node ids
//! kflip does not rewrite, and keys it does not know) is not advertised and
//! is refused if sent.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

/// What the proxy does with a request of one API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// kflip answers it without the upstream.
    Local,
    /// Forwarded; the response is decoded and rewritten.
    Rewrite,
    /// Forwarded untouched both ways.
    Pass,
}

/// How kflip handles `key`, and the highest version it lets clients use, or
/// `None` if it refuses the key.
pub fn policy(key: ApiKey) -> Option<(Handling, i16)> {
    use ApiKey::*;
    use Handling::*;
    let codec_max = key.valid_versions().max;
    let (handling, cap) = match key {
        ApiVersions => (Local, codec_max),
        // SASL ends at kflip: clients log in to kflip (`proxy.sasl`), and
        // each session logs in upstream on their behalf. v1 of the
        // handshake frames the exchange in SaslAuthenticate requests.
        SaslHandshake => (Local, 1),
        SaslAuthenticate => (Local, codec_max),
        // Fetch v13+ and Produce v13+ address topics by id. Topic ids differ
        // between clusters, so capping below them keeps a switch invisible:
        // clients keep using names that mean the same on both sides.
        // Fetch v12 is also the first flexible version: its tagged fields
        // (diverging epoch, current leader, snapshot id) carry nothing
        // kflip would pass on, and a Java 4.4 consumer once failed to
        // parse a v12 response through kflip ("Tag 0 is not valid for
        // version 12"), not understood yet. v11 has no tagged fields.
        Fetch => (Rewrite, 11),
        Produce => (Rewrite, 12),
        Metadata | FindCoordinator | DescribeCluster | DescribeTopicPartitions => {
            (Rewrite, codec_max)
        }
        // KIP-848 consumer groups: assignments name topics by id, which
        // kflip maps onto its virtual topic ids both ways.
        ConsumerGroupHeartbeat | ConsumerGroupDescribe => (Rewrite, codec_max),
        // v6 deletes topics by id; names mean the same on both clusters.
        DeleteTopics => (Pass, 5),
        // OffsetCommit/OffsetFetch v10 address topics by id (KIP-848).
        OffsetCommit => (Pass, 9),
        OffsetFetch => (Rewrite, 9),
        ListOffsets
        | JoinGroup
        | Heartbeat
        | LeaveGroup
        | SyncGroup
        | DescribeGroups
        | ListGroups
        | CreateTopics
        | DeleteRecords
        | InitProducerId
        | OffsetForLeaderEpoch
        | AddPartitionsToTxn
        | AddOffsetsToTxn
        | EndTxn
        | TxnOffsetCommit
        | DescribeAcls
        | CreateAcls
        | DeleteAcls
        | DescribeConfigs
        | AlterConfigs
        | CreatePartitions
        | DeleteGroups
        | IncrementalAlterConfigs
        | OffsetDelete
        | DescribeClientQuotas
        | AlterClientQuotas
        | DescribeUserScramCredentials
        | AlterUserScramCredentials
        | DescribeProducers
        | DescribeTransactions
        | ListTransactions
        | ElectLeaders
        | DescribeLogDirs
        | CreateDelegationToken
        | RenewDelegationToken
        | ExpireDelegationToken
        | DescribeDelegationToken
        | GetTelemetrySubscriptions
        | PushTelemetry
        | ListConfigResources => (Pass, codec_max),
        // Refused: inter-broker and controller APIs; share groups and
        // streams groups (topic ids and node endpoints kflip does not
        // translate yet);
        // reassignment and quorum APIs that name real node ids.
        _ => return None,
    };
    Some((handling, cap.min(codec_max)))
}

pub use crate::kafka::VersionTable;

/// The versions kflip advertises: its own policy intersected with every
/// cluster's table. Keys missing from any cluster are left out.
pub fn advertised(clusters: &[&VersionTable]) -> VersionTable {
    let mut out = VersionTable::new();
    for key in ApiKey::iter() {
        let Some((_, cap)) = policy(key) else {
            continue;
        };
        let mut range = VersionRange {
            min: key.valid_versions().min,
            max: cap,
        };
        if key != ApiKey::ApiVersions {
            for table in clusters {
                match table.get(&(key as i16)) {
                    Some(r) => range = range.intersect(r),
                    None => range = VersionRange { min: 1, max: 0 },
                }
            }
        }
        if !range.is_empty() {
            out.insert(key as i16, range);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(ApiKey, i16, i16)]) -> VersionTable {
        entries
            .iter()
            .map(|&(k, min, max)| (k as i16, VersionRange { min, max }))
            .collect()
    }

    #[test]
    fn intersection_of_kflip_and_every_cluster() {
        let a = table(&[
            (ApiKey::Metadata, 0, 12),
            (ApiKey::Fetch, 0, 16),
            (ApiKey::Vote, 0, 1),
            (ApiKey::ListOffsets, 0, 8),
        ]);
        let b = table(&[(ApiKey::Metadata, 1, 9), (ApiKey::Fetch, 4, 17)]);
        let out = advertised(&[&a, &b]);
        assert_eq!(
            out[&(ApiKey::Metadata as i16)],
            VersionRange { min: 1, max: 9 }
        );
        assert_eq!(
            out[&(ApiKey::Fetch as i16)],
            VersionRange { min: 4, max: 11 }
        );
        // Missing from b: not advertised. Refused by kflip: not advertised.
        assert!(!out.contains_key(&(ApiKey::ListOffsets as i16)));
        assert!(!out.contains_key(&(ApiKey::Vote as i16)));
        // kflip answers ApiVersions itself.
        assert!(out.contains_key(&(ApiKey::ApiVersions as i16)));
    }

    #[test]
    fn broker_internal_and_id_bearing_apis_are_refused() {
        for key in [
            ApiKey::Vote,
            ApiKey::BrokerRegistration,
            ApiKey::DescribeQuorum,
            ApiKey::ShareFetch,
            ApiKey::ShareGroupHeartbeat,
            ApiKey::ListPartitionReassignments,
            ApiKey::WriteTxnMarkers,
        ] {
            assert!(policy(key).is_none(), "{key:?}");
        }
    }
}
