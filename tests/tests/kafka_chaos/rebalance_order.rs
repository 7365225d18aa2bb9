//! Per-key order across consumer-group rebalances on Kafka: a second consumer joins mid-run,
//! then the first leaves; see `support::rebalance`.

use std::sync::Arc;

use waybill_core::Subscriber;
use waybill_kafka::{KafkaPublisher, KafkaSubscriber};

use crate::support::kafka::{config, create_topic_for_test, PARTITIONS};
use crate::support::rebalance::{run, Group, OrderPromise};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_while_a_consumer_joins_and_another_leaves() {
    let _exclusive = crate::support::fault::exclusive().await;
    let topic = create_topic_for_test("wb-rebalance").await;
    let group = &crate::support::unique_topic("chaos-rebalance");
    let subscribe = || {
        let topic = topic.clone();
        async move {
            Box::new(
                KafkaSubscriber::connect(config(), &topic, group)
                    .await
                    .unwrap(),
            ) as Box<dyn Subscriber>
        }
    };
    run(Group {
        topic: topic.clone(),
        group: group.to_owned(),
        publisher: Arc::new(KafkaPublisher::connect(config()).await.unwrap()),
        subscribe,
        partitions: (0..PARTITIONS).collect(),
        promise: OrderPromise::Throughout,
    })
    .await;
}
