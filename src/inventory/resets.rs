//! Partitions a consumer found no committed offset for, until it asks
//! where to start: its next ListOffsets for the partition says whether it
//! resets to the log start or the log end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most partitions remembered at once.
const MAX_PENDING: usize = 50_000;
/// How long a consumer has to ask for a partition's start.
const PENDING_FOR: Duration = Duration::from_secs(120);

type Key = (IpAddr, String, String, i32);

/// Partitions without a committed offset, per client (address and client
/// id; a consumer asks its group's coordinator and the partition's leader
/// on different connections).
#[derive(Default)]
pub struct Resets {
    pending: Mutex<HashMap<Key, (String, Instant)>>,
}

impl Resets {
    /// `group` has no committed offset for `topic`/`partition`, as asked by
    /// this client.
    pub fn no_offset(
        &self,
        peer: IpAddr,
        client_id: &str,
        group: &str,
        topic: &str,
        partition: i32,
    ) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if p.len() >= MAX_PENDING {
            p.retain(|_, (_, at)| now.duration_since(*at) < PENDING_FOR);
            if p.len() >= MAX_PENDING {
                return;
            }
        }
        p.insert(
            (peer, client_id.to_owned(), topic.to_owned(), partition),
            (group.to_owned(), now),
        );
    }

    /// Whether any partition is waiting (cheap: most ListOffsets need no
    /// lookup).
    pub fn any(&self) -> bool {
        !self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The group whose missing offset this client's ListOffsets for the
    /// partition answers, if it was waiting; it stops waiting.
    pub fn take(
        &self,
        peer: IpAddr,
        client_id: &str,
        topic: &str,
        partition: i32,
    ) -> Option<String> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (group, at) = p.remove(&(peer, client_id.to_owned(), topic.to_owned(), partition))?;
        (at.elapsed() < PENDING_FOR).then_some(group)
    }

    /// Like `take`, without forgetting.
    pub fn peek(
        &self,
        peer: IpAddr,
        client_id: &str,
        topic: &str,
        partition: i32,
    ) -> Option<String> {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.get(&(peer, client_id.to_owned(), topic.to_owned(), partition))
            .filter(|(_, at)| at.elapsed() < PENDING_FOR)
            .map(|(g, _)| g.clone())
    }
}
