//! The README's demo command balances: on the embedded default (SQLite and the in-memory
//! broker with faults), with its data on MariaDB/MySQL, on a real RabbitMQ and on a
//! Kafka-protocol broker.

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_order-service"))
        .args(args)
        .output()
        .expect("run order-service");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "order-service {args:?} failed:\n{text}"
    );
    text
}

fn figure(ledger: &str, name: &str) -> u64 {
    ledger
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name:?} in\n{ledger}"))
}

#[test]
fn the_embedded_demo_balances_with_faults_and_relay_crashes() {
    let ledger = run(&["--orders", "600", "--fault-percent", "10"]);
    assert!(ledger.contains("OK"), "{ledger}");
    assert_eq!(figure(&ledger, "orders placed"), 600);
    assert_eq!(figure(&ledger, "applied twice"), 0);
    assert_eq!(figure(&ledger, "relay crashes"), 2);
    assert!(
        figure(&ledger, "duplicates skipped") > 0,
        "faults produced duplicates: {ledger}"
    );
}

#[test]
fn the_demo_balances_with_its_data_on_mysql() {
    let url = std::env::var("WAYBILL_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned());
    let ledger = run(&[
        "--orders",
        "600",
        "--fault-percent",
        "10",
        "--database",
        &url,
    ]);
    assert!(ledger.contains("OK"), "{ledger}");
    assert!(ledger.contains("MySQL/MariaDB database"), "{ledger}");
    assert_eq!(figure(&ledger, "orders placed"), 600);
    assert_eq!(figure(&ledger, "applied twice"), 0);
    assert_eq!(figure(&ledger, "relay crashes"), 2);
    assert!(
        figure(&ledger, "duplicates skipped") > 0,
        "faults produced duplicates: {ledger}"
    );
}

#[test]
fn the_demo_balances_on_rabbitmq() {
    let url = std::env::var("WAYBILL_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let ledger = run(&[
        "--orders",
        "600",
        "--broker",
        "rabbitmq",
        "--rabbitmq-url",
        &url,
    ]);
    assert!(ledger.contains("OK"), "{ledger}");
    assert_eq!(figure(&ledger, "left in the outbox"), 0);
}

#[test]
fn the_demo_balances_on_kafka() {
    let brokers =
        std::env::var("WAYBILL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let ledger = run(&[
        "--orders",
        "300",
        "--broker",
        "kafka",
        "--kafka-brokers",
        &brokers,
    ]);
    assert!(ledger.contains("OK"), "{ledger}");
    assert_eq!(figure(&ledger, "dead-lettered (malformed)"), 3);
}

#[test]
fn the_demo_balances_on_rocketmq() {
    let name_server =
        std::env::var("WAYBILL_ROCKETMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_owned());
    let ledger = run(&[
        "--orders",
        "300",
        "--broker",
        "rocketmq",
        "--rocketmq-namesrv",
        &name_server,
    ]);
    assert!(ledger.contains("OK"), "{ledger}");
    assert_eq!(figure(&ledger, "dead-lettered (malformed)"), 3);
}
