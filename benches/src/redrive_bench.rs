//! Dead-letter redrive against direct publishing, on the same broker in one run: a group's
//! dead-letter queue (RabbitMQ) or topic (Kafka) is filled with N dead letters over 1,000
//! keys, then `replay` of all of them (no `--rate`) is timed against `publish_batch` of the
//! same N messages to the place the replay sends them.

use std::time::{Duration, Instant, SystemTime};

use lapin::options::{ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use waybill_core::redrive::{DeadLetterFilter, ReplayOptions};
use waybill_core::{DeadLetterRecord, ErrorClass, Message, MessageId, Publisher, Subscriber};
use waybill_kafka::{create_topic, KafkaConfig, KafkaDeadLetters, KafkaPublisher, KafkaSubscriber};
use waybill_rabbitmq::{
    delete_group_topology, RabbitConfig, RabbitDeadLetters, RabbitPublisher, RabbitSubscriber,
};

const GROUP: &str = "bench";
const KEYS: usize = 1_000;

/// `n` dead letters of `topic`'s group, as the settlers write them.
fn dead_letters(topic: &str, n: usize) -> Vec<Message> {
    let now = SystemTime::now();
    (0..n)
        .map(|i| {
            let message = Message::new(vec![b'x'; 256]).with_key(format!("k{}", i % KEYS));
            let record = DeadLetterRecord {
                message_id: message.id(),
                origin: topic.to_owned(),
                partition: None,
                offset: None,
                group: GROUP.to_owned(),
                attempts: 1,
                first_failure_at: now,
                last_failure_at: now,
                error_class: ErrorClass::Permanent,
                error_message: "bench".to_owned(),
                held_behind: None,
            };
            let mut headers = message.headers().clone();
            record.write_to(&mut headers);
            message.with_headers(headers)
        })
        .collect()
}

fn fresh(name: &str) -> String {
    format!("wb-bench-{name}-{}", &MessageId::new().to_string()[24..])
}

/// What `work` gives, and how long it took.
async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = work.await;
    (out, started.elapsed())
}

/// Publishes `messages` to `topic` as one batch; every one must be confirmed.
async fn publish_all(publisher: &dyn Publisher, topic: &str, messages: Vec<Message>) {
    for result in publisher.publish_batch(topic, messages).await {
        result.expect("confirmed");
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn print(broker: &str, n: usize, replay: Duration, direct: Duration) {
    let (replay, direct) = (rate(n, replay), rate(n, direct));
    println!(
        "{:<52} {:>10.0} msgs/s",
        format!("{broker}: publish_batch to the replay's destination"),
        direct
    );
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x direct",
        format!("{broker}: dead-letter replay (no --rate)"),
        replay,
        replay / direct
    );
}

/// RabbitMQ: the dead-letter queue is filled through an exchange bound to it.
async fn rabbitmq(url: &str, n: usize) {
    let config = RabbitConfig::builder(url).build().expect("valid URL");
    let topic = fresh("redrive");
    let mut subscriber = RabbitSubscriber::connect(config.clone(), &topic, GROUP)
        .await
        .expect("RabbitMQ reachable (scripts/brokers start rabbitmq)");
    subscriber.close().await.expect("close");
    let dead = RabbitDeadLetters::new(config.clone(), &topic, GROUP).expect("names");
    let fill = format!("{topic}.fill");
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            fill.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("fill exchange");
    channel
        .queue_bind(
            dead.queue().into(),
            fill.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind the dead-letter queue");
    let publisher = RabbitPublisher::connect(config.clone())
        .await
        .expect("connect");
    publish_all(&publisher, &fill, dead_letters(&topic, n)).await;

    let (report, replay) =
        timed(dead.replay(&DeadLetterFilter::default(), &ReplayOptions::default())).await;
    assert_eq!(report.expect("replay").replayed, n as u64);

    let direct = timed(publish_all(&publisher, &topic, dead_letters(&topic, n)))
        .await
        .1;
    print("RabbitMQ", n, replay, direct);
    publisher.close().await.expect("close");
    let _ = channel
        .exchange_delete(fill.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    let _ = connection.close(200, "OK".into()).await;
    let _ = delete_group_topology(&config, &topic, GROUP, true).await;
}

/// Kafka: the dead-letter topic is written directly.
async fn kafka(brokers: &str, n: usize) {
    let config = KafkaConfig::builder(brokers)
        .build()
        .expect("valid brokers");
    let topic = fresh("redrive");
    create_topic(&config, &topic, 3, 1)
        .await
        .expect("Kafka reachable (scripts/brokers start kafka)");
    let mut subscriber = KafkaSubscriber::connect(config.clone(), &topic, GROUP)
        .await
        .expect("subscribe");
    subscriber.close().await.expect("close");
    let dead = KafkaDeadLetters::new(config.clone(), &topic, GROUP).expect("names");
    let publisher = KafkaPublisher::connect(config.clone())
        .await
        .expect("connect");
    publish_all(
        &publisher,
        dead.dead_letter_topic(),
        dead_letters(&topic, n),
    )
    .await;

    let (report, replay) =
        timed(dead.replay(&DeadLetterFilter::default(), &ReplayOptions::default())).await;
    assert_eq!(report.expect("replay").replayed, n as u64);

    let retry = format!("{topic}.{GROUP}.retry");
    let direct = timed(publish_all(&publisher, &retry, dead_letters(&topic, n)))
        .await
        .1;
    print("Kafka", n, replay, direct);
    publisher.close().await.expect("close");
}

/// Runs the RabbitMQ and the Kafka comparison.
pub async fn run(rabbitmq_url: &str, kafka_brokers: &str, n: usize) {
    println!("dead-letter redrive, {n} dead letters over {KEYS} keys, 256-byte payloads");
    rabbitmq(rabbitmq_url, n).await;
    kafka(kafka_brokers, n).await;
}
