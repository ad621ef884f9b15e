//! The gate every connection passes when it starts an upstream session.
//!
//! A connection subscribes to the switch state once, before it reads the
//! state, and keeps that receiver for its life; it starts a session only
//! through [`outside_hold`], and checks the receiver again once connected
//! ([`switched_while_connecting`]). So no session starts on the old cluster
//! after a switch began: one opened during the hold waits for the switch,
//! and one whose connect raced the switch starts over on the new cluster.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::SwitchState;

/// Waits until no planned switch holds and returns the state then; `None`
/// on shutdown. The switch bounds its own hold
/// ([`super::Switchboard::hold_deadline`]).
pub async fn outside_hold(
    shutdown: &CancellationToken,
    switches: &mut watch::Receiver<SwitchState>,
    mut state: SwitchState,
) -> Option<SwitchState> {
    while state.holding {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            changed = switches.changed() => if changed.is_err() { return None },
        }
        state = switches.borrow_and_update().clone();
    }
    Some(state)
}

/// The state to start over from if a hold or a switch began while a
/// session for `state` was being set up (its upstream belongs to a cluster
/// being left).
pub fn switched_while_connecting(
    switches: &mut watch::Receiver<SwitchState>,
    state: &SwitchState,
) -> Option<SwitchState> {
    if !switches.has_changed().unwrap_or(false) {
        return None;
    }
    let now = switches.borrow_and_update().clone();
    (now.holding || now.epoch != state.epoch).then_some(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterName;

    fn state(epoch: u64, active: &str, holding: bool) -> SwitchState {
        SwitchState {
            epoch,
            active: ClusterName(active.into()),
            holding,
        }
    }

    #[tokio::test]
    async fn a_session_waits_out_the_hold_and_starts_on_the_new_cluster() {
        let (tx, mut rx) = watch::channel(state(0, "dc1", true));
        let stop = CancellationToken::new();
        let first = rx.borrow_and_update().clone();
        let waiter = tokio::spawn(async move { outside_hold(&stop, &mut rx, first).await });
        tx.send_replace(state(1, "dc2", false));
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.active.as_str(), "dc2");
        assert_eq!(got.epoch, 1);
    }

    #[test]
    fn a_switch_during_connect_starts_the_session_over() {
        let (tx, mut rx) = watch::channel(state(0, "dc1", false));
        let s = rx.borrow_and_update().clone();
        assert_eq!(switched_while_connecting(&mut rx, &s), None);
        tx.send_replace(state(0, "dc1", true));
        let now = switched_while_connecting(&mut rx, &s).unwrap();
        assert!(now.holding);
    }
}
