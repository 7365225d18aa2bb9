//! The business effect of the consumer-fault tests: one row per application in a PostgreSQL
//! `effects` table, committed with the message's inbox marker, by a handler that can be told
//! (per message) to fail transiently or permanently.
//!
//! The table has no uniqueness on the message id, so an effect applied twice shows as two
//! rows; `n` gives the order effects were written in, so per-key order can be checked across
//! consumer processes.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use waybill_core::testkit::{Ledger, LedgerReport};
use waybill_core::{
    handler_fn, Handler, HandlerError, IncomingMessage, Message, MessageId, Ordering, Processor,
    RetryPolicy, RunningProcessor, Subscriber,
};
use waybill_outbox::PgIdempotencyStore;

use super::postgres::TestDb;

/// Header that tells the handler how to fail: `transient` (the first attempt fails, later
/// ones succeed) or `permanent` (every attempt fails permanently: dead letter).
pub const FAIL: &str = "chaos-fail";

/// Inbox retention in these tests.
const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How long a consumer's idempotency claims live without renewal: a killed consumer's claims
/// lapse this soon, so the messages it held are handled by the others without a long wait.
pub const CLAIM_LEASE: Duration = Duration::from_secs(3);

/// A fresh PostgreSQL database with the waybill inbox and the `effects` table.
pub struct EffectsDb {
    db: TestDb,
}

impl EffectsDb {
    /// Creates the database (dropped by [`EffectsDb::drop_db`]).
    pub async fn create() -> Self {
        let db = TestDb::migrated().await;
        sqlx::query(
            "CREATE TABLE effects (n bigserial PRIMARY KEY, message_id uuid NOT NULL, \
             key text NOT NULL, seq bigint NOT NULL, part int, consumer text NOT NULL)",
        )
        .execute(&db.pool)
        .await
        .expect("create effects");
        Self { db }
    }

    /// The database's URL, for consumer processes.
    pub fn url(&self) -> &str {
        &self.db.url
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// Effects applied so far.
    pub async fn count(&self) -> i64 {
        self.scalar("SELECT count(*) FROM effects").await
    }

    /// Effects applied so far by `consumer`.
    pub async fn count_by(&self, consumer: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM effects WHERE consumer = $1")
            .bind(consumer)
            .fetch_one(&self.db.pool)
            .await
            .expect("count effects")
    }

    /// The partitions (or queues) `consumer` applied effects from, after effect number
    /// `after` (`n`).
    pub async fn partitions_of(&self, consumer: &str, after: i64) -> Vec<i32> {
        sqlx::query_scalar(
            "SELECT DISTINCT part FROM effects WHERE consumer = $1 AND n > $2 \
             AND part IS NOT NULL ORDER BY part",
        )
        .bind(consumer)
        .bind(after)
        .fetch_all(&self.db.pool)
        .await
        .expect("read partitions")
    }

    /// The highest `n` so far (0 when empty).
    pub async fn last_n(&self) -> i64 {
        self.scalar("SELECT coalesce(max(n), 0) FROM effects").await
    }

    /// Messages with a dead-letter mark in the inbox.
    pub async fn dead_lettered_marks(&self) -> i64 {
        self.scalar("SELECT count(*) FROM waybill_inbox WHERE dead")
            .await
    }

    /// The one number `sql` selects.
    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Checks the effects against `ledger` (which knows what was published and confirmed):
    /// every effect is fed to it in the order it was written, and its report says what was
    /// lost, applied twice or applied out of key order.
    pub async fn report(&self, ledger: &Ledger) -> LedgerReport {
        let rows: Vec<(sqlx::types::Uuid, String, i64)> =
            sqlx::query_as("SELECT message_id, key, seq FROM effects ORDER BY n")
                .fetch_all(&self.db.pool)
                .await
                .expect("read effects");
        for (id, key, seq) in rows {
            ledger.effect(
                MessageId::from_uuid(id),
                Some((&key, u64::try_from(seq).unwrap_or(0))),
            );
        }
        ledger.report()
    }

    /// Keys whose effects of messages from round `from_seq` on were not applied in `seq`
    /// order.
    pub async fn keys_out_of_order_from(&self, from_seq: i64) -> Vec<String> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT key, seq FROM effects WHERE seq >= $1 ORDER BY n")
                .bind(from_seq)
                .fetch_all(&self.db.pool)
                .await
                .expect("read effects");
        let mut last = std::collections::HashMap::new();
        let mut out_of_order = std::collections::BTreeSet::new();
        for (key, seq) in rows {
            if last
                .insert(key.clone(), seq)
                .is_some_and(|previous| previous >= seq)
            {
                out_of_order.insert(key);
            }
        }
        out_of_order.into_iter().collect()
    }

    /// Closes the pool and drops the database.
    pub async fn drop_db(self) {
        self.db.drop_db().await;
    }
}

/// The handler of a consumer named `consumer` writing to the database at `url`: fails as the
/// message's [`FAIL`] header says, otherwise inserts the effect row and the inbox marker of
/// its claim in one transaction.
pub async fn handler(url: &str, consumer: &str) -> impl Handler {
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect(url)
        .await
        .expect("connect to the effects database");
    let store = Arc::new(PgIdempotencyStore::new(pool.clone(), RETENTION));
    let consumer: Arc<str> = Arc::from(consumer);
    handler_fn(move |m: IncomingMessage| {
        let (pool, store, consumer) = (pool.clone(), Arc::clone(&store), Arc::clone(&consumer));
        async move { apply(&pool, &store, &consumer, &m).await }
    })
}

async fn apply(
    pool: &PgPool,
    store: &PgIdempotencyStore,
    consumer: &str,
    m: &IncomingMessage,
) -> Result<(), HandlerError> {
    let message = m.message();
    match message.headers().get(FAIL) {
        Some("permanent") => return Err(HandlerError::permanent("refused on purpose")),
        Some("transient") if m.attempt() == 1 => {
            return Err(HandlerError::transient("first attempt fails on purpose"))
        }
        _ => {}
    }
    let seq: i64 = message
        .headers()
        .get("seq")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HandlerError::permanent("no seq header"))?;
    let mut tx = pool.begin().await.map_err(HandlerError::transient)?;
    sqlx::query(
        "INSERT INTO effects (message_id, key, seq, part, consumer) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(*message.id().as_uuid())
    .bind(message.key().unwrap_or_default())
    .bind(seq)
    .bind(m.origin().partition)
    .bind(consumer)
    .execute(&mut *tx)
    .await
    .map_err(HandlerError::transient)?;
    store
        .mark_done_in(&mut tx, m)
        .await
        .map_err(HandlerError::transient)?;
    tx.commit().await.map_err(HandlerError::transient)
}

/// Asserts that every one of the `published` confirmed messages was applied exactly once and
/// nothing else was.
pub fn assert_applied_once(report: &LedgerReport, published: usize) {
    assert!(report.lost.is_empty(), "lost: {:?}", report.lost);
    assert!(
        report.duplicated.is_empty(),
        "applied twice: {:?}",
        report.duplicated
    );
    assert!(report.unexpected.is_empty(), "{report:?}");
    assert_eq!(report.delivered, published);
}

/// Marks `message` to fail as `how` says (see [`FAIL`]).
pub fn failing(message: Message, how: &str) -> Message {
    message.with_header(FAIL, how)
}

/// The retry policy of the consumers of these tests: 4 attempts, the first in process, later
/// ones through the broker's delayed retry (so that the broker's retry path is exercised),
/// 100 ms doubling to 1 s.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(4)
        .in_process_attempts(1)
        .min_delay(Duration::from_millis(100))
        .max_delay(Duration::from_secs(1))
        .build()
        .expect("valid retry policy")
}

/// Starts consumer `consumer` of `group` on `subscriber`: a PerKey Processor with the
/// PostgreSQL inbox of the database at `url` (claims leased for [`CLAIM_LEASE`]) and the
/// effects [`handler`].
pub async fn start_consumer(
    url: &str,
    consumer: &str,
    group: &str,
    subscriber: impl Subscriber + 'static,
) -> RunningProcessor {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .expect("connect to the effects database");
    Processor::builder(group)
        .ordering(Ordering::PerKey)
        .concurrency(16)
        .claim_lease(CLAIM_LEASE)
        .retry(retry_policy())
        .idempotency(Arc::new(PgIdempotencyStore::new(pool, RETENTION)))
        .build()
        .expect("valid processor")
        .start(subscriber, handler(url, consumer).await)
}
