//! A real Prometheus server scrapes the relay sidecar and a consumer process (the
//! `metered_consumer` example) while a backlog builds up behind a destination that does not
//! exist yet and drains once the consumer declares it; the test reads everything back through
//! Prometheus' HTTP API: the outbox backlog rising then falling to 0, the consumer lag falling
//! to 0, the dead letter counted, both processes ready.
//!
//! The server is the project's (`scripts/prometheus start`: 127.0.0.1:9093, scraping every
//! second the target files of `/tmp/waybill-prometheus/targets`); `WAYBILL_PROMETHEUS_URL` and
//! `WAYBILL_PROMETHEUS_TARGETS` point elsewhere.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use waybill_core::Message;
use waybill_outbox::Outbox;
use waybill_rabbitmq::{delete_group_topology, RabbitConfig};

use super::{amqp_url, drop_database, fresh_database, http_get, RELAY};

fn prometheus_addr() -> String {
    std::env::var("WAYBILL_PROMETHEUS_URL")
        .map(|u| {
            u.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned()
        })
        .unwrap_or_else(|_| "127.0.0.1:9093".to_owned())
}

fn targets_dir() -> PathBuf {
    std::env::var("WAYBILL_PROMETHEUS_TARGETS")
        .unwrap_or_else(|_| "/tmp/waybill-prometheus/targets".to_owned())
        .into()
}

/// The `metered_consumer` example, built by `cargo test --workspace` beside this test.
fn consumer_example() -> PathBuf {
    let deps = std::env::current_exe().expect("test path");
    let example = deps
        .parent()
        .and_then(|d| d.parent())
        .expect("target/debug")
        .join("examples/metered_consumer");
    assert!(
        example.exists(),
        "{} is missing: build it with `cargo test --workspace --all-features --no-run` \
         (or `cargo build -p waybill --features rabbitmq --example metered_consumer`)",
        example.display()
    );
    example
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of a PromQL instant query that returns at most one series (`None`: no series).
fn query(expr: &str) -> Option<f64> {
    let response = http_get(
        &prometheus_addr(),
        &format!("/api/v1/query?query={}", encode(expr)),
    );
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("Prometheus answered {response:?} ({e})"));
    assert_eq!(json["status"], "success", "{expr}: {json}");
    let result = json["data"]["result"].as_array().expect("a vector");
    assert!(result.len() <= 1, "{expr} returned several series: {json}");
    result.first().map(|series| {
        series["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("a sample value")
    })
}

/// Waits (up to `limit`) until `expr` has a value that `accept` takes; returns it.
async fn prometheus_sees(expr: &str, limit: Duration, accept: impl Fn(f64) -> bool) -> f64 {
    let started = Instant::now();
    loop {
        let value = query(expr);
        if let Some(v) = value.filter(|v| accept(*v)) {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "Prometheus never saw the expected value of {expr} (last: {value:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A target file for Prometheus; removed on drop.
struct Target(PathBuf);

impl Target {
    fn write(name: &str, address: &str, job: &str, run: &str) -> Self {
        let path = targets_dir().join(format!("{name}.json"));
        let body = serde_json::json!([{
            "targets": [address],
            "labels": {"job": job, "run": run},
        }]);
        // Written beside and renamed in, so Prometheus never reads half a file.
        let partial = targets_dir().join(format!(".{name}.json.partial"));
        std::fs::write(&partial, body.to_string()).expect("write the target file");
        std::fs::rename(&partial, &path).expect("move the target file in");
        Self(path)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A child process stopped on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_address() -> String {
    let port = crate::free_port::free_port();
    format!("127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_the_backlog_drain_the_lag_fall_and_the_dead_letter() {
    let ready = std::net::TcpStream::connect(prometheus_addr())
        .ok()
        .map(|_| http_get(&prometheus_addr(), "/-/ready"));
    assert!(
        ready
            .as_deref()
            .is_some_and(|r| r.starts_with("HTTP/1.1 200")),
        "no Prometheus at {} ({ready:?}): start it with `scripts/prometheus start`",
        prometheus_addr()
    );
    assert!(
        targets_dir().is_dir(),
        "{} is missing: `scripts/prometheus start` makes it",
        targets_dir().display()
    );
    let (admin, db, url) = fresh_database().await;
    let pool = PgPoolOptions::new().connect(&url).await.unwrap();
    let run = db.trim_start_matches("wb_sidecar_").to_owned();
    let topic = format!("wb-scrape-{}", &run[..12]);
    let group = "wb-scrape-billing";
    let enqueue = |from: usize, to: usize| {
        let (pool, topic) = (pool.clone(), topic.clone());
        async move {
            let messages: Vec<Message> = (from..to)
                .map(|i| {
                    let payload = if i == 0 {
                        "poison".to_owned()
                    } else {
                        i.to_string()
                    };
                    Message::new(payload).with_key(format!("k{}", i % 10))
                })
                .collect();
            let mut tx = pool.begin().await.unwrap();
            Outbox::new()
                .enqueue_batch(&mut tx, &topic, &messages)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    let relay_series = |name: &str| format!("{name}{{run=\"{run}\"}}");
    let consumer_series = |name: &str| format!("sum({name}{{run=\"{run}\"}})");

    // The exchange does not exist yet: the relay holds the rows, the backlog grows.
    enqueue(0, 100).await;
    let relay_listen = free_address();
    let _relay = Running(
        Command::new(RELAY)
            .args(["relay", "--database-url", &url, "--broker-url", &amqp_url()])
            .args(["--listen", &relay_listen, "--destination-wait-secs", "600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _relay_target = Target::write(
        &format!("relay-{run}"),
        &relay_listen,
        "waybill-relay",
        &run,
    );
    let pending = relay_series("waybill_relay_pending");
    prometheus_sees(&pending, Duration::from_secs(30), |v| v == 100.0).await;
    enqueue(100, 250).await;
    prometheus_sees(&pending, Duration::from_secs(30), |v| v == 250.0).await;
    prometheus_sees(
        &relay_series("waybill_relay_ready"),
        Duration::from_secs(30),
        |v| v == 1.0,
    )
    .await;

    // The consumer declares its group's queue (and the exchange): the relay drains, the
    // consumer works through its lag at 200 ms a message (ten keys at once).
    let consumer_listen = free_address();
    let _consumer = Running(
        Command::new(consumer_example())
            .args([
                "--broker-url",
                &amqp_url(),
                "--topic",
                &topic,
                "--group",
                group,
            ])
            .args(["--listen", &consumer_listen, "--handle-ms", "200"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let _consumer_target = Target::write(
        &format!("consumer-{run}"),
        &consumer_listen,
        "waybill-consumer",
        &run,
    );
    let lag = consumer_series("waybill_consumer_lag");
    let peak = prometheus_sees(&lag, Duration::from_secs(90), |v| v > 0.0).await;
    prometheus_sees(&pending, Duration::from_secs(90), |v| v == 0.0).await;
    prometheus_sees(&lag, Duration::from_secs(90), |v| v == 0.0).await;
    let dead = consumer_series("waybill_processor_dead_lettered");
    prometheus_sees(&dead, Duration::from_secs(30), |v| v == 1.0).await;
    let depth = consumer_series("waybill_consumer_dead_letter_depth");
    prometheus_sees(&depth, Duration::from_secs(30), |v| v == 1.0).await;
    let handled =
        format!("sum(messaging_process_duration_count{{run=\"{run}\",waybill_outcome=\"ok\"}})");
    prometheus_sees(&handled, Duration::from_secs(30), |v| v == 249.0).await;
    prometheus_sees(
        &consumer_series("waybill_processor_ready"),
        Duration::from_secs(30),
        |v| v == 1.0,
    )
    .await;
    // Rising, then falling to 0, read back as a range: the highest backlog came before the
    // last sample, which is 0.
    let highest = query(&format!("max_over_time({pending}[10m])"));
    assert_eq!(highest, Some(250.0), "the backlog peaked at 250");
    assert!(peak > 0.0);

    let config = RabbitConfig::builder(amqp_url()).build().unwrap();
    delete_group_topology(&config, &topic, group, true)
        .await
        .unwrap();
    pool.close().await;
    drop_database(&admin, &db).await;
}
