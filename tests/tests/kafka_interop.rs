//! Interoperability with an independent client (Python confluent-kafka): records it produces
//! are consumed by waybill with key and headers intact, and the other way round; and keys land
//! on the partition the Java client's default partitioner picks.

mod support;

use std::process::Command;
use std::time::Duration;

use support::kafka::{brokers, config, create_topic_for_test, PARTITIONS};
use waybill_core::{BrokerPosition, Message, Publisher, Subscriber};
use waybill_kafka::{java_partition, KafkaPublisher, KafkaSubscriber};

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'confluent_kafka'"),
        "the interop client is missing: `python3 -m pip install confluent-kafka` \
         (scripts/test installs it)"
    );
    assert!(out.status.success(), "python failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const PRODUCE: &str = r#"
import sys
from confluent_kafka import Producer
# murmur2_random is the Java client's partitioner (librdkafka defaults to consistent_random).
p = Producer({"bootstrap.servers": sys.argv[1], "acks": "all", "partitioner": "murmur2_random"})
p.produce(sys.argv[2], key=b"interop-key", value=b"from python", headers=[("origin", b"python"), ("n", b"7")])
assert p.flush(30) == 0
"#;

const CONSUME: &str = r#"
import json, sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "python-reader", "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
c.subscribe([sys.argv[2]])
for _ in range(120):
    m = c.poll(1.0)
    if m is None or m.error():
        continue
    print(json.dumps({"key": m.key().decode(), "value": m.value().decode(), "partition": m.partition(),
                      "headers": {k: v.decode() for k, v in (m.headers() or [])}}))
    break
c.close()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_another_client_is_consumed_with_key_and_headers() {
    let topic = create_topic_for_test("wb-interop-in").await;
    python(PRODUCE, &[&brokers(), &topic]);
    let mut subscriber = KafkaSubscriber::connect(config(), &topic, "interop")
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(60), subscriber.receive())
        .await
        .expect("the record arrives")
        .unwrap()
        .unwrap();
    let m = delivery.message().message().clone();
    assert_eq!(m.key(), Some("interop-key"));
    assert_eq!(m.payload().as_ref(), b"from python");
    assert_eq!(m.headers().get("origin"), Some("python"));
    assert_eq!(m.headers().get("n"), Some("7"));
    let origin = delivery.message().origin().clone();
    assert_eq!(
        origin.partition,
        Some(java_partition(b"interop-key", PARTITIONS as u32) as i32),
        "the other client's murmur2 partitioner agrees with ours"
    );
    delivery.ack().await.unwrap();
    subscriber.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waybill_message_is_read_by_another_client_with_key_and_headers() {
    let topic = create_topic_for_test("wb-interop-out").await;
    let publisher = KafkaPublisher::connect(config()).await.unwrap();
    let message = Message::new("from waybill")
        .with_key("order-42")
        .with_header("origin", "waybill");
    publisher.publish(&topic, message.clone()).await.unwrap();
    let line = python(CONSUME, &[&brokers(), &topic]);
    assert!(line.contains(r#""key": "order-42""#), "{line}");
    assert!(line.contains(r#""value": "from waybill""#), "{line}");
    assert!(line.contains(r#""origin": "waybill""#), "{line}");
    assert!(
        line.contains(&format!(r#""waybill-id": "{}""#, message.id())),
        "{line}"
    );
}

#[tokio::test]
async fn keys_land_on_the_java_default_partition() {
    let topic = create_topic_for_test("wb-partitions").await;
    let publisher = KafkaPublisher::connect(config()).await.unwrap();
    let messages: Vec<Message> = (0..40)
        .map(|i| Message::new("x").with_key(format!("customer-{i}")))
        .collect();
    let keys: Vec<String> = messages
        .iter()
        .map(|m| m.key().unwrap().to_owned())
        .collect();
    let mut spread = std::collections::BTreeSet::new();
    for (key, result) in keys
        .iter()
        .zip(publisher.publish_batch(&topic, messages).await)
    {
        let receipt = result.unwrap();
        let BrokerPosition::PartitionOffset { partition, offset } = receipt.position else {
            panic!("a Kafka receipt has a partition and an offset");
        };
        assert!(offset >= 0);
        assert_eq!(
            partition as u32,
            java_partition(key.as_bytes(), PARTITIONS as u32),
            "{key}"
        );
        spread.insert(partition);
    }
    assert!(spread.len() > 1, "keys spread over partitions");
}
