//! The processes a run starts besides the relays: the consumer whose handler writes the ledger,
//! and — only to prove that the verdict catches what it claims — a consumer and a relay broken
//! on purpose.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use waybill_core::{
    handler_fn, CountersSnapshot, HandlerError, Headers, IncomingMessage, Message, MessageId,
    Ordering, Processor, Publisher, RetryPolicy, Subscriber,
};
use waybill_outbox::PgIdempotencyStore;

use crate::ledger;
use crate::ChaosError;

/// What a consumer prints on standard output once its Processor runs; the runner waits for it
/// before it sends the first message.
pub const READY_LINE: &str = "waybill-chaos: ready";

/// How long a consumer's claims live without renewal: a killed consumer's messages are taken
/// over by the others this soon.
pub const CLAIM_LEASE: Duration = Duration::from_secs(5);

/// How long inbox entries are kept.
const INBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A consumer broken on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsumerBreakage {
    /// The handler reports success at once and writes the effect 300 ms later, outside the
    /// inbox transaction: a consumer killed meanwhile acknowledged messages whose effect never
    /// happens (lost).
    AckBeforeCommit,
}

/// A relay broken on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayBreakage {
    /// Deletes a batch of outbox rows, commits, then publishes them: a relay killed (or a
    /// publish that fails) between the two loses the batch.
    DeleteBeforeConfirm,
}

/// Runs consumer `name` of `group` on `subscriber` until `stop` completes, then shuts down
/// cleanly: a PerKey Processor with the PostgreSQL inbox of `database_url` (claims leased for
/// [`CLAIM_LEASE`]) whose handler records each effect in the ledger and writes the inbox
/// marker in one transaction. Prints [`READY_LINE`] once running.
///
/// # Errors
/// [`ChaosError::Database`] when the database cannot be reached; [`ChaosError::Process`] when
/// the Processor fails.
pub async fn serve_consumer(
    subscriber: impl Subscriber + 'static,
    database_url: &str,
    group: &str,
    name: &str,
    breakage: Option<ConsumerBreakage>,
    stop: impl Future<Output = ()>,
) -> Result<CountersSnapshot, ChaosError> {
    let pool = connect(database_url, 8).await?;
    let store = Arc::new(PgIdempotencyStore::new(pool.clone(), INBOX_RETENTION));
    let consumer: Arc<str> = Arc::from(name);
    let handler = {
        let store = Arc::clone(&store);
        handler_fn(move |m: IncomingMessage| {
            let (pool, store, consumer) = (pool.clone(), Arc::clone(&store), Arc::clone(&consumer));
            async move {
                match breakage {
                    None => apply(&pool, &store, &consumer, &m).await,
                    Some(ConsumerBreakage::AckBeforeCommit) => {
                        tokio::spawn(apply_later(pool, consumer, m.message().clone()));
                        Ok(())
                    }
                }
            }
        })
    };
    let retry = RetryPolicy::builder()
        .min_delay(Duration::from_millis(100))
        .max_delay(Duration::from_secs(2))
        .build()
        .map_err(|e| ChaosError::Process(e.to_string()))?;
    let running = Processor::builder(group)
        .ordering(Ordering::PerKey)
        .concurrency(16)
        .claim_lease(CLAIM_LEASE)
        .retry(retry)
        .idempotency(store)
        .build()
        .map_err(|e| ChaosError::Process(e.to_string()))?
        .start(subscriber, handler);
    println!("{READY_LINE}");
    stop.await;
    running
        .shutdown()
        .await
        .map_err(|e| ChaosError::Process(format!("consumer {name}: {e}")))
}

async fn apply(
    pool: &PgPool,
    store: &PgIdempotencyStore,
    consumer: &str,
    m: &IncomingMessage,
) -> Result<(), HandlerError> {
    let mut tx = pool.begin().await.map_err(HandlerError::transient)?;
    ledger::record_applied_in(&mut tx, consumer, m.message())
        .await
        .map_err(|e| match e {
            sqlx::Error::Protocol(_) => HandlerError::permanent(e),
            other => HandlerError::transient(other),
        })?;
    store
        .mark_done_in(&mut tx, m)
        .await
        .map_err(HandlerError::transient)?;
    tx.commit().await.map_err(HandlerError::transient)
}

/// The broken consumer's effect: written later, without the inbox marker.
async fn apply_later(pool: PgPool, consumer: Arc<str>, message: Message) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Ok(mut tx) = pool.begin().await {
        if ledger::record_applied_in(&mut tx, &consumer, &message)
            .await
            .is_ok()
        {
            let _ = tx.commit().await;
        }
    }
}

/// Runs the broken relay of [`RelayBreakage::DeleteBeforeConfirm`] over the outbox of
/// `database_url` until `stop` completes: takes up to 50 rows of `topic` in commit order,
/// deletes them, commits, then publishes them one by one through `publisher`, dropping any
/// that fails.
///
/// # Errors
/// [`ChaosError::Database`] when the database cannot be reached at start.
pub async fn serve_broken_relay(
    publisher: Arc<dyn Publisher>,
    database_url: &str,
    topic: &str,
    stop: impl Future<Output = ()>,
) -> Result<(), ChaosError> {
    let pool = connect(database_url, 2).await?;
    println!("{READY_LINE}");
    let relay = async {
        loop {
            let rows = match take_rows(&pool, topic).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!("broken relay: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if rows.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for message in rows {
                if let Err(e) = publisher.publish(topic, message).await {
                    tracing::warn!("broken relay dropped a message: {e}");
                }
            }
        }
    };
    tokio::select! {
        () = relay => {}
        () = stop => {}
    }
    let _ = publisher.close().await;
    Ok(())
}

type OutboxRow = (
    uuid::Uuid,
    Option<String>,
    Vec<u8>,
    sqlx::types::Json<std::collections::BTreeMap<String, String>>,
);

async fn take_rows(pool: &PgPool, topic: &str) -> Result<Vec<Message>, sqlx::Error> {
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "DELETE FROM waybill_outbox WHERE seq IN (SELECT seq FROM waybill_outbox \
         WHERE topic = $1 AND NOT dead ORDER BY seq LIMIT 50 FOR UPDATE SKIP LOCKED) \
         RETURNING message_id, key, payload, headers",
    )
    .bind(topic)
    .fetch_all(pool)
    .await?;
    let mut messages: Vec<Message> = rows
        .into_iter()
        .map(|(id, key, payload, headers)| {
            let mut all = Headers::new();
            for (name, value) in headers.0 {
                all.insert(name, value);
            }
            Message::from_parts(
                MessageId::from_uuid(id),
                key,
                payload.into(),
                all,
                SystemTime::now(),
            )
        })
        .collect();
    // RETURNING gives no order; the sequence header restores each key's.
    messages.sort_by_key(|m| {
        m.headers()
            .get(ledger::SEQ_HEADER)
            .and_then(|s| s.parse::<u64>().ok())
    });
    Ok(messages)
}

/// A pool of `connections` to `url`, failing within 10 s when the database is unreachable.
pub(crate) async fn connect(url: &str, connections: u32) -> Result<PgPool, ChaosError> {
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| ChaosError::Database(format!("cannot connect: {e}")))
}
