//! A consumer process SIGKILLed mid-run and started again: the messages it held unacknowledged
//! go back to the queue, the inbox holds each back until the killed process's claim lapses,
//! and the new process applies every one once, in key order; see `support::consumer_kills`.

use std::sync::Arc;

use waybill_core::Subscriber;
use waybill_rabbitmq::{delete_group_topology, RabbitPublisher, RabbitSubscriber};

use crate::support::consumer_kills::{run, KillRun};
use crate::support::consumer_process;
use crate::support::rabbitmq::{config, require_broker};

const TEST: &str = "consumer_kills::a_killed_consumer_process_is_replaced_without_loss";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_process_is_replaced_without_loss() {
    if let Some(role) = consumer_process::role() {
        let spec = role.spec().clone();
        let subscriber = RabbitSubscriber::connect(config(), &spec.topic, &spec.group)
            .await
            .expect("subscribe");
        return role.serve(subscriber).await;
    }
    let _exclusive = crate::support::fault::exclusive().await;
    require_broker().await;
    let topic = crate::support::unique_topic("wb-members");
    let group = "chaos-members";
    // Declare the group's queue before anything is published to the topic.
    RabbitSubscriber::connect(config(), &topic, group)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    run(KillRun {
        test: TEST,
        topic: topic.clone(),
        group: group.to_owned(),
        publisher: Arc::new(RabbitPublisher::connect(config()).await.unwrap()),
    })
    .await;
    delete_group_topology(&config(), &topic, group, true)
        .await
        .unwrap();
}
