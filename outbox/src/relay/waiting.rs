//! Rows whose destination does not exist yet: how long they may wait, when they are tried
//! again, and the alert while they wait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one alert per topic this often (each row's wait is also logged at debug level).
const ALERT_EVERY: Duration = Duration::from_secs(30);

/// What follows a publish that found no destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Park the row this long, then try again.
    Wait(Duration),
    /// The row waited `limit` already: mark it dead.
    GiveUp,
}

/// The verdict for a row that has waited `waited` (zero at the first failure) for a
/// destination, with `limit` allowed in all. The backoff is the time waited so far (so it
/// doubles from try to try) within `min..=max`, and never beyond the end of the wait, so the
/// row is tried one last time when its wait runs out.
pub(crate) fn verdict(waited: Duration, limit: Duration, min: Duration, max: Duration) -> Verdict {
    if waited >= limit {
        return Verdict::GiveUp;
    }
    Verdict::Wait(waited.clamp(min, max).min(limit - waited))
}

/// Rate-limits the alert per topic.
#[derive(Default)]
pub(crate) struct WaitAlerts {
    last: Mutex<HashMap<String, Instant>>,
}

impl WaitAlerts {
    /// Whether an alert for `topic` is due now (and records it as raised).
    pub fn due(&self, topic: &str) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.retain(|_, at| now.duration_since(*at) < ALERT_EVERY);
        if last.contains_key(topic) {
            return false;
        }
        last.insert(topic.to_owned(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_backoff_doubles_within_bounds_and_ends_with_the_wait() {
        let (min, max, limit) = (100 * MS, 1000 * MS, 10_000 * MS);
        assert_eq!(verdict(Duration::ZERO, limit, min, max), Verdict::Wait(min));
        assert_eq!(verdict(300 * MS, limit, min, max), Verdict::Wait(300 * MS));
        assert_eq!(verdict(5000 * MS, limit, min, max), Verdict::Wait(max));
        assert_eq!(
            verdict(9_700 * MS, limit, min, max),
            Verdict::Wait(300 * MS),
            "tried again when the wait ends"
        );
        assert_eq!(verdict(limit, limit, min, max), Verdict::GiveUp);
        assert_eq!(
            verdict(Duration::ZERO, Duration::ZERO, min, max),
            Verdict::GiveUp,
            "no wait: dead at once"
        );
    }

    #[test]
    fn one_alert_per_topic_per_period() {
        let alerts = WaitAlerts::default();
        assert!(alerts.due("a"));
        assert!(!alerts.due("a"));
        assert!(alerts.due("b"));
    }
}
