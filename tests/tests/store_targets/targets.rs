//! The stores under test, as store-suite targets.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use waybill_core::testkit::store_conformance::StoreTarget;
use waybill_core::{BoxError, IdempotencyStore, InMemoryIdempotencyStore};
use waybill_outbox::{MySqlIdempotencyStore, PgIdempotencyStore, SqliteIdempotencyStore};
use waybill_redis::LayeredIdempotencyStore;

use crate::support::redis::shared_store;

/// The in-process store.
pub struct Memory;

#[async_trait]
impl StoreTarget for Memory {
    fn name(&self) -> String {
        "in-memory".into()
    }
    async fn store(&self, retention: Duration) -> Result<Arc<dyn IdempotencyStore>, BoxError> {
        Ok(Arc::new(InMemoryIdempotencyStore::new(retention, 100_000)))
    }
}

/// The PostgreSQL inbox on a test database.
pub struct Postgres(pub sqlx::PgPool);

#[async_trait]
impl StoreTarget for Postgres {
    fn name(&self) -> String {
        "PostgreSQL inbox".into()
    }
    async fn store(&self, retention: Duration) -> Result<Arc<dyn IdempotencyStore>, BoxError> {
        Ok(Arc::new(PgIdempotencyStore::new(self.0.clone(), retention)))
    }
}

/// The SQLite inbox in a temporary file.
pub struct Sqlite(pub sqlx::SqlitePool);

#[async_trait]
impl StoreTarget for Sqlite {
    fn name(&self) -> String {
        "SQLite inbox".into()
    }
    async fn store(&self, retention: Duration) -> Result<Arc<dyn IdempotencyStore>, BoxError> {
        Ok(Arc::new(SqliteIdempotencyStore::new(
            self.0.clone(),
            retention,
        )))
    }
}

/// The MySQL/MariaDB inbox on a test database.
pub struct MySql(pub sqlx::MySqlPool);

#[async_trait]
impl StoreTarget for MySql {
    fn name(&self) -> String {
        "MySQL/MariaDB inbox".into()
    }
    async fn store(&self, retention: Duration) -> Result<Arc<dyn IdempotencyStore>, BoxError> {
        Ok(Arc::new(MySqlIdempotencyStore::new(
            self.0.clone(),
            retention,
        )))
    }
}

/// The Redis store on the shared server, keys under a prefix of its own.
pub struct Redis;

#[async_trait]
impl StoreTarget for Redis {
    fn name(&self) -> String {
        "Redis".into()
    }
    async fn store(&self, retention: Duration) -> Result<Arc<dyn IdempotencyStore>, BoxError> {
        Ok(Arc::new(shared_store("wb-suite", retention).await))
    }
}

/// Redis in front of the PostgreSQL inbox.
pub struct Layered(pub sqlx::PgPool);

#[async_trait]
impl StoreTarget for Layered {
    fn name(&self) -> String {
        "Redis layered over the PostgreSQL inbox".into()
    }
    async fn store(&self, retention: Duration) -> Result<Arc<dyn IdempotencyStore>, BoxError> {
        let fast = shared_store("wb-layered-suite", retention).await;
        let authority = Arc::new(PgIdempotencyStore::new(self.0.clone(), retention));
        Ok(Arc::new(LayeredIdempotencyStore::new(fast, authority)))
    }
}
