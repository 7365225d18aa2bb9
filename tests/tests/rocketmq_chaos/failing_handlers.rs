//! Handlers failing (once: the group's retry topic; for good: its dead-letter topic) while the
//! RocketMQ broker is SIGKILLed and restarted; see `support::failing_handlers`.

use std::sync::Arc;
use std::time::Duration;

use waybill_core::Subscriber;
use waybill_rocketmq::{RocketPublisher, RocketSubscriber};

use crate::support::failing_handlers::{run, Target};
use crate::support::rocketmq::{config, create_topic_for_test, kill_and_restart_broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handlers_through_a_broker_kill_end_handled_once_or_dead_lettered_once() {
    let _exclusive = crate::support::fault::exclusive().await;
    let topic = create_topic_for_test("wb-failing").await;
    let group = &crate::support::unique_topic("chaos-failing");
    let subscriber = RocketSubscriber::connect(config(), &topic, group)
        .await
        .unwrap();
    let target = Target {
        topic: topic.clone(),
        group: group.to_owned(),
        publisher: Arc::new(RocketPublisher::connect(config()).await.unwrap()),
        subscriber: Box::new(subscriber),
        restart: kill_and_restart_broker(),
        first_dead_letter_wait: Duration::from_secs(15),
    };
    run(target, || async move {
        let reader = RocketSubscriber::dead_letters(config(), &topic, group)
            .await
            .unwrap();
        Box::new(reader) as Box<dyn Subscriber>
    })
    .await;
}
