//! Kafka transactions through [`TransactionalPublisher`].
//!
//! Against Apache Kafka (WAYBILL_KAFKA_BROKERS set to a real cluster): a committed
//! transaction's messages reach `read_committed` consumers, an aborted one's never do.
//! Against the local tansu 0.6 with its SQLite storage, transactions are not supported; the
//! test pins exactly how that shows, so that a tansu that gains them makes this test fail and
//! get updated.

mod support;

use std::time::Duration;

use support::kafka::{config, create_topic_for_test};
use waybill_core::{Message, Subscriber};
use waybill_kafka::{KafkaSubscriber, TransactionalPublisher};

fn against_local_tansu() -> bool {
    std::env::var("WAYBILL_KAFKA_BROKERS").is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_transactions_are_visible_and_aborted_ones_are_not() {
    let topic = create_topic_for_test("wb-txn").await;
    let id = format!("{topic}-producer");
    let connected = TransactionalPublisher::connect(config(), &id).await;
    let outcome = async {
        let publisher = connected?;
        publisher.begin()?;
        publisher
            .send(&topic, Message::new("aborted").with_key("k"))
            .await
            .map_err(|e| waybill_core::BrokerError::transient("send", e.to_string()))?;
        publisher.abort().await?;
        publisher.begin()?;
        for i in 0..3 {
            publisher
                .send(&topic, Message::new(format!("committed {i}")).with_key("k"))
                .await
                .map_err(|e| waybill_core::BrokerError::transient("send", e.to_string()))?;
        }
        publisher.commit().await?;
        Ok::<_, waybill_core::BrokerError>(())
    }
    .await;

    if against_local_tansu() {
        let err = outcome.expect_err(
            "tansu 0.6 (SQLite storage) does not support transactions; if it now does, \
             drop this pin and run the Apache Kafka branch against it",
        );
        println!("pinned: tansu refuses transactions: {err}");
        assert!(
            err.to_string().contains("EndTxn"),
            "refused at EndTxn: {err}"
        );
        return;
    }
    outcome.expect("transactions work on Apache Kafka");
    let mut subscriber = KafkaSubscriber::connect(config(), &topic, "txn-reader")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let d = tokio::time::timeout(Duration::from_secs(60), subscriber.receive())
            .await
            .expect("committed messages arrive")
            .unwrap()
            .unwrap();
        seen.push(String::from_utf8_lossy(d.message().message().payload()).into_owned());
        d.ack().await.unwrap();
    }
    assert_eq!(seen, ["committed 0", "committed 1", "committed 2"]);
    let extra = tokio::time::timeout(Duration::from_secs(3), subscriber.receive()).await;
    assert!(extra.is_err(), "the aborted message is never delivered");
    subscriber.close().await.unwrap();
}
