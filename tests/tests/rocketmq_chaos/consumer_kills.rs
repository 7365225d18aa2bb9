//! A consumer process SIGKILLed mid-run and started again: the new process resumes the queues
//! from the committed offsets, the inbox holds back what the killed process still held until
//! its claims lapse, and every message is applied once, in key order; see
//! `support::consumer_kills`.

use std::sync::Arc;

use waybill_rocketmq::{RocketPublisher, RocketSubscriber};

use crate::support::consumer_kills::{run, KillRun};
use crate::support::consumer_process;
use crate::support::rocketmq::{config, create_topic_for_test};

const TEST: &str = "consumer_kills::a_killed_consumer_process_is_replaced_without_loss";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_process_is_replaced_without_loss() {
    if let Some(role) = consumer_process::role() {
        let spec = role.spec().clone();
        let subscriber = RocketSubscriber::connect(config(), &spec.topic, &spec.group)
            .await
            .expect("subscribe");
        return role.serve(subscriber).await;
    }
    let _exclusive = crate::support::fault::exclusive().await;
    let topic = create_topic_for_test("wb-members").await;
    let group = crate::support::unique_topic("chaos-members");
    run(KillRun {
        test: TEST,
        topic,
        group,
        publisher: Arc::new(RocketPublisher::connect(config()).await.unwrap()),
    })
    .await;
}
