//! Key-holding dead letters end to end on a real RabbitMQ, with the holds and the inbox in a
//! SQLite database: one message of key k1 hits a handler bug and is dead-lettered; the later
//! messages of k1 are dead-lettered unhandled ("held behind" it) while k0 and k2 flow; after
//! the fix, one `waybill dlq replay` of the whole dead-letter queue applies every k1 message
//! once, in its original order, and the hold lifts by itself. `waybill holds` lists the hold
//! and releases a key by hand.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use waybill_core::{
    handler_fn, DeadLetterMode, HandlerError, IncomingMessage, KeyHoldStore, Message, MessageId,
    Ordering, Processor, Publisher,
};
use waybill_outbox::SqliteIdempotencyStore;
use waybill_rabbitmq::{delete_group_topology, RabbitPublisher};

use super::dlq_rabbitmq::{
    assert_each_key_applied_once_in_order, config, dlq, join_group, listed, output, text,
    wait_until, GROUP,
};
use super::WAYBILL;

const KEYS: usize = 3;
const PER_KEY: usize = 20;
/// The seq of k1 the handler cannot apply until the fix.
const POISON: usize = 5;

/// `waybill holds ARGS --database-url URL --group billing`.
fn holds(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(WAYBILL);
    command
        .arg("holds")
        .args(args)
        .args(["--database-url", url, "--group", GROUP]);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_key_is_applied_in_its_order_once_its_dead_message_is_replayed() {
    let topic = format!(
        "wb-hold-{}",
        &MessageId::new().to_string().replace('-', "")[20..]
    );
    let file = std::env::temp_dir().join(format!("waybill-holds-{}.db", &topic[8..]));
    let url = format!("sqlite://{}", file.display());
    let pool = waybill_outbox::sqlite::connect(&url, 4).await.unwrap();
    waybill_outbox::sqlite::migrate(&pool).await.unwrap();
    let store = Arc::new(SqliteIdempotencyStore::new(
        pool.clone(),
        Duration::from_secs(7 * 24 * 3600),
    ));

    let broken = Arc::new(AtomicBool::new(true));
    let applied: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let handler = {
        let (broken, applied) = (broken.clone(), applied.clone());
        handler_fn(move |m: IncomingMessage| {
            let (broken, applied) = (broken.clone(), applied.clone());
            async move {
                let key = m.message().key().unwrap_or_default().to_owned();
                let seq: usize = m.message().headers().get("seq").unwrap().parse().unwrap();
                if key == "k1" && seq == POISON && broken.load(SeqCst) {
                    return Err(HandlerError::permanent("version 1 cannot read this order"));
                }
                applied.lock().unwrap().push((key, seq));
                Ok(())
            }
        })
    };
    let subscriber = join_group(&topic).await;
    let running = Processor::builder(GROUP)
        .ordering(Ordering::PerKey)
        .idempotency(store.clone())
        .dead_letter_mode(DeadLetterMode::HoldKey)
        .key_holds(store.clone())
        .build()
        .unwrap()
        .start(subscriber, handler);

    let publisher = RabbitPublisher::connect(config()).await.unwrap();
    let mut poison_id = None;
    for seq in 0..PER_KEY {
        for key in 0..KEYS {
            let message = Message::new(format!("{seq}"))
                .with_key(format!("k{key}"))
                .with_header("seq", seq.to_string());
            if key == 1 && seq == POISON {
                poison_id = Some(message.id());
            }
            publisher.publish(&topic, message).await.unwrap();
        }
    }
    let poison_id = poison_id.unwrap();
    let held = PER_KEY - POISON - 1;
    wait_until(
        "k0 and k2 applied, k1 dead from its poison on",
        Duration::from_secs(60),
        || {
            let c = running.counters();
            c.handled as usize == 2 * PER_KEY + POISON && c.dead_lettered as usize == held + 1
        },
    )
    .await;
    assert_eq!(running.counters().held_back as usize, held);
    assert_eq!(
        store.held_behind(GROUP, "k1").await.unwrap(),
        Some(poison_id)
    );

    // The operator sees the hold and the held messages.
    let out = output(&mut holds(&url, &["list", "--json"]));
    assert!(out.status.success(), "{}", text(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rows[0]["key"], "k1", "{rows}");
    assert_eq!(rows[0]["held_behind"], poison_id.to_string(), "{rows}");
    let held_letters = listed(&topic, &["--error-class", "held"]);
    assert_eq!(held_letters.len(), held);
    assert!(
        held_letters.iter().all(|row| row["key"] == "k1"),
        "only k1 is held"
    );

    // The fix, then one replay of the whole queue: the head first, then what it held.
    broken.store(false, SeqCst);
    let replay = output(&mut dlq(&topic, &["replay", "--json"]));
    assert!(replay.status.success(), "{}", text(&replay));
    wait_until("every message applied", Duration::from_secs(60), || {
        applied.lock().unwrap().len() >= KEYS * PER_KEY
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let applied = applied.lock().unwrap().clone();
    assert_eq!(applied.len(), KEYS * PER_KEY, "each applied once");
    assert_each_key_applied_once_in_order(&applied, PER_KEY);
    assert_eq!(
        store.held_behind(GROUP, "k1").await.unwrap(),
        None,
        "the head's success lifted the hold"
    );
    assert!(listed(&topic, &[]).is_empty(), "nothing left dead");

    // A release by hand, and one that finds nothing (exit 3).
    store.hold(GROUP, "k9", MessageId::new()).await.unwrap();
    let released = output(&mut holds(&url, &["release", "--key", "k9"]));
    assert!(released.status.success(), "{}", text(&released));
    assert!(
        text(&released).contains("released key \"k9\""),
        "{}",
        text(&released)
    );
    assert_eq!(store.held_behind(GROUP, "k9").await.unwrap(), None);
    let nothing = output(&mut holds(&url, &["release", "--key", "k9"]));
    assert_eq!(nothing.status.code(), Some(3), "{}", text(&nothing));

    running.shutdown().await.unwrap();
    publisher.close().await.unwrap();
    delete_group_topology(&config(), &topic, GROUP, true)
        .await
        .unwrap();
    pool.close().await;
    let _ = std::fs::remove_file(&file);
}
