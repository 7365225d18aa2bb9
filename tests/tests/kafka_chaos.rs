//! The Kafka-protocol broker SIGKILLed twice and restarted in the middle of a publish-and-
//! consume run of 10,000 messages. Every confirmed message must be handled, no effect may
//! happen twice (idempotency store), and per-key order must hold (PerKey mode).
//!
//! 10,000 messages: the local broker (tansu on SQLite) carries about 600 pipelined messages a
//! second here, so the run takes about 20 s with both restarts.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::chaos::{ledger_processor, publish_until_confirmed, round_batch};
use support::kafka::{config, create_topic_for_test, kill_and_restart};
use waybill_core::testkit::Ledger;
use waybill_core::Publisher;
use waybill_kafka::{KafkaPublisher, KafkaSubscriber};

const MESSAGES: usize = 10_000;
const KEYS: usize = 50;

async fn publish_all(publisher: &KafkaPublisher, topic: &str, ledger: &Ledger, kill_at: &[usize]) {
    let mut kills = kill_at.iter().peekable();
    for round in 0..MESSAGES / KEYS {
        if kills.next_if(|at| round * KEYS >= **at).is_some() {
            // The kill strikes while this batch is in flight.
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                eprintln!("SIGKILL to the broker");
                kill_and_restart().await;
            });
        }
        publish_until_confirmed(publisher, topic, round_batch(round, KEYS), ledger).await;
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
    let running = ledger_processor(group, subscriber, &ledger);

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
