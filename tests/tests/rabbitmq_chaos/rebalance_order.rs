//! A second consumer joins a RabbitMQ group's queue mid-run, then the first leaves. RabbitMQ
//! hands one queue's messages round-robin to its consumers, so while two consume a key's
//! messages can be handled out of order (the README: per-key order needs one subscriber per
//! group); the test asserts that nothing is lost or applied twice throughout, and that order
//! holds again once one consumer is left; see `support::rebalance`.

use std::sync::Arc;

use waybill_core::Subscriber;
use waybill_rabbitmq::{delete_group_topology, RabbitPublisher, RabbitSubscriber};

use crate::support::rabbitmq::{config, require_broker};
use crate::support::rebalance::{run, Group, OrderPromise};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_joining_and_another_leaving_lose_nothing_and_order_returns() {
    let _exclusive = crate::support::fault::exclusive().await;
    require_broker().await;
    let topic = crate::support::unique_topic("wb-rebalance");
    let group = "chaos-rebalance";
    let subscribe = || {
        let topic = topic.clone();
        async move {
            Box::new(
                RabbitSubscriber::connect(config(), &topic, group)
                    .await
                    .unwrap(),
            ) as Box<dyn Subscriber>
        }
    };
    run(Group {
        topic: topic.clone(),
        group: group.to_owned(),
        publisher: Arc::new(RabbitPublisher::connect(config()).await.unwrap()),
        subscribe,
        partitions: Vec::new(),
        promise: OrderPromise::OnceAlone,
    })
    .await;
    delete_group_topology(&config(), &topic, group, true)
        .await
        .unwrap();
}
