//! Handlers failing (once: the retry topic; for good: the dead-letter topic) while the broker
//! is SIGKILLed and restarted; see `support::failing_handlers`.

use std::sync::Arc;
use std::time::Duration;

use waybill_core::Subscriber;
use waybill_kafka::{KafkaPublisher, KafkaSubscriber};

use crate::support::failing_handlers::{run, Target};
use crate::support::kafka::{config, create_topic_for_test, kill_and_restart_after};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handlers_through_a_broker_kill_end_handled_once_or_dead_lettered_once() {
    let _exclusive = crate::support::fault::exclusive().await;
    let topic = create_topic_for_test("wb-failing").await;
    let group = &crate::support::unique_topic("chaos-failing");
    let subscriber = KafkaSubscriber::connect(config(), &topic, group)
        .await
        .unwrap();
    let target = Target {
        topic: topic.clone(),
        group: group.to_owned(),
        publisher: Arc::new(KafkaPublisher::connect(config()).await.unwrap()),
        subscriber: Box::new(subscriber),
        restart: kill_and_restart_after(Duration::from_secs(3)),
        first_dead_letter_wait: Duration::from_secs(20),
    };
    run(target, || async move {
        let reader = KafkaSubscriber::dead_letters(config(), &topic, group)
            .await
            .unwrap();
        Box::new(reader) as Box<dyn Subscriber>
    })
    .await;
}
