//! `waybill preflight` against the real RabbitMQ, through its management HTTP API: a waybill
//! consumer group's topology passes every check a single node allows (cluster size and
//! replicas warn), a classic non-durable queue fails (exit 4), as does a missing exchange; an
//! unreachable management API and refused credentials exit 1 with what to do. Over HTTPS:
//! the same checks with the CA named in `--management-url`, exit 1 naming `ca_file` without it.

use std::process::{Command, Output};

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;
use waybill_core::MessageId;
use waybill_rabbitmq::{delete_group_topology, delete_topic};

use super::dlq_rabbitmq::{amqp_url, config, join_group, text, GROUP};
use super::rabbitmq_tls::{management_address, require_management_listener, tls_dir};
use super::WAYBILL;

fn preflight(topic: &str, extra: &[&str]) -> Output {
    Command::new(WAYBILL)
        .args([
            "preflight",
            "--json",
            "--broker-url",
            &amqp_url(),
            "--topic",
            topic,
        ])
        .args(extra)
        .output()
        .expect("run waybill")
}

/// The verdict of check `name` on `target` in the JSON rows of `out`.
fn verdict(out: &Output, target: &str, name: &str) -> String {
    let rows: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {}", text(out)));
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == target && r["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check on {target} in {rows}"))["verdict"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &MessageId::new().to_string().replace('-', "")[20..]
    )
}

#[tokio::test]
async fn a_waybill_group_passes_and_a_classic_transient_queue_fails() {
    let topic = unique("wb-preflight");
    let subscriber = join_group(&topic).await;
    let group = preflight(&topic, &[]);
    assert_eq!(
        group.status.code(),
        Some(0),
        "no FAIL on a waybill group (is the management plugin on? scripts/brokers start \
         rabbitmq enables it): {}",
        text(&group)
    );
    let queue = format!("rabbitmq queue {topic}.{GROUP}");
    for check in ["queue type", "durable", "delivery limit", "dead letters"] {
        assert_eq!(verdict(&group, &queue, check), "PASS", "{check}");
    }
    assert_eq!(
        verdict(&group, &queue, "replicas"),
        "WARN",
        "one node, one member"
    );
    let exchange = format!("rabbitmq exchange {topic}");
    assert_eq!(verdict(&group, &exchange, "cluster size"), "WARN");
    assert_eq!(verdict(&group, &exchange, "exchange durable"), "PASS");
    assert_eq!(verdict(&group, &exchange, "bound queues"), "PASS");
    drop(subscriber);

    // Another tool's classic, non-durable queue on a fanout exchange.
    let legacy = unique("wb-preflight-legacy");
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            legacy.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_declare(
            legacy.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            legacy.as_str().into(),
            legacy.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let classic = preflight(&legacy, &[]);
    assert_eq!(classic.status.code(), Some(4), "{}", text(&classic));
    let queue = format!("rabbitmq queue {legacy}");
    assert_eq!(verdict(&classic, &queue, "queue type"), "FAIL");
    assert_eq!(verdict(&classic, &queue, "durable"), "FAIL");
    assert!(text(&classic).contains("can be lost"), "{}", text(&classic));

    // A topic nobody declared.
    let missing = preflight(&unique("wb-preflight-missing"), &[]);
    assert_eq!(missing.status.code(), Some(4), "{}", text(&missing));
    assert!(
        text(&missing).contains("does not exist"),
        "{}",
        text(&missing)
    );

    // No management API there, and refused credentials: exit 1 saying what to do.
    let closed = preflight(&topic, &["--management-url", "http://127.0.0.1:1"]);
    assert_eq!(closed.status.code(), Some(1), "{}", text(&closed));
    assert!(
        text(&closed).contains("rabbitmq_management"),
        "{}",
        text(&closed)
    );
    let refused = preflight(
        &topic,
        &["--management-url", "http://nobody:wrong@127.0.0.1:15672"],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("refused"), "{}", text(&refused));
    assert!(
        !text(&refused).contains("wrong"),
        "the password is not shown"
    );

    channel
        .queue_delete(legacy.as_str().into(), Default::default())
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
    delete_topic(&config(), &legacy).await.unwrap();
    delete_group_topology(&config(), &topic, GROUP, true)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_https_management_api_is_read_with_the_ca_named_in_its_url() {
    require_management_listener();
    let topic = unique("wb-preflight-https");
    let subscriber = join_group(&topic).await;
    let https = format!(
        "https://{}/?ca_file={}",
        management_address(),
        tls_dir().join("ca.pem").display()
    );
    let trusted = preflight(&topic, &["--management-url", &https]);
    assert_eq!(trusted.status.code(), Some(0), "{}", text(&trusted));
    let queue = format!("rabbitmq queue {topic}.{GROUP}");
    for check in ["queue type", "durable", "delivery limit", "dead letters"] {
        assert_eq!(verdict(&trusted, &queue, check), "PASS", "{check}");
    }

    let untrusted = preflight(
        &topic,
        &[
            "--management-url",
            &format!("https://{}/", management_address()),
        ],
    );
    assert_eq!(untrusted.status.code(), Some(1), "{}", text(&untrusted));
    assert!(text(&untrusted).contains("ca_file"), "{}", text(&untrusted));

    drop(subscriber);
    delete_group_topology(&config(), &topic, GROUP, true)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_partitioned_groups_queues_are_checked_through_its_partition_exchange() {
    use waybill_core::Subscriber;
    use waybill_rabbitmq::{delete_partitioned_group_topology, RabbitPartitionedSubscriber};
    let topic = unique("wb-preflight-partitioned");
    let mut member = RabbitPartitionedSubscriber::connect(config(), &topic, "parted", 2)
        .await
        .expect("join a partitioned group (scripts/brokers start rabbitmq enables the plugin)");
    let out = preflight(&topic, &[]);
    assert_eq!(out.status.code(), Some(0), "no FAIL: {}", text(&out));
    assert_eq!(
        verdict(&out, &format!("rabbitmq exchange {topic}"), "bound queues"),
        "PASS"
    );
    for partition in 0..2 {
        let queue = format!("rabbitmq queue {topic}.parted.p{partition}");
        for check in ["queue type", "durable", "delivery limit", "dead letters"] {
            assert_eq!(verdict(&out, &queue, check), "PASS", "{check} of {queue}");
        }
    }
    member.close().await.unwrap();
    delete_partitioned_group_topology(&config(), &topic, "parted", 2, true)
        .await
        .unwrap();
}
