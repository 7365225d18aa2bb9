//! One outbox database for a test, PostgreSQL, SQLite or MySQL/MariaDB, behind the same
//! helpers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use waybill_core::{
    IdempotencyStore, IncomingMessage, KeyHoldStore, Message, MessageId, Publisher,
};
use waybill_outbox::audit::AuditDatabase;
use waybill_outbox::{
    InboxPurger, MySqlIdempotencyStore, Outbox, OutboxInspector, PgIdempotencyStore, Relay,
    RelayConfig, SqliteIdempotencyStore,
};

use super::postgres::TestDb;
use mysql::MySqlTestDb;

// Declared here rather than in `support/mod.rs`, so that every test binary that uses the
// outbox databases has it.
#[path = "mysql.rs"]
pub mod mysql;

/// Retention of test inboxes (long enough not to warn).
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// A migrated database with an `applied` table standing for the consumer's business effect.
pub enum Db {
    /// A fresh PostgreSQL database on the test server.
    Postgres(TestDb),
    /// A fresh SQLite file in the temp directory.
    Sqlite {
        /// The pool (WAL, busy timeout).
        pool: sqlx::SqlitePool,
        /// The file.
        path: PathBuf,
    },
    /// A fresh database on the MySQL/MariaDB test server.
    Mysql(MySqlTestDb),
}

impl Db {
    /// A migrated PostgreSQL database.
    pub async fn postgres() -> Self {
        let db = Self::Postgres(TestDb::migrated().await);
        db.create_applied().await;
        db
    }

    /// A migrated MySQL/MariaDB database.
    pub async fn mysql() -> Self {
        let db = Self::Mysql(MySqlTestDb::migrated().await);
        db.create_applied().await;
        db
    }

    /// A migrated SQLite database in a new temporary file.
    pub async fn sqlite() -> Self {
        let db = Self::sqlite_empty().await;
        if let Self::Sqlite { pool, .. } = &db {
            waybill_outbox::sqlite::migrate(pool)
                .await
                .expect("migrations apply");
        }
        db.create_applied().await;
        db
    }

    /// A SQLite database without the waybill tables.
    pub async fn sqlite_empty() -> Self {
        let path = std::env::temp_dir().join(format!("wb-test-{}.db", uuid_text()));
        let pool = waybill_outbox::sqlite::connect(&format!("sqlite://{}", path.display()), 8)
            .await
            .expect("open the SQLite file");
        Self::Sqlite { pool, path }
    }

    async fn create_applied(&self) {
        let ddl = match self {
            Self::Postgres(_) => {
                "CREATE TABLE applied (n bigserial, message_id uuid PRIMARY KEY, key text, seq bigint)"
            }
            Self::Sqlite { .. } => {
                "CREATE TABLE applied (n INTEGER PRIMARY KEY AUTOINCREMENT, message_id BLOB UNIQUE, key TEXT, seq INTEGER)"
            }
            Self::Mysql(_) => {
                "CREATE TABLE applied (n BIGINT AUTO_INCREMENT PRIMARY KEY, message_id BINARY(16) UNIQUE, `key` TEXT, seq BIGINT)"
            }
        };
        self.execute(ddl).await;
    }

    /// Runs one statement.
    pub async fn execute(&self, sql: &str) {
        match self {
            Self::Postgres(db) => sqlx::query(sql).execute(&db.pool).await.map(|_| ()),
            Self::Sqlite { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Self::Mysql(db) => sqlx::query(sql).execute(&db.pool).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Reads one count.
    pub async fn count(&self, sql: &str) -> i64 {
        match self {
            Self::Postgres(db) => sqlx::query_scalar(sql).fetch_one(&db.pool).await,
            Self::Sqlite { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await,
            Self::Mysql(db) => sqlx::query_scalar(sql).fetch_one(&db.pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Which database this is.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite { .. } => "sqlite",
            Self::Mysql(_) => "mysql",
        }
    }

    /// Its URL, as the sidecar takes it.
    pub fn url(&self) -> String {
        match self {
            Self::Postgres(db) => db.url.clone(),
            Self::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Self::Mysql(db) => db.url.clone(),
        }
    }

    /// Enqueues `messages` in one transaction and commits (`commit = true`) or rolls back.
    pub async fn enqueue(&self, topic: &str, messages: &[Message], commit: bool) {
        let outbox = Outbox::new();
        match self {
            Self::Postgres(db) => {
                let mut tx = db.pool.begin().await.unwrap();
                outbox
                    .enqueue_batch(&mut tx, topic, messages)
                    .await
                    .unwrap();
                if commit {
                    tx.commit().await.unwrap();
                } else {
                    tx.rollback().await.unwrap();
                }
            }
            Self::Sqlite { pool, .. } => {
                let mut tx = pool.begin().await.unwrap();
                outbox
                    .enqueue_batch(&mut tx, topic, messages)
                    .await
                    .unwrap();
                if commit {
                    tx.commit().await.unwrap();
                } else {
                    tx.rollback().await.unwrap();
                }
            }
            Self::Mysql(db) => {
                let mut tx = db.pool.begin().await.unwrap();
                outbox
                    .enqueue_batch(&mut tx, topic, messages)
                    .await
                    .unwrap();
                if commit {
                    tx.commit().await.unwrap();
                } else {
                    tx.rollback().await.unwrap();
                }
            }
        }
    }

    /// Enqueues `message` to be published no earlier than `not_before`, and commits.
    pub async fn enqueue_at(&self, topic: &str, message: &Message, not_before: SystemTime) {
        let outbox = Outbox::new();
        match self {
            Self::Postgres(db) => {
                let mut tx = db.pool.begin().await.unwrap();
                let queued = outbox.enqueue_at(&mut tx, topic, message, not_before);
                queued.await.unwrap();
                tx.commit().await.unwrap();
            }
            Self::Sqlite { pool, .. } => {
                let mut tx = pool.begin().await.unwrap();
                let queued = outbox.enqueue_at(&mut tx, topic, message, not_before);
                queued.await.unwrap();
                tx.commit().await.unwrap();
            }
            Self::Mysql(db) => {
                let mut tx = db.pool.begin().await.unwrap();
                let queued = outbox.enqueue_at(&mut tx, topic, message, not_before);
                queued.await.unwrap();
                tx.commit().await.unwrap();
            }
        }
    }

    /// Inserts a row by raw SQL, as another tool might, with `headers` (JSON text) that need
    /// not decode into waybill headers; returns its message id.
    pub async fn insert_raw_row(&self, topic: &str, key: &str, headers: &str) -> MessageId {
        let id = MessageId::new();
        let hex = id.to_string().replace('-', "");
        let sql = match self {
            Self::Postgres(_) => format!(
                "INSERT INTO waybill_outbox (message_id, topic, key, shard_hash, payload, headers, \
                   created_at) VALUES ('{id}', '{topic}', '{key}', 0, '\\x00', '{headers}', now())"
            ),
            Self::Sqlite { .. } => format!(
                "INSERT INTO waybill_outbox (message_id, topic, key, shard_hash, payload, headers, \
                   created_at_ms, enqueued_at_ms, available_at_ms) \
                 VALUES (X'{hex}', '{topic}', '{key}', 0, X'00', '{headers}', 0, 0, 0)"
            ),
            Self::Mysql(_) => format!(
                "INSERT INTO waybill_outbox (message_id, topic, `key`, shard_hash, payload, \
                   headers, created_at_ms, enqueued_at, available_at) \
                 VALUES (X'{hex}', '{topic}', '{key}', 0, X'00', '{headers}', 0, \
                         UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"
            ),
        };
        self.execute(&sql).await;
        id
    }

    /// A relay over this database.
    pub fn relay(&self, publisher: Arc<dyn Publisher>, config: RelayConfig) -> Relay {
        match self {
            Self::Postgres(db) => Relay::postgres(db.pool.clone(), publisher, config),
            Self::Sqlite { pool, .. } => Relay::sqlite(pool.clone(), publisher, config),
            Self::Mysql(db) => Relay::mysql(db.pool.clone(), publisher, config),
        }
    }

    /// An inspector over this database.
    pub fn inspector(&self) -> OutboxInspector {
        match self {
            Self::Postgres(db) => OutboxInspector::postgres(db.pool.clone()),
            Self::Sqlite { pool, .. } => OutboxInspector::sqlite(pool.clone()),
            Self::Mysql(db) => OutboxInspector::mysql(db.pool.clone()),
        }
    }

    /// The SQL inbox of this database.
    /// This database as an audit reads it.
    pub fn audit_source(&self) -> AuditDatabase {
        match self {
            Self::Postgres(db) => AuditDatabase::Postgres(db.pool.clone()),
            Self::Sqlite { pool, .. } => AuditDatabase::Sqlite(pool.clone()),
            Self::Mysql(db) => AuditDatabase::MySql(db.pool.clone()),
        }
    }

    pub fn inbox(&self) -> Arc<dyn IdempotencyStore> {
        match self {
            Self::Postgres(db) => Arc::new(PgIdempotencyStore::new(db.pool.clone(), DAY)),
            Self::Sqlite { pool, .. } => Arc::new(SqliteIdempotencyStore::new(pool.clone(), DAY)),
            Self::Mysql(db) => Arc::new(MySqlIdempotencyStore::new(db.pool.clone(), DAY)),
        }
    }

    /// The held keys of `DeadLetterMode::HoldKey`, in this database (the SQL inbox's).
    pub fn key_holds(&self) -> Arc<dyn KeyHoldStore> {
        match self {
            Self::Postgres(db) => Arc::new(PgIdempotencyStore::new(db.pool.clone(), DAY)),
            Self::Sqlite { pool, .. } => Arc::new(SqliteIdempotencyStore::new(pool.clone(), DAY)),
            Self::Mysql(db) => Arc::new(MySqlIdempotencyStore::new(db.pool.clone(), DAY)),
        }
    }

    /// An inbox of this database keeping markers for `retention`, and its purger running
    /// every `every`.
    pub fn purged_inbox(
        &self,
        retention: Duration,
        every: Duration,
    ) -> (Arc<dyn IdempotencyStore>, InboxPurger) {
        match self {
            Self::Postgres(db) => {
                let store = PgIdempotencyStore::new(db.pool.clone(), retention);
                let purger = store.purge_every(every);
                (Arc::new(store), purger)
            }
            Self::Sqlite { pool, .. } => {
                let store = SqliteIdempotencyStore::new(pool.clone(), retention);
                let purger = store.purge_every(every);
                (Arc::new(store), purger)
            }
            Self::Mysql(db) => {
                let store = MySqlIdempotencyStore::new(db.pool.clone(), retention);
                let purger = store.purge_every(every);
                (Arc::new(store), purger)
            }
        }
    }

    /// Rows in the inbox (leases and markers, expired or not).
    pub async fn inbox_rows(&self) -> i64 {
        self.count("SELECT count(*) FROM waybill_inbox").await
    }

    /// The business effect of handling `incoming`: a row in `applied` and the inbox marker of
    /// its claim in one transaction, committed when `commit`. Fails when the effect was
    /// already applied (the primary key refuses a second one) or the claim was taken over.
    pub async fn apply(&self, incoming: &IncomingMessage, commit: bool) -> Result<(), String> {
        let message = incoming.message();
        let seq: i64 = message
            .headers()
            .get("seq")
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        match self {
            Self::Postgres(db) => {
                let store = PgIdempotencyStore::new(db.pool.clone(), DAY);
                let mut tx = db.pool.begin().await.map_err(|e| e.to_string())?;
                sqlx::query("INSERT INTO applied (message_id, key, seq) VALUES ($1, $2, $3)")
                    .bind(message.id().as_uuid())
                    .bind(message.key())
                    .bind(seq)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| format!("second effect attempted: {e}"))?;
                store
                    .mark_done_in(&mut tx, incoming)
                    .await
                    .map_err(|e| e.to_string())?;
                if commit {
                    tx.commit().await.map_err(|e| e.to_string())
                } else {
                    tx.rollback().await.map_err(|e| e.to_string())
                }
            }
            Self::Sqlite { pool, .. } => {
                let store = SqliteIdempotencyStore::new(pool.clone(), DAY);
                let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
                sqlx::query("INSERT INTO applied (message_id, key, seq) VALUES (?1, ?2, ?3)")
                    .bind(message.id().as_uuid())
                    .bind(message.key())
                    .bind(seq)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| format!("second effect attempted: {e}"))?;
                store
                    .mark_done_in(&mut tx, incoming)
                    .await
                    .map_err(|e| e.to_string())?;
                if commit {
                    tx.commit().await.map_err(|e| e.to_string())
                } else {
                    tx.rollback().await.map_err(|e| e.to_string())
                }
            }
            Self::Mysql(db) => {
                let store = MySqlIdempotencyStore::new(db.pool.clone(), DAY);
                let mut tx = db.pool.begin().await.map_err(|e| e.to_string())?;
                sqlx::query("INSERT INTO applied (message_id, `key`, seq) VALUES (?, ?, ?)")
                    .bind(message.id().as_uuid())
                    .bind(message.key())
                    .bind(seq)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| format!("second effect attempted: {e}"))?;
                store
                    .mark_done_in(&mut tx, incoming)
                    .await
                    .map_err(|e| e.to_string())?;
                if commit {
                    tx.commit().await.map_err(|e| e.to_string())
                } else {
                    tx.rollback().await.map_err(|e| e.to_string())
                }
            }
        }
    }

    /// Applies `incoming`'s effect, asks for its marker and commits even when the marker is
    /// refused (as a careless handler would); returns the marker's error.
    pub async fn commit_despite_a_refused_marker(&self, incoming: &IncomingMessage) -> String {
        let message = incoming.message();
        let refused = match self {
            Self::Postgres(db) => {
                let store = PgIdempotencyStore::new(db.pool.clone(), DAY);
                let mut tx = db.pool.begin().await.unwrap();
                sqlx::query("INSERT INTO applied (message_id, key, seq) VALUES ($1, $2, 0)")
                    .bind(message.id().as_uuid())
                    .bind(message.key())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                let refused = store.mark_done_in(&mut tx, incoming).await.unwrap_err();
                let _ = tx.commit().await;
                refused
            }
            Self::Sqlite { pool, .. } => {
                let store = SqliteIdempotencyStore::new(pool.clone(), DAY);
                let mut tx = pool.begin().await.unwrap();
                let refused = store.mark_done_in(&mut tx, incoming).await.unwrap_err();
                tx.rollback().await.unwrap();
                refused
            }
            Self::Mysql(db) => {
                let store = MySqlIdempotencyStore::new(db.pool.clone(), DAY);
                let mut tx = db.pool.begin().await.unwrap();
                sqlx::query("INSERT INTO applied (message_id, `key`, seq) VALUES (?, ?, 0)")
                    .bind(message.id().as_uuid())
                    .bind(message.key())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                let refused = store.mark_done_in(&mut tx, incoming).await.unwrap_err();
                // A careless handler writes on and commits: the refusal left a transaction
                // that takes no writes and commits nothing.
                let more =
                    sqlx::query("INSERT INTO applied (message_id, `key`, seq) VALUES (?, ?, 1)")
                        .bind(waybill_core::MessageId::new().as_uuid())
                        .bind(message.key())
                        .execute(&mut *tx)
                        .await;
                assert!(
                    more.is_err(),
                    "a write after the refused marker was accepted"
                );
                let _ = tx.commit().await;
                refused
            }
        };
        refused.to_string()
    }

    /// Creates `effects`: one row per application of a handler's effect, with no uniqueness,
    /// so a second effect shows as a second row.
    pub async fn create_effects(&self) {
        self.execute(match self {
            Self::Postgres(_) => "CREATE TABLE effects (message_id uuid NOT NULL)",
            Self::Sqlite { .. } => "CREATE TABLE effects (message_id BLOB NOT NULL)",
            Self::Mysql(_) => "CREATE TABLE effects (message_id BINARY(16) NOT NULL)",
        })
        .await;
    }

    /// A slow business effect: inserts into `effects`, waits `handling`, then writes the inbox
    /// marker of `incoming`'s claim in the same transaction and commits.
    pub async fn apply_slowly(
        &self,
        incoming: &IncomingMessage,
        handling: Duration,
    ) -> Result<(), String> {
        let id = incoming.message().id();
        match self {
            Self::Postgres(db) => {
                let store = PgIdempotencyStore::new(db.pool.clone(), DAY);
                let mut tx = db.pool.begin().await.map_err(|e| e.to_string())?;
                sqlx::query("INSERT INTO effects (message_id) VALUES ($1)")
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::time::sleep(handling).await;
                store
                    .mark_done_in(&mut tx, incoming)
                    .await
                    .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())
            }
            Self::Sqlite { pool, .. } => {
                let store = SqliteIdempotencyStore::new(pool.clone(), DAY);
                // SQLite has one writer: take the write lock late so the other consumer's
                // claim is not blocked by this transaction's sleep.
                tokio::time::sleep(handling).await;
                let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
                sqlx::query("INSERT INTO effects (message_id) VALUES (?1)")
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
                store
                    .mark_done_in(&mut tx, incoming)
                    .await
                    .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())
            }
            Self::Mysql(db) => {
                let store = MySqlIdempotencyStore::new(db.pool.clone(), DAY);
                let mut tx = db.pool.begin().await.map_err(|e| e.to_string())?;
                sqlx::query("INSERT INTO effects (message_id) VALUES (?)")
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::time::sleep(handling).await;
                store
                    .mark_done_in(&mut tx, incoming)
                    .await
                    .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())
            }
        }
    }

    /// How many times the effect of `message` was applied.
    pub async fn effects_of(&self, message: &Message) -> i64 {
        let id = message.id();
        match self {
            Self::Postgres(db) => {
                sqlx::query_scalar("SELECT count(*) FROM effects WHERE message_id = $1")
                    .bind(id.as_uuid())
                    .fetch_one(&db.pool)
                    .await
            }
            Self::Sqlite { pool, .. } => {
                sqlx::query_scalar("SELECT count(*) FROM effects WHERE message_id = ?1")
                    .bind(id.as_uuid())
                    .fetch_one(pool)
                    .await
            }
            Self::Mysql(db) => {
                sqlx::query_scalar("SELECT count(*) FROM effects WHERE message_id = ?")
                    .bind(id.as_uuid())
                    .fetch_one(&db.pool)
                    .await
            }
        }
        .expect("count effects")
    }

    /// The applied effects in the order they committed: (key, seq).
    pub async fn applied(&self) -> Vec<(Option<String>, i64)> {
        let sql = "SELECT key, seq FROM applied ORDER BY n";
        match self {
            Self::Postgres(db) => sqlx::query_as(sql).fetch_all(&db.pool).await,
            Self::Sqlite { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await,
            Self::Mysql(db) => {
                sqlx::query_as("SELECT `key`, seq FROM applied ORDER BY n")
                    .fetch_all(&db.pool)
                    .await
            }
        }
        .expect("read applied")
    }

    /// Rows still in the outbox (pending or dead).
    pub async fn outbox_rows(&self) -> i64 {
        self.count("SELECT count(*) FROM waybill_outbox").await
    }

    /// Closes and deletes the database.
    pub async fn drop_db(self) {
        match self {
            Self::Postgres(db) => db.drop_db().await,
            Self::Sqlite { pool, path } => {
                pool.close().await;
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Self::Mysql(db) => db.drop_db().await,
        }
    }
}

/// Messages `0..n` with keys `k{i % keys}` and a `seq` header.
pub fn numbered(n: usize, keys: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            Message::new(i.to_string())
                .with_key(format!("k{}", i % keys))
                .with_header("seq", i.to_string())
        })
        .collect()
}

/// Each message's key and `seq` header (as [`numbered`] writes them), in the order given.
pub fn keyed_seqs(messages: &[Message]) -> Vec<(Option<String>, i64)> {
    messages
        .iter()
        .map(|m| {
            (
                m.key().map(str::to_owned),
                m.headers().get("seq").unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// The `seq` headers of `key`'s messages, in the order given.
pub fn seqs_of_key(messages: &[Message], key: &str) -> Vec<i64> {
    keyed_seqs(messages)
        .into_iter()
        .filter(|(k, _)| k.as_deref() == Some(key))
        .map(|(_, seq)| seq)
        .collect()
}

/// Keys whose `seq` values were applied out of order.
pub fn out_of_order_keys(applied: &[(Option<String>, i64)]) -> Vec<String> {
    let mut last: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    let mut bad = Vec::new();
    for (key, seq) in applied {
        let key = key.as_deref().unwrap_or("");
        if let Some(previous) = last.insert(key, *seq) {
            if previous > *seq {
                bad.push(key.to_owned());
            }
        }
    }
    bad
}

fn uuid_text() -> String {
    waybill_core::MessageId::new().to_string().replace('-', "")
}
