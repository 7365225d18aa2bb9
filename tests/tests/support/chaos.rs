//! What the broker-crash tests share: publishing a batch until every message is confirmed,
//! a PerKey Processor that records each effect in a ledger, and the whole run with broker
//! faults in the middle, each proven to have taken effect.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fault::{FaultProof, InFlightFault, Restart};

use waybill_core::testkit::{Ledger, LedgerReport};
use waybill_core::{
    handler_fn, CountersSnapshot, InMemoryIdempotencyStore, IncomingMessage, Message, Ordering,
    Processor, Publisher, RetryPolicy, RunningProcessor, Subscriber,
};

/// A crash run's shape: `messages` over `keys` keys, published one round (a message per key)
/// at a time; a fault (a broker kill and restart) strikes while the rounds at `kill_at` are in
/// flight.
pub struct CrashPlan<'a> {
    /// Messages in all.
    pub messages: usize,
    /// Keys they are spread over.
    pub keys: usize,
    /// Message counts at which a kill strikes.
    pub kill_at: &'a [usize],
}

/// What a crash run observed.
pub struct CrashRun {
    /// The ledger: lost, duplicated, out of order.
    pub report: LedgerReport,
    /// The Processor's counters.
    pub totals: CountersSnapshot,
    /// The faults that struck, each with its proof.
    pub faults: Vec<FaultProof>,
    /// Faults the plan asked for.
    pub planned_kills: usize,
    /// Messages the plan published.
    pub messages: usize,
}

impl CrashRun {
    /// Every planned fault happened and took effect, and every message was handled once, in
    /// key order.
    pub fn assert_survived(&self) {
        assert_eq!(
            self.faults.len(),
            self.planned_kills,
            "every planned fault happened: {:?}",
            self.faults
        );
        for fault in &self.faults {
            fault.assert_took_effect();
        }
        assert!(self.report.is_clean(), "{:?}", self.report);
        assert_eq!(self.report.delivered, self.messages);
    }
}

/// Publishes the plan's messages to `topic` while a ledger Processor consumes them through
/// `subscriber`, running a `fault` (a broker kill and restart) as planned; waits (up to 300 s)
/// until nothing confirmed is missing, then stops and prints the ledger.
///
/// Each fault is proven as soon as it finished (see [`InFlightFault::finish`]): the test fails
/// at once when a fault failed or did nothing the client noticed.
pub async fn run_through_broker_kills<K, F>(
    plan: CrashPlan<'_>,
    publisher: &dyn Publisher,
    subscriber: impl Subscriber + 'static,
    topic: &str,
    group: &str,
    fault: K,
) -> CrashRun
where
    K: Fn() -> F,
    F: Future<Output = Restart> + Send + 'static,
{
    let ledger = Arc::new(Ledger::new());
    let running = ledger_processor(group, subscriber, &ledger);
    let mut publish_failures = 0;
    let client_errors = |publish_failures: u64| {
        let seen = running.counters();
        publish_failures + seen.receive_errors + seen.settle_errors
    };
    let mut faults = Vec::new();
    let mut in_flight: Option<InFlightFault> = None;
    let started = Instant::now();
    let mut pending_faults = plan.kill_at.iter().peekable();
    for round in 0..plan.messages / plan.keys {
        let due = pending_faults
            .next_if(|at| round * plan.keys >= **at)
            .is_some();
        if in_flight.as_ref().is_some_and(|f| due || f.is_finished()) {
            let finished = in_flight.take().unwrap();
            faults.push(finished.finish(|| client_errors(publish_failures)).await);
        }
        if due {
            in_flight = Some(InFlightFault::start(
                fault(),
                client_errors(publish_failures),
            ));
        }
        publish_failures +=
            publish_until_confirmed(publisher, topic, round_batch(round, plan.keys), &ledger).await;
    }
    if let Some(last) = in_flight.take() {
        faults.push(last.finish(|| client_errors(publish_failures)).await);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ledger.report().lost.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let totals = running.shutdown().await.unwrap();
    let _ = publisher.close().await;
    let report = ledger.report();
    println!(
        "ledger after {:?}: delivered {}, lost {}, duplicated {}, order violations {}, unconfirmed but delivered {}",
        started.elapsed(),
        report.delivered,
        report.lost.len(),
        report.duplicated.len(),
        report.order_violations.len(),
        report.unconfirmed_delivered
    );
    println!("processor: {totals:?}");
    println!("faults: {faults:?}");
    CrashRun {
        report,
        totals,
        faults,
        planned_kills: plan.kill_at.len(),
        messages: plan.messages,
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

/// A PerKey Processor for `group` with the in-memory idempotency store, whose handler records
/// each message's effect (key and `seq`) in `ledger`.
pub fn ledger_processor(
    group: &str,
    subscriber: impl Subscriber + 'static,
    ledger: &Arc<Ledger>,
) -> RunningProcessor {
    let handler = {
        let ledger = Arc::clone(ledger);
        handler_fn(move |m: IncomingMessage| {
            let ledger = Arc::clone(&ledger);
            async move {
                let seq: u64 = m.message().headers().get("seq").unwrap().parse().unwrap();
                ledger.effect(m.message().id(), Some((m.message().key().unwrap(), seq)));
                Ok(())
            }
        })
    };
    let retry = RetryPolicy::builder()
        .min_delay(Duration::from_millis(50))
        .max_delay(Duration::from_secs(1))
        .build()
        .unwrap();
    Processor::builder(group)
        .ordering(Ordering::PerKey)
        .concurrency(32)
        .retry(retry)
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()
        .unwrap()
        .start(subscriber, handler)
}
