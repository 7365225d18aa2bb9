//! The RocketMQ broker SIGKILLed twice and restarted (the name server stays up) in the middle
//! of a publish-and-consume run of 10,000 messages. Every `SEND_OK` message must be handled,
//! no effect may happen twice (idempotency store), and per-key order must hold (PerKey mode).
//! Each kill must take effect: the broker's process is replaced, and the client sees the
//! outage (a failed publish, receive or settlement) while it lasts.

#[path = "rocketmq_chaos/consumer_kills.rs"]
mod consumer_kills;
#[path = "rocketmq_chaos/failing_handlers.rs"]
mod failing_handlers;
#[path = "rocketmq_chaos/rebalance_order.rs"]
mod rebalance_order;
mod support;

use support::chaos::{run_through_broker_kills, CrashPlan};
use support::rocketmq::{config, create_topic_for_test, kill_and_restart_broker};
use waybill_rocketmq::{RocketPublisher, RocketSubscriber};

const MESSAGES: usize = 10_000;
const KEYS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_kills_lose_nothing_duplicate_nothing_and_keep_key_order() {
    let _exclusive = support::fault::exclusive().await;
    let topic = create_topic_for_test("wb-chaos").await;
    let group = "chaos";
    let subscriber = RocketSubscriber::connect(config(), &topic, group)
        .await
        .unwrap();
    let publisher = RocketPublisher::connect(config()).await.unwrap();
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
        kill_and_restart_broker,
    )
    .await;
    run.assert_survived();
}
