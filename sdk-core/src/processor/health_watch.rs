//! What a running processor knows about its own health: whether receiving fails, and how many
//! handler runs failed lately.

use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
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
    /// Handler runs are counted with atomics, without a lock or a clock of their own (the
    /// run's end, read for its duration, says when a window is over); only moving to the next
    /// window takes the lock.
    base: Instant,
    /// When the current window began, in nanoseconds after `base`.
    window_start: AtomicU64,
    current_runs: AtomicU64,
    current_failures: AtomicU64,
    /// The previous window's tally; its lock also makes one roll at a time.
    previous: Mutex<Tally>,
    degraded_ratio: f64,
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
            base: Instant::now(),
            window_start: AtomicU64::new(0),
            current_runs: AtomicU64::new(0),
            current_failures: AtomicU64::new(0),
            previous: Mutex::new(Tally::default()),
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

    /// A handler run ended at `ended`, `ok` or not.
    pub fn handler_ran(&self, ok: bool, ended: Instant) {
        self.roll(ended);
        self.current_runs.fetch_add(1, Relaxed);
        if !ok {
            self.current_failures.fetch_add(1, Relaxed);
        }
    }

    /// Moves to a new window when the current one is over at `now` (forgetting both after a
    /// quiet spell of two windows).
    fn roll(&self, now: Instant) {
        let now = nanos(now.saturating_duration_since(self.base));
        let window = nanos(WINDOW);
        if now < self.window_start.load(Acquire).saturating_add(window) {
            return;
        }
        let mut previous = lock(&self.previous);
        let started = self.window_start.load(Acquire);
        if now < started.saturating_add(window) {
            return; // rolled by another thread meanwhile
        }
        let current = Tally {
            runs: self.current_runs.swap(0, Relaxed),
            failures: self.current_failures.swap(0, Relaxed),
        };
        *previous = if now < started.saturating_add(2 * window) {
            current
        } else {
            Tally::default()
        };
        self.window_start.store(now, Release);
    }

    /// The processor's health while its task runs.
    pub fn health(&self) -> Health {
        if let Some(since) = self.receive.since() {
            let error = lock(&self.last_receive_error).clone().unwrap_or_default();
            return Health::not_ready(format!("receiving fails: {error}"), since);
        }
        self.roll(Instant::now());
        let recent = {
            let previous = lock(&self.previous);
            Tally {
                runs: self.current_runs.load(Relaxed) + previous.runs,
                failures: self.current_failures.load(Relaxed) + previous.failures,
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

/// `duration` in nanoseconds (saturating: 584 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
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
            watch.handler_ran(false, Instant::now());
        }
        assert_eq!(watch.health().state(), HealthState::Ready, "too few runs");
        watch.handler_ran(false, Instant::now());
        let health = watch.health();
        assert_eq!(health.state(), HealthState::Degraded);
        assert!(
            health.reason().unwrap().contains("10 of the last 10"),
            "{health}"
        );
        for _ in 0..20 {
            watch.handler_ran(true, Instant::now());
        }
        assert_eq!(
            watch.health().state(),
            HealthState::Ready,
            "10 of 30 failed"
        );
    }

    #[test]
    fn failures_count_for_two_windows_and_are_forgotten_after_a_quiet_spell() {
        let watch = HealthWatch::new(0.5);
        let start = Instant::now();
        for _ in 0..MIN_RUNS {
            watch.handler_ran(false, start);
        }
        assert_eq!(watch.health().state(), HealthState::Degraded);
        let second = Duration::from_secs(1);
        watch.handler_ran(true, start + WINDOW + second);
        let health = watch.health();
        assert_eq!(health.state(), HealthState::Degraded, "previous window");
        assert!(
            health.reason().unwrap().contains("10 of the last 11"),
            "{health}"
        );
        watch.handler_ran(true, start + WINDOW * 3 + second * 2);
        assert_eq!(
            watch.health().state(),
            HealthState::Ready,
            "two quiet windows later the failures are forgotten"
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
