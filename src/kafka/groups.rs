//! Consumer-group admin on one cluster with kflip's own client: list groups,
//! their state, and read and write committed offsets, outside any group
//! membership (generation -1), as an admin tool would.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest,
    OffsetCommitResponse, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::VersionTable;
use super::{ClientError, KafkaConn};
use crate::config::ClusterConfig;

mod batch;
mod lanes;

use batch::commit_request;
pub use batch::PerGroup;

/// Committed offsets by (topic, partition).
pub type Offsets = BTreeMap<(String, i32), i64>;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// Group admin for one cluster, with cached connections.
pub struct GroupAdmin {
    cluster: ClusterConfig,
    timeout: Duration,
    /// Connections by broker address, with that broker's versions.
    conns: HashMap<String, (KafkaConn, VersionTable)>,
}

impl GroupAdmin {
    /// Group admin for `cluster` (its TLS and SASL login included).
    pub fn new(cluster: ClusterConfig, timeout: Duration) -> GroupAdmin {
        GroupAdmin {
            cluster,
            timeout,
            conns: HashMap::new(),
        }
    }

    fn err(&self, message: String) -> ClientError {
        ClientError::Exchange {
            addr: self.cluster.bootstrap.join(","),
            message,
        }
    }

    async fn conn(
        &mut self,
        addr: Option<&str>,
    ) -> Result<&mut (KafkaConn, VersionTable), ClientError> {
        let key = match addr {
            Some(a) => a.to_string(),
            None => match self.conns.keys().next() {
                Some(k) => k.clone(),
                None => {
                    let mut c = KafkaConn::connect_any(&self.cluster, self.timeout).await?;
                    let v = c.api_versions().await?;
                    let k = c.addr().to_string();
                    self.conns.insert(k.clone(), (c, v));
                    k
                }
            },
        };
        if !self.conns.contains_key(&key) {
            let mut c = KafkaConn::connect(&self.cluster, &key, self.timeout).await?;
            let v = c.api_versions().await?;
            self.conns.insert(key.clone(), (c, v));
        }
        Ok(self.conns.get_mut(&key).expect("inserted above"))
    }

    /// Aborts the open transaction of `transactional_id` (producer id and
    /// epoch as the producer last used them) at its coordinator. Used when
    /// kflip moves a transactional producer away from this cluster, so that
    /// the transaction does not hold back read_committed readers until it
    /// times out.
    pub async fn abort_transaction(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(), ClientError> {
        use kafka_protocol::messages::{EndTxnRequest, TransactionalId};
        let addr = self
            .find_coordinator(transactional_id, 1, "transactional id")
            .await?;
        let (c, v) = self.conn(Some(&addr)).await?;
        let ver = Self::version(v, ApiKey::EndTxn, 3);
        let req = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(transactional_id)))
            .with_producer_id(producer_id.into())
            .with_producer_epoch(producer_epoch)
            .with_committed(false);
        let r = c.send(&req, ver).await?;
        if r.error_code != 0 {
            return Err(self.err(format!("EndTxn (abort): error code {}", r.error_code)));
        }
        Ok(())
    }

    /// A fresh producer id and epoch for `transactional_id` from its
    /// transaction coordinator (InitProducerId with no id to bump).
    pub async fn init_transactional(
        &mut self,
        transactional_id: &str,
        transaction_timeout_ms: i32,
    ) -> Result<(i64, i16), ClientError> {
        use kafka_protocol::messages::{InitProducerIdRequest, TransactionalId};
        let addr = self
            .find_coordinator(transactional_id, 1, "transactional id")
            .await?;
        let (c, v) = self.conn(Some(&addr)).await?;
        let ver = Self::version(v, ApiKey::InitProducerId, 4);
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(transactional_id))))
            .with_transaction_timeout_ms(transaction_timeout_ms)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let r = c.send(&req, ver).await?;
        if r.error_code != 0 {
            return Err(self.err(format!(
                "InitProducerId for transactional id {transactional_id}: error code {}",
                r.error_code
            )));
        }
        Ok((r.producer_id.0, r.producer_epoch))
    }

    /// Drops cached connections (after an error).
    pub fn reset(&mut self) {
        self.conns.clear();
    }

    fn version(table: &VersionTable, key: ApiKey, cap: i16) -> i16 {
        table
            .get(&(key as i16))
            .map(|r| r.max.min(cap).max(r.min))
            .unwrap_or(0)
    }

    /// Every group on every broker of the cluster.
    pub async fn list_groups(&mut self) -> Result<Vec<String>, ClientError> {
        let brokers: Vec<String> = {
            let (c, v) = self.conn(None).await?;
            let v = v.clone();
            c.brokers(&v)
                .await?
                .brokers
                .iter()
                .map(|b| format!("{}:{}", b.host.as_str(), b.port))
                .collect()
        };
        let mut out = Vec::new();
        for b in brokers {
            let (c, v) = self.conn(Some(&b)).await?;
            let ver = Self::version(v, ApiKey::ListGroups, 4);
            let r = c.send(&ListGroupsRequest::default(), ver).await?;
            out.extend(
                r.groups
                    .into_iter()
                    .map(|g| g.group_id.0.as_str().to_string()),
            );
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn coordinator(&mut self, group: &str) -> Result<String, ClientError> {
        self.find_coordinator(group, 0, "group").await
    }

    /// The coordinator of `key`: a group (`key_type` 0) or a transactional
    /// id (1).
    async fn find_coordinator(
        &mut self,
        key: &str,
        key_type: i8,
        what: &str,
    ) -> Result<String, ClientError> {
        let (c, v) = self.conn(None).await?;
        let ver = Self::version(v, ApiKey::FindCoordinator, 3);
        let req = FindCoordinatorRequest::default()
            .with_key(s(key))
            .with_key_type(key_type);
        let r = c.send(&req, ver).await?;
        if r.error_code != 0 {
            return Err(self.err(format!(
                "FindCoordinator for {what} {key}: error code {}",
                r.error_code
            )));
        }
        Ok(format!("{}:{}", r.host.as_str(), r.port))
    }

    /// A group's state ("Empty", "Stable", "Dead", ...) and member count.
    pub async fn describe(&mut self, group: &str) -> Result<(String, usize), ClientError> {
        let addr = self.coordinator(group).await?;
        let (c, v) = self.conn(Some(&addr)).await?;
        let ver = Self::version(v, ApiKey::DescribeGroups, 5);
        let r = c
            .send(
                &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]),
                ver,
            )
            .await?;
        let g = r
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| self.err("DescribeGroups returned no group".into()))?;
        Ok((g.group_state.as_str().to_string(), g.members.len()))
    }

    /// A group's committed offsets for `topics` (`partitions` each); -1
    /// entries are left out. Topics are always named: some brokers answer
    /// the "all topics" form with a malformed null array.
    pub async fn committed(
        &mut self,
        group: &str,
        topics: &BTreeMap<String, i32>,
    ) -> Result<Offsets, ClientError> {
        let addr = self.coordinator(group).await?;
        self.committed_at(&addr, group, topics).await
    }

    /// [`GroupAdmin::committed`] at the group's coordinator `addr`.
    async fn committed_at(
        &mut self,
        addr: &str,
        group: &str,
        topics: &BTreeMap<String, i32>,
    ) -> Result<Offsets, ClientError> {
        let (c, v) = self.conn(Some(addr)).await?;
        let ver = Self::version(v, ApiKey::OffsetFetch, 7).max(2);
        let list = topics
            .iter()
            .map(|(t, n)| {
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s(t)))
                    .with_partition_indexes((0..*n).collect())
            })
            .collect();
        let r = c
            .send(
                &OffsetFetchRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_topics(Some(list)),
                ver,
            )
            .await?;
        if r.error_code != 0 {
            return Err(self.err(format!(
                "OffsetFetch for group {group}: error code {}",
                r.error_code
            )));
        }
        let mut out = Offsets::new();
        for t in r.topics {
            for p in t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.as_str().to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Commits offsets for a group from outside it (generation -1). Fails
    /// for a group with active members, which is the fence kflip relies on.
    pub async fn commit(&mut self, group: &str, offsets: &Offsets) -> Result<(), ClientError> {
        let addr = self.coordinator(group).await?;
        let (c, v) = self.conn(Some(&addr)).await?;
        let ver = Self::version(v, ApiKey::OffsetCommit, 7).max(2);
        let r = c.send(&commit_request(group, offsets), ver).await?;
        self.commit_outcome(group, r)
    }

    /// The first partition error of an OffsetCommit response, if any.
    fn commit_outcome(&self, group: &str, r: OffsetCommitResponse) -> Result<(), ClientError> {
        for t in r.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(self.err(format!(
                        "OffsetCommit for group {group} {}[{}]: error code {}",
                        t.name.0.as_str(),
                        p.partition_index,
                        p.error_code
                    )));
                }
            }
        }
        Ok(())
    }

    /// Removes `member` from `group` (a member kflip fenced after a switch
    /// and that will never come back to this cluster), so the group does
    /// not wait for its session to expire.
    pub async fn leave(
        &mut self,
        group: &str,
        member: &str,
        protocol: Protocol,
    ) -> Result<(), ClientError> {
        match protocol {
            Protocol::Classic => self.leave_classic(group, member).await,
            Protocol::Consumer => self.leave_consumer(group, member).await,
        }
    }

    /// A KIP-848 member leaves with a heartbeat at member epoch -1.
    async fn leave_consumer(&mut self, group: &str, member: &str) -> Result<(), ClientError> {
        use kafka_protocol::messages::ConsumerGroupHeartbeatRequest;
        let addr = self.coordinator(group).await?;
        let (c, v) = self.conn(Some(&addr)).await?;
        let ver = Self::version(v, ApiKey::ConsumerGroupHeartbeat, 1);
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_member_epoch(-1);
        let r = c.send(&req, ver).await?;
        // UNKNOWN_MEMBER_ID: already gone.
        if r.error_code != 0 && r.error_code != 25 {
            return Err(self.err(format!(
                "ConsumerGroupHeartbeat leave for group {group}: error code {}",
                r.error_code
            )));
        }
        Ok(())
    }

    async fn leave_classic(&mut self, group: &str, member: &str) -> Result<(), ClientError> {
        use kafka_protocol::messages::leave_group_request::MemberIdentity;
        use kafka_protocol::messages::LeaveGroupRequest;
        let addr = self.coordinator(group).await?;
        let (c, v) = self.conn(Some(&addr)).await?;
        let ver = Self::version(v, ApiKey::LeaveGroup, 4);
        let mut req = LeaveGroupRequest::default().with_group_id(GroupId(s(group)));
        if ver >= 3 {
            req = req.with_members(vec![MemberIdentity::default().with_member_id(s(member))]);
        } else {
            req = req.with_member_id(s(member));
        }
        let r = c.send(&req, ver).await?;
        if r.error_code != 0 {
            return Err(self.err(format!(
                "LeaveGroup for group {group}: error code {}",
                r.error_code
            )));
        }
        Ok(())
    }
}

/// Which group protocol a member speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// JoinGroup/SyncGroup/Heartbeat.
    Classic,
    /// KIP-848 ConsumerGroupHeartbeat.
    Consumer,
}
