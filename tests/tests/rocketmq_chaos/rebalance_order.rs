//! A second consumer joins a RocketMQ group mid-run, then the first leaves cleanly. The Rust
//! broker 1.0 tells no member about the change (`Capabilities::prompt_rebalance`): the joining
//! member takes its share at once while the first keeps reading every queue until its next
//! periodic rebalance (20 s), so for a while both read some queues — duplicates the inbox
//! absorbs, and a key's messages may be handled out of order. The test asserts that nothing
//! is lost or applied twice throughout, that the remaining member takes every queue over after
//! the first left (at its periodic rebalance), and that order holds once it is alone; see
//! `support::rebalance`.

use std::sync::Arc;

use waybill_core::Subscriber;
use waybill_rocketmq::{RocketPublisher, RocketSubscriber};

use crate::support::rebalance::{run, Group, OrderPromise};
use crate::support::rocketmq::{config, create_topic_for_test, QUEUES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_joining_and_another_leaving_lose_nothing_and_order_returns() {
    let _exclusive = crate::support::fault::exclusive().await;
    let topic = create_topic_for_test("wb-rebalance").await;
    let group = &crate::support::unique_topic("chaos-rebalance");
    let subscribe = || {
        let topic = topic.clone();
        async move {
            Box::new(
                RocketSubscriber::connect(config(), &topic, group)
                    .await
                    .unwrap(),
            ) as Box<dyn Subscriber>
        }
    };
    run(Group {
        topic: topic.clone(),
        group: group.to_owned(),
        publisher: Arc::new(RocketPublisher::connect(config()).await.unwrap()),
        subscribe,
        partitions: (0..QUEUES as i32).collect(),
        promise: OrderPromise::OnceAlone,
    })
    .await;
}
