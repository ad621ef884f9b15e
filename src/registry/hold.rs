//! Admission of one registry request through the switch's gate, the same
//! gate Kafka sessions start through ([`crate::failover::gate`]).
//!
//! A request that arrives while a planned switch holds waits for the switch
//! (bounded by [`Switchboard::hold_deadline`] from its arrival, then
//! refused), and goes to the new cluster's registry after it. An admitted
//! request is counted in [`Switchboard::in_flight`] until its answer is
//! back, so a switch that starts meanwhile drains it before it moves on.
//! The count is taken before the state is checked again: a hold published
//! between the two sends the request back to wait, and a hold published
//! after both finds it counted.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::failover::{gate, InFlight, SwitchState, Switchboard};

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The switch still held when the bound expired.
    #[error(
        "a switch of the active cluster is in progress and did not finish within {0:?}; retry"
    )]
    StillHolding(Duration),
    /// kflip is shutting down.
    #[error("kflip is shutting down")]
    ShuttingDown,
}

/// Waits until no switch holds, then counts the request as in flight;
/// returns the state it must be forwarded by.
pub async fn admit(
    board: &Arc<Switchboard>,
    shutdown: &CancellationToken,
) -> Result<(SwitchState, InFlight), Refused> {
    let mut switches = board.subscribe();
    let bound = Switchboard::hold_deadline(&board.proxy_config());
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let state = switches.borrow_and_update().clone();
        let waited =
            tokio::time::timeout_at(deadline, gate::outside_hold(shutdown, &mut switches, state))
                .await;
        let state = match waited {
            Ok(Some(s)) => s,
            Ok(None) => return Err(Refused::ShuttingDown),
            Err(_) => return Err(Refused::StillHolding(bound)),
        };
        let counted = board.forwarded();
        if gate::switched_while_connecting(&mut switches, &state).is_none() {
            return Ok((state, counted));
        }
        drop(counted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterName, Config};
    use crate::failover::EngineLink;

    /// A planned switch (the old cluster answers a TCP connect) waits for
    /// a request admitted before it; a request arriving during its hold is
    /// admitted only after the flip, onto the new cluster.
    #[tokio::test]
    async fn a_request_during_the_hold_waits_and_goes_to_the_new_cluster() {
        let old = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let yaml = format!(
            "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\n  dc2: {{ bootstrap: \"127.0.0.1:9\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n  switch_drain: 60s\n",
            old.local_addr().unwrap()
        );
        let cfg = Config::parse(&yaml).unwrap();
        let p = cfg.proxy.clone().unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(cfg));
        let stop = CancellationToken::new();
        let board = Arc::new(Switchboard::new(rx, p, stop.clone(), EngineLink::new(None)));

        let (before, in_flight) = admit(&board, &stop).await.unwrap();
        assert_eq!(before.active.as_str(), "dc1");
        let mut states = board.subscribe();
        let switch = tokio::spawn({
            let board = board.clone();
            async move { crate::failover::switch::run(&board, before, ClusterName::from("dc2")).await }
        });
        states.wait_for(|s| s.holding).await.unwrap();
        let held = tokio::spawn({
            let (board, stop) = (board.clone(), stop.clone());
            async move { admit(&board, &stop).await.map(|(s, _)| s) }
        });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert!(!held.is_finished(), "admitted during the hold");
        assert!(
            !switch.is_finished(),
            "the switch drains the request in flight"
        );
        drop(in_flight);
        let report = switch.await.unwrap();
        assert!(report.planned);
        assert_eq!(report.expired_in, None, "drained, not expired");
        let after = held.await.unwrap().unwrap();
        assert_eq!(after.active.as_str(), "dc2");
        assert_eq!(after.epoch, 1);
        assert_eq!(board.in_flight(), 0);
    }

    #[tokio::test]
    async fn shutdown_refuses_a_held_request() {
        let old = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let yaml = format!(
            "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\n  dc2: {{ bootstrap: \"127.0.0.1:9\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n  switch_drain: 60s\n",
            old.local_addr().unwrap()
        );
        let cfg = Config::parse(&yaml).unwrap();
        let p = cfg.proxy.clone().unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(cfg));
        let stop = CancellationToken::new();
        let board = Arc::new(Switchboard::new(rx, p, stop.clone(), EngineLink::new(None)));
        let (before, in_flight) = admit(&board, &stop).await.unwrap();
        let mut states = board.subscribe();
        let b = board.clone();
        let _switch = tokio::spawn(async move {
            crate::failover::switch::run(&b, before, ClusterName::from("dc2")).await
        });
        states.wait_for(|s| s.holding).await.unwrap();
        stop.cancel();
        assert!(matches!(
            admit(&board, &stop).await,
            Err(Refused::ShuttingDown)
        ));
        drop(in_flight);
    }
}
