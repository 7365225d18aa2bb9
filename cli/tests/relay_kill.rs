//! `waybill relay` killed with SIGKILL over and over while it relays 10,000
//! messages to a real RabbitMQ, on PostgreSQL, MariaDB and SQLite: nothing is lost, republished
//! copies keep their ids, and the consumer's SQL inbox drops them (0 duplicate effects, per-key
//! order held). The messages have 10 keys and the relay takes batches of 500, so each kill
//! lands while about 50 rows of every key are in flight in one pipelined call.

// The workspace test crate's database helpers, shared rather than copied.
#[allow(dead_code)]
#[path = "../../tests/tests/support/outbox_db.rs"]
mod outbox_db;
#[allow(dead_code)]
#[path = "../../tests/tests/support/postgres.rs"]
mod postgres;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_db::{numbered, out_of_order_keys, Db};
use waybill_core::{handler_fn, HandlerError, IncomingMessage, Ordering, Processor};
use waybill_rabbitmq::{delete_group_topology, RabbitConfig, RabbitSubscriber};

use super::WAYBILL as RELAY;
const MESSAGES: usize = 10_000;
const KILLS: usize = 10;

fn amqp_url() -> String {
    std::env::var("WAYBILL_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn start_relay(db: &Db) -> Child {
    Command::new(RELAY)
        .args([
            "relay",
            "--database-url",
            &db.url(),
            "--broker-url",
            &amqp_url(),
            "--listen",
            "127.0.0.1:0",
            "--batch-size",
            "500",
            "--poll-interval-ms",
            "50",
            // A restarted sidecar keeps its name and so resumes its shards at once.
            "--relay-name",
            "sidecar-under-test",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start waybill-relay")
}

/// SIGKILLs the running relay and proves the kill took effect: the relay was still running
/// (it had not died on its own), and SIGKILL is what ended it.
fn sigkill(relay: &mut Child) {
    use std::os::unix::process::ExitStatusExt;
    if let Some(status) = relay.try_wait().unwrap() {
        panic!("the relay died on its own before the kill: {status}");
    }
    relay.kill().expect("SIGKILL");
    let status = relay.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the relay ended with {status}, not by the SIGKILL"
    );
}

async fn killed_again_and_again_loses_nothing(db: Db) {
    let db = Arc::new(db);
    let config = RabbitConfig::builder(amqp_url()).build().unwrap();
    let topic = format!(
        "wb-kill-{}-{}",
        db.kind(),
        &waybill_core::MessageId::new().to_string()[24..]
    );
    let subscriber = RabbitSubscriber::connect(config.clone(), &topic, "billing")
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ unreachable ({e}): scripts/brokers start rabbitmq"));
    for chunk in numbered(MESSAGES, 10).chunks(1_000) {
        db.enqueue(&topic, chunk, true).await;
    }

    let handler = {
        let db = Arc::clone(&db);
        handler_fn(move |m: IncomingMessage| {
            let db = Arc::clone(&db);
            async move { db.apply(&m, true).await.map_err(HandlerError::permanent) }
        })
    };
    let running = Processor::builder("billing")
        .ordering(Ordering::PerKey)
        .concurrency(16)
        .idempotency(db.inbox())
        .build()
        .unwrap()
        .start(subscriber, handler);

    let started = Instant::now();
    let mut kills = 0;
    while kills < KILLS {
        let before = db.outbox_rows().await;
        let mut relay = start_relay(&db);
        // Kill once it has made progress, at a moment that varies from run to run.
        let target = before - 200 - 37 * kills as i64;
        while db.outbox_rows().await > target.max(0) {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the relay makes no progress"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        sigkill(&mut relay);
        kills += 1;
    }
    let mut relay = start_relay(&db);
    while db.outbox_rows().await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the relay did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while db.applied().await.len() < MESSAGES && started.elapsed() < Duration::from_secs(240) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let late duplicates arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let totals = running.shutdown().await.unwrap();
    relay.kill().unwrap();
    relay.wait().unwrap();

    let applied = db.applied().await;
    println!(
        "{}: {MESSAGES} messages, {kills} SIGKILLs of the sidecar, {} deliveries, {} duplicates dropped by the inbox, {:?}",
        db.kind(),
        totals.received,
        totals.duplicates_skipped,
        started.elapsed()
    );
    assert_eq!(applied.len(), MESSAGES, "0 lost, 0 duplicate effects");
    assert_eq!(
        totals.failed_attempts, 0,
        "no second effect was ever attempted"
    );
    assert_eq!(totals.dead_lettered, 0);
    assert_eq!(
        out_of_order_keys(&applied),
        Vec::<String>::new(),
        "per-key order"
    );
    delete_group_topology(&config, &topic, "billing", true)
        .await
        .unwrap();
    Arc::into_inner(db).unwrap().drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_killed_ten_times_on_postgres_loses_nothing() {
    killed_again_and_again_loses_nothing(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_killed_ten_times_on_mariadb_loses_nothing() {
    killed_again_and_again_loses_nothing(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_killed_ten_times_on_sqlite_loses_nothing() {
    killed_again_and_again_loses_nothing(Db::sqlite().await).await;
}
