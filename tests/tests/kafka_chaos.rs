//! The Kafka-protocol broker SIGKILLed twice and restarted in the middle of a publish-and-
//! consume run of 10,000 messages. Every confirmed message must be handled, no effect may
//! happen twice (idempotency store), and per-key order must hold (PerKey mode).
//!
//! 10,000 messages: the local broker (tansu on SQLite) carries about 600 pipelined messages a
//! second here, so the run takes about 20 s with both restarts.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::kafka::{config, create_topic_for_test, kill_and_restart};
use waybill_core::testkit::Ledger;
use waybill_core::{
    handler_fn, InMemoryIdempotencyStore, IncomingMessage, Message, Ordering, Processor, Publisher,
    RetryPolicy,
};
use waybill_kafka::{KafkaPublisher, KafkaSubscriber};

const MESSAGES: usize = 10_000;
const KEYS: usize = 50;

async fn publish_all(publisher: &KafkaPublisher, topic: &str, ledger: &Ledger, kill_at: &[usize]) {
    let mut kills = kill_at.iter().peekable();
    for round in 0..MESSAGES / KEYS {
        let mut batch: Vec<Message> = (0..KEYS)
            .map(|k| {
                Message::new(format!("{round}"))
                    .with_key(format!("key-{k}"))
                    .with_header("seq", round.to_string())
            })
            .collect();
        if kills.next_if(|at| round * KEYS >= **at).is_some() {
            // The kill strikes while this batch is in flight.
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                eprintln!("SIGKILL to the broker");
                kill_and_restart().await;
            });
        }
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_kills_lose_nothing_duplicate_nothing_and_keep_key_order() {
    let topic = create_topic_for_test("wb-chaos").await;
    let group = "chaos";
    let subscriber = KafkaSubscriber::connect(config(), &topic, group)
        .await
        .unwrap();
    let publisher = KafkaPublisher::connect(config()).await.unwrap();
    let ledger = Arc::new(Ledger::new());
    let handler = {
        let ledger = Arc::clone(&ledger);
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
    let running = Processor::builder(group)
        .ordering(Ordering::PerKey)
        .concurrency(32)
        .retry(retry)
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()
        .unwrap()
        .start(subscriber, handler);

    let started = Instant::now();
    publish_all(
        &publisher,
        &topic,
        &ledger,
        &[MESSAGES / 3, MESSAGES * 2 / 3],
    )
    .await;

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
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.delivered, MESSAGES);
    assert!(
        totals.receive_errors > 0,
        "the consumer saw the broker go away: {totals:?}"
    );
}
