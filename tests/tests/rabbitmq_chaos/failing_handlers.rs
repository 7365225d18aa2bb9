//! Handlers failing (once: the delayed-retry queues; for good: the dead-letter queue) while
//! the RabbitMQ application restarts; see `support::failing_handlers`.

use std::sync::Arc;
use std::time::Duration;

use waybill_core::Subscriber;
use waybill_rabbitmq::{delete_group_topology, RabbitPublisher, RabbitSubscriber};

use crate::support::failing_handlers::{run, Target};
use crate::support::rabbitmq::{config, require_broker, restart_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handlers_through_a_broker_restart_end_handled_once_or_dead_lettered_once() {
    let _exclusive = crate::support::fault::exclusive().await;
    require_broker().await;
    let topic = crate::support::unique_topic("wb-failing");
    let group = "chaos-failing";
    let subscriber = RabbitSubscriber::connect(config(), &topic, group)
        .await
        .unwrap();
    let target = Target {
        topic: topic.clone(),
        group: group.to_owned(),
        publisher: Arc::new(RabbitPublisher::connect(config()).await.unwrap()),
        subscriber: Box::new(subscriber),
        restart: restart_app(),
        first_dead_letter_wait: Duration::from_secs(5),
    };
    let reader_topic = topic.clone();
    run(target, || async move {
        let reader = RabbitSubscriber::dead_letters(config(), &reader_topic, group)
            .await
            .unwrap();
        Box::new(reader) as Box<dyn Subscriber>
    })
    .await;
    delete_group_topology(&config(), &topic, group, true)
        .await
        .unwrap();
}
