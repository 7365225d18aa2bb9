//! What a running processor knows about its own health: whether receiving fails, and how many
//! handler runs failed lately.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::health::{Health, Outage};

/// The length of one counting window; the failure ratio covers the current and the previous
/// one, so between one and two windows of runs.
const WINDOW: Duration = Duration::from_secs(30);

/// Fewer runs than this in the counted windows never make a processor degraded: two failures
/// out of three say little.
pub(crate) const MIN_RUNS: u64 = 10;

/// Receive failures and recent handler runs, shared by the fetch loop and the handlers.
pub(crate) struct HealthWatch {
    /// Set while receiving fails: lets a good receive skip the outage's lock.
    failing: AtomicBool,
    receive: Outage,
    last_receive_error: Mutex<Option<String>>,
    runs: Mutex<Windows>,
    degraded_ratio: f64,
}

struct Windows {
    started: Instant,
    current: Tally,
    previous: Tally,
}

#[derive(Clone, Copy, Default)]
struct Tally {
    runs: u64,
    failures: u64,
}

impl HealthWatch {
    /// A watch that calls the processor degraded when at least `degraded_ratio` of the recent
    /// handler runs failed.
    pub fn new(degraded_ratio: f64) -> Self {
        Self {
            failing: AtomicBool::new(false),
            receive: Outage::default(),
            last_receive_error: Mutex::new(None),
            runs: Mutex::new(Windows {
                started: Instant::now(),
                current: Tally::default(),
                previous: Tally::default(),
            }),
            degraded_ratio,
        }
    }

    /// A receive returned a delivery (or the end of the subscription); `true` when that ends
    /// an outage. Costs one atomic load while receiving works (it runs for every delivery).
    pub fn received(&self) -> bool {
        let ended = self.failing.load(Relaxed) && self.failing.swap(false, Relaxed);
        if ended {
            self.receive.recovered();
        }
        ended
    }

    /// A receive failed with `error` (the fetch loop retries it).
    pub fn receive_failed(&self, error: &dyn std::fmt::Display) {
        *lock(&self.last_receive_error) = Some(error.to_string());
        self.receive.failed();
        self.failing.store(true, Relaxed);
    }

    /// A handler run ended, `ok` or not.
    pub fn handler_ran(&self, ok: bool) {
        let mut windows = lock(&self.runs);
        windows.roll();
        windows.current.runs += 1;
        if !ok {
            windows.current.failures += 1;
        }
    }

    /// The processor's health while its task runs.
    pub fn health(&self) -> Health {
        if let Some(since) = self.receive.since() {
            let error = lock(&self.last_receive_error).clone().unwrap_or_default();
            return Health::not_ready(format!("receiving fails: {error}"), since);
        }
        let recent = {
            let mut windows = lock(&self.runs);
            windows.roll();
            Tally {
                runs: windows.current.runs + windows.previous.runs,
                failures: windows.current.failures + windows.previous.failures,
            }
        };
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let ratio = recent.failures as f64 / recent.runs.max(1) as f64;
        if recent.runs >= MIN_RUNS && ratio >= self.degraded_ratio {
            return Health::degraded(format!(
                "{} of the last {} handler runs failed (limit {:.0} %)",
                recent.failures,
                recent.runs,
                self.degraded_ratio * 100.0
            ));
        }
        Health::ready()
    }
}

impl Windows {
    /// Moves to a new window when the current one is over (forgetting both after a quiet spell
    /// of two windows).
    fn roll(&mut self) {
        let elapsed = self.started.elapsed();
        if elapsed < WINDOW {
            return;
        }
        self.previous = if elapsed < WINDOW * 2 {
            self.current
        } else {
            Tally::default()
        };
        self.current = Tally::default();
        self.started = Instant::now();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HealthState;

    #[test]
    fn failures_above_the_ratio_make_it_degraded_only_with_enough_runs() {
        let watch = HealthWatch::new(0.5);
        for _ in 0..(MIN_RUNS - 1) {
            watch.handler_ran(false);
        }
        assert_eq!(watch.health().state(), HealthState::Ready, "too few runs");
        watch.handler_ran(false);
        let health = watch.health();
        assert_eq!(health.state(), HealthState::Degraded);
        assert!(
            health.reason().unwrap().contains("10 of the last 10"),
            "{health}"
        );
        for _ in 0..20 {
            watch.handler_ran(true);
        }
        assert_eq!(
            watch.health().state(),
            HealthState::Ready,
            "10 of 30 failed"
        );
    }

    #[test]
    fn a_failing_receive_makes_it_not_ready_until_one_succeeds() {
        let watch = HealthWatch::new(0.5);
        watch.receive_failed(&"connection refused");
        let health = watch.health();
        assert_eq!(health.state(), HealthState::NotReady);
        assert!(health.reason().unwrap().contains("connection refused"));
        assert!(health.since().is_some());
        assert!(watch.received(), "the outage ends");
        assert!(watch.health().is_ready());
        assert!(!watch.received(), "no outage to end");
    }
}
