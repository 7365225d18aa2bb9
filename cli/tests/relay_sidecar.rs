//! `waybill relay` against real PostgreSQL, SQLite, RabbitMQ and Kafka: migrate, relay in key
//! order, serve /metrics, /livez and /readyz, stop cleanly on SIGTERM.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use waybill_core::{Message, Subscriber};
use waybill_outbox::Outbox;
use waybill_rabbitmq::{delete_group_topology, RabbitConfig, RabbitSubscriber};

#[path = "prometheus_scrape.rs"]
mod prometheus_scrape;

use super::WAYBILL as RELAY;

fn admin_url() -> String {
    std::env::var("WAYBILL_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn amqp_url() -> String {
    std::env::var("WAYBILL_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

/// A new, migrated PostgreSQL database: the server's admin pool, the database's name and URL.
pub(crate) async fn fresh_database() -> (sqlx::PgPool, String, String) {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL unreachable at {} ({e}): scripts/brokers start postgres",
                admin_url()
            )
        });
    let db = format!(
        "wb_sidecar_{}",
        waybill_core::MessageId::new().to_string().replace('-', "")
    );
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{db}", admin_url().rsplit_once('/').unwrap().0);
    let migrated = Command::new(RELAY)
        .args(["outbox", "migrate", "--database-url", &url])
        .status()
        .unwrap();
    assert!(migrated.success(), "waybill-relay migrate");
    (admin, db, url)
}

/// Drops a database [`fresh_database`] made.
pub(crate) async fn drop_database(admin: &sqlx::PgPool, db: &str) {
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(admin)
        .await
        .unwrap();
}

/// The summed value of the Prometheus samples named `name` (exactly) whose labels contain
/// every one of `with`, from a `/metrics` response; `None` when there is none.
fn sample(metrics: &str, name: &str, with: &[&str]) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, labels) = series.split_once('{').unwrap_or((series, ""));
            (series_name == name && with.iter().all(|w| labels.contains(w)))
                .then(|| value.parse().ok())
                .flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Receives and acks `n` deliveries, each within `wait`, checking that every key's `seq`
/// header only grows.
async fn receive_in_key_order(
    consumer: &mut impl Subscriber,
    n: usize,
    wait: Duration,
    what: &str,
) {
    let mut last_seq = std::collections::HashMap::new();
    for _ in 0..n {
        let d = tokio::time::timeout(wait, consumer.receive())
            .await
            .expect(what)
            .unwrap()
            .unwrap();
        let m = d.message().message().clone();
        let seq: i64 = m.headers().get("seq").unwrap().parse().unwrap();
        let previous = last_seq.insert(m.key().unwrap().to_owned(), seq);
        assert!(
            previous.is_none_or(|p| p < seq),
            "key {:?} out of order",
            m.key()
        );
        d.ack().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_relays_in_key_order_reports_metrics_and_stops_on_sigterm() {
    let (admin, db, url) = fresh_database().await;

    let config = RabbitConfig::builder(amqp_url()).build().unwrap();
    let topic = format!(
        "wb-sidecar-{}",
        &waybill_core::MessageId::new().to_string()[24..]
    );
    let mut consumer = RabbitSubscriber::connect(config.clone(), &topic, "g")
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ unreachable ({e}): scripts/brokers start rabbitmq"));

    let pool = PgPoolOptions::new().connect(&url).await.unwrap();
    let messages: Vec<Message> = (0..500)
        .map(|i| {
            Message::new(i.to_string())
                .with_key(format!("k{}", i % 10))
                .with_header("seq", i.to_string())
        })
        .collect();
    let mut tx = pool.begin().await.unwrap();
    Outbox::new()
        .enqueue_batch(&mut tx, &topic, &messages)
        .await
        .unwrap();
    // A message for a topic that does not exist on the broker: no destination, and with
    // `--destination-wait-secs 0` dead at once.
    let missing = format!("{topic}-missing");
    let poison = Message::new("nowhere to go");
    Outbox::new()
        .enqueue(&mut tx, &missing, &poison)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let listen = format!("127.0.0.1:{}", super::free_port::free_port());
    let mut child = Command::new(RELAY)
        .args([
            "relay",
            "--database-url",
            &url,
            "--broker-url",
            &amqp_url(),
            "--listen",
            &listen,
            "--batch-size",
            "100",
            "--destination-wait-secs",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    receive_in_key_order(
        &mut consumer,
        500,
        Duration::from_secs(30),
        "the sidecar publishes",
    )
    .await;

    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = http_get(&listen, "/metrics");
        if sample(&metrics, "waybill_relay_dead_rows", &[]) == Some(1.0)
            && sample(&metrics, "waybill_relay_published", &[]) == Some(500.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert_eq!(
        sample(&metrics, "waybill_relay_dead_rows", &[]),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "waybill_relay_published", &[]),
        Some(500.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "waybill_relay_pending", &[]),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "waybill_relay_oldest_pending_age", &[]).is_some(),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "waybill_relay_shards_owned", &[]),
        Some(16.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "waybill_relay_ready", &[]),
        Some(1.0),
        "{metrics}"
    );
    let no_destination = sample(
        &metrics,
        "messaging_client_sent_messages",
        &[
            "messaging_system=\"rabbitmq\"",
            "waybill_outcome=\"no_destination\"",
        ],
    );
    assert!(no_destination >= Some(1.0), "{metrics}");
    let confirm_buckets = metrics
        .lines()
        .filter(|l| l.starts_with("messaging_client_operation_duration_bucket{"))
        .count();
    assert!(
        confirm_buckets > 0,
        "publish latency is a histogram: {metrics}"
    );
    assert!(http_get(&listen, "/livez").starts_with("HTTP/1.1 200"));
    let ready = http_get(&listen, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("shards owned: 16"), "{ready}");
    assert!(http_get(&listen, "/healthz").starts_with("HTTP/1.1 200"));

    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit 0 after SIGTERM, got {status}");
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM waybill_shard_lease WHERE owner <> ''")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(held, 0, "leases released on SIGTERM");

    // The inspection commands.
    let cli = |args: &[&str]| {
        let out = Command::new(RELAY)
            .arg("outbox")
            .args(args)
            .args(["--database-url", &url])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, listed) = cli(&["dead", "list"]);
    assert!(ok, "{listed}");
    assert!(listed.contains(&poison.id().to_string()), "{listed}");
    assert!(listed.contains(&missing), "{listed}");
    let (ok, refused) = cli(&["dead", "purge"]);
    assert!(!ok, "an unfiltered purge needs --all");
    assert!(refused.contains("--all"), "{refused}");
    let (ok, replayed) = cli(&["dead", "replay", "--topic", &missing]);
    assert!(
        ok && replayed.contains("1 dead rows made pending again"),
        "{replayed}"
    );
    let (ok, pending) = cli(&["pending"]);
    assert!(ok, "{pending}");
    let line = pending
        .lines()
        .find(|l| l.starts_with(&missing))
        .expect(&pending);
    assert_eq!(line.split_whitespace().nth(1), Some("1"), "{pending}");
    let (ok, purged) = cli(&["dead", "purge", "--all"]);
    assert!(ok && purged.contains("0 dead rows deleted"), "{purged}");

    consumer.close().await.unwrap();
    delete_group_topology(&config, &topic, "g", true)
        .await
        .unwrap();
    pool.close().await;
    drop_database(&admin, &db).await;
}

/// Enqueues 200 messages over 10 keys into a fresh SQLite outbox, runs the sidecar against
/// `broker_url`, and checks that `consumer` receives them in key order; then SIGTERM.
async fn relay_sqlite_outbox_in_key_order(
    topic: &str,
    broker_url: &str,
    consumer: &mut impl Subscriber,
) {
    let dir = std::env::temp_dir().join(format!("{topic}.db"));
    let url = format!("sqlite://{}", dir.display());
    let migrated = Command::new(RELAY)
        .args(["outbox", "migrate", "--database-url", &url])
        .status()
        .unwrap();
    assert!(migrated.success(), "waybill-relay migrate");
    let pool = waybill_outbox::sqlite::connect(&url, 2).await.unwrap();
    let messages: Vec<Message> = (0..200)
        .map(|i| {
            Message::new(i.to_string())
                .with_key(format!("k{}", i % 10))
                .with_header("seq", i.to_string())
        })
        .collect();
    let mut tx = pool.begin().await.unwrap();
    Outbox::new()
        .enqueue_batch(&mut tx, topic, &messages)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut child = Command::new(RELAY)
        .args([
            "relay",
            "--database-url",
            &url,
            "--broker-url",
            broker_url,
            "--listen",
            "127.0.0.1:0",
            "--poll-interval-ms",
            "50",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    receive_in_key_order(
        consumer,
        200,
        Duration::from_secs(60),
        "the sidecar publishes to the broker",
    )
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success(), "exit 0 after SIGTERM");
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", dir.display()));
    }
}

fn fresh_topic() -> String {
    format!(
        "wb-sidecar-{}",
        &waybill_core::MessageId::new().to_string()[24..]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_relays_to_kafka_in_key_order() {
    use waybill_kafka::{create_topic, KafkaConfig, KafkaSubscriber};
    let brokers =
        std::env::var("WAYBILL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let config = KafkaConfig::builder(&brokers)
        .session_timeout(Duration::from_secs(6))
        .build()
        .unwrap();
    let topic = fresh_topic();
    create_topic(&config, &topic, 4, 1)
        .await
        .unwrap_or_else(|e| {
            panic!("no Kafka-protocol broker at {brokers} ({e}): scripts/brokers start kafka")
        });
    let mut consumer = KafkaSubscriber::connect(config.clone(), &topic, "g")
        .await
        .unwrap();
    relay_sqlite_outbox_in_key_order(&topic, &format!("kafka://{brokers}"), &mut consumer).await;
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_relays_to_rocketmq_in_key_order() {
    use waybill_rocketmq::{RocketAdmin, RocketConfig, RocketSubscriber};
    let name_server =
        std::env::var("WAYBILL_ROCKETMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_owned());
    let config = RocketConfig::builder(&name_server)
        .queues_per_topic(4)
        .build()
        .unwrap();
    let topic = fresh_topic();
    let created = match RocketAdmin::connect(&config).await {
        Ok(admin) => admin.create_topic(&topic).await,
        Err(e) => Err(e),
    };
    if let Err(e) = created {
        panic!("no RocketMQ servers at {name_server} ({e}): scripts/brokers start rocketmq");
    }
    let mut consumer = RocketSubscriber::connect(config, &topic, "g")
        .await
        .unwrap();
    relay_sqlite_outbox_in_key_order(&topic, &format!("rocketmq://{name_server}"), &mut consumer)
        .await;
    consumer.close().await.unwrap();
}

#[test]
fn probe_send() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<waybill_rocketmq::RocketSubscriber>();
    sync::<waybill_rocketmq::RocketSubscriber>();
    send::<waybill_rocketmq::RocketAdmin>();
    sync::<waybill_rocketmq::RocketAdmin>();
}
