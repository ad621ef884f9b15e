//! Group requests: who a Heartbeat, SyncGroup or OffsetCommit claims to
//! come from, and the offsets an OffsetCommit commits (read, and rewritten
//! in place of the translated ones).

use std::ops::Range;
use std::sync::Arc;

use bytes::BufMut;
use kafka_protocol::messages::ApiKey;

use super::walk::*;

/// Who a group request claims to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The consumer group.
    pub group_id: String,
    /// The generation the member believes it is in; -1 when absent
    /// (OffsetCommit v0) or for a simple (groupless) commit.
    pub generation_id: i32,
    /// The member id the coordinator assigned; empty when absent.
    pub member_id: String,
}

/// Reads the member identity at the start of a Heartbeat (v0-4), SyncGroup
/// (v0-5) or OffsetCommit (v0-9) request body.
pub fn group_member(body: &[u8], api: ApiKey, version: i16) -> Result<GroupMember, ParseError> {
    let (flexible_from, max) = match api {
        ApiKey::Heartbeat => (4, 4),
        ApiKey::SyncGroup => (4, 5),
        ApiKey::OffsetCommit => (8, 9),
        _ => return Err(unsupported(api, version)),
    };
    if !(0..=max).contains(&version) {
        return Err(unsupported(api, version));
    }
    let mut w = Walk::new(body, version >= flexible_from);
    let group_id = w.str("group_id")?;
    if api == ApiKey::OffsetCommit && version == 0 {
        return Ok(GroupMember {
            group_id,
            generation_id: -1,
            member_id: String::new(),
        });
    }
    let generation_id = w.i32("generation_id")?;
    let member_id = w.str("member_id")?;
    Ok(GroupMember {
        group_id,
        generation_id,
        member_id,
    })
}

// ---------------------------------------------------------------------------
// Fetch
// ---------------------------------------------------------------------------

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffset {
    /// Topic name, shared by the topic's entries.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// The committed offset, in the offset space of the cluster the client
    /// thinks it talks to.
    pub offset: i64,
}

/// What kflip needs of an OffsetCommit request to translate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitView {
    /// The consumer group.
    pub group_id: String,
    /// Generation (or, v9+, member epoch); -1 for a simple commit or v0.
    pub generation_id: i32,
    /// Member id; empty for a simple commit or v0.
    pub member_id: String,
    /// Static membership id (v7+).
    pub group_instance_id: Option<String>,
    /// Every committed offset, in request order.
    pub offsets: Vec<CommitOffset>,
}

/// A walked OffsetCommit body: the view plus where its fields sit.
struct CommitLayout {
    view: CommitView,
    /// From generation_id to the end of group_instance_id (v1+): the span a
    /// simple commit replaces.
    member: Option<Range<usize>>,
    /// Where each committed_offset starts, in the order of `view.offsets`.
    offset_at: Vec<usize>,
}

fn walk_commit(body: &[u8], version: i16) -> Result<CommitLayout, ParseError> {
    if !(0..=9).contains(&version) {
        return Err(unsupported(ApiKey::OffsetCommit, version));
    }
    let mut w = Walk::new(body, version >= 8);
    let group_id = w.str("group_id")?;
    let mut view = CommitView {
        group_id,
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        offsets: Vec::new(),
    };
    let mut member = None;
    if version >= 1 {
        let start = w.pos();
        view.generation_id = w.i32("generation_id")?;
        view.member_id = w.str("member_id")?;
        if version >= 7 {
            view.group_instance_id = w.str_opt("group_instance_id")?;
        }
        member = Some(start..w.pos());
    }
    if (2..=4).contains(&version) {
        w.skip(8, "retention_time_ms")?;
    }
    let mut offset_at = Vec::new();
    for _ in 0..w.array("topics")? {
        let topic: Arc<str> = w.str("topic name")?.into();
        for _ in 0..w.array("partitions")? {
            let partition = w.i32("partition_index")?;
            let at = w.pos();
            let offset = w.i64("committed_offset")?;
            if version >= 6 {
                w.skip(4, "committed_leader_epoch")?;
            }
            if version == 1 {
                w.skip(8, "commit_timestamp")?;
            }
            w.skip_str("committed_metadata")?;
            w.tags("partition tagged fields")?;
            offset_at.push(at);
            view.offsets.push(CommitOffset {
                topic: topic.clone(),
                partition,
                offset,
            });
        }
        w.tags("topic tagged fields")?;
    }
    w.tags("request tagged fields")?;
    Ok(CommitLayout {
        view,
        member,
        offset_at,
    })
}

/// Reads an OffsetCommit request body. Versions 2 to 9 are the ones kflip
/// advertises; 0 and 1 are read too.
pub fn offset_commit(body: &[u8], version: i16) -> Result<CommitView, ParseError> {
    walk_commit(body, version).map(|l| l.view)
}

/// Rewrites an OffsetCommit body at the same version: each committed offset
/// becomes `new_offsets(topic, partition, old)`, and with `as_simple` the
/// commit is made groupless (generation -1, member "", no instance id) so
/// the target's coordinator accepts it from a member it never saw join.
/// Every other byte (metadata, leader epochs, tagged fields) is copied.
pub fn rewrite_offset_commit(
    body: &[u8],
    version: i16,
    new_offsets: impl Fn(&str, i32, i64) -> i64,
    as_simple: bool,
) -> Result<Vec<u8>, ParseError> {
    let layout = walk_commit(body, version)?;
    let flexible = version >= 8;
    let mut out = Vec::with_capacity(body.len() + 8);
    let mut at = 0;
    if let (true, Some(member)) = (as_simple, &layout.member) {
        out.extend_from_slice(&body[..member.start]);
        out.put_i32(-1);
        put_str(&mut out, flexible, Some(""));
        if version >= 7 {
            put_str(&mut out, flexible, None);
        }
        at = member.end;
    }
    for (o, &pos) in layout.view.offsets.iter().zip(&layout.offset_at) {
        out.extend_from_slice(&body[at..pos]);
        out.put_i64(new_offsets(&o.topic, o.partition, o.offset));
        at = pos + 8;
    }
    out.extend_from_slice(&body[at..]);
    Ok(out)
}

/// The group id of a LeaveGroup request.
pub fn leave_group_id(body: &[u8], version: i16) -> Option<String> {
    let compact = version >= 4;
    let mut r = super::varint::Reader::new(body, 0);
    let len = if compact {
        (r.uvarint().ok()? as usize).checked_sub(1)?
    } else {
        usize::try_from(r.i16().ok()?).ok()?
    };
    Some(String::from_utf8_lossy(r.take(len).ok()?).into_owned())
}
