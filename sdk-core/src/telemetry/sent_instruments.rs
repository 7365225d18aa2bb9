//! The keys of confirmed publishes' instruments, built once per system and destination and
//! reused: building a key allocates its labels, which cost more than the rest of an in-memory
//! publish. The instruments themselves are asked of the recorder in effect at every publish
//! (a lookup by the key's precomputed hash), so a recorder installed later, or a thread-local
//! one, counts exactly what happens while it is in effect.

use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics::{Key, Label, Level, Metadata};

use super::{attributes, names};

/// At most this many destinations keep their keys here; publishes to further ones build theirs
/// on each call (correct, only slower).
const MAX_CACHED: usize = 4096;

/// Where the instruments say they come from, as the `metrics` macros would.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A destination's two keys: the sent counter's and the send duration's.
struct Keys {
    sent: Key,
    duration: Key,
}

impl Keys {
    fn new(system: &'static str, destination: &str) -> Self {
        use attributes::*;
        let labels = |last: Label| {
            vec![
                Label::from_static_parts(SYSTEM, system),
                Label::new(DESTINATION, destination.to_owned()),
                last,
            ]
        };
        Keys {
            sent: Key::from_parts(
                names::SENT_MESSAGES,
                labels(Label::from_static_parts(OUTCOME, "sent")),
            ),
            duration: Key::from_parts(
                names::OPERATION_DURATION,
                labels(Label::from_static_parts(OPERATION, "send")),
            ),
        }
    }

    /// Counts one publish that took `seconds` with the recorder in effect on this thread.
    fn record(&self, seconds: f64) {
        metrics::with_recorder(|recorder| {
            recorder
                .register_counter(&self.sent, &METADATA)
                .increment(1);
            recorder
                .register_histogram(&self.duration, &METADATA)
                .record(seconds);
        });
    }
}

/// By system, then destination.
type Cache = RwLock<foldhash::HashMap<&'static str, foldhash::HashMap<Box<str>, Keys>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

/// Counts one confirmed publish of `system` to `destination` that took `elapsed`.
pub(super) fn record_sent(system: &'static str, destination: &str, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    {
        let cached = cache()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(keys) = cached.get(system).and_then(|d| d.get(destination)) {
            return keys.record(seconds);
        }
    }
    let keys = Keys::new(system, destination);
    keys.record(seconds);
    let mut cached = cache()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cached.values().map(|d| d.len()).sum::<usize>() < MAX_CACHED {
        cached
            .entry(system)
            .or_default()
            .insert(destination.into(), keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    /// Publishes `count` times to `destination` under a recorder of its own, made and dropped
    /// in this frame, and returns what that recorder counted.
    fn sent_under_a_fresh_local_recorder(destination: &str, count: u64) -> u64 {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..count {
                record_sent("memory", destination, Duration::from_millis(1));
            }
        });
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == names::SENT_MESSAGES)
            .map(|(.., value)| match value {
                DebugValue::Counter(n) => n,
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn a_recorder_installed_after_the_first_publishes_gets_the_later_ones() {
        // Counted by no recorder first (the no-op one) ...
        record_sent("memory", "cache-test", Duration::from_millis(1));
        // ... then by the recorder in effect.
        assert_eq!(sent_under_a_fresh_local_recorder("cache-test", 2), 2);
    }

    #[test]
    fn local_recorders_made_in_turn_each_count_their_own_publishes() {
        // Made one after the other in the same frame, the recorders may share an address; each
        // must still see the publishes made while it was in effect.
        for round in 1..=3 {
            assert_eq!(
                sent_under_a_fresh_local_recorder("cache-test-turns", round),
                round,
                "recorder {round} did not count its publishes"
            );
        }
    }
}
