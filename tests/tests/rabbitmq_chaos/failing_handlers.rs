//! Handlers failing (once: the delayed-retry queues; for good: the dead-letter queue) while
//! the RabbitMQ application restarts, under a plain group and under a partitioned one; see
//! `support::failing_handlers`.

use std::sync::Arc;
use std::time::Duration;

use waybill_core::Subscriber;
use waybill_rabbitmq::{
    delete_group_topology, delete_partitioned_group_topology, RabbitPublisher, RabbitSubscriber,
};

use crate::partitioned_group::{broker_addr, member, PARTITIONS};
use crate::support::failing_handlers::{run, Target};
use crate::support::rabbitmq::{config, require_broker, restart_app};

/// Runs the scenario with `subscriber` consuming `group` of `topic`.
async fn scenario(topic: &str, group: &'static str, subscriber: Box<dyn Subscriber>) {
    let target = Target {
        topic: topic.to_owned(),
        group: group.to_owned(),
        publisher: Arc::new(RabbitPublisher::connect(config()).await.unwrap()),
        subscriber,
        restart: restart_app(),
        first_dead_letter_wait: Duration::from_secs(5),
    };
    let reader_topic = topic.to_owned();
    run(target, || async move {
        let reader = RabbitSubscriber::dead_letters(config(), &reader_topic, group)
            .await
            .unwrap();
        Box::new(reader) as Box<dyn Subscriber>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handlers_through_a_broker_restart_end_handled_once_or_dead_lettered_once() {
    let _exclusive = crate::support::fault::exclusive().await;
    require_broker().await;
    let topic = crate::support::unique_topic("wb-failing");
    let group = "chaos-failing";
    let subscriber = RabbitSubscriber::connect(config(), &topic, group)
        .await
        .unwrap();
    scenario(&topic, group, Box::new(subscriber)).await;
    delete_group_topology(&config(), &topic, group, true)
        .await
        .unwrap();
}

/// Under a member of a partitioned group: a retried copy goes back through the group's hash
/// exchange, to its key's partition; after the restart the member reconnects, takes a slot
/// again and consumes all six partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_group_retries_and_dead_letters_through_a_broker_restart() {
    let _exclusive = crate::support::fault::exclusive().await;
    require_broker().await;
    let topic = crate::support::unique_topic("wb-partitioned-failing");
    let group = "partitioned-failing";
    let subscriber = member(&broker_addr(), &topic, group).await;
    scenario(&topic, group, Box::new(subscriber)).await;
    delete_partitioned_group_topology(&config(), &topic, group, PARTITIONS, true)
        .await
        .unwrap();
}
