//! `waybill audit` end to end on real servers: the sidecar relays messages from a PostgreSQL
//! outbox to RabbitMQ keeping a sent log; a Processor applies them with its inbox in a
//! SQLite file (another database), dead-lettering one. A clean audit passes; a deleted inbox
//! marker is found missing and an injected one unexpected, each failing the audit; a window
//! without data, a database without the sent log and a bad limit each end with their own
//! exit code.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use waybill_core::{handler_fn, HandlerError, IncomingMessage, Message, MessageId, Processor};
use waybill_outbox::{Outbox, SqliteIdempotencyStore};
use waybill_rabbitmq::delete_group_topology;

use super::dlq_rabbitmq::{amqp_url, config, join_group, output, text, wait_until, GROUP};
use super::relay_sidecar::{drop_database, fresh_database};
use super::WAYBILL;

const MESSAGES: usize = 200;
/// The seq of the message the handler refuses for good (it is dead-lettered).
const POISON: usize = 7;

/// `waybill audit` of `topic` for group billing, over the last hour, without grace.
fn audit(outbox: &str, inbox: &str, topic: &str, extra: &[&str]) -> Output {
    output(
        Command::new(WAYBILL)
            .args([
                "audit",
                "--database-url",
                outbox,
                "--inbox-database-url",
                inbox,
            ])
            .args(["--topic", topic, "--group", GROUP, "--grace", "0s"])
            .args(extra),
    )
}

/// The JSON report of an audit that printed one.
fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("a JSON report ({e}): {}", text(out)))
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_passes_a_clean_run_and_finds_missing_and_unexpected_effects() {
    let (admin, db, outbox_url) = fresh_database().await;
    let topic = format!("wb-audit-{}", &MessageId::new().to_string()[24..]);
    let file = std::env::temp_dir().join(format!("waybill-audit-{}.db", &topic[9..]));
    let inbox_url = format!("sqlite://{}", file.display());
    let inbox = waybill_outbox::sqlite::connect(&inbox_url, 4)
        .await
        .unwrap();
    waybill_outbox::sqlite::migrate(&inbox).await.unwrap();
    let store = Arc::new(SqliteIdempotencyStore::new(
        inbox.clone(),
        Duration::from_secs(24 * 3600),
    ));

    let handler = handler_fn(|m: IncomingMessage| async move {
        if m.message().headers().get("seq") == Some(&POISON.to_string()) {
            return Err(HandlerError::permanent("cannot apply this one"));
        }
        Ok(())
    });
    let subscriber = join_group(&topic).await;
    let running = Processor::builder(GROUP)
        .idempotency(store)
        .build()
        .unwrap()
        .start(subscriber, handler);

    let messages: Vec<Message> = (0..MESSAGES)
        .map(|seq| {
            Message::new(seq.to_string())
                .with_key(format!("k{}", seq % 5))
                .with_header("seq", seq.to_string())
        })
        .collect();
    let outbox = sqlx::PgPool::connect(&outbox_url).await.unwrap();
    let mut tx = outbox.begin().await.unwrap();
    Outbox::new()
        .enqueue_batch(&mut tx, &topic, &messages)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut relay = Command::new(WAYBILL)
        .args(["relay", "--database-url", &outbox_url, "--broker-url"])
        .arg(amqp_url())
        .args([
            "--sent-log-retention-hours",
            "1",
            "--poll-interval-ms",
            "100",
        ])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_until(
        "every message handled or dead-lettered",
        Duration::from_secs(60),
        || {
            let c = running.counters();
            c.handled as usize == MESSAGES - 1 && c.dead_lettered == 1
        },
    )
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status();
    let _ = relay.wait();
    running.shutdown().await.unwrap();

    // The sidecar kept a sent log with each message's broker position.
    let logged: Vec<(String,)> =
        sqlx::query_as("SELECT position FROM waybill_sent WHERE topic = $1")
            .bind(&topic)
            .fetch_all(&outbox)
            .await
            .unwrap();
    assert_eq!(logged.len(), MESSAGES);
    assert!(logged[0].0.starts_with("delivery tag "), "{:?}", logged[0]);

    // A clean run: everything applied but the dead-lettered one, exit 0.
    let clean = audit(
        &outbox_url,
        &inbox_url,
        &topic,
        &["--since", "1h", "--json"],
    );
    assert!(clean.status.success(), "{}", text(&clean));
    let r = report(&clean);
    let t = &r["groups"][0]["topics"][0];
    assert_eq!(
        (
            &t["sent"],
            &t["applied"],
            &t["dead_lettered"],
            &t["missing"]
        ),
        (
            &Value::from(MESSAGES),
            &Value::from(MESSAGES - 1),
            &Value::from(1),
            &Value::from(0)
        ),
        "{r}"
    );
    assert_eq!(r["groups"][0]["unexpected"], 0, "{r}");
    assert_eq!(r["passed"], true, "{r}");

    // A marker lost from the inbox: the message is missing, the gap fails the audit.
    let lost = messages[3].id();
    sqlx::query("DELETE FROM waybill_inbox WHERE group_name = ?1 AND message_id = ?2")
        .bind(GROUP)
        .bind(lost.as_uuid())
        .execute(&inbox)
        .await
        .unwrap();
    let missing = audit(
        &outbox_url,
        &inbox_url,
        &topic,
        &["--since", "1h", "--json"],
    );
    assert_eq!(missing.status.code(), Some(4), "{}", text(&missing));
    let r = report(&missing);
    assert_eq!(r["groups"][0]["topics"][0]["missing"], 1, "{r}");
    assert_eq!(
        r["groups"][0]["topics"][0]["missing_samples"][0],
        lost.to_string(),
        "{r}"
    );
    assert!(
        text(&missing).contains("gap above 0.100 %"),
        "{}",
        text(&missing)
    );

    // An effect nobody sent: unexpected. Both off by one in 200 (1 %): passes under 2 %.
    let stray = MessageId::new();
    sqlx::query(
        "INSERT INTO waybill_inbox \
           (group_name, message_id, done, dead, expires_at_ms, done_at_ms) \
         VALUES (?1, ?2, 1, 0, ?3, ?4)",
    )
    .bind(GROUP)
    .bind(stray.as_uuid())
    .bind(now_ms() + 3_600_000)
    .bind(now_ms())
    .execute(&inbox)
    .await
    .unwrap();
    let metrics_file = file.with_extension("prom");
    let both = audit(
        &outbox_url,
        &inbox_url,
        &topic,
        &[
            "--since",
            "1h",
            "--max-gap",
            "2%",
            "--prometheus-file",
            metrics_file.to_str().unwrap(),
        ],
    );
    assert!(both.status.success(), "{}", text(&both));
    let table = String::from_utf8_lossy(&both.stdout).into_owned();
    assert!(table.starts_with("GROUP"), "{table}");
    assert!(
        table.contains(&format!("missing in {GROUP}/{topic}: {lost}")),
        "{table}"
    );
    assert!(
        table.contains(&format!("unexpected in {GROUP}: {stray}")),
        "{table}"
    );
    let metrics = std::fs::read_to_string(&metrics_file).unwrap();
    assert!(
        metrics.contains(&format!(
            "waybill_audit_gap{{messaging_consumer_group_name=\"{GROUP}\"}} 0.01"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("waybill_audit_unexpected"), "{metrics}");

    // Bad input: a window without data (3), a database without the sent log (1), a limit
    // that is not one (2); nothing is changed by any of them.
    let empty = audit(
        &outbox_url,
        &inbox_url,
        &topic,
        &["--since", "3h", "--until", "2h"],
    );
    assert_eq!(empty.status.code(), Some(3), "{}", text(&empty));
    assert!(
        text(&empty).contains("holds no sent message"),
        "{}",
        text(&empty)
    );
    let bare = file.with_extension("bare.db");
    let bare_url = format!("sqlite://{}", bare.display());
    let no_log = audit(&bare_url, &inbox_url, &topic, &["--since", "1h"]);
    assert_eq!(no_log.status.code(), Some(1), "{}", text(&no_log));
    assert!(text(&no_log).contains("no sent log"), "{}", text(&no_log));
    let bad = audit(
        &outbox_url,
        &inbox_url,
        &topic,
        &["--since", "1h", "--max-gap", "lots"],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let untouched: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM waybill_sent")
        .fetch_one(&outbox)
        .await
        .unwrap();
    assert_eq!(untouched.0, MESSAGES as i64);

    outbox.close().await;
    drop_database(&admin, &db).await;
    let _ = delete_group_topology(&config(), &topic, GROUP, true).await;
    for path in [file.clone(), bare, metrics_file] {
        let _ = std::fs::remove_file(path);
    }
}
