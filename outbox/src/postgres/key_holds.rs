//! Held keys on PostgreSQL (`waybill_key_hold`), beside the inbox markers.

use async_trait::async_trait;
use waybill_core::{KeyHold, KeyHoldStore, MessageId, StoreError};

use crate::key_hold_row::{key_hold, KeyHoldRow};

use super::inbox::{store_error, PgIdempotencyStore};

/// Held keys live in the inbox's database, so a group's instances share them and they survive
/// restarts. Each operation is one statement.
#[async_trait]
impl KeyHoldStore for PgIdempotencyStore {
    async fn hold(&self, group: &str, key: &str, id: MessageId) -> Result<MessageId, StoreError> {
        // The no-op update makes RETURNING give the row that stays, new or earlier.
        let behind: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO waybill_key_hold (group_name, key, behind) VALUES ($1, $2, $3) \
             ON CONFLICT (group_name, key) DO UPDATE SET behind = waybill_key_hold.behind \
             RETURNING behind",
        )
        .bind(group)
        .bind(key)
        .bind(id.as_uuid())
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error("hold key", e))?;
        Ok(MessageId::from_uuid(behind))
    }

    async fn held_behind(&self, group: &str, key: &str) -> Result<Option<MessageId>, StoreError> {
        let behind: Option<uuid::Uuid> = sqlx::query_scalar(
            "SELECT behind FROM waybill_key_hold WHERE group_name = $1 AND key = $2",
        )
        .bind(group)
        .bind(key)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| store_error("read key hold", e))?;
        Ok(behind.map(MessageId::from_uuid))
    }

    async fn release(&self, group: &str, key: &str, id: MessageId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM waybill_key_hold WHERE group_name = $1 AND key = $2 AND behind = $3",
        )
        .bind(group)
        .bind(key)
        .bind(id.as_uuid())
        .execute(self.pool())
        .await
        .map_err(|e| store_error("release key", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_key(&self, group: &str, key: &str) -> Result<Option<MessageId>, StoreError> {
        let behind: Option<uuid::Uuid> = sqlx::query_scalar(
            "DELETE FROM waybill_key_hold WHERE group_name = $1 AND key = $2 RETURNING behind",
        )
        .bind(group)
        .bind(key)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| store_error("release key", e))?;
        Ok(behind.map(MessageId::from_uuid))
    }

    async fn holds(&self, group: &str, limit: usize) -> Result<Vec<KeyHold>, StoreError> {
        let rows: Vec<KeyHoldRow> = sqlx::query_as(
            "SELECT key, behind, (EXTRACT(EPOCH FROM since) * 1000)::bigint FROM waybill_key_hold \
             WHERE group_name = $1 ORDER BY since, key LIMIT $2",
        )
        .bind(group)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error("list key holds", e))?;
        Ok(rows.into_iter().map(key_hold).collect())
    }
}
