//! `waybill preflight` against the RocketMQ test servers: one broker (no slave, so replicas
//! and the broker role WARN) flushing synchronously with topic auto-creation off (PASS), so a
//! topic passes with warnings and exit 0, and a group's retry and dead-letter topics WARN
//! until they exist; a topic that does not exist FAILs (exit 4); a name server nobody answers
//! on exits 1.

use std::process::{Command, Output};

use serde_json::Value;
use waybill_core::MessageId;
use waybill_rocketmq::{RocketAdmin, RocketConfig};

use super::WAYBILL;

fn name_server() -> String {
    std::env::var("WAYBILL_ROCKETMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_owned())
}

fn preflight(url: &str, topic: &str) -> Output {
    Command::new(WAYBILL)
        .args(["preflight", "--json", "--broker-url", url, "--topic", topic])
        .args(["--group", "billing"])
        .output()
        .expect("run waybill")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The verdict of check `name` in the JSON rows.
fn verdict<'a>(rows: &'a Value, name: &str) -> &'a str {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {rows}"))["verdict"]
        .as_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rocketmq_preflight_reads_the_brokers_settings_and_the_topic() {
    // The same settings as the sidecar test of this binary: the client pools one instance per
    // process and refuses a second configuration under the same client id.
    let config = RocketConfig::builder(name_server())
        .queues_per_topic(4)
        .build()
        .unwrap();
    let topic = format!(
        "wb_preflight_{}",
        &MessageId::new().to_string().replace('-', "")[20..]
    );
    let unreachable = |e: waybill_core::BrokerError| -> ! {
        panic!(
            "no RocketMQ servers at {} ({e}): scripts/brokers start rocketmq",
            name_server()
        )
    };
    let admin = RocketAdmin::connect(&config)
        .await
        .unwrap_or_else(|e| unreachable(e));
    if let Err(e) = admin.create_topic(&topic).await {
        unreachable(e);
    }
    let url = format!("rocketmq://{}", name_server());

    let out = preflight(&url, &topic);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(verdict(&rows, "topic"), "PASS", "{rows}");
    assert_eq!(verdict(&rows, "flushDiskType"), "PASS", "{rows}");
    assert_eq!(verdict(&rows, "autoCreateTopicEnable"), "PASS", "{rows}");
    assert_eq!(verdict(&rows, "replicas"), "WARN", "{rows}");
    assert_eq!(verdict(&rows, "brokerRole"), "WARN", "{rows}");
    assert_eq!(
        verdict(&rows, "group topics"),
        "WARN",
        "no subscriber yet: {rows}"
    );
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["target"] == format!("rocketmq topic {topic}")),
        "{rows}"
    );

    // Once the group's topics exist, the group check passes.
    admin.ensure_group_topics(&topic, "billing").await.unwrap();
    let out = preflight(&url, &topic);
    let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(verdict(&rows, "group topics"), "PASS", "{rows}");
    admin.close().await;

    let missing = preflight(&url, &format!("{topic}_missing"));
    assert_eq!(missing.status.code(), Some(4), "{}", text(&missing));
    let rows: Value = serde_json::from_slice(&missing.stdout).expect("JSON");
    assert_eq!(verdict(&rows, "topic"), "FAIL", "{rows}");

    let nobody = preflight("rocketmq://127.0.0.1:1", &topic);
    assert_eq!(nobody.status.code(), Some(1), "{}", text(&nobody));
}
