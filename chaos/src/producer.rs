//! The run's producer: `messages` messages over `keys` keys, each key's in sequence order,
//! written to the outbox in business transactions or published directly, at the scenario's
//! rate, each recorded in the ledger.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use waybill_core::{Message, MessageId, Publisher};
use waybill_outbox::Outbox;

use crate::ledger::{self, Sent, RUN_HEADER, SEQ_HEADER};
use crate::scenario::{ProducerMode, Scenario};

/// How long the producer keeps retrying one batch before it gives up (the run is then
/// incomplete).
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// What the producer did.
pub(crate) struct Produced {
    /// Messages whose sending finished (confirmed, or known to be unconfirmed).
    pub(crate) sent: u64,
    /// Failed attempts that were retried.
    pub(crate) retries: u64,
    /// Why it stopped before sending everything, if it did.
    pub(crate) gave_up: Option<String>,
}

/// Sends the scenario's messages under `run_id`: through the outbox of `pool` or through
/// `publisher` (direct mode).
pub(crate) async fn produce(
    scenario: &Scenario,
    run_id: &str,
    pool: &PgPool,
    publisher: Option<Arc<dyn Publisher>>,
) -> Produced {
    let started = Instant::now();
    let batch = u64::from(scenario.producer.batch);
    let mut produced = Produced {
        sent: 0,
        retries: 0,
        gave_up: None,
    };
    let mut next = 0;
    while next < scenario.messages {
        let end = (next + batch).min(scenario.messages);
        if let Some(rate) = scenario.rate {
            let due = Duration::from_secs_f64(next as f64 / f64::from(rate));
            tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
        }
        let (sent, messages): (Vec<Sent>, Vec<Message>) = (next..end)
            .map(|i| message(run_id, scenario.keys, i))
            .unzip();
        let outcome = match (&scenario.producer.mode, &publisher) {
            (ProducerMode::Direct, Some(publisher)) => {
                let publisher = publisher.as_ref();
                publish_until_confirmed(publisher, pool, run_id, scenario, &sent, messages).await
            }
            _ => write_until_committed(pool, run_id, scenario, &sent, &messages).await,
        };
        match outcome {
            Ok(retries) => produced.retries += retries,
            Err(reason) => {
                produced.gave_up = Some(reason);
                break;
            }
        }
        produced.sent = end;
        next = end;
    }
    produced
}

/// Message `i`: key `key-{i % keys}`, sequence `i / keys`.
fn message(run_id: &str, keys: u32, i: u64) -> (Sent, Message) {
    let key = format!("key-{}", i % u64::from(keys));
    let seq = i / u64::from(keys);
    let message = Message::new(format!("{{\"key\":\"{key}\",\"seq\":{seq}}}"))
        .with_key(key.clone())
        .with_header(RUN_HEADER, run_id)
        .with_header(SEQ_HEADER, seq.to_string());
    let sent = Sent {
        id: message.id(),
        key,
        seq,
    };
    (sent, message)
}

/// Writes the batch to the outbox and the ledger in one transaction, again until it commits.
/// A commit whose outcome is unknown is resolved by looking for its ledger rows. Returns the
/// failed attempts.
async fn write_until_committed(
    pool: &PgPool,
    run_id: &str,
    scenario: &Scenario,
    sent: &[Sent],
    messages: &[Message],
) -> Result<u64, String> {
    let outbox = Outbox::new();
    let ids: Vec<MessageId> = sent.iter().map(|s| s.id).collect();
    let started = Instant::now();
    let mut failures = 0;
    loop {
        let attempt = async {
            let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
            outbox
                .enqueue_batch(&mut tx, &scenario.broker.topic, messages)
                .await
                .map_err(|e| e.to_string())?;
            ledger::record_sent_in(&mut tx, run_id, sent, true)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())
        };
        let error = match attempt.await {
            Ok(()) => return Ok(failures),
            Err(e) => e,
        };
        failures += 1;
        // The commit may have happened although the connection dropped before its answer.
        if matches!(ledger::any_sent(pool, &ids).await, Ok(true)) {
            return Ok(failures);
        }
        if started.elapsed() > GIVE_UP_AFTER {
            return Err(format!(
                "the producer could not write to the outbox for {GIVE_UP_AFTER:?}: {error}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records the batch as sent, publishes it, records each confirm; publishes what failed again
/// (same id) until every message is confirmed. Returns the failed attempts.
async fn publish_until_confirmed(
    publisher: &dyn Publisher,
    pool: &PgPool,
    run_id: &str,
    scenario: &Scenario,
    sent: &[Sent],
    messages: Vec<Message>,
) -> Result<u64, String> {
    let started = Instant::now();
    retry_database(started, || async {
        let mut tx = pool.begin().await?;
        ledger::record_sent_in(&mut tx, run_id, sent, false).await?;
        tx.commit().await
    })
    .await?;
    let mut batch = messages;
    let mut failures = 0;
    while !batch.is_empty() {
        let results = publisher.publish_batch(&scenario.broker.topic, batch).await;
        batch = Vec::new();
        let mut confirmed = Vec::new();
        for result in results {
            match result {
                Ok(receipt) => confirmed.push(receipt.message_id),
                Err(e) if e.is_retryable() && started.elapsed() < GIVE_UP_AFTER => {
                    failures += 1;
                    batch.push(e.into_message());
                }
                Err(e) => return Err(format!("a publish failed for good: {e}")),
            }
        }
        retry_database(started, || ledger::confirm(pool, &confirmed)).await?;
        if !batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(failures)
}

/// Runs a ledger write again until it succeeds (the database may be restarting).
async fn retry_database<F, Fut>(started: Instant, write: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), sqlx::Error>>,
{
    loop {
        match write().await {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() > GIVE_UP_AFTER => {
                return Err(format!("the ledger could not be written: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
