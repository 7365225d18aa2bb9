//! Consumer lag on real RocketMQ: the group's lag probe counts what was published and not yet
//! consumed, per message queue, and falls to 0 once a processor consumed it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waybill_core::{
    handler_fn, BrokerError, BrokerPosition, ConsumerLag, HandlerError, IncomingMessage, Message,
    Processor, Publisher, Subscriber,
};
use waybill_rocketmq::{RocketPublisher, RocketSubscriber};

use crate::support::rocketmq::{config, create_topic_for_test, require_broker, QUEUES};

/// Messages published before the processor starts.
const PUBLISHED: u64 = 20;

/// Reads the lag every 250 ms until `done` holds (up to `limit`); returns the last reading and
/// how long it took.
async fn lag_until<F, Fut>(
    read: F,
    done: impl Fn(&ConsumerLag) -> bool,
    limit: Duration,
) -> (ConsumerLag, Duration)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<ConsumerLag, BrokerError>>,
{
    let started = Instant::now();
    loop {
        let lag = read().await.expect("lag reading");
        if done(&lag) || started.elapsed() > limit {
            return (lag, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The lag of each queue id of `topic` (one broker: the partition is `<broker>:<queue id>`).
fn lag_by_queue(lag: &ConsumerLag, topic: &str) -> BTreeMap<i32, u64> {
    lag.partitions
        .iter()
        .filter(|p| p.destination == topic)
        .map(|p| {
            let (_, queue) = p
                .partition
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("partition is `<broker>:<queue id>`: {p:?}"));
            (queue.parse().expect("a queue id"), p.lag)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_lag_counts_what_the_group_has_not_consumed() {
    super::recording();
    require_broker().await.close().await;
    let topic = create_topic_for_test("wb-lag-rmq").await;
    let group = format!("{topic}-g");
    let retry = format!("{topic}_{group}_RETRY");
    let subscriber = RocketSubscriber::connect(config(), &topic, &group)
        .await
        .unwrap();
    let probe = subscriber.lag_probe().expect("RocketMQ reports lag");
    let publisher = RocketPublisher::connect(config()).await.unwrap();
    let mut published_per_queue: BTreeMap<i32, u64> = (0..QUEUES as i32).map(|q| (q, 0)).collect();
    for i in 0..PUBLISHED {
        let m = Message::new(format!("m{i}")).with_key(format!("k{i}"));
        let receipt = publisher.publish(&topic, m).await.unwrap();
        let BrokerPosition::QueueOffset { queue_id, .. } = receipt.position else {
            panic!("a RocketMQ receipt names the queue: {receipt:?}")
        };
        *published_per_queue
            .get_mut(&queue_id)
            .expect("a queue of the topic") += 1;
    }

    // Nothing was consumed yet: the lag reaches what was published (the broker's consume
    // queues may show new messages a moment late).
    let (before, took) = lag_until(
        || probe.lag(),
        |lag| lag.total() == PUBLISHED,
        Duration::from_secs(20),
    )
    .await;
    println!("lag {} after {took:?}: {before:?}", before.total());
    assert_eq!(before.system, "rocketmq");
    assert_eq!(before.group, group);
    assert_eq!(before.total(), PUBLISHED, "{before:?}");
    assert_eq!(
        lag_by_queue(&before, &topic),
        published_per_queue,
        "one line per queue of the topic, each with what was published to it: {before:?}"
    );
    assert_eq!(
        lag_by_queue(&before, &retry).len(),
        QUEUES as usize,
        "one line per queue of the retry topic: {before:?}"
    );
    assert!(
        before
            .partitions
            .iter()
            .all(|p| p.destination == topic || p.destination == retry),
        "{before:?}"
    );
    assert_eq!(before.dead_letter_depth, Some(0), "{before:?}");

    // A processor consumes everything; the committed offsets reach the broker (every 5 s) and
    // the lag falls to 0.
    let handled = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&handled);
    let handler = handler_fn(move |m: IncomingMessage| {
        let counted = Arc::clone(&counted);
        async move {
            if m.message().payload().as_ref() == b"poison" {
                return Err(HandlerError::permanent("poison"));
            }
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let running = Processor::for_subscriber(&subscriber)
        .at_least_once_effects()
        .build()
        .unwrap()
        .start(subscriber, handler);
    let started = Instant::now();
    while handled.load(Ordering::SeqCst) < PUBLISHED {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "handled {} of {PUBLISHED} within 30 s",
            handled.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{PUBLISHED} handled after {:?}", started.elapsed());
    let (after, took) = lag_until(
        || running.lag(),
        |lag| lag.total() == 0,
        Duration::from_secs(30),
    )
    .await;
    println!("lag {} after {took:?}: {after:?}", after.total());
    assert_eq!(after.total(), 0, "consumed and committed: {after:?}");
    assert_eq!(after.group, group);
    assert_eq!(lag_by_queue(&after, &topic).len(), QUEUES as usize);

    // A message dead-lettered is counted in the dead-letter depth, not in the lag.
    publisher
        .publish(&topic, Message::new("poison"))
        .await
        .unwrap();
    let (dead, took) = lag_until(
        || running.lag(),
        |lag| lag.dead_letter_depth == Some(1) && lag.total() == 0,
        Duration::from_secs(30),
    )
    .await;
    println!(
        "dead-letter depth {:?} after {took:?}",
        dead.dead_letter_depth
    );
    assert_eq!(dead.dead_letter_depth, Some(1), "{dead:?}");
    assert_eq!(dead.total(), 0, "{dead:?}");

    let counts = running.shutdown().await.unwrap();
    assert_eq!(counts.handled, PUBLISHED, "{counts:?}");
    assert_eq!(counts.dead_lettered, 1, "{counts:?}");
    publisher.close().await.unwrap();
}
