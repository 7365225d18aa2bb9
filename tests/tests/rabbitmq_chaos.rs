//! RabbitMQ restarted in the middle of a publish-and-consume run: `stop_app`/`start_app`, then
//! SIGKILL of the node and a fresh start. Every confirmed message must be handled, no effect
//! may happen twice (idempotency store), and per-key order must hold (PerKey mode).
//!
//! The producer publishes in batches that hold at most one message per key and republishes
//! failed messages (same id) before moving on, as the outbox relay does: a key never has two
//! messages in flight.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::chaos::{ledger_processor, publish_until_confirmed, round_batch};
use support::rabbitmq::{config, kill_and_restart, require_broker, restart_app};
use waybill_core::testkit::Ledger;
use waybill_core::Publisher;
use waybill_rabbitmq::{delete_group_topology, RabbitPublisher, RabbitSubscriber};

const MESSAGES: usize = 20_000;
const KEYS: usize = 100;

#[derive(Clone, Copy, Debug)]
enum Fault {
    StopStartApp,
    Kill9,
}

async fn publish_all(
    publisher: &RabbitPublisher,
    topic: &str,
    ledger: &Ledger,
    fault_at: &[(usize, Fault)],
) {
    let mut next_fault = 0;
    for round in 0..MESSAGES / KEYS {
        if let Some((at, fault)) = fault_at.get(next_fault) {
            if round * KEYS >= *at {
                next_fault += 1;
                let publisher = publisher.clone();
                let fault = *fault;
                // The fault strikes while this batch is in flight.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    eprintln!("injecting {fault:?}");
                    match fault {
                        Fault::StopStartApp => restart_app().await,
                        Fault::Kill9 => kill_and_restart().await,
                    }
                    drop(publisher);
                });
            }
        }
        publish_until_confirmed(publisher, topic, round_batch(round, KEYS), ledger).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarts_lose_nothing_duplicate_nothing_and_keep_key_order() {
    require_broker().await;
    let topic = format!(
        "wb-chaos-{}",
        &waybill_core::MessageId::new().to_string()[24..]
    );
    let group = "chaos";
    let subscriber = RabbitSubscriber::connect(config(), &topic, group)
        .await
        .unwrap();
    let publisher = RabbitPublisher::connect(config()).await.unwrap();
    let ledger = Arc::new(Ledger::new());
    let running = ledger_processor(group, subscriber, &ledger);

    publish_all(
        &publisher,
        &topic,
        &ledger,
        &[
            (MESSAGES / 4, Fault::StopStartApp),
            (MESSAGES * 5 / 8, Fault::Kill9),
        ],
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(240);
    while !ledger.report().lost.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let totals = running.shutdown().await.unwrap();
    let _ = publisher.close().await;
    let report = ledger.report();
    println!("ledger: delivered {}, lost {}, duplicated {}, order violations {}, unconfirmed but delivered {}",
        report.delivered, report.lost.len(), report.duplicated.len(), report.order_violations.len(), report.unconfirmed_delivered);
    println!("processor: {totals:?}");
    delete_group_topology(&config(), &topic, group, true)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.delivered, MESSAGES);
    assert!(
        totals.receive_errors > 0,
        "the consumer saw the restarts: {totals:?}"
    );
}
