//! RabbitMQ restarted in the middle of a publish-and-consume run: `stop_app`/`start_app`, then
//! SIGKILL of the node and a fresh start. Every confirmed message must be handled, no effect
//! may happen twice (idempotency store), and per-key order must hold (PerKey mode). Each fault
//! must take effect: the client sees the outage, and the kill replaces the node's process.
//!
//! The producer publishes in batches that hold at most one message per key and republishes
//! failed messages (same id) before moving on, as the outbox relay does: a key never has two
//! messages in flight.

#[path = "rabbitmq_chaos/consumer_kills.rs"]
mod consumer_kills;
#[path = "rabbitmq_chaos/failing_handlers.rs"]
mod failing_handlers;
#[path = "rabbitmq_chaos/rebalance_order.rs"]
mod rebalance_order;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use support::chaos::{run_through_broker_kills, CrashPlan};
use support::rabbitmq::{config, kill_and_restart, require_broker, restart_app};
use waybill_rabbitmq::{delete_group_topology, RabbitPublisher, RabbitSubscriber};

const MESSAGES: usize = 20_000;
const KEYS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarts_lose_nothing_duplicate_nothing_and_keep_key_order() {
    let _exclusive = support::fault::exclusive().await;
    require_broker().await;
    let topic = support::unique_topic("wb-chaos");
    let group = "chaos";
    let subscriber = RabbitSubscriber::connect(config(), &topic, group)
        .await
        .unwrap();
    let publisher = RabbitPublisher::connect(config()).await.unwrap();
    let plan = CrashPlan {
        messages: MESSAGES,
        keys: KEYS,
        kill_at: &[MESSAGES / 4, MESSAGES * 5 / 8],
    };
    // The first fault restarts the application inside the node, the second kills the node.
    let faults = AtomicUsize::new(0);
    let fault = || {
        let first = faults.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                restart_app().await
            } else {
                kill_and_restart().await
            }
        }
    };
    let run = run_through_broker_kills(plan, &publisher, subscriber, &topic, group, fault).await;
    delete_group_topology(&config(), &topic, group, true)
        .await
        .unwrap();
    run.assert_survived();
}
