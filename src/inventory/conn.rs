//! What one client connection has already told the inventory.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Fact, Inventory, Who};

/// Most remembered facts per connection; past it the memory starts over.
const MAX_SEEN: usize = 1024;

/// A client connection's identity and the facts it reported.
pub struct Conn {
    peer: IpAddr,
    principal: OnceLock<String>,
    software: Mutex<Option<String>>,
    seen: Mutex<HashSet<u64>>,
}

impl Conn {
    /// A connection from `peer`.
    pub fn new(peer: IpAddr) -> Conn {
        Conn {
            peer,
            principal: OnceLock::new(),
            software: Mutex::new(None),
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// The client's address.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// The principal it logged in as.
    pub fn set_principal(&self, principal: &str) {
        let _ = self.principal.set(principal.to_owned());
    }

    /// The client software its ApiVersions named.
    pub fn set_software(&self, name: &str, version: &str) {
        let text = format!("{name} {version}");
        let mut sw = self.software.lock().unwrap_or_else(|e| e.into_inner());
        if sw.as_deref() != Some(text.as_str()) {
            *sw = Some(text);
            // Reported again with the software.
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// The client as the inventory keys it.
    pub fn who(&self, client_id: &str) -> Who {
        Who {
            client_id: client_id.to_owned(),
            principal: self.principal.get().cloned(),
        }
    }

    /// Whether this connection meets `what` for the first time (for log
    /// lines said once per connection).
    pub fn first_time(&self, what: &impl Hash) -> bool {
        let mut h = DefaultHasher::new();
        "once".hash(&mut h);
        what.hash(&mut h);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_SEEN {
            seen.clear();
        }
        seen.insert(h.finish())
    }

    /// Reports `fact` unless this connection already did (a plain
    /// `Seen` is reported again each minute, for the last-seen time).
    pub fn note(&self, inv: &Inventory, client_id: &str, fact: &Fact<'_>) {
        let mut h = DefaultHasher::new();
        client_id.hash(&mut h);
        fact.hash(&mut h);
        if matches!(fact, Fact::Seen) {
            let minute = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() / 60)
                .unwrap_or(0);
            minute.hash(&mut h);
        }
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() >= MAX_SEEN {
                seen.clear();
            }
            if !seen.insert(h.finish()) {
                return;
            }
        }
        let software = self
            .software
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        inv.record(&self.who(client_id), self.peer, software.as_deref(), fact);
    }
}
