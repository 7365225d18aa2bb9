//! Redelivery on a real RabbitMQ: what survives a message coming back.
//!
//! - a message from a foreign producer (no waybill headers) keeps one id across redeliveries,
//!   so the idempotency store can recognise the second delivery;
//! - with the broker-side delivery limit of RabbitMQ 4.x quorum queues in force (emulated on
//!   3.x by a `delivery-limit` policy, which is what the 4.x default amounts to), a message
//!   given back past the limit is dead-lettered into the group's dead-letter queue, not dropped;
//! - a second subscriber of one group sees the first (per-key order needs one per group).

mod support;

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use support::rabbitmq::{config, rabbitmqctl, require_broker, url};
use waybill_core::{Message, MessageId, Publisher, Subscriber};
use waybill_rabbitmq::{delete_group_topology, RabbitPublisher, RabbitSubscriber};

fn unique(prefix: &str) -> String {
    let id = MessageId::new().to_string().replace('-', "");
    format!("wb-{prefix}-{}", &id[22..])
}

/// Publishes `body` with `properties` to exchange `topic` with a plain lapin channel, the way
/// a producer that knows nothing of waybill does.
async fn publish_raw(topic: &str, body: &[u8], properties: BasicProperties) {
    let connection = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
        .basic_publish(
            topic.into(),
            "".into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
}

async fn next(subscriber: &mut RabbitSubscriber) -> waybill_core::Delivery {
    tokio::time::timeout(Duration::from_secs(10), subscriber.receive())
        .await
        .expect("a delivery arrives")
        .unwrap()
        .expect("the stream is open")
}

#[tokio::test]
async fn a_foreign_message_keeps_its_id_across_redeliveries() {
    require_broker().await;
    let topic = unique("foreign");
    let mut subscriber = RabbitSubscriber::connect(config(), &topic, "g")
        .await
        .unwrap();
    // No id at all; a message-id that is not a UUID; and a different body, no id.
    publish_raw(&topic, b"plain", BasicProperties::default()).await;
    publish_raw(
        &topic,
        b"named",
        BasicProperties::default().with_message_id("order-7".into()),
    )
    .await;
    publish_raw(&topic, b"plain too", BasicProperties::default()).await;

    let mut first = Vec::new();
    for _ in 0..3 {
        let delivery = next(&mut subscriber).await;
        first.push(delivery.message().message().id());
        // Given back unsettled: the broker delivers it again.
        drop(delivery);
    }
    let mut second = Vec::new();
    for _ in 0..3 {
        let delivery = next(&mut subscriber).await;
        assert!(delivery.message().is_redelivered(), "a redelivery");
        second.push(delivery.message().message().id());
        delivery.ack().await.unwrap();
    }
    subscriber.close().await.unwrap();
    delete_group_topology(&config(), &topic, "g", true)
        .await
        .unwrap();

    first.sort();
    second.sort();
    assert_eq!(first, second, "every message keeps its id when redelivered");
    first.dedup();
    assert_eq!(first.len(), 3, "different messages have different ids");
}

#[tokio::test]
async fn a_message_past_the_brokers_delivery_limit_is_dead_lettered_not_dropped() {
    require_broker().await;
    let topic = unique("limit");
    let policy = format!("{topic}-limit");
    // RabbitMQ 4.x gives every quorum queue a delivery limit of 20 and drops a message past it
    // unless the queue dead-letters; a policy gives a 3.x queue the same (smaller) limit.
    let mut subscriber = RabbitSubscriber::connect(config(), &topic, "g")
        .await
        .unwrap();
    let pattern = format!("^{topic}\\.g$");
    rabbitmqctl(&[
        "set_policy",
        "--apply-to",
        "queues",
        &policy,
        &pattern,
        r#"{"delivery-limit":2}"#,
    ]);
    let publisher = RabbitPublisher::connect(config()).await.unwrap();
    let message = Message::new("given back again and again").with_key("k");
    let id = message.id();
    publisher.publish(&topic, message).await.unwrap();

    // Give it back until the broker stops delivering it.
    let mut deliveries = 0;
    while let Ok(received) =
        tokio::time::timeout(Duration::from_secs(3), subscriber.receive()).await
    {
        let delivery = received.unwrap().expect("the stream is open");
        assert_eq!(delivery.message().message().id(), id);
        deliveries += 1;
        drop(delivery);
        assert!(deliveries < 50, "the delivery limit is not in force");
    }
    subscriber.close().await.unwrap();

    let mut dead = RabbitSubscriber::dead_letters(config(), &topic, "g")
        .await
        .unwrap();
    let letter = tokio::time::timeout(Duration::from_secs(5), dead.receive()).await;
    let letter_id = match letter {
        Ok(Ok(Some(letter))) => {
            let id = letter.message().message().id();
            letter.ack().await.unwrap();
            Some(id)
        }
        _ => None,
    };
    dead.close().await.unwrap();
    rabbitmqctl(&["clear_policy", &policy]);
    publisher.close().await.unwrap();
    delete_group_topology(&config(), &topic, "g", true)
        .await
        .unwrap();

    assert!(deliveries >= 2, "delivered {deliveries} times");
    assert_eq!(
        letter_id,
        Some(id),
        "after {deliveries} deliveries the message must be in the dead-letter queue, not dropped"
    );
}
#[tokio::test]
async fn a_second_subscriber_of_a_group_sees_the_first() {
    require_broker().await;
    let topic = unique("competing");
    let mut first = RabbitSubscriber::connect(config(), &topic, "g")
        .await
        .unwrap();
    assert_eq!(first.competing_consumers(), 0, "alone on its queue");
    let mut second = RabbitSubscriber::connect(config(), &topic, "g")
        .await
        .unwrap();
    assert_eq!(second.competing_consumers(), 1, "sees the first subscriber");
    let mut other_group = RabbitSubscriber::connect(config(), &topic, "h")
        .await
        .unwrap();
    assert_eq!(
        other_group.competing_consumers(),
        0,
        "another group has its own queue"
    );
    for s in [&mut first, &mut second, &mut other_group] {
        s.close().await.unwrap();
    }
    delete_group_topology(&config(), &topic, "g", true)
        .await
        .unwrap();
    delete_group_topology(&config(), &topic, "h", true)
        .await
        .unwrap();
}

/// A producer that knows nothing of waybill sets no key route: its messages still reach every
/// partitioned group of the topic (partition 0, through the group's alternate exchange),
/// beside the plain groups.
#[tokio::test]
async fn a_foreign_message_without_a_key_route_reaches_a_partitioned_group() {
    use waybill_rabbitmq::{delete_partitioned_group_topology, RabbitPartitionedSubscriber};
    require_broker().await;
    let topic = unique("foreign-partitioned");
    let mut member = RabbitPartitionedSubscriber::connect(config(), &topic, "g", 4)
        .await
        .unwrap();
    publish_raw(
        &topic,
        b"from elsewhere",
        BasicProperties::default().with_message_id("foreign-1".into()),
    )
    .await;
    let delivery = tokio::time::timeout(Duration::from_secs(10), member.receive())
        .await
        .expect("the foreign message reaches the partitioned group")
        .unwrap()
        .expect("the stream is open");
    assert_eq!(
        delivery.message().message().payload(),
        &b"from elsewhere"[..]
    );
    delivery.ack().await.unwrap();
    member.close().await.unwrap();
    delete_partitioned_group_topology(&config(), &topic, "g", 4, true)
        .await
        .unwrap();
}

/// A partitioned group's retries come back to the key's partition: through a retry tier
/// (whose expired copy is routed again on the key route) and at once (through the partition
/// exchange). A copy routed on anything else would land in partition 0.
#[tokio::test]
async fn a_partitioned_groups_retries_come_back_to_the_keys_partition() {
    use std::collections::HashMap;
    use waybill_rabbitmq::delete_partitioned_group_topology;
    let (topic, mut member, publisher, keys) = keyed_partitioned_group("partitioned-retry").await;
    let mut first = HashMap::new();
    for _ in &keys {
        let (key, partition, delivery) = next_keyed(&mut member).await;
        first.insert(key, partition);
        delivery.retry(Duration::from_millis(250)).await.unwrap();
    }
    assert!(
        first.values().any(|p| *p != 0),
        "the keys spread over partitions: {first:?}"
    );
    for _ in &keys {
        let (key, partition, delivery) = next_keyed(&mut member).await;
        assert_eq!(partition, first[&key], "{key} after a retry through a tier");
        delivery.retry(Duration::ZERO).await.unwrap();
    }
    for _ in &keys {
        let (key, partition, delivery) = next_keyed(&mut member).await;
        assert_eq!(partition, first[&key], "{key} after a retry without delay");
        delivery.ack().await.unwrap();
    }
    publisher.close().await.unwrap();
    member.close().await.unwrap();
    delete_partitioned_group_topology(&config(), &topic, "g", 4, true)
        .await
        .unwrap();
}

/// A partitioned group's dead letters, replayed without a destination, go back to the group
/// — a partitioned group has no work queue: to its partition exchange — each to its key's
/// partition.
#[tokio::test]
async fn a_partitioned_groups_dead_letters_are_replayed_to_each_keys_partition() {
    use std::collections::HashMap;
    use std::time::SystemTime;
    use waybill_core::redrive::{DeadLetterFilter, ReplayOptions};
    use waybill_core::{DeadLetterRecord, ErrorClass};
    use waybill_rabbitmq::{delete_partitioned_group_topology, RabbitDeadLetters};
    let (topic, mut member, publisher, keys) = keyed_partitioned_group("partitioned-redrive").await;
    let mut first = HashMap::new();
    for _ in &keys {
        let (key, partition, delivery) = next_keyed(&mut member).await;
        first.insert(key, partition);
        let now = SystemTime::now();
        let record = DeadLetterRecord::for_delivery(
            delivery.message(),
            1,
            now,
            now,
            ErrorClass::Permanent,
            "failed on purpose",
        );
        delivery.dead_letter(record).await.unwrap();
    }
    assert!(
        first.values().any(|p| *p != 0),
        "the keys spread over partitions: {first:?}"
    );
    let report = RabbitDeadLetters::new(config(), &topic, "g")
        .unwrap()
        .replay(&DeadLetterFilter::default(), &ReplayOptions::default())
        .await
        .expect("the replay finds the group's partitions");
    assert_eq!(report.replayed, 8, "{report:?}");
    for _ in &keys {
        let (key, partition, delivery) = next_keyed(&mut member).await;
        assert_eq!(partition, first[&key], "{key} after its replay");
        delivery.ack().await.unwrap();
    }
    publisher.close().await.unwrap();
    member.close().await.unwrap();
    delete_partitioned_group_topology(&config(), &topic, "g", 4, true)
        .await
        .unwrap();
}

/// A member of group `g` (4 partitions) on a new topic named after `prefix`, a publisher, and
/// the eight keys `key-0` … `key-7`, one message each, published in that order.
async fn keyed_partitioned_group(
    prefix: &str,
) -> (
    String,
    waybill_rabbitmq::RabbitPartitionedSubscriber,
    RabbitPublisher,
    Vec<String>,
) {
    require_broker().await;
    let topic = unique(prefix);
    let member = waybill_rabbitmq::RabbitPartitionedSubscriber::connect(config(), &topic, "g", 4)
        .await
        .unwrap();
    let publisher = RabbitPublisher::connect(config()).await.unwrap();
    let keys: Vec<String> = (0..8).map(|k| format!("key-{k}")).collect();
    for key in &keys {
        publisher
            .publish(&topic, Message::new(key.clone()).with_key(key.as_str()))
            .await
            .unwrap();
    }
    (topic, member, publisher, keys)
}

/// The next delivery of a partitioned member, with its key and partition.
async fn next_keyed(
    member: &mut waybill_rabbitmq::RabbitPartitionedSubscriber,
) -> (String, i32, waybill_core::Delivery) {
    let delivery = tokio::time::timeout(Duration::from_secs(10), member.receive())
        .await
        .expect("a delivery arrives")
        .unwrap()
        .expect("the stream is open");
    let key = delivery.message().message().key().unwrap().to_owned();
    let partition = delivery.message().origin().partition.unwrap();
    (key, partition, delivery)
}

/// A member whose session fails while its connection stays up (a partition queue deleted
/// under it, so consuming it again is refused) reconnects, and holds the group alone again:
/// the failed session's connection, and with it its member slot, must not linger and count
/// as a member that owns partitions nobody consumes.
#[tokio::test]
async fn a_partitioned_member_whose_session_failed_takes_every_partition_again() {
    use waybill_rabbitmq::{delete_partitioned_group_topology, RabbitPartitionedSubscriber};
    require_broker().await;
    let topic = unique("partitioned-lost");
    let config = waybill_rabbitmq::RabbitConfig::builder(url())
        .retry_tiers([Duration::from_millis(250)])
        .rebalance_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut member = RabbitPartitionedSubscriber::connect(config.clone(), &topic, "g", 4)
        .await
        .unwrap();
    assert_eq!(member.owned_partitions(), vec![0, 1, 2, 3]);
    let connection = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(
            format!("{topic}.g.p1").as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(10), member.receive())
        .await
        .expect("the failed session is reported");
    assert!(failed.is_err(), "the session failed: {failed:?}");
    // The next receive reconnects; wait for the new session to settle its share.
    let publisher = RabbitPublisher::connect(config.clone()).await.unwrap();
    publisher
        .publish(&topic, Message::new("after").with_key("k"))
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), member.receive())
        .await
        .expect("a delivery after reconnecting")
        .unwrap()
        .unwrap();
    delivery.ack().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        member.owned_partitions(),
        vec![0, 1, 2, 3],
        "the reconnected member owns every partition (no lingering slot)"
    );
    publisher.close().await.unwrap();
    member.close().await.unwrap();
    delete_partitioned_group_topology(&config, &topic, "g", 4, true)
        .await
        .unwrap();
}
