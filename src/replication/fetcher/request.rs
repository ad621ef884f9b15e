//! A leader's next Fetch request.

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::session::{Params, Plan, Session};
use super::task::MAX_BYTES;
use super::Inner;
use crate::replication::state::SourcePartition;

/// The next Fetch to leader `id`, for every partition it leads that is
/// read: in `session`, those whose parameters changed; in a full request,
/// all of them, the first one turning with `turn` (a broker returns a
/// batch larger than the partition's limit only when it comes first; in a
/// session the broker turns them). Building it costs a lookup per
/// partition, not a sort or a copy: at 2,000 partitions a request is built
/// for every record that arrives under a light load.
pub(super) fn request(
    inner: &Inner,
    id: i32,
    turn: usize,
    session: &Session,
) -> Option<(FetchRequest, Plan)> {
    let cfg = &inner.state.cfg;
    let q = inner.lock();
    let max = cfg.fetch_partition_bytes.min(i32::MAX as u64) as i32;
    let is_mine = |p: &super::Part| p.leader == Some(id) && !p.stopped;
    let mine: Vec<(&SourcePartition, Params)> = q
        .map
        .iter()
        .filter(|(_, p)| is_mine(p))
        .map(|(sp, p)| {
            let params = Params {
                fetch: p.fetch,
                epoch: p.epoch,
                last_epoch: p.last_epoch,
                max,
                generation: p.generation,
            };
            (sp, params)
        })
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut plan = session.plan(&mine, |sp| q.map.get(sp).is_some_and(is_mine));
    drop(q);
    plan.named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if plan.full {
        let n = plan.named.len();
        plan.named.rotate_left(turn % n);
    }
    let topics = by_topic(plan.named.iter().map(|(sp, params)| {
        let part = FetchPartition::default()
            .with_partition(sp.partition)
            .with_current_leader_epoch(params.epoch)
            .with_fetch_offset(params.fetch)
            .with_last_fetched_epoch(params.last_epoch)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(params.max);
        (sp, part)
    }))
    .into_iter()
    .map(|(topic, parts)| {
        FetchTopic::default()
            .with_topic(topic)
            .with_partitions(parts)
    })
    .collect();
    let forgotten = by_topic(plan.forgotten.iter().map(|sp| (sp, sp.partition)))
        .into_iter()
        .map(|(topic, parts)| {
            ForgottenTopic::default()
                .with_topic(topic)
                .with_partitions(parts)
        })
        .collect();
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(cfg.fetch_wait.as_millis().clamp(1, 30_000) as i32)
        .with_min_bytes(cfg.fetch_min_bytes.clamp(1, i32::MAX as u64) as i32)
        .with_max_bytes(MAX_BYTES)
        .with_isolation_level(1)
        .with_session_id(plan.id)
        .with_session_epoch(plan.epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten);
    Some((req, plan))
}

/// Consecutive items of one topic grouped under its name, in order.
fn by_topic<'a, T>(
    items: impl Iterator<Item = (&'a SourcePartition, T)>,
) -> Vec<(TopicName, Vec<T>)> {
    let mut groups: Vec<(&'a str, Vec<T>)> = Vec::new();
    for (sp, item) in items {
        match groups.last_mut().filter(|(t, _)| *t == sp.topic) {
            Some((_, v)) => v.push(item),
            None => groups.push((&sp.topic, vec![item])),
        }
    }
    groups
        .into_iter()
        .map(|(t, v)| (TopicName(StrBytes::from_string(t.to_string())), v))
        .collect()
}
