//! What both loops of one upstream session share, and when its SASL
//! session is renewed.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;
use crate::config::{ClusterName, ProxyConfig};
use crate::protocol::filters::ConnCtx;

/// Per-session context shared by both loops.
pub(super) struct Ctx {
    /// What the filter chain sees of this session.
    pub(super) filters: ConnCtx,
    pub(super) shared: Arc<Shared>,
    /// The cluster this session forwards to.
    pub(super) cluster: ClusterName,
    /// The switch epoch it was opened under.
    pub(super) epoch: u64,
    /// Proxy settings when it opened.
    pub(super) cfg: ProxyConfig,
    /// Whether this is the connection's first session (the handshake
    /// timeout applies to its first request).
    pub(super) first: bool,
    /// The principal the client authenticated as (`proxy.sasl`).
    pub(super) principal: Option<String>,
    /// When the upstream SASL session must be renewed; `None` when it
    /// does not expire.
    pub(super) renewal: Option<Renewal>,
}

/// Shortest time between two upstream logins of one connection. A broker
/// that gives sessions shorter than this still gets a working connection,
/// renewed at this pace, never a busy loop of logins.
const MIN_RENEWAL: Duration = Duration::from_millis(500);

/// When an upstream SASL session with a lifetime (KIP-368,
/// `connections.max.reauth.ms` on the broker) is renewed: the broker closes
/// a connection on its first request after the session expired, so kflip
/// stops forwarding a little before, lets in-flight requests finish, and
/// logs in again on a new upstream connection. The client connection stays.
#[derive(Clone, Copy, Debug)]
pub(super) struct Renewal {
    /// When the request loop stops forwarding new requests.
    pub(super) at: Instant,
    /// When the broker's session expires.
    pub(super) expires: Instant,
}

impl Renewal {
    /// The renewal of a session of `lifetime` whose login started at
    /// `start`: at 80-90% of the lifetime, random per session (as the Java
    /// client does, so connections opened together do not all renew at
    /// once).
    pub(super) fn after_login(start: Instant, lifetime: Duration) -> Renewal {
        let mut b = [0u8; 2];
        // No randomness: renew at 85%, still in time.
        let jitter = match getrandom::fill(&mut b) {
            Ok(()) => f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX),
            Err(_) => 0.5,
        };
        Renewal {
            at: start + renewal_delay(lifetime, 0.80 + 0.10 * jitter),
            expires: start + lifetime,
        }
    }

    /// How long in-flight requests may take to finish once the renewal
    /// began at `now`: the time left of the session, at least `floor`
    /// (`proxy.switch_drain`). Requests already sent are answered even
    /// after the session expired; the broker only refuses new ones.
    pub(super) fn drain(&self, now: Instant, floor: Duration) -> Duration {
        self.expires.saturating_duration_since(now).max(floor)
    }
}

/// How long after the login a session of `lifetime` is renewed, at
/// `fraction` of it, and never sooner than [`MIN_RENEWAL`].
fn renewal_delay(lifetime: Duration, fraction: f64) -> Duration {
    lifetime.mul_f64(fraction.clamp(0.0, 1.0)).max(MIN_RENEWAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_between_80_and_90_percent_of_the_lifetime() {
        let start = Instant::now();
        let lifetime = Duration::from_secs(100);
        for _ in 0..100 {
            let r = Renewal::after_login(start, lifetime);
            let after = r.at - start;
            assert!(after >= Duration::from_secs(80), "{after:?}");
            assert!(after <= Duration::from_secs(90), "{after:?}");
            assert_eq!(r.expires - start, lifetime);
        }
    }

    #[test]
    fn a_very_short_session_is_renewed_at_a_bounded_pace() {
        assert_eq!(renewal_delay(Duration::from_millis(1), 0.85), MIN_RENEWAL);
        assert_eq!(renewal_delay(Duration::ZERO, 0.85), MIN_RENEWAL);
        assert_eq!(
            renewal_delay(Duration::from_secs(2), 0.85),
            Duration::from_millis(1700)
        );
    }

    #[test]
    fn the_drain_lasts_until_expiry_and_at_least_the_floor() {
        let start = Instant::now();
        let r = Renewal {
            at: start + Duration::from_secs(8),
            expires: start + Duration::from_secs(10),
        };
        let floor = Duration::from_secs(1);
        assert_eq!(r.drain(r.at, floor), Duration::from_secs(2));
        assert_eq!(r.drain(start + Duration::from_secs(11), floor), floor);
    }
}
