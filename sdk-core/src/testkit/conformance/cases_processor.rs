//! Cases that run the [`crate::Processor`] over the backend: order, deduplication, dead letters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::support::{
    fail, numbered, publish_all, receive_acked, seq_of, topic, unique, wait_until,
};
use super::{case, Case, ConformanceTarget};
use crate::dead_letter::{DeadLetterRecord, ErrorClass};
use crate::handler::{handler_fn, HandlerError};
use crate::incoming::IncomingMessage;
use crate::memory_idempotency::InMemoryIdempotencyStore;
use crate::message::Message;
use crate::message_id::MessageId;
use crate::processor::{Ordering, Processor};
use crate::retry_policy::RetryPolicy;
use crate::testkit::Ledger;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(processor_keeps_per_key_order_under_retries, needs per_key_order),
        case!(processor_gives_republished_duplicates_one_effect),
        case!(processor_dead_letters_permanent_failures, needs dead_letter),
    ]
}

fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(max_attempts)
        .min_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(50))
        .build()
        .expect("valid policy")
}

fn key_and_seq(m: &IncomingMessage) -> Option<(String, u64)> {
    Some((m.message().key()?.to_owned(), seq_of(m.message())?))
}

async fn processor_keeps_per_key_order_under_retries(
    t: &dyn ConformanceTarget,
) -> Result<(), String> {
    let scale = t.scale();
    let n = scale.messages.max(50);
    let topic = topic(t, "order").await?;
    let group = unique("g");
    let subscriber = t
        .subscriber(&topic, &group)
        .await
        .map_err(fail("subscriber"))?;
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let sent = numbered(n, 10);
    let ledger = Arc::new(Ledger::new());
    for m in &sent {
        ledger.confirmed(m.id());
    }
    publish_all(publisher.as_ref(), &topic, sent).await?;

    let attempts: Arc<Mutex<HashMap<MessageId, u32>>> = Arc::default();
    let handler = {
        let (ledger, attempts) = (Arc::clone(&ledger), Arc::clone(&attempts));
        handler_fn(move |m: IncomingMessage| {
            let (ledger, attempts) = (Arc::clone(&ledger), Arc::clone(&attempts));
            async move {
                let (key, seq) =
                    key_and_seq(&m).ok_or_else(|| HandlerError::permanent("no key"))?;
                let tries = {
                    let mut a = attempts.lock().unwrap();
                    let t = a.entry(m.message().id()).or_default();
                    *t += 1;
                    *t
                };
                if seq % 3 == 0 && tries == 1 {
                    return Err(HandlerError::transient(
                        "first attempt of every third message fails",
                    ));
                }
                ledger.effect(m.message().id(), Some((&key, seq)));
                Ok(())
            }
        })
    };
    let running = Processor::builder(group)
        .ordering(Ordering::PerKey)
        .concurrency(8)
        .retry(quick_retries(5))
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()
        .map_err(fail("processor"))?
        .start(subscriber, handler);
    let done = wait_until(scale.case_timeout, || ledger.effects() >= n).await;
    let counters = running.shutdown().await.map_err(fail("shutdown"))?;
    let report = ledger.report();
    if !done || !report.is_clean() {
        return Err(format!("ledger {report:?}, counters {counters:?}"));
    }
    if counters.retried == 0 {
        return Err("no retry happened: the case checked nothing".to_owned());
    }
    Ok(())
}

async fn processor_gives_republished_duplicates_one_effect(
    t: &dyn ConformanceTarget,
) -> Result<(), String> {
    let scale = t.scale();
    let n = scale.messages;
    let topic = topic(t, "dedupe").await?;
    let group = unique("g");
    let subscriber = t
        .subscriber(&topic, &group)
        .await
        .map_err(fail("subscriber"))?;
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let sent = numbered(n, 0);
    let ledger = Arc::new(Ledger::new());
    let mut twice: Vec<Message> = Vec::with_capacity(2 * n);
    for m in sent {
        ledger.confirmed(m.id());
        twice.push(m.clone());
        twice.push(m);
    }
    publish_all(publisher.as_ref(), &topic, twice).await?;
    let handler = {
        let ledger = Arc::clone(&ledger);
        handler_fn(move |m: IncomingMessage| {
            let ledger = Arc::clone(&ledger);
            async move {
                ledger.effect(m.message().id(), None);
                Ok(())
            }
        })
    };
    let running = Processor::builder(group)
        .ordering(Ordering::Unordered)
        .concurrency(16)
        .retry(quick_retries(3))
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()
        .map_err(fail("processor"))?
        .start(subscriber, handler);
    let done = wait_until(scale.case_timeout, || {
        let c = running.counters();
        c.handled + c.duplicates_skipped >= 2 * n as u64
    })
    .await;
    let counters = running.shutdown().await.map_err(fail("shutdown"))?;
    let report = ledger.report();
    if !done || !report.is_clean() || counters.duplicates_skipped != n as u64 {
        return Err(format!("ledger {report:?}, counters {counters:?}"));
    }
    Ok(())
}

async fn processor_dead_letters_permanent_failures(
    t: &dyn ConformanceTarget,
) -> Result<(), String> {
    let scale = t.scale();
    let n = scale.messages;
    let topic = topic(t, "poison").await?;
    let group = unique("g");
    let subscriber = t
        .subscriber(&topic, &group)
        .await
        .map_err(fail("subscriber"))?;
    let mut dead = t
        .dead_letter_subscriber(&topic, &group)
        .await
        .map_err(fail("dead-letter subscriber"))?;
    let publisher = t.publisher().await.map_err(fail("publisher"))?;
    let sent: Vec<Message> = numbered(n, 5)
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            if i % 5 == 0 {
                m.with_header("x-poison", "1")
            } else {
                m
            }
        })
        .collect();
    let poison: Vec<MessageId> = sent
        .iter()
        .filter(|m| m.headers().contains("x-poison"))
        .map(Message::id)
        .collect();
    let ledger = Arc::new(Ledger::new());
    for m in sent.iter().filter(|m| !m.headers().contains("x-poison")) {
        ledger.confirmed(m.id());
    }
    publish_all(publisher.as_ref(), &topic, sent).await?;
    let handler = {
        let ledger = Arc::clone(&ledger);
        handler_fn(move |m: IncomingMessage| {
            let ledger = Arc::clone(&ledger);
            async move {
                if m.message().headers().contains("x-poison") {
                    return Err(HandlerError::permanent("malformed order"));
                }
                ledger.effect(m.message().id(), None);
                Ok(())
            }
        })
    };
    let running = Processor::builder(group.clone())
        .retry(quick_retries(3))
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()
        .map_err(fail("processor"))?
        .start(subscriber, handler);
    let letters = receive_acked(dead.as_mut(), poison.len(), scale.case_timeout).await;
    wait_until(scale.case_timeout, || ledger.effects() >= n - poison.len()).await;
    let counters = running.shutdown().await.map_err(fail("shutdown"))?;
    let letters = letters?;
    for letter in &letters {
        let record = DeadLetterRecord::read_from(letter.message().headers())
            .map_err(fail("dead-letter record"))?;
        if !poison.contains(&record.message_id)
            || record.error_class != ErrorClass::Permanent
            || record.attempts != 1
            || record.origin != topic
            || record.group != group
            || record.error_message != "malformed order"
        {
            return Err(format!("unexpected record {record:?}"));
        }
    }
    let report = ledger.report();
    if !report.is_clean() || counters.dead_lettered != poison.len() as u64 {
        return Err(format!("ledger {report:?}, counters {counters:?}"));
    }
    Ok(())
}
