//! The Kafka-protocol broker SIGKILLed twice and restarted in the middle of a publish-and-
//! consume run of 10,000 messages. Every confirmed message must be handled, no effect may
//! happen twice (idempotency store), and per-key order must hold (PerKey mode).
//! Each kill must take effect: the broker's process is replaced, and the client sees the
//! outage (a failed publish, receive or settlement) while it lasts.
//!
//! 10,000 messages: the local broker (tansu on SQLite) carries about 600 pipelined messages a
//! second here, so the run takes about 20 s with both restarts.

#[path = "kafka_chaos/failing_handlers.rs"]
mod failing_handlers;
#[path = "kafka_chaos/rebalance_order.rs"]
mod rebalance_order;
mod support;

use support::chaos::{run_through_broker_kills, CrashPlan};
use support::kafka::{config, create_topic_for_test, kill_and_restart};
use waybill_kafka::{KafkaPublisher, KafkaSubscriber};

const MESSAGES: usize = 10_000;
const KEYS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_kills_lose_nothing_duplicate_nothing_and_keep_key_order() {
    let _exclusive = support::fault::exclusive().await;
    let topic = create_topic_for_test("wb-chaos").await;
    let group = "chaos";
    let subscriber = KafkaSubscriber::connect(config(), &topic, group)
        .await
        .unwrap();
    let publisher = KafkaPublisher::connect(config()).await.unwrap();
    let plan = CrashPlan {
        messages: MESSAGES,
        keys: KEYS,
        kill_at: &[MESSAGES / 3, MESSAGES * 2 / 3],
    };
    let run = run_through_broker_kills(
        plan,
        &publisher,
        subscriber,
        &topic,
        group,
        kill_and_restart,
    )
    .await;
    run.assert_survived();
    assert!(
        run.totals.receive_errors > 0,
        "the consumer saw the broker go away: {:?}",
        run.totals
    );
}
