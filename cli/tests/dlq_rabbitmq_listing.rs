//! Listing a RabbitMQ dead-letter queue again and again. A listing holds every letter and
//! gives back those it does not remove; RabbitMQ's quorum queues take them back out of their
//! order, and count them as ready only a moment after the reader let them go. Listings made
//! one right after another must still show every letter, oldest failure first, each time.

use std::time::{Duration, SystemTime};

use lapin::options::{ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use waybill_core::redrive::DeadLetterFilter;
use waybill_core::{DeadLetterRecord, ErrorClass, Message, MessageId, Publisher, Subscriber};
use waybill_rabbitmq::{delete_group_topology, RabbitDeadLetters, RabbitPublisher};

use super::dlq_rabbitmq::{amqp_url, config, join_group, listed, GROUP};

const LETTERS: usize = 300;
const LISTINGS: usize = 10;

/// A dead letter of `topic`'s group on `key`, as a settler writes it, failed at `failed_at`.
fn dead_letter(topic: &str, key: String, failed_at: SystemTime) -> Message {
    let message = Message::new("x").with_key(key);
    let record = DeadLetterRecord {
        message_id: message.id(),
        origin: topic.to_owned(),
        partition: None,
        offset: None,
        group: GROUP.to_owned(),
        attempts: 1,
        first_failure_at: failed_at,
        last_failure_at: failed_at,
        error_class: ErrorClass::Permanent,
        error_message: "handler bug".to_owned(),
        held_behind: None,
    };
    let mut headers = message.headers().clone();
    record.write_to(&mut headers);
    message.with_headers(headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_one_after_another_show_every_letter_oldest_failure_first() {
    let topic = format!(
        "wb-dlq-list-{}",
        &MessageId::new().to_string().replace('-', "")[20..]
    );
    let mut subscriber = join_group(&topic).await;
    subscriber.close().await.unwrap();
    let dead = RabbitDeadLetters::new(config(), &topic, GROUP).unwrap();

    // The letters go into the queue in the order they failed, through an exchange bound to it.
    let fill = format!("{topic}.fill");
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            fill.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            dead.queue().into(),
            fill.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let letters: Vec<Message> = (0..LETTERS)
        .map(|i| {
            let failed_at = hour_ago + Duration::from_millis(i as u64);
            dead_letter(&topic, format!("k{}", i % 3), failed_at)
        })
        .collect();
    let expected: Vec<MessageId> = letters.iter().map(Message::id).collect();
    let publisher = RabbitPublisher::connect(config()).await.unwrap();
    for result in publisher.publish_batch(&fill, letters).await {
        result.expect("confirmed");
    }

    for listing in 1..=LISTINGS {
        let ids: Vec<MessageId> = dead
            .list(&DeadLetterFilter::default())
            .await
            .unwrap()
            .iter()
            .map(|letter| letter.message.id())
            .collect();
        assert_eq!(ids.len(), LETTERS, "listing {listing}: every letter");
        assert!(
            ids == expected,
            "listing {listing}: oldest failure first; the first places out of order: {:?}",
            ids.iter()
                .zip(&expected)
                .enumerate()
                .filter(|(_, (got, want))| got != want)
                .map(|(place, _)| place)
                .take(10)
                .collect::<Vec<_>>()
        );
    }
    let oldest = dead
        .list(&DeadLetterFilter {
            limit: Some(5),
            ..DeadLetterFilter::default()
        })
        .await
        .unwrap();
    let oldest: Vec<MessageId> = oldest.iter().map(|letter| letter.message.id()).collect();
    assert_eq!(oldest, expected[..5], "a limit takes the oldest failures");
    assert_eq!(
        listed(&topic, &[]).len(),
        LETTERS,
        "and the program lists them all"
    );

    publisher.close().await.unwrap();
    let _ = channel
        .exchange_delete(fill.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    let _ = connection.close(200, "done".into()).await;
    delete_group_topology(&config(), &topic, GROUP, true)
        .await
        .unwrap();
}
