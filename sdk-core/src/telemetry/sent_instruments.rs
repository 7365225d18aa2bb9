//! The instruments of confirmed publishes, registered once per system and destination and
//! reused: registering builds a key with its labels (allocations) and asks the recorder, which
//! cost more than the rest of an in-memory publish.

use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics::{counter, histogram, Counter, Histogram};

use super::{attributes, names};

/// At most this many destinations keep their instruments here; publishes to further ones
/// register theirs on each call (correct, only slower).
const MAX_CACHED: usize = 4096;

/// A destination's instruments, and the recorder they were registered with.
struct Handles {
    recorder: usize,
    sent: Counter,
    duration: Histogram,
}

/// By system, then destination.
type Cache = RwLock<foldhash::HashMap<&'static str, foldhash::HashMap<Box<str>, Handles>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

/// The recorder in effect on this thread (a local one, else the global one, else the no-op
/// one), by address: handles registered with another recorder (the no-op one, before the
/// application installed its own) are registered again.
fn recorder_in_effect() -> usize {
    metrics::with_recorder(|recorder| std::ptr::from_ref(recorder).cast::<()>() as usize)
}

/// Counts one confirmed publish of `system` to `destination` that took `elapsed`.
pub(super) fn record_sent(system: &'static str, destination: &str, elapsed: Duration) {
    let recorder = recorder_in_effect();
    let seconds = elapsed.as_secs_f64();
    {
        let cached = cache()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(handles) = cached.get(system).and_then(|d| d.get(destination)) {
            if handles.recorder == recorder {
                handles.sent.increment(1);
                handles.duration.record(seconds);
                return;
            }
        }
    }
    let handles = register(recorder, system, destination);
    handles.sent.increment(1);
    handles.duration.record(seconds);
    let mut cached = cache()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cached.values().map(|d| d.len()).sum::<usize>() < MAX_CACHED
        || cached
            .get(system)
            .is_some_and(|d| d.contains_key(destination))
    {
        cached
            .entry(system)
            .or_default()
            .insert(destination.into(), handles);
    }
}

fn register(recorder: usize, system: &'static str, destination: &str) -> Handles {
    use attributes::*;
    Handles {
        recorder,
        sent: counter!(
            names::SENT_MESSAGES,
            SYSTEM => system,
            DESTINATION => destination.to_owned(),
            OUTCOME => "sent"
        ),
        duration: histogram!(
            names::OPERATION_DURATION,
            SYSTEM => system,
            DESTINATION => destination.to_owned(),
            OPERATION => "send"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::DebuggingRecorder;

    #[test]
    fn a_recorder_installed_after_the_first_publishes_gets_the_later_ones() {
        // Registered with the no-op recorder first ...
        record_sent("memory", "cache-test", Duration::from_millis(1));
        // ... then counted by the recorder in effect.
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            record_sent("memory", "cache-test", Duration::from_millis(1));
            record_sent("memory", "cache-test", Duration::from_millis(1));
        });
        let sent: u64 = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == names::SENT_MESSAGES)
            .map(|(.., value)| match value {
                metrics_util::debugging::DebugValue::Counter(n) => n,
                _ => 0,
            })
            .sum();
        assert_eq!(sent, 2);
    }
}
