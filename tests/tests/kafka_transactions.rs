//! Kafka producer state: transactions through [`TransactionalPublisher`], and what a fatal
//! producer error does to the idempotent [`KafkaPublisher`] (recreated) and to the
//! transactional one (stops for good: fencing is final).
//!
//! The fatal error is raised in the real client with librdkafka's `rd_kafka_test_fatal_error`,
//! which puts the producer in exactly the state a broker's `OutOfOrderSequenceNumber` or a
//! fencing leaves it in (tansu gives no way to provoke those on demand).
//!
//! Against Apache Kafka (WAYBILL_KAFKA_BROKERS set to a real cluster): a committed
//! transaction's messages reach `read_committed` consumers, an aborted one's never do.
//! Against the local tansu 0.6 with its SQLite storage, transactions are not supported; the
//! test pins exactly how that shows, so that a tansu that gains them makes this test fail and
//! get updated.

mod support;

use std::ffi::CString;
use std::time::Duration;

use rdkafka::bindings::rd_kafka_resp_err_t as RespErr;
use rdkafka::producer::{FutureProducer, Producer as _};
use support::kafka::{config, create_topic_for_test};
use waybill_core::{FailureClass, Message, PublishOutcome, Publisher, Subscriber};
use waybill_kafka::{KafkaPublisher, KafkaSubscriber, TransactionalPublisher};

/// Raises the fatal error `code` in `producer`, as librdkafka itself does when the broker
/// reports a lost producer sequence or a fencing.
#[allow(unsafe_code)]
fn raise_fatal_error(producer: &FutureProducer, code: RespErr) {
    let reason = CString::new("raised by the test").expect("no NUL");
    // SAFETY: the handle belongs to a live producer (the clone keeps it alive for the call);
    // librdkafka copies the reason before returning.
    let raised = unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            producer.client().native_ptr(),
            code,
            reason.as_ptr(),
        )
    };
    assert_eq!(
        raised,
        RespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
        "fatal error raised"
    );
    assert!(
        producer.client().fatal_error().is_some(),
        "the client is fatal now"
    );
}

/// Reads `count` payloads of `topic` (as group `group`), then checks nothing else arrives.
async fn read_all(topic: &str, group: &str, count: usize) -> Vec<String> {
    let mut subscriber = KafkaSubscriber::connect(config(), topic, group)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < count {
        let d = tokio::time::timeout(Duration::from_secs(60), subscriber.receive())
            .await
            .unwrap_or_else(|_| panic!("only {seen:?} arrived"))
            .unwrap()
            .unwrap();
        seen.push(String::from_utf8_lossy(d.message().message().payload()).into_owned());
        d.ack().await.unwrap();
    }
    let extra = tokio::time::timeout(Duration::from_secs(3), subscriber.receive()).await;
    if let Ok(Ok(Some(d))) = extra {
        let payload = String::from_utf8_lossy(d.message().message().payload()).into_owned();
        panic!("unexpected record {payload:?} after {seen:?}");
    }
    subscriber.close().await.unwrap();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_is_recovered_with_a_new_producer() {
    let topic = create_topic_for_test("wb-fatal").await;
    let publisher = KafkaPublisher::connect(config()).await.unwrap();
    publisher
        .publish(&topic, Message::new("before").with_key("k"))
        .await
        .expect("publishes before the fault");

    raise_fatal_error(
        &publisher.producer_for_tests(),
        RespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
    );
    let refused = publisher
        .publish(&topic, Message::new("refused").with_key("k"))
        .await
        .expect_err("a producer in a fatal state refuses");
    println!("refused after the fatal error: {refused}");
    assert_eq!(
        refused.outcome(),
        PublishOutcome::NotSent,
        "refused before it was queued, so never written: {refused}"
    );
    assert!(refused.to_string().contains("fatal"), "{refused}");
    assert_eq!(
        refused.message().payload().as_ref(),
        b"refused",
        "handed back"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut refusals = 0;
    loop {
        match publisher
            .publish(&topic, Message::new("after").with_key("k"))
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.outcome(), PublishOutcome::NotSent, "{e}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still refused 30 s after the fatal error: {e}"
                );
                refusals += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    println!("publishing again after {refusals} more refusals");
    assert!(
        publisher
            .producer_for_tests()
            .client()
            .fatal_error()
            .is_none(),
        "a new producer is in use"
    );
    assert_eq!(
        read_all(&topic, "fatal-reader", 2).await,
        ["before", "after"],
        "the refused message is not in the log; the key's order holds"
    );
    publisher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_transactional_producer_stops_for_good() {
    let topic = create_topic_for_test("wb-fenced").await;
    let id = format!("{topic}-producer");
    let publisher = TransactionalPublisher::connect(config(), &id)
        .await
        .expect("tansu initialises transactions");
    raise_fatal_error(
        &publisher.producer_for_tests(),
        RespErr::RD_KAFKA_RESP_ERR__FENCED,
    );
    for _ in 0..2 {
        let begin = publisher
            .begin()
            .expect_err("a fenced producer cannot begin");
        println!("begin after fencing: {begin}");
        assert_eq!(begin.class(), FailureClass::Permanent, "{begin}");
        assert!(begin.to_string().contains("not recreated"), "{begin}");
        let send = publisher
            .send(&topic, Message::new("zombie").with_key("k"))
            .await
            .expect_err("a fenced producer sends nothing");
        println!("send after fencing: {send}");
        assert_eq!(send.outcome(), PublishOutcome::NotSent, "{send}");
        assert!(send.to_string().contains("not recreated"), "{send}");
        // Unlike the idempotent publisher, it does not come back after a while.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        publisher
            .producer_for_tests()
            .client()
            .fatal_error()
            .is_some(),
        "still the fenced producer"
    );
}

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
