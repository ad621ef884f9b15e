//! Giving the heap's free memory back to the kernel once a burst of traffic
//! is over.
//!
//! glibc's malloc keeps the memory of freed buffers in its per-thread
//! arenas: after a load of 1 MiB Produce and Fetch frames, an idle proxy
//! kept both worker threads' arenas resident, 2 MiB each, most of it free.
//! `malloc_trim` returned about half of it (BENCHMARKS.md). The library
//! forbids `unsafe`, so the binary registers the call ([`set_trim`]) and the
//! proxy runs [`trim_when_idle`] on its byte counters: one trim after each
//! burst, never on the path of a request.

use std::sync::OnceLock;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

static TRIM: OnceLock<fn()> = OnceLock::new();

/// Traffic (bytes in and out) since the last trim that makes the next quiet
/// moment worth a trim; a heartbeat or a metadata refresh is not.
const BURST: u64 = 1 << 20;

/// How often the counters are read; a trim follows one quiet period.
const TICK: Duration = Duration::from_secs(1);

/// Registers the function that gives free heap memory back (the binary's
/// `malloc_trim`). Without one, [`trim_when_idle`] does nothing.
pub fn set_trim(trim: fn()) {
    let _ = TRIM.set(trim);
}

/// Trims once after every burst of at least 1 MiB of traffic, as soon as a
/// whole second passes without any, until `stop` is cancelled. `moved` is a
/// running total of bytes.
pub async fn trim_when_idle(moved: impl Fn() -> u64, stop: CancellationToken) {
    let Some(trim) = TRIM.get().copied() else {
        return;
    };
    let mut idle = Idle::new(moved());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if idle.observe(moved()) {
            // The trim walks the arenas' free lists: off the runtime's
            // worker threads.
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

/// When a trim is due, from successive readings of a byte counter.
struct Idle {
    last: u64,
    trimmed_at: u64,
}

impl Idle {
    fn new(now: u64) -> Self {
        Idle {
            last: now,
            trimmed_at: now,
        }
    }

    /// Whether to trim now, given the counter's new reading.
    fn observe(&mut self, now: u64) -> bool {
        let quiet = now == self.last;
        self.last = now;
        if quiet && now.wrapping_sub(self.trimmed_at) >= BURST {
            self.trimmed_at = now;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_a_burst_once_quiet() {
        let mut idle = Idle::new(0);
        assert!(!idle.observe(0), "nothing moved");
        assert!(!idle.observe(5 << 20), "still moving");
        assert!(!idle.observe(9 << 20), "still moving");
        assert!(idle.observe(9 << 20), "quiet after a burst");
        assert!(!idle.observe(9 << 20), "already trimmed");
        assert!(!idle.observe((9 << 20) + 300), "a heartbeat");
        assert!(!idle.observe((9 << 20) + 300), "too little moved to trim");
        assert!(!idle.observe(12 << 20));
        assert!(idle.observe(12 << 20));
    }
}
