//! Per-key order across a lost consumer connection on RabbitMQ.
//!
//! A subscriber holds a full prefetch window of unacknowledged deliveries when its connection
//! is lost. The broker gives those deliveries back only once it has dropped the old consumer:
//! at once when the connection is closed, but after a broker restart the recovered quorum
//! queue drops the previous consumer only a moment after it accepts new ones. A subscriber
//! that consumed again at once would get later messages of a key before the earlier ones
//! came back; every key's messages must still arrive in publish order.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use support::rabbitmq::{
    config, heal_after_restart, kill, rabbitmqctl, require_broker, start_again,
};
use waybill_core::{Message, MessageId, Publisher, Subscriber};
use waybill_rabbitmq::{delete_group_topology, RabbitPublisher, RabbitSubscriber};

const KEYS: usize = 10;
const ROUNDS: usize = 60;

/// Publishes `ROUNDS` rounds of one message per key, each round confirmed before the next,
/// so every key's messages are in the queue in `seq` order.
async fn publish_rounds(publisher: &RabbitPublisher, topic: &str) {
    for round in 0..ROUNDS {
        let batch = (0..KEYS)
            .map(|k| {
                Message::new(format!("{round}"))
                    .with_key(format!("key-{k}"))
                    .with_header("seq", round.to_string())
            })
            .collect();
        for result in publisher.publish_batch(topic, batch).await {
            result.expect("confirmed");
        }
    }
}

/// Receives (and acks) until `until` messages were seen once, recording each key's `seq`
/// values in the order their first copies arrived; returns how many receive errors (lost
/// connections) it went through.
async fn receive_all(
    subscriber: &mut RabbitSubscriber,
    seen: &mut HashSet<MessageId>,
    order: &mut HashMap<String, Vec<u64>>,
    until: usize,
) -> u64 {
    let mut errors = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    while seen.len() < until {
        assert!(
            Instant::now() < deadline,
            "only {} of {until} messages arrived",
            seen.len()
        );
        let delivery = match subscriber.receive().await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => panic!("the subscriber ended"),
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let message = delivery.message().message().clone();
        if seen.insert(message.id()) {
            let seq = message.headers().get("seq").unwrap().parse().unwrap();
            order
                .entry(message.key().unwrap().to_owned())
                .or_default()
                .push(seq);
        }
        let _ = delivery.ack().await;
    }
    errors
}

/// How the connection is lost.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The broker closes every connection and stays up.
    CloseConnections,
    /// The broker is killed with SIGKILL and started again.
    KillBroker,
}

/// Publishes, handles a few messages, loses the connection while the broker has pushed a full
/// prefetch window, keeps receiving through the outage, and returns the keys whose first
/// copies arrived out of publish order. Fails unless the cut took effect: the subscriber saw
/// the connection go, and a killed broker's node process was replaced.
async fn first_arrivals_out_of_order(cut: Cut) -> Vec<String> {
    let topic = format!("wb-reorder-{}", &MessageId::new().to_string()[24..]);
    let group = "reorder";
    let mut subscriber = RabbitSubscriber::connect(config(), &topic, group)
        .await
        .unwrap();
    let publisher = RabbitPublisher::connect(config()).await.unwrap();
    publish_rounds(&publisher, &topic).await;
    let _ = publisher.close().await;

    let mut seen = HashSet::new();
    let mut order = HashMap::new();
    receive_all(&mut subscriber, &mut seen, &mut order, 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The cut strikes while the subscriber holds its prefetch window unacknowledged: the
    // connection is gone before receiving goes on.
    let restart = match cut {
        Cut::CloseConnections => {
            tokio::task::spawn_blocking(|| rabbitmqctl(&["close_all_connections", "test cut"]))
                .await
                .unwrap();
            None
        }
        Cut::KillBroker => Some(tokio::spawn(start_again(kill().await))),
    };
    // Receiving goes on (and reconnects) while the broker is away, as a Processor's does.
    let errors = receive_all(&mut subscriber, &mut seen, &mut order, KEYS * ROUNDS).await;
    if let Some(restart) = restart {
        restart.await.unwrap().assert_replaced_process();
    }
    assert!(
        errors > 0,
        "after {cut:?}, the subscriber never saw its connection go: the cut did nothing"
    );
    let _ = subscriber.close().await;
    delete_group_topology(&config(), &topic, group, true)
        .await
        .unwrap();
    if matches!(cut, Cut::KillBroker) {
        heal_after_restart().await;
    }

    order
        .iter()
        .filter(|(_, seqs)| seqs.windows(2).any(|w| w[0] >= w[1]))
        .map(|(key, seqs)| format!("{key}: {seqs:?}"))
        .collect()
}

// Both cuts in one test: the broker kill would disturb any test running beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_does_not_reorder_a_keys_messages() {
    require_broker().await;
    for cut in [Cut::CloseConnections, Cut::KillBroker] {
        let out_of_order = first_arrivals_out_of_order(cut).await;
        assert!(
            out_of_order.is_empty(),
            "after {cut:?}, keys arrived out of publish order:\n{}",
            out_of_order.join("\n")
        );
    }
}
