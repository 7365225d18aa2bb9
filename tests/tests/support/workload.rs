//! A publishing workload that runs beside a fault test until told to stop: rounds of one
//! message per key (a `seq` header numbering the rounds), each round confirmed before the next,
//! recorded in a ledger; and waiting for a condition with a bound.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use waybill_core::testkit::Ledger;
use waybill_core::{Message, Publisher};

/// A workload publishing in the background.
pub struct Workload {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
    rounds: Arc<AtomicUsize>,
    task: JoinHandle<Published>,
}

/// What a workload published.
#[derive(Clone, Copy, Debug)]
pub struct Published {
    /// Rounds published (each a message per key, all confirmed).
    pub rounds: usize,
    /// Messages published and confirmed.
    pub messages: usize,
    /// Publishes that failed on the way and were repeated.
    pub failures: u64,
}

impl Workload {
    /// Publishes rounds of `keys` messages to `topic`, at least `rounds.start` and then until
    /// [`Workload::finish`] or `rounds.end`, pausing `pace` between rounds. `shape` may change a round's
    /// messages (mark some to fail, say) before they are published.
    pub fn start(
        publisher: Arc<dyn Publisher>,
        topic: &str,
        keys: usize,
        rounds: std::ops::Range<usize>,
        pace: Duration,
        ledger: Arc<Ledger>,
        shape: fn(usize, Message) -> Message,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let topic = topic.to_owned();
        let task = {
            let stop = Arc::clone(&stop);
            let failures = Arc::clone(&failures);
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let mut published = Published {
                    rounds: 0,
                    messages: 0,
                    failures: 0,
                };
                while published.rounds < rounds.start
                    || (published.rounds < rounds.end && !stop.load(Ordering::SeqCst))
                {
                    let batch: Vec<Message> = round_batch(published.rounds, keys)
                        .into_iter()
                        .map(|m| shape(published.rounds, m))
                        .collect();
                    published.messages += batch.len();
                    let failed =
                        publish_until_confirmed(publisher.as_ref(), &topic, batch, &ledger).await;
                    published.failures += failed;
                    failures.fetch_add(failed, Ordering::SeqCst);
                    published.rounds += 1;
                    done.store(published.rounds, Ordering::SeqCst);
                    tokio::time::sleep(pace).await;
                }
                published
            })
        };
        Self {
            stop,
            failures,
            rounds: done,
            task,
        }
    }

    /// Rounds published (all confirmed) so far.
    pub fn rounds(&self) -> usize {
        self.rounds.load(Ordering::SeqCst)
    }

    /// Publishes that failed so far (and were repeated).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    /// Stops the workload (once it published its minimum) and returns what it published.
    /// Panics when the publishing panicked (a permanent publish failure, say).
    pub async fn finish(self) -> Published {
        self.stop.store(true, Ordering::SeqCst);
        match self.task.await {
            Ok(published) => published,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the workload did not finish: {e}"),
        }
    }
}

/// Leaves each message of a round as it is.
pub fn unchanged(_round: usize, message: Message) -> Message {
    message
}

/// Checks `condition` every 200 ms until it holds; panics saying `what` did not happen when
/// it still does not after `within`. Returns how long it took.
pub async fn wait_for<F, Fut>(what: &str, within: Duration, condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let took = poll_until(within, condition)
        .await
        .unwrap_or_else(|| panic!("{what}: not within {within:?}"));
    eprintln!("{what}: after {took:?}");
    took
}

/// Checks `condition` every 200 ms until it holds (returns how long that took) or `within`
/// passed (returns `None`).
pub async fn poll_until<F, Fut>(within: Duration, mut condition: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return Some(started.elapsed());
        }
        if started.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Round `round` of a run over `keys` keys: one message per key, with a `seq` header.
pub fn round_batch(round: usize, keys: usize) -> Vec<Message> {
    (0..keys)
        .map(|k| {
            Message::new(format!("{round}"))
                .with_key(format!("key-{k}"))
                .with_header("seq", round.to_string())
        })
        .collect()
}

/// Publishes `batch`, republishing failed messages (same id) until every one is confirmed,
/// as the outbox relay does: a key never has two messages in flight. Returns how many
/// publishes failed on the way. Panics on a permanent failure or when the broker stays away
/// for 180 s.
pub async fn publish_until_confirmed(
    publisher: &dyn Publisher,
    topic: &str,
    mut batch: Vec<Message>,
    ledger: &Ledger,
) -> u64 {
    let started = Instant::now();
    let mut failures = 0;
    while !batch.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "broker did not come back"
        );
        for m in &batch {
            ledger.attempted(m.id());
        }
        let results = publisher.publish_batch(topic, batch).await;
        batch = Vec::new();
        for result in results {
            match result {
                Ok(receipt) => ledger.confirmed(receipt.message_id),
                Err(e) => {
                    assert!(e.is_retryable(), "unexpected permanent failure: {e}");
                    failures += 1;
                    batch.push(e.into_message());
                }
            }
        }
        if !batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    failures
}
