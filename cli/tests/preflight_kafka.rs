//! `waybill preflight` against the Kafka-protocol test broker: its topics have one replica, so
//! the replication check fails and the command exits 4; a missing topic exits 1, an
//! unsupported URL scheme exits 2.

use std::process::{Command, Output};

use serde_json::Value;
use waybill_core::MessageId;
use waybill_kafka::{create_topic, KafkaConfig};

use super::WAYBILL;

fn brokers() -> String {
    std::env::var("WAYBILL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn preflight(url: &str, topic: &str) -> Output {
    Command::new(WAYBILL)
        .args(["preflight", "--json", "--broker-url", url, "--topic", topic])
        .output()
        .expect("run waybill")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test]
async fn a_single_replica_kafka_topic_fails_the_preflight() {
    let config = KafkaConfig::builder(brokers()).build().unwrap();
    let topic = format!(
        "wb-preflight-{}",
        &MessageId::new().to_string().replace('-', "")[20..]
    );
    create_topic(&config, &topic, 2, 1)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the Kafka-protocol broker at {} refused ({e}): scripts/brokers start kafka",
                brokers()
            )
        });
    let url = format!("kafka://{}", brokers());

    let out = preflight(&url, &topic);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let check = |name: &str| -> &Value {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check in {rows}"))
    };
    let replication = check("replication");
    assert_eq!(replication["verdict"], "FAIL", "{rows}");
    assert!(
        replication["reason"]
            .as_str()
            .unwrap()
            .contains("1 replica"),
        "{rows}"
    );
    assert!(replication["fix"].as_str().unwrap().contains("3"), "{rows}");
    assert_eq!(replication["target"], format!("kafka topic {topic}"));
    // tansu reports no topic configuration: the other two checks cannot pass, and say so.
    for name in ["min.insync.replicas", "unclean.leader.election.enable"] {
        assert_ne!(check(name)["verdict"], "PASS", "{rows}");
    }
    assert!(text(&out).contains("can be lost"), "{}", text(&out));

    let missing = preflight(&url, &format!("{topic}-missing"));
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        text(&missing).contains("does not exist"),
        "{}",
        text(&missing)
    );

    let unsupported = preflight("nats://127.0.0.1:4222", &topic);
    assert_eq!(unsupported.status.code(), Some(2), "{}", text(&unsupported));
}
