//! What the broker-crash tests share: publishing a batch until every message is confirmed,
//! and a PerKey Processor that records each effect in a ledger.

use std::sync::Arc;
use std::time::{Duration, Instant};

use waybill_core::testkit::Ledger;
use waybill_core::{
    handler_fn, InMemoryIdempotencyStore, IncomingMessage, Message, Ordering, Processor, Publisher,
    RetryPolicy, RunningProcessor, Subscriber,
};

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
/// as the outbox relay does: a key never has two messages in flight. Panics on a permanent
/// failure or when the broker stays away for 180 s.
pub async fn publish_until_confirmed(
    publisher: &dyn Publisher,
    topic: &str,
    mut batch: Vec<Message>,
    ledger: &Ledger,
) {
    let started = Instant::now();
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
                    batch.push(e.into_message());
                }
            }
        }
        if !batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
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
