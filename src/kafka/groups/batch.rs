//! Group admin for many groups at once: one FindCoordinator for all of
//! them (v4+), then per coordinator one DescribeGroups or OffsetFetch (v8+)
//! per chunk of groups, and the OffsetCommits (one per group, the protocol
//! has no other form) pipelined over a few connections to the coordinator
//! (see [`super::lanes`]); the coordinators of a multi-broker cluster are
//! asked concurrently. A broker too old for the batched forms is asked one
//! group at a time.
//!
//! Every group gets its own outcome, as with the one-group calls; only a
//! failure to find any coordinator fails the call as a whole.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};

use super::lanes::each;
use super::{s, GroupAdmin, Offsets};
use crate::kafka::ClientError;

/// Each group's outcome, by group.
pub type PerGroup<T> = BTreeMap<String, Result<T, ClientError>>;

/// Groups per DescribeGroups or OffsetFetch request: a bound on the size of
/// one response (a described group lists its members' assignments).
const GROUPS_PER_REQUEST: usize = 100;

impl GroupAdmin {
    /// The coordinator address of each of `groups`. Groups the cluster
    /// could not place (COORDINATOR_NOT_AVAILABLE while the offsets topic
    /// loads, ...) carry their error.
    pub async fn coordinators(
        &mut self,
        groups: &[String],
    ) -> Result<PerGroup<String>, ClientError> {
        if groups.is_empty() {
            return Ok(PerGroup::new());
        }
        let (c, v) = self.conn(None).await?;
        let ver = Self::version(v, ApiKey::FindCoordinator, 4);
        if ver < 4 {
            let mut out = PerGroup::new();
            for g in groups {
                let found = self.coordinator(g).await;
                out.insert(g.clone(), found);
            }
            return Ok(out);
        }
        let req = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(groups.iter().map(|g| s(g)).collect());
        let r = c.send(&req, ver).await?;
        let mut out: PerGroup<String> = r
            .coordinators
            .into_iter()
            .map(|k| {
                let g = k.key.as_str().to_string();
                let found = if k.error_code == 0 {
                    Ok(format!("{}:{}", k.host.as_str(), k.port))
                } else {
                    Err(self.err(format!(
                        "FindCoordinator for group {g}: error code {}",
                        k.error_code
                    )))
                };
                (g, found)
            })
            .collect();
        for g in groups {
            if !out.contains_key(g) {
                let e = self.err(format!("FindCoordinator did not answer for group {g}"));
                out.insert(g.clone(), Err(e));
            }
        }
        Ok(out)
    }

    /// `groups` by coordinator; the groups without one go into `failed`.
    async fn by_coordinator<T>(
        &mut self,
        groups: &[String],
        failed: &mut PerGroup<T>,
    ) -> Result<BTreeMap<String, Vec<String>>, ClientError> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (g, found) in self.coordinators(groups).await? {
            match found {
                Ok(addr) => out.entry(addr).or_default().push(g),
                Err(e) => {
                    failed.insert(g, Err(e));
                }
            }
        }
        Ok(out)
    }

    /// The version of `key` the broker at `addr` and kflip both speak (at
    /// most `cap`), connecting if needed.
    async fn version_at(&mut self, addr: &str, key: ApiKey, cap: i16) -> Result<i16, ClientError> {
        let (_, v) = self.conn(Some(addr)).await?;
        Ok(Self::version(v, key, cap))
    }

    /// Each group's state and member count, as [`GroupAdmin::describe`].
    pub async fn describe_many(
        &mut self,
        groups: &[String],
    ) -> Result<PerGroup<(String, usize)>, ClientError> {
        let mut out = PerGroup::new();
        let mut work = BTreeMap::new();
        let placed = self.by_coordinator(groups, &mut out).await?;
        for (addr, gs) in &placed {
            let ver = match self.version_at(addr, ApiKey::DescribeGroups, 5).await {
                Ok(v) => v,
                Err(e) => {
                    fail_all(&mut out, addr, gs, &e);
                    continue;
                }
            };
            let reqs: Vec<DescribeGroupsRequest> = gs
                .chunks(GROUPS_PER_REQUEST)
                .map(|c| {
                    DescribeGroupsRequest::default()
                        .with_groups(c.iter().map(|g| GroupId(s(g))).collect())
                })
                .collect();
            work.insert(addr.clone(), (ver, reqs));
        }
        for (addr, results) in self.fan_out(work).await {
            let gs = &placed[&addr];
            for (chunk, r) in gs.chunks(GROUPS_PER_REQUEST).zip(results) {
                match r {
                    Ok(resp) => {
                        for g in resp.groups {
                            let name = g.group_id.0.as_str().to_string();
                            let state = g.group_state.as_str().to_string();
                            out.insert(name, Ok((state, g.members.len())));
                        }
                    }
                    Err(e) => fail_all(&mut out, &addr, chunk, &e),
                }
            }
            self.missing(&mut out, gs, "DescribeGroups");
        }
        Ok(out)
    }

    /// Each group's committed offsets for `topics`, as
    /// [`GroupAdmin::committed`]: all the groups of a coordinator in few
    /// OffsetFetch requests (v8+), or one group at a time before v8.
    pub async fn committed_many(
        &mut self,
        groups: &[String],
        topics: &BTreeMap<String, i32>,
    ) -> Result<PerGroup<Offsets>, ClientError> {
        let mut out = PerGroup::new();
        let mut work = BTreeMap::new();
        let placed = self.by_coordinator(groups, &mut out).await?;
        let wanted: Vec<OffsetFetchRequestTopics> = topics
            .iter()
            .map(|(t, n)| {
                OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s(t)))
                    .with_partition_indexes((0..*n).collect())
            })
            .collect();
        for (addr, gs) in &placed {
            let ver = match self.version_at(addr, ApiKey::OffsetFetch, 9).await {
                Ok(v) => v,
                Err(e) => {
                    fail_all(&mut out, addr, gs, &e);
                    continue;
                }
            };
            if ver < 8 {
                for g in gs {
                    let r = self.committed_at(addr, g, topics).await;
                    out.insert(g.clone(), r);
                }
                continue;
            }
            let reqs: Vec<OffsetFetchRequest> = gs
                .chunks(GROUPS_PER_REQUEST)
                .map(|c| {
                    let groups = c.iter().map(|g| {
                        OffsetFetchRequestGroup::default()
                            .with_group_id(GroupId(s(g)))
                            .with_member_epoch(-1)
                            .with_topics(Some(wanted.clone()))
                    });
                    OffsetFetchRequest::default().with_groups(groups.collect())
                })
                .collect();
            work.insert(addr.clone(), (ver, reqs));
        }
        for (addr, results) in self.fan_out(work).await {
            let gs = &placed[&addr];
            for (chunk, r) in gs.chunks(GROUPS_PER_REQUEST).zip(results) {
                let resp = match r {
                    Ok(resp) => resp,
                    Err(e) => {
                        fail_all(&mut out, &addr, chunk, &e);
                        continue;
                    }
                };
                for g in resp.groups {
                    let name = g.group_id.0.as_str().to_string();
                    let got = if g.error_code != 0 {
                        Err(self.err(format!(
                            "OffsetFetch for group {name}: error code {}",
                            g.error_code
                        )))
                    } else {
                        let mut offsets = Offsets::new();
                        for t in g.topics {
                            for p in t.partitions {
                                if p.error_code == 0 && p.committed_offset >= 0 {
                                    let key = (t.name.0.as_str().to_string(), p.partition_index);
                                    offsets.insert(key, p.committed_offset);
                                }
                            }
                        }
                        Ok(offsets)
                    };
                    out.insert(name, got);
                }
            }
            self.missing(&mut out, gs, "OffsetFetch");
        }
        Ok(out)
    }

    /// Commits each group's offsets from outside it, as
    /// [`GroupAdmin::commit`]; the commits to one coordinator pipelined.
    pub async fn commit_many(
        &mut self,
        commits: &BTreeMap<String, Offsets>,
    ) -> Result<PerGroup<()>, ClientError> {
        let mut out = PerGroup::new();
        let mut work = BTreeMap::new();
        let groups: Vec<String> = commits.keys().cloned().collect();
        let placed = self.by_coordinator(&groups, &mut out).await?;
        for (addr, gs) in &placed {
            let ver = match self.version_at(addr, ApiKey::OffsetCommit, 7).await {
                Ok(v) => v.max(2),
                Err(e) => {
                    fail_all(&mut out, addr, gs, &e);
                    continue;
                }
            };
            let reqs: Vec<_> = gs.iter().map(|g| commit_request(g, &commits[g])).collect();
            work.insert(addr.clone(), (ver, reqs));
        }
        for (addr, results) in self.fan_out(work).await {
            let gs = &placed[&addr];
            for (g, r) in gs.iter().zip(results) {
                let done = r.and_then(|resp| self.commit_outcome(g, resp));
                out.insert(g.clone(), done);
            }
            self.missing(&mut out, gs, "OffsetCommit");
        }
        Ok(out)
    }

    /// An error for each of `groups` that a response left out.
    fn missing<T>(&self, out: &mut PerGroup<T>, groups: &[String], api: &str) {
        for g in groups {
            if !out.contains_key(g) {
                let e = self.err(format!("{api} did not answer for group {g}"));
                out.insert(g.clone(), Err(e));
            }
        }
    }
}

/// An OffsetCommit of `offsets` for `group` from outside it (generation
/// -1, no member).
pub(super) fn commit_request(group: &str, offsets: &Offsets) -> OffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), o) in offsets {
        topics.entry(t.as_str()).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_metadata(Some(s("kflip"))),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        )
}

/// The failure of coordinator `addr` (its connection), for each of the
/// `groups` it holds.
fn fail_all<T>(out: &mut PerGroup<T>, addr: &str, groups: &[String], e: &ClientError) {
    for g in groups {
        out.insert(g.clone(), Err(each(addr, e)));
    }
}
